//! CPU time of this process and the machine's load, from `/proc` (Linux);
//! elsewhere both are simply absent from the report.

use std::time::Duration;

/// Clock ticks per second in `/proc/self/stat` (`USER_HZ`). Linux fixes it
/// at 100 for user space on every architecture the project runs on, and
/// reading it properly (`sysconf`) would need `libc`.
const USER_HZ: u64 = 100;

/// CPU time used by the whole process (all threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuUsage {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel.
    pub system: Duration,
}

impl CpuUsage {
    /// This process's CPU time so far; `None` where `/proc` is missing.
    pub fn now() -> Option<CpuUsage> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        parse_stat(&stat)
    }

    /// Process `pid`'s CPU time so far (a server under load, say); `None`
    /// where `/proc` is missing or the process is gone.
    pub fn of_process(pid: u32) -> Option<CpuUsage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat)
    }

    /// User + system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The time used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuUsage) -> CpuUsage {
        CpuUsage {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// User + system time as a percentage of one core over `wall`.
    pub fn percent_of_core(&self, wall: Duration) -> f64 {
        let wall = wall.as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        self.total().as_secs_f64() / wall * 100.0
    }
}

/// Reads `utime` and `stime` (fields 14 and 15) of a `/proc/<pid>/stat`
/// line. The command name (field 2) is in parentheses and may contain
/// spaces, so fields are counted from its closing parenthesis.
fn parse_stat(stat: &str) -> Option<CpuUsage> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let ticks = |s: Option<&str>| s?.parse::<u64>().ok();
    let user = ticks(fields.next())?;
    let system = ticks(fields.next())?;
    let d = |t: u64| Duration::from_millis(t * 1000 / USER_HZ);
    Some(CpuUsage {
        user: d(user),
        system: d(system),
    })
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub(crate) fn load_average() -> Option<(f64, f64, f64)> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime() {
        let line = "4242 (wyrm bots) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 9 0 100 0 0";
        let cpu = parse_stat(line).expect("parses");
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.system, Duration::from_millis(750));
        assert!(CpuUsage::now().is_some());
    }
}
