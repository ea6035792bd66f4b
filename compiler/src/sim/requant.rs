//! The INT8 convolution's requantization (`y = ((Σ + b)·m + 2^(s−1)) >> s`, relu, `+ zp`,
//! saturation), for the common case in a form the vector units compute: the saturation is moved
//! before the shift, onto the 64-bit product, so that every step is a 32 × 32 → 64-bit multiply,
//! a 64-bit add, a 64-bit clamp and a logical shift (AVX2 has no 64-bit arithmetic shift).
//!
//! Why it is the same. With `v = Σ + b` and `t = v·m + 2^(s−1)`, `y = ⌊t / 2^s⌋`. The stored code
//! is `clamp(y', lo, hi)` with `y' = max(y, 0)` under relu, else `y`; that is
//! `clamp(y, L, H) + zp` with `H = hi − zp` and `L = lo − zp` (under relu `max(L, 0)`). Since
//! `⌊t / 2^s⌋ ≥ L ⇔ t ≥ L·2^s` and `⌊t / 2^s⌋ ≤ H ⇔ t < (H + 1)·2^s`, clamping
//! `t − L·2^s` to `[0, (H − L + 1)·2^s − 1]` and shifting it (now non-negative) gives
//! `clamp(y, L, H) − L`. Every quantity is checked to fit when a channel's form is made.

/// One output channel's requantization in the clamped form (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Clamped {
    b: i32,
    m: i32,
    s: u32,
    /// `2^(s−1) − L·2^s`.
    off: i64,
    /// `(H − L + 1)·2^s − 1`.
    cmax: i64,
    /// `L + zp`.
    base: i32,
}

impl Clamped {
    /// The clamped form of multiplier `m`, right shift `s`, bias `b` (HalfUp rounding, not
    /// cv18xx's QDM), relu, stored codes `lo ..= hi` with zero point `zp`, for sums of magnitude
    /// at most `sum_bound`; `None` when some quantity would not fit (the caller's general path
    /// runs then).
    pub(super) fn new(
        (m, s, b): (i64, i64, i64),
        relu: bool,
        (lo, hi, zp): (i64, i64, i64),
        sum_bound: u64,
    ) -> Option<Clamped> {
        if !(1..=62).contains(&s) || lo > hi {
            return None;
        }
        let m = i32::try_from(m).ok()?;
        let b32 = i32::try_from(b).ok()?;
        // Σ + b must not leave i32.
        if (sum_bound as i128) + (b as i128).abs() > i32::MAX as i128 {
            return None;
        }
        let (h, l) = (hi - zp, lo - zp);
        let l = if relu { l.max(0) } else { l };
        if l > h {
            return None;
        }
        let one = 1i128 << s;
        let off = (one >> 1) - l as i128 * one;
        let cmax = (h - l + 1) as i128 * one - 1;
        // |v·m| < 2^62; t = v·m + off must not leave i64.
        let reach = (1i128 << 62) + off.abs();
        if reach >= 1i128 << 63 || cmax >= 1i128 << 63 {
            return None;
        }
        let base = i32::try_from(l + zp).ok()?;
        Some(Clamped { b: b32, m, s: s as u32, off: off as i64, cmax: cmax as i64, base })
    }

    /// The stored code of the sum `a` (within the bound given to [`Clamped::new`]).
    #[inline(always)]
    pub(super) fn code(&self, a: i32) -> i32 {
        let t = (a.wrapping_add(self.b) as i64 * self.m as i64 + self.off).clamp(0, self.cmax);
        ((t as u64) >> self.s) as i32 + self.base
    }
}

/// `dst[i] = code(sums[i])` as int8 storage.
pub(super) fn to_i8(c: &Clamped, sums: &[i32], dst: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: avx2 is present.
        return unsafe { avx2::to_i8(c, sums, dst) };
    }
    body(c, sums, dst, |v| v as i8)
}

/// `dst[i] = code(sums[i])` as uint8 storage.
pub(super) fn to_u8(c: &Clamped, sums: &[i32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: avx2 is present.
        return unsafe { avx2::to_u8(c, sums, dst) };
    }
    body(c, sums, dst, |v| v as u8)
}

