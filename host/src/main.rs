//! The `eventsift` binary; see [`eventsift::cli`].
//!
//! The allocator is chosen per command, once, before the first allocation:
//! - mimalloc by default. The API's request path allocates on one thread and
//!   frees on another (hyper, the Kafka delivery thread), and with glibc's
//!   malloc that was a tenth of its CPU.
//! - glibc's malloc for `eventsift writer`. The writer is a pipeline of
//!   threads (poll, route, encode), and each frees what the one before it
//!   allocated. mimalloc keeps those pages: a 5 M-event drain peaked at
//!   470-600 MiB with it, and at 290-475 MiB with glibc, at the same CPU
//!   (docs/BENCHMARKS.md, "Memory of a drain").
//!
//! `EVENTSIFT_ALLOCATOR=mimalloc|system` overrides the choice.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once by [`pick`], before anything is allocated; never changed after.
static SYSTEM: AtomicBool = AtomicBool::new(false);
/// Set by the first allocation: from then on the choice is fixed.
static STARTED: AtomicBool = AtomicBool::new(false);

struct PerCommand;

/// Marks the first allocation (a read after that: no shared cache line is
/// written on the hot path).
#[inline(always)]
fn started() {
    if !STARTED.load(Ordering::Relaxed) {
        STARTED.store(true, Ordering::Relaxed);
    }
}

// SAFETY: every call goes to one allocator for the whole process (the flag
// is fixed before the first allocation), which keeps GlobalAlloc's contract.
unsafe impl GlobalAlloc for PerCommand {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        started();
        if SYSTEM.load(Ordering::Relaxed) {
            unsafe { System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        started();
        if SYSTEM.load(Ordering::Relaxed) {
            unsafe { System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SYSTEM.load(Ordering::Relaxed) {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if SYSTEM.load(Ordering::Relaxed) {
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static GLOBAL: PerCommand = PerCommand;

/// Runs from `.init_array`, before `main` and before Rust allocates; glibc
/// passes it `argc`, `argv` and `envp`. Reads them without allocating.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn pick(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    use std::ffi::CStr;
    // SAFETY: glibc hands constructors the process's argv (argc entries)
    // and getenv reads the environment without allocating.
    let (command, over) = unsafe {
        let command = (argc > 1 && !argv.is_null() && !(*argv.add(1)).is_null())
            .then(|| CStr::from_ptr(*argv.add(1)).to_bytes());
        let over = libc::getenv(c"EVENTSIFT_ALLOCATOR".as_ptr());
        (
            command,
            (!over.is_null()).then(|| CStr::from_ptr(over).to_bytes()),
        )
    };
    let system = match over {
        Some(b"system") => true,
        Some(b"mimalloc") => false,
        _ => command == Some(b"writer"),
    };
    if system && !STARTED.load(Ordering::Relaxed) {
        SYSTEM.store(true, Ordering::Relaxed);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[used]
#[unsafe(link_section = ".init_array")]
static PICK: extern "C" fn(libc::c_int, *const *const libc::c_char, *const *const libc::c_char) =
    pick;

fn main() -> std::process::ExitCode {
    eventsift::cli::main()
}
