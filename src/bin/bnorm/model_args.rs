//! What `train` and `predict` share: which data (embedded sets or the user's files, by
//! format) and which network (the tutorial's dense or convolutional model, a layer string, or
//! a Keras `to_json()` file).

use std::path::{Path, PathBuf};

use wgpu_batchnorm::nn::data::FileFormat;
use wgpu_batchnorm::nn::{
    from_keras_json, from_keras_json_labeled, parse_layers, tutorial_cnn, tutorial_layers,
    without_batch_norm, Dataset, LayerSpec, Shape,
};

type Error = Box<dyn std::error::Error>;

/// An imported model: its input shape, its layers and each layer's Keras label.
type Labeled = (Shape, Vec<LayerSpec>, Vec<String>);

#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// Data: `digits` (the embedded 8x8 handwritten digits), a CSV (features, then an integer
    /// label), a .npy of features `[N, F]` or images `[N, H, W, C]` (with --labels), MNIST-style
    /// IDX images (`*-idx3-ubyte[.gz]`, with --labels), or CIFAR-10 batches (`*.bin`, comma
    /// separated). Default: the embedded synthetic 1000 x 20 set.
    #[arg(long)]
    pub data: Option<String>,
    /// Labels for --data X.npy (integers `[N]` or one-hot `[N, classes]`) or an IDX images
    /// file (CIFAR-10 batches and CSV carry their own).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// CSV with a one-hot label in its last K columns.
    #[arg(long)]
    pub one_hot: Option<usize>,
    /// Number of classes, for every format: a label of this or more is an error (default:
    /// 1 + the largest label; 10 for CIFAR-10).
    #[arg(long)]
    pub classes: Option<usize>,
}

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// dense (the tutorial's Dense -> BN -> ReLU -> Dense) or cnn (the tutorial's
    /// convolutional network); the default is cnn for image data (or --input-shape), dense
    /// otherwise.
    #[arg(long)]
    pub model: Option<String>,
    /// A layer string instead, e.g.
    /// "conv:32:3:same,bn,relu,maxpool:2,flatten,dense:64,relu,dense:10" (without BN: the
    /// same with every bn removed, and a ReLU left with nothing to join moved back to the
    /// conv or dense layer before it through maxpool, flatten and dropout, or dropped: a ReLU
    /// follows only Dense, Conv2D or BN here, so after tanh, sigmoid or avgpool
    /// (`tanh,bn,relu`) the twin has no ReLU there, though relu(tanh(x)) is not tanh(x)).
    #[arg(long)]
    pub layers: Option<String>,
    /// A Keras model.to_json() file instead (Sequential; supported layer kinds only).
    #[arg(long)]
    pub model_json: Option<PathBuf>,
    /// The per-sample input as an image H,W,C (for flat data fed to a convolution); with
    /// --model-json it must be the model's input shape.
    #[arg(long)]
    pub input_shape: Option<String>,
    /// Hidden units of the dense model's first layer (default: 10; only for the dense model).
    #[arg(long)]
    pub hidden: Option<usize>,
}

impl DataArgs {
    pub fn check(&self) -> Result<(), Error> {
        if self.classes == Some(0) {
            return Err("--classes must be at least 1".into());
        }
        if self.labels.is_some() && self.data.is_none() {
            return Err("--labels needs --data (the features or images file)".into());
        }
        // The embedded sets carry their labels, as integers.
        if let Some(set) = self.embedded() {
            if self.labels.is_some() {
                return Err(format!("--labels: {set} carries its labels; drop --labels").into());
            }
            if self.one_hot.is_some() {
                return Err(format!("--one-hot is for CSV data; {set} is not CSV").into());
            }
        }
        Ok(())
    }

