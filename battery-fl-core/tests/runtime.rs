//! The scoped allocator policy (`runtime`). Its own test binary without the test harness:
//! the policy is process-wide state that no other test may touch meanwhile, and the blocks
//! must come from the main thread's heap, which `malloc_trim` returns at once (a thread's
//! own arena shrinks at its next large free instead).

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
    pages * 4096
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
        // ... and closing the last scope gives it back to the system
        drop(outer);
        assert!(
            resident_bytes() < before + (8 << 20),
            "retained memory was not trimmed"
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
