//! Image readers: the embedded digits, IDX (plain and gzip), CIFAR-10 batches and `.npy`
//! image arrays, from small files the tests write; malformed headers refused before anything
//! is allocated.

use std::io::Write;
use std::path::PathBuf;

use wgpu_batchnorm::nn::data::write_npy_f32;
use wgpu_batchnorm::nn::{DataError, Dataset, Shape};

mod common;

use common::idx;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("bnorm-images-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn the_digits_are_embedded() {
    let d = Dataset::digits().unwrap();
    assert_eq!(d.rows(), 1797);
    assert_eq!(d.shape(), Shape::image(8, 8, 1));
    assert_eq!(d.classes(), 10);
    let mut counts = [0usize; 10];
    d.labels().iter().for_each(|&l| counts[l as usize] += 1);
    assert!(
        counts.iter().all(|&c| (174..=183).contains(&c)),
        "{counts:?}"
    );
    assert!(d.x().iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(d.x().iter().cloned().fold(0.0, f32::max), 1.0);
    // The first image is a 0: dark centre column, bright ring.
    assert_eq!(d.labels()[0], 0);
    assert_eq!(d.x()[3 * 8 + 4], 0.0);
}

#[test]
fn idx_files_plain_and_compressed() {
    let d = dir();
    let pixels: Vec<u8> = (0..3 * 2 * 4).map(|i| (i * 10) as u8).collect();
    let images = idx(&[3, 2, 4], &pixels);
    let labels = idx(&[3], &[4, 0, 9]);
    for (name, imgs, labs) in [
        ("plain", images.clone(), labels.clone()),
        ("gz", gz(&images), gz(&labels)),
    ] {
        let (i, l) = (d.join(format!("{name}-i")), d.join(format!("{name}-l")));
        std::fs::write(&i, imgs).unwrap();
        std::fs::write(&l, labs).unwrap();
        let data = Dataset::from_idx(&i, &l, None).unwrap();
        assert_eq!(data.shape(), Shape::image(2, 4, 1));
        assert_eq!(data.rows(), 3);
        assert_eq!(data.labels(), &[4, 0, 9]);
        assert_eq!(data.classes(), 10);
        assert_eq!(data.x()[5], 50.0 / 255.0);
    }
    // Headers that lie, truncated data, wrong types, mismatched labels.
    let cases: Vec<(Vec<u8>, Vec<u8>, &str)> = vec![
        (
            idx(&[3, 2, 4], &pixels[..20]),
            labels.clone(),
            "need 24 bytes",
        ),
        (
            idx(&[u32::MAX, u32::MAX, 4], &[]),
            labels.clone(),
            "overflow",
        ),
        (
            idx(&[100_000, 100_000, 100], &[]),
            labels.clone(),
            "need 1000000000000 bytes",
        ),
        (
            gz(&idx(&[3, 2, 4], &pixels[..7])),
            labels.clone(),
            "need 24 bytes",
        ),
        (vec![0, 0, 0x0d, 3], labels.clone(), "not supported"),
        (b"PK\x03\x04".to_vec(), labels.clone(), "bad magic"),
        (images.clone(), idx(&[2], &[1, 2]), "labels must be [3]"),
        (idx(&[24], &pixels), labels.clone(), "[N, H, W]"),
    ];
    for (k, (imgs, labs, want)) in cases.into_iter().enumerate() {
        let (i, l) = (d.join(format!("bad{k}-i")), d.join(format!("bad{k}-l")));
        std::fs::write(&i, imgs).unwrap();
        std::fs::write(&l, labs).unwrap();
        let e = Dataset::from_idx(&i, &l, None).unwrap_err();
        assert!(e.to_string().contains(want), "case {k}: {e}");
    }
}

#[test]
fn cifar_batches_become_channels_last() {
    let d = dir();
    let mut rec = vec![7u8];
    // Plane c holds the value c * 100 + (pixel % 7).
    for c in 0..3u32 {
        rec.extend((0..1024u32).map(|i| (c * 100 + i % 7) as u8));
    }
    let mut two = rec.clone();
    two.extend_from_slice(&rec);
    two[3073] = 2;
    let p = d.join("data_batch_1.bin");
    std::fs::write(&p, &two).unwrap();
    let data = Dataset::from_cifar10(&[&p, &p], None).unwrap();
    assert_eq!(data.rows(), 4);
    assert_eq!(data.labels(), &[7, 2, 7, 2]);
    assert_eq!(data.shape(), Shape::image(32, 32, 3));
    // Pixel 3, channel 2 (blue).
    assert_eq!(data.x()[3 * 3 + 2], (200.0 + 3.0) / 255.0);
    std::fs::write(&p, &two[..3000]).unwrap();
    assert!(matches!(
        Dataset::from_cifar10(&[&p], None),
        Err(DataError::Malformed { .. })
    ));
    two[0] = 10;
    std::fs::write(&p, &two).unwrap();
    assert!(matches!(
        Dataset::from_cifar10(&[&p], None),
        Err(DataError::LabelOutOfRange { .. })
    ));
}

#[test]
fn npy_image_arrays() {
    let d = dir();
    let x: Vec<f32> = (0..2 * 3 * 3 * 2).map(|i| i as f32 / 40.0).collect();
    let (i, l) = (d.join("x.npy"), d.join("y.npy"));
    std::fs::write(&i, write_npy_f32(&[2, 3, 3, 2], &x).unwrap()).unwrap();
    std::fs::write(&l, write_npy_f32(&[2], &[1.0, 0.0]).unwrap()).unwrap();
    let data = Dataset::from_npy_images(&i, &l, None).unwrap();
    assert_eq!(data.shape(), Shape::image(3, 3, 2));
    assert_eq!(data.x(), &x[..]);
    assert_eq!(data.classes(), 2);
    std::fs::write(&i, write_npy_f32(&[2, 18], &x).unwrap()).unwrap();
    assert!(Dataset::from_npy_images(&i, &l, None)
        .unwrap_err()
        .to_string()
        .contains("[N, H, W, C]"));
    std::fs::write(&i, write_npy_f32(&[3, 3, 2], &x[..18]).unwrap()).unwrap();
    assert!(Dataset::from_npy_images(&i, &l, None)
        .unwrap_err()
        .to_string()
        .contains("labels must be [3]"));
}

/// `--classes` is honoured by every reader (a label 12 with 10 classes trained 13 before),
/// each file is validated whole (trailing bytes were accepted), and a corrupt gzip body is
/// said to be one (it was "bad magic").
#[test]
fn idx_and_cifar_honour_the_classes_and_are_read_whole() {
    let d = dir();
    let pixels: Vec<u8> = (0..3 * 2 * 4).map(|i| (i * 10) as u8).collect();
    let (i, l) = (d.join("c-images"), d.join("c-labels"));
    std::fs::write(&i, idx(&[3, 2, 4], &pixels)).unwrap();
    std::fs::write(&l, idx(&[3], &[4, 12, 9])).unwrap();
    let e = Dataset::from_idx(&i, &l, Some(10)).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                row: 1,
                classes: 10,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("c-labels") && msg.contains("out of range"),
        "{msg}"
    );
    assert_eq!(Dataset::from_idx(&i, &l, None).unwrap().classes(), 13);
    assert_eq!(Dataset::from_idx(&i, &l, Some(20)).unwrap().classes(), 20);
    assert!(Dataset::from_idx(&i, &l, Some(0)).is_err());
    // Trailing bytes, raw or inside the compressed stream, in either file.
    let mut long = idx(&[3, 2, 4], &pixels);
    long.extend_from_slice(&[1, 2]);
    let labels = idx(&[3], &[4, 1, 9]);
    let mut long_labels = labels.clone();
    long_labels.push(0);
    for (k, (imgs, labs, bad)) in [
        (long.clone(), labels.clone(), &i),
        (gz(&long), labels.clone(), &i),
        (idx(&[3, 2, 4], &pixels), long_labels, &l),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&i, imgs).unwrap();
        std::fs::write(&l, labs).unwrap();
        let e = Dataset::from_idx(&i, &l, None).unwrap_err().to_string();
        assert!(
            e.contains("follow") && e.starts_with(&bad.display().to_string()),
            "case {k}: {e}"
        );
    }
    // A gzip file whose compressed body is damaged.
    let mut body = gz(&idx(&[3, 2, 4], &pixels).repeat(40));
    for b in &mut body[15..30] {
        *b ^= 0x5a;
    }
    std::fs::write(&i, body).unwrap();
    std::fs::write(&l, &labels).unwrap();
    let e = Dataset::from_idx(&i, &l, None).unwrap_err().to_string();
    assert!(
        e.contains("gzip data is corrupt") && e.contains("c-images"),
        "{e}"
    );
    // CIFAR: labels checked against the classes asked for; 10 by default.
    let mut rec = vec![7u8];
    rec.extend(std::iter::repeat_n(0, 3072));
    let p = d.join("classes_batch.bin");
    std::fs::write(&p, &rec).unwrap();
    let e = Dataset::from_cifar10(&[&p], Some(5)).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                row: 0,
                classes: 5,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        Dataset::from_cifar10(&[&p], Some(12)).unwrap().classes(),
        12
    );
    assert_eq!(Dataset::from_cifar10(&[&p], None).unwrap().classes(), 10);
}