    /// The embedded data set asked for, in words; `None` for a file.
    fn embedded(&self) -> Option<&'static str> {
        match self.data.as_deref() {
            None => Some("the embedded synthetic set"),
            Some("digits") => Some("the embedded digits set"),
            Some(_) => None,
        }
    }

    /// An embedded set with the classes of --classes (which must cover its labels).
    fn embedded_classes(&self, data: Dataset) -> Result<Dataset, Error> {
        let Some(k) = self.classes else {
            return Ok(data);
        };
        if k < data.classes() {
            let set = self.embedded().unwrap_or("the data");
            return Err(format!(
                "--classes {k}: {set} has {} classes (labels 0 to {}); give at least {}",
                data.classes(),
                data.classes() - 1,
                data.classes()
            )
            .into());
        }
        Ok(data.with_classes(k)?)
    }

    /// What the data is, in a few words.
    pub fn describe(&self) -> &'static str {
        match self.data.as_deref() {
            None => " (embedded synthetic set)",
            Some("digits") => " (embedded 8x8 handwritten digits, UCI, CC BY 4.0)",
            Some(_) => "",
        }
    }

    /// The data file's format (from its content), with the flags that go with it checked.
    fn format(&self) -> Result<Option<FileFormat>, Error> {
        let Some(data) = self.data.as_deref().filter(|&d| d != "digits") else {
            return Ok(None);
        };
        let files = self.files();
        let format = FileFormat::detect(files.first().map_or(Path::new(data), |p| p.as_path()))?;
        if self.one_hot.is_some() && format != FileFormat::Csv {
            return Err(format!("--one-hot is for CSV data; {data} is not CSV").into());
        }
        match (format, &self.labels) {
            (FileFormat::Cifar10, Some(_)) => Err(format!(
                "--labels: the CIFAR-10 batches {data} carry their labels (the first byte of each record); drop --labels"
            )
            .into()),
            (FileFormat::Idx, None) => Err(format!(
                "{data}: IDX images need --labels (the labels file, e.g. train-labels-idx1-ubyte.gz)"
            )
            .into()),
            (FileFormat::Npy, None) => Err(format!(
                "{data}: a .npy array needs --labels (integers [N] or one-hot [N, classes] in another .npy)"
            )
            .into()),
            (FileFormat::Csv, Some(_)) => Err(format!(
                "--labels is for .npy and IDX data; the CSV {data} carries its label in its last column(s)"
            )
            .into()),
            _ => Ok(Some(format)),
        }
    }

    /// The files read, each with its flag (an output may not be one of them).
    pub fn inputs(&self) -> Vec<(&'static str, PathBuf)> {
        let mut inputs: Vec<(&'static str, PathBuf)> = match self.embedded() {
            Some(_) => Vec::new(),
            None => self.files().into_iter().map(|p| ("--data", p)).collect(),
        };
        inputs.extend(self.labels.iter().map(|p| ("--labels", p.clone())));
        inputs
    }

    /// The files of --data: comma-separated CIFAR-10 batches, or one file.
    fn files(&self) -> Vec<PathBuf> {
        match self.data.as_deref() {
            Some(d) if d.to_ascii_lowercase().ends_with(".bin") => {
                d.split(',').map(PathBuf::from).collect()
            }
            d => d.map(PathBuf::from).into_iter().collect(),
        }
    }

    /// The data, its header first checked against the model's declared input, so that a
    /// model that cannot read it is refused before a large file is read.
    pub fn load_for(&self, model: &ModelArgs, seed: u64) -> Result<Dataset, Error> {
        if let Some((_, shape)) = self.peek()? {
            model.check_input(shape)?;
        }
        // Flat data that the network reads as images (a convolutional network's image input)
        // is read as images: u8 scaled to [0, 1], as every image reader does.
        let convolutional = model.model.as_deref() == Some("cnn")
            || model.layers.is_some()
            || model.model_json.is_some();
        let image = match model.declared_input()? {
            Some(Shape::Image {
                height,
                width,
                channels,
            }) if convolutional => Some([height, width, channels]),
            _ => None,
        };
        self.load(seed, image)
    }

    /// The rows and per-sample shape the data's header declares, without loading it (`None`
    /// for the embedded sets and CSV).
    fn peek(&self) -> Result<Option<(usize, Shape)>, Error> {
        let Some(format) = self.format()? else {
            return Ok(None);
        };
        let files = self.files();
        let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
        Ok(format.peek(&refs)?)
    }

    fn load(&self, seed: u64, image: Option<[usize; 3]>) -> Result<Dataset, Error> {
        let Some(data) = &self.data else {
            return self.embedded_classes(Dataset::synthetic(1000, 20, seed));
        };
        let Some(format) = self.format()? else {
            return self.embedded_classes(Dataset::digits()?);
        };
        let files = self.files();
        let path = PathBuf::from(data);
        let (labels, classes) = (self.labels.as_deref(), self.classes);
        Ok(match (format, labels) {
            (FileFormat::Cifar10, _) => {
                let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
                Dataset::from_cifar10(&refs, classes)?
            }
            (FileFormat::Idx, Some(labels)) => Dataset::from_idx(&path, labels, classes)?,
            // Features [N, F] or images [N, H, W(, C)], by the header.
            (FileFormat::Npy, Some(labels)) => match self.peek()? {
                Some((_, Shape::Flat(_))) => match image {
                    Some(image) => Dataset::from_npy_as_images(&path, labels, classes, image)?,
                    None => Dataset::from_npy(&path, labels, classes)?,
                },
                _ => Dataset::from_npy_images(&path, labels, classes)?,
            },
            _ => Dataset::from_csv(&path, classes, self.one_hot)?,
        })
    }
}

impl ModelArgs {
    /// The files read (--model-json), each with its flag.
    pub fn inputs(&self) -> Vec<(&'static str, PathBuf)> {
        self.model_json
            .iter()
            .map(|p| ("--model-json", p.clone()))
            .collect()
    }

