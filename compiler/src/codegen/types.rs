//! Mapping IR tensor types to bmodel storage: element type, NCHW shape, quantization.

use super::CodegenError;
use crate::ir::{ElemType, Quant, TensorType};
use bmodel_format::DType;

/// Storage element type of an IR tensor type.
pub fn dtype_of(ty: &TensorType, what: &str) -> Result<DType, CodegenError> {
    let unsupported = |why: String| CodegenError::Type { tensor: what.to_string(), why };
    let TensorType::Tensor { elem, quant, .. } = ty else {
        return Err(unsupported("is `none`".into()));
    };
    if let Some(Quant::Uniform { signed, bits, .. }) = quant {
        return match (bits, signed) {
            (8, true) => Ok(DType::I8),
            (8, false) => Ok(DType::U8),
            _ => Err(unsupported(format!("{bits}-bit quantized storage is not supported"))),
        };
    }
    Ok(match elem {
        ElemType::F32 => DType::F32,
        ElemType::F16 => DType::F16,
        ElemType::BF16 => DType::BF16,
        ElemType::I8 | ElemType::SI8 => DType::I8,
        ElemType::UI8 => DType::U8,
        ElemType::I16 | ElemType::SI16 => DType::I16,
        ElemType::I32 | ElemType::SI32 | ElemType::UI32 => DType::I32,
        other => return Err(unsupported(format!("element type {other} is not supported"))),
    })
}

/// Quantization (scale, zero point) of an IR type; (1.0, 0) for float tensors.
pub fn scale_zp(ty: &TensorType) -> (f64, i64) {
    match ty.quant() {
        Some(Quant::Uniform { scale, zero_point, .. }) => (scale, zero_point),
        _ => (1.0, 0),
    }
}

/// NCHW storage shape: leading 1s added below rank 4; above rank 4 the leading dims are merged
/// into the first (the element order is unchanged, which is all element-wise ops and views need;
/// ops that interpret axes check the rank themselves).
pub fn shape4(shape: &[usize], what: &str) -> Result<[u32; 4], CodegenError> {
    let mut dims: Vec<usize> = shape.to_vec();
    while dims.len() > 4 {
        let d0 = dims.remove(0);
        dims[0] *= d0;
    }
    let mut out = [1u32; 4];
    let off = 4 - dims.len();
    for (i, &d) in dims.iter().enumerate() {
        out[off + i] = u32::try_from(d)
            .map_err(|_| CodegenError::Type { tensor: what.to_string(), why: "dimension too large".into() })?;
    }
    Ok(out)
}

/// Offset that maps an axis of a rank-`rank` shape into the 4-D form of [`shape4`].
pub fn axis4(axis: i64, rank: usize, what: &str) -> Result<u8, CodegenError> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank || rank > 4 {
        return Err(CodegenError::Type { tensor: what.to_string(), why: format!("axis {axis} of rank {rank}") });
    }
    Ok((a as usize + 4 - rank) as u8)
}
