//! Seawall's patch to pingora-timeout: one allocation per timer a timeout registers (upstream
//! boxed the boxed delay again), and none when a timeout completes before it needs one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Counts the allocations made on the current thread (the clock thread's are not ours).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(|n| n.get())
}

/// Pending on its first poll, ready on the second: a read that waits once.
struct WaitsOnce(bool);

impl Future for WaitsOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[tokio::test]
async fn a_timeout_that_waits_allocates_one_timer_future() {
    let d = Duration::from_secs(30);
    // Warm up: the clock thread, this thread's slot tree and the slot for `d`.
    pingora_timeout::timeout(d, WaitsOnce(false)).await.unwrap();
    let mut least = usize::MAX;
    // The first registration in a new 10 ms slot also makes the slot's timer and tree node:
    // the fewest over a few tries is the common case.
    for _ in 0..20 {
        let before = allocations();
        pingora_timeout::timeout(d, WaitsOnce(false)).await.unwrap();
        least = least.min(allocations() - before);
    }
    assert_eq!(least, 1, "allocations for a timeout that registered its timer");
}

#[tokio::test]
async fn a_timeout_that_completes_at_once_allocates_nothing() {
    let d = Duration::from_secs(30);
    pingora_timeout::timeout(d, WaitsOnce(false)).await.unwrap();
    let before = allocations();
    pingora_timeout::timeout(d, async { 7 }).await.unwrap();
    assert_eq!(allocations() - before, 0);
}

#[tokio::test]
async fn a_timeout_still_fires() {
    let from = std::time::Instant::now();
    let r = pingora_timeout::timeout(Duration::from_millis(30), std::future::pending::<()>()).await;
    assert!(r.is_err());
    assert!(from.elapsed() >= Duration::from_millis(20), "{:?}", from.elapsed());
}
