//! Threads: candle's CPU kernels and the blend share rayon's pool.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fix the thread count candle's CPU kernels use. Unset, candle works it out again on every
/// matrix product (reading CPU masks, and /proc/cpuinfo where those are absent): measurable
/// per-token overhead. Call first thing in `main`, before any thread starts.
pub fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// Run `f` on a thread of rayon's pool, so the parallel kernels it calls split their work
/// there instead of handing it over and sleeping until it is done (two context switches per
/// op, which small models pay on every op of every token).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let mut out = None;
    rayon::scope(|s| s.spawn(|_| out = Some(f())));
    out.expect("the scope ran the job")
}

/// Keeps the pool's other workers looking for work while it lives, instead of falling asleep
/// between the parallel ops of a forward pass.
///
/// A rayon worker that finds nothing for a few dozen rounds sleeps on a futex, and the next
/// parallel op must wake it: a system call on the op's path, and a wake-up delay before the
/// worker helps. A decode step is a few hundred parallel ops with short serial stretches
/// between them (activations quantized, attention, norms), long enough for the workers to fall
/// asleep before almost every op: in a profile of four batched columns on SmolLM2 Q4_1, the
/// wake-ups and sleeps took about a seventh of the CPU time. While this guard lives, each
/// other worker runs a job that runs the pool's work as it appears and otherwise spins.
///
/// A spinning job never outlasts [`IDLE_LIMIT`] without work, so it cannot hold up a job
/// beneath it on its thread's stack (a worker that stole part of a pass and, waiting inside
/// it, picked up this job) for longer than that.
pub struct BusyWorkers {
    shared: Arc<Shared>,
}

/// What a guard and its jobs share.
#[derive(Default)]
struct Shared {
    active: AtomicBool,
    /// Jobs spinning now, and jobs that have spun at all.
    spinning: AtomicUsize,
    started: AtomicUsize,
}

/// Pauses between two looks for work: a look reads the other workers' queues, which their
/// owners write as they split work.
const IDLE_SPINS: usize = 16;

/// How long a worker keeps spinning without finding work before it leaves (and sleeps as
/// rayon's workers do): beside a serial stretch this long, the wake-up after it is small.
const IDLE_LIMIT: Duration = Duration::from_micros(500);

/// Idle rounds between two readings of the clock for [`IDLE_LIMIT`].
const CLOCK_EVERY: u32 = 32;

thread_local! {
    /// Whether this thread is already inside a [`BusyWorkers`] job.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

impl BusyWorkers {
    /// From a thread of the pool with other workers; `None` elsewhere (there is nobody to keep
    /// busy, or the jobs would go to a pool the caller does not run on).
    pub fn start() -> Option<Self> {
        let owner = rayon::current_thread_index()?;
        let others = rayon::current_num_threads()
            .checked_sub(1)
            .filter(|&n| n > 0)?;
        let shared = Arc::new(Shared {
            active: AtomicBool::new(true),
            ..Default::default()
        });
        for _ in 0..others {
            let shared = shared.clone();
            rayon::spawn(move || look_for_work(&shared, owner));
        }
        Some(Self { shared })
    }
}

impl Drop for BusyWorkers {
    fn drop(&mut self) {
        self.shared.active.store(false, Ordering::Relaxed);
    }
}

/// Run the pool's jobs until `active` clears or nothing turns up for [`IDLE_LIMIT`]. Not on
/// the owner's thread (it would wait here for its own pass to end) nor inside another such job.
fn look_for_work(shared: &Shared, owner: usize) {
    if rayon::current_thread_index() == Some(owner) || BUSY.get() {
        return;
    }
    BUSY.set(true);
    shared.spinning.fetch_add(1, Ordering::Relaxed);
    shared.started.fetch_add(1, Ordering::Relaxed);
    let (mut idle_since, mut idle_rounds) = (Instant::now(), 0u32);
    while shared.active.load(Ordering::Relaxed) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            (idle_since, idle_rounds) = (Instant::now(), 0);
            continue;
        }
        // The clock now and then: reading it every round took a tenth of the spinning time.
        idle_rounds += 1;
        if idle_rounds % CLOCK_EVERY == 0 && idle_since.elapsed() > IDLE_LIMIT {
            break;
        }
        for _ in 0..IDLE_SPINS {
            std::hint::spin_loop();
        }
    }
    shared.spinning.fetch_sub(1, Ordering::Relaxed);
    BUSY.set(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// Waits up to ten seconds for `f` to hold.
    fn eventually(what: &str, f: impl Fn() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs `f` on another thread and fails if it has not finished within a minute (a
    /// deadlock would otherwise hang the test run).
    fn finishes<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()).unwrap());
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the jobs never finished: a busy worker held them up")
    }

    #[test]
    fn only_a_pool_thread_with_other_workers_starts_them() {
        assert!(BusyWorkers::start().is_none(), "outside any pool");
        assert!(
            pool(1).install(BusyWorkers::start).is_none(),
            "alone in its pool"
        );
        assert!(pool(2).install(BusyWorkers::start).is_some());
    }

    /// The other worker spins while the guard lives and nothing is left for it, and leaves
    /// after [`IDLE_LIMIT`] without work; meanwhile the owner's parallel work runs on both
    /// threads.
    #[test]
    fn a_busy_worker_runs_the_pools_work_then_leaves_when_idle() {
        finishes(|| {
            pool(2).install(|| {
                let guard = BusyWorkers::start().unwrap();
                let shared = guard.shared.clone();
                eventually("the other worker spins", || {
                    shared.started.load(Ordering::Relaxed) == 1
                });
                let owner = rayon::current_thread_index();
                // The first half lasts long enough for the other worker to take the second.
                let wait = || {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(50) {
                        std::hint::spin_loop();
                    }
                };
                let helped = (0..10_000).any(|_| {
                    let (_, other) = rayon::join(wait, rayon::current_thread_index);
                    other != owner
                });
                assert!(helped, "the spinning worker never took a job");
                eventually("the idle worker leaves", || {
                    shared.spinning.load(Ordering::Relaxed) == 0
                });
                drop(guard);
            })
        });
    }

    /// Passes on every worker at once, each keeping the others busy, with nested parallel
    /// work: whichever worker picks up whose spinning job, every pass finishes.
    #[test]
    fn passes_on_every_worker_at_once_all_finish() {
        let sums = finishes(|| {
            pool(3).install(|| {
                use rayon::prelude::*;
                (0..24usize)
                    .into_par_iter()
                    .map(|i| {
                        let _busy = BusyWorkers::start();
                        (0..2_000usize)
                            .into_par_iter()
                            .with_max_len(16)
                            .map(|j| i * j)
                            .sum::<usize>()
                    })
                    .collect::<Vec<_>>()
            })
        });
        let want: Vec<usize> = (0..24).map(|i| i * (0..2_000).sum::<usize>()).collect();
        assert_eq!(sums, want);
    }
}