/// `.npy` images: an error about the images names the images file (a NaN pixel was reported
/// against the labels file), labels take the one path every reader takes (one-hot `[N, k]`
/// accepted, as the README says), and a label past any class count is out of range in a
/// compact form (4e9 became a Dense(4000000001) layer; 1e300 was printed in 301 digits).
#[test]
fn npy_images_name_the_right_file_and_read_labels_as_features_do() {
    let d = dir();
    let mut x: Vec<f32> = (0..2 * 4 * 4).map(|i| i as f32 / 40.0).collect();
    let (i, l) = (d.join("img_nan.npy"), d.join("lab.npy"));
    x[16 + 13] = f32::NAN;
    std::fs::write(&i, write_npy_f32(&[2, 4, 4], &x).unwrap()).unwrap();
    std::fs::write(&l, write_npy_f32(&[2], &[0.0, 1.0]).unwrap()).unwrap();
    let e = Dataset::from_npy_images(&i, &l, None).unwrap_err();
    assert!(
        matches!(
            &e,
            DataError::NonFinite { path, row: 1, column: 13, .. } if path.ends_with("img_nan.npy")
        ),
        "{e}"
    );
    x[16 + 13] = 0.5;
    std::fs::write(&i, write_npy_f32(&[2, 4, 4], &x).unwrap()).unwrap();
    std::fs::write(
        &l,
        write_npy_f32(&[2, 3], &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]).unwrap(),
    )
    .unwrap();
    let data = Dataset::from_npy_images(&i, &l, None).unwrap();
    assert_eq!(data.labels(), &[2, 0]);
    assert_eq!(data.classes(), 3);
    assert!(Dataset::from_npy_images(&i, &l, Some(4)).is_err());
    std::fs::write(
        &l,
        write_npy_f32(&[2, 3], &[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        Dataset::from_npy_images(&i, &l, None),
        Err(DataError::BadOneHot { row: 0, .. })
    ));
    // Labels as f8, as numpy writes them for floats.
    let f8 = |values: &[f64]| {
        let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        common::npy("<f8", &[values.len()], &payload)
    };
    for (big, shown) in [(4e9, "4000000000"), (1e300, "1e300")] {
        std::fs::write(&l, f8(&[0.0, big])).unwrap();
        let e = Dataset::from_npy_images(&i, &l, None).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, DataError::TooManyClasses { row: 1, .. }),
            "{msg}"
        );
        assert!(
            msg.contains("lab.npy") && msg.contains("out of range"),
            "{msg}"
        );
        assert!(msg.contains(&format!("label {shown} ")), "{msg}");
        assert!(msg.len() < 200, "{msg}");
    }
    std::fs::write(&l, f8(&[0.0, 2.0])).unwrap();
    assert!(matches!(
        Dataset::from_npy_images(&i, &l, Some(2)),
        Err(DataError::LabelOutOfRange {
            row: 1,
            classes: 2,
            ..
        })
    ));
    // Bytes after the array are refused: the file is validated whole.
    let mut long = write_npy_f32(&[2, 4, 4], &x).unwrap();
    long.extend_from_slice(&[0, 0, 0, 0]);
    std::fs::write(&i, long).unwrap();
    std::fs::write(&l, write_npy_f32(&[2], &[0.0, 1.0]).unwrap()).unwrap();
    let e = Dataset::from_npy_images(&i, &l, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("img_nan.npy") && e.contains("follow"), "{e}");
}

