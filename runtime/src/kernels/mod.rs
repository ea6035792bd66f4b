//! Kernels on raw byte slices of the arena. [`bm1684x`] and [`cv18xx`] hold each chip's integer
//! arithmetic, [`float`] the F32/F16/BF16 ops, [`data`] chip-neutral data movement, [`conv`] the
//! shared GEMM engine and [`num`] the scalar rounding / conversion primitives.

pub mod bm1684x;
pub mod conv;
pub mod cv18xx;
pub mod data;
pub mod float;
pub mod num;

/// Read-only source of an element-wise kernel: a separate slice or the output itself (in place).
pub type Src<'s> = Option<&'s [u8]>;

/// Apply an 8-bit -> 8-bit function through a 256-entry table built once per call (every int8
/// unary op has only 256 possible inputs).
#[inline(always)]
pub fn map_bytes_via_table(x: Src<'_>, y: &mut [u8], f: impl Fn(u8) -> u8) {
    let mut table = [0u8; 256];
    for (i, t) in table.iter_mut().enumerate() {
        *t = f(i as u8);
    }
    map_bytes(x, y, |b| table[b as usize]);
}

/// Apply `f` to every byte of the source (or of `y` in place), writing `y`.
#[inline(always)]
pub fn map_bytes(x: Src<'_>, y: &mut [u8], f: impl Fn(u8) -> u8) {
    match x {
        Some(x) => {
            for (o, &i) in y.iter_mut().zip(x) {
                *o = f(i);
            }
        }
        None => {
            for o in y.iter_mut() {
                *o = f(*o);
            }
        }
    }
}

/// Apply `f` to pairs of bytes of `a` and `b` (either may be `y` itself), writing `y`.
#[inline(always)]
pub fn zip_bytes(a: Src<'_>, b: Src<'_>, y: &mut [u8], f: impl Fn(u8, u8) -> u8) {
    for i in 0..y.len() {
        let va = a.map(|a| a[i]).unwrap_or(y[i]);
        let vb = b.map(|b| b[i]).unwrap_or(y[i]);
        y[i] = f(va, vb);
    }
}
