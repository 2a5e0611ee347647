//! The host's load while a scenario runs, read from `/proc`, so that "the
//! host was loaded" rests on a number: the CPU the node used, the CPU the
//! generator (this process) used, the CPU everything else used, the time
//! the hypervisor stole, and the load average.
//!
//! All CPU figures are in cores: CPU-seconds over the run's wall seconds.

use std::time::Instant;

/// The machine's CPU time by kind, in clock ticks (`/proc/stat`'s `cpu`
/// line).
#[derive(Debug, Clone, Copy, Default)]
struct CpuTimes {
    busy: u64,
    idle: u64,
    steal: u64,
}

/// What is read at a scenario's start and end.
#[derive(Debug, Clone)]
pub struct Snapshot {
    taken: Instant,
    cpu: CpuTimes,
    /// Ticks of the node processes (user and system).
    node_ticks: u64,
}

/// The load of the host over one run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct HostLoad {
    /// Cores the machine has.
    pub cores: usize,
    /// Cores busy in all, then by whom.
    pub busy_cores: f64,
    pub node_cores: f64,
    pub generator_cores: f64,
    /// Busy cores neither the node nor the generator used: other processes
    /// and the kernel's work for them.
    pub others_cores: f64,
    /// Share of the machine's time the hypervisor took (steal).
    pub steal_percent: f64,
    /// The 1-minute load average when the run ended.
    pub loadavg_1m: f64,
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf(3) has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn cpu_times() -> CpuTimes {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return CpuTimes::default() };
    // user nice system idle iowait irq softirq steal guest guest_nice
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    CpuTimes { busy: at(0) + at(1) + at(2) + at(5) + at(6), idle: at(3) + at(4), steal: at(7) }
}

/// Ticks of user and system time of process `pid` and its threads.
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: fields after it.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state(0) ... utime is field 14 of the line, 12 here; stime 13.
    let at = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    at(11) + at(12)
}

fn loadavg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0.0)
}

/// Reads the host now; `node_pids` are the processes under test.
pub fn snapshot(node_pids: &[u32]) -> Snapshot {
    Snapshot { taken: Instant::now(), cpu: cpu_times(), node_ticks: node_pids.iter().map(|&p| process_ticks(p)).sum() }
}

/// The load between two snapshots, the generator having used
/// `generator_cpu_s` CPU-seconds meanwhile.
pub fn between(start: &Snapshot, end: &Snapshot, generator_cpu_s: f64) -> HostLoad {
    let hz = ticks_per_second();
    let wall = end.taken.duration_since(start.taken).as_secs_f64().max(1e-9);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let busy = end.cpu.busy.saturating_sub(start.cpu.busy) as f64 / hz / wall;
    let total = (end.cpu.busy + end.cpu.idle + end.cpu.steal).saturating_sub(start.cpu.busy + start.cpu.idle + start.cpu.steal) as f64;
    let steal = end.cpu.steal.saturating_sub(start.cpu.steal) as f64;
    let node = end.node_ticks.saturating_sub(start.node_ticks) as f64 / hz / wall;
    let generator = generator_cpu_s / wall;
    HostLoad {
        cores,
        busy_cores: busy,
        node_cores: node,
        generator_cores: generator,
        others_cores: (busy - node - generator).max(0.0),
        steal_percent: if total > 0.0 { steal / total * 100.0 } else { 0.0 },
        loadavg_1m: loadavg_1m(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_here_shows_as_this_process_and_the_rest_as_others() {
        let me = std::process::id();
        let start = snapshot(&[me]);
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 300 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let end = snapshot(&[me]);
        let load = between(&start, &end, 0.0);
        assert!(load.node_cores > 0.5 && load.node_cores < 1.5, "{load:?}");
        assert!(load.busy_cores >= load.node_cores * 0.8, "{load:?}");
        assert!(load.cores >= 1 && load.steal_percent >= 0.0 && load.loadavg_1m >= 0.0, "{load:?}");
    }
}
