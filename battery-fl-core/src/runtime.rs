//! How the library uses the machine: the C allocator's policy while models run.
//!
//! libtorch allocates CPU tensors with the C allocator. glibc serves allocations above its
//! mmap threshold with fresh `mmap`s and unmaps them on free, so every large activation of a
//! BatLiNet step is page-faulted and zeroed again: on a 2-core machine that was most of a
//! training step (1.8 M minor faults in 5 steps; BENCHMARKS.md "Model speed"). Keeping freed
//! memory mapped makes a step several times faster on such a machine, at the cost of a larger
//! resident set while a model trains or predicts.
//!
//! The policy is scoped: [`MemoryScope::enter`] (taken by the model's training and
//! prediction) applies it when the first scope opens and restores glibc's documented
//! defaults when the last one closes. The memory kept meanwhile is not trimmed at once:
//! glibc returns it by its own rule, at the next free of a heap block of 64 KiB or more
//! outside a scope, so that two model calls in a row (a training loop, `fit` then `predict`)
//! find it still mapped. Two traces stay: glibc stops adapting its mmap threshold once a
//! program sets any of these parameters (it keeps the value it had reached), and settings
//! made through `MALLOC_*_` environment variables, `GLIBC_TUNABLES` or the program's own
//! `mallopt` are replaced by glibc's defaults when the last scope closes: a program that
//! tunes its allocator should choose [`MemoryPolicy::System`]. [`set_memory_policy`] with [`MemoryPolicy::System`] turns it off for the
//! whole process. On targets other than glibc Linux the policy does nothing.
//!
//! ```
//! use battery_fl_core::runtime::{memory_policy, set_memory_policy, MemoryPolicy, MemoryScope};
//!
//! assert_eq!(memory_policy(), MemoryPolicy::Retain); // the default
//! {
//!     let _scope = MemoryScope::enter(); // what `BatLiNet::fit` and `predict` do
//!     // ... allocate and free large tensors without page faults ...
//! } // glibc's defaults are back
//! set_memory_policy(MemoryPolicy::System); // leave the allocator alone from now on
//! # set_memory_policy(MemoryPolicy::Retain);
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What the library does with the C allocator while a model trains or predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryPolicy {
    /// Keep freed memory mapped while a model runs (no `mmap` for `malloc`, no trimming);
    /// restore the allocator's defaults when the last model call returns. The default.
    #[default]
    Retain,
    /// Never touch the allocator's settings.
    System,
}

static SYSTEM: AtomicBool = AtomicBool::new(false);
/// Open scopes; the allocator settings change when it goes 0 -> 1 and 1 -> 0.
static OPEN: Mutex<usize> = Mutex::new(0);

/// Set the policy for the whole process (scopes already open keep theirs until they close).
pub fn set_memory_policy(policy: MemoryPolicy) {
    SYSTEM.store(policy == MemoryPolicy::System, Ordering::SeqCst);
}

/// The process's current policy.
pub fn memory_policy() -> MemoryPolicy {
    if SYSTEM.load(Ordering::SeqCst) {
        MemoryPolicy::System
    } else {
        MemoryPolicy::Retain
    }
}

/// A span of model work under [`MemoryPolicy::Retain`]; see the module docs. Scopes nest and
/// may be open on several threads at once.
#[derive(Debug)]
#[must_use = "the policy holds only while the scope is alive"]
pub struct MemoryScope {
    applied: bool,
}

impl MemoryScope {
    /// Open a scope: the first open scope applies the policy (when it is `Retain`).
    pub fn enter() -> MemoryScope {
        if memory_policy() == MemoryPolicy::System {
            return MemoryScope { applied: false };
        }
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        if *open == 0 {
            allocator::retain();
        }
        *open += 1;
        MemoryScope { applied: true }
    }

    /// Whether any scope currently holds the policy.
    pub fn is_active() -> bool {
        *OPEN.lock().unwrap_or_else(|e| e.into_inner()) > 0
    }
}

impl Drop for MemoryScope {
    fn drop(&mut self) {
        if !self.applied {
            return;
        }
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        *open -= 1;
        if *open == 0 {
            allocator::restore();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod allocator {
    // glibc's documented defaults (mallopt(3)) for 64-bit targets
    const DEFAULT_MMAP_MAX: i32 = 65_536;
    const DEFAULT_TRIM_THRESHOLD: i32 = 128 * 1024;
    const DEFAULT_TOP_PAD: i32 = 128 * 1024;

    pub(super) fn retain() {
        // SAFETY: mallopt only changes allocator tunables; glibc serializes it internally.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            // -1 disables trimming (mallopt(3)); i32::MAX (2 GiB) still let glibc give back
            // a training step's activations after each step, to be faulted in again
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
            libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        }
    }

    pub(super) fn restore() {
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, DEFAULT_MMAP_MAX);
            libc::mallopt(libc::M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD);
            libc::mallopt(libc::M_TOP_PAD, DEFAULT_TOP_PAD);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod allocator {
    pub(super) fn retain() {}
    pub(super) fn restore() {}
}
