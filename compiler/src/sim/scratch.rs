//! Per-thread pools of scratch buffers for the convolution kernels: a kernel called thousands of
//! times (every layer of every sample of every trial) takes its buffers here instead of
//! allocating, zeroing and (for large ones) page-faulting fresh memory each call.
//!
//! A buffer's contents when taken are unspecified (whatever its last user left) unless taken
//! with [`zeroed`]; a buffer goes back to the pool of the thread that drops it. A thread keeps
//! at most [`KEPT`] buffers of each element type, the largest.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers a thread keeps per element type.
const KEPT: usize = 6;
/// Buffers larger than this (elements) are not kept.
const MAX_KEPT_LEN: usize = 16 << 20;

/// Element types with a per-thread pool.
pub(crate) trait Pooled: Copy + Default + 'static {
    /// Run `f` on this thread's pool of this type (`None` when the thread is exiting and its
    /// pool is gone).
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> Option<R>;
}

macro_rules! pooled {
    ($t:ty, $pool:ident) => {
        thread_local! {
            static $pool: RefCell<Vec<Vec<$t>>> = const { RefCell::new(Vec::new()) };
        }
        impl Pooled for $t {
            fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> Option<R> {
                $pool.try_with(|p| f(&mut p.borrow_mut())).ok()
            }
        }
    };
}

pooled!(i16, POOL_I16);
pooled!(i32, POOL_I32);
pooled!(f32, POOL_F32);

/// A scratch buffer of `len` elements from the thread's pool; back to the pool when dropped.
pub(crate) struct Scratch<T: Pooled> {
    v: Vec<T>,
    len: usize,
}

/// A buffer of `len` elements whose contents are unspecified (values of the element type).
pub(crate) fn any<T: Pooled>(len: usize) -> Scratch<T> {
    // The smallest kept buffer that is large enough, else the largest (grown).
    let mut v = T::with_pool(|p| {
        let fit = (0..p.len()).filter(|&i| p[i].len() >= len).min_by_key(|&i| p[i].len());
        match fit.or_else(|| (0..p.len()).max_by_key(|&i| p[i].len())) {
            Some(i) => p.swap_remove(i),
            None => Vec::new(),
        }
    })
    .unwrap_or_default();
    if v.len() < len {
        v.resize(len, T::default());
    }
    Scratch { v, len }
}

/// A buffer of `len` elements, all `T::default()` (zero).
pub(crate) fn zeroed<T: Pooled>(len: usize) -> Scratch<T> {
    let mut s = any(len);
    s.fill(T::default());
    s
}

impl<T: Pooled> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v[..self.len]
    }
}

impl<T: Pooled> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v[..self.len]
    }
}

impl<T: Pooled> Drop for Scratch<T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        if v.is_empty() || v.len() > MAX_KEPT_LEN {
            return;
        }
        T::with_pool(|p| {
            p.push(v);
            if p.len() > KEPT {
                // Drop the smallest.
                if let Some(i) = (0..p.len()).min_by_key(|&i| p[i].len()) {
                    p.swap_remove(i);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_sized_as_asked() {
        let p = {
            let mut a = any::<i32>(1000);
            a[999] = 7;
            a.as_ptr()
        };
        // The same memory comes back, with what its last user left, unless zeroed.
        let b = any::<i32>(500);
        assert_eq!((b.as_ptr(), b.len()), (p, 500));
        drop(b);
        let c = zeroed::<i32>(1000);
        assert_eq!((c.as_ptr(), c.len()), (p, 1000));
        assert!(c.iter().all(|&v| v == 0));
        // Taken twice at once: two buffers.
        let d = any::<i32>(10);
        assert_ne!(d.as_ptr(), c.as_ptr());
        // Larger than any kept one: grown.
        drop(c);
        let e = zeroed::<i32>(5000);
        assert_eq!(e.len(), 5000);
        assert!(e.iter().all(|&v| v == 0));
    }
}
