//! The user's own data: CSV and .npy files load, and bad files give errors that say what and
//! where, with no partial output left behind by `bnorm train`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wgpu_batchnorm::nn::data::write_npy_f32;
use wgpu_batchnorm::nn::{DataError, Dataset};

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
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                row: 1,
                classes: 3,
                ..
            }
        ),
        "{e}"
    );
    let e = Dataset::from_csv(&write(&d, "frac.csv", "1,2,0.5\n"), None, None).unwrap_err();
    assert!(
        matches!(e, DataError::LabelNotInteger { row: 0, .. }),
        "{e}"
    );
    // Said in words, not as a range `0..0` that was never given.
    assert!(!e.to_string().contains("0..0"), "{e}");
    let e = Dataset::from_csv(&write(&d, "onehot.csv", "1,1,1\n"), None, Some(2)).unwrap_err();
    assert!(matches!(e, DataError::BadOneHot { row: 0, .. }), "{e}");
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
    let npy = |descr: &str, shape: &str, payload: &[u8]| {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(payload);
        b
    };
    let x: Vec<u8> = [0.5f64, -2.0, 8.0, 1e3]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let y: Vec<u8> = [1i16, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let (px, py) = (d.join("x.npy"), d.join("y.npy"));
    std::fs::write(&px, npy(">f8", "(2, 2)", &x)).unwrap();
    std::fs::write(&py, npy("<i2", "(2,)", &y)).unwrap();
    let data = Dataset::from_npy(&px, &py, None).unwrap();
    assert_eq!(data.x(), &[0.5, -2.0, 8.0, 1000.0]);
    assert_eq!(data.labels(), &[1, 0]);
    // A header that claims more than the file holds is refused before allocating.
    std::fs::write(&px, npy("<f4", "(4000000000, 4000000000)", &x)).unwrap();
    let e = Dataset::from_npy(&px, &py, None).unwrap_err().to_string();
    assert!(e.contains("cannot hold"), "{e}");
}
