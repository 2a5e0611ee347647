//! Keyed agents: activating a passive key (instance, `caxton_init`, its
//! state's size read) beside a plain instantiation, and what a key costs
//! in memory while live and while passive. Run in a child process of its
//! own (`caxton-bench --keyed-probe KEYS ACTIVE`), so that its resident
//! memory is its own.

use std::time::Instant;

use caxton_shards::placement::key_shard;
use caxton_shards::shard::ShardTuning;

use crate::node::BenchNode;

/// What [`probe`] measured.
#[derive(Debug)]
pub struct KeyedFigures {
    pub keys: usize,
    pub active_max: usize,
    /// Dequeue of a passive key's first message to its handler's start.
    pub activation_p50_us: f64,
    pub activation_p99_us: f64,
    /// Resident bytes per live activation (the first `active_max` keys,
    /// none passivated yet).
    pub active_bytes: f64,
    /// Resident bytes per further key, each activated, written and
    /// passivated again (the cap held): what a passive key costs in memory.
    pub passive_bytes: f64,
    /// The shard's database per key with state.
    pub disk_bytes: f64,
    /// Keys activated, written and passivated a second.
    pub keys_per_s: f64,
    /// The process's resident memory at the end.
    pub rss_bytes: f64,
}

fn resident_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    statm.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() * page
}

/// One message to each of `count` keys `counter/k<from..>` (the counter
/// writes its state on each), then waits until all are handled.
fn touch_keys(node: &BenchNode, from: usize, count: usize, handled_before: u64) {
    const BATCH: usize = 256;
    let mut batch = Vec::with_capacity(BATCH);
    for k in from..from + count {
        let address = format!("counter/k{k}");
        assert_eq!(key_shard(address.as_bytes(), 1), 0);
        batch.push(BenchNode::message("@bench/1", &address, b""));
        if batch.len() == BATCH || k + 1 == from + count {
            let mut pending = std::mem::take(&mut batch);
            while !pending.is_empty() {
                // The refused (busy: the shard holds all the activations it
                // may) come back, to be sent again.
                let refused = node.ask(0, |reply| caxton_shards::Command::Inject { messages: pending, reply });
                pending = refused.into_iter().map(|(_, m)| m).collect();
                if !pending.is_empty() {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
        }
    }
    let want = handled_before + count as u64;
    while node.handled() < want {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Keys of a keyed counter on one shard: `active_max` live ones first,
/// then `keys` more through a cap of `active_max`.
pub fn probe(keys: usize, active_max: usize) -> KeyedFigures {
    let tuning = ShardTuning { keyed_active_max: active_max, ..ShardTuning::default() };
    let node = BenchNode::start_tuned(1, tuning);
    let wat = std::env::var("CAXTON_KEYED_PROBE_WAT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| crate::routing::agents_dir().join("../../examples/agents/counter.wat"));
    node.deploy("counter", &wat, 0);
    let rss0 = resident_bytes();
    touch_keys(&node, 0, active_max, 0);
    let rss1 = resident_bytes();
    let before = node.stats();
    let began = Instant::now();
    touch_keys(&node, active_max, keys, active_max as u64);
    let secs = began.elapsed().as_secs_f64();
    let rss2 = resident_bytes();
    let after = node.stats();
    let activation = after[0].latencies.activation.since(&before[0].latencies.activation);
    let keyed = after[0].keyed.iter().find(|(n, _)| &**n == "counter").expect("deployed").1;
    assert!(keyed.active as usize <= active_max, "the cap holds: {keyed:?}");
    let disk: u64 = std::fs::read_dir(node.data_dir()).unwrap().flatten().map(|e| e.metadata().map_or(0, |m| m.len())).sum();
    KeyedFigures {
        keys,
        active_max,
        activation_p50_us: activation.quantile_ns(0.5) as f64 / 1e3,
        activation_p99_us: activation.quantile_ns(0.99) as f64 / 1e3,
        active_bytes: (rss1 - rss0) / active_max as f64,
        passive_bytes: (rss2 - rss1).max(0.0) / keys as f64,
        disk_bytes: disk as f64 / (keys + active_max) as f64,
        keys_per_s: keys as f64 / secs,
        rss_bytes: rss2,
    }
}

impl KeyedFigures {
    /// One line of JSON (the probe's output).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "keys": self.keys, "active_max": self.active_max,
            "activation_p50_us": self.activation_p50_us, "activation_p99_us": self.activation_p99_us,
            "active_bytes": self.active_bytes, "passive_bytes": self.passive_bytes,
            "disk_bytes": self.disk_bytes, "keys_per_s": self.keys_per_s, "rss_bytes": self.rss_bytes,
        })
        .to_string()
    }
}
