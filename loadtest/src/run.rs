//! One scenario run of a workload (`workload.rs`): an open-loop generator (messages leave on schedule
//! whether or not earlier ones were answered), a reader that times each
//! answer from its scheduled send time (so a stall cannot hide: no
//! coordinated omission) and counts every sequence number, and a sampler of
//! the node's resident memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_shards::clock::now_ns;
use caxton_shards::envelope::Message;
use hdrhistogram::Histogram;

use crate::node::Node;
use crate::scenario::Schedule;
use crate::wire;
use crate::workload::{Answer, Workload};

/// Wrong answers whose explanation the outcome keeps.
const ERRORS_KEPT: usize = 5;

/// Width of the windows that rates, the HDR log and recovery are cut into.
pub const WINDOW: Duration = Duration::from_millis(250);
/// How often the generator wakes to send what is due, in microseconds.
pub const GENERATOR_TICK_US: u64 = 200;
/// How long answers may still arrive after the last send.
pub const DRAIN: Duration = Duration::from_secs(15);

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 120_000_000_000, 3).expect("valid bounds")
}

/// One window, by scheduled send time.
#[derive(Clone)]
pub struct Window {
    pub sent: u64,
    pub answered: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

pub struct Outcome {
    pub sent: u64,
    pub answered: u64,
    pub errors: u64,
    pub duplicated: u64,
    pub lost: u64,
    pub latency: Histogram<u64>,
    pub windows: Vec<Window>,
    pub memory: Vec<(f64, f64)>,
    pub elapsed: Duration,
    pub generator_cpu_s: f64,
    /// The first few wrong answers, explained.
    pub first_errors: Vec<String>,
}

/// Live figures for the progress bar.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub p99_us: AtomicU64,
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs `schedule` of `workload`'s requests against `node`.
pub fn run(node: &Node, workload: Arc<dyn Workload>, schedule: &Schedule, live: Arc<Live>) -> Result<Outcome, String> {
    let (mut reader, mut writer, _name, socket) = wire::connect(&node.wire, None).map_err(|e| format!("wire connect to {}: {e}", node.wire))?;
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (api, sampling) = (node.api.clone(), sampling.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = Node::resident_of(&api) {
                    samples.push((started.elapsed().as_secs_f64(), rss));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            samples
        })
    };
    let total = schedule.due(schedule.length());
    let windows_n = ((schedule.length() + DRAIN).as_nanos() / WINDOW.as_nanos()) as usize + 2;
    let cpu_before = cpu_seconds();
    let base_ns = now_ns() + 20_000_000;
    let done_sending = Arc::new(AtomicBool::new(false));

    let reader_live = live.clone();
    let reader_done = done_sending.clone();
    let reader_workload = workload.clone();
    let reader_thread = std::thread::spawn(move || {
        let mut seen = vec![0u64; total as usize / 64 + 1];
        let mut windows: Vec<Window> = (0..windows_n).map(|_| Window { sent: 0, answered: 0, errors: 0, latency: latency_histogram() }).collect();
        let mut all = latency_histogram();
        let (mut answered, mut errors, mut duplicated) = (0u64, 0u64, 0u64);
        let mut first_errors = Vec::new();
        let mut published_window = 0usize;
        // Ends at the end of the stream or at the first bad envelope.
        while let Ok(Some(Ok(message))) = reader.envelope().map(|b| b.map(Message::decode)) {
            let now = now_ns();
            let (seq, scheduled_ns) = match reader_workload.answer(&message, base_ns) {
                Answer::Right { seq, scheduled_ns } => (seq, Some(scheduled_ns)),
                Answer::Wrong { seq, why } => {
                    if first_errors.len() < ERRORS_KEPT {
                        first_errors.push(why);
                    }
                    (seq, None)
                }
                Answer::Unreadable(why) => {
                    if first_errors.len() < ERRORS_KEPT {
                        first_errors.push(why);
                    }
                    errors += 1;
                    continue;
                }
            };
            let (word, bit) = ((seq / 64) as usize, seq % 64);
            if word >= seen.len() || seen[word] & (1 << bit) != 0 {
                duplicated += 1;
                continue;
            }
            seen[word] |= 1 << bit;
            let Some(sched) = scheduled_ns else {
                errors += 1;
                continue;
            };
            answered += 1;
            let latency = now.saturating_sub(sched).max(1_000);
            all.saturating_record(latency);
            let w = ((sched.saturating_sub(base_ns)) / WINDOW.as_nanos() as u64) as usize;
            let w = w.min(windows.len() - 1);
            windows[w].answered += 1;
            windows[w].latency.saturating_record(latency);
            if w > published_window + 1 {
                published_window = w - 1;
                reader_live.p99_us.store(windows[published_window].latency.value_at_quantile(0.99) / 1000, Ordering::Relaxed);
            }
            reader_live.answered.store(answered + errors, Ordering::Relaxed);
            if reader_done.load(Ordering::Relaxed) && answered + errors + duplicated >= total {
                break;
            }
        }
        (answered, errors, duplicated, all, windows, first_errors)
    });

    // The generator: open loop, on schedule.
    let start = Instant::now();
    let wait = Duration::from_nanos(base_ns.saturating_sub(now_ns()));
    std::thread::sleep(wait);
    let mut sent = 0u64;
    let mut sent_per_window = vec![0u64; windows_n];
    let length_ns = schedule.length().as_nanos() as u64;
    loop {
        let elapsed = Duration::from_nanos(now_ns().saturating_sub(base_ns));
        let due = schedule.due(elapsed.min(schedule.length()));
        while sent < due {
            let sched = base_ns + schedule.time_of(sent).as_nanos() as u64;
            workload.send(&mut writer, sent, sched).map_err(|e| format!("wire write: {e}"))?;
            sent_per_window[(((sched - base_ns) / WINDOW.as_nanos() as u64) as usize).min(windows_n - 1)] += 1;
            sent += 1;
        }
        writer.flush().map_err(|e| format!("wire write: {e}"))?;
        live.sent.store(sent, Ordering::Relaxed);
        if elapsed.as_nanos() as u64 >= length_ns {
            break;
        }
        std::thread::sleep(Duration::from_micros(GENERATOR_TICK_US));
    }
    done_sending.store(true, Ordering::Relaxed);

    // Memory while answers drain, then stop waiting after DRAIN.
    let drain_deadline = Instant::now() + DRAIN;
    while Instant::now() < drain_deadline && live.answered.load(Ordering::Relaxed) < sent {
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    let generator_cpu_s = cpu_seconds() - cpu_before;
    // Whatever has not come back by now is lost: close, so the reader ends.
    let _ = socket.shutdown(std::net::Shutdown::Both);
    drop(writer);
    sampling.store(false, Ordering::Relaxed);
    let memory = sampler.join().unwrap_or_default();
    let (answered, errors, duplicated, latency, mut windows, first_errors) = match reader_thread.join() {
        Ok(r) => r,
        Err(_) => return Err("the reader thread failed".into()),
    };
    for (w, n) in windows.iter_mut().zip(sent_per_window) {
        w.sent = n;
    }
    let lost = sent.saturating_sub(answered + errors);
    Ok(Outcome { sent, answered, errors, duplicated, lost, latency, windows, memory, elapsed, generator_cpu_s, first_errors })
}
