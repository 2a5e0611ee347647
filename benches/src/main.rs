//! `caxton-bench` (`make bench`): ADR-0017's benchmark suite (routing, agent
//! startup, message processing, storage) with every figure beside a
//! baseline measured in the same run, as medians of several runs.
//!
//! Writes `target/bench/summary.json` and `target/bench/summary.md`, and in
//! full mode `docs/BENCHMARKS.md`. Exits non-zero when an ADR-0017 target is
//! missed (full mode). `CAXTON_BENCH_SMALL=1` runs a seconds-long version
//! that only checks the suite still works.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use caxton_benches::report::{self, Better, Row};
use caxton_benches::{agents, baselines, cluster, median, routing, small, stages, storage};
use hdrhistogram::Histogram;
use serde_json::json;

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn lat_us(l: &caxton_shards::metrics::Latency, q: f64) -> f64 {
    l.quantile_ns(q) as f64 / 1e3
}

/// Messages injected a second in the loaded routing rows (each forwarded
/// once: 100,000 handled a second), and the rate of their baselines.
const LOADED_INJECT_PER_S: u64 = 50_000;

/// Figures of one run, by key.
type Run = BTreeMap<&'static str, f64>;

/// Cluster sizes of the convergence benchmark.
fn cluster_sizes(small: bool) -> &'static [usize] {
    if small {
        &[10, 100]
    } else {
        &[10, 100, 1000]
    }
}

fn key(prefix: &str, n: usize) -> &'static str {
    Box::leak(format!("{prefix}_{n}").into_boxed_str())
}

