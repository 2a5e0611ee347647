//! Every limit of a caxton node, in one place.
//!
//! Each constant is named for what it bounds, with its unit last, and carries
//! its default's origin (ADR-0017 or our own choice), its memory cost where it
//! has one, and what happens when it is exceeded. Settings that an operator can
//! change at run time live in [`ShardConfig`](crate::ShardConfig) and the node's
//! config; their defaults are the constants here.
//!
//! Derived limits are computed from the base ones and checked at compile time
//! at the bottom of this file.

// ---------------------------------------------------------------- names

// The ABI's own limits are `caxton_abi`'s (shared with agents and clients);
// they are named here too, so that every limit has one place to look.

/// Longest agent name, in bytes. Names are 1..=64 bytes of `[a-z0-9._-]`.
/// Exceeded: deploy answers 400; an envelope naming it is invalid (-3).
pub const NAME_BYTES_MAX: usize = caxton_abi::NAME_BYTES_MAX;

/// Longest key of a keyed agent's activation (`kv/KEY`), in bytes of UTF-8.
/// Exceeded: the address is not a name (REST 400/404, `send` -3 or -1).
pub const KEY_BYTES_MAX: usize = caxton_abi::KEY_BYTES_MAX;

/// Longest address an envelope's sender or receiver may hold: a name, or a
/// keyed address `TYPE/KEY` (64 + 1 + 128 = 193 bytes).
pub const ADDRESS_BYTES_MAX: usize = caxton_abi::ADDRESS_BYTES_MAX;

/// Prefix of names that belong to the runtime itself (not to agents).
pub const RUNTIME_NAME_PREFIX: u8 = caxton_abi::RUNTIME_NAME_PREFIX;

// ---------------------------------------------------------------- envelope

/// Size of the fixed envelope header, in bytes (ABI version 2; version 1's
/// is 44).
pub const ENVELOPE_HEADER_BYTES: usize = caxton_abi::HEADER_BYTES;

/// Longest protocol name an envelope may carry, in bytes. Exceeded: the
/// envelope is invalid (-3, REST 400).
pub const PROTOCOL_BYTES_MAX: usize = caxton_abi::PROTOCOL_BYTES_MAX;

/// Largest message content, in bytes (1 MiB). Exceeded: `send` returns -4,
/// the REST API answers 413.
pub const CONTENT_BYTES_MAX: usize = caxton_abi::CONTENT_BYTES_MAX;

/// Largest encoded envelope, in bytes: header, two names, a protocol and
/// the content.
pub const ENVELOPE_BYTES_MAX: usize = caxton_abi::ENVELOPE_BYTES_MAX;

// ---------------------------------------------------------------- agents

/// Most instances of one agent (ADR-0017 `agent_max_instances`).
/// Exceeded: deploy answers 400.
pub const AGENT_INSTANCES_MAX: u32 = 10;

/// Restart policy defaults (`shard::supervision`; per agent at deploy).
/// Crashes in a row an instance is recreated at once after.
pub const RESTART_IMMEDIATE: u32 = 3;
/// Crashes further apart than this are not in a row, in ms.
pub const RESTART_WINDOW_MS: u64 = 10_000;
/// First backoff after the immediate restarts, in ms; doubles per crash.
pub const RESTART_BACKOFF_MS: u64 = 100;
/// Longest backoff, in ms.
pub const RESTART_BACKOFF_MAX_MS: u64 = 10_000;
/// Crashes in a row past which an instance is quarantined: its messages are
/// failed back (`quarantined`) until `caxton agent restart`. With the
/// defaults, a handler that crashes on every message is quarantined after
/// about 25 s (3 at once, then 100 ms, 200 ms ... 6.4 s, 10 s).
pub const RESTART_QUARANTINE_AFTER: u32 = 10;

/// How long a stopping node (SIGTERM) lets its shards finish the messages
/// they hold, in ms (`--drain-timeout`). Exceeded: what is left is failed
/// back (`node_down` notices) and the node stops.
pub const DRAIN_TIMEOUT_MS: u64 = 10_000;

/// How long a stopping shard waits for room for the failure notices of
/// what it fails back (a wire client reading them, a link's queue), in ms.
/// Exceeded: the notices left are dropped and counted
/// (`caxton_failure_notices_dropped_total`) and the shard stops.
pub const STOP_NOTICES_WAIT_MS: u64 = 1_000;

// ---------------------------------------------------------------- keyed agents

/// How long an activation of a keyed agent stays with no message before it
/// is passivated (dropped; its state stays on disk), in ms (`--keyed-idle`).
/// Our choice, 2 minutes, is Akka Cluster Sharding's default passivation:
/// a key in a conversation (a session, an order being placed) keeps its
/// instance between messages seconds apart, while the keys of a long tail
/// give their memory back within minutes. Memory is bounded by
/// [`KEYED_ACTIVE_MAX`] whatever this is; re-activation costs an
/// instantiation and `caxton_init` (`make bench`).
pub const KEYED_IDLE_MS: u64 = 120_000;

/// Activations of keyed agents a node keeps live at once, split evenly
/// over its shards (`--keyed-active-max`). Our choice: ADR-0017's 10,000
/// agents per node. Cost: each an instance (its linear memory as used, at
/// most `--agent-memory-max`, plus `--agent-overhead`). Exceeded: a new
/// activation passivates the least recently used one with nothing queued
/// first; when every one has mail, the shard goes over the cap until they
/// are handled (nothing is refused, nothing lost).
pub const KEYED_ACTIVE_MAX: usize = 10_000;

/// Longest interval between a shard's looks for idle activations (a
/// quarter of `--keyed-idle`, at most this), in ms. An idle activation is
/// passivated within 1.25 times its idle time.
pub const KEYED_SWEEP_INTERVAL_MS: u64 = 1_000;

/// Shortest interval between those looks, in ms (a short `--keyed-idle`
/// costs no more than a look every 10 ms).
pub const KEYED_SWEEP_MIN_MS: u64 = 10;

/// Timers a shard reads per tick from its database for keys that are
/// passive (each activates its key). Exceeded: the rest next tick.
pub const KEYED_TIMERS_DUE_PER_TICK_MAX: usize = 64;

/// Versions of an agent's module the catalog keeps (for rollback); older
/// ones are deleted. Cost: each a copy of the module in node.db.
pub const AGENT_VERSIONS_KEPT: u32 = 5;

