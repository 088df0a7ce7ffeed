//! The tokio runtime the node's processes run on (the daemon, and the commands that start a
//! node of their own for a while), and how a request handler runs a command's blocking work
//! ([`run_blocking`]).

use crate::fail::{Failure, code};

/// Threads of the blocking pool at most. They hold the two workers themselves, the driver's
/// store jobs (at most [`LiveConfig::max_jobs`](crate::live::LiveConfig), 32 by default, most
/// of them waiting for the store's lock), and for each command running on a request handler's
/// thread ([`run_blocking`], at most as many as the local API's command slots) the thread
/// that takes over that worker's other tasks meanwhile: room for all of them, so that a busy
/// node never leaves the runtime's tasks (the network among them) waiting for a thread.
const BLOCKING_THREADS: usize = 48;

/// A runtime set up like the daemon's: two workers, at most [`BLOCKING_THREADS`] blocking
/// threads.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(code::IO, format!("cannot start the runtime: {e}")))
}

/// Runs `f`, a command's blocking work (the store, the disk, keys), from one of the daemon's
/// request handlers: on the handler's own thread, which the runtime stops using for other
/// tasks meanwhile (`block_in_place`), rather than handed to a thread of the blocking pool.
/// After a quiet spell, that hand-over first wakes an idle thread: about 0.05 ms of an edit's
/// delay here (the `live` benchmark; PERFORMANCE.md, session 23). Where the runtime cannot do
/// that (a current-thread runtime, as in tests), on the blocking pool. `None` if `f` panicked,
/// as the pool reports it.
pub async fn run_blocking<T, F>(f: F) -> Option<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    let in_place =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if in_place {
        tokio::task::block_in_place(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
            .ok()
    } else {
        tokio::task::spawn_blocking(f).await.ok()
    }
}

/// Runs `f` on a tokio runtime set up like the daemon's.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Failure> {
    Ok(runtime()?.block_on(f))
}

/// Shuts `rt` down, waiting at most `close` for the blocking jobs still running on it;
/// whether they all ended within it. A job left running is abandoned to the process's exit.
///
/// The last job holding a sled store closes it, and sled's `Drop` flushes: sled 0.34.7 has
/// been seen to leave that flush waiting forever (once in about forty runs of the `live`
/// benchmark, every sled thread idle; sled's tracker has flush hangs of 0.34 reported fixed
/// only after its last release). A node that has already made its writes durable (the daemon
/// flushes before it stops) loses nothing by not waiting for it.
pub fn shut_down_within(rt: tokio::runtime::Runtime, close: std::time::Duration) -> bool {
    let t = std::time::Instant::now();
    rt.shutdown_timeout(close);
    t.elapsed() < close
}

#[cfg(test)]
mod tests {
    use super::{run_blocking, shut_down_within};
    use std::time::{Duration, Instant};

    /// A job that never ends (as a store's flush that waits forever) does not keep the
    /// runtime's shutdown waiting past its bound, and is reported; a job that ends is waited
    /// for.
    #[test]
    fn a_shutdown_waits_for_jobs_only_so_long() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rt = super::runtime().unwrap();
        rt.block_on(async move {
            tokio::task::spawn_blocking(move || rx.recv());
        });
        let t = Instant::now();
        assert!(!shut_down_within(rt, Duration::from_millis(200)));
        assert!(t.elapsed() < Duration::from_secs(5));
        // Lets the abandoned job end.
        drop(tx);
        let rt = super::runtime().unwrap();
        let (done_tx, done) = std::sync::mpsc::channel();
        rt.block_on(async move {
            tokio::task::spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(20));
                let _ = done_tx.send(());
            });
        });
        assert!(shut_down_within(rt, Duration::from_secs(5)));
        assert!(done.try_recv().is_ok(), "the job ran to its end");
    }

    /// On the daemon's runtime a command runs on its handler's own thread, and the runtime's
    /// other tasks still run meanwhile; a panic is reported, not spread.
    #[test]
    fn commands_run_on_the_handlers_thread_and_others_go_on() {
        let rt = super::runtime().unwrap();
        rt.block_on(async {
            let (here, there) = tokio::spawn(async {
                let here = std::thread::current().id();
                let there = run_blocking(|| {
                    // Another task runs to its end while this thread blocks on it.
                    let rt = tokio::runtime::Handle::current();
                    let other = rt.spawn(async { 7 });
                    assert_eq!(rt.block_on(other).unwrap(), 7);
                    std::thread::current().id()
                })
                .await;
                (here, there)
            })
            .await
            .unwrap();
            assert_eq!(Some(here), there);
            let panicked = tokio::spawn(run_blocking(|| -> u8 { panic!("a failing command") }))
                .await
                .unwrap();
            assert_eq!(panicked, None);
        });
    }

    /// Where the runtime cannot lend its thread (current-thread, as `#[tokio::test]` makes),
    /// the blocking pool runs it.
    #[tokio::test]
    async fn on_a_current_thread_runtime_the_pool_runs_it() {
        let here = std::thread::current().id();
        let there = run_blocking(|| std::thread::current().id()).await;
        assert!(there.is_some_and(|t| t != here));
        assert_eq!(
            run_blocking(|| -> u8 { panic!("a failing command") }).await,
            None
        );
    }
}