fn one_run(small: bool, run: usize) -> Run {
    let mut r = Run::new();
    let secs = |full: u64| Duration::from_millis(if small { 300 } else { full * 1000 });
    // ---------------------------------------------------------------- baselines
    let rounds = if small { 2_000 } else { 200_000 };
    let floor = baselines::spinning_ping_pong(rounds);
    r.insert("floor_p50", us(&floor, 0.5));
    r.insert("floor_p99", us(&floor, 0.99));
    r.insert("floor_p999", us(&floor, 0.999));
    let glommio = baselines::glommio_ping_pong(if small { 500 } else { 20_000 });
    r.insert("glommio_p50", us(&glommio, 0.5));
    r.insert("glommio_p99", us(&glommio, 0.99));
    let (actix, actix_rate) = baselines::actix(if small { 500 } else { 20_000 }, if small { 20_000 } else { 2_000_000 });
    r.insert("actix_p50", us(&actix, 0.5));
    r.insert("actix_p99", us(&actix, 0.99));
    r.insert("actix_rate", actix_rate);
    r.insert("plain_call_ns", baselines::plain_call_ns(10_000_000));
    // Under the loaded rows' conditions: open loop at the rate the shards
    // are injected, the same spin budget (issue 19, 3).
    let spin = Duration::from_micros(caxton_shards::limits::SPIN_BEFORE_PARK_MAX_US);
    let glommio_load = baselines::glommio_open_loop(LOADED_INJECT_PER_S, secs(3), spin);
    r.insert("glommio_load_p50", us(&glommio_load, 0.5));
    r.insert("glommio_load_p99", us(&glommio_load, 0.99));
    let actix_load = baselines::actix_open_loop(LOADED_INJECT_PER_S, secs(3));
    r.insert("actix_load_p50", us(&actix_load, 0.5));
    r.insert("actix_load_p99", us(&actix_load, 0.99));
    // ---------------------------------------------------------------- routing
    {
        let node = caxton_benches::node::BenchNode::start(2);
        let cast = routing::deploy(&node);
        let idle = routing::forwarded(&node, &cast, 1_000, secs(3));
        r.insert("idle_local_p50", lat_us(&idle.local, 0.5));
        r.insert("idle_local_p99", lat_us(&idle.local, 0.99));
        r.insert("idle_remote_p50", lat_us(&idle.remote, 0.5));
        r.insert("idle_remote_p99", lat_us(&idle.remote, 0.99));
        let load = routing::forwarded(&node, &cast, LOADED_INJECT_PER_S as usize, secs(5));
        r.insert("load_rate", load.handled_per_s);
        r.insert("load_local_p50", lat_us(&load.local, 0.5));
        r.insert("load_local_p99", lat_us(&load.local, 0.99));
        r.insert("load_local_p999", lat_us(&load.local, 0.999));
        r.insert("load_remote_p50", lat_us(&load.remote, 0.5));
        r.insert("load_remote_p99", lat_us(&load.remote, 0.99));
        r.insert("load_remote_p999", lat_us(&load.remote, 0.999));
        r.insert("blast_remote", routing::blast(&node, true, secs(3)));
        r.insert("blast_local", routing::blast(&node, false, secs(3)));
        for (label, lat) in agents::processing(&node, &cast, secs(3)) {
            let key = match label {
                "trivial handler" => ("proc_trivial_p50", "proc_trivial_p99"),
                "handler writing state" => ("proc_write_p50", "proc_write_p99"),
                _ => ("proc_reply_p50", "proc_reply_p99"),
            };
            r.insert(key.0, lat_us(&lat, 0.5));
            r.insert(key.1, lat_us(&lat, 0.99));
        }
        // The Rust SDK's echo beside the hand-written one, in the same shards.
        let wat_echo = routing::agents_dir().join("echo.wat");
        let sdk_echo = caxton_testkit::example_agent("rust-echo");
        r.insert("echo_cross_rate", agents::echo_pingpong(&node, "wat", &wat_echo, true, secs(3)).handled_per_s);
        for (tag, module) in [("wat", &wat_echo), ("sdk", &sdk_echo)] {
            let run = agents::echo_pingpong(&node, tag, module, false, secs(3));
            r.insert(format!("echo_{tag}_rate").leak(), run.handled_per_s);
            r.insert(format!("echo_{tag}_proc_p50_ns").leak(), lat_us(&run.processing, 0.5) * 1000.0);
            let wasm = wasmer::wat2wasm(&std::fs::read(module).unwrap()).unwrap().into_owned();
            r.insert(format!("echo_{tag}_bytes").leak(), wasm.len() as f64);
            r.insert(format!("echo_{tag}_compile_ms").leak(), agents::compile_ms(&wasm, if small { 3 } else { 15 }));
        }
    }
    // ---------------------------------------------------------------- stages
    for (cross, tag) in [(false, "local"), (true, "cross")] {
        let costs = stages::measure(cross, secs(3));
        for (i, (_, ns)) in costs.ns.iter().enumerate() {
            r.insert(format!("stage_{tag}_ns_{i}").leak(), *ns);
        }
        r.insert(format!("stage_{tag}_total_ns").leak(), costs.total_ns);
        r.insert(format!("stage_{tag}_timed_rate").leak(), costs.timed_rate);
    }
    // ---------------------------------------------------------------- cluster
    {
        let pair = cluster::LinkedPair::start();
        let echo = routing::agents_dir().join("echo.wat");
        pair.a.deploy("echo-near", &echo, 1);
        pair.deploy_on_b("echo-far", &echo);
        pair.round_trips("echo-far", 1_000, Duration::from_millis(300)); // opens the link
        let (near, _) = pair.round_trips("echo-near", 1_000, secs(3));
        let (far, _) = pair.round_trips("echo-far", 1_000, secs(3));
        let (far_load, far_rate) = pair.round_trips("echo-far", 20_000, secs(3));
        let (near_load, _) = pair.round_trips("echo-near", 20_000, secs(3));
        r.insert("node_near_load_p50", us(&near_load, 0.5));
        r.insert("node_near_load_p99", us(&near_load, 0.99));
        r.insert("node_near_p50", us(&near, 0.5));
        r.insert("node_near_p99", us(&near, 0.99));
        r.insert("node_idle_p50", us(&far, 0.5));
        r.insert("node_idle_p99", us(&far, 0.99));
        r.insert("node_load_p50", us(&far_load, 0.5));
        r.insert("node_load_p99", us(&far_load, 0.99));
        r.insert("node_load_rate", far_rate);
        r.insert("node_blast", pair.blast(secs(3)));
    }
    {
        // The same link with records in clear (issue 17): what encryption
        // costs, measured in the same run.
        let pair = cluster::LinkedPair::start_with(caxton_cluster::session::Mode::Plain);
        pair.deploy_on_b("echo-far", &routing::agents_dir().join("echo.wat"));
        pair.round_trips("echo-far", 1_000, Duration::from_millis(300));
        let (far, _) = pair.round_trips("echo-far", 1_000, secs(3));
        r.insert("node_plain_idle_p50", us(&far, 0.5));
        r.insert("node_plain_idle_p99", us(&far, 0.99));
        r.insert("node_plain_blast", pair.blast(secs(3)));
    }
    let spread = cluster::registry_spread(10, if small { 1_000 } else { 10_000 }, run as u64 + 1);
    r.insert("registry_10_ms", spread.converged_ms.unwrap_or(f64::INFINITY));
    r.insert("registry_10_bytes", spread.bytes_per_node);
    let tcp = cluster::loopback_tcp_ping_pong(if small { 2_000 } else { 50_000 });
    r.insert("tcp_p50", us(&tcp, 0.5));
    r.insert("tcp_p99", us(&tcp, 0.99));
    let gtcp = cluster::glommio_tcp_ping_pong(if small { 200 } else { 3_000 });
    r.insert("gtcp_p50", us(&gtcp, 0.5));
    r.insert("gtcp_p99", us(&gtcp, 0.99));
    let (sealed_mb_s, plain_mb_s) = cluster::record_throughput(if small { 8 << 20 } else { 1 << 30 });
    r.insert("records_sealed_mb_s", sealed_mb_s);
    r.insert("records_plain_mb_s", plain_mb_s);
    for &n in cluster_sizes(small) {
        let c = cluster::convergence(n, run as u64 + 1);
        r.insert(key("join_ms", n), c.join_ms);
        r.insert(key("fail_ms", n), c.failure_ms);
        r.insert(key("spread_ms", n), c.failure_spread_ms);
        r.insert(key("gossip_bytes_s", n), c.bytes_per_node_s);
        r.insert(key("churn_bytes_s", n), c.churn_bytes_per_node_s);
        let p = cluster::convergence_piggyback_only(n, run as u64 + 1);
        r.insert(key("pb_join_ms", n), p.join_ms);
        r.insert(key("pb_spread_ms", n), p.failure_spread_ms);
    }
    // ---------------------------------------------------------------- agents
    let (startup, bare) = agents::startup(if small { 200 } else { 5_000 });
    r.insert("startup_p50", us(&startup, 0.5));
    r.insert("startup_p99", us(&startup, 0.99));
    r.insert("bare_startup_p50", us(&bare, 0.5));
    r.insert("bare_startup_p99", us(&bare, 0.99));
    let count = if small { 500 } else { 10_000 };
    r.insert("rss_per_agent_kib", rss_probe("ours", count) / 1024.0);
    r.insert("bare_rss_per_agent_kib", rss_probe("bare", count) / 1024.0);
    r.insert("distinct_rss_per_agent_kib", rss_probe("distinct", count / 5) / 1024.0);
    // Keyed agents (issue 27): a million keys in the first full run only
    // (about 40 s), a hundred thousand in the others.
    let keys = if small {
        20_000
    } else if run == 0 {
        1_000_000
    } else {
        100_000
    };
    let k = keyed_probe(keys, 1_000);
    r.insert("keyed_activation_p50_us", k["activation_p50_us"].as_f64().unwrap());
    r.insert("keyed_activation_p99_us", k["activation_p99_us"].as_f64().unwrap());
    r.insert("keyed_active_kib", k["active_bytes"].as_f64().unwrap() / 1024.0);
    r.insert("keyed_passive_bytes", k["passive_bytes"].as_f64().unwrap());
    r.insert("keyed_disk_bytes", k["disk_bytes"].as_f64().unwrap());
    r.insert("keyed_keys_per_s", k["keys_per_s"].as_f64().unwrap());
    if small || run == 0 {
        r.insert("keyed_most_rss_mib", k["rss_bytes"].as_f64().unwrap() / (1024.0 * 1024.0));
    }
    let dispatch = agents::dispatch_ns(if small { 10_000 } else { 1_000_000 });
    r.insert("dispatch_p50_ns", dispatch.value_at_quantile(0.5) as f64);
    let calls = if small { 10_000 } else { 1_000_000 };
    r.insert("dispatch_unmetered_bulk_p50_ns", agents::handler_ns("sink.wat", false, calls).value_at_quantile(0.5) as f64);
    r.insert("copier_p50_ns", agents::handler_ns("copier.wat", true, calls).value_at_quantile(0.5) as f64);
    r.insert("copier_unmetered_bulk_p50_ns", agents::handler_ns("copier.wat", false, calls).value_at_quantile(0.5) as f64);
    // ---------------------------------------------------------------- storage
    let (rows_per_s, batch) = storage::batched_writes(if small { 5 } else { 200 });
    r.insert("batch_rows_per_s", rows_per_s);
    r.insert("batch_p50_ms", batch.value_at_quantile(0.5) as f64 / 1e6);
    let single = storage::single_writes(if small { 200 } else { 5_000 }, false);
    r.insert("write_p50", us(&single, 0.5));
    r.insert("write_p99", us(&single, 0.99));
    let full = storage::single_writes(if small { 100 } else { 1_000 }, true);
    r.insert("write_full_p50", us(&full, 0.5));
    r.insert("write_full_p99", us(&full, 0.99));
    let ticks = if small { 200 } else { 5_000 };
    for (mode, key) in [("none", "tick_plain_p99"), ("checkpointer", "tick_ckpt_p99"), ("autocheckpoint", "tick_auto_p99")] {
        r.insert(key, us(&storage::checkpoint_stall(mode, ticks), 0.99));
    }
    r.insert("naive_rows_per_s", storage::naive_writes(if small { 200 } else { 5_000 }, false));
    r.insert("naive_equal_rows_per_s", storage::naive_writes(if small { 200 } else { 5_000 }, true));
    let (lookups, naive) = storage::lookups(if small { 1_000 } else { 100_000 });
    r.insert("lookup_p50", us(&lookups, 0.5));
    r.insert("lookup_p99", us(&lookups, 0.99));
    r.insert("naive_lookup_p50", us(&naive, 0.5));
    r.insert("naive_lookup_p99", us(&naive, 0.99));
    r
}

