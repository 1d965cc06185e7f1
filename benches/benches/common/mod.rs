//! What the criterion benches share: the clock they measure with.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::Criterion;

/// Criterion measuring the CPU time of the benchmark's thread (`CLOCK_THREAD_CPUTIME_ID`), not
/// wall time: on a machine shared with other work, time spent descheduled would otherwise land
/// on whichever side of a comparison happened to be running.
pub struct ThreadTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, as wall time's: its formatter fits.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

/// The criterion a bench runs with: thread CPU time, or wall time with `BENCH_WALL_TIME=1`.
pub enum Clock {
    Thread(Criterion<ThreadTime>),
    Wall(Criterion<WallTime>),
}

/// Criterion configured from the command line, on the clock `BENCH_WALL_TIME` picks.
pub fn criterion() -> Clock {
    if std::env::var_os("BENCH_WALL_TIME").is_some_and(|v| v == "1") {
        Clock::Wall(Criterion::default().configure_from_args())
    } else {
        Clock::Thread(
            Criterion::default()
                .with_measurement(ThreadTime)
                .configure_from_args(),
        )
    }
}
