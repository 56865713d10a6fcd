//! The `bnorm` binary end to end: the benchmark's JSON, the training table, `info`.

use std::process::Command;

use wgpu_batchnorm::nn::data::write_npy_f32;

mod common;

use common::bnorm;

#[test]
fn bench_checks_gpu_against_cpu_and_writes_json() {
    let json = std::env::temp_dir().join(format!("bnorm-bench-{}.json", std::process::id()));
    let (ok, stdout, stderr) = bnorm(&[
        "bench",
        "--shapes",
        "32x10,4x3x5x5:first",
        "--reps",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("memcpy bandwidth") && stdout.contains("32x10:last"),
        "{stdout}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 6, "2 shapes x 3 passes");
    for r in results {
        assert!(r["cpu_s"].as_f64().unwrap() > 0.0);
        assert!(r["max_difference"].as_f64().unwrap() < 1e-3, "{r}");
        let per_element = r["bytes"].as_u64().unwrap() / r["elements"].as_u64().unwrap();
        let want = match r["pass"].as_str().unwrap() {
            "forward" => 12,
            "inference" => 8,
            _ => 20,
        };
        assert_eq!(per_element, want);
    }
    std::fs::remove_file(&json).ok();
    let (ok, _, stderr) = bnorm(&["bench", "--shapes", "32x0"]);
    assert!(!ok && stderr.contains("bad shape"), "{stderr}");
}

#[test]
fn train_prints_both_runs_and_the_cpu_path_agrees() {
    let (ok, gpu, stderr) = bnorm(&["train", "--epochs", "2"]);
    assert!(ok, "{stderr}");
    let (ok, cpu, stderr) = bnorm(&["train", "--epochs", "2", "--device", "cpu"]);
    assert!(ok, "{stderr}");
    let rows = |s: &str| -> Vec<Vec<f64>> {
        s.lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains('|'))
            .map(|l| {
                l.split('|')
                    .skip(1)
                    .flat_map(|c| c.split_whitespace().map(|v| v.parse::<f64>().unwrap()))
                    .collect()
            })
            .collect()
    };
    let (g, c) = (rows(&gpu), rows(&cpu));
    assert_eq!(g.len(), 2, "{gpu}");
    for (a, b) in g.iter().zip(&c) {
        assert_eq!(a.len(), 4, "loss and accuracy, with and without BN");
        // f32 against f64. With BN the two agree to 1e-3; without it the network sees inputs
        // of scale 100 and saturated softmaxes, where f32 rounding compounds step by step, so
        // only 2% is asked of the no-BN loss.
        let tolerance = [1e-3, 2e-3, 2e-2, 2e-3];
        for ((x, y), tol) in a.iter().zip(b).zip(tolerance) {
            assert!((x - y).abs() <= tol * y.abs().max(1.0), "{gpu}\n{cpu}");
        }
    }
    assert!(
        gpu.contains("Total params") && gpu.contains("batch_normalization"),
        "{gpu}"
    );
}

#[test]
fn info_names_the_adapter() {
    let (ok, out, stderr) = bnorm(&["info"]);
    assert!(ok, "{stderr}");
    assert!(
        out.contains("in use:") && out.contains("subgroups"),
        "{out}"
    );
    // Every adapter is listed, the one in use among them.
    let listed = out.lines().filter(|l| l.starts_with("adapter: ")).count();
    assert!(listed >= 1, "{out}");
}

/// Runs `bnorm` with a deadline: a hang fails the test instead of hanging it.
fn bnorm_within(secs: u64, args: &[&str]) -> (bool, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bnorm"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed().as_secs() >= secs {
            child.kill().ok();
            panic!("bnorm {args:?} did not finish within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).ok();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    (status.success(), out, err)
}

/// Runs `bnorm args` (60 s at most) and asserts that it fails saying each of `says` on
/// stderr; returns (stdout, stderr) for the caller's own checks.
fn refused(args: &[&str], says: &[&str]) -> (String, String) {
    let (ok, out, err) = bnorm_within(60, args);
    assert!(!ok, "{args:?} succeeded:\n{out}");
    for s in says {
        assert!(
            err.contains(s),
            "{args:?}: stderr does not say {s:?}:\n{err}"
        );
    }
    (out, err)
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("bnorm-cli-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Bad arguments fail fast, in words, before any training, with nothing written and no panic.
#[test]
fn bad_arguments_fail_before_the_work() {
    let d = temp("args");
    let ok_csv = d.join("ok.csv");
    std::fs::write(&ok_csv, "1,2,0\n3,4,1\n5,6,2\n7,8,0\n").unwrap();
    let nan_csv = d.join("nan.csv");
    std::fs::write(&nan_csv, "1,2,0\n3,nan,1\n").unwrap();
    let ok = ok_csv.to_str().unwrap();
    let nan = nan_csv.to_str().unwrap();
    let e0 = d.join("e0.png");
    let sub = d.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // Used to hang at 90% CPU.
        (
            vec!["train", "--epochs", "0", "--plot", e0.to_str().unwrap()],
            "--epochs",
        ),
        (vec!["train", "--batch-size", "0"], "--batch-size"),
        (vec!["train", "--save", "nodir/w.safetensors"], "--save"),
        (vec!["train", "--plot", "nodir/p.png"], "--plot"),
        (vec!["train", "--plot", "p.jpg"], "PNG"),
        (vec!["train", "--plot", sub.to_str().unwrap()], "--plot"),
        (
            vec!["train", "--save", sub.to_str().unwrap()],
            "is a directory",
        ),
        (vec!["train", "--data", ok, "--one-hot", "0"], "one-hot"),
        (
            vec!["train", "--data", ok, "--one-hot", "5"],
            "leaves no features",
        ),
        (vec!["train", "--data", nan], "not a finite number"),
        (
            vec!["train", "--validation-split", "1.5"],
            "strictly between 0 and 1",
        ),
        (
            vec!["train", "--validation-split", "1"],
            "strictly between 0 and 1",
        ),
        (
            vec!["train", "--validation-split", "NaN"],
            "strictly between 0 and 1",
        ),
        (
            vec!["train", "--validation-split=-1"],
            "strictly between 0 and 1",
        ),
        (
            vec!["train", "--validation-split", "0.0001"],
            "0 validation rows",
        ),
        (vec!["train", "--lr=-1"], "learning rate"),
        (vec!["train", "--lr", "0"], "learning rate"),
        (vec!["train", "--lr", "NaN"], "learning rate"),
        (
            vec!["train", "--optimizer", "sgd", "--momentum", "NaN"],
            "momentum",
        ),
        (
            vec!["train", "--optimizer", "sgd", "--momentum=-5"],
            "momentum",
        ),
        (vec!["train", "--optimizer", "rmsprop"], "unknown optimizer"),
        (
            vec!["train", "--hidden", "100000000", "--device", "cpu"],
            "at most",
        ),
        (vec!["train", "--hidden", "0"], "--hidden"),
        (
            vec!["bench", "--shapes", "4294967296x4294967296"],
            "more elements",
        ),
        (
            vec!["bench", "--shapes", "100000000x1000"],
            "not enough host memory",
        ),
        (
            vec!["bench", "--shapes", "8x4", "--plot", "nodir/b.png"],
            "--plot",
        ),
    ];
    for (args, says) in cases {
        let (out, err) = refused(&args, &[says]);
        assert!(!err.contains("panicked"), "{args:?}:\n{err}");
        assert!(
            !out.contains("Epoch"),
            "{args:?} trained before failing:\n{out}"
        );
    }
    assert!(!e0.exists());
    let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
    assert_eq!(left.len(), 3, "only the inputs and the directory remain");
    std::fs::remove_dir_all(&d).ok();
}

/// `bnorm train | head -1`: the program ends quietly when its reader goes away (it panicked
/// on the broken pipe).
#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bnorm"))
        .args(["train", "--device", "cpu", "--epochs", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("device:"), "{first}");
    // The reader is dropped here: every later write hits a closed pipe.
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    assert!(!err.contains("panicked"), "{err}");
    assert!(status.success(), "{status:?} {err}");
}

/// A plot that cannot be written leaves no file; one that can is a PNG.
#[test]
fn plots_are_written_whole() {
    let d = temp("plot");
    let p = d.join("loss.png");
    let (ok, out, err) = bnorm_within(
        300,
        &[
            "train",
            "--device",
            "cpu",
            "--epochs",
            "2",
            "--plot",
            p.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}\n{err}");
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left");
    std::fs::remove_dir_all(&d).ok();
}

/// The table needs both networks: a BN network whose plain twin used to be invalid
/// (`conv,relu,relu`: refused after the BN run had trained) trains both and prints both.
#[test]
fn the_no_bn_twin_of_a_valid_network_trains_too() {
    let layers = "conv:4:3:same,relu,bn,relu,flatten,dense:10";
    for extra in [&[][..], &["--no-bn"][..]] {
        let mut args = vec![
            "train", "--layers", layers, "--data", "digits", "--epochs", "1", "--device", "cpu",
        ];
        args.extend(extra);
        let (ok, out, err) = bnorm(&args);
        assert!(ok, "{extra:?}: {out}\n{err}");
        assert!(out.contains("Loss noBN"), "{extra:?}: {out}");
    }
    // A network that cannot be built is refused before anything trains.
    let (ok, out, err) = bnorm(&[
        "train",
        "--layers",
        "conv:4:3:same,flatten,relu,dense:10",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]);
    assert!(!ok && err.contains("the network with BN"), "{err}");
    assert!(!out.contains("s in fit"), "{out}");
}

/// --input-shape with --model-json is checked against the model's input (it was ignored).
#[test]
fn input_shape_must_match_the_keras_model() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keras_cnn_model.json"
    );
    let run = |shape: &str| {
        bnorm(&[
            "train",
            "--model-json",
            model,
            "--input-shape",
            shape,
            "--data",
            "digits",
            "--epochs",
            "1",
            "--device",
            "cpu",
        ])
    };
    let (ok, _, err) = run("4,16,1");
    assert!(
        !ok && err.contains("--input-shape") && err.contains("differs"),
        "{err}"
    );
    let (ok, out, err) = run("8,8,1");
    assert!(ok, "{out}\n{err}");
    // A Keras field we cannot honour is named with its layer, before any data is read.
    let json = std::env::temp_dir().join(format!("bnorm-nobias-{}.json", std::process::id()));
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model).unwrap()).unwrap();
    doc["config"]["layers"][5]["config"]["use_bias"] = false.into();
    std::fs::write(&json, doc.to_string()).unwrap();
    let (ok, _, err) = bnorm(&[
        "train",
        "--model-json",
        json.to_str().unwrap(),
        "--data",
        "/nonexistent.csv",
    ]);
    assert!(
        !ok && err.contains("\"dense\" (Dense), field use_bias"),
        "{err}"
    );
    std::fs::remove_file(&json).ok();
}

