//! The allocator setting of the tools that run models on many samples.

/// Keep freed memory in the process for the next allocation instead of handing it back to the
/// system at once. Every model run allocates its activations afresh (megabytes each); with
/// glibc's defaults the large ones come from new zeroed pages each time, which cost ~6% of the
/// calibration's CPU time in page faults (and a higher peak, from the churn). Does nothing on
/// other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // 32 MiB (glibc's largest allowed value): blocks below it come from the heap, which is
        // trimmed only once 1 GiB at its top is free
        // SAFETY: mallopt only changes allocator parameters; called before any threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
