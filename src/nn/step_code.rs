//! What a layer hands the one-workgroup training step (`step.rs`): where its phases read and
//! write, and the WGSL of its phases. A leaf module, so layers can emit phases without
//! depending on the step that composes them.

/// `d_input` of the first layer: none.
pub(crate) const NONE: u32 = u32::MAX;

/// Where one layer's phases read and write, as float offsets (`arena` for activations,
/// `params` / `grads` for the layer's region), and the run-time arguments of the step.
pub(crate) struct StepIo {
    pub rows: usize,
    pub input: usize,
    pub output: usize,
    pub d_output: usize,
    /// `None` for the first layer: nothing reads its input gradient.
    pub d_input: Option<usize>,
    /// The layer's region in `params` and `grads`.
    pub at: usize,
    /// The layer's scratch in `arena` (`StepCode::scratch` floats).
    pub scratch: usize,
    pub(crate) args: Vec<u32>,
}

impl StepIo {
    /// A run-time argument of a phase (a size, an offset): its value goes into the step's
    /// uniform and the WGSL reads it as `d(k)`, so one pipeline serves every batch size. `None`
    /// when it does not fit a u32.
    pub fn arg(&mut self, v: usize) -> Option<String> {
        self.args.push(u32::try_from(v).ok()?);
        Some(format!("d({}u)", self.args.len() - 1))
    }

    /// An f32 argument, passed by its bits (exact).
    pub fn f32_arg(&mut self, v: f32) -> String {
        self.args.push(v.to_bits());
        format!("bitcast<f32>(d({}u))", self.args.len() - 1)
    }

    /// The run-time arguments so far (the step's uniform).
    pub(crate) fn into_args(self) -> Vec<u32> {
        self.args
    }

    /// `d_input` as an argument (`NONE` when there is none).
    pub fn d_input_arg(&mut self) -> Option<String> {
        match self.d_input {
            Some(d) => self.arg(d),
            None => self.arg(NONE as usize),
        }
    }
}

/// A layer's part of the step: WGSL statements (each a phase, followed by a barrier) calling
/// the functions of its `library`.
pub(crate) struct StepCode {
    /// (name, source) of the layer kind's phase functions, included once per kind.
    pub library: (&'static str, &'static str),
    pub forward: Vec<String>,
    pub backward: Vec<String>,
    /// Floats of arena scratch it needs.
    pub scratch: usize,
    /// Forward multiply-adds of one step (what decides whether one workgroup is enough).
    pub macs: usize,
}
