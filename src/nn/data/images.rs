//! Image data sets, NHWC with values in [0, 1]: the embedded 8×8 handwritten digits, MNIST and
//! Fashion-MNIST IDX files (`*-images-idx3-ubyte[.gz]`), CIFAR-10 binary batches, and `.npy`
//! arrays `[N, H, W, C]`. Every header is checked against the bytes that back it, and the
//! labels against the classes, before the images are read; the images are then read in chunks
//! straight into their final buffer (compressed files decompressed as a stream), and a file is
//! refused whole if anything follows its data.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::gzip::{is_trailing, Members};

use super::labels::{checked_classes, label};
use super::npy::NpyArray;
use super::{DataError, Dataset};

/// The digits, as `data/digits/extract.py` wrote them (CC BY 4.0, see `data/digits/README.md`).
const DIGITS_IMAGES: &[u8] = include_bytes!("../../../data/digits/digits-images-idx3-ubyte.gz");
const DIGITS_LABELS: &[u8] = include_bytes!("../../../data/digits/digits-labels-idx1-ubyte.gz");

/// CIFAR-10: a label byte, then a 32×32 image as three planes (R, G, B).
const CIFAR_SIDE: usize = 32;
const CIFAR_PLANE: usize = CIFAR_SIDE * CIFAR_SIDE;
pub(super) const CIFAR_RECORD: usize = 1 + 3 * CIFAR_PLANE;
const CIFAR_CLASSES: usize = 10;

/// Bytes read at a time.
const CHUNK: usize = 1 << 16;

/// The most bytes deflate can expand one compressed byte to: a gzip file claiming more data
/// than this allows is refused before its buffer is reserved.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// A pixel byte in [0, 1] (every reader scales the same way).
fn pixel(v: u8) -> f32 {
    v as f32 / 255.0
}

