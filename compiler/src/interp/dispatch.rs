//! From an op's kind and attributes to the kernel that computes it.

use super::conv::{self, ConvGeom};
use super::elementwise::{self, Binary, Unary};
use super::pool::{self, PoolGeom, PoolKind};
use super::reduce::{self, ReduceKind};
use super::resize::{self, CoordMode, InterpMode};
use super::sgemm::{Act, PackedA};
use super::shape::{self, PadMode};
use super::winograd::{self, WinogradFilter};
use super::Tensor;
use crate::ir::{IrError, Op};

/// Why one op could not be evaluated (the caller adds the op's name and kind).
#[derive(Debug)]
pub(super) enum OpError {
    /// The kind is not part of the interpreter's vocabulary.
    Unsupported,
    /// Bad attributes, operands or shapes.
    Msg(String),
}

impl From<String> for OpError {
    fn from(s: String) -> Self {
        OpError::Msg(s)
    }
}

impl From<&str> for OpError {
    fn from(s: &str) -> Self {
        OpError::Msg(s.to_string())
    }
}

impl From<IrError> for OpError {
    fn from(e: IrError) -> Self {
        OpError::Msg(match e {
            IrError::MissingAttr { attr, .. } => format!("missing attribute '{attr}'"),
            IrError::BadAttr { attr, expected, .. } => format!("attribute '{attr}' is not {expected}"),
            IrError::UnknownName(n) => format!("no tensor named '{n}'"),
        })
    }
}

/// True for ops whose first operand can be consumed and updated in place.
pub(super) fn may_update_in_place(op: &Op) -> bool {
    matches!(
        op.short_kind(),
        "Relu"
            | "LeakyRelu"
            | "Clip"
            | "Sigmoid"
            | "HardSigmoid"
            | "HardSwish"
            | "Tanh"
            | "Exp"
            | "AddConst"
            | "MulConst"
            | "SubConst"
            | "Add"
            | "Sub"
            | "Mul"
            | "Div"
            | "PRelu"
            | "Scale"
            | "Reshape"
            | "Input"
    )
}

/// The activation of a `top.LeakyRelu` / `top.Relu` that can be fused into the convolution
/// feeding it.
pub(super) fn fusable_activation(op: &Op) -> Option<Act> {
    if op.attr_bool("do_relu") {
        return None;
    }
    match op.short_kind() {
        "LeakyRelu" => Some(Act::Leaky(op.attr_f64("alpha").ok()? as f32)),
        "Relu" => Some(Act::Relu(relu_limit(op).ok()?)),
        _ => None,
    }
}

/// Operand `i`, which must be present.
fn req<'t>(operands: &[Option<&'t Tensor>], i: usize) -> Result<&'t Tensor, OpError> {
    operands.get(i).copied().flatten().ok_or_else(|| OpError::Msg(format!("operand {i} is missing")))
}

/// Operand `i` if present (absent or `none` gives `None`).
fn opt<'t>(operands: &[Option<&'t Tensor>], i: usize) -> Option<&'t Tensor> {
    operands.get(i).copied().flatten()
}

/// The first operand as an owned tensor (moved in when the caller handed it over).
fn first_owned(operands: &[Option<&Tensor>], owned0: Option<Tensor>) -> Result<Tensor, OpError> {
    match owned0 {
        Some(t) => Ok(t),
        None => Ok(req(operands, 0)?.clone()),
    }
}

/// `n` non-negative integers from an integer-array attribute.
fn usizes(op: &Op, name: &str, default: &[i64], n: usize) -> Result<Vec<usize>, OpError> {
    let v = op.attr_ints_or(name, default)?;
    if v.len() != n || v.iter().any(|&x| x < 0) {
        return Err(OpError::Msg(format!("attribute '{name}' = {v:?}: expected {n} non-negative integers")));
    }
    Ok(v.into_iter().map(|x| x as usize).collect())
}

/// Spatial rank (1 or 2) from the kernel_shape attribute or the input rank.
fn spatial_rank(op: &Op, x: &Tensor) -> Result<usize, OpError> {
    if let Ok(k) = op.attr_ints("kernel_shape") {
        if k.len() == 1 || k.len() == 2 {
            return Ok(k.len());
        }
        return Err(OpError::Msg(format!("kernel_shape {k:?}: only 1-D and 2-D windows are supported")));
    }
    match x.ndim() {
        3 => Ok(1),
        4 => Ok(2),
        r => Err(OpError::Msg(format!("input of rank {r}: only 1-D and 2-D windows are supported"))),
    }
}

/// Kernel, strides, pads [t,l,b,r] and dilations of a windowed op.
type Window = ([usize; 2], [usize; 2], [usize; 4], [usize; 2]);

