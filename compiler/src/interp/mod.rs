//! The F32 reference interpreter of the top IR (ndarray, rayon, `gemm`).
//!
//! [`Interpreter::new`] resolves every `top.Weight` once (borrowing f32 arrays from the weight
//! store, converting others), so repeated runs (calibration over many images) only compute.
//! [`Interpreter::run_observe`] executes ops in program order and frees every intermediate as
//! soon as no later op or output needs it. Op semantics are those of `ir/TOP_OPS.md`.

mod conv;
mod direct3x3;
mod dispatch;
mod elementwise;
mod gemm_util;
mod pool;
#[cfg(test)]
mod real_model_tests;
mod reduce;
mod resize;
mod sgemm;
mod shape;
#[cfg(test)]
mod tests;
mod winograd;
#[cfg(test)]
mod winograd_tests;

use crate::ir::weights::{TensorData, Weights};
use crate::ir::{Func, Module, Op, TensorType, ValueId};
use ndarray::{ArrayD, IxDyn};

/// A float tensor in NCHW (row-major) layout.
pub type Tensor = ArrayD<f32>;

/// Errors of interpretation; each names the op.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// An op kind the interpreter does not know.
    #[error("op '{name}': unsupported op type {kind}")]
    Unsupported { name: String, kind: String },
    /// Inputs given do not match the function arguments.
    #[error("input {index}: {msg}")]
    BadInput { index: usize, msg: String },
    /// Anything else wrong with one op (missing weight, bad attribute, shape mismatch).
    #[error("op '{name}' ({kind}): {msg}")]
    Op { name: String, kind: String, msg: String },
}

/// Size the global rayon pool the interpreter computes on (call before the first run; later
/// calls are ignored). Returns false when the pool already existed.
pub fn init_thread_pool(threads: usize) -> bool {
    rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build_global().is_ok()
}

/// A resolved constant: borrowed from the weight store when it is already f32 of the right
/// shape, otherwise converted once.
enum Const<'a> {
    Borrowed(&'a Tensor),
    Owned(Tensor),
}

impl Const<'_> {
    fn tensor(&self) -> &Tensor {
        match self {
            Const::Borrowed(t) => t,
            Const::Owned(t) => t,
        }
    }
}

/// What a run keeps and shows (see `Interpreter::execute`).
enum Mode<'o> {
    /// The function outputs only; intermediates freed at their last use, convolutions fused
    /// with the activation that follows.
    Outputs,
    /// As `Outputs` without fusion, every op result shown to the callback as it is computed.
    Observe(&'o mut dyn FnMut(ValueId, &Tensor)),
    /// Every op result kept until the end (nothing freed, nothing updated in place or fused).
    KeepAll,
}

/// What [`Interpreter::run_span`] keeps and shows.
pub enum SpanMode<'o> {
    /// Every op result shown to the callback as it is computed; operands freed after their last
    /// reader in the function (and updated in place when that reader allows).
    Observe(&'o mut dyn FnMut(ValueId, &Tensor)),
    /// Every op result kept in the environment (nothing freed or updated in place).
    KeepAll,
}

/// Fewest input channels for which [`Interpreter::set_fast_conv`] uses the Winograd
/// convolution (thinner layers, like a first RGB layer, gain nothing from it).
pub const FAST_CONV_MIN_CHANNELS: usize = 8;

/// Marker in `last_use` for values that must survive the run (function outputs).
const KEEP: usize = usize::MAX;
/// Marker in `last_use` for values no op reads (freed right after `observe`).
const UNUSED: usize = usize::MAX - 1;

