//! What `train` and `predict` share: which data (embedded sets or the user's files, by
//! format) and which network (the tutorial's dense or convolutional model, a layer string, or
//! a Keras `to_json()` file).

use std::path::PathBuf;

use wgpu_batchnorm::nn::{
    from_keras_json, parse_layers, tutorial_cnn, tutorial_layers, without_batch_norm, Dataset,
    LayerSpec, Shape,
};

type Error = Box<dyn std::error::Error>;

#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// Data: `digits` (the embedded 8x8 handwritten digits), a CSV (features, then an integer
    /// label), a .npy of features `[N, F]` or images `[N, H, W, C]` (with --labels), MNIST-style
    /// IDX images (`*-idx3-ubyte[.gz]`, with --labels), or CIFAR-10 batches (`*.bin`, comma
    /// separated). Default: the embedded synthetic 1000 x 20 set.
    #[arg(long)]
    pub data: Option<String>,
    /// Labels for --data X.npy (integers `[N]` or one-hot `[N, classes]`) or an IDX images file.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// CSV with a one-hot label in its last K columns.
    #[arg(long)]
    pub one_hot: Option<usize>,
    /// Number of classes (default: from the labels).
    #[arg(long)]
    pub classes: Option<usize>,
}

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// dense (the tutorial's Dense -> BN -> ReLU -> Dense) or cnn (the tutorial's
    /// convolutional network); the default is cnn for image data, dense otherwise.
    #[arg(long)]
    pub model: Option<String>,
    /// A layer string instead, e.g.
    /// "conv:32:3:same,bn,relu,maxpool:2,flatten,dense:64,relu,dense:10" (without BN: the
    /// same with every bn removed, and a ReLU left with nothing to join moved back to the
    /// conv or dense layer before it, or dropped).
    #[arg(long)]
    pub layers: Option<String>,
    /// A Keras model.to_json() file instead (Sequential; supported layer kinds only).
    #[arg(long)]
    pub model_json: Option<PathBuf>,
    /// The per-sample input as an image H,W,C (for flat data fed to a convolution); with
    /// --model-json it must be the model's input shape.
    #[arg(long)]
    pub input_shape: Option<String>,
    /// Hidden units of the dense model's first layer.
    #[arg(long, default_value_t = 10)]
    pub hidden: usize,
}

impl DataArgs {
    pub fn check(&self) -> Result<(), Error> {
        if self.labels.is_some() && self.data.is_none() {
            return Err("--labels needs --data (the features or images file)".into());
        }
        Ok(())
    }

    /// What the data is, in a few words.
    pub fn describe(&self) -> &'static str {
        match self.data.as_deref() {
            None => " (embedded synthetic set)",
            Some("digits") => " (embedded 8x8 handwritten digits, UCI, CC BY 4.0)",
            Some(_) => "",
        }
    }

    pub fn load(&self, seed: u64) -> Result<Dataset, Error> {
        let Some(data) = &self.data else {
            return Ok(Dataset::synthetic(1000, 20, seed));
        };
        if data == "digits" {
            return Ok(Dataset::digits());
        }
        let path = PathBuf::from(data);
        let name = data.to_ascii_lowercase();
        Ok(match &self.labels {
            _ if name.ends_with(".bin") => {
                let files: Vec<PathBuf> = data.split(',').map(PathBuf::from).collect();
                let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
                Dataset::from_cifar10(&refs)?
            }
            Some(labels) if name.contains("idx") || name.ends_with(".gz") => {
                Dataset::from_idx(&path, labels)?
            }
            Some(labels) => match Dataset::from_npy(&path, labels, self.classes) {
                Err(wgpu_batchnorm::nn::DataError::Npy { why, .. })
                    if why.contains("must be 2-D") =>
                {
                    Dataset::from_npy_images(&path, labels, self.classes)?
                }
                other => other?,
            },
            None => Dataset::from_csv(&path, self.classes, self.one_hot)?,
        })
    }
}

impl ModelArgs {
    pub fn check(&self) -> Result<(), Error> {
        if self.hidden == 0 {
            return Err("--hidden must be at least 1".into());
        }
        let given = [
            self.model.is_some(),
            self.layers.is_some(),
            self.model_json.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() > 1 {
            return Err("give one of --model, --layers and --model-json".into());
        }
        if let Some(m) = &self.model {
            if !matches!(m.as_str(), "dense" | "cnn") {
                return Err(format!("unknown model {m:?} (dense or cnn)").into());
            }
        }
        if let Some(l) = &self.layers {
            parse_layers(l)?;
        }
        self.image_shape()?;
        self.keras_model()?;
        Ok(())
    }

    /// The --model-json file's input shape and layers, checked against --input-shape.
    fn keras_model(&self) -> Result<Option<(Shape, Vec<LayerSpec>)>, Error> {
        let Some(path) = &self.model_json else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--model-json {}: {e}", path.display()))?;
        let (shape, layers) =
            from_keras_json(&text).map_err(|e| format!("--model-json {}: {e}", path.display()))?;
        if let Some(given) = self.image_shape()? {
            if given != shape {
                return Err(format!(
                    "--input-shape {given} differs from the input shape {shape} of --model-json {}",
                    path.display()
                )
                .into());
            }
        }
        Ok(Some((shape, layers)))
    }

    fn image_shape(&self) -> Result<Option<Shape>, Error> {
        let Some(s) = &self.input_shape else {
            return Ok(None);
        };
        let dims: Vec<usize> = s
            .split(',')
            .map(|d| d.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("--input-shape {s:?}: expected H,W,C"))?;
        match dims[..] {
            [h, w, c] if h > 0 && w > 0 && c > 0 => Ok(Some(Shape::image(h, w, c))),
            _ => Err(format!("--input-shape {s:?}: expected three positive numbers H,W,C").into()),
        }
    }

    /// Whether the network is convolutional (what the epoch and split defaults follow).
    pub fn is_cnn(&self, data: &Dataset) -> bool {
        match (&self.model, &self.layers, &self.model_json) {
            (Some(m), _, _) => m == "cnn",
            (_, Some(_), _) | (_, _, Some(_)) => true,
            _ => matches!(data.shape(), Shape::Image { .. }),
        }
    }

    /// The input shape and layers of one run (`bn`: with or without batch norm).
    pub fn network(&self, data: &Dataset, bn: bool) -> Result<(Shape, Vec<LayerSpec>), Error> {
        let classes = data.classes().max(2);
        let image = self.image_shape()?.unwrap_or(data.shape());
        // Without BN: the twin that is valid whenever the network with BN is.
        let without_bn = |layers: Vec<LayerSpec>| -> Vec<LayerSpec> {
            if bn {
                layers
            } else {
                without_batch_norm(&layers)
            }
        };
        if let Some((shape, layers)) = self.keras_model()? {
            return Ok((shape, without_bn(layers)));
        }
        if let Some(l) = &self.layers {
            return Ok((image, without_bn(parse_layers(l)?)));
        }
        if self.is_cnn(data) {
            if !matches!(image, Shape::Image { .. }) {
                return Err(format!(
                    "the cnn model needs image data; {} features per row: give --input-shape H,W,C",
                    data.features()
                )
                .into());
            }
            return Ok((image, tutorial_cnn(bn, classes)));
        }
        Ok((
            Shape::Flat(data.features()),
            tutorial_layers(bn, self.hidden, classes),
        ))
    }
}
