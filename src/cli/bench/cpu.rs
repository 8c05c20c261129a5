//! How much CPU the benchmark's thread really had: on a shared host, wall
//! time also counts the time the thread waited for a CPU, or the hypervisor
//! gave the machine's CPU to someone else (steal).

use std::time::{Duration, Instant};

/// A reading of the current thread's scheduler clocks and the machine's
/// steal time, to subtract from a later one.
pub struct CpuClock {
    wall: Instant,
    sched: Option<SchedTimes>,
    steal_ticks: Option<u64>,
}

/// What a thread spent between two readings.
pub struct CpuSpent {
    pub wall: Duration,
    /// On a CPU (the kernel leaves steal out where it accounts for it).
    pub on_cpu: Option<Duration>,
    /// Runnable, waiting for a CPU.
    pub waiting: Option<Duration>,
    /// Taken by the hypervisor from every CPU of the machine.
    pub steal: Option<Duration>,
}

#[derive(Clone, Copy)]
struct SchedTimes {
    on_cpu: Duration,
    waiting: Duration,
}

impl CpuClock {
    /// Must be read on the thread that does the work: the clocks are that thread's.
    pub fn now() -> Self {
        CpuClock { wall: Instant::now(), sched: sched_times(), steal_ticks: steal_ticks() }
    }

    pub fn elapsed(&self) -> CpuSpent {
        let wall = self.wall.elapsed();
        let sched = self.sched.zip(sched_times());
        CpuSpent {
            wall,
            on_cpu: sched.map(|(a, b)| b.on_cpu.saturating_sub(a.on_cpu)),
            waiting: sched.map(|(a, b)| b.waiting.saturating_sub(a.waiting)),
            // /proc/stat counts in USER_HZ, which is 100 on Linux.
            steal: self.steal_ticks.zip(steal_ticks()).map(|(a, b)| Duration::from_millis(b.saturating_sub(a) * 10)),
        }
    }
}

/// `/proc/thread-self/schedstat`: nanoseconds on a CPU, nanoseconds waiting
/// on a run queue, time slices.
fn sched_times() -> Option<SchedTimes> {
    parse_schedstat(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
}

fn parse_schedstat(text: &str) -> Option<SchedTimes> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let on_cpu = Duration::from_nanos(fields.next()?.ok()?);
    let waiting = Duration::from_nanos(fields.next()?.ok()?);
    Some(SchedTimes { on_cpu, waiting })
}

/// The machine's steal time so far, from the `cpu` line of `/proc/stat`.
fn steal_ticks() -> Option<u64> {
    parse_steal(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_steal(stat: &str) -> Option<u64> {
    // cpu  user nice system idle iowait irq softirq steal ...
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_and_steal_are_read_from_the_kernels_format() {
        let t = parse_schedstat("1500000000 250000 42\n").unwrap();
        assert_eq!((t.on_cpu, t.waiting), (Duration::from_millis(1500), Duration::from_micros(250)));
        assert!(parse_schedstat("garbage").is_none());
        let stat = "cpu  223156 0 24987 1386952 481 0 231 175 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_steal(stat), Some(175));
    }

    #[test]
    fn a_busy_thread_spends_time_on_the_cpu() {
        let clock = CpuClock::now();
        let mut x = 0u64;
        while clock.wall.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = clock.elapsed();
        if let Some(on_cpu) = spent.on_cpu {
            assert!(on_cpu > Duration::ZERO && on_cpu <= spent.wall + Duration::from_millis(5), "{on_cpu:?} of {:?}", spent.wall);
        } else {
            assert!(!std::path::Path::new("/proc/thread-self/schedstat").exists(), "schedstat exists but was not read");
        }
    }
}
