//! CPU allocator tuning for libtorch workloads.

/// Keep freed memory in the process instead of returning it to the OS after every tensor.
///
/// libtorch allocates its CPU tensors with the C allocator. glibc serves allocations above
/// 32 MiB with fresh `mmap`s and unmaps them on free, so every large activation is
/// page-faulted and zeroed again on each step; on this project's 2-core machine that is most
/// of a BatLiNet training step (1.8 M minor faults in 5 steps). Disabling `mmap` for `malloc`
/// and raising the trim threshold keeps the memory mapped and cut a step from 1.1 s to 0.37 s
/// (BENCHMARKS.md). The cost is a larger resident set: freed memory is reused, not returned.
///
/// This changes process-wide allocator settings, so it is opt-in: call it once at program
/// start (our examples do). It does nothing on non-glibc targets. Returns whether the
/// settings were applied.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator tunables; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TOP_PAD, 256 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
