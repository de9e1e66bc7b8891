//! Heap bytes per connection of the queue and close-signal primitives, under
//! the gateway binary's allocator (mimalloc), counted by usable size: what a
//! tokio unbounded channel keeps (fresh and after a burst), a watch channel,
//! and the `VecDeque` that replaced them (bench/RESULTS.md section 6).
//!
//! `cargo run --release -p chorus-gateway --example bench_queue_heap`

use std::alloc::{GlobalAlloc, Layout};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// mimalloc, counting the usable size of what is live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's usable size of a block it allocated.
    fn mi_usable_size(p: *const u8) -> usize;
}

// SAFETY: every call goes to mimalloc unchanged; the counting only reads the
// size of the block mimalloc returned or is given back.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MIMALLOC.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(unsafe { mi_usable_size(p) }, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        LIVE.fetch_sub(unsafe { mi_usable_size(p) }, Relaxed);
        unsafe { MIMALLOC.dealloc(p, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Makes `n` of something, all alive at once, and prints the heap each holds.
fn measure<T>(name: &str, n: usize, make: impl Fn() -> T) {
    let mut all: Vec<T> = Vec::with_capacity(n);
    let before = LIVE.load(Relaxed);
    for _ in 0..n {
        all.push(make());
    }
    let each = (LIVE.load(Relaxed) - before) / n;
    println!("{each:>6} B  {name}");
    drop(all);
}

fn main() {
    let n = 2_000;
    let frame: Arc<str> = Arc::from("x");
    println!("heap per connection (mimalloc usable size), {n} of each alive:");
    for burst in [1, 32, 100, 1_000] {
        measure(
            &format!("tokio unbounded channel, after a burst of {burst} frames sent and taken"),
            n,
            || {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Arc<str>>();
                for _ in 0..burst {
                    let _ = tx.send(frame.clone());
                }
                while rx.try_recv().is_ok() {}
                (tx, rx)
            },
        );
    }
    measure("tokio watch channel (the old close signal)", n, || {
        tokio::sync::watch::channel(None::<u8>).0
    });
    measure("VecDeque, after one frame (kept while idle)", n, || {
        let mut queue = VecDeque::<Arc<str>>::new();
        queue.push_back(frame.clone());
        queue.pop_front();
        queue
    });
    measure(
        "VecDeque, after a burst of 1000 and settled (room over 4 slots freed)",
        n,
        || {
            let mut queue = VecDeque::<Arc<str>>::new();
            for _ in 0..1_000 {
                queue.push_back(frame.clone());
            }
            queue.clear();
            if queue.capacity() > 4 {
                queue = VecDeque::new();
            }
            queue
        },
    );
}