/// A gzip is validated whole: every member of a multi-member file is read (only the first
/// was), bytes after the last member are refused (they were accepted), and a corrupt body is
/// reported as corrupt gzip (the garbage header it decodes to was reported as dimensions).
#[test]
fn gzip_files_are_read_and_checked_whole() {
    let d = dir();
    let pixels: Vec<u8> = (0..30 * 8 * 8).map(|i| (i % 251) as u8).collect();
    let images = idx(&[30, 8, 8], &pixels);
    let labels = d.join("gzw-labels-idx1-ubyte");
    std::fs::write(&labels, idx(&[30], &[3; 30])).unwrap();
    let (a, b) = images.split_at(700);
    let multi = d.join("multi-images-idx3-ubyte.gz");
    std::fs::write(&multi, [gz(a), gz(b)].concat()).unwrap();
    let data = Dataset::from_idx(&multi, &labels, None).unwrap();
    assert_eq!(data.rows(), 30);
    assert_eq!(data.x()[1919], pixels[1919] as f32 / 255.0);
    let trail = d.join("trail-images-idx3-ubyte.gz");
    std::fs::write(&trail, [gz(&images), b"garbage!".to_vec()].concat()).unwrap();
    let e = Dataset::from_idx(&trail, &labels, None).unwrap_err();
    assert!(e.to_string().contains("follow the last member"), "{e}");
    // Junk that starts like a gzip header is a corrupt member.
    std::fs::write(&trail, [gz(&images), vec![0x1f, 0x8b, 0, 0]].concat()).unwrap();
    let e = Dataset::from_idx(&trail, &labels, None).unwrap_err();
    assert!(e.to_string().contains(".gz"), "{e}");
    // Stored blocks: the header's bytes lie in the file as they are; 0xff over the three
    // dimensions decodes to a header that overflows, and breaks the checksum.
    let mut stored = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        e.write_all(&images).unwrap();
        e.finish().unwrap()
    };
    let at = 10 + 5 + 4;
    assert_eq!(stored[at..at + 4], 30u32.to_be_bytes());
    stored[at..at + 12].fill(0xff);
    let corrupt = d.join("corrupt-images-idx3-ubyte.gz");
    std::fs::write(&corrupt, stored).unwrap();
    let e = Dataset::from_idx(&corrupt, &labels, None).unwrap_err();
    assert!(e.to_string().contains("the gzip data is corrupt"), "{e}");
}