/// Largest module accepted for deploy, in bytes (16 MiB).
/// Exceeded: deploy answers 413.
pub const MODULE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Linear memory one agent instance may grow to, in bytes (ADR-0017
/// `agent_heap_size`, 10 MB). Memories are "dynamic" (bounds-checked, no
/// 8 GiB reservation), so the cost is what the agent really touches.
/// Exceeded: `memory.grow` returns -1 inside the agent; a module whose initial
/// memory is larger is refused at deploy.
pub const AGENT_MEMORY_BYTES_MAX: usize = 10 * 1000 * 1000;

/// WebAssembly stack of one agent, in bytes (ADR-0017 `agent_stack_size`,
/// 1 MB). Each instance runs on a coroutine stack of this size while it is
/// called. Exceeded: the call traps ("call stack exhausted"); the instance is
/// counted as crashed and recreated.
pub const AGENT_STACK_BYTES_MAX: usize = 1024 * 1024;

/// Most table elements of one agent (ADR-0017 `agent_table_elements`).
/// Exceeded: `table.grow` fails inside the agent; a larger initial table is
/// refused at deploy.
pub const AGENT_TABLE_ELEMENTS_MAX: u32 = 10_000;

/// CPU one handler call may use, in milliseconds of metered work (ADR-0017
/// `execution_time_slice`, 10 ms). Enforced with fuel: every WebAssembly
/// operator costs one point and a call gets
/// `EXECUTION_TIME_SLICE_MS * FUEL_PER_MS` points. Exceeded: the call traps,
/// is counted as a timeout, its effects are rolled back and the instance is
/// recreated; the shard goes on with the next message.
pub const EXECUTION_TIME_SLICE_MS: u64 = 10;

/// Fuel points per millisecond of handler CPU, measured by the
/// `fuel_calibration` bench on the project's 2-core machines. The figure is
/// below the lowest of its loops (a runaway one-branch loop: 31 M points a
/// ms in November 2026, 21–23 M on 2026-12-06, the same binary on a slower
/// day), so a slice never runs longer than its time; busier loops get up
/// to about 1.5x less than their slice. Host calls are charged too (their
/// prices below, each measured against its work by the same bench).
pub const FUEL_PER_MS: u64 = 20_000_000;

/// Fuel of a branch, loop or call (every other operator costs 1).
pub const BRANCH_FUEL: u64 = 8;

/// Fuel a host call costs at least (WASI's and `now_micros`), plus what
/// it copies: about the CPU the call takes (a microsecond is 20,000
/// points).
pub const HOST_CALL_FUEL: u64 = 2_000;

/// Fuel a `state_*` call or a timer call costs, besides its bytes: a SQLite
/// statement (a lookup of a missing key takes about 2 µs here).
pub const STATE_CALL_FUEL: u64 = 60_000;

/// Fuel per KiB a bulk memory or table operation touches (`memory.fill`,
/// `memory.copy`, `memory.init`, `table.*`), and per KiB a host call copies
/// (send content, log text). The `fuel_calibration` bench measures the
/// slowest of them per byte against [`FUEL_PER_MS`]; this is at least that,
/// so a slice of bulk work lasts no longer than a slice of plain code.
/// Without it a `memory.fill` of 8 MB cost one point, and a loop of them
/// never ran out of fuel.
pub const BULK_FUEL_PER_KIB: u64 = 2_000;

/// Fuel per KiB a `state_put` stores (key and value), measured like the
/// above: SQLite writes pages to its WAL (2.2 µs a KiB here, 43,000 points
/// at [`FUEL_PER_MS`]; this keeps a 30% margin).
pub const STATE_FUEL_PER_KIB: u64 = 56_000;

/// Fuel of each buffer of the list a WASI `fd_write` or `fd_read` names
/// (two words read and a range checked; up to [`WASI_IOVS_MAX`]).
pub const WASI_IOVEC_FUEL: u64 = 400;

/// Fuel per KiB a WASI `fd_write` takes from the guest: read, scanned for
/// newlines and gathered into lines (more than a plain copy; its lines are
/// charged on top).
pub const WASI_WRITE_FUEL_PER_KIB: u64 = 8_000;

/// Fuel of a WASI `random_get`, besides its bytes: a system call.
pub const RANDOM_CALL_FUEL: u64 = 25_000;

/// Fuel per KiB a WASI `random_get` asks of the kernel's CSPRNG.
pub const RANDOM_FUEL_PER_KIB: u64 = 50_000;

/// Fuel of a `send`, besides its bytes: resolving the receiver, reserving
/// room, encoding and staging the message.
pub const SEND_CALL_FUEL: u64 = 10_000;

/// Fuel per KiB of the value a `state_get` reads: SQLite reads the whole
/// value whatever the guest's buffer holds, so a `state_get` of a 1 MiB
/// value into 0 bytes pays for 1 MiB (it paid a flat fee before, and 8,000
/// of them held a shard for 0.75 s).
pub const STATE_READ_FUEL_PER_KIB: u64 = 4_000;

/// Fuel per KiB of the value a `state_put` replaces or a `state_delete`
/// removes: SQLite frees its pages.
pub const STATE_FREE_FUEL_PER_KIB: u64 = 4_000;

/// Fuel of each log line a `log` or a WASI `fd_write` ends, written or
/// dropped by the instance's budget (a budget check and a count). Before
/// it, `fd_write` paid by the byte and a write of 8 MiB of `"a\n"` cost
/// 0.66 ms of fuel for 0.28 s of CPU.
pub const LOG_LINE_FUEL: u64 = 2_000;

/// Fuel of a log line the instance's budget lets through, on top of
/// [`LOG_LINE_FUEL`]: it is formatted, kept for `caxton agent logs` and
/// written to the node's log.
pub const LOG_WRITTEN_LINE_FUEL: u64 = 250_000;

/// Fuel per page `memory.grow` adds (the page is zeroed: one KiB's bulk
/// cost per KiB).
pub const GROW_FUEL_PER_PAGE: u64 = 64 * BULK_FUEL_PER_KIB;

/// WebAssembly page size, in bytes.
pub const WASM_PAGE_BYTES: usize = 64 * 1024;

/// Address space of the linear memories a shard keeps for reuse, in bytes
/// (`agent::memory_pool`). Our choice: 32 MiB, 512 one-page memories, more
/// than a shard frees between two activations even when it passivates a
/// sweep's worth at once. Cost: the pages those memories had touched stay
/// resident (zeroed), at most this much a shard. Exceeded: a memory handed
/// back is unmapped instead, as without the pool.
pub const MEMORY_POOL_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Largest linear memory the pool keeps, in bytes of its region (1 MiB,
/// 16 pages). Larger ones are rare and zeroing them costs more than a fresh
/// mapping. Exceeded: the region is unmapped when its instance goes.
pub const MEMORY_POOL_REGION_BYTES_MAX: usize = 1024 * 1024;

// ---------------------------------------------------------------- state

/// Longest state key, in bytes. Exceeded: `state_*` returns -4.
pub const STATE_KEY_BYTES_MAX: usize = caxton_abi::STATE_KEY_BYTES_MAX;

/// Largest state value, in bytes (1 MiB). Exceeded: `state_put` returns -4.
pub const STATE_VALUE_BYTES_MAX: usize = caxton_abi::STATE_VALUE_BYTES_MAX;

/// Most state records written in one transaction (ADR-0017
/// `batch_write_size`). A tick commits as soon as it reaches this many.
pub const STATE_BATCH_RECORDS_MAX: usize = 1000;

/// State one agent instance may hold, keys and values together, in bytes
/// (`--agent-state-max`, 64 MiB). Cost: the disk it takes, in the shard's
/// SQLite file. Exceeded: `state_put` returns -5 and is counted
/// (`caxton_state_writes_refused_total{reason="quota"}`); deletes still work.
pub const AGENT_STATE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Free space the data directory's file system keeps, in bytes
/// (`--disk-free-min`, 1 GiB). Below it every `state_put` returns -5 and is
/// counted (`{reason="disk"}`), and the node logs it once, before SQLite
/// meets a full disk. Checked every [`DISK_CHECK_INTERVAL_MS`].
pub const DISK_FREE_BYTES_MIN: u64 = 1024 * 1024 * 1024;

/// Between two looks at the data directory's free space, in milliseconds.
pub const DISK_CHECK_INTERVAL_MS: u64 = 1_000;

/// Most state writes one handler call may make; they must fit one batch so
/// that a handler's writes commit (or roll back) together.
/// Exceeded: `state_put`/`state_delete` return -5.
pub const STATE_WRITES_PER_HANDLER_MAX: usize = caxton_abi::STATE_WRITES_PER_HANDLER_MAX;

// ---------------------------------------------------------------- agent logs

/// Longest log line an agent may write, in bytes; longer ones are cut.
pub const LOG_LINE_BYTES_MAX: usize = 4096;

/// Buffers one WASI `fd_write` or `fd_read` may name (POSIX's `IOV_MAX`).
/// Exceeded: the call returns `EINVAL`. Cost: none kept (the list is read
/// into a buffer each instance reuses).
pub const WASI_IOVS_MAX: usize = 1024;

/// Bytes one WASI `random_get` may ask for (1 MiB). Exceeded: `EINVAL`.
/// The bytes are charged as fuel like a bulk copy.
pub const WASI_RANDOM_BYTES_MAX: usize = 1024 * 1024;

/// Log lines one agent instance may write per second
/// (`--agent-log-lines-per-s`). Exceeded: the line is dropped and counted
/// (`caxton_agent_log_dropped_total`).
pub const AGENT_LOG_LINES_PER_S: u32 = 100;

/// Log bytes one agent instance may write per second
/// (`--agent-log-bytes-per-s`, 64 KiB). Exceeded: as above.
pub const AGENT_LOG_BYTES_PER_S: u32 = 64 * 1024;

/// Seconds of log budget an instance may spend at once (a burst of 1,000
/// lines or 640 KiB by default).
pub const AGENT_LOG_BURST_SECONDS: u32 = 10;

/// Bytes of recent agent log lines a shard keeps for `GET
/// /v1/agents/{name}/logs` (`caxton agent logs`), all its agents together;
/// the oldest line goes first. Default 1 MiB per shard (each line costs its
/// text and about 100 bytes). The full record is the node's log output.
pub const AGENT_LOG_RECENT_BYTES_MAX: usize = 1024 * 1024;

/// Lines `GET /v1/agents/{name}/logs` returns at most (`?lines=`), and by
/// default.
pub const AGENT_LOG_READ_LINES_MAX: usize = 1000;
pub const AGENT_LOG_READ_LINES_DEFAULT: usize = 100;

// ---------------------------------------------------------------- queues

/// Messages one agent instance's mailbox holds. Memory: a 40-byte slot each
/// plus the messages themselves. Exceeded: `send` to it returns -2 (busy), the
/// REST API answers 429; a cross-shard message waits in its channel.
pub const MAILBOX_MESSAGES_MAX: usize = 1024;

/// Bytes of the messages one mailbox holds (8 MiB: eight messages at the
/// content limit, or the whole count of 8 KiB ones). Keeps one flooded
/// receiver from taking its shard's whole share of the message budget.
/// Exceeded: like a full mailbox (-2, 429, or the message waits).
pub const MAILBOX_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Messages in flight on one shard-to-shard channel (a bounded lock-free
/// array; 40 bytes a slot). Full: messages wait in the sender's outbox.
pub const MESH_CHANNEL_MESSAGES_MAX: usize = 8192;

/// Messages waiting in all the mailboxes of a node (ADR-0017
/// `max_message_queue_depth`). Each shard holds at most its 1/N share.
/// Memory: the messages themselves (at least 45 bytes each) plus a 40-byte
/// slot. Exceeded: `send` returns -2, the REST API answers 429.
pub const NODE_QUEUED_MESSAGES_MAX: usize = 1_000_000;

/// Messages in transit between shards: staged for, waiting for, or inside
/// a shard-to-shard channel (ADR-0017 `max_concurrent_messages`). Each
/// ordered pair of shards gets an equal share. Exceeded: `send` returns -2.
pub const NODE_IN_FLIGHT_MESSAGES_MAX: usize = 100_000;

/// Control commands (deploy, deliver from the API, stats) queued for a shard.
/// Exceeded: the API answers 503.
pub const CONTROL_COMMANDS_MAX: usize = 4096;

/// Lifecycle commands (deploy, undeploy, stop) queued for a shard. The
/// control plane runs one lifecycle operation at a time and checks every
/// shard has room before it sends to any, so an operation reaches every
/// shard or none. Exceeded (a shard that stopped taking commands): the
/// operation answers 503 and nothing is sent.
pub const LIFECYCLE_COMMANDS_MAX: usize = 64;

/// Longest the control plane waits for a shard's answer, in milliseconds
/// (`--control-timeout-ms`). Past it the API answers 503 naming the shard
/// (a lifecycle operation that times out is finished, or undone, in the
/// background, and holds off the next one until then).
pub const CONTROL_TIMEOUT_MS: u64 = 5_000;

/// Longest the liveness probe (`GET /v1/health`) waits for the shards'
/// figures, in milliseconds, all shards together. A probe must answer
/// within an orchestrator's timeout (Kubernetes' default is 1 s) even while
/// a shard runs a long handler; a shard that has not answered by then is
/// listed with `"answered": false` and the node's status is `"degraded"`.
/// Costs nothing: the late answer is dropped when it comes.
pub const HEALTH_SHARD_WAIT_MS: u64 = 250;
const _: () = assert!(HEALTH_SHARD_WAIT_MS < 1_000 && HEALTH_SHARD_WAIT_MS < CONTROL_TIMEOUT_MS);

/// A shard that has not finished a tick for this many execution slices is
/// reported stalled (`/v1/health`, `caxton_shard_stalled`).
pub const SHARD_STALL_SLICES: u64 = 10;

/// Replies queued from the shards to the REST API. Exceeded: the reply is
/// counted as a dead letter.
pub const API_REPLIES_MAX: usize = 16_384;

// ---------------------------------------------------------------- message memory

// The whole is `MESSAGE_BUFFER_BYTES` (ADR-0017 `message_buffer_size`,
// 500 MB; `--message-buffer-size`). Every queue that holds messages has a
// fixed share of it ([`MessageBudget`]), so however senders and readers
// behave, the node's messages never hold more. At a queue's share the
// sender meets back-pressure: `send` -2, REST 429, or TCP (the node stops
// reading), and it is counted.

/// Shares of the message budget, in thousandths (they add up to 1000).
/// Mailboxes of every shard together.
pub const BUDGET_MAILBOXES_PERMILLE: u64 = 400;
/// Messages between shards (mesh channels and outboxes), all pairs.
pub const BUDGET_MESH_PERMILLE: u64 = 100;
/// Messages waiting for other nodes, all shards (link outboxes).
pub const BUDGET_LINK_OUTBOX_PERMILLE: u64 = 200;
/// Arrivals from other nodes waiting for a mailbox, all shards.
pub const BUDGET_LINK_INBOX_PERMILLE: u64 = 100;
/// Messages to runtime names on their way from the shards to the control
/// plane, and replies held for REST callers.
pub const BUDGET_RUNTIME_OUTBOX_PERMILLE: u64 = 50;
/// Messages waiting in wire connections' outboxes, all connections (each
/// also bounded by [`WIRE_OUTBOX_BYTES_MAX`] and a quarter of this share).
/// Apart from the runtime outbox, so that clients that never read cannot
/// keep replies from REST callers.
pub const BUDGET_WIRE_OUTBOX_PERMILLE: u64 = 50;
/// Wire frames read and not yet in a mailbox, all connections.
pub const BUDGET_WIRE_INGRESS_PERMILLE: u64 = 100;

/// Bytes of the messages one wire connection's outbox holds (16 MiB).
/// Exceeded: a message to it is dropped and counted
/// (`caxton_runtime_undeliverable_total{kind="wire"}`): a client that does
/// not read loses its own replies, never anyone else's room.
pub const WIRE_OUTBOX_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Messages one wire connection's outbox holds. Exceeded: as above.
pub const WIRE_OUTBOX_MESSAGES_MAX: usize = 65_536;

/// The message budget split into its queues' shares, in bytes (node-wide;
/// a shard or a pair of shards takes an equal part of its share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageBudget {
    pub total: u64,
    pub mailboxes: u64,
    pub mesh: u64,
    pub link_outbox: u64,
    pub link_inbox: u64,
    pub runtime_outbox: u64,
    pub wire_outbox: u64,
    pub wire_ingress: u64,
}

impl MessageBudget {
    /// Splits `total` bytes by the shares above. Each share must hold at
    /// least one largest envelope, or nothing could ever be sent.
    pub fn split(total: u64) -> Result<MessageBudget, String> {
        let share = |permille: u64| total / 1000 * permille + total % 1000 * permille / 1000;
        let b = MessageBudget {
            total,
            mailboxes: share(BUDGET_MAILBOXES_PERMILLE),
            mesh: share(BUDGET_MESH_PERMILLE),
            link_outbox: share(BUDGET_LINK_OUTBOX_PERMILLE),
            link_inbox: share(BUDGET_LINK_INBOX_PERMILLE),
            runtime_outbox: share(BUDGET_RUNTIME_OUTBOX_PERMILLE),
            wire_outbox: share(BUDGET_WIRE_OUTBOX_PERMILLE),
            wire_ingress: share(BUDGET_WIRE_INGRESS_PERMILLE),
        };
        let smallest = [b.mailboxes, b.mesh, b.link_outbox, b.link_inbox, b.runtime_outbox, b.wire_outbox, b.wire_ingress].into_iter().min().unwrap();
        if smallest < 2 * ENVELOPE_BYTES_MAX as u64 {
            return Err(format!(
                "--message-buffer-size {total} bytes is too small: each of its seven shares must hold two largest messages (at least {} bytes in all)",
                MESSAGE_BUFFER_BYTES_MIN
            ));
        }
        debug_assert!(b.mailboxes + b.mesh + b.link_outbox + b.link_inbox + b.runtime_outbox + b.wire_outbox + b.wire_ingress <= total);
        Ok(b)
    }
}

/// The smallest `--message-buffer-size` accepted: the smallest share (a
/// twentieth) holds two largest envelopes.
pub const MESSAGE_BUFFER_BYTES_MIN: u64 = 2 * ENVELOPE_BYTES_MAX as u64 * 20 + 10_000;

// ---------------------------------------------------------------- listeners

/// Longest a REST client may take to send a request's headers, from its
/// first byte or from the connection's start, in milliseconds
/// (`--api-header-timeout-ms`). Exceeded: the connection is closed. Bounds
/// what a silent or slow client holds of `--max-connections`.
pub const API_HEADER_TIMEOUT_MS: u64 = 10_000;

/// API connections that have not yet sent a complete first request head
/// (their TLS handshake included), node-wide; they count towards
/// `--max-connections` too (past it a connection's first request is
/// answered 503). Default 1,024. Exceeded: the connection is closed at once, counted
/// (`caxton_api_connections_closed_total{reason="pending"}`).
pub const API_PENDING_MAX: usize = 1024;

/// Of those, the most one source address may hold (default 64: a browser
/// opens 6, a load balancer a few per request in flight). Exceeded: as
/// above (`{reason="pending_per_source"}`). With the first-byte bound
/// below, 10,000 silent connections from one source no longer hold every
/// place for 10 s.
pub const API_PENDING_PER_SOURCE_MAX: usize = 64;

/// How long a new API connection may stay silent before its first byte
/// (a request, or TLS's hello), in milliseconds. Default 2 s. Exceeded:
/// closed (`{reason="header_timeout"}`).
pub const API_FIRST_BYTES_TIMEOUT_MS: u64 = 2_000;

/// Longest a REST connection may sit idle between requests, in
/// milliseconds (`--api-idle-timeout-ms`; a request waiting on its reply is
/// not idle). Exceeded: the connection is closed.
pub const API_IDLE_TIMEOUT_MS: u64 = 30_000;

/// Longest a wire client may take to send its hello, in milliseconds
/// (`--wire-hello-timeout-ms`). Exceeded: the connection is closed.
pub const WIRE_HELLO_TIMEOUT_MS: u64 = 5_000;

/// Open wire connections (`--wire-connections-max`). Each costs its
/// buffers (about 200 KiB) and a task. Exceeded: the next connection is
/// answered `caxton-wire/1 refused: ...` and closed at once.
pub const WIRE_CONNECTIONS_MAX: usize = 256;

/// Wire connections that have not yet sent their hello, apart from the
/// open connections of `--wire-connections-max` (listener rules in
/// `pending`): a keyless client can hold these only, never the places of
/// clients that said hello. Default 64; each a socket for at most the
/// hello timeout. Exceeded: closed at once, counted
/// (`caxton_wire_refused_total`).
pub const WIRE_PENDING_MAX: usize = 64;

/// Of those, the most one source address may hold. Default 8.
pub const WIRE_PENDING_PER_SOURCE_MAX: usize = 8;

/// How long a new wire connection may stay silent before its first byte
/// (the hello, or TLS's), in milliseconds. Default 1 s. Exceeded: closed,
/// counted as a refusal.
pub const WIRE_FIRST_BYTES_TIMEOUT_MS: u64 = 1_000;

/// Longest pause between two looks for room for a failure notice to a
/// wire client whose outbox is full, in milliseconds (the pause doubles
/// from [`WIRE_RETRY_PAUSE_MIN_US`]). Meanwhile that connection is not
/// read: its client is pushed back through TCP.
pub const WIRE_NOTICE_WAIT_MAX_MS: u64 = 50;

/// Buffered bytes each way of a wire connection.
pub const WIRE_BUFFER_BYTES: usize = 64 * 1024;

/// Most bytes of wire frames read from one connection before they are
/// handed to the shards as one batch (one share of the ingress budget).
pub const WIRE_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Warnings caused by remote input (refused connections, bad frames, ABI
/// misuse) are written at most once per this interval, in milliseconds;
/// the rest are counted.
pub const WARNING_INTERVAL_MS: u64 = 1_000;

// ---------------------------------------------------------------- scheduling

/// Messages a shard dispatches in one tick before it commits state, flushes
/// its outbox and yields to the executor. Bounds the latency a busy tick adds.
pub const TICK_MESSAGES_MAX: usize = 256;

/// Messages one instance handles before the run queue moves to the next.
pub const INSTANCE_BURST_MESSAGES_MAX: usize = 16;

/// Capacity of a pooled message buffer, in bytes (`buffer_pool`): a message
/// of at most this many bytes is built in a buffer reused on the thread that
/// last dropped one. Default 512 (a typical agent message is 150 to 300
/// bytes). Cost: a message below it occupies this many bytes while queued
/// (the queues' byte bounds count its length). Larger: allocated and freed
/// as usual.
pub const POOLED_BUFFER_BYTES: usize = 512;

/// Buffers a thread's pool keeps, at most (`buffer_pool`). Default 1024:
/// 512 KiB per thread that drops messages (a shard, an API or link
/// thread). Past it: a dropped buffer is freed.
pub const POOLED_BUFFERS_MAX: usize = 1024;

/// Messages a shard takes from another shard's channel at once, prefetching
/// their buffers before it reads any (the first read of a message written
/// on another core misses the cache; taken together, the misses overlap).
/// Default 16. Cost: when the receiving mailbox is full, up to this many of
/// one peer's messages wait outside its channel, their bytes still counted
/// as in flight for the sender (`mesh` rule 4).
pub const PEER_DRAIN_BATCH_MESSAGES: usize = 16;

/// Finished trace spans a shard may have waiting for the exporter
/// (`trace` rule 2). Default 8192 (about 1 MiB a shard). Past it: a span
/// is dropped and counted (`caxton_trace_spans_total{outcome="dropped"}`);
/// the shard never waits.
pub const TRACE_SPANS_QUEUED_MAX: usize = 8192;

/// Commands or channel messages drained per source in one tick.
pub const TICK_DRAIN_MAX: usize = 1024;

/// How long an idle shard keeps polling its queues before it parks, in
/// microseconds. Parking costs a wake-up of tens of microseconds (an eventfd
/// write and an io_uring completion); spinning costs a core while idle.
pub const SPIN_BEFORE_PARK_US: u64 = 100;

/// The longest a shard polls before parking, in microseconds, reached when
/// it keeps being woken soon after parking (steady traffic). At this length
/// traffic of 1,000 messages per second or more keeps a shard awake: hops
/// stay in microseconds, and the shard uses its core while traffic lasts.
pub const SPIN_BEFORE_PARK_MAX_US: u64 = 2_000;

/// Idle polls between two offers of the core to the kernel while a shard
/// spins (`run_loop` rule 4). Cost: one `sched_yield` (a fraction of a
/// microsecond alone on a core) per this many polls; a thread waiting for
/// the core gets it within this many polls.
pub const SPIN_YIELD_EVERY_POLLS: u32 = 64;

// ---------------------------------------------------------------- SQLite (ADR-0017)

/// SQLite page cache per shard, in KiB (ADR-0017 `page_cache_size`, 50 MB).
pub const SQLITE_PAGE_CACHE_KIB: i64 = 50 * 1000;

/// Prepared statements cached per connection (ADR-0017).
pub const SQLITE_STATEMENT_CACHE: usize = 100;

/// Interval between WAL checkpoints, in milliseconds. ADR-0017 says 10 s;
/// ours is 100 ms, on purpose. Checkpoints run on a thread of their own,
/// in PASSIVE mode: one with nothing new to copy reads a header and
/// returns, so a quiet node pays next to nothing. But every 10 s, a shard
/// that writes all the time reaches [`WAL_CATCH_UP_BYTES`] with most of its
/// WAL never copied, and finishing the checkpoint then holds it for tens
/// of ms (measured, `steady_state_stateful`: p99 23 ms at 10 s, 2.8 ms at
/// 100 ms, the WAL bounded at 33 MB either way).
pub const WAL_CHECKPOINT_INTERVAL_MS: u64 = 100;

/// WAL size after which the checkpointer truncates it, in bytes (ADR-0017,
/// 100 MB). Also set as `journal_size_limit`.
pub const WAL_SIZE_BYTES_MAX: u64 = 100 * 1000 * 1000;

/// WAL bytes past which a shard finishes the checkpoint itself, after a
/// commit, so that its next write starts the WAL over (storage rule 4).
/// Always a third of `--wal-size-max`; by default of [`WAL_SIZE_BYTES_MAX`]. Cost: a PASSIVE checkpoint on
/// the shard's thread, copying the pages the checkpointer has not yet
/// (each at most once, however many frames it has) and syncing the
/// database file: a few ms, once per this many bytes of WAL. Without it, a
/// shard that commits all the time never leaves the checkpointer a moment
/// with every frame copied, and its WAL grows without bound (measured: 48
/// MB/s a shard with 5,000 timers set and fired a second, 1.7 GB in 40 s).
pub const WAL_CATCH_UP_BYTES: u64 = WAL_SIZE_BYTES_MAX / 3;

// ---------------------------------------------------------------- node (ADR-0017)

/// The node itself, in bytes (ADR-0017 `base_memory`, 100 MB): the first
/// term of the admission formula.
pub const BASE_MEMORY_BYTES: u64 = 100 * 1000 * 1000;

/// Message buffers, in bytes (ADR-0017 `message_buffer_size`, 500 MB): the
/// last term of the admission formula.
pub const MESSAGE_BUFFER_BYTES: u64 = 500 * 1000 * 1000;

/// Memory charged per agent instance beyond heap and stack, in bytes
/// (ADR-0017 `per_agent_overhead`, 2 MB). docs/LIMITS.md gives the figure
/// measured here, so operators can set `--agent-overhead` from a fact.
pub const AGENT_OVERHEAD_BYTES: u64 = 2 * 1000 * 1000;

/// Agent instances per node (ADR-0017 `max_agents`). Exceeded: deploy
/// answers 507 naming `--max-agents`.
pub const AGENTS_MAX: usize = 10_000;

/// Open REST API connections (ADR-0017 `max_connections`). Each is a file
/// descriptor and a task of a few KiB. Exceeded: the next connection gets
/// 503 with `Connection: close` at once.
pub const API_CONNECTIONS_MAX: usize = 10_000;

/// Shortest API token accepted, in characters (`secret` rule 6).
/// Shorter: `serve` refuses to start (a reload is refused and changes
/// nothing), naming the command that makes a good one.
pub const API_TOKEN_CHARS_MIN: usize = 32;

/// Weakest cluster key accepted, in bits of its hex or base64 text
/// (`secret` rule 6): 32 hex digits. Weaker: refused like a short token.
pub const CLUSTER_KEY_BITS_MIN: usize = 128;

/// Agent instances whose own series `/metrics` and `GET /v1/stats?agents`
/// carry, node-wide (default 1,000; the first made on each shard, shared
/// evenly). Each costs its shard about 2.5 µs of its core per scrape (a
/// cold instance read between two messages) and the scrape about 400 bytes
/// of text per family. Exceeded: the rest are left out of those two and
/// counted (`caxton_metrics_instances_omitted`, `instances_omitted`); each
/// agent's own page (`GET /v1/agents/NAME`) has all its instances.
/// Without it, a scrape of 10,000 agents held each shard for 25 ms while
/// messages waited (issue 26).
pub const METRICS_INSTANCES_MAX: usize = 1_000;

/// Longest a REST caller may wait for a reply, in milliseconds.
pub const REPLY_TIMEOUT_MS_MAX: u64 = 60_000;

/// Longest a request forwarded to another member's API may take, in
/// milliseconds (a deploy there compiles its module). Exceeded: 502.
pub const FORWARD_TIMEOUT_MS: u64 = 60_000;

/// Largest answer read from a member a request was forwarded to, in bytes
/// (8 MiB: an agent's detail or its 1,000 last log lines fit). Exceeded:
/// 502, nothing of it is passed on.
pub const FORWARD_ANSWER_BYTES_MAX: usize = 8 * 1024 * 1024;

// ---------------------------------------------------------------- cluster

/// Between two gossip rounds of a node, in milliseconds (ADR-0017 SWIM
/// `gossip_interval`). Shorter: faster convergence, more bandwidth.
pub const GOSSIP_INTERVAL_MS: u64 = 200;

/// Members each gossip round goes to (ADR-0017 `gossip_fanout`).
pub const GOSSIP_FANOUT: usize = 3;

/// Largest gossip packet, in bytes, its 44-byte seal included (ADR-0017
/// `max_packet_size`, MTU-safe). foca packs at most this; a received
/// datagram larger than this is dropped and counted as malformed.
pub const GOSSIP_PACKET_BYTES_MAX: usize = 1400;

/// Cluster size the SWIM timings are first tuned for (foca's LAN profile:
/// suspicion lasts 4 probe periods × max(1, log10 N), updates are passed on
/// 4 × log10(N + 1) times). ADR-0017 targets clusters of up to 100 nodes.
/// A node re-tunes to the size it sees whenever that doubles or halves.
pub const CLUSTER_NODES_HINT: u32 = 100;

/// Between two anti-entropy syncs of a node's agent names to one member
/// chosen at random, in milliseconds. Makes good a lost sync packet.
/// Cost: about 40 bytes per hosted name per interval.
pub const REGISTRY_RESYNC_INTERVAL_MS: u64 = 30_000;

/// Outbound link connections to one remote node, all shards together
/// (ADR-0017 `connection_pool_size`). Each shard gets an equal share, at
/// least 1; a conversation keeps to one connection (ordering). Each costs a
/// socket and its buffers (socket2-set, [`LINK_SOCKET_BUFFER_BYTES`] each way).
pub const NODE_POOL_CONNECTIONS_MAX: usize = 100;

/// Inbound link connections a node accepts, all shards together (ADR-0017
/// `max_connections_per_node`). Exceeded: the connection is closed at once
/// and counted (`caxton_link_refused_total{reason="too_many"}`).
pub const NODE_LINK_CONNECTIONS_MAX: usize = 1000;

/// A link connection unused this long is closed, in milliseconds
/// (ADR-0017 `idle_connection_timeout`, 60 s). The next message reopens it.
pub const LINK_IDLE_TIMEOUT_MS: u64 = 60_000;

/// Socket send and receive buffer of a link, in bytes (set with socket2).
pub const LINK_SOCKET_BUFFER_BYTES: usize = 1024 * 1024;

/// Messages one shard holds for one remote node (queued, not yet written).
/// Exceeded: `send` returns -2 (busy), the REST API 429. Cost: the messages.
pub const NODE_OUTBOX_MESSAGES_MAX: usize = 16_384;

/// Bytes of frames gathered into one socket write (batching per tick).
pub const LINK_WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Messages one shard takes from its links but has not yet placed in a
/// mailbox. Over it, the shard stops reading its sockets (TCP backpressure).
pub const LINK_INBOUND_MESSAGES_MAX: usize = 16_384;

/// Longest a link handshake or connect may take, in milliseconds
/// (`--link-handshake-timeout-ms`). Exceeded: the connection is closed (and
/// retried, for an outbound one).
pub const LINK_HANDSHAKE_TIMEOUT_MS: u64 = 2_000;

/// Inbound link connections in their handshake at once, node-wide, apart
/// from the authenticated ones (`--max-pending-handshakes`). Each is a
/// socket for at most the handshake timeout. Exceeded: the connection is
/// closed at once (`caxton_link_refused_total{reason="pending"}`), so that
/// peers without the key can never take the authenticated places.
pub const LINK_PENDING_HANDSHAKES_MAX: usize = 64;

/// Pending handshakes one source address may hold at once, per shard,
/// unless gossip knows it as a member's (link rule 6). Default 4: a peer
/// node's connections come from a member's address and are not held to it;
/// 64 silent connections from one keyless source, reopened every 2 s, used
/// to fill the whole pool and close every real peer's new link.
/// Exceeded: closed at once (`caxton_link_refused_total{reason="pending_per_source"}`).
pub const LINK_PENDING_PER_SOURCE_MAX: usize = 4;

/// Share of the pending handshakes kept for members' addresses, in
/// thousandths (default half): sources that are not members together hold
/// at most the rest. Exceeded by strangers: closed at once (`{reason="pending"}`).
pub const LINK_PENDING_RESERVED_PERMILLE: u64 = 500;

/// How long a new inbound link may stay silent before the first bytes of
/// its hello, in milliseconds (default 1 s; a peer writes its hello as soon
/// as it connects). Exceeded: closed, counted as a handshake refused; its
/// pending place is free again long before the handshake's own bound.
pub const LINK_FIRST_BYTES_TIMEOUT_MS: u64 = 1_000;

/// Sends after which a message still unacknowledged is given up (counted
/// as `link_lost`): only a receiver that takes the connection down on every
/// try gets there.
pub const LINK_SEND_ATTEMPTS_MAX: u32 = 5;

/// Wait before reconnecting to a live node whose link failed, in ms.
pub const LINK_RECONNECT_DELAY_MS: u64 = 100;

/// How often a busy or spinning shard of a clustered node lets glommio poll
/// its io_uring for link traffic, in microseconds. A shard that only yields
/// stays runnable, and glommio polls I/O only when nothing is runnable or
/// at its preempt timer (100 ms): a frame would wait that long. Cost: one
/// `io_uring_enter` per interval. Bounds what a link read waits on a busy
/// shard.
pub const LINK_POLL_INTERVAL_US: u64 = 50;

/// Cluster state changes (membership, routes) queued for one shard.
pub const CLUSTER_UPDATES_MAX: usize = 65_536;

// ---------------------------------------------------------------- failure notices and timers

/// Failure notices a shard holds before it sends them (one tick's worth
/// and more), and their bytes. Exceeded: the notice is dropped and counted
/// (`caxton_failure_notices_dropped_total`). Cost: up to the bytes bound.
pub const NOTICES_PENDING_MAX: usize = 4096;
pub const NOTICES_PENDING_BYTES_MAX: usize = 1024 * 1024;

/// Timers one agent instance may have pending (`timer_set`). Exceeded:
/// `timer_set` returns -5. Cost: a row in the shard's SQLite and 32 bytes
/// in memory each.
pub const TIMERS_PER_INSTANCE_MAX: usize = 1024;

/// Longest timer delay, in milliseconds (30 days). Exceeded: `timer_set`
/// returns -3.
pub const TIMER_DELAY_MS_MAX: u64 = 30 * 24 * 3600 * 1000;

/// Largest content a timer carries, in bytes (it is stored until it
/// fires). Exceeded: `timer_set` returns -4.
pub const TIMER_CONTENT_BYTES_MAX: usize = 64 * 1024;

/// Timers a shard fires per tick at most (the rest wait for the next).
pub const TIMERS_FIRED_PER_TICK_MAX: usize = 1024;

// ---------------------------------------------------------------- tools (`@tool/NAME`)

/// Tool calls one agent (an instance, or a keyed activation) may have in
/// flight: made and not yet answered to its handler. Our choice, Erlang's
/// spirit of a small bounded outstanding set per process. Exceeded: `send`
/// to `@tool/...` returns -2 (busy) at once. Cost: a row in the shard's
/// SQLite per call (the call's envelope, for the replay after a crash).
pub const TOOL_CALLS_PER_AGENT_MAX: usize = 64;

/// Tool calls the node runs at once, over every tool and agent. Exceeded:
/// the call is answered at once with a `refused` failure. Cost: one task
/// and its buffers each (up to [`TOOL_RESPONSE_BYTES_MAX`] while reading).
pub const TOOL_CALLS_NODE_MAX: usize = 1024;

/// Calls waiting between the control plane and the tools runtime. Exceeded:
/// the call is answered `refused`. Cost: the calls' envelopes, which the
/// runtime outbox's byte budget already bounds.
pub const TOOL_QUEUE_CALLS_MAX: usize = 4096;

/// A call's time when its request has no `reply_by`, in ms (30 s: the MCP
/// TypeScript SDK's default request timeout is 60 s; ours is half so a
/// stuck tool frees the agent's slot sooner). Exceeded: `timeout`. A call
/// with a `reply_by` gets until then, never past this default.
pub const TOOL_CALL_TIMEOUT_MS: u64 = 30_000;

/// Largest tool request (the call's content), in bytes: a message's content
/// bound. Exceeded: `send` returns -4 (the envelope is too large).
pub const TOOL_REQUEST_BYTES_MAX: usize = CONTENT_BYTES_MAX;

/// Largest tool response body kept, in bytes (256 KiB). It is read as a
/// stream and the call ends as soon as it passes this: it is never buffered
/// whole. Exceeded: `too_large`. Cost: up to this per call in flight.
pub const TOOL_RESPONSE_BYTES_MAX: usize = 256 * 1024;

/// Tool calls an agent may start per second (a token bucket of as many,
/// refilled continuously). Our choice: enough for an agent that fans out,
/// little enough that one agent cannot hold a tool alone. Exceeded:
/// `refused`. Cost: 24 bytes per agent that called a tool.
pub const TOOL_CALLS_PER_AGENT_PER_S: u32 = 200;

/// Pause before an MCP stdio server that exited is started again: doubled
/// at each exit in a row, from the least to the most, in ms. Reset once the
/// server has stayed up for [`TOOL_RESTART_BACKOFF_MAX_MS`].
pub const TOOL_RESTART_BACKOFF_MIN_MS: u64 = 100;
pub const TOOL_RESTART_BACKOFF_MAX_MS: u64 = 30_000;

/// How long the node waits for a tool server to connect and list its tools
/// at start, in ms. Past it the tool is reported down (not fatal) and
/// retried with the backoff above.
pub const TOOL_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Tool answers waiting to reach a shard that had no room for them, and
/// the pause between tries, in ms. An answer is never dropped for room:
/// the count is bounded by the calls in flight ([`TOOL_CALLS_NODE_MAX`]).
pub const TOOL_ANSWER_RETRY_MS: u64 = 5;

// ---------------------------------------------------------------- the node's threads and listeners

/// Most shards a node runs (`--cores`): a message id has 8 bits of origin,
/// 255 of them for shards. Exceeded: `serve` refuses to start.
pub const SHARDS_MAX: usize = 255;

/// Largest `POST /v1/messages` body, in bytes: base64 content at its limit
/// plus the other fields. Exceeded: 413.
pub const MESSAGE_BODY_BYTES_MAX: usize = CONTENT_BYTES_MAX / 3 * 4 + 64 * 1024;

/// Longest a connection past `--max-connections` is kept to answer its 503,
/// in milliseconds (or the header timeout, if shorter).
pub const API_REFUSAL_MS_MAX: u64 = 5_000;

/// Wait after a failed `accept` on the API or wire listener, in milliseconds.
pub const ACCEPT_RETRY_MS: u64 = 10;

/// Envelopes a wire connection reads before it hands them to the shards as
/// one batch (also bounded by [`WIRE_BATCH_BYTES_MAX`]).
pub const WIRE_BATCH_MESSAGES_MAX: usize = 512;

/// Longest wire hello frame, in bytes: the magic, a space and a token.
pub const WIRE_HELLO_BYTES_MAX: usize = 4096;

/// A wire batch a busy shard refused is offered again after this pause,
/// doubling up to [`WIRE_RETRY_PAUSE_MAX_US`], in microseconds.
pub const WIRE_RETRY_PAUSE_MIN_US: u64 = 50;
pub const WIRE_RETRY_PAUSE_MAX_US: u64 = 5_000;

/// Bytes a link reader asks of its socket at once (at most one such read
/// goes past the link inbox's bounds).
pub const LINK_READ_CHUNK_BYTES: usize = 64 * 1024;

/// TCP keepalive of link sockets: first probe after this much idleness, then
/// one every interval, in seconds (a dead peer is noticed in tens of
/// seconds even when nothing is written).
pub const LINK_KEEPALIVE_IDLE_S: u64 = 10;
pub const LINK_KEEPALIVE_INTERVAL_S: u64 = 5;

/// Between two looks of the gossip thread at its timers and commands, in
/// milliseconds.
pub const GOSSIP_TICK_MS: u64 = 10;

/// Between two announces to the `--join` seeds while a node has no member,
/// in milliseconds (so start-up order does not matter).
pub const GOSSIP_REJOIN_INTERVAL_MS: u64 = 1_000;

/// How long the control plane waits for the gossip thread to answer a
/// request (`caxton cluster forget`), in ms; it ticks every
/// [`GOSSIP_TICK_MS`]. Exceeded: the call answers 503.
pub const GOSSIP_ANSWER_MS: u64 = 5_000;

/// Between two reads of suspects off foca's table, in milliseconds.
pub const GOSSIP_STATE_REFRESH_MS: u64 = 100;

/// How long a member stays listed once down before this node forgets it,
/// in ms (`--cluster-reap-after`; 0 never). Our choice, 24 hours, is
/// Serf's reap time for failed members: a node down for a night's repair
/// is still named (its alert fires, its agents' callers are told "its node
/// is down"), one retired for good stops being listed by the next day.
/// Cost: a member entry and its `caxton_cluster_member_up` series while
/// listed. Exceeded: the member is forgotten, as by `caxton cluster
/// forget`: its names route nowhere (a deploy elsewhere may take them),
/// and it is heard again when it comes back.
pub const CLUSTER_MEMBER_REAP_MS: u64 = 24 * 60 * 60 * 1000;

/// Forgotten nodes whose late registry news is refused until they are
/// alive again. Cost: an address each. Exceeded: the oldest is dropped.
pub const CLUSTER_FORGOTTEN_NODES_MAX: usize = caxton_cluster::registry::FORGOTTEN_NODES_MAX;

/// Commands (publish, sync, leave) queued for the gossip thread. Exceeded:
/// the registry change is logged as lost (a resync makes it good).
pub const GOSSIP_COMMANDS_MAX: usize = 65_536;

/// The window of the p99 alert, in milliseconds (`--alert-window-ms`).
pub const ALERT_WINDOW_MS: u64 = 10_000;

/// Longest latency a histogram records, in nanoseconds (60 s); longer ones
/// are recorded as this.
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// Locked memory glommio registers per executor for its I/O buffers: at
/// least this (glommio refuses less) and at most its default (executor
/// rule 2).
pub const GLOMMIO_IO_MEMORY_BYTES_MIN: usize = 512 * 1024;
pub const GLOMMIO_IO_MEMORY_BYTES_DEFAULT: usize = 10 * 1024 * 1024;

/// Bytes the module cache (`<data-dir>/modules/`) holds at most
/// (`--module-cache-max`, default 2 GiB: compiled code is 10 to 50 times
/// its module, so a few thousand distinct SDK-sized modules). Exceeded:
/// the entries used least recently are deleted; their modules compile at
/// the next start. An undeploy deletes the entries no agent holds.
pub const MODULE_CACHE_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;

/// How long the node's route cache (`node.db`) waits on its file lock, in
/// milliseconds. Exceeded: the cache write is logged and skipped (gossip
/// refills it).
pub const CATALOG_BUSY_TIMEOUT_MS: u64 = 5_000;

/// The `caxton` CLI's connect and whole-request timeouts, in milliseconds.
/// Exceeded: the command exits 3 (unreachable) or 4 (timeout).
pub const CLI_CONNECT_TIMEOUT_MS: u64 = 5_000;
pub const CLI_REQUEST_TIMEOUT_MS: u64 = 120_000;

// The cluster core's own bounds (`caxton_cluster`, below this crate), named
// here so that every limit has one place to look.

/// Packets remembered per gossip sender against replays.
pub const GOSSIP_REPLAY_WINDOW_PACKETS: u64 = caxton_cluster::freshness::REPLAY_WINDOW;

/// Gossip senders whose replay windows are kept (about 200 bytes each); a
/// key holder names any sender it likes, so past this the least recently
/// heard is forgotten, and a member declared down is forgotten at once.
pub const GOSSIP_REPLAY_SENDERS_MAX: usize = caxton_cluster::freshness::REPLAY_SENDERS_MAX;

/// Largest cluster to which a new name is also pushed to every member.
pub const REGISTRY_DIRECT_PUSH_MEMBERS_MAX: usize = caxton_cluster::membership::DIRECT_PUSH_MEMBERS_MAX;

// ---------------------------------------------------------------- derived checks

const _: () = assert!(ENVELOPE_BYTES_MAX < i32::MAX as usize);
const _: () = assert!(NAME_BYTES_MAX <= ADDRESS_BYTES_MAX && ADDRESS_BYTES_MAX <= u8::MAX as usize, "address lengths are one byte");
const _: () = assert!(CONTENT_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(AGENT_MEMORY_BYTES_MAX >= WASM_PAGE_BYTES);
const _: () = assert!(
    MEMORY_POOL_REGION_BYTES_MAX.is_power_of_two() && MEMORY_POOL_REGION_BYTES_MAX >= WASM_PAGE_BYTES && MEMORY_POOL_BYTES_MAX >= MEMORY_POOL_REGION_BYTES_MAX,
    "a pooled region is a power-of-two number of pages, and one fits the pool"
);
const _: () = assert!(INSTANCE_BURST_MESSAGES_MAX <= TICK_MESSAGES_MAX);
const _: () = assert!(STATE_WRITES_PER_HANDLER_MAX <= STATE_BATCH_RECORDS_MAX);
const _: () = assert!(MAILBOX_MESSAGES_MAX > 0 && MESH_CHANNEL_MESSAGES_MAX > 0);
const _: () = assert!(GOSSIP_PACKET_BYTES_MAX > 512 && GOSSIP_PACKET_BYTES_MAX <= 1500, "gossip fits one MTU");
const _: () = assert!(NODE_POOL_CONNECTIONS_MAX <= NODE_LINK_CONNECTIONS_MAX);
const _: () = assert!(LINK_WRITE_BATCH_BYTES_MAX >= 4 + ENVELOPE_HEADER_BYTES + 2 * ADDRESS_BYTES_MAX);
const _: () = assert!(TOOL_RESPONSE_BYTES_MAX + 64 * 1024 <= CONTENT_BYTES_MAX, "a largest tool answer, encoded, fits a message");
const _: () = assert!(TOOL_CALLS_PER_AGENT_MAX <= TOOL_CALLS_NODE_MAX && TOOL_QUEUE_CALLS_MAX >= TOOL_CALLS_NODE_MAX);
const _: () = assert!(TOOL_RESTART_BACKOFF_MIN_MS <= TOOL_RESTART_BACKOFF_MAX_MS);
const _: () = assert!(KEYED_IDLE_MS >= KEYED_SWEEP_INTERVAL_MS && KEYED_SWEEP_MIN_MS <= KEYED_SWEEP_INTERVAL_MS && KEYED_ACTIVE_MAX > 0);
const _: () = assert!(
    BUDGET_MAILBOXES_PERMILLE
        + BUDGET_MESH_PERMILLE
        + BUDGET_LINK_OUTBOX_PERMILLE
        + BUDGET_LINK_INBOX_PERMILLE
        + BUDGET_RUNTIME_OUTBOX_PERMILLE
        + BUDGET_WIRE_OUTBOX_PERMILLE
        + BUDGET_WIRE_INGRESS_PERMILLE
        == 1000,
    "the message budget's shares add up to the whole"
);
const _: () = assert!(MAILBOX_BYTES_MAX >= ENVELOPE_BYTES_MAX && WIRE_OUTBOX_BYTES_MAX >= ENVELOPE_BYTES_MAX, "a largest message fits");
const _: () = assert!(WIRE_BATCH_BYTES_MAX >= ENVELOPE_BYTES_MAX + 4);
const _: () = assert!(MESSAGE_BUFFER_BYTES >= MESSAGE_BUFFER_BYTES_MIN);
const _: () = assert!(LINK_PENDING_HANDSHAKES_MAX > 0 && WIRE_CONNECTIONS_MAX > 0);
const _: () = assert!(AGENT_STATE_BYTES_MAX >= (STATE_KEY_BYTES_MAX + STATE_VALUE_BYTES_MAX) as u64, "one largest record fits");
const _: () = assert!(AGENT_LOG_BYTES_PER_S as usize >= LOG_LINE_BYTES_MAX, "one longest line fits a second's budget");