/// Kernel, strides, pads [t,l,b,r] and dilations of a windowed op, 1-D spelled as 2-D.
fn window(op: &Op, rank: usize, kernel_default: Option<&[usize]>) -> Result<Window, OpError> {
    let ones = vec![1i64; rank];
    let k = match (op.attrs.contains_key("kernel_shape"), kernel_default) {
        (false, Some(d)) => d.to_vec(),
        _ => usizes(op, "kernel_shape", &[], rank)?,
    };
    let s = usizes(op, "strides", &ones, rank)?;
    let d = usizes(op, "dilations", &ones, rank)?;
    let p = usizes(op, "pads", &vec![0; 2 * rank], 2 * rank)?;
    Ok(if rank == 1 {
        ([1, k[0]], [1, s[0]], [0, p[0], 0, p[1]], [1, d[0]])
    } else {
        ([k[0], k[1]], [s[0], s[1]], [p[0], p[1], p[2], p[3]], [d[0], d[1]])
    })
}

fn conv_geom(op: &Op, x: &Tensor, w: &Tensor) -> Result<ConvGeom, OpError> {
    let rank = spatial_rank(op, x)?;
    let wk: Vec<usize> = w.shape().iter().skip(2).copied().collect();
    let (k, s, p, d) = window(op, rank, Some(&wk))?;
    let group = op.attr_i64_or("group", 1)?;
    if group < 1 {
        return Err(OpError::Msg(format!("group {group} must be positive")));
    }
    Ok(ConvGeom { kh: k[0], kw: k[1], sh: s[0], sw: s[1], dh: d[0], dw: d[1], pads: p, group: group as usize })
}

fn relu_limit(op: &Op) -> Result<Option<f32>, OpError> {
    let l = op.attr_f64_or("relu_limit", -1.0)?;
    Ok(if l >= 0.0 { Some(l as f32) } else { None })
}

/// A 3x3 stride-1 `top.Conv` on row strips: `x` [B, C, hs, W] holds, per entry, input rows
/// already padded at the top and bottom (zeros outside the image), so only the op's left and
/// right pads apply; the result is [B, OC, hs - 2, OW]. The Winograd filter is used when the op
/// has one, else the packed one (the same path as a whole run takes).
pub(super) fn eval_conv_strips(
    op: &Op,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    filters: (Option<&PackedA>, Option<&WinogradFilter>),
) -> Result<Tensor, OpError> {
    let (packed, wino) = filters;
    let mut g = conv_geom(op, x, w)?;
    if [g.kh, g.kw, g.sh, g.sw, g.dh, g.dw] != [3, 3, 1, 1, 1, 1] || x.ndim() != 4 {
        return Err(OpError::Msg("strip evaluation is for 3x3 stride-1 convolutions".into()));
    }
    let fits = |f: &&WinogradFilter| {
        winograd::applies([g.kh, g.kw], [g.sh, g.sw], [g.dh, g.dw], g.group)
            && f.in_channels() == x.shape()[1]
            && f.out_channels() == w.shape()[0]
    };
    g.pads = [0, g.pads[1], 0, g.pads[3]];
    let out = match wino.filter(fits) {
        Some(f) => {
            let s = x.shape();
            let xs = conv::contiguous(x);
            let bias = bias.map(conv::contiguous);
            winograd::conv(&xs, [s[0], s[1], s[2], s[3]], f, bias.as_deref(), g.pads, None)?
        }
        None => conv::conv(x, w, bias, &g, packed, None)?,
    };
    Ok(if op.attr_bool("do_relu") { elementwise::unary(out, Unary::Relu(relu_limit(op)?)) } else { out })
}

/// The pads [top, left, bottom, right] of `op` when it is a 2-D 3x3 stride-1 dilation-1
/// convolution (the ones [`eval_conv_strips`] takes).
pub(super) fn conv_pads_3x3(op: &Op) -> Option<[usize; 4]> {
    let (k, s, p, d) = window(op, 2, Some(&[3, 3])).ok()?;
    (k == [3, 3] && s == [1, 1] && d == [1, 1]).then_some(p)
}