fn rows(m: &BTreeMap<&'static str, f64>, small: bool) -> Vec<Row> {
    let g = |k: &str| *m.get(k).unwrap_or_else(|| panic!("figure {k} missing"));
    let row = |group, name: &str, unit, better, ours: f64, baseline: Option<(&str, f64)>, adr: Option<f64>, goal: Option<f64>| Row {
        group,
        name: name.to_string(),
        unit,
        better,
        ours,
        baseline: baseline.map(|(n, v)| (n.to_string(), v)),
        adr,
        goal,
    };
    use Better::*;
    let floor = "floor: spinning threads";
    let remote = "Remote routing (two nodes over loopback; round trip API → echo on the other node → API, two hops)";
    let same_node = "same round trip, echo on the same node";
    let plain = "the same link, records in clear (same handshake)";
    let same_node_load = "same round trip at the same rate, echo on the same node";
    let mut cluster_rows = vec![
        row(remote, "round trip, idle (1,000 msg/s), p50", "µs", Lower, g("node_idle_p50"), Some((same_node, g("node_near_p50"))), Some(5_000.0), Some(200.0)),
        row(remote, "round trip, idle, p99", "µs", Lower, g("node_idle_p99"), Some((same_node, g("node_near_p99"))), Some(50_000.0), Some(2_000.0)),
        row(
            remote,
            "round trip, idle, p50 vs glommio TCP",
            "µs",
            Lower,
            g("node_idle_p50"),
            Some(("8-byte ping-pong, 2 parked glommio executors", g("gtcp_p50"))),
            Some(5_000.0),
            Some(200.0),
        ),
        row(
            remote,
            "round trip, idle, p99 vs glommio TCP",
            "µs",
            Lower,
            g("node_idle_p99"),
            Some(("8-byte ping-pong, 2 parked glommio executors", g("gtcp_p99"))),
            Some(50_000.0),
            Some(2_000.0),
        ),
        row(
            remote,
            "round trip, idle, p50 vs blocking TCP",
            "µs",
            Lower,
            g("node_idle_p50"),
            Some(("8-byte ping-pong, 2 blocking threads", g("tcp_p50"))),
            Some(5_000.0),
            Some(200.0),
        ),
        row(
            remote,
            "round trip at 20,000 msg/s, p50",
            "µs",
            Lower,
            g("node_load_p50"),
            Some((same_node_load, g("node_near_load_p50"))),
            Some(5_000.0),
            Some(200.0),
        ),
        row(
            remote,
            "round trip at 20,000 msg/s, p99",
            "µs",
            Lower,
            g("node_load_p99"),
            Some((same_node_load, g("node_near_load_p99"))),
            Some(50_000.0),
            Some(2_000.0),
        ),
        row(remote, "replies carried during the two rows above", "msg/s", Higher, g("node_load_rate"), None, None, None),
        row(
            remote,
            "REST round trip, 2 single-core nodes, one pinned to each core, p50",
            "µs",
            Lower,
            g("shared_remote_p50_2"),
            Some(("the same to an echo on the first node", g("shared_local_p50_2"))),
            None,
            None,
        ),
        row(
            remote,
            "REST round trip, 2 single-core nodes, one pinned to each core, p99",
            "µs",
            Lower,
            g("shared_remote_p99_2"),
            Some(("the same to an echo on the first node", g("shared_local_p99_2"))),
            None,
            None,
        ),
        row(
            remote,
            "REST round trip, 3 single-core nodes on the 2 cores (two share CPU 0), p50",
            "µs",
            Lower,
            g("shared_remote_p50_3"),
            Some(("the same to an echo on the first node", g("shared_local_p50_3"))),
            None,
            None,
        ),
        row(
            remote,
            "pipelined node to node, WebAssembly handlers",
            "msg/s",
            Higher,
            g("node_blast"),
            Some(("cross shard, one node", g("blast_remote"))),
            None,
            None,
        ),
        row(remote, "round trip, idle, p50, encrypted links", "µs", Lower, g("node_idle_p50"), Some((plain, g("node_plain_idle_p50"))), None, None),
        row(remote, "round trip, idle, p99, encrypted links", "µs", Lower, g("node_idle_p99"), Some((plain, g("node_plain_idle_p99"))), None, None),
        row(remote, "pipelined node to node, encrypted links", "msg/s", Higher, g("node_blast"), Some((plain, g("node_plain_blast"))), None, None),
        row(
            remote,
            "link records sealed and opened, one core, 64 KiB batches",
            "MB/s",
            Higher,
            g("records_sealed_mb_s"),
            Some(("the same bytes in clear records (copied in and out)", g("records_plain_mb_s"))),
            None,
            None,
        ),
    ];
    let conv = "Gossip convergence (simulated: foca, 200 ms interval, fanout 3, 1400-byte packets)";
    let piggyback = "no gossip rounds: updates ride on probes only";
    for &n in cluster_sizes(small) {
        let rounds = |ms: f64| ms / caxton_shards::limits::GOSSIP_INTERVAL_MS as f64;
        let (join, spread) = (g(key("join_ms", n)), g(key("spread_ms", n)));
        cluster_rows.extend([
            row(
                conv,
                &format!("{n} nodes: a join reaches every member ({:.0} rounds)", rounds(join)),
                "ms",
                Lower,
                join,
                Some((piggyback, g(key("pb_join_ms", n)))),
                Some(cluster::adr_convergence_ms(n)),
                None,
            ),
            row(
                conv,
                &format!("{n} nodes: a crash, declared down by all (detection + spread)"),
                "ms",
                Lower,
                g(key("fail_ms", n)),
                Some(("probe period + probe rtt + suspicion timeout", cluster::detection_bound_ms(n))),
                None,
                None,
            ),
            row(
                conv,
                &format!("{n} nodes: a crash, from first to last member declaring it ({:.0} rounds)", rounds(spread)),
                "ms",
                Lower,
                spread,
                Some((piggyback, g(key("pb_spread_ms", n)))),
                Some(cluster::adr_convergence_ms(n)),
                None,
            ),
            row(
                conv,
                &format!("{n} nodes: gossip bytes per node per second, sent + received, during the join and crash"),
                "B/s",
                Lower,
                g(key("churn_bytes_s", n)),
                Some(("steady cluster", g(key("gossip_bytes_s", n)))),
                Some(cluster::adr_bandwidth_bytes_s()),
                None,
            ),
        ]);
    }
    let mut all = vec![
        row(
            "Routing (send to start of handler, one way)",
            "same shard, idle (1,000 msg/s), p50",
            "µs",
            Lower,
            g("idle_local_p50"),
            Some((floor, g("floor_p50"))),
            Some(100.0),
            None,
        ),
        row(
            "Routing (send to start of handler, one way)",
            "same shard, idle, p99",
            "µs",
            Lower,
            g("idle_local_p99"),
            Some((floor, g("floor_p99"))),
            Some(1000.0),
            None,
        ),
        row(
            "Routing (send to start of handler, one way)",
            "cross shard, idle (1,000 msg/s), p50",
            "µs",
            Lower,
            g("idle_remote_p50"),
            Some(("glommio shared_channel", g("glommio_p50"))),
            Some(100.0),
            None,
        ),
        row(
            "Routing (send to start of handler, one way)",
            "cross shard, idle, p99",
            "µs",
            Lower,
            g("idle_remote_p99"),
            Some(("glommio shared_channel", g("glommio_p99"))),
            Some(1000.0),
            None,
        ),
        row(
            "Routing (send to start of handler, one way)",
            "same shard, at 100k msg/s handled (50k injected, each forwarded once), p50",
            "µs",
            Lower,
            g("load_local_p50"),
            Some((floor, g("floor_p50"))),
            Some(100.0),
            None,
        ),
        row(
            "Routing (send to start of handler, one way)",
            "same shard, at 100k msg/s handled, p99",
            "µs",
            Lower,
            g("load_local_p99"),
            Some((floor, g("floor_p99"))),
            Some(1000.0),
            None,
        ),
        row(
            "Routing (send to start of handler, one way)",
            "same shard, at 100k msg/s handled, p99.9",
            "µs",
            Lower,
            g("load_local_p999"),
            Some((floor, g("floor_p999"))),
            None,
            None,
        ),
        row(
            "Routing (send to start of handler, one way)",
            "cross shard, at 100k msg/s handled (50k injected, each forwarded once; half the forwards cross, 25k hops a second), p50",
            "µs",
            Lower,
            g("load_remote_p50"),
            Some((floor, g("floor_p50"))),
            Some(100.0),
            Some(2.0),
        ),
        row(
            "Routing (send to start of handler, one way)",
            "cross shard, at 100k msg/s handled, p50 vs actix",
            "µs",
            Lower,
            g("load_remote_p50"),
            Some(("actix, 2 arbiters, open loop at 50k msg/s", g("actix_load_p50"))),
            Some(100.0),
            Some(2.0),
        ),
        row(
            "Routing (send to start of handler, one way)",
            "cross shard, at 100k msg/s handled, p99",
            "µs",
            Lower,
            g("load_remote_p99"),
            Some((floor, g("floor_p99"))),
            Some(1000.0),
            Some(20.0),
        ),
        row(
            "Routing (send to start of handler, one way)",
            "cross shard, at 100k msg/s handled, p99 vs glommio",
            "µs",
            Lower,
            g("load_remote_p99"),
            Some(("glommio shared_channel, open loop at 50k msg/s, same spin budget", g("glommio_load_p99"))),
            Some(1000.0),
            Some(20.0),
        ),
        row(
            "Routing (send to start of handler, one way)",
            "cross shard, at 100k msg/s handled, p99.9",
            "µs",
            Lower,
            g("load_remote_p999"),
            Some((floor, g("floor_p999"))),
            None,
            None,
        ),
        row(
            "Routing (send to start of handler, one way)",
            "load carried during the two rows above",
            "msg/s",
            Higher,
            g("load_rate"),
            None,
            None,
            Some(100_000.0 * 0.95),
        ),
    ];
    all.extend(like_for_like_rows(m, small));
    all.extend(tool_rows(m, small));
    // Per stage: ns per message, beside all of a message's cost (the ratio
    // is the stage's share).
    for (group, tag) in [("Per-stage cost, echo pairs on each shard (timed)", "local"), ("Per-stage cost, echo pairs across shards (timed)", "cross")] {
        let total = g(&format!("stage_{tag}_total_ns"));
        for (i, name) in stages::ROW_NAMES.iter().enumerate() {
            all.push(row(group, name, "ns/msg", Lower, g(&format!("stage_{tag}_ns_{i}")), Some(("all of a message", total)), None, None));
        }
        all.push(row(group, "all of a message: shards × wall time ÷ messages handled", "ns/msg", Lower, total, None, None, None));
        all.push(row(
            group,
            "messages handled a second, each stage timed",
            "msg/s",
            Higher,
            g(&format!("stage_{tag}_timed_rate")),
            Some(("timing off (the throughput rows)", g(if tag == "local" { "echo_wat_rate" } else { "echo_cross_rate" }))),
            None,
            None,
        ));
    }
    let startup = "Agent startup";
    let sdk_ready = "the same for the hand-written WAT echo (500 bytes)";
    all.extend([
        row(
            startup,
            "deploy-to-ready, Rust SDK echo (25 KB), bytes never seen: PUT, compile, first message answered, p50",
            "ms",
            Lower,
            g("sdk_ready_p50_ms"),
            Some((sdk_ready, g("ready_p50_ms"))),
            Some(10.0),
            Some(10.0),
        ),
        row(
            startup,
            "deploy-to-ready, Rust SDK echo, bytes never seen, p99",
            "ms",
            Lower,
            g("sdk_ready_p99_ms"),
            Some((sdk_ready, g("ready_p99_ms"))),
            Some(100.0),
            None,
        ),
        row(
            startup,
            "deploy-to-ready, Rust SDK echo, bytes this node has compiled (another name), p50",
            "ms",
            Lower,
            g("sdk_known_p50_ms"),
            Some(("bytes never seen", g("sdk_ready_p50_ms"))),
            Some(10.0),
            Some(1.0),
        ),
        row(
            startup,
            &format!("restart to serving, {} Rust SDK echoes, each its own bytes, module cache on", sdk_restart_agents(small)),
            "s",
            Lower,
            g("restart_sdk_cached_s"),
            Some(("--module-cache off: every module compiled", g("restart_sdk_uncached_s"))),
            None,
            None,
        ),
        row(
            "Agent startup",
            "deploy-to-ready: PUT of a new module, compile, first message answered, p50 (hand-written WAT echo, 500 bytes)",
            "ms",
            Lower,
            g("ready_p50_ms"),
            None,
            Some(10.0),
            None,
        ),
        row(
            "Agent startup",
            "deploy-to-ready: PUT of a new module, compile, first message answered, p99 (hand-written WAT echo)",
            "ms",
            Lower,
            g("ready_p99_ms"),
            None,
            Some(100.0),
            None,
        ),
        row(
            "Agent startup",
            "instantiate a precompiled module and run caxton_init, p50",
            "µs",
            Lower,
            g("startup_p50"),
            Some(("bare wasmer instance", g("bare_startup_p50"))),
            None,
            Some(30.0),
        ),
        row(
            "Agent startup",
            "instantiate a precompiled module and run caxton_init, p99",
            "µs",
            Lower,
            g("startup_p99"),
            Some(("bare wasmer instance", g("bare_startup_p99"))),
            None,
            Some(150.0),
        ),
        row(
            "Agent startup",
            "resident memory per agent, 10,000 agents, each having handled a message",
            "KiB",
            Lower,
            g("rss_per_agent_kib"),
            Some(("bare wasmer instance", g("bare_rss_per_agent_kib"))),
            None,
            Some(100.0),
        ),
        row(
            "Keyed agents",
            "activation of a passive key (dequeue of its first message to its handler's start: instance, caxton_init, its state's size), p50",
            "µs",
            Lower,
            g("keyed_activation_p50_us"),
            Some(("instantiate a precompiled module and run caxton_init", g("startup_p50"))),
            None,
            Some(20.0),
        ),
        row(
            "Keyed agents",
            "activation of a passive key, p99",
            "µs",
            Lower,
            g("keyed_activation_p99_us"),
            Some(("instantiate a precompiled module and run caxton_init", g("startup_p99"))),
            None,
            Some(200.0),
        ),
        row(
            "Keyed agents",
            "keys activated, written and passivated again a second, one shard (cap 1,000 live)",
            "keys/s",
            Higher,
            g("keyed_keys_per_s"),
            None,
            None,
            None,
        ),
        row(
            "Keyed agents",
            "resident memory per live activation (a keyed counter, each having handled a message)",
            "KiB",
            Lower,
            g("keyed_active_kib"),
            Some(("an agent instance of its own", g("rss_per_agent_kib"))),
            None,
            None,
        ),
        row(
            "Keyed agents",
            "resident memory per passive key with state (growth over the keys beyond the cap, SQLite's page cache filling included)",
            "bytes",
            Lower,
            g("keyed_passive_bytes"),
            None,
            None,
            None,
        ),
        row("Keyed agents", "disk per key with state (the shard's database and WAL)", "bytes", Lower, g("keyed_disk_bytes"), None, None, None),
        row(
            "Keyed agents",
            &format!("resident memory of a node with {} keys with state, 1,000 live (one shard)", if small { "20,000" } else { "1,000,000" }),
            "MiB",
            Lower,
            g("keyed_most_rss_mib"),
            None,
            None,
            None,
        ),
        row(
            "Agent startup",
            "resident memory per agent, each its own module (as deployed over the API), each having handled a message",
            "KiB",
            Lower,
            g("distinct_rss_per_agent_kib"),
            Some(("one module shared by all", g("rss_per_agent_kib"))),
            None,
            None,
        ),
        row(
            "Agent startup",
            &format!("restart to serving, {} agents, module cache on", restart_agents(small)),
            "s",
            Lower,
            g("restart_cached_s"),
            Some(("--module-cache off: every module compiled", g("restart_uncached_s"))),
            None,
            None,
        ),
        row("Message processing (dequeue to handler return)", "trivial handler, p50", "µs", Lower, g("proc_trivial_p50"), None, Some(1000.0), None),
        row("Message processing (dequeue to handler return)", "trivial handler, p99", "µs", Lower, g("proc_trivial_p99"), None, Some(10_000.0), None),
        row(
            "Message processing (dequeue to handler return)",
            "handler writing state, p50",
            "µs",
            Lower,
            g("proc_write_p50"),
            Some(("trivial handler", g("proc_trivial_p50"))),
            Some(1000.0),
            None,
        ),
        row(
            "Message processing (dequeue to handler return)",
            "handler writing state, p99",
            "µs",
            Lower,
            g("proc_write_p99"),
            Some(("trivial handler", g("proc_trivial_p99"))),
            Some(10_000.0),
            None,
        ),
        row(
            "Message processing (dequeue to handler return)",
            "handler sending a reply, p50",
            "µs",
            Lower,
            g("proc_reply_p50"),
            Some(("trivial handler", g("proc_trivial_p50"))),
            Some(1000.0),
            None,
        ),
        row(
            "Message processing (dequeue to handler return)",
            "handler sending a reply, p99",
            "µs",
            Lower,
            g("proc_reply_p99"),
            Some(("trivial handler", g("proc_trivial_p99"))),
            Some(10_000.0),
            None,
        ),
        row(
            "Message processing (dequeue to handler return)",
            "dispatch and call of a trivial handler, p50",
            "ns",
            Lower,
            g("dispatch_p50_ns"),
            Some(("plain function call", g("plain_call_ns"))),
            None,
            Some(1000.0),
        ),
        row(
            "Message processing (dequeue to handler return)",
            "dispatch and call of a trivial handler, bulk operations charged by length, p50",
            "ns",
            Lower,
            g("dispatch_p50_ns"),
            Some(("the same, bulk operations at a fixed cost", g("dispatch_unmetered_bulk_p50_ns"))),
            None,
            None,
        ),
        row(
            "Message processing (dequeue to handler return)",
            "memcpy-heavy handler (16 memory.copy of 1 KiB), bulk charged by length, p50",
            "ns",
            Lower,
            g("copier_p50_ns"),
            Some(("the same, bulk operations at a fixed cost", g("copier_unmetered_bulk_p50_ns"))),
            None,
            None,
        ),
        row(
            "Agents from the Rust SDK (examples/rust/echo beside benches/agents/echo.wat)",
            "echo, dispatch and call (dequeue to handler return), p50",
            "ns",
            Lower,
            g("echo_sdk_proc_p50_ns"),
            Some(("hand-written WAT echo", g("echo_wat_proc_p50_ns"))),
            None,
            Some(1.5 * g("echo_wat_proc_p50_ns")),
        ),
        row(
            "Agents from the Rust SDK (examples/rust/echo beside benches/agents/echo.wat)",
            "echoes replying to each other, all shards",
            "msg/s",
            Higher,
            g("echo_sdk_rate"),
            Some(("hand-written WAT echo", g("echo_wat_rate"))),
            None,
            Some(g("echo_wat_rate") / 1.5),
        ),
        row(
            "Agents from the Rust SDK (examples/rust/echo beside benches/agents/echo.wat)",
            "module size",
            "bytes",
            Lower,
            g("echo_sdk_bytes"),
            Some(("hand-written WAT echo", g("echo_wat_bytes"))),
            None,
            None,
        ),
        row(
            "Agents from the Rust SDK (examples/rust/echo beside benches/agents/echo.wat)",
            "compile at deploy (cranelift, metering), p50",
            "ms",
            Lower,
            g("echo_sdk_compile_ms"),
            Some(("hand-written WAT echo", g("echo_wat_compile_ms"))),
            None,
            None,
        ),
        row(
            "SQLite per shard",
            "state writes, 1000 per transaction",
            "rows/s",
            Higher,
            g("batch_rows_per_s"),
            Some(("naive: autocommit, default journal (rollback, synchronous=FULL: durable against a power loss, ours is not)", g("naive_rows_per_s"))),
            None,
            None,
        ),
        row(
            "SQLite per shard",
            "state writes, 1000 per transaction, at equal durability",
            "rows/s",
            Higher,
            g("batch_rows_per_s"),
            Some(("autocommit, WAL, synchronous=NORMAL: what batching alone buys", g("naive_equal_rows_per_s"))),
            None,
            None,
        ),
        row("SQLite per shard", "batch of 1000 writes, write and commit, p50", "ms", Lower, g("batch_p50_ms"), None, None, None),
        row(
            "SQLite per shard",
            "one state write, durable against a killed process (synchronous=NORMAL, the default), p50",
            "µs",
            Lower,
            g("write_p50"),
            None,
            Some(1000.0),
            None,
        ),
        row(
            "SQLite per shard",
            "one state write, durable against a killed process (synchronous=NORMAL), p99",
            "µs",
            Lower,
            g("write_p99"),
            None,
            Some(10_000.0),
            None,
        ),
        row(
            "SQLite per shard",
            "one state write, durable against a power loss (--sqlite-synchronous full), p50",
            "µs",
            Lower,
            g("write_full_p50"),
            Some(("synchronous=NORMAL", g("write_p50"))),
            Some(1000.0),
            None,
        ),
        row(
            "SQLite per shard",
            "one state write, durable against a power loss (--sqlite-synchronous full), p99",
            "µs",
            Lower,
            g("write_full_p99"),
            Some(("synchronous=NORMAL", g("write_p99"))),
            Some(10_000.0),
            None,
        ),
        row(
            "SQLite per shard",
            "tick p99 beside the checkpointer (PASSIVE, every 20 ms)",
            "µs",
            Lower,
            g("tick_ckpt_p99"),
            Some(("no checkpoints", g("tick_plain_p99"))),
            None,
            None,
        ),
        row(
            "SQLite per shard",
            "tick p99, rejected: autocheckpoint on the shard",
            "µs",
            Lower,
            g("tick_auto_p99"),
            Some(("no checkpoints", g("tick_plain_p99"))),
            None,
            None,
        ),
        row(
            "SQLite per shard",
            "point lookup, p50",
            "µs",
            Lower,
            g("lookup_p50"),
            Some(("statement prepared each time", g("naive_lookup_p50"))),
            Some(100.0),
            None,
        ),
        row(
            "SQLite per shard",
            "point lookup, p99",
            "µs",
            Lower,
            g("lookup_p99"),
            Some(("statement prepared each time", g("naive_lookup_p99"))),
            Some(1000.0),
            None,
        ),
    ]);
    cluster_rows.extend([
        Row {
            group: "Cluster capacity (simulated: 10 nodes, production gossip settings, virtual time)",
            name: format!("every node deploys {} agents at once: until every node routes every name", if small { "1,000" } else { "10,000" }),
            unit: "ms",
            better: Lower,
            ours: g("registry_10_ms"),
            baseline: Some(("gossip interval".into(), caxton_shards::limits::GOSSIP_INTERVAL_MS as f64)),
            adr: None,
            goal: None,
        },
        Row {
            group: "Cluster capacity (simulated: 10 nodes, production gossip settings, virtual time)",
            name: "gossip bytes per node (sent and received) for those routes".into(),
            unit: "bytes",
            better: Lower,
            ours: g("registry_10_bytes"),
            baseline: Some(("ADR-0017's gossip bound for one second".into(), cluster::adr_bandwidth_bytes_s())),
            adr: None,
            goal: None,
        },
    ]);
    all.append(&mut cluster_rows);
    all
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({ "cpus": caxton_shards::executor::allowed_cpus().len(), "cpu": cpu, "kernel": kernel, "memory_bytes": std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| s.lines().next()?.split_whitespace().nth(1)?.parse::<u64>().ok()).map(|k| k * 1024), "date": date })
}