impl Dataset {
    /// The 8×8 handwritten digits (1,797 images `[8, 8, 1]`, 10 classes; UCI "Optical
    /// Recognition of Handwritten Digits", CC BY 4.0), pixels 0..16 scaled to [0, 1]. The
    /// files are fixed and tested; what can fail is the host memory check of the read.
    pub fn digits() -> Result<Dataset, DataError> {
        let name = "<embedded digits>";
        let open = |bytes: &'static [u8]| {
            Idx::from_reader(name, Box::new(GzDecoder::new(bytes)), Source::Gzip(None))
        };
        let (images, labels) = (open(DIGITS_IMAGES)?, open(DIGITS_LABELS)?);
        let [_, h, w] = images.dims[..] else {
            return Err(malformed(name, "the digits are not [N, H, W]".into()));
        };
        let labels = labels.read("the labels", |l| l as u32)?;
        let x = images.read("the images", |v| v as f32 / 16.0)?;
        Dataset::checked(name, name, x, labels, h * w, 10)?.with_image_shape([h, w, 1])
    }

    /// MNIST-style IDX files: images `[N, H, W]` of unsigned bytes (scaled to [0, 1]) and
    /// labels `[N]`; either may be gzip-compressed (recognized by its magic bytes). The classes
    /// are `classes` (checked against every label) or 1 + the largest label.
    pub fn from_idx(
        images: &Path,
        labels: &Path,
        classes: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let classes = checked_classes(classes)?;
        let (xi, yi) = (Idx::open(images)?, Idx::open(labels)?);
        let [n, h, w] = xi.dims[..] else {
            return Err(malformed(
                &xi.name,
                format!("images must be [N, H, W], got {:?}", xi.dims),
            ));
        };
        if n == 0 {
            return Err(malformed(
                &xi.name,
                "the images file holds no images (N = 0)".into(),
            ));
        }
        if yi.dims != [n] {
            return Err(malformed(
                &yi.name,
                format!("labels must be [{n}], got {:?}", yi.dims),
            ));
        }
        let (iname, lname) = (xi.name.clone(), yi.name.clone());
        let y = yi.read("the labels", |l| l as f64)?;
        let (y, classes) = super::labels::labels(&lname, &y, None, classes)?;
        let x = xi.read("the images", pixel)?;
        Dataset::checked(&iname, &lname, x, y, h * w, classes)?.with_image_shape([h, w, 1])
    }

    /// CIFAR-10 binary batches (`data_batch_1.bin`...: records of a label byte and a 32×32
    /// RGB image stored as planes), concatenated in order, as `[32, 32, 3]` images in [0, 1].
    /// The classes are `classes` (checked against every label) or 10.
    pub fn from_cifar10(files: &[&Path], classes: Option<usize>) -> Result<Dataset, DataError> {
        let classes = checked_classes(classes)?.unwrap_or(CIFAR_CLASSES);
        let first = files
            .first()
            .map_or("<no files>".into(), |p| p.display().to_string());
        // Every file's length first: the whole buffer is reserved once.
        let mut opened = Vec::with_capacity(files.len());
        let mut rows = 0usize;
        for path in files {
            let name = path.display().to_string();
            let io = |source| DataError::Io {
                path: name.clone(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            if len == 0 || len % CIFAR_RECORD as u64 != 0 {
                return Err(malformed(
                    &name,
                    format!(
                        "{len} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records"
                    ),
                ));
            }
            rows = usize::try_from(len / CIFAR_RECORD as u64)
                .ok()
                .and_then(|r| rows.checked_add(r))
                .ok_or_else(|| malformed(&name, "too many records".into()))?;
            opened.push((name, file, len / CIFAR_RECORD as u64));
        }
        let features = 3 * CIFAR_PLANE;
        let values = rows
            .checked_mul(features)
            .ok_or_else(|| malformed(&first, "too many records".into()))?;
        let mut x = super::buffer::<f32>(&first, "the images", values)?;
        let mut y = super::buffer::<u32>(&first, "the labels", rows)?;
        let mut rec = vec![0u8; CIFAR_RECORD];
        for (name, file, records) in opened {
            let mut r = std::io::BufReader::with_capacity(CHUNK, file);
            for row in 0..records as usize {
                r.read_exact(&mut rec).map_err(|source| DataError::Io {
                    path: name.clone(),
                    source,
                })?;
                y.push(label(&name, row, rec[0] as f64, Some(classes))?);
                // Planes to channels-last.
                let px = &rec[1..];
                x.extend(
                    (0..CIFAR_PLANE)
                        .flat_map(|i| (0..3).map(move |c| pixel(px[c * CIFAR_PLANE + i]))),
                );
            }
        }
        Dataset::checked(&first, &first, x, y, features, classes)?
            .with_image_shape([CIFAR_SIDE, CIFAR_SIDE, 3])
    }

    /// `.npy` images `[N, H, W, C]` (or `[N, H, W]`, one channel): unsigned bytes are scaled
    /// to [0, 1], other types kept; labels `[N]` of integers or one-hot `[N, classes]`, read
    /// as for [`Dataset::from_npy`]. The classes are `classes` (checked against every label),
    /// the one-hot columns, or 1 + the largest label.
    pub fn from_npy_images(
        images: &Path,
        labels: &Path,
        classes: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let xa = NpyArray::open(images)?;
        let [n, h, w, c] = match xa.shape[..] {
            [n, h, w] => [n, h, w, 1],
            [n, h, w, c] => [n, h, w, c],
            _ => {
                return Err(DataError::Npy {
                    path: xa.name,
                    why: format!(
                        "images must be [N, H, W, C] or [N, H, W], got {:?}",
                        xa.shape
                    ),
                })
            }
        };
        Self::npy_images(xa, [n, h, w, c], labels, classes)
    }

    /// `.npy` features `[N, F]` read as images `[h, w, c]` (`h * w * c` must be `F`), by the
    /// rule of every image reader: unsigned bytes are scaled to [0, 1], other types kept
    /// (what `--input-shape` makes of flat data).
    pub fn from_npy_as_images(
        features: &Path,
        labels: &Path,
        classes: Option<usize>,
        [h, w, c]: [usize; 3],
    ) -> Result<Dataset, DataError> {
        let xa = NpyArray::open(features)?;
        let len = h.checked_mul(w).and_then(|v| v.checked_mul(c));
        match xa.shape[..] {
            [n, f] if Some(f) == len => Self::npy_images(xa, [n, h, w, c], labels, classes),
            _ => Err(DataError::Npy {
                why: format!(
                    "features [N, {}] are needed for images {h} x {w} x {c}, got shape {:?}",
                    len.map_or("more than can be counted".into(), |l| l.to_string()),
                    xa.shape
                ),
                path: xa.name,
            }),
        }
    }

    /// The images of `xa` as `[n, h, w, c]`, with the labels of `labels`.
    fn npy_images(
        xa: NpyArray,
        [n, h, w, c]: [usize; 4],
        labels: &Path,
        classes: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let features = h
            .checked_mul(w)
            .and_then(|v| v.checked_mul(c))
            .ok_or_else(|| DataError::Npy {
                path: xa.name.clone(),
                why: format!("an image of {h} x {w} x {c} has more values than can be counted"),
            })?;
        let ya = NpyArray::open(labels)?;
        let one_hot = ya.label_columns(n)?;
        let (iname, lname) = (xa.name.clone(), ya.name.clone());
        let y = ya.read("the labels", |v| v)?;
        let x = if xa.bytes {
            xa.read("the images", |v| pixel(v as u8))?
        } else {
            xa.read("the images", |v| v as f32)?
        };
        Self::assemble((&iname, x), features, (&lname, &y), one_hot, classes)?
            .with_image_shape([h, w, c])
    }
}

fn malformed(path: &str, why: String) -> DataError {
    DataError::Malformed {
        path: path.into(),
        why,
    }
}

/// An IDX array of unsigned bytes whose header has been read: magic `00 00 08 ndim`,
/// big-endian u32 dimensions, then the data, which `read` takes whole.
pub(super) struct Idx {
    pub(super) name: String,
    pub(super) dims: Vec<usize>,
    count: usize,
    reader: Box<dyn Read>,
    gzip: bool,
}

impl Idx {
    /// An IDX file from disk, gzip-compressed (by its magic bytes) or not.
    pub(super) fn open(path: &Path) -> Result<Idx, DataError> {
        let name = path.display().to_string();
        let io = |source| DataError::Io {
            path: name.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut reader = std::io::BufReader::with_capacity(CHUNK, file);
        let head = std::io::BufRead::fill_buf(&mut reader).map_err(io)?;
        if head.starts_with(&[0x1f, 0x8b]) {
            // Every member of a multi-member gzip (`cat a.gz b.gz`), nothing after the last.
            let stream = Box::new(Members::new(reader));
            Idx::from_reader(&name, stream, Source::Gzip(Some(size)))
        } else {
            Idx::from_reader(&name, Box::new(reader), Source::Raw(size))
        }
    }

    /// Reads the header from `r`. A compressed stream's header may be garbage decoded from
    /// corrupt data: when it is refused, the stream is first read to its end, so that a bad
    /// checksum is reported as corrupt gzip rather than as the garbage's dimensions.
    fn from_reader(name: &str, mut r: Box<dyn Read>, source: Source) -> Result<Idx, DataError> {
        let gzip = !matches!(source, Source::Raw(_));
        match Idx::header(name, &mut r, source) {
            Ok((dims, count)) => Ok(Idx {
                name: name.into(),
                dims,
                count,
                reader: r,
                gzip,
            }),
            Err(e) if gzip => match std::io::copy(&mut r, &mut std::io::sink()) {
                Err(io) => Err(fault(name, true, io, "")),
                Ok(_) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The dimensions and byte count of the header at the start of `r`, checked against the
    /// bytes that can back them.
    fn header(
        name: &str,
        r: &mut Box<dyn Read>,
        source: Source,
    ) -> Result<(Vec<usize>, usize), DataError> {
        let gzip = !matches!(source, Source::Raw(_));
        // What a decompressed header that fails a check probably is.
        let lying = |why: String| match gzip {
            true => malformed(
                name,
                format!("{why}: the decompressed data is corrupt or not an IDX file"),
            ),
            false => malformed(
                name,
                format!("{why}: the file is corrupt or not an IDX file"),
            ),
        };
        let mut magic = [0u8; 4];
        if let Err(e) = r.read_exact(&mut magic) {
            return Err(fault(name, gzip, e, "too short for an IDX header"));
        }
        if magic[0] != 0 || magic[1] != 0 {
            return Err(match gzip {
                true => malformed(
                    name,
                    "the decompressed data is not an IDX file (bad magic)".into(),
                ),
                false => malformed(name, "not an IDX file (bad magic)".into()),
            });
        }
        if magic[2] != 0x08 {
            return Err(malformed(
                name,
                format!(
                    "IDX type 0x{:02x} is not supported (unsigned bytes, 0x08, are)",
                    magic[2]
                ),
            ));
        }
        let ndim = magic[3] as usize;
        if ndim == 0 {
            return Err(malformed(
                name,
                "an IDX array needs at least one dimension".into(),
            ));
        }
        let mut dims = Vec::with_capacity(ndim);
        for _ in 0..ndim {
            let mut d = [0u8; 4];
            if let Err(e) = r.read_exact(&mut d) {
                return Err(fault(name, gzip, e, "truncated IDX header"));
            }
            dims.push(u32::from_be_bytes(d) as usize);
        }
        let count = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| lying(format!("dimensions {dims:?} overflow")))?;
        match source {
            Source::Raw(size) => {
                let data = size.saturating_sub(4 + 4 * ndim as u64);
                if data < count as u64 {
                    return Err(lying(format!(
                        "dimensions {dims:?} need {count} bytes, the file has {data}"
                    )));
                }
                if data > count as u64 {
                    return Err(trailing(name, &dims, count, data - count as u64));
                }
            }
            // Deflate's ratio bounds what a file this size can hold.
            Source::Gzip(Some(size)) if count as u64 > size.saturating_mul(DEFLATE_MAX_RATIO) => {
                return Err(lying(format!(
                    "dimensions {dims:?} need {count} bytes, more than {size} compressed bytes can hold"
                )));
            }
            Source::Gzip(_) => {}
        }
        Ok((dims, count))
    }

    /// The whole array through `map`, into one buffer of exactly its length (checked against
    /// the memory available, reserved fallibly); a compressed stream must end with the data.
    pub(super) fn read<T>(
        mut self,
        what: &'static str,
        map: impl Fn(u8) -> T,
    ) -> Result<Vec<T>, DataError> {
        let mut out = super::buffer::<T>(&self.name, what, self.count)?;
        let mut chunk = vec![0u8; CHUNK.min(self.count.max(1))];
        let mut done = 0;
        while done < self.count {
            let n = (self.count - done).min(CHUNK);
            let got = fill(&mut self.reader, &mut chunk[..n])
                .map_err(|e| fault(&self.name, self.gzip, e, ""))?;
            out.extend(chunk[..got].iter().map(|&b| map(b)));
            done += got;
            if got < n {
                return Err(malformed(
                    &self.name,
                    format!(
                        "dimensions {:?} need {} bytes, the data has {done}",
                        self.dims, self.count
                    ),
                ));
            }
        }
        if self.gzip {
            // Reading to the end also checks the stream's checksum.
            let mut rest = 0u64;
            loop {
                let got = fill(&mut self.reader, &mut chunk)
                    .map_err(|e| fault(&self.name, true, e, ""))?;
                rest += got as u64;
                if got < chunk.len() {
                    break;
                }
            }
            if rest > 0 {
                return Err(trailing(&self.name, &self.dims, self.count, rest));
            }
        }
        Ok(out)
    }
}

/// Where an IDX stream comes from.
#[derive(Clone, Copy)]
enum Source {
    /// A plain file of this many bytes, which must be exactly the header and the data.
    Raw(u64),
    /// A gzip stream, from a file of this many bytes when known.
    Gzip(Option<u64>),
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A read that failed: a stream that ended early (`short`), corrupt gzip data, or I/O.
fn fault(name: &str, gzip: bool, e: std::io::Error, short: &str) -> DataError {
    if is_trailing(&e) {
        return malformed(name, format!("{e}; the file is not one whole gzip stream"));
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof if !short.is_empty() => malformed(name, short.into()),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData if gzip => {
            malformed(name, format!("the gzip data is corrupt ({e})"))
        }
        _ => DataError::Io {
            path: name.into(),
            source: e,
        },
    }
}

fn trailing(name: &str, dims: &[usize], count: usize, extra: u64) -> DataError {
    malformed(
        name,
        format!("{extra} bytes follow the {count} bytes of dimensions {dims:?}; the file is not one whole IDX array"),
    )
}