/// The loop of [`to_i8`] / [`to_u8`], compiled for the portable and the AVX2 entry points.
#[inline(always)]
fn body<T>(c: &Clamped, sums: &[i32], dst: &mut [T], store: impl Fn(i32) -> T) {
    let c = *c;
    for (d, &a) in dst.iter_mut().zip(sums) {
        *d = store(c.code(a));
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Clamped;

    /// See [`super::to_i8`].
    ///
    /// # Safety
    /// The CPU must support avx2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn to_i8(c: &Clamped, sums: &[i32], dst: &mut [i8]) {
        super::body(c, sums, dst, |v| v as i8)
    }

    /// See [`super::to_u8`].
    ///
    /// # Safety
    /// The CPU must support avx2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn to_u8(c: &Clamped, sums: &[i32], dst: &mut [u8]) {
        super::body(c, sums, dst, |v| v as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ops::requant_row;
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 11
        }
        fn int(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo + 1) as u64) as i64
        }
    }

    /// The general path's codes and the clamped form's (scalar and vector) agree on sums spread
    /// over the whole bound and at its ends, for multipliers, shifts, biases and zero points of
    /// every sign and size the form accepts, with and without relu, int8 and uint8 storage.
    #[test]
    fn clamped_form_equals_the_general_requantization() {
        let mut r = Lcg(99);
        let mut taken = 0;
        for case in 0..3000 {
            let bound = [0u64, 1, 1000, 300_810_240, (i32::MAX / 2) as u64][case % 5];
            let m = match case % 4 {
                0 => r.int(1, 1 << 14),
                1 => r.int(-(1 << 31), (1 << 31) - 1),
                2 => r.int(-300, 300),
                _ => r.int(1 << 30, (1 << 31) - 1),
            };
            let s = r.int(0, 63);
            let b = if case % 7 == 0 { 0 } else { r.int(-(1 << 30), 1 << 30) >> r.int(0, 30) };
            let relu = case % 3 == 0;
            let signed = case % 2 == 0;
            let zp = if signed { r.int(-128, 127) } else { r.int(0, 255) };
            let range = if signed { (-128, 127, zp) } else { (0, 255, zp) };
            let Some(c) = Clamped::new((m, s, b), relu, range, bound) else { continue };
            taken += 1;
            let n = 77;
            let sums: Vec<i32> = (0..n)
                .map(|i| match i {
                    0 => bound as i32,
                    1 => -(bound as i32),
                    2 => 0,
                    _ => r.int(-(bound as i64), bound as i64) as i32,
                })
                .collect();
            if signed {
                let mut want = vec![0i8; n];
                requant_row((m, s, b), false, relu, &sums, &mut want, |y| (y + zp).clamp(-128, 127) as i8);
                let mut got = vec![0i8; n];
                to_i8(&c, &sums, &mut got);
                assert_eq!(got, want, "m {m} s {s} b {b} zp {zp} relu {relu}");
                let scalar: Vec<i8> = sums.iter().map(|&a| c.code(a) as i8).collect();
                assert_eq!(scalar, want);
            } else {
                let mut want = vec![0u8; n];
                requant_row((m, s, b), false, relu, &sums, &mut want, |y| (y + zp).clamp(0, 255) as u8);
                let mut got = vec![0u8; n];
                to_u8(&c, &sums, &mut got);
                assert_eq!(got, want, "m {m} s {s} b {b} zp {zp} relu {relu}");
            }
        }
        assert!(taken > 2000, "{taken} cases in the clamped form");
    }

    #[test]
    fn quantities_that_might_not_fit_are_refused() {
        let range = (-128, 127, 0);
        assert!(Clamped::new((1 << 20, 20, 5), false, range, 1000).is_some());
        assert!(Clamped::new((1 << 20, 0, 5), false, range, 1000).is_none(), "no shift");
        assert!(Clamped::new((1 << 31, 20, 5), false, range, 1000).is_none(), "multiplier beyond i32");
        assert!(Clamped::new((1, 20, 1 << 20), false, range, (i32::MAX as u64) - 1000).is_none(), "Σ + b");
        assert!(Clamped::new((1, 60, 0), false, range, 1000).is_none(), "L·2^s beyond i64");
    }
}
