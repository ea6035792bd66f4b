//! The f32 square root of ONNX Runtime's CPU `Sqrt` kernel, bit for bit, as tpu-mlir's
//! model_transform gets it when it constant-folds onnx-optimizer's BatchNorm fusion nodes.
//!
//! ONNX Runtime (1.16, x86-64) evaluates `Sqrt` with Eigen's fast-math SSE path: every whole
//! packet of 4 elements (from index 0; ORT's buffers are aligned) is `a · x1` with
//! `x1 = x0 · ((−0.5·a)·(x0·x0) + 1.5)` (no FMA) and `x0 = rsqrtps(a)`, inputs below `f32::MIN_POSITIVE`
//! giving 0; the last `len % 4` elements use the exact `sqrt`. The result is up to 4 ulps away
//! from the exact root and depends on the host's `rsqrtps` estimate, which differs between CPU
//! vendors. tpu-mlir's bundled references were made on an AMD Zen host; its estimate (a function
//! of the exponent's parity and the top 12 mantissa bits) is the table `zen_rsqrtps.bin`, so the
//! fold gives the same weights on every host.

/// `rsqrtps` of AMD Zen: 8192 little-endian u16, the top 12 mantissa bits of the estimate for
/// (exponent parity `p`, input mantissa bits 22..11 `k`) at index `p·4096 + k`, where `p = 0`
/// covers inputs in [1, 2) and `p = 1` inputs in [2, 4) (all estimates lie in (0.5, 1]).
/// Dumped with `_mm_rsqrt_ps` on an AMD EPYC for every bucket (checked on the full mantissa
/// range: the low 11 input bits never change the estimate).
const ZEN_RSQRTPS: &[u8; 16384] = include_bytes!("zen_rsqrtps.bin");

/// Eigen's packet size for f32 under SSE.
const PACKET: usize = 4;

/// AMD Zen's `rsqrtps` estimate of `1/sqrt(a)` for a positive normal `a`.
fn rsqrt_estimate(a: f32) -> f32 {
    let bits = a.to_bits();
    let exp = ((bits >> 23) & 0xff) as i32;
    let parity = ((exp - 127) & 1) as usize;
    let k = ((bits >> 11) & 0xfff) as usize;
    let i = 2 * (parity * 4096 + k);
    let mant = u16::from_le_bytes([ZEN_RSQRTPS[i], ZEN_RSQRTPS[i + 1]]) as u32;
    let out_exp = (126 - (exp - 127 - parity as i32) / 2) as u32;
    f32::from_bits((out_exp << 23) | (mant << 11))
}

/// Eigen's fast-math packet `psqrt` for one element.
fn packet_sqrt(a: f32) -> f32 {
    if a.is_nan() || a < 0.0 || a == f32::INFINITY {
        return f32::NAN;
    }
    if a < f32::MIN_POSITIVE {
        return 0.0;
    }
    let x0 = rsqrt_estimate(a);
    let x1 = x0 * ((a * -0.5) * (x0 * x0) + 1.5);
    a * x1
}

/// ONNX Runtime's `Sqrt` of a whole tensor (row-major): packets of 4 from the start, exact tail.
pub fn onnxruntime_sqrt(x: &[f32]) -> Vec<f32> {
    let whole = x.len() - x.len() % PACKET;
    x.iter().enumerate().map(|(i, &a)| if i < whole { packet_sqrt(a) } else { a.sqrt() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(bits: &[u32]) -> Vec<f32> {
        bits.iter().map(|&b| f32::from_bits(b)).collect()
    }

    #[test]
    fn matches_onnxruntime_1_16_3_outputs() {
        // inputs and outputs of ONNX Runtime 1.16.3's Sqrt on an AMD EPYC host
        let x = f(&[0x41808588, 0x42c1fc2e, 0x424e6d6c, 0x4139628e, 0x407d64f8, 0x42536f8a, 0x4237bbff, 0x40c784c6]);
        let want = [0x408042b3, 0x411d935e, 0x40e5e19d, 0x4059d991, 0x3ffeb1a2, 0x40e8a73a, 0x40d8e0bb, 0x401fceae];
        let got: Vec<u32> = onnxruntime_sqrt(&x).iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
        // exact roots differ by -1, -1, +2 and -2, +1 ulps
        let exact: Vec<u32> = x.iter().map(|v| v.sqrt().to_bits()).collect();
        let ulps: Vec<i64> = got.iter().zip(&exact).map(|(&a, &b)| a as i64 - b as i64).collect();
        assert_eq!(ulps, vec![0, -1, -1, 2, 0, -2, 1, 0]);
    }

    #[test]
    fn tail_is_exact_and_small_inputs_flush() {
        let x = f(&[0x41808588, 0x42c1fc2e, 0x424e6d6c, 0x4139628e, 0x4139628e]);
        let got = onnxruntime_sqrt(&x);
        assert_eq!(got[3].to_bits(), 0x4059d991);
        assert_eq!(got[4], x[4].sqrt());
        let z = onnxruntime_sqrt(&[0.0, 1e-40, 4.0, 1.0]);
        assert_eq!(z[..2], [0.0, 0.0]);
        assert!((z[2] - 2.0).abs() < 1e-6 && (z[3] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn estimate_table_is_monotone_from_4095_to_0() {
        let m = |i: usize| u16::from_le_bytes([ZEN_RSQRTPS[2 * i], ZEN_RSQRTPS[2 * i + 1]]);
        assert_eq!((m(0), m(4095), m(4096), m(8191)), (4095, 1697, 1696, 0));
        assert!((1..8192).all(|i| m(i - 1) >= m(i) && m(i - 1) - m(i) <= 2));
    }

    /// On an AMD host, the table is the instruction itself (every bucket, random low bits, all
    /// exponent parities); other vendors' estimates differ, so the check is skipped there.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn table_equals_rsqrtps_on_amd_hosts() {
        use std::arch::x86_64::{__cpuid, _mm_cvtss_f32, _mm_rsqrt_ps, _mm_set1_ps};
        let v = __cpuid(0);
        let vendor: Vec<u8> = [v.ebx, v.edx, v.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        if vendor != b"AuthenticAMD" {
            eprintln!("not an AMD host: skipped");
            return;
        }
        let mut seed = 0x1234_5678u32;
        for exp in [1u32, 100, 126, 127, 128, 129, 200, 254] {
            for k in 0..4096u32 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let a = f32::from_bits((exp << 23) | (k << 11) | (seed >> 21));
                // SAFETY: SSE is part of the x86-64 baseline, always present.
                let hw = unsafe { _mm_cvtss_f32(_mm_rsqrt_ps(_mm_set1_ps(a))) };
                assert_eq!(rsqrt_estimate(a).to_bits(), hw.to_bits(), "{a:e}");
            }
        }
    }
}
