//! CPU time of processes on this machine, from `/proc` (Linux): where a
//! scenario's work went, apart from the load generator's.

/// Clock ticks a second in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// The CPU time (user and system) process `pid` has used, in seconds.
pub fn seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (user, system): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((user + system) / TICKS)
}

/// This process's CPU time, in seconds.
pub fn own_seconds() -> f64 {
    seconds(Some(std::process::id())).unwrap_or_default()
}

/// The CPU time of every process named `postgres` on this machine, in
/// seconds: the server's backends and its background processes. (Zero for
/// a server elsewhere; backends that ended meanwhile are not counted.)
pub fn postgres_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "postgres"))
        .filter_map(|pid| seconds(Some(pid)))
        .sum()
}
