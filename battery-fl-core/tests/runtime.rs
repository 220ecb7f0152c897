//! The scoped allocator policy (`runtime`). Its own test binary without the test harness:
//! the policy is process-wide state that no other test may touch meanwhile, and the blocks
//! must come from the main thread's heap.

use battery_fl_core::runtime::{memory_policy, set_memory_policy, MemoryPolicy, MemoryScope};

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .expect("rss")
        .parse()
        .expect("number");
    // SAFETY: sysconf only reads a system constant
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).expect("a page size")
}

fn main() {
    scopes_nest_restore_the_defaults_and_the_system_policy_opts_out();
    println!("runtime: the scoped allocator policy holds (1 check)");
}

fn scopes_nest_restore_the_defaults_and_the_system_policy_opts_out() {
    assert_eq!(memory_policy(), MemoryPolicy::Retain, "the default");
    assert!(!MemoryScope::is_active());
    let outer = MemoryScope::enter();
    let inner = MemoryScope::enter();
    assert!(MemoryScope::is_active());
    drop(inner);
    assert!(
        MemoryScope::is_active(),
        "the outer scope still holds the policy"
    );

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // inside a scope a freed 24 MiB block stays mapped (heap, not mmap) ...
        let before = resident_bytes();
        let block = vec![1u8; 24 << 20];
        std::hint::black_box(&block);
        drop(block);
        assert!(
            resident_bytes() > before + (16 << 20),
            "freed memory was returned"
        );
        // ... and still is when the last scope closes (a following model call finds it) ...
        drop(outer);
        assert!(resident_bytes() > before + (16 << 20), "trimmed at once");
        // ... until glibc's own rule returns it: the next free of a 64 KiB+ heap block
        let small = vec![1u8; 100 << 10];
        std::hint::black_box(&small);
        drop(small);
        assert!(
            resident_bytes() < before + (8 << 20),
            "not trimmed after the scope"
        );
        // outside any scope glibc maps such a block afresh and unmaps it on free
        let block = vec![1u8; 24 << 20];
        std::hint::black_box(&block);
        drop(block);
        assert!(
            resident_bytes() < before + (8 << 20),
            "the defaults were not restored"
        );
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    drop(outer);
    assert!(!MemoryScope::is_active());

    set_memory_policy(MemoryPolicy::System);
    let scope = MemoryScope::enter();
    assert!(
        !MemoryScope::is_active(),
        "the system policy opens no scope"
    );
    drop(scope);
    set_memory_policy(MemoryPolicy::Retain);
}