/// A prepared interpreter for one module (weights resolved once, reused across samples).
pub struct Interpreter<'a> {
    module: &'a Module,
    /// Weight store the constants were resolved from (kept for the lifetime of the borrow).
    #[allow(dead_code)]
    weights: &'a Weights,
    /// Resolved `top.Weight` results, by value id.
    consts: Vec<Option<Const<'a>>>,
    /// For every value: index of the last op reading it, or `KEEP` / `UNUSED`.
    last_use: Vec<usize>,
    /// For every value: the index of the function argument it is, if any.
    arg_index: Vec<Option<usize>>,
    /// Per op: its constant filter packed for the convolution GEMM (dense convolutions).
    packed: Vec<Option<sgemm::PackedA>>,
    /// Per op: its constant 3x3 filter transformed for the Winograd convolution; empty unless
    /// fast convolution is on ([`Interpreter::set_fast_conv`]).
    winograd: Vec<Option<winograd::WinogradFilter>>,
}

impl<'a> Interpreter<'a> {
    /// Prepare a module for repeated runs.
    pub fn new(module: &'a Module, weights: &'a Weights) -> Result<Self, InterpError> {
        let func = &module.func;
        let mut consts: Vec<Option<Const<'a>>> = (0..func.values.len()).map(|_| None).collect();
        for op in &func.ops {
            if !op.is_weight() {
                continue;
            }
            for &r in &op.results {
                consts[r] = Some(resolve_weight(func, op, r, weights)?);
            }
        }
        let mut last_use = vec![UNUSED; func.values.len()];
        for (i, op) in func.ops.iter().enumerate() {
            for &v in &op.operands {
                if v < last_use.len() {
                    last_use[v] = i;
                }
            }
        }
        for &v in &func.returns {
            if v < last_use.len() {
                last_use[v] = KEEP;
            }
        }
        let mut arg_index = vec![None; func.values.len()];
        for (i, &a) in func.args.iter().enumerate() {
            if a < arg_index.len() {
                arg_index[a] = Some(i);
            }
        }
        let mut interp =
            Interpreter { module, weights, consts, last_use, arg_index, packed: Vec::new(), winograd: Vec::new() };
        interp.packed = func.ops.iter().map(|op| interp.pack_filter(op)).collect();
        Ok(interp)
    }

    /// Run the whole function; `observe(value, tensor)` sees every op result in program order
    /// (intermediates are freed as soon as no later op needs them). Returns the outputs.
    pub fn run_observe(
        &self,
        inputs: &[Tensor],
        observe: &mut dyn FnMut(ValueId, &Tensor),
    ) -> Result<Vec<Tensor>, InterpError> {
        let mut env = Vec::new();
        self.execute(inputs, Mode::Observe(observe), &mut env)
    }

    /// The run loop; `env` ends with the values still alive (every op result in
    /// [`Mode::KeepAll`]). Only in [`Mode::Outputs`] does a convolution whose only reader is
    /// the activation right after it compute that activation in its output tiles (the conv
    /// result is never materialised).
    fn execute(
        &self,
        inputs: &[Tensor],
        mut mode: Mode<'_>,
        env: &mut Vec<Option<Tensor>>,
    ) -> Result<Vec<Tensor>, InterpError> {
        let func = &self.module.func;
        self.check_inputs(inputs)?;
        let keep_all = matches!(mode, Mode::KeepAll);
        env.clear();
        env.resize_with(func.values.len(), || None);
        self.run_ops(0..func.ops.len(), 1, inputs, &mut mode, env)?;
        let mut outputs = Vec::with_capacity(func.returns.len());
        for (k, &v) in func.returns.iter().enumerate() {
            let last = !keep_all && func.returns[k + 1..].iter().all(|&w| w != v);
            let t = if last { env[v].take() } else { env[v].clone() };
            let t = match t {
                Some(t) => t,
                None => self.lookup(env, inputs, v).cloned().ok_or_else(|| InterpError::Op {
                    name: func.values.get(v).map(|x| x.name.clone()).unwrap_or_default(),
                    kind: "return".into(),
                    msg: format!("output {k} (value %{v}) was not computed"),
                })?,
            };
            outputs.push(t);
        }
        Ok(outputs)
    }