/// Headers that cannot be true (sizes that overflow) are said to be a corrupt or foreign file,
/// and images files with no images are blamed, not the labels (they were: "labels must be
/// [0], got [30]").
#[test]
fn lying_and_empty_idx_headers_name_the_images_file() {
    let d = dir();
    let labels = d.join("zl-labels-idx1-ubyte");
    std::fs::write(&labels, idx(&[30], &[1; 30])).unwrap();
    let zero = d.join("zero-images-idx3-ubyte");
    std::fs::write(&zero, idx(&[0, 8, 8], &[])).unwrap();
    let e = Dataset::from_idx(&zero, &labels, None).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("zero-images-idx3-ubyte") && text.contains("no images"),
        "{text}"
    );
    assert!(!text.contains("zl-labels"), "{text}");
    let lie = d.join("lie-images-idx3-ubyte");
    std::fs::write(&lie, idx(&[u32::MAX, u32::MAX, u32::MAX], &[0; 8])).unwrap();
    let e = Dataset::from_idx(&lie, &labels, None).unwrap_err();
    assert!(e.to_string().contains("corrupt or not an IDX file"), "{e}");
}

/// The format is told from the content: compressed data that is not IDX is refused in
/// words (a compressed CSV or .npy was read as IDX), an empty file is said to be empty (it
/// was "the CSV x_empty.npy"), and a missing `.bin` is missing (it was "drop --labels").
#[test]
fn formats_are_told_from_the_content() {
    use wgpu_batchnorm::nn::data::FileFormat;
    let d = dir();
    let csv = d.join("ok.csv.gz");
    std::fs::write(&csv, gz(b"1,2,0\n3,4,1\n")).unwrap();
    let npy = d.join("x.npy.gz");
    std::fs::write(&npy, gz(&write_npy_f32(&[2, 2], &[1.0; 4]).unwrap())).unwrap();
    let cifar = d.join("c.bin.gz");
    std::fs::write(&cifar, gz(&[0u8; 3073])).unwrap();
    for (path, says) in [(&csv, "CSV"), (&npy, ".npy"), (&cifar, "CIFAR-10")] {
        let e = FileFormat::detect(path).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains("decompress it"), "{e}");
    }
    let gz_idx = d.join("fmt-images-idx3-ubyte.gz");
    std::fs::write(&gz_idx, gz(&idx(&[1, 1, 1], &[7]))).unwrap();
    assert_eq!(FileFormat::detect(&gz_idx).unwrap(), FileFormat::Idx);
    let empty = d.join("x_empty.npy");
    std::fs::write(&empty, b"").unwrap();
    let e = FileFormat::detect(&empty).unwrap_err().to_string();
    assert!(e.contains("x_empty.npy") && e.contains("empty"), "{e}");
    let missing = FileFormat::detect(&d.join("foo.bin")).unwrap_err();
    assert!(
        matches!(&missing, DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{missing}"
    );
}