/// Agents of the restart row.
fn restart_agents(small: bool) -> usize {
    if small {
        50
    } else {
        10_000
    }
}

/// Rust SDK agents of the SDK restart row: each is compiled on its own
/// (about 55 ms of one core with cranelift; a restart compiles them one per
/// CPU at a time), so 10,000 would take the uncached restart some minutes,
/// past what the harness waits for a node to answer.
fn sdk_restart_agents(small: bool) -> usize {
    if small {
        20
    } else {
        300
    }
}

/// Runs of each side in the alternating comparisons.
fn alternating_runs(small: bool) -> usize {
    if small {
        1
    } else {
        5
    }
}

/// Agents of the many-agents row (its baseline: `scale::FEW`).
fn scale_agents(small: bool) -> usize {
    if small {
        1_000
    } else {
        10_000
    }
}

/// The throughput rows, each beside an actix peer of the same shape, and
/// the cost of many agents beside few.
fn like_for_like_rows(m: &BTreeMap<&'static str, f64>, small: bool) -> Vec<Row> {
    let runs = alternating_runs(small);
    let g = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no figure {k}"));
    let group: &'static str = format!("Throughput, like for like: caxton beside an actix peer of the same shape, on the same pinned cores (one arbiter per core), each handled message counted on both sides; medians of {runs} alternating runs").leak();
    let shapes = [
        ("echo_same", "echo pairs on each core, 64 messages in flight a pair, 64-byte content; WAT echo (through caxton_alloc)", "echo pairs on each arbiter"),
        ("echo_cross", "echo pairs across cores: the two of a pair on different cores, every message crosses", "echo pairs across arbiters"),
        (
            "flood_same",
            "a blaster flooding a counting sink on its core (WAT agents with a fixed inbox; refused sends retried, not counted)",
            "a blaster try_send-ing into a sink with a 1,024-message mailbox on its arbiter",
        ),
        ("flood_cross", "a blaster flooding the sink on the other core", "the same, the sink on the other arbiter"),
        ("echo_sdk_same", "echo pairs on each core, the Rust SDK's echo (no fixed inbox)", "echo pairs on each arbiter"),
        (
            "echo_4k_same",
            "echo pairs on each core, 4 KiB of content a message (past the 512-byte buffer pool: from the heap)",
            "echo pairs on each arbiter, 4 KiB messages",
        ),
    ];
    let mut rows: Vec<Row> = shapes
        .iter()
        .map(|(key, ours, peer)| {
            let label = format!(
                "actix, {peer}, each message a new Vec from glibc malloc (caxton: its per-thread pool); ratio run by run {:.2}× to {:.2}×",
                g(&format!("l4l_{key}_rmin")),
                g(&format!("l4l_{key}_rmax"))
            );
            Row {
                group,
                name: ours.to_string(),
                unit: "msg/s",
                better: Better::Higher,
                ours: g(&format!("l4l_{key}_ours")),
                baseline: Some((label, g(&format!("l4l_{key}_peer")))),
                adr: Some(100_000.0),
                goal: Some(g(&format!("l4l_{key}_peer"))),
            }
        })
        .collect();
    rows.push(Row {
        group: format!("Many agents on one shard (medians of {runs} alternating runs)").leak(),
        name: format!("handler calls a second, one saturated shard, each message to the next of {} agents (WAT sink, fixed inbox)", scale_agents(small)),
        unit: "calls/s",
        better: Better::Higher,
        ours: g("scale_many"),
        baseline: Some((
            format!("the same to the first {} of them; ratio run by run {:.2}× to {:.2}×", caxton_benches::scale::FEW, g("scale_rmin"), g("scale_rmax")),
            g("scale_few"),
        )),
        adr: None,
        goal: Some(g("scale_few")),
    });
    rows
}