    /// The op loop of a run over ops `ops` (weights and `none` skipped) on `stacked` samples
    /// stacked along the batch axis: operands from `env` (or `inputs` for function arguments),
    /// results into `env` as `mode` says, operands freed after their last reader unless every
    /// result is kept.
    fn run_ops(
        &self,
        ops: std::ops::Range<usize>,
        stacked: usize,
        inputs: &[Tensor],
        mode: &mut Mode<'_>,
        env: &mut [Option<Tensor>],
    ) -> Result<(), InterpError> {
        let func = &self.module.func;
        let keep_all = matches!(mode, Mode::KeepAll);
        let mut skip = None;
        for (i, op) in func.ops.iter().enumerate().take(ops.end).skip(ops.start) {
            if op.is_weight() || op.is_none() || skip == Some(i) {
                continue;
            }
            let fused = match mode {
                Mode::Outputs => self.fusable_after(i).filter(|&(j, _)| j < ops.end),
                _ => None,
            };
            // The first operand may be handed over for in-place update when this op is its last
            // reader and does not read it twice (never when every result is kept).
            let mut owned0 = None;
            if !keep_all && dispatch::may_update_in_place(op) {
                if let Some(&v0) = op.operands.first() {
                    let once = op.operands.iter().filter(|&&v| v == v0).count() == 1;
                    if once && self.last_use[v0] == i {
                        owned0 = env[v0].take();
                    }
                }
            }
            let mut refs: Vec<Option<&Tensor>> = Vec::with_capacity(op.operands.len());
            for (k, &v) in op.operands.iter().enumerate() {
                if k == 0 && owned0.is_some() {
                    refs.push(None);
                    continue;
                }
                refs.push(self.lookup(env, inputs, v));
                if refs[k].is_none() && !is_none_value(func, v) {
                    return Err(self.op_error(op, format!("operand {k} (value %{v}) is not available")));
                }
            }
            let (results, result_ids) = match fused {
                Some((j, act)) => {
                    skip = Some(j);
                    (self.eval(op, &refs, owned0, Some(act), stacked)?, &func.ops[j].results)
                }
                None => (self.eval(op, &refs, owned0, None, stacked)?, &op.results),
            };
            drop(refs);
            for (&r, t) in result_ids.iter().zip(results) {
                if let Mode::Observe(obs) = mode {
                    obs(r, &t);
                }
                if keep_all || self.last_use[r] != UNUSED {
                    env[r] = Some(t);
                }
            }
            if !keep_all {
                for &v in &op.operands {
                    if self.last_use[v] == i {
                        env[v] = None;
                    }
                }
            }
        }
        Ok(())
    }

    /// Run ops `ops` of the function (program order; weight and `none` ops skipped) on
    /// `stacked` samples stacked along the batch axis, with `env` (by value id, grown to the
    /// function's values) carrying values between spans: what the span reads and no op of it
    /// computes must be in `env` already (function arguments come from `inputs`), and what a
    /// later op or the function's return still needs is left there. Lets a caller run the
    /// first ops one sample at a time and the rest on several samples at once. With several
    /// samples stacked, the caller makes sure every op of the span computes each sample from
    /// that sample alone (each result then stacks the results of the samples alone, bit for
    /// bit).
    pub fn run_span(
        &self,
        ops: std::ops::Range<usize>,
        stacked: usize,
        inputs: &[Tensor],
        env: &mut Vec<Option<Tensor>>,
        mode: SpanMode<'_>,
    ) -> Result<(), InterpError> {
        let func = &self.module.func;
        if env.len() < func.values.len() {
            env.resize_with(func.values.len(), || None);
        }
        if ops.start == 0 && stacked <= 1 {
            self.check_inputs(inputs)?;
        }
        let mut mode = match mode {
            SpanMode::Observe(obs) => Mode::Observe(obs),
            SpanMode::KeepAll => Mode::KeepAll,
        };
        self.run_ops(ops.start..ops.end.min(func.ops.len()), stacked.max(1), inputs, &mut mode, env)
    }

    /// Ops of the function (weights and `none` included): the end of a whole [`Interpreter::run_span`].
    pub fn op_count(&self) -> usize {
        self.module.func.ops.len()
    }