/// The data flags with an embedded set are honoured or refused in words (they were ignored,
/// exit 0: `--data digits --classes 5` trained 10 classes).
#[test]
fn embedded_sets_honour_or_refuse_the_data_flags() {
    let d = temp("embedded");
    let labels = d.join("y.csv");
    std::fs::write(&labels, "0\n").unwrap();
    let labels = labels.to_str().unwrap();
    let w = d.join("w.safetensors");
    let w = w.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--data", "digits", "--classes", "5"],
            "the embedded digits set has 10 classes",
        ),
        (
            vec!["train", "--classes", "2"],
            "the embedded synthetic set has 3",
        ),
        (
            vec!["train", "--classes", "0"],
            "--classes must be at least 1",
        ),
        (
            vec!["train", "--data", "digits", "--classes", "0"],
            "--classes must be at least 1",
        ),
        (
            vec!["train", "--data", "digits", "--labels", labels],
            "carries its labels",
        ),
        (vec!["train", "--one-hot", "3"], "--one-hot is for CSV data"),
        (
            vec!["train", "--data", "digits", "--one-hot", "3"],
            "--one-hot is for CSV data",
        ),
        (
            vec![
                "predict",
                "--weights",
                w,
                "--data",
                "digits",
                "--classes",
                "5",
            ],
            "the embedded digits set has 10 classes",
        ),
    ];
    for (args, says) in cases {
        let (out, _) = refused(&args, &[says]);
        assert!(!out.contains("Epoch"), "{args:?} trained:\n{out}");
    }
    // More classes than the labels need are honoured.
    let (ok, out, err) = bnorm_within(
        120,
        &[
            "train",
            "--data",
            "digits",
            "--classes",
            "12",
            "--model",
            "dense",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--no-bn",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("x 12 classes"), "{out}");
    std::fs::remove_dir_all(&d).ok();
}

/// An output on the path of an input or of another output is refused before anything runs
/// (`--save` replaced the training data; `--save` and `--plot` on one path lost the weights).
#[test]
fn outputs_may_not_overwrite_inputs_or_each_other() {
    let d = temp("outputs");
    let x = d.join("xx.npy");
    let y = d.join("yy.npy");
    std::fs::write(&x, write_npy_f32(&[4, 2], &[1.0; 8]).unwrap()).unwrap();
    std::fs::write(&y, write_npy_f32(&[4], &[0.0, 1.0, 0.0, 1.0]).unwrap()).unwrap();
    let before = std::fs::read(&x).unwrap();
    let json = d.join("m.json");
    std::fs::write(&json, "{}").unwrap();
    let (xs, ys, js) = (
        x.to_str().unwrap(),
        y.to_str().unwrap(),
        json.to_str().unwrap(),
    );
    // The same file by another spelling.
    let x_again = d.join(".").join("xx.npy");
    let both = d.join("both.png");
    let both = both.to_str().unwrap();
    let bench = d.join("b.json");
    let bench = bench.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--data", xs, "--labels", ys, "--save", xs],
            "--save",
        ),
        (
            vec![
                "train",
                "--data",
                xs,
                "--labels",
                ys,
                "--save",
                x_again.to_str().unwrap(),
            ],
            "is the input --data",
        ),
        (
            vec!["train", "--data", xs, "--labels", ys, "--plot", ys],
            "is the input --labels",
        ),
        (
            vec!["train", "--save", both, "--plot", both],
            "is also the path of --save",
        ),
        (
            vec!["train", "--model-json", js, "--save", js],
            "is the input --model-json",
        ),
        (
            vec!["bench", "--shapes", "8x4", "--json", bench, "--plot", bench],
            "is also the path of --json",
        ),
    ];
    for (args, says) in cases {
        refused(&args, &[says]);
    }
    assert_eq!(
        std::fs::read(&x).unwrap(),
        before,
        "the data was overwritten"
    );
    assert!(!d.join("both.png").exists() && !d.join("b.json").exists());
    std::fs::remove_dir_all(&d).ok();
}