    pub fn check(&self) -> Result<(), Error> {
        if self.hidden == Some(0) {
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
        // A flag the chosen network does not read is refused, not ignored.
        let network = match (&self.model, &self.layers, &self.model_json) {
            (Some(m), _, _) => format!("--model {m}"),
            (_, Some(_), _) => "--layers".into(),
            (_, _, Some(_)) => "--model-json".into(),
            _ => String::new(),
        };
        if self.hidden.is_some() && !network.is_empty() && network != "--model dense" {
            return Err(format!(
                "--hidden does not apply to {network}: it sets the hidden units of the dense model (--model dense)"
            )
            .into());
        }
        if self.input_shape.is_some() && network == "--model dense" {
            return Err(
                "--input-shape does not apply to --model dense: the dense model reads each sample as a vector of its features"
                    .into(),
            );
        }
        self.image_shape()?;
        self.keras_model()?;
        Ok(())
    }

    /// The --model-json file's input shape and layers, checked against --input-shape.
    fn keras_model(&self) -> Result<Option<(Shape, Vec<LayerSpec>)>, Error> {
        Ok(self
            .keras_labeled()?
            .map(|(shape, layers, _)| (shape, layers)))
    }

    /// How errors name the layers of the network with BN: for --model-json each spec's Keras
    /// layer (position and name); empty (their positions) otherwise.
    pub fn labels(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .keras_labeled()?
            .map_or_else(Vec::new, |(_, _, labels)| labels))
    }

    /// The --model-json file's input shape, layers and their Keras labels.
    fn keras_labeled(&self) -> Result<Option<Labeled>, Error> {
        let Some(path) = &self.model_json else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--model-json {}: {e}", path.display()))?;
        let (shape, layers, labels) = from_keras_json_labeled(&text)
            .map_err(|e| format!("--model-json {}: {e}", path.display()))?;
        if let Some(given) = self.image_shape()? {
            if given != shape {
                return Err(format!(
                    "--input-shape {given} differs from the input shape {shape} of --model-json {}",
                    path.display()
                )
                .into());
            }
        }
        Ok(Some((shape, layers, labels)))
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

    /// Whether the network is convolutional (what the epoch, batch and split defaults
    /// follow): the cnn model, or the user's network when it has an image input or a
    /// convolution or pooling layer.
    pub fn is_cnn(&self, data: &Dataset) -> bool {
        match (&self.model, &self.layers, &self.model_json) {
            (Some(m), _, _) => m == "cnn",
            (_, Some(_), _) | (_, _, Some(_)) => {
                self.build(data, true).is_ok_and(|(input, layers)| {
                    matches!(input, Shape::Image { .. })
                        || layers.iter().any(|l| {
                            matches!(
                                l,
                                LayerSpec::Conv2D(_)
                                    | LayerSpec::MaxPool2D(_)
                                    | LayerSpec::AvgPool2D(_)
                                    | LayerSpec::GlobalAvgPool2D
                            )
                        })
                })
            }
            // Image data, or flat data given an image shape (--input-shape), is read by the
            // cnn model (the dense one would ignore --input-shape).
            _ => matches!(
                self.image_shape().ok().flatten().unwrap_or(data.shape()),
                Shape::Image { .. }
            ),
        }
    }

    /// The per-sample input the arguments declare without the data (`--input-shape`, or a
    /// Keras file's input), if any.
    fn declared_input(&self) -> Result<Option<Shape>, Error> {
        if let Some(path) = &self.model_json {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--model-json {}: {e}", path.display()))?;
            return Ok(Some(from_keras_json(&text)?.0));
        }
        self.image_shape()
    }

    /// Checks a declared input against the data's per-sample shape (from the data file's
    /// header, before it is loaded).
    fn check_input(&self, data: Shape) -> Result<(), Error> {
        match self.declared_input()? {
            Some(model) if data.checked_len() != model.checked_len() => Err(format!(
                "the data has {} values per sample {data}, the model takes {} {model}",
                values(data),
                values(model)
            )
            .into()),
            Some(model) => same_images(data, model),
            None => Ok(()),
        }
    }

    /// The input shape and layers of one run (`bn`: with or without batch norm).
    pub fn network(&self, data: &Dataset, bn: bool) -> Result<(Shape, Vec<LayerSpec>), Error> {
        let (input, layers) = self.build(data, bn)?;
        same_images(data.shape(), input)?;
        Ok((input, layers))
    }

    fn build(&self, data: &Dataset, bn: bool) -> Result<(Shape, Vec<LayerSpec>), Error> {
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
            if self.hidden.is_some() {
                return Err("--hidden does not apply to the cnn model (chosen for image data): it sets the hidden units of the dense model (--model dense)".into());
            }
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
            tutorial_layers(bn, self.hidden.unwrap_or(10), classes),
        ))
    }
}

/// A shape's count of values in words: its product can overflow (an --input-shape is the
/// user's), and a saturated count is not a count.
fn values(shape: Shape) -> String {
    shape
        .checked_len()
        .map_or_else(|| "2^64 or more".into(), |n| n.to_string())
}

/// Images must match a model's image input exactly: the same values in another arrangement
/// are other images (flat data may be read as images of its size, and images as vectors).
fn same_images(data: Shape, model: Shape) -> Result<(), Error> {
    match (data, model) {
        (Shape::Image { .. }, Shape::Image { .. }) if data != model => {
            Err(format!("the data's images are {data}, the model takes images {model}").into())
        }
        _ => Ok(()),
    }
}