    /// Values of the function: the length of a run's environment, indexed by value id.
    pub fn value_count(&self) -> usize {
        self.module.func.values.len()
    }

    /// Run and return the function outputs only (convolution + activation pairs fused).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
        self.execute(inputs, Mode::Outputs, &mut Vec::new())
    }

    /// When op `i` is a `top.Conv` read only by the activation op right after it: that op's
    /// index and the activation.
    fn fusable_after(&self, i: usize) -> Option<(usize, sgemm::Act)> {
        let func = &self.module.func;
        let op = &func.ops[i];
        if op.kind != "top.Conv" || op.results.len() != 1 || op.attr_bool("do_relu") {
            return None;
        }
        let r = op.results[0];
        let next = func.ops.get(i + 1)?;
        if next.operands.as_slice() != [r] || self.last_use[r] != i + 1 || next.results.len() != 1 {
            return None;
        }
        let declared = |v: ValueId| func.values.get(v).map(|x| x.ty.shape());
        if declared(r) != declared(next.results[0]) {
            return None;
        }
        dispatch::fusable_activation(next).map(|act| (i + 1, act))
    }

    /// Run and keep every op result, indexed by value id (weights, `none` and the function
    /// arguments stay `None`). The results are the ones computed, not copies: nothing is freed
    /// or updated in place during such a run (same values as [`Interpreter::run_observe`] sees).
    pub fn run_all(&self, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>, InterpError> {
        let mut all = Vec::new();
        self.execute(inputs, Mode::KeepAll, &mut all)?;
        Ok(all)
    }

    /// The op at `op_index` of the function, or an error saying the index is out of range.
    fn op_at(&self, op_index: usize) -> Result<&crate::ir::Op, InterpError> {
        let func = &self.module.func;
        func.ops.get(op_index).ok_or_else(|| InterpError::Op {
            name: format!("#{op_index}"),
            kind: String::new(),
            msg: format!("no op with index {op_index} (the function has {})", func.ops.len()),
        })
    }

    /// Evaluate the single op `op_index` of the function on the given operand tensors
    /// (weights are taken from the store; pass `None` for weight and `none` operands).
    pub fn eval_op(&self, op_index: usize, operands: &[Option<&Tensor>]) -> Result<Vec<Tensor>, InterpError> {
        let func = &self.module.func;
        let op = self.op_at(op_index)?;
        if op.is_none() {
            return Ok(Vec::new());
        }
        if op.is_weight() {
            return Ok(op.results.iter().filter_map(|&r| self.const_of(r).cloned()).collect());
        }
        if operands.len() != op.operands.len() {
            return Err(
                self.op_error(op, format!("{} operands given, the op has {}", operands.len(), op.operands.len()))
            );
        }
        let mut refs: Vec<Option<&Tensor>> = Vec::with_capacity(operands.len());
        for (k, (&given, &v)) in operands.iter().zip(&op.operands).enumerate() {
            let t = given.or_else(|| self.const_of(v));
            if t.is_none() && !is_none_value(func, v) {
                return Err(self.op_error(op, format!("operand {k} (value %{v}) not given and not a weight")));
            }
            refs.push(t);
        }
        self.eval(op, &refs, None, None, 1)
    }

    /// As [`Interpreter::eval_op`] with the first operand handed over: ops that update their
    /// input in place (activations, elementwise arithmetic) return it as their result without a
    /// copy; for other ops it is only read. `operands[0]` is ignored.
    pub fn eval_op_owned(
        &self,
        op_index: usize,
        first: Tensor,
        operands: &[Option<&Tensor>],
    ) -> Result<Vec<Tensor>, InterpError> {
        let func = &self.module.func;
        let op = self.op_at(op_index)?;
        let once = op.operands.iter().skip(1).all(|&v| Some(&v) != op.operands.first());
        if op.is_none() || op.is_weight() || !once || !dispatch::may_update_in_place(op) {
            let mut refs: Vec<Option<&Tensor>> = operands.to_vec();
            if let Some(r0) = refs.first_mut() {
                *r0 = Some(&first);
            }
            return self.eval_op(op_index, &refs);
        }
        if operands.len() != op.operands.len() {
            return Err(
                self.op_error(op, format!("{} operands given, the op has {}", operands.len(), op.operands.len()))
            );
        }
        let mut refs: Vec<Option<&Tensor>> = Vec::with_capacity(operands.len());
        refs.push(None);
        for (k, (&given, &v)) in operands.iter().zip(&op.operands).enumerate().skip(1) {
            let t = given.or_else(|| self.const_of(v));
            if t.is_none() && !is_none_value(func, v) {
                return Err(self.op_error(op, format!("operand {k} (value %{v}) not given and not a weight")));
            }
            refs.push(t);
        }
        self.eval(op, &refs, Some(first), None, 1)
    }

    /// True when `top.Conv` number `op_index` runs as a Winograd convolution (fast convolution
    /// on and the op eligible, see [`Interpreter::set_fast_conv`]).
    pub fn runs_winograd(&self, op_index: usize) -> bool {
        self.winograd.get(op_index).is_some_and(Option::is_some)
    }

    /// Evaluate `top.Conv` number `op_index` (constant filter and bias from the store) on `x`,
    /// which stacks `k` inputs of the op's declared shape along the batch axis: the result
    /// stacks the `k` results, each equal bit for bit to evaluating the op on that input alone
    /// (every output of a convolution depends on its own image only).
    pub fn eval_conv_stacked(&self, op_index: usize, x: &Tensor) -> Result<Tensor, InterpError> {
        let func = &self.module.func;
        let op = self.op_at(op_index)?;
        if op.kind != "top.Conv" || op.results.len() != 1 {
            return Err(self.op_error(op, "stacked evaluation is for top.Conv only".into()));
        }
        let declared = |v: ValueId| func.values.get(v).map(|x| x.ty.shape()).unwrap_or(&[]);
        let (want_in, want_out) = (declared(op.operands[0]), declared(op.results[0]));
        let fits = |got: &[usize], want: &[usize]| {
            !want.is_empty()
                && got.len() == want.len()
                && got[1..] == want[1..]
                && want[0] > 0
                && got[0].is_multiple_of(want[0])
        };
        if !fits(x.shape(), want_in) {
            return Err(self
                .op_error(op, format!("stacked input {:?} is not a stack of the declared {:?}", x.shape(), want_in)));
        }
        let mut refs: Vec<Option<&Tensor>> = vec![Some(x)];
        for (k, &v) in op.operands.iter().enumerate().skip(1) {
            let t = self.const_of(v);
            if t.is_none() && !is_none_value(func, v) {
                return Err(self.op_error(op, format!("operand {k} (value %{v}) is not a weight")));
            }
            refs.push(t);
        }
        let packed = self.packed.get(op_index).and_then(|p| p.as_ref());
        let wino = self.winograd.get(op_index).and_then(|f| f.as_ref());
        let results = dispatch::eval_op(op, &refs, None, &[], (packed, wino), None).map_err(|e| match e {
            dispatch::OpError::Unsupported => {
                InterpError::Unsupported { name: func.op_name(op).to_string(), kind: op.kind.clone() }
            }
            dispatch::OpError::Msg(msg) => self.op_error(op, msg),
        })?;
        let out = results.into_iter().next().ok_or_else(|| self.op_error(op, "no result".into()))?;
        let k = x.shape()[0] / want_in[0];
        if !fits(out.shape(), want_out) || out.shape()[0] != k * want_out[0] {
            return Err(self.op_error(
                op,
                format!("stacked result {:?} is not {k} results of the declared {:?}", out.shape(), want_out),
            ));
        }
        Ok(out)
    }

    /// The pads [top, left, bottom, right] of `top.Conv` number `op_index` when it is a 2-D 3x3
    /// stride-1 convolution with a constant filter (the ones [`Interpreter::eval_conv_strips`]
    /// takes; its caller pads the top and bottom itself).
    pub fn conv_pads(&self, op_index: usize) -> Option<[usize; 4]> {
        let op = self.module.func.ops.get(op_index)?;
        let filter = self.const_of(*op.operands.get(1)?)?;
        if op.kind != "top.Conv" || op.results.len() != 1 || filter.ndim() != 4 {
            return None;
        }
        dispatch::conv_pads_3x3(op)
    }

    /// Evaluate 3x3 stride-1 `top.Conv` number `op_index` on row strips of its input: `x`
    /// [B, C, hs, W] holds, per entry, `hs` consecutive input rows with the op's top and bottom
    /// padding already in place (zero rows outside the image); the result [B, OC, hs - 2, OW]
    /// holds the output rows those input rows give. When each strip starts at input row
    /// `4·t - pad_top` (a tile row `t` of a Winograd convolution; any row for the direct one),
    /// every output equals the same output of evaluating the op on the whole image bit for bit:
    /// the same tiles, the same sums. Lets a caller evaluate a convolution a few rows at a time
    /// (the threshold tuner's early exit).
    pub fn eval_conv_strips(&self, op_index: usize, x: &Tensor) -> Result<Tensor, InterpError> {
        let func = &self.module.func;
        let op = self.op_at(op_index)?;
        let declared = op.operands.first().and_then(|&v| func.values.get(v)).map(|v| v.ty.shape()).unwrap_or(&[]);
        let s = x.shape();
        if self.conv_pads(op_index).is_none() {
            return Err(self.op_error(op, "strip evaluation is for 3x3 stride-1 convolutions only".into()));
        }
        if declared.len() != 4 || s.len() != 4 || s[1] != declared[1] || s[3] != declared[3] || s[2] < 3 {
            return Err(self.op_error(op, format!("strips {s:?} do not fit the input {declared:?}")));
        }
        let w = self.const_of(op.operands[1]).ok_or_else(|| self.op_error(op, "filter is not a weight".into()))?;
        let bias = op.operands.get(2).and_then(|&v| self.const_of(v));
        let packed = self.packed.get(op_index).and_then(|p| p.as_ref());
        let wino = self.winograd.get(op_index).and_then(|f| f.as_ref());
        dispatch::eval_conv_strips(op, x, w, bias, (packed, wino)).map_err(|e| match e {
            dispatch::OpError::Unsupported => {
                InterpError::Unsupported { name: func.op_name(op).to_string(), kind: op.kind.clone() }
            }
            dispatch::OpError::Msg(msg) => self.op_error(op, msg),
        })
    }

    /// Switch the fast convolution on or off (off by default). On, every dense 3x3 stride-1
    /// dilation-1 `top.Conv` with a constant filter and at least [`FAST_CONV_MIN_CHANNELS`]
    /// input channels runs as a Winograd F(4x4, 3x3) convolution: about 2.5x to 3.5x fewer
    /// multiplies, results that differ from the direct convolution at float rounding level
    /// (per output up to ~2e-6 of the sum of |terms|, against ~3e-7 for the direct sum; tiny-yolov3's
    /// heads move by up to 5e-6 of their largest value). The filters are transformed here, once
    /// (4x the memory of those filters); off frees them. `run`, `run_observe` and `eval_op` all
    /// take the same path, so fused and observed runs stay identical.
    pub fn set_fast_conv(&mut self, on: bool) {
        self.winograd =
            if on { self.module.func.ops.iter().map(|op| self.winograd_filter(op)).collect() } else { Vec::new() };
    }

    /// True when the fast (Winograd) convolution is on ([`Interpreter::set_fast_conv`]).
    pub fn fast_conv(&self) -> bool {
        !self.winograd.is_empty()
    }

    /// The Winograd transform of a `top.Conv`'s constant filter when the op can take that path.
    fn winograd_filter(&self, op: &Op) -> Option<winograd::WinogradFilter> {
        if op.kind != "top.Conv" {
            return None;
        }
        let w = self.const_of(*op.operands.get(1)?)?;
        let s = w.shape();
        if s.len() != 4 || s[2] != 3 || s[3] != 3 || s[1] < FAST_CONV_MIN_CHANNELS {
            return None;
        }
        let ints = |name: &str| op.attr_ints_or(name, &[1, 1]).ok();
        let kernel = op.attr_ints_or("kernel_shape", &[3, 3]).ok()?;
        let (strides, dilations) = (ints("strides")?, ints("dilations")?);
        let group = op.attr_i64_or("group", 1).ok()?;
        let two = |v: &[i64]| -> Option<[usize; 2]> {
            Some([usize::try_from(*v.first()?).ok()?, usize::try_from(*v.get(1)?).ok()?])
        };
        if group != 1 || !winograd::applies(two(&kernel)?, two(&strides)?, two(&dilations)?, 1) {
            return None;
        }
        winograd::WinogradFilter::new(w.as_slice()?, s[0], s[1]).ok()
    }

    /// Pack the constant filter of a dense `top.Conv` once (None for other ops).
    fn pack_filter(&self, op: &Op) -> Option<sgemm::PackedA> {
        if op.kind != "top.Conv" || op.attr_i64_or("group", 1).ok()? != 1 || !sgemm::available() {
            return None;
        }
        let w = self.const_of(*op.operands.get(1)?)?;
        if w.ndim() < 3 {
            return None;
        }
        let oc = w.shape()[0];
        let k = w.len() / oc.max(1);
        Some(sgemm::PackedA::new(w.as_slice()?, oc, k))
    }

    /// The resolved constant of value `v`, if it is a weight.
    fn const_of(&self, v: ValueId) -> Option<&Tensor> {
        self.consts.get(v).and_then(|c| c.as_ref()).map(Const::tensor)
    }

    /// A value's tensor during a run: computed, argument, or constant.
    fn lookup<'s>(&'s self, env: &'s [Option<Tensor>], inputs: &'s [Tensor], v: ValueId) -> Option<&'s Tensor> {
        if let Some(Some(t)) = env.get(v) {
            return Some(t);
        }
        if let Some(Some(i)) = self.arg_index.get(v) {
            return inputs.get(*i);
        }
        self.const_of(v)
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), InterpError> {
        let func = &self.module.func;
        if inputs.len() != func.args.len() {
            return Err(InterpError::BadInput {
                index: inputs.len().min(func.args.len()),
                msg: format!("{} inputs given, the function takes {}", inputs.len(), func.args.len()),
            });
        }
        for (i, (&a, t)) in func.args.iter().zip(inputs).enumerate() {
            let want = func.values.get(a).map(|v| v.ty.shape()).unwrap_or(&[]);
            if matches!(func.values.get(a).map(|v| &v.ty), Some(TensorType::Tensor { .. })) && t.shape() != want {
                return Err(InterpError::BadInput {
                    index: i,
                    msg: format!("shape {:?} does not match the argument type {:?}", t.shape(), want),
                });
            }
        }
        Ok(())
    }

    /// Evaluate one op and fit its results to the declared result types (their batch axis
    /// times `stacked`: the operands stack that many samples).
    fn eval(
        &self,
        op: &Op,
        operands: &[Option<&Tensor>],
        owned0: Option<Tensor>,
        act: Option<sgemm::Act>,
        stacked: usize,
    ) -> Result<Vec<Tensor>, InterpError> {
        let func = &self.module.func;
        let stacked_shapes: Vec<Vec<usize>> = op
            .results
            .iter()
            .map(|&r| {
                let mut s = func.values.get(r).map(|v| v.ty.shape().to_vec()).unwrap_or_default();
                if let Some(d) = s.first_mut() {
                    *d *= stacked;
                }
                s
            })
            .collect();
        let out_shapes: Vec<&[usize]> = stacked_shapes.iter().map(Vec::as_slice).collect();
        // the prepacked filter applies only when the filter operand is the stored constant
        let op_index = func.ops.iter().position(|o| std::ptr::eq(o, op));
        let packed = op_index.and_then(|i| self.packed.get(i)).and_then(|p| p.as_ref()).filter(|_| {
            match (operands.get(1).copied().flatten(), op.operands.get(1).and_then(|&v| self.const_of(v))) {
                (Some(given), Some(stored)) => std::ptr::eq(given, stored),
                _ => false,
            }
        });
        let wino = op_index.and_then(|i| self.winograd.get(i)).and_then(|f| f.as_ref()).filter(|_| {
            match (operands.get(1).copied().flatten(), op.operands.get(1).and_then(|&v| self.const_of(v))) {
                (Some(given), Some(stored)) => std::ptr::eq(given, stored),
                _ => false,
            }
        });
        let filters = (packed, wino);
        let results = dispatch::eval_op(op, operands, owned0, &out_shapes, filters, act).map_err(|e| match e {
            dispatch::OpError::Unsupported => {
                InterpError::Unsupported { name: func.op_name(op).to_string(), kind: op.kind.clone() }
            }
            dispatch::OpError::Msg(msg) => self.op_error(op, msg),
        })?;
        if results.len() != op.results.len() {
            return Err(
                self.op_error(op, format!("computed {} results, the op declares {}", results.len(), op.results.len()))
            );
        }
        let mut fitted = Vec::with_capacity(results.len());
        for (t, (&r, want)) in results.into_iter().zip(op.results.iter().zip(&out_shapes)) {
            let declared = matches!(func.values.get(r).map(|v| &v.ty), Some(TensorType::Tensor { .. }));
            if !declared || t.shape() == *want {
                fitted.push(t);
            } else if t.len() == want.iter().product::<usize>() {
                let t = t.as_standard_layout().into_owned();
                let t = t.into_shape_with_order(IxDyn(want)).map_err(|e| self.op_error(op, e.to_string()))?;
                fitted.push(t);
            } else {
                return Err(self
                    .op_error(op, format!("computed shape {:?} differs from the result type {:?}", t.shape(), want)));
            }
        }
        Ok(fitted)
    }

    fn op_error(&self, op: &Op, msg: String) -> InterpError {
        InterpError::Op { name: self.module.func.op_name(op).to_string(), kind: op.kind.clone(), msg }
    }
}

