//! BatchNormalization folded into the preceding Conv, as tpu-mlir's onnxsim step does it.
//!
//! Arithmetic (f32, in onnx-optimizer's order): `s = gamma / sqrt(var + eps)`,
//! `W' = W * s[oc]`, `b' = (b - mean) * s + beta`. onnx-optimizer only builds these as nodes;
//! tpu-mlir's ONNX Runtime constant folding evaluates them, so `sqrt` is ONNX Runtime's (Eigen's
//! fast-math estimate, up to 4 ulps off, see [`onnxruntime_sqrt`]); the other steps are exact
//! IEEE f32 operations.
//!
//! Names: onnx-optimizer 0.4.x builds the fused tensors as a chain of new nodes whose outputs
//! are numbered `_v_<n>` after the `N` values of the graph (inputs + initializers + node
//! outputs); the k-th fusion's weight ends up named `_v_<N+18+24k>` and its bias
//! `_v_<N+24+24k>` (checked against onnxoptimizer 0.4.2 and the reference tiny-yolov3 top MLIR:
//! `_v_123`, `_v_129`, `_v_147`, ...).

use super::error::OnnxError;
use super::graph::OnnxGraph;
use super::tensor::ConstTensor;
use ndarray::{ArrayD, Axis, IxDyn};
use std::collections::HashMap;

mod ort_sqrt;

pub use ort_sqrt::onnxruntime_sqrt;

/// Fused weight and bias of one Conv+BN pair.
pub struct FusedConv {
    /// W' [OC, IC/g, kh, kw]
    pub weight: ArrayD<f32>,
    /// b' [OC]
    pub bias: ArrayD<f32>,
}

