//! Parity with real Keras 3 and PyTorch: golden files made by `tests/fixtures/gen.py`.
//! Both the GPU engine and the CPU reference must reproduce them.

mod common;

use common::{assert_close, ctx, serial};
use serde_json::Value;
use wgpu_batchnorm::cpu::CpuBatchNorm;
use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Layout, Mode};

const CASES: &[&str] = &[
    "keras_dense",
    "keras_nhwc",
    "keras_dense_relu",
    "keras_no_center_scale",
    "torch_nc",
    "torch_nchw",
    "torch_ncdhw_relu",
    "torch_cumulative",
];

fn load(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("json")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|f| f.as_f64().expect("number") as f32)
        .collect()
}

fn config(case: &Value) -> (BatchNormConfig, Vec<usize>) {
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let keras = case["framework"] == "keras";
    let channels = if keras {
        *shape.last().unwrap()
    } else {
        shape[1]
    };
    let mut c = if keras {
        BatchNormConfig::keras(channels)
    } else {
        BatchNormConfig::pytorch(channels)
    };
    assert_eq!(
        c.layout,
        if keras {
            Layout::ChannelsLast
        } else {
            Layout::ChannelsFirst
        }
    );
    c.epsilon = case["epsilon"].as_f64().unwrap() as f32;
    c.momentum = case["momentum"].as_f64();
    c.relu = case["relu"].as_bool().unwrap();
    c.center = case["center"].as_bool().unwrap();
    c.scale = case["scale"].as_bool().unwrap();
    (c, shape)
}

/// The engine under test: GPU or CPU, behind one interface.
trait Engine {
    fn forward(&mut self, x: &[f32], shape: &[usize], mode: Mode) -> Vec<f32>;
    fn batch_stats(&self) -> (Vec<f32>, Vec<f32>);
    fn running(&self) -> (Vec<f32>, Vec<f32>);
    fn backward(
        &mut self,
        x: &[f32],
        dy: &[f32],
        shape: &[usize],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>);
}

impl Engine for BatchNorm {
    fn forward(&mut self, x: &[f32], shape: &[usize], mode: Mode) -> Vec<f32> {
        self.forward_host(x, shape, mode).unwrap()
    }
    fn batch_stats(&self) -> (Vec<f32>, Vec<f32>) {
        (self.batch_mean().unwrap(), self.batch_var().unwrap())
    }
    fn running(&self) -> (Vec<f32>, Vec<f32>) {
        (self.running_mean().unwrap(), self.running_var().unwrap())
    }
    fn backward(
        &mut self,
        x: &[f32],
        dy: &[f32],
        shape: &[usize],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        self.backward_host(x, dy, shape).unwrap()
    }
}

impl Engine for CpuBatchNorm {
    fn forward(&mut self, x: &[f32], shape: &[usize], mode: Mode) -> Vec<f32> {
        CpuBatchNorm::forward(self, x, shape, mode).unwrap()
    }
    fn batch_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let s = self.last_stats().unwrap();
        (
            s.mean.iter().map(|&v| v as f32).collect(),
            s.var.iter().map(|&v| v as f32).collect(),
        )
    }
    fn running(&self) -> (Vec<f32>, Vec<f32>) {
        (self.running_mean().to_vec(), self.running_var().to_vec())
    }
    fn backward(
        &mut self,
        x: &[f32],
        dy: &[f32],
        shape: &[usize],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let g = CpuBatchNorm::backward(self, x, dy, shape).unwrap();
        (g.dx, g.dgamma, g.dbeta)
    }
}

fn replay(engine: &mut dyn Engine, case: &Value, shape: &[usize], tag: &str) {
    for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
        let y = engine.forward(&floats(&step["x"]), shape, Mode::Training);
        assert_close(
            &format!("{tag} step {i} y"),
            &y,
            &floats(&step["y"]),
            1e-4,
            1e-4,
        );
        let (mean, var) = engine.batch_stats();
        assert_close(
            &format!("{tag} step {i} mean"),
            &mean,
            &floats(&step["mean"]),
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("{tag} step {i} var"),
            &var,
            &floats(&step["var"]),
            1e-5,
            1e-4,
        );
        let (rm, rv) = engine.running();
        assert_close(
            &format!("{tag} step {i} running mean"),
            &rm,
            &floats(&step["running_mean"]),
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("{tag} step {i} running var"),
            &rv,
            &floats(&step["running_var"]),
            1e-6,
            1e-5,
        );
    }
    let inf = &case["inference"];
    let y = engine.forward(&floats(&inf["x"]), shape, Mode::Inference);
    assert_close(
        &format!("{tag} inference y"),
        &y,
        &floats(&inf["y"]),
        1e-4,
        1e-4,
    );

    let bw = &case["backward"];
    let x = floats(&bw["x"]);
    let y = engine.forward(&x, shape, Mode::Training);
    assert_close(
        &format!("{tag} backward-step y"),
        &y,
        &floats(&bw["y"]),
        1e-4,
        1e-4,
    );
    let (dx, dgamma, dbeta) = engine.backward(&x, &floats(&bw["dy"]), shape);
    assert_close(&format!("{tag} dx"), &dx, &floats(&bw["dx"]), 1e-4, 1e-3);
    let (want_dgamma, want_dbeta) = (floats(&bw["dgamma"]), floats(&bw["dbeta"]));
    if !want_dgamma.is_empty() {
        assert_close(&format!("{tag} dgamma"), &dgamma, &want_dgamma, 1e-4, 1e-4);
    }
    if !want_dbeta.is_empty() {
        assert_close(&format!("{tag} dbeta"), &dbeta, &want_dbeta, 1e-4, 1e-4);
    }
}

#[test]
fn gpu_and_cpu_reproduce_keras_and_pytorch() {
    let _g = serial();
    for name in CASES {
        let case = load(name);
        let (config, shape) = config(&case);
        let (gamma, beta) = (floats(&case["gamma"]), floats(&case["beta"]));

        let mut gpu = BatchNorm::new(ctx(), config.clone()).unwrap();
        gpu.set_gamma(&gamma).unwrap();
        gpu.set_beta(&beta).unwrap();
        replay(&mut gpu, &case, &shape, &format!("gpu {name}"));

        let mut cpu = CpuBatchNorm::new(config).unwrap();
        cpu.set_gamma(&gamma).unwrap();
        cpu.set_beta(&beta).unwrap();
        replay(&mut cpu, &case, &shape, &format!("cpu {name}"));

        if let Some(n) = case["num_batches_tracked"].as_u64() {
            assert_eq!(gpu.batches_tracked(), n, "{name}");
        }
    }
}
