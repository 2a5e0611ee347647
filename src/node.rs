//! `caxton serve`: wires a node together.
//!
//! Order of start-up, each step failing with a clear message:
//! 1. check the API address (a non-loopback one needs a token) and bind it;
//! 2. open the catalog (pins the shard count of the data dir);
//! 3. start one pinned shard per core, each opening its own SQLite;
//! 4. start the checkpointer thread;
//! 5. in a cluster (`--listen`), start the gossip thread (shards already
//!    listen for links);
//! 6. restore the catalog's agents (and publish them to the registry); then
//!    serve the API until SIGINT/SIGTERM, when the node drains (control
//!    `drain`: no new work, the shards finish or fail back what they hold,
//!    commit and checkpoint), leaves the cluster and exits 0.

use std::sync::Arc;

use caxton_shards::executor::{self, allowed_cpus};
use caxton_shards::limits::API_REPLIES_MAX;
use caxton_shards::limits::SHARDS_MAX;
use caxton_shards::runtime_outbox::RuntimeOutbox;

use crate::admission::Admission;
use crate::config::ServeConfig;
use caxton_shards::storage::{shard_db_path, Checkpointer, DiskFloor};
use caxton_shards::ShardsConfig;

use crate::api::{self, Api};
use crate::catalog::{Catalog, RouteCache};
use crate::control::Control;
use crate::gossip::Cluster;
use caxton_shards::link::LinkSetup;