/// True when value `v` has the `none` type (an absent optional operand).
fn is_none_value(func: &Func, v: ValueId) -> bool {
    matches!(func.values.get(v).map(|x| &x.ty), Some(TensorType::None))
}

/// Resolve one `top.Weight` result from the store, converting to f32 and to the declared shape.
fn resolve_weight<'a>(func: &Func, op: &Op, r: ValueId, weights: &'a Weights) -> Result<Const<'a>, InterpError> {
    let value = &func.values[r];
    let err = |msg: String| InterpError::Op { name: value.name.clone(), kind: op.kind.clone(), msg };
    let data = weights.get(&value.name).ok_or_else(|| err("no such weight in the weight store".into()))?;
    let want: &[usize] = value.ty.shape();
    let declared = matches!(value.ty, TensorType::Tensor { .. });
    if let TensorData::F32(a) = data {
        if !declared || a.shape() == want {
            if a.is_standard_layout() {
                return Ok(Const::Borrowed(a));
            }
            return Ok(Const::Owned(a.as_standard_layout().into_owned()));
        }
    }
    let a = data.to_f32();
    if !declared || a.shape() == want {
        return Ok(Const::Owned(a.as_standard_layout().into_owned()));
    }
    if a.len() != want.iter().product::<usize>() {
        return Err(err(format!("stored shape {:?} does not match the declared type {:?}", data.shape(), want)));
    }
    let a = a.as_standard_layout().into_owned();
    a.into_shape_with_order(IxDyn(want)).map(Const::Owned).map_err(|e| err(e.to_string()))
}
