//! What runs share: the weights as simulator tensors and the packed filters of the integer
//! convolutions, prepared by the first run that needs them, so many samples simulated in parallel
//! (and the search's trials, through caller-given keys) neither copy the weights nor pack the
//! filters once each.

use super::conv::PackedFilters;
use super::SimTensor;
use crate::ir::ValueId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Prepared values shared by runs. Looked up either by value id and op index, when the cache
/// belongs to one module and its weights ([`super::run_seeded_cached`]), or by the caller's
/// content keys, when it serves many modules ([`super::run_seeded_keyed`]); one cache must not
/// mix the two.
#[derive(Debug, Default)]
pub struct SimCache {
    weights: Mutex<HashMap<ValueId, Arc<SimTensor>>>,
    filters: Mutex<HashMap<usize, Option<Arc<PackedFilters>>>>,
}

impl SimCache {
    /// An empty cache.
    pub fn new() -> SimCache {
        SimCache::default()
    }

    /// The weight tensor of value `v`, made by `make` the first time.
    pub(super) fn weight<E>(
        &self,
        v: ValueId,
        make: impl FnOnce() -> Result<SimTensor, E>,
    ) -> Result<Arc<SimTensor>, E> {
        if let Some(t) = self.weights.lock().ok().and_then(|m| m.get(&v).cloned()) {
            return Ok(t);
        }
        // Made outside the lock: a parallel run may make it too, and one of the equal copies wins.
        let t = Arc::new(make()?);
        if let Ok(mut m) = self.weights.lock() {
            return Ok(m.entry(v).or_insert(t).clone());
        }
        Ok(t)
    }

    /// The packed filters of the convolution at op index `op`, made by `make` the first time
    /// (`None` from `make` is kept too: those filters do not fit the packed kernels).
    pub(super) fn filters(
        &self,
        op: usize,
        make: impl FnOnce() -> Option<PackedFilters>,
    ) -> Option<Arc<PackedFilters>> {
        if let Some(f) = self.filters.lock().ok().and_then(|m| m.get(&op).cloned()) {
            return f;
        }
        let f = make().map(Arc::new);
        if let Ok(mut m) = self.filters.lock() {
            return m.entry(op).or_insert(f).clone();
        }
        f
    }
}
