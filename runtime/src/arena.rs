//! Splitting the caller's arena into the views one instruction needs: the output (mutable), its
//! inputs (shared, or "in place" when verified to coincide with the output) and the scratch area.

use bmodel_format::{Region, TensorRef};

/// Byte range of an operand.
#[inline(always)]
fn range(t: &TensorRef) -> (usize, usize) {
    let s = t.offset as usize;
    (s, s + t.byte_len() as usize)
}

/// Views of `N` inputs and the output inside `act` (activations) / `coeff`. An input that occupies
/// exactly the output's bytes is returned as `None` (in place). Operands were checked by
/// `bmodel_format::verify`: disjoint from the output, or identical to it.
pub fn views<'s, const N: usize>(
    act: &'s mut [u8],
    coeff: &'s [u8],
    ins: [&TensorRef; N],
    y: &TensorRef,
) -> ([Option<&'s [u8]>; N], &'s mut [u8]) {
    let (ys, ye) = range(y);
    let (left, rest) = act.split_at_mut(ys);
    let (mid, right) = rest.split_at_mut(ye - ys);
    let left: &'s [u8] = left;
    let right: &'s [u8] = right;
    let mut out: [Option<&'s [u8]>; N] = [None; N];
    for (o, t) in out.iter_mut().zip(ins) {
        let (s, e) = range(t);
        *o = match t.region {
            Region::Coeff => Some(&coeff[s..e]),
            Region::Activation if s == ys && e == ye => None,
            Region::Activation if e <= ys => Some(&left[s..e]),
            Region::Activation => Some(&right[s - ye..e - ye]),
        };
    }
    (out, mid)
}