/// u8 features `[N, F]` that a convolutional network reads as images (`--input-shape`) are
/// scaled to [0, 1] as every image reader scales them (they reached the network as 0..255).
#[test]
fn u8_features_read_as_images_are_scaled() {
    let d = temp("u8");
    let (x, y, w) = (d.join("x.npy"), d.join("y.npy"), d.join("w.safetensors"));
    std::fs::write(&x, common::npy("|u1", &[4, 8], &[255; 32])).unwrap();
    std::fs::write(&y, common::npy("|u1", &[4], &[0, 1, 0, 1])).unwrap();
    let (x, y, w) = (
        x.to_str().unwrap(),
        y.to_str().unwrap(),
        w.to_str().unwrap(),
    );
    let net = [
        "--data",
        x,
        "--labels",
        y,
        "--layers",
        "conv:2:1,flatten,dense:2",
        "--input-shape",
        "2,2,2",
        "--device",
        "cpu",
    ];
    let train = [
        &["train", "--epochs", "1", "--no-bn", "--save", w][..],
        &net[..],
    ]
    .concat();
    let (ok, _, err) = bnorm_within(120, &train);
    assert!(ok, "{err}");
    let predict = [&["predict", "--no-bn", "--weights", w][..], &net[..]].concat();
    let (ok, out, err) = bnorm_within(120, &predict);
    assert!(ok, "{err}");
    let input = out.lines().find(|l| l.starts_with("input")).unwrap_or("");
    assert!(input.contains("1.0000") && !input.contains("255"), "{out}");
    std::fs::remove_dir_all(&d).ok();
}