/// The cost of a tool call (issue 28), beside a direct rmcp client calling
/// the same MCP server program in the same alternating runs; none when
/// tests/tools/.venv is missing (scripts/setup.sh makes it).
fn tool_rows(m: &BTreeMap<&'static str, f64>, small: bool) -> Vec<Row> {
    let Some(&node_p50) = m.get("tool_node_p50") else { return Vec::new() };
    let g = |k: &str| *m.get(k).unwrap_or_else(|| panic!("figure {k} missing"));
    let group: &'static str = format!(
        "Tool calls: an agent's MCP call through the node, beside a direct rmcp client (Python `mcp` server on stdio, tool `add`; medians of {} alternating runs)",
        alternating_runs(small)
    )
    .leak();
    let direct = |what: &str, lo: &str, hi: &str| format!("{what}; ratio run by run {:.2}× to {:.2}×", g(lo), g(hi));
    let row = |name: String, unit, better, ours, baseline, goal| Row { group, name, unit, better, ours, baseline: Some(baseline), adr: None, goal };
    vec![
        row(
            "round trip, the agent's send to the start of the handler with the answer, one call at a time, p50".into(),
            "µs",
            Better::Lower,
            node_p50,
            (direct("the rmcp client's call_tool, the same calls", "tool_p50_rmin", "tool_p50_rmax"), g("tool_direct_p50")),
            Some(1.5 * g("tool_direct_p50")),
        ),
        row("the same, p99".into(), "µs", Better::Lower, g("tool_node_p99"), ("the rmcp client, p99".into(), g("tool_direct_p99")), None),
        row("the same, mean".into(), "µs", Better::Lower, g("tool_node_mean"), ("the rmcp client, mean".into(), g("tool_direct_mean")), None),
        row(
            "the same, mean, beside the same calls' time in the node's own tools runtime (rmcp, the server, the `_meta` the node adds), so that the server's run-to-run variance is on both sides".into(),
            "µs",
            Better::Lower,
            g("tool_node_mean"),
            (direct("the same calls in the tools runtime, mean", "tool_mean_rmin", "tool_mean_rmax"), g("tool_runtime_mean")),
            Some(1.5 * g("tool_runtime_mean")),
        ),
        row(
            "what the node adds to a call, mean: the round trip less its time in the tools runtime (the call's row and commit, the hops to the tools thread and back, the answer's delivery)".into(),
            "µs",
            Better::Lower,
            g("tool_path_mean"),
            ("a direct client's call, mean".into(), g("tool_direct_mean")),
            None,
        ),
        row(
            format!(
                "calls a second, {} in flight ({} keys of a keyed agent × {}, each key within its bounds)",
                caxton_benches::tools::RATE_KEYS * caxton_benches::tools::RATE_CONCURRENCY_PER_KEY as usize,
                caxton_benches::tools::RATE_KEYS,
                caxton_benches::tools::RATE_CONCURRENCY_PER_KEY
            ),
            "calls/s",
            Better::Higher,
            g("tool_node_rate"),
            (direct("the rmcp client, as many in flight over one connection", "tool_rate_rmin", "tool_rate_rmax"), g("tool_direct_rate")),
            None,
        ),
    ]
}

