//! The `caxton` command: `serve` runs a node; the other commands talk to one.

use caxton::logging::{self, LogFormat};
use caxton::{client, config, node, top};

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::json;

use client::{Client, Failure, EXIT_REFUSED, EXIT_USAGE};

const DEFAULT_API: &str = "127.0.0.1:7070";

#[derive(Parser)]
#[command(name = "caxton", version, about = "A thread-per-core, shard-nothing runtime for WebAssembly agents")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node: one pinned shard per core, and the REST API.
    Serve(Box<config::ServeArgs>),
    /// Deploy, list and stop agents.
    Agent {
        #[command(subcommand)]
        command: AgentCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// A live view of a running node, refreshed every second: per shard, or
    /// per agent with --agents.
    Top {
        /// Print this many refreshes and exit (default: run until interrupted).
        #[arg(long)]
        frames: Option<u64>,
        /// One row per agent (all its instances together) instead of per shard.
        #[arg(long)]
        agents: bool,
        /// The agents' order: most messages a second, most errors, or
        /// slowest processing p99 first.
        #[arg(long, value_enum, default_value = "messages")]
        sort: top::SortBy,
        /// Agents shown at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
    /// Copy a node's data while it runs, into a new folder a node can start
    /// from (with the same --cores): each SQLite file at one commit
    /// (docs/OPERATING.md, "Backup and restore").
    Backup {
        /// The node's --data-dir.
        #[arg(long, default_value = "caxton-data")]
        data_dir: PathBuf,
        /// A new (or empty) folder for the copy.
        #[arg(long)]
        to: PathBuf,
    },
    /// The cluster this node belongs to.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Send messages to agents.
    Message {
        #[command(subcommand)]
        command: MessageCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// The tools the node gives agents (the config file's [tools.NAME]).
    Tool {
        #[command(subcommand)]
        command: ToolCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Panics on a thread of its own, as a bug would (for the tests that
    /// show a panic ends the whole process).
    #[command(hide = true)]
    PanicOnAThread,
}

#[derive(clap::Args)]
struct Remote {
    /// Address of the node's REST API.
    #[arg(long, global = true, env = "CAXTON_API", default_value = DEFAULT_API)]
    api: String,
    /// Bearer token for the API (prefer --api-token-file or the
    /// environment: every local user can read a command line).
    #[arg(long, global = true, env = "CAXTON_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// A file holding the bearer token.
    #[arg(long, global = true)]
    api_token_file: Option<PathBuf>,
    /// Speak HTTPS to the node, trusting the CA certificate(s) in this PEM
    /// file (a private CA). `--api https://...` without it trusts the
    /// well-known public roots.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// human (tables and sentences) or json (the API's answer, one JSON
    /// document per line, for scripts).
    #[arg(long, global = true, value_enum, default_value = "human")]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Human,
    Json,
}

/// Prints the API's answer as one line of JSON.
fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

#[derive(Subcommand)]
enum ToolCmd {
    /// List the node's tools: kind, health, calls, and each MCP server's
    /// tools with their input schemas.
    List,
    /// The MCP client the node uses for its tools, as MCP's conformance
    /// suite runs it: initialize against the server at URL, list its tools
    /// and, unless MCP_CONFORMANCE_SCENARIO is `initialize`, call each.
    Conformance { url: String },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Deploy a WebAssembly module (binary .wasm or text .wat) as an agent,
    /// or a Rust agent crate (a folder with Cargo.toml), built first with
    /// `cargo build --release --target TARGET`.
    Deploy {
        file: PathBuf,
        /// The agent's name [default: the crate's, or the file's stem].
        #[arg(long)]
        name: Option<String>,
        /// The target a crate is built for: wasm32-unknown-unknown, or
        /// wasm32-wasip1 for the standard library's WASI parts.
        #[arg(long, default_value = "wasm32-unknown-unknown")]
        target: String,
        #[arg(long, default_value_t = 1, conflicts_with = "keyed")]
        instances: u32,
        /// Deploy a keyed agent: one activation per key, addressed as
        /// NAME/KEY, made on demand and passivated when idle (docs/AGENTS.md).
        #[arg(long)]
        keyed: bool,
        /// Cluster address of the node to deploy on [default: the node the request goes to].
        #[arg(long)]
        node: Option<String>,
        /// Tools the agent may call, by name (the node's [tools.NAME]);
        /// comma-separated [default: none].
        #[arg(long, value_delimiter = ',')]
        tools: Vec<String>,
    },
    /// List the keys of a keyed agent that hold state, in order.
    Keys {
        name: String,
        /// Only keys that start with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Keys at most (1 to 10,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete one key of a keyed agent: its state and timers; its
    /// activation, if live, is passivated.
    DeleteKey { name: String, key: String },
    /// Replace a running agent's module, keeping its state and queued
    /// messages: tried on every instance first, nothing changes if any
    /// refuses it. A crate folder is built first, as for deploy.
    Upgrade {
        name: String,
        file: PathBuf,
        #[arg(long, default_value = "wasm32-unknown-unknown")]
        target: String,
        /// A new grant of tools, comma-separated (`--tools ""` takes every
        /// tool away) [default: the grant stays].
        #[arg(long)]
        tools: Option<String>,
        /// Take a module that speaks another ABI version than the current
        /// one (refused otherwise: the agent's messages would reach code
        /// that reads them another way).
        #[arg(long)]
        force: bool,
    },
    /// Return an agent to its previous version.
    Rollback { name: String },
    /// Lift an agent's quarantine or backoff: its instances run again.
    Restart { name: String },
    /// List deployed agents: this node's, or with --cluster every agent of
    /// the cluster with the node it lives on (from this node's registry).
    List {
        /// Every node's agents, each with its node and the node's state.
        #[arg(long)]
        cluster: bool,
    },
    /// An agent's figures: version, restart policy, counts, and each
    /// instance's shard, standing and memory.
    Get { name: String },
    /// An agent's recent log lines (its `log` calls and WASI output), oldest
    /// first, from every shard of the node hosting it.
    Logs {
        name: String,
        /// Lines at most (the node keeps a bounded number; at most 1000).
        #[arg(long, default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines as they come (every half second), until
        /// interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Stop an agent and delete its state.
    Stop { name: String },
    /// Create a Rust agent crate on the SDK (an echo to start from).
    New {
        /// The agent's name, also the crate's: [a-z][a-z0-9_-]*.
        name: String,
        /// Where to create it [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK (the sdk/ folder of a caxton checkout) [default: $CAXTON_SDK, or the checkout caxton was built from].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// List the members and their state (alive, suspect, down).
    Members,
    /// Forget a member that is gone for good (down: a live one is refused):
    /// it is no longer listed, its alert stops, and the names of its agents
    /// route nowhere (a deploy elsewhere may take them). Done on every
    /// member this node lists as alive, and on this node, unless
    /// --here-only. A member down for --cluster-reap-after (24 h) is
    /// forgotten without asking.
    Forget {
        /// The member's cluster address, as `caxton cluster members` shows it.
        node: String,
        /// Forget it on the node --api names only.
        #[arg(long)]
        here_only: bool,
    },
    /// Force this node's cluster key rotation after a key leaked: send with
    /// the next key now, and drop the old one as soon as every member that
    /// holds the next key sends with it, without waiting for members that
    /// do not (docs/OPERATING.md, "A leaked cluster key"). Run it on every
    /// node.
    ForceKeyRotation,
}

#[derive(Subcommand)]
enum MessageCmd {
    /// Send a message; with --wait-reply, print the reply's content.
    Send {
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "request")]
        performative: String,
        #[arg(long)]
        content: String,
        #[arg(long)]
        conversation_id: Option<u64>,
        /// Wait this many milliseconds for the reply and print its content.
        #[arg(long)]
        wait_reply: Option<u64>,
    },
}

/// What an upgrade or a rollback changed in the module's surface.
fn print_module_changes(changes: &serde_json::Value) {
    let (from, to) = (&changes["abi_version"]["from"], &changes["abi_version"]["to"]);
    if from != to {
        println!("  ABI version {from} -> {to}");
    }
    for (key, sign, what) in
        [("exports_added", '+', "export"), ("exports_removed", '-', "export"), ("imports_added", '+', "import"), ("imports_removed", '-', "import")]
    {
        for name in changes[key].as_array().into_iter().flatten() {
            println!("  {sign} {what} {}", name.as_str().unwrap_or("?"));
        }
    }
}

/// `caxton tool conformance URL` (the suite names its scenario in the
/// environment).
fn run_conformance(url: &str) -> Result<(), Failure> {
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Failure { exit_code: EXIT_USAGE, message: e.to_string() })?;
    runtime.block_on(caxton::tools::conformance::run(url, &scenario)).map_err(|message| Failure { exit_code: EXIT_REFUSED, message })
}

/// `caxton tool list`.
fn run_tool_list(output: Output, client: Client) -> Result<(), Failure> {
    let v = client.get("/v1/tools")?;
    if output == Output::Json {
        print_json(&v);
        return Ok(());
    }
    let tools = v["tools"].as_array().cloned().unwrap_or_default();
    if tools.is_empty() {
        println!("no tools (the config file's [tools.NAME] sections give them)");
    }
    for t in tools {
        let health = if t["up"] == json!(true) { "up".to_string() } else { format!("DOWN: {}", t["error"].as_str().unwrap_or("?")) };
        let ok = t["calls"]["ok"].as_u64().unwrap_or(0);
        let all: u64 = t["calls"].as_object().map_or(0, |c| c.values().filter_map(|v| v.as_u64()).sum());
        println!("{} ({}): {health}; {all} calls, {ok} ok", t["name"].as_str().unwrap_or("?"), t["kind"].as_str().unwrap_or("?"));
        for inner in t["tools"].as_array().into_iter().flatten() {
            println!("  {}: {}", inner["name"].as_str().unwrap_or("?"), inner["description"].as_str().unwrap_or(""));
            println!("    input: {}", inner["inputSchema"]);
        }
    }
    Ok(())
}

fn main() {
    logging::abort_on_panic();
    let cli = Cli::parse();
    if !matches!(cli.command, Cmd::Serve(_)) {
        // A client command whose reader went away (`caxton agent get kv |
        // head -1`) ends quietly, as Unix tools do, instead of panicking on
        // the broken pipe. The node keeps ignoring SIGPIPE: its sockets
        // report a gone peer as an error.
        // SAFETY: signal(2) with SIG_DFL, before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let code = match cli.command {
        Cmd::Serve(args) => match (args.check_config, args.resolve()) {
            (_, Err(e)) => {
                eprintln!("caxton serve: {e}");
                EXIT_USAGE
            }
            (true, Ok((config, _))) => {
                println!("{}", caxton::config::summary(&config));
                0
            }
            (false, Ok((config, log_format))) => {
                logging::init(if log_format == "json" { LogFormat::Json } else { LogFormat::Human });
                for warning in caxton::secret::warnings_for_argv(&std::env::args().collect::<Vec<_>>()) {
                    tracing::warn!("{warning}");
                }
                match node::serve(config) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("caxton serve: {e}");
                        1
                    }
                }
            }
        },
        Cmd::Agent { command: AgentCmd::New { name, dir, sdk }, .. } => report(new_agent(&name, dir, sdk)),
        Cmd::Agent { command, remote } => report(client_of(&remote).and_then(|c| run_agent(command, remote.output, c))),
        Cmd::Top { frames, agents, sort, limit, remote } => {
            let view = top::View { agents, sort, limit, json: remote.output == Output::Json };
            report(client_of(&remote).and_then(|c| top::run(&c, frames, view)))
        }
        Cmd::Backup { data_dir, to } => report(run_backup(&data_dir, &to)),
        Cmd::Cluster { command: ClusterCmd::Members, remote } => report(client_of(&remote).and_then(|c| run_members(remote.output, c))),
        Cmd::Cluster { command: ClusterCmd::Forget { node, here_only }, remote } => {
            report(client_of(&remote).and_then(|c| run_forget(remote.output, c, &node, here_only)))
        }
        Cmd::Cluster { command: ClusterCmd::ForceKeyRotation, remote } => report(client_of(&remote).and_then(|c| {
            let v = c.force_key_rotation()?;
            match remote.output {
                Output::Json => print_json(&v),
                Output::Human => println!(
                    "forced: sending with key {}; the old key goes once every member holding it sends with it",
                    v["keys"]["sends"].as_str().unwrap_or("?")
                ),
            }
            Ok(())
        })),
        Cmd::Message { command, remote } => report(client_of(&remote).and_then(|c| run_message(command, remote.output, c))),
        Cmd::Tool { command: ToolCmd::Conformance { url }, .. } => report(run_conformance(&url)),
        Cmd::Tool { command: ToolCmd::List, remote } => report(client_of(&remote).and_then(|c| run_tool_list(remote.output, c))),
        Cmd::PanicOnAThread => {
            let _ = std::thread::spawn(|| panic!("a bug on a thread")).join();
            0 // not reached: the hook aborts
        }
    };
    std::process::exit(code);
}

/// The node's client, its token from one place (`caxton::secret` rule 1);
/// a token on the command line draws a warning (rule 2).
fn client_of(remote: &Remote) -> Result<Client, Failure> {
    for warning in caxton::secret::warnings_for_argv(&std::env::args().collect::<Vec<_>>()) {
        eprintln!("caxton: warning: {warning}");
    }
    let (token, warnings) = caxton::secret::pick(&caxton::secret::API_TOKEN, remote.api_token.clone(), remote.api_token_file.as_deref(), None)
        .map_err(|message| Failure { exit_code: EXIT_USAGE, message })?;
    for warning in warnings {
        eprintln!("caxton: warning: {warning}");
    }
    let tls = match &remote.ca {
        Some(ca) => Some(caxton::tls::client_config(ca).map_err(|message| Failure { exit_code: EXIT_USAGE, message })?),
        None => None,
    };
    Ok(Client::with_tls(&remote.api, token, tls))
}

fn report(result: Result<(), Failure>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("caxton: {}", f.message);
            f.exit_code
        }
    }
}

