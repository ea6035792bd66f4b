//! The format-2 instructions (broadcasting Mul / Add with relu, Copy, Pad, Sigmoid, Softmax) on a
//! hand-built bmodel: values against a direct f32 computation, the verifier's rejections with
//! their messages, and a mutation fuzzer (no panic, no access outside the arena).

mod common;
use bmodel_format::{AddParams, Chip, DType, Instr, IoTensor, MemoryPlan, MulParams, Region, TensorRef};
use runtime::{load, RuntimeError};

fn act(offset: u32, shape: [u32; 4]) -> TensorRef {
    TensorRef { region: Region::Activation, offset, shape, dtype: DType::F32 }
}

fn io(name: &str, t: TensorRef) -> IoTensor<'_> {
    IoTensor { name, dims: t.shape.iter().copied().collect(), storage: t, scale: 1.0, zero_point: 0 }
}

/// x[1,2,2,3] -> m = x·c (c[1,2,1,1] per channel) -> a = relu(m + x) -> t = a with H and W swapped
/// -> p = pad(t, one row of 1.0 on top) -> s = sigmoid(p) -> o = softmax(s, W).
fn program() -> (Vec<Instr>, Vec<u8>, TensorRef, TensorRef) {
    let x = act(0, [1, 2, 2, 3]);
    let c = TensorRef { region: Region::Coeff, offset: 0, shape: [1, 2, 1, 1], dtype: DType::F32 };
    let m = act(64, [1, 2, 2, 3]);
    let a = act(128, [1, 2, 2, 3]);
    let t = act(192, [1, 2, 3, 2]);
    let p = act(256, [1, 2, 4, 2]);
    let s = act(320, [1, 2, 4, 2]);
    let o = act(384, [1, 2, 4, 2]);
    let instrs = vec![
        Instr::Mul { a: x, b: c, y: m, params: MulParams::Float, relu: false },
        Instr::Add { a: m, b: x, y: a, params: AddParams::Float, relu: true },
        Instr::Copy { x: a, y: t, start: 0, strides: [12, 6, 1, 3] },
        Instr::Pad { x: t, y: p, before: [0, 0, 1, 0], value: 1.0f32.to_bits() },
        Instr::Sigmoid { x: p, y: s },
        Instr::Softmax { x: s, y: o, axis: 3 },
    ];
    let coeff: Vec<u8> = [2.0f32, -0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    (instrs, coeff, x, o)
}

fn build(instrs: &[Instr]) -> Vec<u8> {
    let (_, coeff, x, o) = program();
    let plan = MemoryPlan { alignment: 64, coeff_size: 8, activation_size: 448, scratch_offset: 448, scratch_size: 0 };
    bmodel_format::writer::write_bmodel(Chip::Bm1684x, "new_instrs", plan, &[io("x", x)], &[io("o", o)], instrs, &coeff)
        .unwrap()
}

/// The same computation written directly with std's f32 arithmetic.
fn expected(x: &[f32]) -> Vec<f32> {
    let c = [2.0f32, -0.5];
    let idx = |ch: usize, h: usize, w: usize| (ch * 2 + h) * 3 + w;
    let a: Vec<f32> = (0..12).map(|i| ((0.0 + x[i] * c[i / 6]) + x[i]).max(0.0)).collect();
    let mut out = Vec::new();
    for ch in 0..2 {
        // padded plane [4][2]: row 0 is 1.0, rows 1..4 are a[ch][w][h] (H and W swapped)
        let mut rows = vec![[1.0f32; 2]];
        for w in 0..3 {
            rows.push([a[idx(ch, 0, w)], a[idx(ch, 1, w)]]);
        }
        for r in rows {
            let sg = r.map(|v| 1.0 / (1.0 + (-v).exp()));
            let m = sg[0].max(sg[1]);
            let e = sg.map(|v| (v - m).exp());
            let sum = 0.0 + (e[0] + e[1]); // the unrolled sum of a 2-element lane
            out.extend(e.map(|v| v / sum));
        }
    }
    out
}

#[test]
fn new_instructions_compute_the_reference_values() {
    let (instrs, ..) = program();
    let bytes = build(&instrs);
    let x: Vec<f32> = vec![0.5, -1.0, 2.0, 3.0, -0.25, 1.5, -2.0, 0.75, 4.0, -3.0, 1.0, 0.0];
    let out = runtime::host::run_f32(&bytes, &[&x]).unwrap();
    let want = expected(&x);
    assert_eq!(out[0].values.len(), 16);
    for (g, w) in out[0].values.iter().zip(&want) {
        assert_eq!(g.to_bits(), w.to_bits(), "got {:?}\nwant {want:?}", out[0].values);
    }
    // channel 0, first padded row: softmax of two equal sigmoids
    assert_eq!(out[0].values[0], 0.5);
}

/// Load `instrs` (a variation of the program) and return the loader's message.
fn rejection(instrs: &[Instr]) -> String {
    let bytes = build(instrs);
    let mut arena = vec![0u8; 448];
    let msg = match load(&bytes, &mut arena) {
        Err(e @ RuntimeError::Format(_)) => e.to_string(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted"),
    };
    msg
}

#[test]
fn verifier_rejects_inconsistent_new_instructions() {
    let (base, ..) = program();
    let with = |k: usize, i: Instr| {
        let mut v = base.clone();
        v[k] = i;
        v
    };
    let (x, a, t, p, s, o) = (
        act(0, [1, 2, 2, 3]),
        act(128, [1, 2, 2, 3]),
        act(192, [1, 2, 3, 2]),
        act(256, [1, 2, 4, 2]),
        act(320, [1, 2, 4, 2]),
        act(384, [1, 2, 4, 2]),
    );
    // the copy's last read (start 1 + 11) is element 12 of a 12-element source
    let bad_copy = with(2, Instr::Copy { x: a, y: t, start: 1, strides: [12, 6, 1, 3] });
    assert_eq!(
        rejection(&bad_copy),
        "invalid bmodel: instruction 2 (copy): inconsistent shapes: copy reads past its source"
    );
    let bad_pad = with(3, Instr::Pad { x: t, y: p, before: [0, 0, 2, 0], value: 0 });
    assert_eq!(
        rejection(&bad_pad),
        "invalid bmodel: instruction 3 (pad): inconsistent shapes: pad output smaller than input plus padding"
    );
    let c3 = TensorRef { region: Region::Coeff, offset: 0, shape: [1, 1, 1, 2], dtype: DType::F32 };
    let bad_mul = with(0, Instr::Mul { a: x, b: c3, y: act(64, [1, 2, 2, 3]), params: MulParams::Float, relu: false });
    assert_eq!(rejection(&bad_mul), "invalid bmodel: instruction 0 (mul): inconsistent shapes: mul shapes");
    let int_mul = with(
        0,
        Instr::Mul {
            a: x,
            b: TensorRef { shape: [1, 2, 1, 1], ..c3 },
            y: act(64, [1, 2, 2, 3]),
            params: MulParams::Int { multiplier: 1, rshift: 0 },
            relu: false,
        },
    );
    assert_eq!(rejection(&int_mul), "invalid bmodel: instruction 0 (mul): unsupported element types: mul");
    let bad_softmax = with(5, Instr::Softmax { x: s, y: o, axis: 4 });
    assert_eq!(rejection(&bad_softmax), "invalid bmodel: instruction 5 (softmax): inconsistent shapes: axis");
    let i8_sigmoid = with(4, Instr::Sigmoid { x: p, y: TensorRef { dtype: DType::I8, ..s } });
    assert_eq!(rejection(&i8_sigmoid), "invalid bmodel: instruction 4 (sigmoid): unsupported element types: sigmoid");
    // a copy onto its own source and a softmax past the arena
    let alias = with(2, Instr::Copy { x: a, y: TensorRef { offset: 128, ..t }, start: 0, strides: [12, 6, 1, 3] });
    assert_eq!(rejection(&alias), "invalid bmodel: instruction 2 (copy): output overlaps an input");
    let outside = with(5, Instr::Softmax { x: s, y: act(420, [1, 2, 4, 2]), axis: 3 });
    assert_eq!(
        rejection(&outside),
        "invalid bmodel: instruction 5 (softmax): operand 'y' ends at byte 484, past its region of 448 bytes"
    );
}

#[test]
fn mutated_new_instruction_models_never_panic() {
    let (instrs, ..) = program();
    let seed = build(&instrs);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let (mut rejected, mut ran) = (0usize, 0usize);
    let meta_end = 32 + u32::from_le_bytes([seed[8], seed[9], seed[10], seed[11]]) as usize;
    for _ in 0..20000 {
        let mut b = seed.clone();
        for _ in 0..1 + next() % 3 {
            let pos = (next() as usize) % meta_end;
            b[pos] = match next() % 3 {
                0 => b[pos] ^ (1 << (next() % 8)),
                1 => next() as u8,
                _ => [0u8, 0xFF, 0x7F, 0x80][(next() % 4) as usize],
            };
        }
        let crc = bmodel_format::crc::crc32(&b[32..]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        let outcome = common::load_and_run_untrusted(&b);
        match outcome {
            Ok(true) => ran += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("a mutated model made the runtime panic"),
        }
    }
    eprintln!("fuzz: {rejected} rejected, {ran} ran");
    assert!(ran > 50 && rejected > 50, "fuzzer did not exercise both paths: ran {ran}, rejected {rejected}");
}
