//! `caxton-loadtest` (`make loadtest`): runs ADR-0017's load scenarios and
//! exits non-zero if any criterion fails.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_loadtest::contract_net::{self, ContractNet};
use caxton_loadtest::doc::{self, RunRecord};
use caxton_loadtest::host_load;
use caxton_loadtest::node::{default_binary, Node};
use caxton_loadtest::report;
use caxton_loadtest::run::{self, Live};
use caxton_loadtest::scenario::{self, Scenario, Schedule, WorkloadKind};
use caxton_loadtest::workload::{Conversations, Hop, KeyedZipf, Workload, KEYED_TYPE};
use clap::Parser;

#[derive(Parser)]
#[command(about = "ADR-0017's load scenarios against a real caxton node")]
struct Args {
    /// Scenarios to run (default: ADR-0017's four, then contract_net).
    #[arg(long)]
    scenario: Vec<String>,
    /// The ADR's full durations (1 h, 15 min, 24 h) instead of the quick ones.
    #[arg(long)]
    full: bool,
    /// A few seconds per scenario with fewer agents: checks the machinery.
    /// Criteria are reported; only lost or duplicated messages fail it.
    #[arg(long, conflicts_with = "full")]
    smoke: bool,
    /// Scenario file.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios.yaml"))]
    scenarios: PathBuf,
    /// Shards of the node the load test starts (default: every core).
    #[arg(long)]
    cores: Option<usize>,
    /// The caxton binary to start.
    #[arg(long)]
    caxton: Option<PathBuf>,
    /// Use a running node instead: its REST API address...
    #[arg(long, requires = "target_wire")]
    target: Option<String>,
    /// ...and its wire listener address.
    #[arg(long)]
    target_wire: Option<String>,
    /// Where results go (one folder per scenario).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/loadtest"))]
    out: PathBuf,
    /// Runs of each scenario, each on a fresh node; the report gives every
    /// run and, per scenario, how many passed and the spread of their p99.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Where the report goes [default: docs/LOADTEST.md after a run of
    /// every scenario, quick or full; OUT/LOADTEST.md after a partial or a
    /// smoke run].
    #[arg(long)]
    doc: Option<PathBuf>,
}

fn progress(length: Duration, label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length.as_secs().max(1));
    bar.set_style(indicatif::ProgressStyle::with_template("{prefix:>15} [{elapsed_precise}] {bar:30} {msg}").unwrap());
    bar.set_prefix(label.to_string());
    bar
}

fn main() {
    // Every node the run starts is dropped (stopped) before the process exits.
    std::process::exit(match run_all(Args::parse()) {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("caxton-loadtest: a criterion failed (see above)");
            1
        }
        Err(e) => {
            eprintln!("caxton-loadtest: {e}");
            2
        }
    })
}

/// Deploys what scenario `s` sends to, and says what it sends.
fn deploy(node: &Node, s: &Scenario, agents: usize, schedule: &Schedule) -> Result<Arc<dyn Workload>, String> {
    match s.workload {
        WorkloadKind::Hop => {
            node.deploy(agents, s.agent.as_deref().unwrap_or("hop"))?;
            let two = s.nodes.unwrap_or(1) == 2;
            if two {
                node.wait_for_routes(agents)?;
            }
            Ok(Arc::new(Hop::new(agents, two)))
        }
        WorkloadKind::Conversations => {
            node.deploy(agents, s.agent.as_deref().unwrap_or("hold"))?;
            let hold = s.hold.ok_or("a conversations scenario needs `hold`")?;
            Ok(Arc::new(Conversations::new(agents, hold.as_millis() as u32, s.hold_every.unwrap_or(3))))
        }
        WorkloadKind::KeyedZipf => {
            node.deploy_keyed(KEYED_TYPE, s.agent.as_deref().unwrap_or("keyed_state"))?;
            Ok(Arc::new(KeyedZipf::new(s.keys.ok_or("a keyed_zipf scenario needs `keys`")?, s.zipf_s.unwrap_or(1.0))))
        }
        WorkloadKind::ContractNet => {
            let module = |name: &str| {
                let path = caxton_testkit::repo_path(&format!("target/agents/{name}.wasm"));
                std::fs::read(&path).map_err(|e| format!("{}: {e} (scripts/build-agents.sh builds it; make loadtest runs it)", path.display()))
            };
            let managers = s.managers.unwrap_or(1);
            let per_round = s.bidders_per_round.unwrap_or(10).min(agents);
            let deadline_ms = s.round_deadline.unwrap_or(Duration::from_secs(1)).as_millis() as u64;
            node.deploy_as(&(0..agents).map(contract_net::bidder_name).collect::<Vec<_>>(), &module("rust-bidder")?)?;
            node.deploy_as(&(0..managers).map(contract_net::manager_name).collect::<Vec<_>>(), &module("rust-manager")?)?;
            Ok(Arc::new(ContractNet::new(managers, agents, per_round, deadline_ms, schedule.clone())))
        }
    }
}

