//! Sharing independent work among the machine's cores, with results in input order.
//!
//! The output never depends on how many threads ran: each item is computed alone, and the
//! results are returned in the order of the items, so callers that then fold them one by one
//! (taking the first error, say) behave exactly as a plain loop would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};

/// Fewer items than this are done on the calling thread (a thread costs more than they do).
const MIN_PER_THREAD: usize = 64;
/// At most this many threads, whatever the machine has.
const MAX_THREADS: usize = 8;

/// How many threads help on this machine (at least one, at most [`MAX_THREADS`]).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_THREADS)
}

/// How many threads `n` items are worth on this machine (at least one).
fn threads_for(n: usize) -> usize {
    cores().min(n / MIN_PER_THREAD).max(1)
}

/// `f(i, &items[i])` for every item, on up to [`MAX_THREADS`] threads, in item order.
///
/// If a thread cannot be started, its share is done on the calling thread.
pub(crate) fn map<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &T) -> R + Sync,
{
    map_on(threads_for(items.len()), items, f)
}

/// [`map`] on `threads` threads (at least one, at most one per item).
pub(crate) fn map_on<T, R, F>(threads: usize, items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &T) -> R + Sync,
{
    map_vec_on(threads, items.iter().collect(), f)
}

/// [`map`] for items the function takes by value.
pub(crate) fn map_vec<T, R, F>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(usize, T) -> R + Sync,
{
    map_vec_on(threads_for(items.len()), items, f)
}

/// [`map_vec`] on `threads` threads (at least one, at most one per item), for items few but
/// large.
pub(crate) fn map_vec_on<T, R, F>(threads: usize, items: Vec<T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(usize, T) -> R + Sync,
{
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return items
            .into_iter()
            .enumerate()
            .map(|(i, x)| f(i, x))
            .collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        parts.push(rest);
        rest = tail;
    }
    parts.push(rest);
    let f = &f;
    let run = move |start: usize, part: Vec<T>| -> Vec<R> {
        part.into_iter()
            .enumerate()
            .map(|(k, x)| f(start + k, x))
            .collect()
    };
    // Each share waits in a slot that its thread empties; a share whose thread could not be
    // started (or did not take it) is still in its slot afterwards, and is done here.
    let take = |slot: &Mutex<Option<Vec<T>>>| {
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    };
    let slots: Vec<(usize, Mutex<Option<Vec<T>>>)> = parts
        .into_iter()
        .enumerate()
        .map(|(n, p)| (n * chunk, Mutex::new(Some(p))))
        .collect();
    std::thread::scope(|scope| {
        let (first, others) = slots
            .split_first()
            .map_or((None, &[][..]), |(f, o)| (Some(f), o));
        let spawned: Vec<_> = others
            .iter()
            .map(|(start, slot)| {
                let start = *start;
                let handle = std::thread::Builder::new()
                    .spawn_scoped(scope, move || take(slot).map(|p| run(start, p)))
                    .ok();
                (start, slot, handle)
            })
            .collect();
        let mut out = first
            .and_then(|(start, slot)| take(slot).map(|p| run(*start, p)))
            .unwrap_or_default();
        for (start, slot, handle) in spawned {
            match handle.map(|h| h.join()) {
                Some(Ok(Some(results))) => out.extend(results),
                // A panic in a worker is a bug: re-raise it here as the plain loop would have.
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                _ => {
                    if let Some(p) = take(slot) {
                        out.extend(run(start, p));
                    }
                }
            }
        }
        out
    })
}

/// How many items a worker of [`stream`] takes at a time.
const STREAM_BLOCK: usize = 32;

