//! What Linux says about a process in `/proc`: resident memory and CPU time, for the benchmarks'
//! figures (kuma-cp peers, and the load program itself).

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat`: 100 on Linux on every architecture this runs on.
const TICKS_PER_SECOND: u64 = 100;

/// Resident set size (`VmRSS` of `/proc/<pid>/status`), in bytes.
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_rss(&status).ok_or_else(|| std::io::Error::other("no VmRSS line in kB"))
}

/// CPU time (user + system) the process used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu(&stat).ok_or_else(|| std::io::Error::other("no utime and stime fields"))
}

/// This process' own memory and CPU time.
pub fn own_rss_bytes() -> std::io::Result<u64> {
    rss_bytes(std::process::id())
}

pub fn own_cpu_time() -> std::io::Result<Duration> {
    cpu_time(std::process::id())
}

fn parse_rss(status: &str) -> Option<u64> {
    let kib = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    Some(kib.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()? * 1024)
}

fn parse_cpu(stat: &str) -> Option<Duration> {
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_in_bytes_from_the_kib_line() {
        assert_eq!(parse_rss("Name:\tkuma-cp\nVmRSS:\t   2048 kB\n"), Some(2048 * 1024));
        assert_eq!(parse_rss("Name:\tkuma-cp\n"), None);
    }

    #[test]
    fn cpu_time_is_user_plus_system_even_with_spaces_in_the_name() {
        let stat = "42 (kuma cp) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_cpu(stat), Some(Duration::from_secs(3)));
    }

    #[test]
    fn this_process_can_read_its_own_figures() {
        assert!(own_rss_bytes().unwrap() > 0);
        assert!(own_cpu_time().is_ok());
    }
}