/// `caxton agent new`: writes the crate, says what to do next.
fn new_agent(name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> Result<(), Failure> {
    let usage = |message: String| Failure { exit_code: EXIT_USAGE, message };
    let sdk = caxton::template::find_sdk(sdk.as_deref()).map_err(usage)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    caxton::template::create(name, &dir, &sdk).map_err(usage)?;
    let lib = name.replace('-', "_");
    println!("created {} (the agent {name}, an echo to start from, on the SDK at {})", dir.display(), sdk.display());
    // The README's quick start, from here on.
    println!(
        "next:
  caxton agent deploy {dir}        # builds it for wasm32 and deploys it as {name}
  caxton message send --to {name} --content hi --wait-reply 1000    # prints: hi
and while you write it:
  cd {dir} && cargo test        # natively, against the SDK's mock node
  cargo wasm                    # target/wasm32-unknown-unknown/release/{lib}.wasm",
        dir = dir.display()
    );
    Ok(())
}

fn run_agent(command: AgentCmd, output: Output, client: Client) -> Result<(), Failure> {
    let json = output == Output::Json;
    match command {
        AgentCmd::Keys { name, prefix, limit } => {
            let v = client.keys(&name, &prefix, limit)?;
            if json {
                print_json(&v);
                return Ok(());
            }
            for key in v["keys"].as_array().into_iter().flatten() {
                println!("{}", key.as_str().unwrap_or("?"));
            }
        }
        AgentCmd::DeleteKey { name, key } => {
            let v = client.delete_key(&name, &key)?;
            if json {
                print_json(&v);
                return Ok(());
            }
            let had = if v["had_state"] == json!(true) { "its state and timers deleted" } else { "it had no state" };
            println!("deleted key {key:?} of {name}: {had}");
        }
        AgentCmd::Deploy { file, name, target, instances, keyed, node, tools } => {
            let instances = if keyed { 0 } else { instances };
            let usage = |message: String| Failure { exit_code: EXIT_USAGE, message };
            let (file, built_name) = if file.is_dir() { caxton::template::build_crate(&file, &target).map_err(usage)? } else { (file, None) };
            let name = name.or(built_name).or_else(|| file.file_stem().map(|s| s.to_string_lossy().replace('_', "-"))).unwrap_or_default();
            let module = std::fs::read(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            let v = client.deploy(&name, instances, node.as_deref(), &module, &tools)?;
            if json {
                print_json(&v);
                return Ok(());
            }
            if v["keyed"] == json!(true) {
                println!(
                    "deployed {} (keyed: one activation per key, as {0}/KEY) in {:.1} ms",
                    v["name"].as_str().unwrap_or(&name),
                    v["deploy_ms"].as_f64().unwrap_or(0.0)
                );
                return Ok(());
            }
            let instances = v["instances"].as_u64().unwrap_or(0);
            println!(
                "deployed {} ({instances} instance{} on shard{} {}) in {:.1} ms",
                v["name"].as_str().unwrap_or(&name),
                if instances == 1 { "" } else { "s" },
                if v["shards"].as_array().map_or(0, Vec::len) == 1 { "" } else { "s" },
                v["shards"],
                v["deploy_ms"].as_f64().unwrap_or(0.0)
            );
        }
        AgentCmd::List { cluster } => {
            let v = if cluster { client.list_cluster()? } else { client.list()? };
            if json {
                print_json(&v);
                return Ok(());
            }
            let agents = v["agents"].as_array().cloned().unwrap_or_default();
            // As wide as the longest name: a long one does not push its row out of line.
            let w = agents.iter().map(|a| a["name"].as_str().unwrap_or("?").chars().count()).max().unwrap_or(0).max("NAME".len());
            let instances = |a: &serde_json::Value| match (a["keyed"] == json!(true), a["remote"] == json!(true)) {
                (_, true) => "-".to_string(),
                (true, false) => "keyed".to_string(),
                (false, false) => a["instances"].to_string(),
            };
            if cluster {
                let nw = agents.iter().map(|a| a["node"].as_str().unwrap_or("-").len()).max().unwrap_or(0).max("NODE".len());
                println!("{:<w$} {:<nw$} {:<7} {:>9}", "NAME", "NODE", "STATE", "INSTANCES");
                for a in &agents {
                    let (node, state) = (a["node"].as_str().unwrap_or("-"), a["node_state"].as_str().unwrap_or("-"));
                    println!("{:<w$} {:<nw$} {:<7} {:>9}", a["name"].as_str().unwrap_or("?"), node, state, instances(a));
                }
                return Ok(());
            }
            println!("{:<w$} {:>9}  SHARDS", "NAME", "INSTANCES");
            for a in &agents {
                println!("{:<w$} {:>9}  {}", a["name"].as_str().unwrap_or("?"), instances(a), a["shards"]);
            }
        }
        AgentCmd::Get { name } => {
            let v = client.agent(&name)?;
            if json {
                print_json(&v);
                return Ok(());
            }
            println!(
                "{name}: version {}, {} instance(s){}; {} messages handled, {} errors, {} crashes, {} time-outs, {} bytes of state",
                v["version"],
                v["instances"],
                if v["quarantined"] == json!(true) { ", quarantined" } else { "" },
                v["messages_handled"],
                v["errors"],
                v["crashes"],
                v["timeouts"],
                v["state_bytes"]
            );
            if let Some(k) = v["keyed"].as_object() {
                println!(
                    "keyed: {} active keys, {} keys with state; {} activations, passivations {}",
                    k["active_keys"], k["keys_with_state"], k["activations"], k["passivations"]
                );
            }
            println!(
                "{:>8} {:>5} {:<12} {:>10} {:>7} {:>7} {:>8} {:>10}",
                "INSTANCE", "SHARD", "STANDING", "MESSAGES", "ERRORS", "CRASHES", "QUEUED", "MEMORY"
            );
            for i in v["instance_stats"].as_array().into_iter().flatten() {
                println!(
                    "{:>8} {:>5} {:<12} {:>10} {:>7} {:>7} {:>8} {:>10}",
                    i["instance"],
                    i["shard"],
                    i["standing"].as_str().unwrap_or("?"),
                    i["messages_handled"],
                    i["errors"],
                    i["crashes"],
                    i["queued"],
                    i["memory_bytes"]
                );
            }
        }
        AgentCmd::Logs { name, lines, follow } => {
            let mut since = None;
            loop {
                let v = client.agent_logs(&name, lines, since)?;
                let records = v["lines"].as_array().cloned().unwrap_or_default();
                if json {
                    if follow {
                        records.iter().for_each(|l| println!("{l}")); // one line a record
                    } else {
                        print_json(&v);
                    }
                } else {
                    for l in &records {
                        println!(
                            "{} {:<5} {name}[{}]@shard{} {}: {}",
                            client::utc_millis(l["time_ms"].as_u64().unwrap_or(0)),
                            l["level"].as_str().unwrap_or("?"),
                            l["instance"],
                            l["shard"],
                            l["source"].as_str().unwrap_or("?"),
                            l["text"].as_str().unwrap_or("")
                        );
                    }
                }
                if !follow {
                    break;
                }
                since = records.last().and_then(|l| l["time_us"].as_u64()).or(since);
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
        AgentCmd::Stop { name } => {
            let v = client.stop(&name)?;
            if json {
                print_json(&v);
                return Ok(());
            }
            println!("stopped {name}");
        }
        AgentCmd::Upgrade { name, file, target, tools, force } => {
            let usage = |message: String| Failure { exit_code: EXIT_USAGE, message };
            let (file, _) = if file.is_dir() { caxton::template::build_crate(&file, &target).map_err(usage)? } else { (file, None) };
            let module = std::fs::read(&file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            let v = client.upgrade(&name, &module, tools.as_deref(), force)?;
            if json {
                print_json(&v);
                return Ok(());
            }
            println!("upgraded {name} from version {} to version {} ({:.1} ms)", v["previous_version"], v["version"], v["total_ms"].as_f64().unwrap_or(0.0));
            print_module_changes(&v["changes"]);
        }
        AgentCmd::Rollback { name } => {
            let v = client.agent_action(&name, "rollback")?;
            if json {
                print_json(&v);
                return Ok(());
            }
            println!("rolled {name} back from version {} to version {}", v["previous_version"], v["version"]);
            print_module_changes(&v["changes"]);
        }
        AgentCmd::Restart { name } => {
            let v = client.agent_action(&name, "restart")?;
            if json {
                print_json(&v);
                return Ok(());
            }
            println!("restarted {name}: {} instance(s) lifted from quarantine or backoff", v["instances_lifted"]);
        }
        AgentCmd::New { .. } => unreachable!("handled without a node"),
    }
    Ok(())
}

fn run_backup(data_dir: &std::path::Path, to: &std::path::Path) -> Result<(), Failure> {
    let report = caxton::backup::backup(data_dir, to).map_err(|message| Failure { exit_code: EXIT_REFUSED, message })?;
    for (file, bytes) in &report.files {
        println!("{} ({bytes} bytes)", file.display());
    }
    if !report.pruned.is_empty() {
        println!("left out the state of {} agent(s) stopped while the backup ran", report.pruned.len());
    }
    println!("backed up {} agent(s) into {}: start a node with --data-dir {} (and the same --cores) to restore it", report.agents, to.display(), to.display());
    Ok(())
}

/// `caxton cluster forget`: on the node asked, then on every member it
/// lists as alive (or suspect), each with the same credentials. A member
/// that does not know the node (404) has nothing to forget; any other
/// refusal, or a member out of reach, fails the command once every member
/// was tried.
fn run_forget(output: Output, client: Client, node: &str, here_only: bool) -> Result<(), Failure> {
    let mut targets = vec![client.base().to_string()];
    let mut clients = vec![];
    if !here_only {
        let v = client.members()?;
        if v["clustered"] == json!(false) {
            return Err(Failure { exit_code: EXIT_REFUSED, message: "this node is not in a cluster".into() });
        }
        for m in v["members"].as_array().into_iter().flatten() {
            let active = matches!(m["state"].as_str(), Some("alive" | "suspect"));
            if m["self"] != json!(true) && active && m["node"].as_str() != Some(node) {
                let member = client.for_member(m["api"].as_str().unwrap_or("?"), m["api_tls"] == json!(true));
                targets.push(member.base().to_string());
                clients.push(member);
            }
        }
    }
    let mut failed = None;
    for (target, c) in targets.iter().zip(std::iter::once(&client).chain(clients.iter())) {
        match c.forget_member(node) {
            Ok(answer) if output == Output::Json => print_json(&json!({ "api": target, "answer": answer })),
            Ok(Some(v)) => {
                let agents = v["agents"].as_array().map_or(0, Vec::len);
                println!("{target}: forgot {node} ({agents} agent name{} routed there)", if agents == 1 { "" } else { "s" });
            }
            Ok(None) => println!("{target}: does not know {node}; nothing to forget"),
            Err(f) => {
                eprintln!("caxton: {target}: {}", f.message);
                failed = Some(f);
            }
        }
    }
    match failed {
        Some(f) => Err(Failure { exit_code: f.exit_code, message: format!("{node} was not forgotten everywhere (see above)") }),
        None => Ok(()),
    }
}

fn run_members(output: Output, client: Client) -> Result<(), Failure> {
    let v = client.members()?;
    if output == Output::Json {
        print_json(&v);
        return Ok(());
    }
    if v["clustered"] == json!(false) {
        println!("this node is not in a cluster (start it with --listen and --cluster-key)");
        return Ok(());
    }
    println!("{:<24} {:<32} {:<8} {:>6}", "NODE", "API", "STATE", "BOOT");
    for m in v["members"].as_array().into_iter().flatten() {
        let me = if m["self"] == json!(true) { "  (this node)" } else { "" };
        println!(
            "{:<24} {:<32} {:<8} {:>6}{me}",
            m["node"].as_str().unwrap_or("?"),
            format!("{}://{}", if m["api_tls"] == json!(true) { "https" } else { "http" }, m["api"].as_str().unwrap_or("?")),
            m["state"].as_str().unwrap_or("?"),
            m["boot"]
        );
    }
    let keys = &v["keys"];
    if keys["held"] == json!(2) {
        let step = if keys["sending_next"] == json!(true) { "sending with the next key" } else { "every member must hold the next key" };
        println!("cluster key rotation in progress: {step} (key {} and {})", keys["sends"].as_str().unwrap_or("?"), keys["holds"].as_str().unwrap_or("?"));
    }
    Ok(())
}

fn run_message(command: MessageCmd, output: Output, client: Client) -> Result<(), Failure> {
    match command {
        MessageCmd::Send { to, performative, content, conversation_id, wait_reply } => {
            let mut body = json!({ "receiver": to, "performative": performative, "content": content });
            if let Some(c) = conversation_id {
                body["conversation_id"] = json!(c);
            }
            let v = client.send(body, wait_reply)?;
            // A `failure` answers the request, from the node (its reason) or
            // from the agent itself: exit 1 either way, with who said it.
            if wait_reply.is_some() && v["performative"] == "failure" {
                let from = v["sender"].as_str().unwrap_or("?");
                let what = v["content"].as_str().or(v["content_b64"].as_str()).unwrap_or("?");
                return Err(Failure { exit_code: caxton::client::EXIT_REFUSED, message: format!("failure from {from}: {what}") });
            }
            if output == Output::Json {
                print_json(&v);
                return Ok(());
            }
            match wait_reply {
                Some(_) => match v["content"].as_str() {
                    Some(text) => println!("{text}"),
                    None => println!("{}", v["content_b64"].as_str().unwrap_or("")),
                },
                None => println!("{}", v["message_id"]),
            }
        }
    }
    Ok(())
}
