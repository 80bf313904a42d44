//! The CPU time of the threads that call into plugins, so that a call's
//! deadline counts the time the call ran, not the time its thread waited
//! for a core.
//!
//! Measured on a busy two-core host (load 5), calls that take microseconds
//! ran past a 200 ms wall-clock deadline a dozen times in half an hour: the
//! game thread had simply not been scheduled. A deadline is there to stop a
//! guest that loops, so it should count what the guest consumed.
//!
//! Reading a thread's own CPU clock is a system call (~220 ns here), too
//! dear for every call into a guest. So the epoch ticker, which wakes every
//! tick anyway, samples the clock of every registered thread into an
//! atomic; a call starts from its thread's last sample (at most one tick
//! old, which can only make the call look older than it is), and only when
//! the wall-clock deadline passes does the thread read its own clock
//! exactly, to decide whether to stop the guest or let it run on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// One thread's CPU clock and its last sample, in nanoseconds.
struct ThreadClock {
    clock: libc::clockid_t,
    sample: AtomicU64,
}

/// Every thread that has called into a plugin. The ticker holds them
/// weakly: a thread that ends drops its clock, and the ticker forgets it.
static THREADS: Mutex<Vec<Weak<ThreadClock>>> = Mutex::new(Vec::new());

thread_local! {
    static THIS: Option<Arc<ThreadClock>> = register();
}

fn register() -> Option<Arc<ThreadClock>> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `pthread_self` is always valid for the calling thread, and
    // `clock` is a valid place for the result.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    if rc != 0 {
        return None;
    }
    let this = Arc::new(ThreadClock {
        clock,
        sample: AtomicU64::new(read(clock)?),
    });
    THREADS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(&this));
    Some(this)
}

fn read(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid place for the result; a bad clock id is an
    // error return, not undefined behaviour.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The calling thread's CPU time as last sampled, in nanoseconds: cheap
/// (an atomic load), at most one epoch tick behind. 0 where the platform
/// has no thread clocks, which makes [`now`] − [`sampled`] the whole
/// thread's time, so deadlines stay as strict as wall-clock ones.
pub(crate) fn sampled() -> u64 {
    THIS.with(|t| t.as_ref().map_or(0, |t| t.sample.load(Ordering::Relaxed)))
}

/// The calling thread's CPU time now, in nanoseconds (a system call). Where
/// the platform has no thread clocks, `u64::MAX`: every call then ends at
/// its wall-clock deadline.
pub(crate) fn now() -> u64 {
    THIS.with(|t| t.as_ref().and_then(|t| read(t.clock)).unwrap_or(u64::MAX))
}

/// Samples the clock of every registered thread; the epoch ticker calls it
/// every tick. Threads that have ended are forgotten.
pub(crate) fn sample_all() {
    let mut threads = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    threads.retain(|t| {
        let Some(t) = t.upgrade() else { return false };
        if let Some(ns) = read(t.clock) {
            t.sample.store(ns, Ordering::Relaxed);
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(ns: u64) {
        let start = now();
        while now().saturating_sub(start) < ns {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn a_thread_that_waits_uses_no_cpu_time_and_one_that_spins_does() {
        let start = now();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let slept = now() - start;
        assert!(slept < 10_000_000, "sleeping 30 ms used {slept} ns of CPU");
        spin(20_000_000);
        assert!(now() - start >= 20_000_000);
    }

    #[test]
    fn samples_trail_the_clock_and_follow_it_when_sampled() {
        let before = sampled();
        spin(5_000_000);
        assert!(sampled() <= now());
        sample_all();
        let after = sampled();
        assert!(after >= before + 5_000_000, "{before} → {after}");
        // A thread that ended is forgotten by the next sampling (the
        // ticker of another test's runtime may have forgotten it already).
        let ended = std::thread::spawn(|| THIS.with(|t| t.as_ref().map(Arc::downgrade)))
            .join()
            .ok()
            .flatten()
            .expect("threads have CPU clocks here");
        let known = |w: &Weak<ThreadClock>| {
            THREADS
                .lock()
                .map(|t| t.iter().any(|t| t.ptr_eq(w)))
                .unwrap_or(false)
        };
        sample_all();
        assert!(!known(&ended));
    }
}