/// The QA probe's cases: each refused before training, in words (no panic, no Rust `Debug`
/// form, no saturated count printed as if it were one).
#[test]
fn probe_cases_are_refused_in_words() {
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        // Panicked (a multiply overflow sizing the progress bar).
        (
            vec![
                "train",
                "--device",
                "cpu",
                "--epochs",
                "9223372036854775808",
            ],
            &["--epochs", "history", "2^64 or more"],
        ),
        // A history that cannot be held is refused before training.
        (
            vec!["train", "--device", "cpu", "--epochs", "1000000000000"],
            &["--epochs", "not enough host memory"],
        ),
        (
            vec!["bench", "--cpu-only", "--shapes", "99999999999x99999999"],
            &["2^64 or more bytes"],
        ),
        (
            vec![
                "train",
                "--device",
                "cpu",
                "--data",
                "digits",
                "--layers",
                "conv:4:9,flatten,dense:10",
            ],
            &["Conv2D(4, 9x9, stride 1, valid) does not fit"],
        ),
        (
            vec![
                "train",
                "--device",
                "cpu",
                "--model",
                "cnn",
                "--input-shape",
                "2,2,1",
            ],
            &["MaxPooling2D(2x2, stride 2, valid) does not fit"],
        ),
        // Named by its place in the list, with what it received (it said "give the model
        // an image input shape" of an image model).
        (
            vec![
                "train", "--device", "cpu", "--data", "digits", "--layers", "flatten,gap,dense:10",
            ],
            &["layer 1: GlobalAveragePooling2D after Flatten receives a vector of 64 features; it needs a feature map"],
        ),
        // Reported as "label 2 is out of range for 2 classes" once training had started.
        (
            vec![
                "train",
                "--device",
                "cpu",
                "--data",
                "digits",
                "--layers",
                "flatten,dense:2",
            ],
            &["the last Dense layer has 2 outputs but the data has 10 classes"],
        ),
        // Flags that were silently ignored.
        (
            vec![
                "train",
                "--device",
                "cpu",
                "--hidden",
                "5",
                "--layers",
                "dense:5,dense:3",
            ],
            &["--hidden does not apply to --layers"],
        ),
        (
            vec![
                "train", "--device", "cpu", "--hidden", "5", "--model", "cnn",
            ],
            &["--hidden does not apply to --model cnn"],
        ),
        (
            vec![
                "train", "--device", "cpu", "--hidden", "5", "--data", "digits",
            ],
            &["--hidden does not apply to the cnn model"],
        ),
        // Flat data given an image shape goes to the cnn model (the dense one ignored it).
        (
            vec!["train", "--device", "cpu", "--input-shape", "4,5,1", "--hidden", "3"],
            &["--hidden does not apply to the cnn model"],
        ),
        (
            vec![
                "train",
                "--device",
                "cpu",
                "--model",
                "dense",
                "--input-shape",
                "4,5,1",
            ],
            &["--input-shape does not apply to --model dense"],
        ),
        (
            vec!["train", "--device", "cpu", "--momentum", "0.5"],
            &["--momentum does not apply to adam"],
        ),
    ];
    for (args, says) in cases {
        let (out, err) = refused(&args, says);
        for debug in ["panicked", "{ ", "18446744073709551615"] {
            assert!(!err.contains(debug), "{args:?}:\n{err}");
        }
        assert!(!out.contains("Epoch"), "{args:?} trained:\n{out}");
    }
}