/// One rule for u8 data: scaled to [0, 1] when read as images, kept when read as features.
/// u8 `.npy` features `[N, F]` read as images (what `--input-shape` makes of them) were kept
/// as 0..255 while the same bytes as `[N, H, W, C]` were scaled.
#[test]
fn u8_data_is_scaled_whenever_it_is_read_as_images() {
    let d = dir();
    let pixels: Vec<u8> = (0..2 * 8).map(|i| (i * 17) as u8).collect();
    let (flat, image, l) = (d.join("u8f.npy"), d.join("u8i.npy"), d.join("u8y.npy"));
    std::fs::write(&flat, common::npy("|u1", &[2, 8], &pixels)).unwrap();
    std::fs::write(&image, common::npy("|u1", &[2, 2, 2, 2], &pixels)).unwrap();
    std::fs::write(&l, write_npy_f32(&[2], &[1.0, 0.0]).unwrap()).unwrap();
    let as_images = Dataset::from_npy_as_images(&flat, &l, None, [2, 2, 2]).unwrap();
    let images = Dataset::from_npy_images(&image, &l, None).unwrap();
    assert_eq!(as_images, images);
    assert_eq!(as_images.shape(), Shape::image(2, 2, 2));
    assert_eq!(as_images.x()[15], 255.0 / 255.0);
    let features = Dataset::from_npy(&flat, &l, None).unwrap();
    assert_eq!(features.x()[15], 255.0);
    let e = Dataset::from_npy_as_images(&flat, &l, None, [3, 3, 1]).unwrap_err();
    assert!(e.to_string().contains("[N, 9]"), "{e}");
}