/// The scenarios a plain `make loadtest` runs, in order.
const ALL: [&str; 9] = [
    "steady_state",
    "peak_load",
    "sustained_load",
    "burst_traffic",
    "contract_net",
    "steady_state_stateful",
    "steady_state_two_nodes",
    "active_conversations",
    "keyed_zipf",
];

/// Runs the scenarios, each `--repeat` times, and writes the report;
/// `Ok(false)` when a criterion failed in any run.
fn run_all(args: Args) -> Result<bool, String> {
    let file = scenario::load(&args.scenarios)?;
    let names: Vec<String> = if args.scenario.is_empty() { ALL.iter().map(|s| s.to_string()).collect() } else { args.scenario.clone() };
    let mode = if args.full {
        "full"
    } else if args.smoke {
        "smoke"
    } else {
        "quick"
    };
    let repeat = args.repeat.max(1);
    let mut all_pass = true;
    let mut summaries = Vec::new();
    let mut records = Vec::new();
    for name in &names {
        let Some(s) = file.scenarios.get(name) else {
            return Err(format!("no scenario {name:?} in {} (have: {:?})", args.scenarios.display(), file.scenarios.keys().collect::<Vec<_>>()));
        };
        for run in 1..=repeat {
            if repeat > 1 {
                eprintln!("{name}: run {run} of {repeat}");
            }
            let (summary, load, pass) = run_one(&args, name, s, mode)?;
            all_pass &= pass;
            summaries.push(summary.clone());
            records.push(RunRecord { scenario: name.clone(), run, summary, load });
        }
    }
    let _ = std::fs::write(args.out.join("summary.json"), serde_json::to_string_pretty(&summaries).unwrap());
    let whole = names.iter().map(String::as_str).eq(ALL.iter().copied()) && mode != "smoke";
    let doc = args.doc.clone().unwrap_or_else(|| {
        if whole {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LOADTEST.md"))
        } else {
            args.out.join("LOADTEST.md")
        }
    });
    let notes = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/NOTES.md")).map_err(|e| format!("loadtest/NOTES.md: {e}"))?;
    doc::write(&doc, &notes, &records, &header(mode, repeat, &names), &args.out)?;
    eprintln!("caxton-loadtest: wrote {}", doc.display());
    Ok(all_pass)
}

/// Who made the report, when, on what (its first lines).
fn header(mode: &str, repeat: usize, names: &[String]) -> String {
    let commit = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("model name")?.split(':').nth(1).map(|s| s.trim().to_string())));
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "Written by `caxton-loadtest` from the runs it just made; do not edit it by hand (the prose above is `loadtest/NOTES.md`). {date}, commit {commit}{}, {} CPUs ({}), the generator on the same cores as the node. Mode {mode} (`make loadtest{}`), {repeat} run{} of each of {} scenario{}, each run on a fresh node.",
        if dirty { " with uncommitted changes" } else { "" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu.unwrap_or_else(|| "?".into()),
        if repeat > 1 { format!(" REPEAT={repeat}") } else { String::new() },
        if repeat == 1 { "" } else { "s" },
        names.len(),
        if names.len() == 1 { "" } else { "s" },
    )
}