pub fn serve(config: ServeConfig) -> Result<(), String> {
    // Before anything is opened: a node that could not compile an agent
    // would abort at its first deploy or restore.
    caxton_shards::agent::engine::executable_memory_allowed()?;
    if !config.api.ip().is_loopback() && !config.api_tokens.required() {
        return Err(format!(
            "refusing to serve the API on non-loopback address {} without a token: set --api-token-file, CAXTON_API_TOKEN or the systemd credential api-token",
            config.api
        ));
    }
    // `tls` rule 3: a token must not cross the network in cleartext.
    if !config.api.ip().is_loopback() && config.tls.is_none() {
        return Err(format!(
            "refusing to serve the API on non-loopback address {} over plain HTTP: its bearer token would cross the network in cleartext; give --tls-cert and --tls-key",
            config.api
        ));
    }
    let tls = match &config.tls {
        Some((cert, key)) => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(cert, key)?)),
        None => None,
    };
    let forward_agent = match &config.tls_ca {
        Some(ca) => ureq::AgentBuilder::new().tls_config(crate::tls::client_config(ca)?).build(),
        None => ureq::Agent::new(),
    };
    let allowed = allowed_cpus();
    let cores = config.cores.unwrap_or(allowed.len());
    if cores == 0 || cores > allowed.len() || cores > SHARDS_MAX {
        return Err(format!("--cores {cores}: this process may run on {} cores ({allowed:?}); choose 1 to {}", allowed.len(), allowed.len().min(SHARDS_MAX)));
    }
    let cpus = allowed[..cores].to_vec();
    raise_open_files_limit(config.max_connections);
    // Agent state, modules and keys are the node's alone: what it creates
    // is 0600 (files) and 0700 (folders) whatever the umask it was started
    // with (systemd's UMask= aside, a shell's 022 would make them readable
    // by every local user; issue 29).
    // SAFETY: umask(2) has no preconditions; it only narrows what follows.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    if let Some(wire) = config.wire.filter(|w| !w.ip().is_loopback()) {
        if !config.api_tokens.required() {
            return Err(format!(
                "refusing to serve the wire listener on non-loopback address {wire} without a token: set --api-token-file or CAXTON_API_TOKEN"
            ));
        }
        if config.tls.is_none() {
            return Err(format!(
                "refusing to serve the wire listener on non-loopback address {wire} without TLS: its token would cross the network in cleartext; give --tls-cert and --tls-key"
            ));
        }
    }
    if let Some(metrics) = config.metrics_listen.filter(|m| !m.ip().is_loopback()) {
        if config.api_tokens.required() && config.tls.is_none() {
            return Err(format!(
                "refusing to serve metrics on non-loopback address {metrics} over plain HTTP: the scraper's token would cross the network in cleartext; give --tls-cert and --tls-key"
            ));
        }
    }
    let listener = std::net::TcpListener::bind(config.api).map_err(|e| format!("cannot bind the API to {}: {e}", config.api))?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(|e| format!("cannot bind the metrics listener to {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        }
        None => None,
    };
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let wire_listener = match config.wire {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(|e| format!("cannot bind the wire listener to {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        }
        None => None,
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let (catalog, boot_epoch) = Catalog::open(&config.data_dir, cores)?;
    let install_id = catalog.install_id().map_err(|e| format!("cannot read the catalog's install id: {e}"))?;
    let disk = DiskFloor::watch(&config.data_dir, config.disk_free_min).map_err(|e| format!("cannot start the disk watcher: {e}"))?;
    tracing::info!(
        memory_budget_bytes = config.memory_budget,
        charge_per_agent_bytes = config.memory.per_agent(),
        agents_that_fit = config.memory.max_agents_for_memory(config.memory_budget).min(config.max_agents),
        max_agents = config.max_agents,
        "admission control"
    );

    // Trace spans: a bounded queue per shard and one for the tools runtime,
    // read by the exporter thread.
    let node_name = config.cluster.as_ref().map_or(config.api.to_string(), |c| c.listen.to_string());
    let (mut span_outputs, mut trace_export) = match &config.traces {
        None => (None, None),
        Some(t) => {
            let (outputs, queues): (Vec<_>, Vec<_>) = (0..cores + 1)
                .map(|_| {
                    let (tx, rx) = crossbeam_channel::bounded(caxton_shards::trace::TRACE_SPANS_QUEUED_MAX);
                    (caxton_shards::trace::SpanOutput::new(t.sampling_ratio, tx), rx)
                })
                .unzip();
            (Some(outputs), Some(crate::otlp::TraceExport::start(t, &node_name, queues)?))
        }
    };
    let tool_spans = span_outputs.as_mut().and_then(Vec::pop);
    let (replies_tx, replies_rx) = tokio::sync::mpsc::channel(API_REPLIES_MAX);
    let sink = RuntimeOutbox::new(config.budget.runtime_outbox as usize, Box::new(move |m| replies_tx.try_send(m).map_err(|e| e.into_inner())));
    let shards = executor::start(
        ShardsConfig {
            cpus: cpus.clone(),
            data_dir: config.data_dir.clone(),
            storage: config.storage.clone(),
            boot_epoch,
            tuning: config.tuning,
            link: config.cluster.as_ref().map(|c| LinkSetup::for_shard(c.listen, c.keys.clone(), cores, c.links)),
            disk: disk.clone(),
            spans: span_outputs,
            restoring: true,
        },
        sink.clone(),
    )?;
    let paths = (0..cores).map(|i| shard_db_path(&config.data_dir, i)).collect();
    Checkpointer::spawn(paths, config.storage.clone()).map_err(|e| format!("cannot start the checkpointer: {e}"))?;

    let cluster = match config.cluster.clone() {
        Some(c) => {
            let cache = RouteCache::open(&config.data_dir)?;
            let senders = shards.iter().map(|s| s.sender()).collect();
            let (listen, seeds) = (c.listen, c.join.clone());
            let cluster = Cluster::start(c, config.api, config.tls.is_some(), boot_epoch, cache, senders)?;
            tracing::info!(%listen, ?seeds, "cluster: gossip and links listening");
            Some(cluster)
        }
        None => None,
    };
    let control = Arc::new(
        Control::new(
            shards.iter().map(|s| s.sender()).collect(),
            shards,
            sink,
            config.budget,
            config.limits,
            Admission::new(config.memory, config.memory_budget, config.max_agents),
            catalog,
            boot_epoch,
            cluster,
        )
        .with_timeout(config.control_timeout)
        .with_metrics_instances_max(config.metrics_instances_max)
        .with_disk(disk)
        .with_shard_dbs((0..cores).map(|i| shard_db_path(&config.data_dir, i)).collect())
        .with_trace_counters(trace_export.as_ref().map(|t| t.counters.clone()))
        .with_forward_agent(forward_agent)
        .with_module_cache(crate::module_cache::ModuleCache::new(config.module_cache.then(|| config.data_dir.join("modules")), config.module_cache_max)?),
    );
    // The tools runtime (its own thread): before the restore, so that calls
    // made again after a crash find it (`shard::tool_calls` rule 2).
    let tools = crate::tools::Tools::start(config.tools.clone(), install_id, control.clone(), tool_spans)?;
    let direct = tools.clone();
    control.outbox.route_tools(Box::new(move |call| direct.offer(call)));
    control.set_tools(tools);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start the API runtime: {e}"))?;
    // `sd_notify` rule 1: read before anything else can change it.
    let notifier = crate::sd_notify::Notifier::from_env();
    runtime.block_on(async move {
        tokio::spawn(control.clone().dispatch_replies(replies_rx));
        // The API answers from the start, while the agents are restored:
        // its probes say so (`GET /v1/ready` 503 "starting", `/v1/health`
        // 200), everything else answers 503 `starting` until then.
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let api = Arc::new(Api::new(control.clone(), config.api_tokens.clone(), config.api, &config.listeners, config.max_connections));
        let server = tokio::spawn(api::serve(api, listener, tls.clone()));
        let restored = control.restore().await?;
        tracing::info!(api = %config.api, cores, ?cpus, data_dir = %config.data_dir.display(), restored_agents = restored, "caxton node serving");
        if let Some(l) = wire_listener {
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
            tracing::info!(wire = %l.local_addr().map_err(|e| e.to_string())?, "wire listener serving");
            let limits = crate::wire::WireLimits {
                hello_timeout: config.listeners.wire_hello_timeout,
                connections_max: config.listeners.wire_connections_max,
                ingress_bytes: config.budget.wire_ingress as usize,
            };
            tokio::spawn(crate::wire::serve(control.clone(), l, config.api_tokens.clone(), tls.clone(), limits));
        }
        if let (Some(l), Some(addr)) = (metrics_listener, config.metrics_listen) {
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
            let metrics =
                Api::new(control.clone(), config.api_tokens.clone(), addr, &config.listeners, config.max_connections).metrics_only(addr, &config.listeners);
            tracing::info!(metrics = %addr, "metrics listener serving");
            tokio::spawn(api::serve(Arc::new(metrics), l, tls.clone()));
        }
        let keys = control.cluster.as_ref().map(|c| c.keys.clone());
        // `sd_notify` rule 3: ready once restored and every listener serves.
        let serving = format!("serving {restored} restored agents on {cores} cores, API {}", config.api);
        notifier.ready(&serving);
        wait_for_signal(|| {
            notifier.reloading();
            reload_secrets(&config.secrets, &config.api_tokens, keys.as_ref());
            notifier.ready(&serving);
        })
        .await;
        // Control `drain`: refuse new work, finish what is held, fail back
        // the rest, commit and checkpoint; then leave the cluster.
        tracing::info!(drain_timeout_ms = config.drain_timeout.as_millis() as u64, "stopping: draining");
        notifier.stopping();
        control.begin_drain();
        let drained = control.drain(config.drain_timeout).await;
        // `held_left` is the shards' own estimate (messages, plus one for
        // each queue they could not look into); each shard's "failed back"
        // line and its final counts give the exact numbers.
        tracing::info!(finished = drained.quiet, held_left = drained.left, "stopping: shards fail back what they still hold, commit and stop");
        control.stop().await;
        control.replies_delivered().await;
        control.set_stopped();
        control.wires_closed().await;
        server.abort();
        if let Some(c) = &control.cluster {
            c.leave().await;
        }
        if let Some(t) = trace_export.as_mut() {
            t.stop(); // what the shards queued before they stopped goes out
        }
        tracing::info!("stopped");
        Ok::<(), String>(())
    })
}

/// Raises the open-files soft limit to the hard one: every API connection
/// is a file descriptor.
fn raise_open_files_limit(max_connections: usize) {
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    let soft = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    if (soft as usize) < max_connections + 256 {
        tracing::warn!(
            open_files_limit = soft,
            max_connections,
            "the open-files limit is below --max-connections; connections past it will fail to be accepted (raise `ulimit -n`)"
        );
    }
}

/// Waits for SIGTERM or SIGINT; runs `reload` at each SIGHUP meanwhile.
async fn wait_for_signal(reload: impl Fn()) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => reload(),
        }
    }
}

/// SIGHUP (`secret` rule 5): reads the secret files again; the API takes
/// the tokens, the key ring the keys. A secret that cannot be read leaves
/// everything as it was, and says why.
fn reload_secrets(sources: &crate::secret::SecretSources, tokens: &crate::secret::ApiTokens, keys: Option<&caxton_cluster::KeyRing>) {
    let (secrets, warnings) = match sources.read_all() {
        Ok(read) => read,
        Err(e) => return tracing::error!(error = %e, "SIGHUP: cannot read the secrets again; nothing changed"),
    };
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let (Some(keys), Some(key)) = (keys, &secrets.cluster_key) {
        match keys.reload(key.as_bytes(), secrets.cluster_key_next.as_deref().map(str::as_bytes)) {
            Ok((sends, holds)) => tracing::info!(%sends, %holds, "SIGHUP: cluster keys read again"),
            Err(e) => return tracing::error!(error = %e, "SIGHUP: the cluster keys were not taken; nothing changed"),
        }
    }
    tokens.set(secrets.api_token, secrets.api_token_next);
    tracing::info!(api_tokens = tokens.count(), "SIGHUP: API tokens read again");
}
