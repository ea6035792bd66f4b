//! Liveness-based activation memory plan: every storage class (a value plus its views and
//! in-place results) lives from its first definition to its last use; classes are placed
//! largest-first at the lowest aligned offset free over their lifetime.

use super::emit::Storage;
use crate::ir::Func;

/// Placement of the activation storage classes.
#[derive(Debug, Clone)]
pub struct ActivationPlan {
    /// arena offset of each value's storage root (`None` for values without activation storage)
    pub offset: Vec<Option<u64>>,
    /// bytes of the activation region
    pub size: u64,
    /// sum of the sizes of all activation values (no reuse, no in-place)
    pub naive_sum: u64,
}

struct Class {
    root: usize,
    start: usize,
    end: usize,
    size: u64,
}

/// Plan the activation region for `storage` (from emission) with `alignment`.
pub fn plan(func: &Func, storage: &[Storage], alignment: u64) -> ActivationPlan {
    let n_ops = func.ops.len();
    let producers = func.producers();
    let users = func.users();
    let nv = func.values.len();
    let root_of = |mut v: usize| {
        while let Storage::Alias(r) = storage[v] {
            v = r;
        }
        v
    };
    let align = |b: u64| b.div_ceil(alignment) * alignment;
    let mut classes: Vec<Option<Class>> = (0..nv).map(|_| None).collect();
    let mut naive_sum = 0u64;
    for v in 0..nv {
        if !matches!(storage[v], Storage::Own | Storage::Alias(_)) {
            continue;
        }
        let val = &func.values[v];
        let bytes =
            val.ty.numel() as u64 * super::types::dtype_of(&val.ty, &val.name).map(|d| d.size() as u64).unwrap_or(4);
        naive_sum += bytes;
        let start = producers[v].unwrap_or(0);
        let mut end = users[v].last().copied().unwrap_or(start);
        if func.returns.contains(&v) {
            end = n_ops;
        }
        let r = root_of(v);
        let c = classes[r].get_or_insert(Class { root: r, start, end, size: 0 });
        c.start = c.start.min(start);
        c.end = c.end.max(end);
        c.size = c.size.max(align(bytes.max(1)));
    }
    let mut order: Vec<Class> = classes.into_iter().flatten().collect();
    order.sort_by(|a, b| b.size.cmp(&a.size).then(a.start.cmp(&b.start)).then(a.root.cmp(&b.root)));
    let mut placed: Vec<(usize, usize, u64, u64)> = Vec::new(); // start, end, offset, size
    let mut offset = vec![None; nv];
    let mut size = 0u64;
    for c in &order {
        let mut busy: Vec<(u64, u64)> =
            placed.iter().filter(|p| p.0 <= c.end && c.start <= p.1).map(|p| (p.2, p.2 + p.3)).collect();
        busy.sort();
        let mut at = 0u64;
        for (s, e) in busy {
            if at + c.size <= s {
                break;
            }
            at = at.max(e);
        }
        placed.push((c.start, c.end, at, c.size));
        offset[c.root] = Some(at);
        size = size.max(at + c.size);
    }
    ActivationPlan { offset, size, naive_sum }
}
