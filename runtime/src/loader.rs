//! Loading (verify once, bind the arena) and running a network.

use crate::dispatch::execute;
use crate::error::RuntimeError;
use bmodel_format::{verify, Bmodel, IoTensor};

/// A verified model bound to the caller's arena, ready to run.
pub struct Loaded<'m, 'a> {
    model: Bmodel<'m>,
    arena: &'a mut [u8],
}

/// Verify `bytes` (magic, version, CRC, every operand inside its region, shapes, scratch) and
/// bind `arena` (at least the plan's arena size).
pub fn load<'m, 'a>(bytes: &'m [u8], arena: &'a mut [u8]) -> Result<Loaded<'m, 'a>, RuntimeError> {
    let loaded = bind(bytes, arena);
    #[cfg(feature = "defmt")]
    match &loaded {
        Ok(l) => {
            let m = &l.model;
            defmt::info!(
                "bmodel '{=str}' loaded for {=str}: {=u32} instructions, arena {=u64} bytes (activations {=u32}, scratch {=u32}), coefficients {=u32} bytes",
                m.meta.name,
                m.chip().name(),
                m.meta.instr_count,
                m.meta.plan.arena_size(),
                m.meta.plan.activation_size,
                m.meta.plan.scratch_size,
                m.meta.plan.coeff_size
            );
        }
        Err(e) => defmt::error!("bmodel rejected: {}", e),
    }
    loaded
}

fn bind<'m, 'a>(bytes: &'m [u8], arena: &'a mut [u8]) -> Result<Loaded<'m, 'a>, RuntimeError> {
    let model = verify(bytes)?;
    let needed = model.meta.plan.arena_size();
    if (arena.len() as u64) < needed {
        return Err(RuntimeError::ArenaTooSmall { needed, got: arena.len() });
    }
    Ok(Loaded { model, arena })
}

/// Arena bytes a model needs (after verification).
pub fn arena_size(bytes: &[u8]) -> Result<u64, RuntimeError> {
    Ok(verify(bytes)?.meta.plan.arena_size())
}

impl<'m> Loaded<'m, '_> {
    /// The parsed model.
    pub fn model(&self) -> &Bmodel<'m> {
        &self.model
    }

    /// Network inputs.
    pub fn inputs(&self) -> &[IoTensor<'m>] {
        &self.model.meta.inputs
    }

    /// Network outputs.
    pub fn outputs(&self) -> &[IoTensor<'m>] {
        &self.model.meta.outputs
    }

    fn io_range(t: &IoTensor<'_>) -> core::ops::Range<usize> {
        let s = t.storage.offset as usize;
        s..s + t.storage.byte_len() as usize
    }

    /// Mutable bytes of input `i` inside the arena (fill it, then [`Loaded::invoke`]).
    pub fn input_mut(&mut self, i: usize) -> Result<&mut [u8], RuntimeError> {
        let t = self.model.meta.inputs.get(i).ok_or(RuntimeError::NoSuchTensor(i))?;
        let r = Self::io_range(t);
        Ok(&mut self.arena[r])
    }

    /// Bytes of output `i` inside the arena (valid after [`Loaded::invoke`]).
    pub fn output(&self, i: usize) -> Result<&[u8], RuntimeError> {
        let t = self.model.meta.outputs.get(i).ok_or(RuntimeError::NoSuchTensor(i))?;
        Ok(&self.arena[Self::io_range(t)])
    }

    /// Run every instruction on the arena's current contents.
    pub fn invoke(&mut self) -> Result<(), RuntimeError> {
        self.invoke_observed(|_, _| {}, |_, _| {})
    }

    /// Like [`Loaded::invoke`], calling `before(index, instr)` / `after(index, instr)` around each
    /// instruction (profiling, tracing).
    pub fn invoke_observed(
        &mut self,
        mut before: impl FnMut(usize, &bmodel_format::Instr),
        mut after: impl FnMut(usize, &bmodel_format::Instr),
    ) -> Result<(), RuntimeError> {
        let plan = self.model.meta.plan;
        let chip = self.model.chip();
        let (act, rest) = self.arena.split_at_mut(plan.scratch_offset as usize);
        let act = &mut act[..plan.activation_size as usize];
        let scratch = &mut rest[..plan.scratch_size as usize];
        for (i, instr) in self.model.instrs().enumerate() {
            let instr = instr?;
            #[cfg(feature = "defmt")]
            defmt::trace!("instr {=usize} {=str}", i, instr.mnemonic());
            before(i, &instr);
            execute(&instr, chip, act, self.model.coeff, scratch);
            after(i, &instr);
        }
        Ok(())
    }

    /// Copy `inputs` in (raw bytes in each input's storage type), run, copy the outputs out.
    pub fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<(), RuntimeError> {
        let (ni, no) = (self.model.meta.inputs.len(), self.model.meta.outputs.len());
        if inputs.len() != ni {
            return Err(RuntimeError::InputCount { expected: ni, got: inputs.len() });
        }
        if outputs.len() != no {
            return Err(RuntimeError::OutputCount { expected: no, got: outputs.len() });
        }
        for (i, src) in inputs.iter().enumerate() {
            let dst = self.input_mut(i)?;
            if dst.len() != src.len() {
                return Err(RuntimeError::InputSize { index: i, expected: dst.len(), got: src.len() });
            }
            dst.copy_from_slice(src);
        }
        self.invoke()?;
        for (i, dst) in outputs.iter_mut().enumerate() {
            let src = self.output(i)?;
            if dst.len() != src.len() {
                return Err(RuntimeError::OutputSize { index: i, expected: src.len(), got: dst.len() });
            }
            dst.copy_from_slice(src);
        }
        Ok(())
    }
}
