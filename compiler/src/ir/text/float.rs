//! Float literals spelled exactly as MLIR's printer spells them.
//!
//! MLIR first tries the `%e`-like form with six significant digits (`1.000000e-01`) and keeps it
//! when it reads back to the same value in the attribute's float semantics; otherwise it prints
//! the value with `2 + precision·59/196` significant digits (17 for f64, 9 for f32), trailing zeros
//! dropped, in plain notation when it needs at most three padding zeros, else as `1.5E-5`; when
//! that has no `.` (large integral values) or the value is not finite, it prints the bit pattern
//! in hexadecimal (`0x7FF0000000000000`).

/// The float semantics of an attribute (the type after the `:`), which decide the spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloatSem {
    F64,
    F32,
    F16,
    BF16,
}

impl FloatSem {
    /// Semantics for an attribute type suffix; anything unknown is printed as f64.
    pub(crate) fn from_type(ty: &str) -> Self {
        match ty {
            "f32" => FloatSem::F32,
            "f16" => FloatSem::F16,
            "bf16" => FloatSem::BF16,
            _ => FloatSem::F64,
        }
    }

    fn precision_bits(self) -> usize {
        match self {
            FloatSem::F64 => 53,
            FloatSem::F32 => 24,
            FloatSem::F16 => 11,
            FloatSem::BF16 => 8,
        }
    }

    /// Round an f64 to this semantics (the value a FloatAttr of this type holds).
    pub(crate) fn round(self, v: f64) -> f64 {
        match self {
            FloatSem::F64 => v,
            FloatSem::F32 => v as f32 as f64,
            FloatSem::F16 => half::f16::from_f64(v).to_f64(),
            FloatSem::BF16 => half::bf16::from_f64(v).to_f64(),
        }
    }

    /// Bit pattern of `v` (already representable) in this semantics.
    fn bits(self, v: f64) -> u64 {
        match self {
            FloatSem::F64 => v.to_bits(),
            FloatSem::F32 => (v as f32).to_bits() as u64,
            FloatSem::F16 => half::f16::from_f64(v).to_bits() as u64,
            FloatSem::BF16 => half::bf16::from_f64(v).to_bits() as u64,
        }
    }

    /// Value of a bit pattern in this semantics (for hexadecimal literals).
    pub(crate) fn value_of_bits(self, b: u64) -> Option<f64> {
        match self {
            FloatSem::F64 => Some(f64::from_bits(b)),
            FloatSem::F32 => u32::try_from(b).ok().map(|b| f32::from_bits(b) as f64),
            FloatSem::F16 => u16::try_from(b).ok().map(|b| half::f16::from_bits(b).to_f64()),
            FloatSem::BF16 => u16::try_from(b).ok().map(|b| half::bf16::from_bits(b).to_f64()),
        }
    }

    fn hex_digits(self) -> usize {
        match self {
            FloatSem::F64 => 16,
            FloatSem::F32 => 8,
            FloatSem::F16 | FloatSem::BF16 => 4,
        }
    }

    /// Parse a decimal literal correctly rounded to this semantics.
    fn parse(self, s: &str) -> Option<f64> {
        match self {
            FloatSem::F32 => s.parse::<f32>().ok().map(|x| x as f64),
            _ => s.parse::<f64>().ok().map(|x| self.round(x)),
        }
    }
}

/// A little unsigned big integer, just enough for exact binary-to-decimal conversion.
#[derive(Debug, Clone)]
struct BigUint {
    /// 32-bit limbs, least significant first
    limbs: Vec<u32>,
}

impl BigUint {
    fn from_u64(v: u64) -> Self {
        let mut b = BigUint { limbs: vec![v as u32, (v >> 32) as u32] };
        b.trim();
        b
    }
    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }
    fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }
    fn active_bits(&self) -> usize {
        match self.limbs.last() {
            None => 0,
            Some(&top) => (self.limbs.len() - 1) * 32 + (32 - top.leading_zeros() as usize),
        }
    }
    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for l in &mut self.limbs {
            let t = *l as u64 * m as u64 + carry;
            *l = t as u32;
            carry = t >> 32;
        }
        if carry > 0 {
            self.limbs.push(carry as u32);
        }
    }
    /// Divide in place, returning the remainder.
    fn divrem_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for l in self.limbs.iter_mut().rev() {
            let t = (rem << 32) | *l as u64;
            *l = (t / d as u64) as u32;
            rem = t % d as u64;
        }
        self.trim();
        rem as u32
    }
    fn shl(&mut self, n: usize) {
        let (words, bits) = (n / 32, n % 32);
        if bits > 0 {
            let mut carry = 0u32;
            for l in &mut self.limbs {
                let t = ((*l as u64) << bits) | carry as u64;
                *l = t as u32;
                carry = (t >> 32) as u32;
            }
            if carry > 0 {
                self.limbs.push(carry);
            }
        }
        let mut v = vec![0u32; words];
        v.extend_from_slice(&self.limbs);
        self.limbs = v;
        self.trim();
    }
}

