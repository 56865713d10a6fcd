//! The contract of data-parallel training: what every rank must share before the first
//! exchange of values. Ranks that disagree on any of it would not fail on their own: other
//! epochs or batch sizes leave one rank waiting for exchanges that never come, other layer
//! sizes sum the gradients of different tensors (lengths that happen to be equal once
//! aligned), another seed or data set trains a different model under one reported loss. So
//! `fit_distributed` states these fields and the ranks compare them
//! ([`crate::Exchange::agree`]): on a difference every rank returns the same
//! `RanksDisagree` naming the field and each rank's value.

use crate::exchange::fingerprint;
use crate::nn::data::Dataset;
use crate::nn::error::Result;
use crate::nn::registry::names;
use crate::nn::sequential::Sequential;
use crate::nn::spec::FitOptions;

/// The fields, in the order the first difference is reported: the options (cheap and the
/// likeliest to differ by mistake), the network layer by layer, the weights, the data, the
/// device. Numbers first, then the layers, so a different count is named as such.
pub(crate) fn fields(
    model: &Sequential,
    train: &Dataset,
    options: &FitOptions,
    validation: Option<&Dataset>,
) -> Result<Vec<(String, String)>> {
    let mut f: Vec<(String, String)> = vec![
        ("epochs".into(), options.epochs.to_string()),
        ("batch size".into(), options.batch_size.to_string()),
        ("shuffle".into(), options.shuffle.to_string()),
        ("seed".into(), options.seed.to_string()),
        (
            "optimizer".into(),
            format!("{:?}", model.optimizer.config()),
        ),
        ("input shape".into(), model.input_shape().to_string()),
        ("number of layers".into(), model.defs.len().to_string()),
    ];
    // Each layer's kind, output and parameter shapes (what a user reads), then its whole
    // definition (what the kernels run: a convention, a momentum, a pool's stride...).
    for (i, (d, (name, _))) in model.defs.iter().zip(names(&model.defs)).enumerate() {
        let params: Vec<String> = d
            .params()
            .iter()
            .map(|p| format!("{} {:?}", p.name, p.shape))
            .collect();
        let what = format!("layer {} ({name})", i + 1);
        f.push((
            what.clone(),
            format!(
                "{} with output {}{}{}",
                d.describe(),
                d.output_shape(),
                if params.is_empty() { "" } else { ", " },
                params.join(", ")
            ),
        ));
        f.push((format!("{what}'s settings"), format!("{d:?}")));
    }
    // The layout of the buffer whose gradients are summed: region by region.
    let regions: Vec<String> = model
        .defs
        .iter()
        .zip(&model.at)
        .map(|(d, at)| format!("{at}+{}", d.region_len()))
        .collect();
    f.push((
        "parameter layout".into(),
        format!("{} floats: {}", model.params_len, regions.join(" ")),
    ));
    let weights = model.ctx.read_f32(&model.params, 0, model.params_len)?;
    f.push((
        "initial weights".into(),
        format!(
            "fingerprint {:016x}",
            fingerprint(bytemuck::cast_slice(&weights))
        ),
    ));
    f.push(("training rows".into(), train.rows().to_string()));
    f.push(("training data".into(), describe_data(train)));
    f.push((
        "validation rows".into(),
        validation.map_or("none".into(), |v| v.rows().to_string()),
    ));
    if let Some(v) = validation {
        f.push(("validation data".into(), describe_data(v)));
    }
    // The same kind of device on every rank: each rank applies the summed gradients on its
    // own, and only the same arithmetic keeps the weights identical.
    let info = model.ctx.adapter_info();
    f.push((
        "device kind".into(),
        format!("GPU path, {:?} {:?}", info.backend, info.device_type),
    ));
    Ok(f)
}

/// A data set's shape, classes and a fingerprint of its values and labels.
fn describe_data(d: &Dataset) -> String {
    let x = fingerprint(bytemuck::cast_slice(d.x()));
    let labels = fingerprint(bytemuck::cast_slice(d.labels()));
    format!(
        "{} features {} classes, fingerprint {:016x}",
        d.shape(),
        d.classes(),
        x ^ labels.rotate_left(17)
    )
}
