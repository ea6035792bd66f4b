//! Kernels on raw byte slices of the arena. [`bm1684x`] and [`cv18xx`] hold each chip's integer
//! arithmetic, [`float`] the F32/F16/BF16 ops, [`data`] chip-neutral data movement, [`conv`] the
//! shared GEMM engine, [`num`] the scalar rounding / conversion primitives and [`math`] `expf`.

pub mod bm1684x;
pub mod conv;
pub mod cv18xx;
pub mod data;
pub mod float;
pub mod math;
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

/// Shapes of a broadcasting binary op: inputs `a`, `b` and the output `y` (NCHW; every input dim
/// equals the output's or is 1, as verified).
#[derive(Debug, Clone, Copy)]
pub struct Bcast {
    /// first input
    pub a: [u32; 4],
    /// second input
    pub b: [u32; 4],
    /// output
    pub y: [u32; 4],
}

impl Bcast {
    /// Element strides of `shape` read at the output's coordinates (0 along broadcast dims).
    fn strides(shape: [u32; 4], y: [u32; 4]) -> [usize; 4] {
        let mut s = [0usize; 4];
        let mut acc = 1usize;
        for k in (0..4).rev() {
            s[k] = if shape[k] == 1 && y[k] != 1 { 0 } else { acc };
            acc *= shape[k] as usize;
        }
        s
    }

    /// Visit every output element in row-major order: `f(out_index, a_index, b_index)`.
    #[inline(always)]
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let n: usize = self.y.iter().map(|&d| d as usize).product();
        if self.a == self.y && self.b == self.y {
            for i in 0..n {
                f(i, i, i);
            }
            return;
        }
        let (sa, sb) = (Self::strides(self.a, self.y), Self::strides(self.b, self.y));
        let [d0, d1, d2, d3] = self.y.map(|d| d as usize);
        let mut i = 0;
        for n0 in 0..d0 {
            for n1 in 0..d1 {
                for n2 in 0..d2 {
                    let ba = n0 * sa[0] + n1 * sa[1] + n2 * sa[2];
                    let bb = n0 * sb[0] + n1 * sb[1] + n2 * sb[2];
                    for n3 in 0..d3 {
                        f(i, ba + n3 * sa[3], bb + n3 * sb[3]);
                        i += 1;
                    }
                }
            }
        }
    }
}

/// Broadcasting byte-wise binary op: `y[i] = f(a[ia], b[ib])`; an in-place source (`None`) has the
/// output's shape and is read at the output index.
#[inline(always)]
pub fn zip_bytes_bcast(a: Src<'_>, b: Src<'_>, y: &mut [u8], shapes: &Bcast, f: impl Fn(u8, u8) -> u8) {
    shapes.for_each(|i, ia, ib| {
        let va = a.map(|a| a[ia]).unwrap_or(y[i]);
        let vb = b.map(|b| b[ib]).unwrap_or(y[i]);
        y[i] = f(va, vb);
    });
}