/// Integer significand (with the implicit bit) and binary exponent: |v| = sig · 2^exp.
fn decompose(v: f64, sem: FloatSem) -> (u64, i32) {
    let (frac_bits, bias, bits) = match sem {
        FloatSem::F64 => (52u32, 1023i32, v.abs().to_bits()),
        FloatSem::F32 => (23, 127, (v.abs() as f32).to_bits() as u64),
        FloatSem::F16 => (10, 15, half::f16::from_f64(v.abs()).to_bits() as u64),
        FloatSem::BF16 => (7, 127, half::bf16::from_f64(v.abs()).to_bits() as u64),
    };
    let mant = bits & ((1u64 << frac_bits) - 1);
    let e = (bits >> frac_bits) as i32;
    if e == 0 {
        (mant, 1 - bias - frac_bits as i32)
    } else {
        (mant | (1u64 << frac_bits), e - bias - frac_bits as i32)
    }
}

/// Decimal digits (most significant first, trailing zeros dropped) and the power of ten of the
/// last digit, computed the way LLVM's `APFloat::toString` does: exact expansion, truncated to
/// about `precision` digits, then rounded half-up on the next digit. `v` finite and non-zero.
fn decimal_digits(v: f64, sem: FloatSem, precision: usize) -> (Vec<u8>, i32) {
    let (mut sig, mut exp) = decompose(v, sem);
    let tz = sig.trailing_zeros();
    sig >>= tz;
    exp += tz as i32;
    let mut big = BigUint::from_u64(sig);
    if exp > 0 {
        big.shl(exp as usize);
        exp = 0;
    } else if exp < 0 {
        // N·2^-e = N·5^e·10^-e
        let mut t = -exp;
        while t >= 13 {
            big.mul_small(1_220_703_125); // 5^13
            t -= 13;
        }
        big.mul_small(5u32.pow(t as u32));
    }
    // drop decimal digits beyond what the precision needs (truncation, as LLVM does)
    let bits = big.active_bits();
    let required = (precision * 196).div_ceil(59);
    if bits > required {
        let mut tens = (bits - required) * 59 / 196;
        exp += tens as i32;
        while tens >= 9 {
            big.divrem_small(1_000_000_000);
            tens -= 9;
        }
        big.divrem_small(10u32.pow(tens as u32));
    }
    // digits, least significant first, without trailing zeros
    let mut buf: Vec<u8> = Vec::new();
    while !big.is_zero() {
        let d = big.divrem_small(10) as u8;
        if buf.is_empty() && d == 0 {
            exp += 1;
        } else {
            buf.push(d);
        }
    }
    if buf.is_empty() {
        return (vec![0], 0);
    }
    // round half-up to `precision` digits
    let n = buf.len();
    if n > precision {
        let mut first = n - precision;
        if buf[first - 1] < 5 {
            while first < n && buf[first] == 0 {
                first += 1;
            }
        } else {
            let mut i = first;
            loop {
                if i == n {
                    break;
                }
                if buf[i] == 9 {
                    first += 1;
                    i += 1;
                } else {
                    buf[i] += 1;
                    break;
                }
            }
        }
        if first == n {
            exp += n as i32;
            buf = vec![1];
        } else {
            exp += first as i32;
            buf.drain(..first);
        }
    }
    buf.reverse();
    (buf, exp)
}

fn push_digits(out: &mut String, d: &[u8]) {
    out.extend(d.iter().map(|&x| (b'0' + x) as char));
}