/// Evaluate `op` on resolved operands; `owned0` is the first operand handed over for in-place
/// update (then `operands[0]` is `None`). `out_shapes` are the declared result shapes; `packed`
/// is the op's prepacked constant filter, `wino` its Winograd-transformed one (fast conv on);
/// `act` an activation fused into a `top.Conv`.
pub(super) fn eval_op(
    op: &Op,
    operands: &[Option<&Tensor>],
    owned0: Option<Tensor>,
    out_shapes: &[&[usize]],
    filters: (Option<&PackedA>, Option<&WinogradFilter>),
    act: Option<Act>,
) -> Result<Vec<Tensor>, OpError> {
    let (packed, wino) = filters;
    let kind = op.short_kind();
    let one = |t: Tensor| Ok(vec![t]);
    let mut results = match kind {
        "Input" => one(first_owned(operands, owned0)?),
        "Conv" => {
            let (x, w) = (req(operands, 0)?, req(operands, 1)?);
            let g = conv_geom(op, x, w)?;
            let fits = |f: &&WinogradFilter| {
                x.ndim() == 4
                    && winograd::applies([g.kh, g.kw], [g.sh, g.sw], [g.dh, g.dw], g.group)
                    && f.in_channels() == x.shape()[1]
                    && f.out_channels() == w.shape()[0]
            };
            match wino.filter(fits) {
                Some(f) => {
                    let s = x.shape();
                    let xs = conv::contiguous(x);
                    let bias = opt(operands, 2).map(conv::contiguous);
                    one(winograd::conv(&xs, [s[0], s[1], s[2], s[3]], f, bias.as_deref(), g.pads, act)?)
                }
                None => one(conv::conv(x, w, opt(operands, 2), &g, packed, act)?),
            }
        }
        "Deconv" => {
            let (x, w) = (req(operands, 0)?, req(operands, 1)?);
            let g = conv_geom(op, x, w)?;
            let rank = spatial_rank(op, x)?;
            let op_pad = usizes(op, "output_padding", &vec![0; rank], rank)?;
            let op_pad = if rank == 1 { [0, op_pad[0]] } else { [op_pad[0], op_pad[1]] };
            one(conv::deconv(x, w, opt(operands, 2), &g, op_pad)?)
        }
        "MatMul" => one(conv::matmul_op(req(operands, 0)?, req(operands, 1)?, opt(operands, 2))?),
        "Scale" => {
            let x = first_owned(operands, owned0)?;
            one(elementwise::scale(x, req(operands, 1)?, req(operands, 2)?)?)
        }
        "Relu" => one(elementwise::unary(first_owned(operands, owned0)?, Unary::Relu(relu_limit(op)?))),
        "LeakyRelu" => {
            let a = op.attr_f64("alpha")? as f32;
            match owned0 {
                Some(x) => one(elementwise::unary(x, Unary::LeakyRelu(a))),
                None => one(elementwise::leaky_copy(req(operands, 0)?, a)),
            }
        }
        "Clip" => {
            let (lo, hi) = (op.attr_f64("min")? as f32, op.attr_f64("max")? as f32);
            one(elementwise::unary(first_owned(operands, owned0)?, Unary::Clip(lo, hi)))
        }
        "Sigmoid" => one(elementwise::unary(first_owned(operands, owned0)?, Unary::Sigmoid)),
        "HardSigmoid" => {
            let (a, b) = (op.attr_f64("alpha")? as f32, op.attr_f64("beta")? as f32);
            one(elementwise::unary(first_owned(operands, owned0)?, Unary::HardSigmoid(a, b)))
        }
        "HardSwish" => one(elementwise::unary(first_owned(operands, owned0)?, Unary::HardSwish)),
        "Tanh" => one(elementwise::unary(first_owned(operands, owned0)?, Unary::Tanh)),
        "Exp" => one(elementwise::unary(first_owned(operands, owned0)?, Unary::Exp)),
        "AddConst" => {
            let c = op.attr_f64("const_val")? as f32;
            one(elementwise::unary(first_owned(operands, owned0)?, Unary::AddConst(c)))
        }
        "MulConst" => {
            let c = op.attr_f64("const_val")? as f32;
            one(elementwise::unary(first_owned(operands, owned0)?, Unary::MulConst(c)))
        }
        "SubConst" => {
            let c = op.attr_f64("const_val")? as f32;
            let u = Unary::SubConst(c, op.attr_bool("is_reverse"));
            one(elementwise::unary(first_owned(operands, owned0)?, u))
        }
        "Add" | "Sub" | "Mul" | "Div" | "PRelu" => {
            let b = req(operands, 1)?;
            let which = match kind {
                "Add" => Binary::Add,
                "Sub" => Binary::Sub,
                "Mul" => Binary::Mul,
                "Div" => Binary::Div,
                _ => Binary::PRelu,
            };
            one(elementwise::binary(first_owned(operands, owned0)?, b, which)?)
        }
        "MaxPool" | "AvgPool" => {
            let x = req(operands, 0)?;
            let rank = spatial_rank(op, x)?;
            let (k, s, p, _) = window(op, rank, None)?;
            let g = PoolGeom {
                kh: k[0],
                kw: k[1],
                sh: s[0],
                sw: s[1],
                pads: p,
                count_include_pad: op.attr_bool("count_include_pad"),
            };
            let pk = if kind == "MaxPool" { PoolKind::Max } else { PoolKind::Avg };
            one(pool::pool(x, &g, pk)?)
        }
        "Reshape" => {
            let x = first_owned(operands, owned0)?;
            let target: Vec<i64> = match op.attr_ints("shape") {
                Ok(s) => s,
                Err(_) => out_shapes.first().map(|s| s.iter().map(|&d| d as i64).collect()).unwrap_or_default(),
            };
            one(shape::reshape(x, &target)?)
        }
        "Permute" => one(shape::permute(req(operands, 0)?, &op.attr_ints("order")?)?),
        "Softmax" => one(reduce::softmax(req(operands, 0)?, op.attr_i64_or("axis", 1)?)?),
        "Pad" => {
            let mode = match op.attrs.get("mode").map(|_| op.attr_str("mode")).transpose()?.unwrap_or("constant") {
                "constant" => PadMode::Constant(op.attr_f64_or("val", 0.0)? as f32),
                "reflect" => PadMode::Reflect,
                "edge" => PadMode::Edge,
                m => return Err(OpError::Msg(format!("unknown pad mode '{m}'"))),
            };
            one(shape::pad(req(operands, 0)?, &op.attr_ints("paddings")?, mode)?)
        }
        "Slice" => {
            let x = req(operands, 0)?;
            let steps = op.attr_ints_or("steps", &vec![1; x.ndim()])?;
            one(shape::slice(x, &op.attr_ints("offset")?, &op.attr_ints("ends")?, &steps)?)
        }
        "Split" => Ok(shape::split(req(operands, 0)?, op.attr_i64("axis")?, &op.attr_ints("split_size")?)?),
        "Gather" => one(shape::gather(req(operands, 0)?, req(operands, 1)?, op.attr_i64_or("axis", 0)?)?),
        "Concat" => {
            let xs: Vec<&Tensor> = (0..operands.len()).map(|i| req(operands, i)).collect::<Result<_, _>>()?;
            one(shape::concat(&xs, op.attr_i64_or("axis", 1)?)?)
        }
        "Upsample" => {
            let (fh, fw) = (op.attr_i64("scale_h")?, op.attr_i64("scale_w")?);
            if fh < 1 || fw < 1 {
                return Err(OpError::Msg(format!("scale factors {fh}x{fw} must be positive")));
            }
            one(resize::upsample(req(operands, 0)?, fh as usize, fw as usize)?)
        }
        "Interp" => {
            let x = req(operands, 0)?;
            let mode = match op.attr_str("mode")? {
                "nearest" => InterpMode::Nearest,
                "linear" | "bilinear" => InterpMode::Linear,
                m => return Err(OpError::Msg(format!("unknown interpolation mode '{m}'"))),
            };
            let coord = match op.attr_str("coord_mode")? {
                "asymmetric" => CoordMode::Asymmetric,
                "half_pixel" => CoordMode::HalfPixel,
                "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
                "align_corners" => CoordMode::AlignCorners,
                m => return Err(OpError::Msg(format!("unknown coordinate mode '{m}'"))),
            };
            let out = out_shapes.first().copied().unwrap_or(&[]);
            if out.len() != x.ndim() || out.len() < 3 {
                return Err(OpError::Msg(format!("result type {out:?} does not give the output size")));
            }
            let oh = if out.len() == 4 { out[2] } else { 1 };
            let ow = out[out.len() - 1];
            let scales = (op.attr_f64_or("scale_h", 0.0)?, op.attr_f64_or("scale_w", 0.0)?);
            one(resize::interp(x, (oh, ow), scales, mode, coord)?)
        }
        "Reduce" => {
            let mode = op.attr_str("mode")?;
            let rk = ReduceKind::parse(mode).ok_or_else(|| OpError::Msg(format!("unknown reduce mode '{mode}'")))?;
            let keep = op.attrs.get("keepdims").map(|_| op.attr_bool("keepdims")).unwrap_or(true);
            one(reduce::reduce(req(operands, 0)?, &op.attr_ints_or("axes", &[])?, rk, keep)?)
        }
        _ => Err(OpError::Unsupported),
    }?;
    if op.attr_bool("do_relu") && kind != "Relu" {
        let limit = relu_limit(op)?;
        results = results.into_iter().map(|t| elementwise::unary(t, Unary::Relu(limit))).collect();
    }
    Ok(results)
}
