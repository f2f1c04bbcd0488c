//! The runtime the process's long-lived background work runs on: the fleet store's connection
//! and probes, the queues' delivery workers. Pingora's runtimes come and go with its services
//! (and an in-process test server stops them); this one lives as long as the [`crate::state::State`].

use std::future::Future;

pub struct Background {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Background {
    pub fn start() -> std::io::Result<Background> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("seawall-background")
            .enable_all()
            .build()?;
        Ok(Background {
            runtime: Some(runtime),
        })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .handle()
    }

    /// Run `f` on this runtime to its end, from any thread: a plain one, or one of another
    /// runtime (start-up in a test, a reload on a blocking thread), where blocking in place would
    /// panic.
    pub fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let handle = self.handle().clone();
        std::thread::scope(|s| {
            s.spawn(move || handle.block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Dropped on whatever thread drops the state, possibly inside another runtime, where a
        // blocking shutdown panics. The tasks stop either way.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