/// The `%e`-like candidate: `d.dddddde±XX`, six decimals, at least two exponent digits.
fn exponent_form(v: f64, sem: FloatSem) -> String {
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    if v == 0.0 {
        out.push_str("0.000000e+00");
        return out;
    }
    let (digits, last_exp) = decimal_digits(v, sem, 6);
    let exp = last_exp + digits.len() as i32 - 1;
    push_digits(&mut out, &digits[..1]);
    out.push('.');
    push_digits(&mut out, &digits[1..]);
    for _ in digits.len()..7 {
        out.push('0');
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        out.push('0');
    }
    out.push_str(&e.to_string());
    out
}

/// The default APFloat spelling (full precision); may lack a `.` for large integral values.
fn natural_form(v: f64, sem: FloatSem) -> String {
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    if v == 0.0 {
        out.push('0');
        return out;
    }
    let precision = 2 + sem.precision_bits() * 59 / 196;
    let (digits, exp) = decimal_digits(v, sem, precision);
    let nd = digits.len() as i32;
    let max_padding = 3;
    let scientific = if exp >= 0 {
        exp > max_padding || nd + exp > precision as i32
    } else {
        let msd = exp + nd - 1;
        msd < 0 && -msd > max_padding
    };
    if scientific {
        let e = exp + nd - 1;
        push_digits(&mut out, &digits[..1]);
        out.push('.');
        if nd == 1 {
            out.push('0');
        } else {
            push_digits(&mut out, &digits[1..]);
        }
        out.push('E');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&e.unsigned_abs().to_string());
    } else if exp >= 0 {
        push_digits(&mut out, &digits);
        for _ in 0..exp {
            out.push('0');
        }
    } else {
        let whole = exp + nd;
        if whole > 0 {
            push_digits(&mut out, &digits[..whole as usize]);
            out.push('.');
            push_digits(&mut out, &digits[whole as usize..]);
        } else {
            out.push_str("0.");
            for _ in 0..-whole {
                out.push('0');
            }
            push_digits(&mut out, &digits);
        }
    }
    out
}

/// Spell `v` as MLIR prints a float of semantics `sem` (without the `: type` suffix).
pub(crate) fn format_float(v: f64, sem: FloatSem) -> String {
    let v = sem.round(v);
    if v.is_finite() {
        let e = exponent_form(v, sem);
        if sem.parse(&e).map(|p| sem.bits(p)) == Some(sem.bits(v)) {
            return e;
        }
        let n = natural_form(v, sem);
        if n.contains('.') {
            return n;
        }
    }
    format!("0x{:0width$X}", sem.bits(v), width = sem.hex_digits())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_tpu_mlir_spellings() {
        let f = |v: f64| format_float(v, FloatSem::F64);
        assert_eq!(f(0.1), "1.000000e-01");
        assert_eq!(f(-1.0), "-1.000000e+00");
        assert_eq!(f(0.0), "0.000000e+00");
        assert_eq!(f(-0.0), "-0.000000e+00");
        assert_eq!(f(127.0), "1.270000e+02");
        assert_eq!(f(0.1f32 as f64), "0.10000000149011612");
        assert_eq!(f(0.0039216000586748123), "0.0039216000586748123");
        assert_eq!(f(0.99409919999999996), "0.99409919999999996");
        assert_eq!(f(0.03937007874015748), "0.03937007874015748");
        assert_eq!(f(0.0038984282352941173), "0.0038984282352941173");
        // LLVM truncates before rounding: not the correctly rounded ...433
        assert_eq!(f(0.082108467716535432), "0.082108467716535432");
        assert_eq!(f(1.0 / 3.0 * 1e-5), "3.3333333333333333E-6");
        assert_eq!(f(1234567.0), "0x4132D68700000000");
        assert_eq!(f(1234567.25), "1234567.25");
        assert_eq!(f(f64::INFINITY), "0x7FF0000000000000");
        assert_eq!(format_float(127.0, FloatSem::F32), "1.270000e+02");
        // an f32 attribute holding 0.1f prints short: it reads back to the same f32
        assert_eq!(format_float(0.1f32 as f64, FloatSem::F32), "1.000000e-01");
        assert_eq!(format_float(1.0 / 3.0, FloatSem::F32), "0.333333343");
        assert_eq!(format_float(f64::NAN, FloatSem::F32), "0x7FC00000");
    }

    #[test]
    fn every_spelling_reads_back_exactly() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let s = format_float(v, FloatSem::F64);
            let back = if let Some(h) = s.strip_prefix("0x") {
                f64::from_bits(u64::from_str_radix(h, 16).unwrap())
            } else {
                s.parse::<f64>().unwrap()
            };
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e} -> {s}");
        }
    }
}