/// The defaults follow the network: a --layers network without an image input, a conv or a
/// pooling layer is not convolutional (it held out 20% and took batches of 16), one with a
/// conv is; --momentum with sgd and --hidden with the dense model still apply.
#[test]
fn defaults_follow_the_network() {
    let run = |args: &[&str]| {
        let (ok, out, err) = bnorm_within(120, args);
        assert!(ok, "{args:?}:\n{err}");
        out
    };
    let dense = run(&[
        "train",
        "--device",
        "cpu",
        "--layers",
        "dense:5,bn,dense:3",
        "--epochs",
        "1",
    ]);
    assert!(!dense.contains("held out"), "{dense}");
    assert!(
        dense.contains("(32 steps)"),
        "1000 rows in batches of 32:\n{dense}"
    );
    let conv = run(&[
        "train",
        "--device",
        "cpu",
        "--data",
        "digits",
        "--layers",
        "conv:2:3,flatten,dense:10",
        "--epochs",
        "1",
        "--no-bn",
    ]);
    assert!(conv.contains("held out"), "{conv}");
    let sgd = run(&[
        "train",
        "--device",
        "cpu",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.5",
        "--hidden",
        "4",
        "--model",
        "dense",
        "--epochs",
        "1",
    ]);
    assert!(sgd.contains("Epoch"), "{sgd}");
}

/// A declared input whose count of values overflows is said to be 2^64 or more, not the
/// saturated 18446744073709551615 (2^65 here).
#[test]
fn an_overflowing_input_count_is_not_printed_as_a_count() {
    let d = temp("count");
    let (x, y) = (d.join("x.npy"), d.join("y.npy"));
    std::fs::write(&x, write_npy_f32(&[2, 3], &[0.0; 6]).unwrap()).unwrap();
    std::fs::write(&y, write_npy_f32(&[2], &[0.0, 1.0]).unwrap()).unwrap();
    let (ok, out, err) = bnorm_within(
        60,
        &[
            "train",
            "--device",
            "cpu",
            "--data",
            x.to_str().unwrap(),
            "--labels",
            y.to_str().unwrap(),
            "--layers",
            "conv:4:3,flatten,dense:3",
            "--input-shape",
            "4294967296,4294967296,2",
        ],
    );
    assert!(!ok, "{out}");
    assert!(err.contains("the model takes 2^64 or more"), "{err}");
    assert!(!err.contains("18446744073709551615"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}
