//! A global allocator for the fuzz targets that catches allocations sized from unchecked
//! input: anything over [`HUGE_ALLOC_BYTES`] (the fuzz inputs are a few KiB, so no honest
//! decode comes near it).
//!
//! Default: print the size to stderr and abort, so libFuzzer records the input as a crash.
//! This is the bug class the broker's decoding "must never" have: a release build asks the
//! system for the memory, and when the request exceeds what the kernel will promise
//! (here `vm.overcommit_memory=0`, 24 GiB, no swap) Rust's `handle_alloc_error` aborts the
//! whole process — every shard, every connection.
//!
//! With `SLUICE_FUZZ_ALLOW_HUGE_ALLOC=1` (read once by the targets' `init`) a huge request is
//! served lazily by `mmap(MAP_NORESERVE)` instead — untouched pages cost nothing — and only
//! counted, so fuzzing can go on past a known instance of the bug to look for others.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Allocations above this are "huge".
pub const HUGE_ALLOC_BYTES: usize = 256 << 20;
/// Page size assumed for `mmap` alignment.
const PAGE: usize = 4096;

static ALLOW_HUGE: AtomicBool = AtomicBool::new(false);
static HUGE_COUNT: AtomicU64 = AtomicU64::new(0);

/// See the module docs.
pub struct Guard;

/// Reads `SLUICE_FUZZ_ALLOW_HUGE_ALLOC` (call from the target's `init`, not from the allocator).
pub fn init_from_env() {
    let allow = std::env::var("SLUICE_FUZZ_ALLOW_HUGE_ALLOC").is_ok_and(|v| v == "1");
    ALLOW_HUGE.store(allow, Ordering::Relaxed);
    if allow {
        eprintln!("sluice-fuzz: SLUICE_FUZZ_ALLOW_HUGE_ALLOC=1: allocations over {HUGE_ALLOC_BYTES} bytes are served lazily, not reported");
    }
}

/// How many huge allocations were served (allow mode).
pub fn huge_count() -> u64 {
    HUGE_COUNT.load(Ordering::Relaxed)
}

/// Writes `msg` and `n` to stderr without allocating.
fn report(msg: &[u8], n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // SAFETY: writing initialized byte slices to fd 2.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::write(2, digits[i..].as_ptr().cast(), digits.len() - i);
        libc::write(2, b" bytes\n".as_ptr().cast(), 7);
    }
}

fn huge_alloc(layout: Layout) -> *mut u8 {
    if !ALLOW_HUGE.load(Ordering::Relaxed) {
        report(b"sluice-fuzz: HUGE ALLOCATION (sized from unchecked input?): ", layout.size());
        std::process::abort();
    }
    if layout.align() > PAGE {
        return std::ptr::null_mut();
    }
    HUGE_COUNT.fetch_add(1, Ordering::Relaxed);
    // SAFETY: anonymous private mapping, no file.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HUGE_ALLOC_BYTES {
            return huge_alloc(layout);
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HUGE_ALLOC_BYTES {
            return huge_alloc(layout); // fresh anonymous pages are zero
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() > HUGE_ALLOC_BYTES {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() <= HUGE_ALLOC_BYTES && new_size <= HUGE_ALLOC_BYTES {
            return System.realloc(ptr, layout, new_size);
        }
        // SAFETY: the caller guarantees new_size is valid for layout.align().
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}