/// `f(i, &items[i])` for every item, on `threads` threads (or as many as help when `None`), the
/// calling thread among them, while the calling thread takes the results **in item order** with
/// `take(i, result)`, each as soon as it and every one before it are done: the caller's own work
/// on the results overlaps the other threads' work on the items after, and whenever no result is
/// ready for it the caller does items itself. The first error `take` returns stops the work
/// (blocks of items not yet started are never done) and is returned; so does a panic on the
/// calling thread, which then reaches the caller. With one thread, or if no other thread can be
/// started, it is a plain loop.
///
/// Threads take blocks of [`STREAM_BLOCK`] items as they go, so a slow item holds up only its
/// block; results wait (in memory) until those before them are taken.
pub(crate) fn stream<T, R, E, F, G>(
    threads: Option<usize>,
    items: &[T],
    f: F,
    mut take: G,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &T) -> R + Sync,
    G: FnMut(usize, R) -> Result<(), E>,
{
    let n = items.len();
    let threads = threads
        .unwrap_or_else(|| threads_for(n))
        .min(n.div_ceil(STREAM_BLOCK))
        .min(MAX_THREADS);
    if threads <= 1 {
        for (i, item) in items.iter().enumerate() {
            take(i, f(i, item))?;
        }
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // The next block not yet handed out, or `None` when all are.
    let claim = || {
        let start = next.fetch_add(STREAM_BLOCK, Ordering::Relaxed);
        (start < n).then(|| {
            let end = (start + STREAM_BLOCK).min(n);
            (
                start,
                (start..end).map(|i| f(i, &items[i])).collect::<Vec<R>>(),
            )
        })
    };
    let (tx, rx) = mpsc::channel::<(usize, Vec<R>)>();
    /// Stops the other threads when the calling thread leaves, by an error or a panic.
    struct StopOnExit<'a>(&'a AtomicBool);
    impl Drop for StopOnExit<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let (claim, stop) = (&claim, &stop);
        for _ in 1..threads {
            let tx = tx.clone();
            let worker = move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(done) = claim() else { break };
                    if tx.send(done).is_err() {
                        break;
                    }
                }
            };
            // A thread that cannot be started leaves its share to the others and the caller.
            let _ = std::thread::Builder::new().spawn_scoped(scope, worker);
        }
        drop(tx);
        let _stop_on_exit = StopOnExit(stop);
        let mut waiting: BTreeMap<usize, Vec<R>> = BTreeMap::new();
        let mut taken = 0;
        while taken < n {
            if let Some(done) = waiting.remove(&taken) {
                for r in done {
                    take(taken, r)?;
                    taken += 1;
                }
                continue;
            }
            // Nothing to take yet: what is ready, else a block of our own, else wait.
            let (start, done) = match rx.try_recv() {
                Ok(done) => done,
                Err(_) => match claim() {
                    Some(done) => done,
                    None => match rx.recv() {
                        Ok(done) => done,
                        // Every other thread gone with results missing: one panicked, and
                        // the scope re-raises the panic.
                        Err(_) => break,
                    },
                },
            };
            waiting.insert(start, done);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let items: Vec<u32> = (0..200).collect();
        // The last item is in the last share, done on a spawned thread.
        let borrowed = std::panic::catch_unwind(|| {
            map_on(4, &items, |i, _| {
                assert!(i != 199, "boom");
                i
            })
        });
        assert!(borrowed.is_err());
        let owned = std::panic::catch_unwind(|| {
            map_vec(items.clone(), |i, _| {
                assert!(i != 199, "boom");
                i
            })
        });
        assert!(owned.is_err());
    }

    #[test]
    fn results_come_in_item_order_whatever_the_size() {
        for n in [0usize, 1, 63, 64, 65, 127, 128, 129, 1000, 4099] {
            let items: Vec<u64> = (0..n as u64).collect();
            for out in [
                map_vec(items.clone(), |i, x| (i as u64, x * 3)),
                map(&items, |i, x| (i as u64, x * 3)),
                map_on(3, &items, |i, x| (i as u64, x * 3)),
                map_on(7, &items, |i, x| (i as u64, x * 3)),
            ] {
                assert_eq!(out.len(), n);
                for (i, (k, y)) in out.iter().enumerate() {
                    assert_eq!((*k, *y), (i as u64, i as u64 * 3));
                }
            }
            for threads in [None, Some(1), Some(2), Some(3), Some(8)] {
                let mut out = Vec::new();
                let done: Result<(), ()> = stream(
                    threads,
                    &items,
                    |i, x| (i as u64, x * 3),
                    |i, r| {
                        out.push((i as u64, r));
                        Ok(())
                    },
                );
                assert!(done.is_ok());
                assert_eq!(out.len(), n, "{threads:?}");
                for (i, (k, (j, y))) in out.iter().enumerate() {
                    assert_eq!((*k, *j, *y), (i as u64, i as u64, i as u64 * 3));
                }
            }
        }
    }

    #[test]
    fn a_streamed_error_stops_the_work_and_is_returned() {
        let items: Vec<u32> = (0..5000).collect();
        for threads in [Some(1), Some(2), Some(4)] {
            let mut taken = 0;
            let done = stream(
                threads,
                &items,
                |i, _| i,
                |i, r| {
                    assert_eq!(i, r);
                    taken += 1;
                    if i == 777 { Err(i) } else { Ok(()) }
                },
            );
            assert_eq!(done, Err(777), "{threads:?}");
            assert_eq!(taken, 778, "nothing is taken after the error");
        }
        // The work stops too: items take a millisecond each, and an error at the sixth leaves
        // most of them undone (a plain loop does exactly six).
        let items: Vec<u32> = (0..2000).collect();
        for threads in [Some(1), Some(2), Some(4)] {
            let done = AtomicUsize::new(0);
            let outcome = stream(
                threads,
                &items,
                |i, _| {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    done.fetch_add(1, Ordering::Relaxed);
                    i
                },
                |i, _| if i == 5 { Err(()) } else { Ok(()) },
            );
            assert_eq!(outcome, Err(()));
            let done = done.into_inner();
            if threads == Some(1) {
                assert_eq!(done, 6);
            } else {
                assert!(
                    done < 1000,
                    "{threads:?}: {done} items done after the error"
                );
            }
        }
    }

    #[test]
    fn a_panic_while_taking_stops_the_work_and_reaches_the_caller() {
        let items: Vec<u32> = (0..2000).collect();
        let done = AtomicUsize::new(0);
        let outcome = std::panic::catch_unwind(|| {
            stream(
                Some(2),
                &items,
                |i, _| {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    done.fetch_add(1, Ordering::Relaxed);
                    i
                },
                |i, _| {
                    assert!(i != 5, "boom");
                    Ok::<(), ()>(())
                },
            )
        });
        assert!(outcome.is_err());
        assert!(done.into_inner() < 1000, "the other thread went on");
    }

    #[test]
    fn a_panic_while_streaming_reaches_the_caller() {
        let items: Vec<u32> = (0..2000).collect();
        for threads in [Some(1), Some(2), Some(4)] {
            let outcome = std::panic::catch_unwind(|| {
                stream(
                    threads,
                    &items,
                    |i, _| {
                        assert!(i != 1999, "boom");
                        i
                    },
                    |_, _| Ok::<(), ()>(()),
                )
            });
            assert!(outcome.is_err(), "{threads:?}");
        }
    }
}
