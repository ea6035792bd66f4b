//! Safe-to-call wrapper of the `gemm` crate's f32 matrix product on strided row-major views.

use gemm::Parallelism;

/// A read-only strided matrix: element (i, j) is at `data[offset + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(super) struct MatRef<'d> {
    pub data: &'d [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl MatRef<'_> {
    /// True when every element index lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = self.offset + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
        last < self.data.len()
    }
}

/// `dst[i * dst_rs + j] (+)= sum_k lhs(i, k) * rhs(k, j)` for `i < lhs.rows`, `j < rhs.cols`.
///
/// `accumulate` adds to the existing contents of `dst`; otherwise `dst` is overwritten.
/// `parallel` lets `gemm` split the product over the rayon pool.
pub(super) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    parallel: bool,
) {
    if lhs.rows == 0 || rhs.cols == 0 {
        return;
    }
    assert!((lhs.rows - 1) * dst_rs + rhs.cols <= dst.len(), "matmul: destination too small");
    // SAFETY: `dst` is an exclusive borrow covering every written element (checked above).
    unsafe { matmul_raw(dst.as_mut_ptr(), dst_rs, lhs, rhs, accumulate, parallel) }
}

/// [`matmul`] into a raw destination, for callers that write disjoint column blocks of one
/// matrix from several threads.
///
/// # Safety
/// `dst + i * dst_rs + j` must be valid for writes for `i < lhs.rows`, `j < rhs.cols`, and no
/// other thread may access those elements during the call.
pub(super) unsafe fn matmul_raw(
    dst: *mut f32,
    dst_rs: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul: inner dimensions differ");
    assert!(lhs.in_bounds() && rhs.in_bounds(), "matmul: operand view out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *dst.add(i * dst_rs + j) = 0.0;
                }
            }
        }
        return;
    }
    let par = if parallel && rayon::current_num_threads() > 1 {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: both input views were bounds-checked above; the caller guarantees `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.offset),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}
