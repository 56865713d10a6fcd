//! The user's own data: CSV and .npy files load, and bad files give errors that say what and
//! where, with no partial output left behind by `bnorm train`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wgpu_batchnorm::nn::data::write_npy_f32;
use wgpu_batchnorm::nn::{DataError, Dataset};

mod common;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bnorm-data-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(d: &Path, name: &str, text: &str) -> PathBuf {
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn csv_round_trip_and_formats() {
    let d = dir("csv");
    let data = Dataset::synthetic(50, 4, 3);
    let p = write(
        &d,
        "ok.csv",
        &format!("f0,f1,f2,f3,label\n# a comment\n{}", data.to_csv()),
    );
    let back = Dataset::from_csv(&p, None, None).unwrap();
    assert_eq!(back, data);
    let p = write(&d, "onehot.csv", "1.5,2,0,1,0\n-3,4e-2,1,0,0\n0,0,0,0,1\n");
    let oh = Dataset::from_csv(&p, None, Some(3)).unwrap();
    assert_eq!(oh.labels(), [1, 0, 2]);
    assert_eq!((oh.features(), oh.classes()), (2, 3));
}

#[test]
fn csv_errors_say_what_and_where() {
    let d = dir("csv-bad");
    let e =
        Dataset::from_csv(&write(&d, "ragged.csv", "1,2,0\n3,4,5,1\n"), None, None).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::RaggedRow {
                line: 2,
                expected: 3,
                got: 4,
                ..
            }
        ),
        "{e}"
    );
    let e = Dataset::from_csv(&write(&d, "nan.csv", "1,2,0\n3,abc,1\n"), None, None).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::NotANumber {
                line: 2,
                column: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("\"abc\""), "{e}");
    let e =
        Dataset::from_csv(&write(&d, "label.csv", "1,2,0\n3,4,3\n"), Some(3), None).unwrap_err();
    // Errors about a row name its 1-based line, as the parse errors do.
    assert!(matches!(e, DataError::Csv { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("label.csv:2: label 3"), "{e}");
    let e = Dataset::from_csv(&write(&d, "frac.csv", "1,2,0.5\n"), None, None).unwrap_err();
    assert!(matches!(e, DataError::Csv { line: 1, .. }), "{e}");
    assert!(e.to_string().contains("not a non-negative integer"), "{e}");
    // Said in words, not as a range `0..0` that was never given.
    assert!(!e.to_string().contains("0..0"), "{e}");
    let e = Dataset::from_csv(&write(&d, "onehot.csv", "1,1,1\n"), None, Some(2)).unwrap_err();
    assert!(matches!(e, DataError::Csv { line: 1, .. }), "{e}");
    assert!(e.to_string().contains("one-hot"), "{e}");
    // A header and a comment move the lines away from the rows: the line is the file's.
    let e = Dataset::from_csv(
        &write(&d, "lines.csv", "a,b,label\n# note\n1,2,0\n3,4,7\n"),
        Some(2),
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:4: label 7", d.join("lines.csv").display())),
        "{e}"
    );
    // Not UTF-8: one line with the line number, not the csv crate's doubled wording.
    let p = d.join("bin.csv");
    std::fs::write(&p, b"1,2,0\n\xff\xfe,3,1\n").unwrap();
    let e = Dataset::from_csv(&p, None, None).unwrap_err().to_string();
    assert!(
        e.contains("bin.csv:2:") && e.contains("not valid UTF-8"),
        "{e}"
    );
    assert!(!e.contains("CSV parse error") && !e.contains('\n'), "{e}");
    // Counts in their number.
    let e = Dataset::from_csv(&write(&d, "one.csv", "1,0\n2,1\n"), Some(1), None).unwrap_err();
    assert!(e.to_string().contains("for 1 class "), "{e}");
    let e = Dataset::from_csv(&write(&d, "onecol.csv", "1\n2\n"), None, None).unwrap_err();
    assert!(e.to_string().contains("rows have 1 column and"), "{e}");
    let e = Dataset::from_csv(&write(&d, "empty.csv", "a,b\n"), None, None).unwrap_err();
    assert!(matches!(e, DataError::Empty(_)), "{e}");
    let e = Dataset::from_csv(&d.join("missing.csv"), None, None).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
    let ok = Dataset::from_csv(&write(&d, "ok.csv", "1,2,0\n3,4,1\n"), None, None).unwrap();
    let e = ok.expect_features("ok.csv", 20).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::FeatureMismatch {
                expected: 20,
                got: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn npy_files_load_and_fail_clearly() {
    let d = dir("npy");
    let x = d.join("x.npy");
    let y = d.join("y.npy");
    std::fs::write(
        &x,
        write_npy_f32(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
    )
    .unwrap();
    std::fs::write(&y, write_npy_f32(&[3], &[0.0, 2.0, 1.0]).unwrap()).unwrap();
    let data = Dataset::from_npy(&x, &y, None).unwrap();
    assert_eq!(data.labels(), [0, 2, 1]);
    assert_eq!((data.features(), data.classes()), (2, 3));
    std::fs::write(
        &y,
        write_npy_f32(&[3, 2], &[0.0, 1.0, 1.0, 0.0, 0.0, 1.0]).unwrap(),
    )
    .unwrap();
    assert_eq!(Dataset::from_npy(&x, &y, None).unwrap().labels(), [1, 0, 1]);
    std::fs::write(&y, write_npy_f32(&[2], &[0.0, 1.0]).unwrap()).unwrap();
    assert!(matches!(
        Dataset::from_npy(&x, &y, None),
        Err(DataError::Npy { .. })
    ));
    std::fs::write(&y, write_npy_f32(&[3], &[0.0, 1.0, 9.0]).unwrap()).unwrap();
    assert!(matches!(
        Dataset::from_npy(&x, &y, Some(3)),
        Err(DataError::LabelOutOfRange { row: 2, .. })
    ));
    std::fs::write(&y, b"garbage").unwrap();
    assert!(matches!(
        Dataset::from_npy(&x, &y, None),
        Err(DataError::Npy { .. })
    ));
    // A header dictionary that does not parse: one line (it was the parser's multi-line
    // report).
    let mut b = b"\x93NUMPY\x01\x00\x36\x00not a dict at all".to_vec();
    b.resize(8 + 2 + 0x35, b' ');
    b.push(b'\n');
    b.extend([0u8; 24]);
    std::fs::write(&y, b).unwrap();
    let e = Dataset::from_npy(&x, &y, None).unwrap_err().to_string();
    assert!(e.contains("not a valid .npy header"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    // A NaN feature is reported against the features file (it named the labels file).
    std::fs::write(&y, write_npy_f32(&[3], &[0.0, 1.0, 1.0]).unwrap()).unwrap();
    std::fs::write(
        &x,
        write_npy_f32(&[3, 2], &[1.0, 2.0, 3.0, f32::NAN, 5.0, 6.0]).unwrap(),
    )
    .unwrap();
    let e = Dataset::from_npy(&x, &y, None).unwrap_err();
    assert!(
        matches!(&e, DataError::NonFinite { path, row: 1, column: 1, .. } if path.ends_with("x.npy")),
        "{e}"
    );
    // One-hot labels must agree with the classes asked for.
    std::fs::write(&x, write_npy_f32(&[3, 2], &[1.0; 6]).unwrap()).unwrap();
    std::fs::write(
        &y,
        write_npy_f32(&[3, 2], &[0.0, 1.0, 1.0, 0.0, 0.0, 1.0]).unwrap(),
    )
    .unwrap();
    assert!(Dataset::from_npy(&x, &y, Some(2)).is_ok());
    assert!(Dataset::from_npy(&x, &y, Some(3)).is_err());
}

/// `bnorm train` with data flags that do not fit the data: each refused in words naming the
/// file (IDX images without labels gave a CSV UTF-8 error; `--labels` with CIFAR and
/// `--classes` with IDX were ignored; a `[8, 8, 1]` model silently read `[4, 16, 1]` images).
#[test]
fn bnorm_train_refuses_data_flags_that_do_not_fit() {
    let d = dir("flags");
    let idx = |dims: &[u32], data: &[u8]| {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for v in dims {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    };
    let images = d.join("train-images-idx3-ubyte");
    std::fs::write(&images, idx(&[3, 2, 4], &[7; 24])).unwrap();
    let labels = d.join("train-labels-idx1-ubyte");
    std::fs::write(&labels, idx(&[3], &[1, 12, 3])).unwrap();
    let cifar = d.join("data_batch_1.bin");
    std::fs::write(&cifar, [vec![3u8], vec![0; 3072]].concat()).unwrap();
    let npy_images = d.join("x416.npy");
    std::fs::write(
        &npy_images,
        write_npy_f32(&[2, 4, 16, 1], &[0.5; 128]).unwrap(),
    )
    .unwrap();
    let npy_labels = d.join("y.npy");
    std::fs::write(&npy_labels, write_npy_f32(&[3], &[0.0, 1.0, 1.0]).unwrap()).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["--data".into(), s(&images)],
            vec!["train-images-idx3-ubyte", "IDX images need --labels"],
        ),
        (
            vec!["--data".into(), s(&npy_images)],
            vec!["x416.npy", "needs --labels"],
        ),
        (
            vec!["--data".into(), s(&cifar), "--labels".into(), s(&labels)],
            vec!["data_batch_1.bin", "carry their labels"],
        ),
        (
            vec!["--data".into(), s(&cifar), "--classes".into(), "2".into()],
            vec!["data_batch_1.bin", "row 0", "out of range"],
        ),
        (
            vec![
                "--data".into(),
                s(&images),
                "--labels".into(),
                s(&labels),
                "--classes".into(),
                "10".into(),
            ],
            vec!["train-labels-idx1-ubyte", "row 1", "out of range"],
        ),
        // The header is checked against the model before the file is read (its labels,
        // 3 rows for 2 images, are never looked at).
        (
            vec![
                "--data".into(),
                s(&npy_images),
                "--labels".into(),
                s(&npy_labels),
                "--input-shape".into(),
                "8,8,1".into(),
            ],
            vec!["(None, 4, 16, 1)", "the model takes images (None, 8, 8, 1)"],
        ),
        (
            vec![
                "--data".into(),
                "digits".into(),
                "--input-shape".into(),
                "4,16,1".into(),
            ],
            vec!["the model takes images (None, 4, 16, 1)"],
        ),
    ];
    for (args, says) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_bnorm"))
            .args(["train", "--device", "cpu", "--epochs", "1"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for want in says {
            assert!(
                err.contains(want),
                "{args:?}: stderr does not say {want:?}:\n{err}"
            );
        }
        assert!(
            !err.contains("UTF-8") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("Epoch"),
            "{args:?} trained"
        );
    }
    // Within range, the classes asked for are the classes trained.
    std::fs::write(&labels, idx(&[3], &[1, 2, 3])).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bnorm"))
        .args([
            "train",
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--validation-split",
            "0",
        ])
        .arg("--data")
        .arg(&images)
        .arg("--labels")
        .arg(&labels)
        .args(["--classes", "10", "--model", "dense"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("x 10 classes"), "{text}");
}

#[test]
fn bnorm_train_with_bad_data_fails_and_writes_nothing() {
    let d = dir("cli");
    let save = d.join("model.safetensors");
    let plot = d.join("plot.png");
    for (name, text) in [
        ("ragged.csv", "1,2,0\n3,4\n"),
        ("nan.csv", "1,x,0\n"),
        ("wide.csv", "1,2,0\n3,4,1\n"),
    ] {
        let p = write(&d, name, text);
        let out = Command::new(env!("CARGO_BIN_EXE_bnorm"))
            .args([
                "train",
                "--device",
                "cpu",
                "--epochs",
                "1",
                "--classes",
                "2",
            ])
            .arg("--data")
            .arg(&p)
            .arg("--save")
            .arg(&save)
            .arg("--plot")
            .arg(&plot)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if name == "wide.csv" {
            // Valid data: the run succeeds and writes both outputs.
            assert!(out.status.success(), "{stderr}");
            assert!(save.exists() && plot.exists());
            std::fs::remove_file(&save).unwrap();
            std::fs::remove_file(&plot).unwrap();
        } else {
            assert!(!out.status.success(), "{name} should fail");
            assert!(stderr.contains(name), "{name}: {stderr}");
            assert!(
                !save.exists() && !plot.exists(),
                "{name} left output behind"
            );
        }
    }
}

/// What real files look like: a byte-order mark, CRLF line ends, quoted cells (CSV), and
/// numpy's other byte orders and integer types (`.npy`).
#[test]
fn files_from_other_tools_load() {
    let d = dir("tools");
    let p = d.join("excel.csv");
    std::fs::write(
        &p,
        "\u{feff}\"a\",\"b\",\"label\"\r\n\"1.5\",2,0\r\n3,\" 4 \",1\r\n",
    )
    .unwrap();
    let data = Dataset::from_csv(&p, None, None).unwrap();
    assert_eq!(data.x(), &[1.5, 2.0, 3.0, 4.0]);
    assert_eq!(data.labels(), &[0, 1]);
    // Big-endian f8 features and i2 labels, as numpy writes them.
    let x: Vec<u8> = [0.5f64, -2.0, 8.0, 1e3]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let y: Vec<u8> = [1i16, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let (px, py) = (d.join("x.npy"), d.join("y.npy"));
    std::fs::write(&px, common::npy(">f8", &[2, 2], &x)).unwrap();
    std::fs::write(&py, common::npy("<i2", &[2], &y)).unwrap();
    let data = Dataset::from_npy(&px, &py, None).unwrap();
    assert_eq!(data.x(), &[0.5, -2.0, 8.0, 1000.0]);
    assert_eq!(data.labels(), &[1, 0]);
    // A header that claims more than the file holds is refused before allocating.
    std::fs::write(&px, common::npy("<f4", &[4000000000, 4000000000], &x)).unwrap();
    let e = Dataset::from_npy(&px, &py, None).unwrap_err().to_string();
    assert!(e.contains("cannot hold"), "{e}");
}

/// The CLI's validation split keeps one copy of the data (the training rows reuse the loaded
/// buffer; `split_validation` copies both parts): both give the same parts and refusals.
#[test]
fn the_consuming_validation_split_equals_the_copying_one() {
    let data = Dataset::synthetic(101, 7, 5);
    for fraction in [0.2, 0.5, 0.01, 0.99] {
        let copied = data.split_validation(fraction).unwrap();
        let moved = data.clone().into_validation_split(fraction).unwrap();
        assert_eq!(copied, moved, "{fraction}");
    }
    for fraction in [0.0, 1.0, 0.001, f64::NAN] {
        let a = data.split_validation(fraction).unwrap_err().to_string();
        let b = data.clone().into_validation_split(fraction).unwrap_err();
        assert_eq!(a, b.to_string(), "{fraction}");
    }
}