/// Compute the fused weight and bias (f32, onnx-optimizer order of operations, ONNX Runtime's `sqrt`).
pub fn fuse_params(
    w: &ArrayD<f32>,
    b: Option<&ArrayD<f32>>,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Result<FusedConv, String> {
    let oc = w.shape().first().copied().unwrap_or(0);
    if [gamma.len(), beta.len(), mean.len(), var.len()].iter().any(|&l| l != oc) {
        return Err(format!("BatchNormalization parameters do not match the {oc} conv output channels"));
    }
    let var_eps: Vec<f32> = var.iter().map(|&v| v + eps).collect();
    let root = ort_sqrt::onnxruntime_sqrt(&var_eps);
    let scale: Vec<f32> = (0..oc).map(|c| gamma[c] / root[c]).collect();
    let mut weight = w.clone();
    for (c, mut sub) in weight.axis_iter_mut(Axis(0)).enumerate() {
        sub.mapv_inplace(|x| x * scale[c]);
    }
    let bias: Vec<f32> = (0..oc)
        .map(|c| {
            let bc = b.map(|b| b.as_slice().map(|s| s[c]).unwrap_or_else(|| b.iter().nth(c).copied().unwrap_or(0.0)));
            (bc.unwrap_or(0.0) - mean[c]) * scale[c] + beta[c]
        })
        .collect();
    Ok(FusedConv { weight, bias: ArrayD::from_shape_vec(IxDyn(&[oc]), bias).map_err(|e| e.to_string())? })
}

/// Fold every `Conv -> BatchNormalization` pair whose parameters are all initializers and whose
/// Conv output feeds only the BN. The Conv keeps its output name; BN users read it instead.
pub fn fuse_bn_into_conv(g: &mut OnnxGraph) -> Result<(), OnnxError> {
    let base = g.value_count();
    let mut uses: HashMap<String, usize> = HashMap::new();
    for n in &g.nodes {
        for i in n.inputs.iter().filter(|s| !s.is_empty()) {
            *uses.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &g.outputs {
        *uses.entry(o.clone()).or_default() += 1;
    }
    let producer: HashMap<String, usize> =
        g.nodes.iter().enumerate().flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.clone(), i))).collect();
    let mut k = 0usize;
    let mut removed = vec![false; g.nodes.len()];
    let mut rename: HashMap<String, String> = HashMap::new();
    for bi in 0..g.nodes.len() {
        let bn = &g.nodes[bi];
        if bn.op_type != "BatchNormalization" || bn.outputs.iter().skip(1).any(|o| !o.is_empty()) {
            continue;
        }
        let Some(x) = bn.input(0) else { continue };
        let Some(&ci) = producer.get(x) else { continue };
        let conv = &g.nodes[ci];
        if conv.op_type != "Conv" || uses.get(x).copied().unwrap_or(0) != 1 || removed[ci] {
            continue;
        }
        let param = |i: usize| bn.input(i).and_then(|n| g.initializers.get(n)).map(|t| t.to_f32());
        let (Some(gamma), Some(beta), Some(mean), Some(var)) = (param(1), param(2), param(3), param(4)) else {
            continue;
        };
        let Some(w) = conv.input(1).and_then(|n| g.initializers.get(n)).map(|t| t.to_f32()) else { continue };
        let b = match conv.input(2) {
            Some(n) => match g.initializers.get(n) {
                Some(t) => Some(t.to_f32()),
                None => continue,
            },
            None => None,
        };
        let eps = bn.float("epsilon", 1e-5)?;
        let v = |a: &ArrayD<f32>| a.iter().copied().collect::<Vec<f32>>();
        let fused =
            fuse_params(&w, b.as_ref(), &v(&gamma), &v(&beta), &v(&mean), &v(&var), eps).map_err(|m| bn.err(m))?;
        let w_name = format!("_v_{}", base + 18 + 24 * k);
        let b_name = format!("_v_{}", base + 24 + 24 * k);
        k += 1;
        let bn_out = bn.outputs[0].clone();
        let conv_out = conv.outputs[0].clone();
        g.initializers.insert(w_name.clone(), ConstTensor::F32(fused.weight));
        g.initializers.insert(b_name.clone(), ConstTensor::F32(fused.bias));
        g.initializer_order.push(w_name.clone());
        g.initializer_order.push(b_name.clone());
        let conv = &mut g.nodes[ci];
        conv.inputs.truncate(1);
        conv.inputs.push(w_name);
        conv.inputs.push(b_name);
        if g.outputs.contains(&bn_out) {
            // keep the requested output name: the conv produces it directly
            conv.outputs[0] = bn_out;
        } else {
            rename.insert(bn_out, conv_out);
        }
        removed[bi] = true;
    }
    if k == 0 {
        return Ok(());
    }
    let nodes = std::mem::take(&mut g.nodes);
    g.nodes = nodes.into_iter().zip(removed).filter(|(_, r)| !r).map(|(n, _)| n).collect();
    for n in &mut g.nodes {
        for i in &mut n.inputs {
            if let Some(r) = rename.get(i) {
                *i = r.clone();
            }
        }
    }
    let mut used: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for n in &g.nodes {
        used.extend(n.inputs.iter().map(|s| s.as_str()));
    }
    used.extend(g.outputs.iter().map(|s| s.as_str()));
    let keep: std::collections::HashSet<String> =
        g.initializers.keys().filter(|k| used.contains(k.as_str())).cloned().collect();
    g.initializers.retain(|k, _| keep.contains(k));
    g.initializer_order.retain(|k| keep.contains(k));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_params_match_the_formula() {
        let w = ArrayD::from_shape_vec(IxDyn(&[2, 1, 1, 1]), vec![2.0f32, -1.0]).unwrap();
        let f = fuse_params(&w, None, &[1.0, 2.0], &[0.5, 0.0], &[1.0, -1.0], &[3.0, 0.0], 1.0).unwrap();
        // scale = [1/2, 2/1]
        assert_eq!(f.weight.iter().copied().collect::<Vec<_>>(), vec![1.0, -2.0]);
        assert_eq!(f.bias.iter().copied().collect::<Vec<_>>(), vec![(0.0 - 1.0) * 0.5 + 0.5, (0.0 + 1.0) * 2.0]);
    }
}