/// One run of scenario `name` on a fresh node: its summary, the host's
/// load during it, and whether it passed.
fn run_one(args: &Args, name: &str, s: &Scenario, mode: &str) -> Result<(serde_json::Value, host_load::HostLoad, bool), String> {
    let file_smoke_agents = scenario::load(&args.scenarios)?.smoke_agents;
    let length = match mode {
        "full" => s.duration,
        "smoke" => s.smoke,
        _ => s.quick,
    };
    let agents = if args.smoke { s.agents.min(file_smoke_agents) } else { s.agents };
    let schedule = Schedule::of(s, length);
    let node = match &args.target {
        Some(api) => Node::target(api, args.target_wire.as_deref().unwrap()),
        None => {
            let limits: &[&str] = match s.workload {
                WorkloadKind::Hop | WorkloadKind::Conversations | WorkloadKind::KeyedZipf => &caxton_loadtest::node::NODE_LIMITS,
                WorkloadKind::ContractNet => &caxton_loadtest::node::CONTRACT_NET_LIMITS,
            };
            let binary = args.caxton.clone().unwrap_or_else(default_binary);
            match s.nodes.unwrap_or(1) {
                1 => Node::start(&binary, args.cores, limits)?,
                2 => Node::start_pair(&binary, limits)?,
                n => return Err(format!("{name}: nodes: {n}; the load test runs 1 or 2")),
            }
        }
    };
    eprintln!("{name}: deploying {agents} agents ...");
    let t = Instant::now();
    let workload = deploy(&node, s, agents, &schedule)?;
    eprintln!("{name}: deployed in {:.1} s; running {} s ({mode})", t.elapsed().as_secs_f64(), length.as_secs());
    let live = Arc::new(Live::default());
    let bar = progress(length, name);
    let ticker = {
        let (live, bar) = (live.clone(), bar.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut last = (Instant::now(), 0u64);
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let answered = live.answered.load(Ordering::Relaxed);
                let rate = (answered - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), answered);
                bar.set_position(started.elapsed().as_secs());
                bar.set_message(format!(
                    "{:>8.0} msg/s answered, running p99 {:.2} ms, sent {}",
                    rate,
                    live.p99_us.load(Ordering::Relaxed) as f64 / 1e3,
                    live.sent.load(Ordering::Relaxed)
                ));
                if bar.is_finished() {
                    break;
                }
            }
        })
    };
    let pids = node.pids();
    let before = host_load::snapshot(&pids);
    let outcome = run::run(&node, workload, &schedule, live);
    let after = host_load::snapshot(&pids);
    // A keyed scenario: what the node says its keys did.
    let keyed = (s.workload == WorkloadKind::KeyedZipf).then(|| node.keyed_figures(KEYED_TYPE)).flatten();
    bar.finish();
    let _ = ticker.join();
    let settings = format!("{agents} agents; caxton serve {}", node.settings);
    drop(node);
    let outcome = outcome.map_err(|e| format!("{name}: {e}"))?;
    let load = host_load::between(&before, &after, outcome.generator_cpu_s);
    let target_rate = s.messages_per_second.or(s.burst_mps).or(s.rounds_per_second).unwrap_or(0.0);
    let checks = report::checks(&outcome, &s.success_criteria, &schedule);
    let unit = if s.workload == WorkloadKind::ContractNet { "rounds" } else { "msg" };
    println!("{}", report::table(name, &outcome, target_rate, &checks, &settings, unit));
    println!(
        "host      node {:.2} cores, generator {:.2}, others {:.2}, steal {:.1}%, load average {:.2} ({} CPUs)",
        load.node_cores, load.generator_cores, load.others_cores, load.steal_percent, load.loadavg_1m, load.cores
    );
    let dir = args.out.join(name);
    let _ = std::fs::create_dir_all(&dir);
    let mut summary = report::summary(name, &outcome, target_rate, &checks, &settings, mode, s.agents);
    summary["host_load"] = serde_json::to_value(load).unwrap();
    if let Some(k) = keyed {
        let activations = k["activations"].as_u64().unwrap_or(0);
        let secs = length.as_secs_f64().max(1e-9);
        println!(
            "keys      {} activations ({:.0}/s), {} live at the end, {} with state; passivations {}",
            activations,
            activations as f64 / secs,
            k["active_keys"],
            k["keys_with_state"],
            k["passivations"]
        );
        summary["keyed"] = serde_json::json!({ "activations_per_s": activations as f64 / secs, "figures": k });
    }
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&summary).unwrap()).expect("write summary.json");
    if let Err(e) = report::hdr_log(&dir.join("latency.hlog"), &outcome) {
        eprintln!("caxton-loadtest: writing the HDR log: {e}");
    }
    if let Err(e) = report::plots(&dir, name, &outcome, s.success_criteria.p99_latency.or(s.success_criteria.recovered_p99)) {
        eprintln!("caxton-loadtest: drawing the plots: {e}");
    }
    let pass = if args.smoke { outcome.lost == 0 && outcome.duplicated == 0 } else { checks.iter().all(|c| c.pass) };
    Ok((summary, load, pass))
}