/// `caxton-bench --keyed-probe KEYS ACTIVE` in a child process (its
/// resident memory its own): the figures as JSON.
fn keyed_probe(keys: usize, active: usize) -> serde_json::Value {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--keyed-probe", &keys.to_string(), &active.to_string()])
        .output()
        .expect("run the keyed probe");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the probe's JSON")
}

fn rss_probe(kind: &str, count: usize) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap()).args(["--rss-probe", kind, &count.to_string()]).output().expect("run the rss probe");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--routing") {
        // `caxton-bench --routing RATE SECS`: the routing rows alone at RATE
        // injected messages a second (each forwarded once).
        let node = caxton_benches::node::BenchNode::start(2);
        let cast = routing::deploy(&node);
        let run = routing::forwarded(&node, &cast, args[2].parse().unwrap(), Duration::from_secs(args[3].parse().unwrap()));
        let q = |l: &caxton_shards::metrics::Latency, x: f64| lat_us(l, x);
        println!(
            "local p50 {:.2} p99 {:.1} µs; cross p50 {:.2} p99 {:.1} µs",
            q(&run.local, 0.5),
            q(&run.local, 0.99),
            q(&run.remote, 0.5),
            q(&run.remote, 0.99)
        );
        return;
    }
    if args.get(1).map(String::as_str) == Some("--blast") {
        // `caxton-bench --blast local|cross SECS`: one throughput row alone
        // (for a profiler).
        let node = caxton_benches::node::BenchNode::start(2);
        let rate = routing::blast(&node, args[2] == "cross", Duration::from_secs(args[3].parse().unwrap()));
        println!("{rate:.0} msg/s");
        return;
    }
    if args.get(1).map(String::as_str) == Some("--stages") {
        // `caxton-bench --stages local|cross SECS`: a per-stage table alone.
        let costs = stages::measure(args[2] == "cross", Duration::from_secs(args[3].parse().unwrap()));
        for (name, ns) in &costs.ns {
            println!("{ns:8.1} ns  {name}");
        }
        println!("{:8.1} ns  all of a message ({:.0} msg/s timed)", costs.total_ns, costs.timed_rate);
        return;
    }
    if args.get(1).map(String::as_str) == Some("--echo") {
        // `caxton-bench --echo local|cross SECS`: pipelined echo pairs alone.
        let node = caxton_benches::node::BenchNode::start(2);
        let run =
            agents::echo_pingpong(&node, "echo", &routing::agents_dir().join("echo.wat"), args[2] == "cross", Duration::from_secs(args[3].parse().unwrap()));
        println!("{:.0} msg/s", run.handled_per_s);
        return;
    }
    if args.get(1).map(String::as_str) == Some("--deploy") {
        // `caxton-bench --deploy COUNT`: the deploy-to-ready rows alone.
        let count = args.get(2).map_or(20, |c| c.parse().unwrap());
        let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e6;
        let wat = caxton_benches::lifecycle::deploy_to_ready(count);
        let (new, known) = caxton_benches::lifecycle::sdk_deploy_to_ready(count);
        println!("WAT echo, new bytes: p50 {:.2} ms, p99 {:.2} ms", ms(&wat, 0.5), ms(&wat, 0.99));
        println!("SDK echo, new bytes: p50 {:.2} ms, p99 {:.2} ms", ms(&new, 0.5), ms(&new, 0.99));
        println!("SDK echo, bytes compiled: p50 {:.2} ms, p99 {:.2} ms", ms(&known, 0.5), ms(&known, 0.99));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--scale") {
        // `caxton-bench --scale AGENTS SECS [AGENT.wat]`: the handler-call
        // rate of one saturated shard whose messages go to AGENTS agents in
        // turn (for a profiler: run it with 100 and with 10000).
        let node = caxton_benches::node::BenchNode::start(1);
        let module = caxton_benches::scale::module(args.get(4).map_or("sink.wat", String::as_str));
        let names = caxton_benches::scale::deploy(&node, &module, args[2].parse().unwrap());
        println!("{:.0} handler calls/s", caxton_benches::scale::rate(&node, &names, args[3].parse().unwrap()));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--actix-peer") {
        // `caxton-bench --actix-peer echo|echo-cross|flood|flood-cross SECS`:
        // one like-for-like actix peer alone, on the CPUs two shards use.
        use caxton_benches::actix_peers::{envelope_bytes, rate, Shape};
        let shape = match args[2].as_str() {
            "echo" => Shape::EchoSameCore,
            "echo-cross" => Shape::EchoAcrossCores,
            "flood" => Shape::FloodSameCore,
            _ => Shape::FloodAcrossCores,
        };
        let cpus: Vec<usize> = caxton_shards::executor::allowed_cpus().into_iter().take(2).collect();
        println!("{:.0} msg/s", rate(shape, &cpus, envelope_bytes(64), Duration::from_secs_f64(args[3].parse().unwrap())));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--registry") {
        // `caxton-bench --registry NODES AGENTS_PER_NODE`: the registry's
        // spread alone, simulated.
        let t = std::time::Instant::now();
        let spread = cluster::registry_spread(args[2].parse().unwrap(), args[3].parse().unwrap(), 1);
        println!("{spread:?} ({:.1} s of real time)", t.elapsed().as_secs_f64());
        return;
    }
    if args.get(1).map(String::as_str) == Some("--records") {
        let (sealed, plain) = cluster::record_throughput(1 << 30);
        println!("link records: sealed and opened {sealed:.0} MB/s, clear {plain:.0} MB/s");
        return;
    }
    if args.get(1).map(String::as_str) == Some("--actix") {
        // `caxton-bench --actix`: the pipelined baseline of the throughput rows alone.
        let (_, rate) = baselines::actix(500, 2_000_000);
        println!("{rate:.0} msg/s");
        return;
    }
    if args.get(1).map(String::as_str) == Some("--shared-cores") {
        // `caxton-bench --shared-cores NODES ROUNDS`: just those round trips
        // (CAXTON_BIN picks the caxton binary, to compare two builds).
        let (local, remote) = caxton_benches::shared_cores::round_trips(args[2].parse().unwrap(), args[3].parse().unwrap());
        println!("local p50 {:.0} µs p99 {:.0} µs; remote p50 {:.0} µs p99 {:.0} µs", us(&local, 0.5), us(&local, 0.99), us(&remote, 0.5), us(&remote, 0.99));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--keyed-probe") {
        // `caxton-bench --keyed-probe KEYS ACTIVE`: one JSON line.
        println!("{}", caxton_benches::keyed::probe(args[2].parse().unwrap(), args[3].parse().unwrap()).to_json());
        return;
    }
    if args.get(1).map(String::as_str) == Some("--tools") {
        // `caxton-bench --tools RUNS KEYS`: the tool-call rows alone.
        for run in caxton_benches::tools::compare(args[2].parse().unwrap(), args[3].parse().unwrap()).expect("tests/tools/.venv: run scripts/setup.sh") {
            println!("{run:?}");
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some("--rss-probe") {
        println!("{}", agents::resident_probe(&args[2], args[3].parse().unwrap()));
        return;
    }
    let began = std::time::Instant::now();
    let small = small();
    let runs = std::env::var("CAXTON_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(if small { 1 } else { 3 });
    let mut all: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for run in 0..runs {
        eprintln!("caxton-bench: run {} of {runs}{}", run + 1, if small { " (small)" } else { "" });
        for (k, v) in one_run(small, run) {
            all.entry(k).or_default().push(v);
        }
    }
    let mut medians: BTreeMap<&'static str, f64> = all.into_iter().map(|(k, v)| (k, median(v))).collect();
    // Once, not per run: it deploys 10,000 agents and restarts twice.
    eprintln!("caxton-bench: restart to serving");
    let (cached, uncached) = caxton_benches::lifecycle::restart_to_serving(restart_agents(small));
    medians.insert("restart_cached_s", cached);
    medians.insert("restart_uncached_s", uncached);
    eprintln!("caxton-bench: restart to serving, Rust SDK agents");
    let (cached, uncached) = caxton_benches::lifecycle::restart_sdk_to_serving(sdk_restart_agents(small));
    medians.insert("restart_sdk_cached_s", cached);
    medians.insert("restart_sdk_uncached_s", uncached);
    eprintln!("caxton-bench: like-for-like actix peers, {} alternating runs", alternating_runs(small));
    {
        let node = caxton_benches::node::BenchNode::start(2);
        let duration = Duration::from_millis(if small { 300 } else { 2_000 });
        for (shape, a) in caxton_benches::actix_peers::compare(&node, alternating_runs(small), duration) {
            for (what, v) in [("ours", a.ours), ("peer", a.peer), ("rmin", a.ratio_min), ("rmax", a.ratio_max)] {
                medians.insert(format!("l4l_{shape}_{what}").leak(), v);
            }
        }
    }
    eprintln!("caxton-bench: many agents on one shard");
    let scale = caxton_benches::scale::compare(scale_agents(small), alternating_runs(small), if small { 0.3 } else { 3.0 });
    for (what, v) in [("many", scale.ours), ("few", scale.peer), ("rmin", scale.ratio_min), ("rmax", scale.ratio_max)] {
        medians.insert(format!("scale_{what}").leak(), v);
    }
    eprintln!("caxton-bench: nodes sharing cores");
    for nodes in [2usize, 3] {
        let (local, remote) = caxton_benches::shared_cores::round_trips(nodes, if small { 50 } else { 500 });
        medians.insert(key("shared_local_p50", nodes), us(&local, 0.5));
        medians.insert(key("shared_remote_p50", nodes), us(&remote, 0.5));
        medians.insert(key("shared_local_p99", nodes), us(&local, 0.99));
        medians.insert(key("shared_remote_p99", nodes), us(&remote, 0.99));
    }
    eprintln!("caxton-bench: tool calls, {} alternating runs", alternating_runs(small));
    match caxton_benches::tools::compare(alternating_runs(small), if small { 1 } else { 4 }) {
        None => eprintln!("caxton-bench: tests/tools/.venv is missing (scripts/setup.sh makes it): no tool rows"),
        Some(runs) => {
            let pick = |f: fn(&caxton_benches::tools::ToolRun) -> f64| median(runs.iter().map(f).collect());
            let spread = |f: fn(&caxton_benches::tools::ToolRun) -> f64| {
                let ratios: Vec<f64> = runs.iter().map(f).collect();
                (ratios.iter().cloned().fold(f64::INFINITY, f64::min), ratios.iter().cloned().fold(0.0, f64::max))
            };
            medians.insert("tool_node_p50", pick(|r| r.node_p50_us));
            medians.insert("tool_node_p99", pick(|r| r.node_p99_us));
            medians.insert("tool_direct_p50", pick(|r| r.direct_p50_us));
            medians.insert("tool_direct_p99", pick(|r| r.direct_p99_us));
            medians.insert("tool_node_rate", pick(|r| r.node_calls_per_s));
            medians.insert("tool_node_mean", pick(|r| r.node_mean_us));
            medians.insert("tool_runtime_mean", pick(|r| r.node_runtime_mean_us));
            medians.insert("tool_direct_mean", pick(|r| r.direct_mean_us));
            medians.insert("tool_path_mean", pick(|r| r.node_mean_us - r.node_runtime_mean_us));
            let (lo, hi) = spread(|r| r.node_mean_us / r.node_runtime_mean_us);
            medians.insert("tool_mean_rmin", lo);
            medians.insert("tool_mean_rmax", hi);
            medians.insert("tool_direct_rate", pick(|r| r.direct_calls_per_s));
            let (lo, hi) = spread(|r| r.node_p50_us / r.direct_p50_us);
            medians.insert("tool_p50_rmin", lo);
            medians.insert("tool_p50_rmax", hi);
            let (lo, hi) = spread(|r| r.node_calls_per_s / r.direct_calls_per_s);
            medians.insert("tool_rate_rmin", lo);
            medians.insert("tool_rate_rmax", hi);
        }
    }
    eprintln!("caxton-bench: deploy to ready");
    let ready = caxton_benches::lifecycle::deploy_to_ready(if small { 5 } else { 50 });
    medians.insert("ready_p50_ms", ready.value_at_quantile(0.5) as f64 / 1e6);
    medians.insert("ready_p99_ms", ready.value_at_quantile(0.99) as f64 / 1e6);
    let (new, known) = caxton_benches::lifecycle::sdk_deploy_to_ready(if small { 3 } else { 20 });
    medians.insert("sdk_ready_p50_ms", new.value_at_quantile(0.5) as f64 / 1e6);
    medians.insert("sdk_ready_p99_ms", new.value_at_quantile(0.99) as f64 / 1e6);
    medians.insert("sdk_known_p50_ms", known.value_at_quantile(0.5) as f64 / 1e6);
    eprintln!("caxton-bench: host call prices");
    let prices = {
        let log = tempfile::NamedTempFile::new().unwrap();
        let writer = std::sync::Mutex::new(log.reopen().unwrap());
        let _log = tracing::subscriber::set_default(tracing_subscriber::fmt().json().with_writer(writer).finish());
        let node = caxton_benches::node::BenchNode::start(1);
        caxton_benches::host_prices::measure(&node, &routing::agents_dir().join("echo.wat"), if small { 1 } else { 5 })
    };
    let rows = rows(&medians, small);
    let machine = machine();
    let table = report::markdown(&rows);
    println!("{table}");
    let out = PathBuf::from(std::env::var("CAXTON_BENCH_OUT").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench").to_string()));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&report::json(&rows, &machine)).unwrap()).unwrap();
    std::fs::write(out.join("summary.md"), &table).unwrap();
    let failed: Vec<&Row> = rows.iter().filter(|r| r.adr_pass() == Some(false)).collect();
    if !small {
        let doc = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BENCHMARKS.md"));
        let minutes = began.elapsed().as_secs_f64() / 60.0;
        let text = crate_doc(&machine, runs, minutes, &table, &caxton_benches::host_prices::markdown(&prices));
        std::fs::write(doc, text).unwrap();
    }
    eprintln!("caxton-bench: wrote {}", out.join("summary.json").display());
    if !failed.is_empty() {
        for r in &failed {
            eprintln!("ADR-0017 target missed: {} {} = {:.2} {}", r.group, r.name, r.ours, r.unit);
        }
        if !small {
            std::process::exit(1);
        }
    }
}

fn crate_doc(machine: &serde_json::Value, runs: usize, minutes: f64, table: &str, prices: &str) -> String {
    let notes = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/NOTES.md")).unwrap_or_default();
    format!(
        "# Benchmarks\n\nWritten by `make bench` (the `caxton-bench` binary in `benches/`); do not edit the tables by hand. Most figures are the median of {runs} runs; the like-for-like and many-agents rows are medians of 5 alternating runs (ours, then the baseline, five times), with the ratio's smallest and largest run by run; the startup, restart and shared-cores rows come from one pass of many deploys or round trips, their quantiles over those. A baseline is measured in the same run on the same machine and the ratio is ours ÷ baseline; a row without one (—) stands against the ADR's target alone. Rows whose agents are hand-written WAT say whether those use the fixed inbox, which SDK agents do not have. ADR-0017's targets decide PASS/FAIL (and `make bench`'s exit code); our goals are the project's own, far stricter.\n\nMachine: {} CPUs ({}), {:.0} GiB, Linux {}, {}. Shared and noisy: read the ratios first.\n\nRerun: `make bench` (this run took {:.0} minutes); a seconds-long smoke version runs in `make test`.\n{table}\n## What each host call costs\n\nFor every host and WASI function, an agent calls it in a loop that never ends, with the arguments that make it work hardest, on a shard of its own; the call stops when its fuel is gone. If its price (docs/LIMITS.md) covers its work, that takes one execution slice (10 ms) of wall time, whatever the function: the last column is the wall time over the slice, the work done over the work paid for (median of 5 calls; `benches/src/host_prices.rs`, also `cargo run --release -p caxton-benches --bin fuel_calibration`). The goal is at most about 2; below 1 the call is charged more than it costs (a loop of them stops early).\n\n{prices}\n{notes}",
        machine["cpus"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64,
        machine["kernel"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("?"),
        minutes,
    )
}
