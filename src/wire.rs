//! The wire listener (`--wire ADDR`): a binary, length-prefixed stream of
//! envelopes for clients that send many messages, such as the load test.
//! The REST API stays the control plane; this is a data plane.
//!
//! Protocol (all integers little-endian):
//! 1. Every frame is `u32 length` then `length` bytes; a frame longer than
//!    an envelope can be closes the connection.
//! 2. The client's first frame is `caxton-wire/2` (or `caxton-wire/1`),
//!    followed by ` TOKEN` when the node has an API token, within
//!    `--wire-hello-timeout-ms`. The node answers `caxton-wire/2 ok NAME`
//!    (with the version asked), where NAME (`@wire/<n>`) is the connection's
//!    sender name; a wrong or late hello gets `caxton-wire/2 refused: why`
//!    and the connection is closed. Past `--wire-connections-max` open
//!    connections, a new one is refused the same way at once.
//! 3. Then each client frame is an envelope, of ABI version 2 or 1. The node
//!    sets its sender to NAME and assigns its `message_id`, and routes it
//!    like an agent's send. Messages to NAME come back as envelope frames of
//!    the version the hello named; a message version 1 cannot say (a
//!    performative it lacks) is not sent to a version 1 client, and is
//!    counted (`caxton_runtime_undeliverable_total{kind="wire"}`).
//! 4. A message that cannot be routed (unknown receiver, malformed, its
//!    receiver's node down) is answered at once by a `failure` envelope
//!    from `@node`, with `in_reply_to` set to its `reply_with` and the
//!    reason as content (`unknown_receiver`, `node_down`, or the envelope's
//!    fault). A busy receiver is not an error: the node retries, and stops
//!    reading the socket meanwhile, so back-pressure reaches the client
//!    through TCP. Nothing is dropped. Later failures (a crash, a timeout)
//!    come as failure notices like anyone's.
//! 5. Bytes are bounded: frames read and not yet in a mailbox hold permits
//!    of the node's wire ingress budget (a share of `--message-buffer-size`),
//!    taken before a frame's body is read; a connection that must wait for
//!    permits first hands over what it holds, so waiting never holds any.
//!    A batch holds at most [`WIRE_BATCH_BYTES_MAX`].
//! 6. With `--tls-cert` and `--tls-key`, the listener speaks TLS (the API's
//!    certificate), the handshake within `--wire-hello-timeout-ms`; a
//!    failed one is counted as a refusal. A non-loopback wire listener with
//!    a token refuses to start without TLS, as the API does: the token in
//!    the hello would cross the network in cleartext. The node's tokens
//!    are the API's, rotation included (`secret` rule 5).
//! 7. Until its hello is taken, a connection holds a place of its own
//!    bounded pool ([`WIRE_PENDING_MAX`], at most
//!    [`WIRE_PENDING_PER_SOURCE_MAX`] from one address; `pending`), not one
//!    of `--wire-connections-max`, and its first byte is due within
//!    [`WIRE_FIRST_BYTES_TIMEOUT_MS`]: keyless clients cannot hold the
//!    places of clients that said hello.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caxton_abi::failure::FailureReason;
use caxton_shards::envelope::{Header, Message, Performative};
use caxton_shards::limits::{
    ACCEPT_RETRY_MS, ENVELOPE_BYTES_MAX, WIRE_BATCH_BYTES_MAX, WIRE_BATCH_MESSAGES_MAX, WIRE_BUFFER_BYTES, WIRE_FIRST_BYTES_TIMEOUT_MS, WIRE_HELLO_BYTES_MAX,
    WIRE_NOTICE_WAIT_MAX_MS, WIRE_PENDING_MAX, WIRE_PENDING_PER_SOURCE_MAX, WIRE_RETRY_PAUSE_MAX_US, WIRE_RETRY_PAUSE_MIN_US,
};
use caxton_shards::names::{NODE_SENDER, WIRE_NAME_PREFIX};
use caxton_shards::pending::{PendingLimits, PendingPlace, PendingPlaces};
use caxton_shards::router::RouteError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::control::{Control, Phase, WireOutbox};
use crate::secret::ApiTokens;

/// The protocol's hello, by the envelope version spoken (rule 2).
pub const HELLO: &str = "caxton-wire/2";
pub const HELLO_V1: &str = "caxton-wire/1";

/// The wire listener's bounds (`ListenerLimits`), and its ingress budget.
pub struct WireLimits {
    pub hello_timeout: Duration,
    pub connections_max: usize,
    /// Bytes of frames read and not yet taken by the shards (rule 5).
    pub ingress_bytes: usize,
}

/// Serves the wire listener. With `tls`, every connection is TLS first,
/// its handshake bounded by the hello timeout (rule 6).
pub async fn serve(control: Arc<Control>, listener: TcpListener, tokens: ApiTokens, tls: Option<TlsAcceptor>, limits: WireLimits) {
    let open = Arc::new(AtomicUsize::new(0));
    let ingress = Arc::new(Semaphore::new(limits.ingress_bytes));
    let pending =
        Arc::new(std::sync::Mutex::new(PendingPlaces::new(PendingLimits { max: WIRE_PENDING_MAX, per_source_max: WIRE_PENDING_PER_SOURCE_MAX, reserved: 0 })));
    let limits = Arc::new(limits);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Rule 7: a place among those that have not said hello.
                let place = match PendingPlace::take(&pending, peer.ip()) {
                    Ok(place) => place,
                    Err(refusal) => {
                        control.wire_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, reason = refusal.label(), "wire connection refused before its hello");
                        continue; // dropping `stream` closes it
                    }
                };
                let _ = stream.set_nodelay(true);
                let (control, tokens, open, ingress, limits, tls) =
                    (control.clone(), tokens.clone(), open.clone(), ingress.clone(), limits.clone(), tls.clone());
                tokio::spawn(async move {
                    let first = tokio::time::timeout(Duration::from_millis(WIRE_FIRST_BYTES_TIMEOUT_MS), stream.readable()).await;
                    if !matches!(first, Ok(Ok(()))) {
                        control.wire_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "wire connection silent past its first-byte bound");
                        return;
                    }
                    let result = match tls {
                        None => {
                            let (rd, wr) = stream.into_split();
                            serve_one(control, rd, wr, place, &open, tokens, &limits, ingress).await
                        }
                        Some(acceptor) => match tokio::time::timeout(limits.hello_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let (rd, wr) = tokio::io::split(stream);
                                serve_one(control, rd, wr, place, &open, tokens, &limits, ingress).await
                            }
                            Ok(Err(e)) => {
                                control.wire_refused.fetch_add(1, Ordering::Relaxed);
                                Err(std::io::Error::other(format!("TLS handshake failed: {e}")))
                            }
                            Err(_) => {
                                control.wire_refused.fetch_add(1, Ordering::Relaxed);
                                Err(std::io::Error::other("no TLS handshake within the hello timeout"))
                            }
                        },
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "wire connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "wire accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}

/// Gives an open connection's place back when the connection ends.
struct OpenPlace<'a>(&'a AtomicUsize);

impl Drop for OpenPlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection, plain or TLS: its hello, then, if there is room among
/// the open connections, the connection itself (rules 2 and 7).
#[allow(clippy::too_many_arguments, reason = "one connection's parts, each used once")]
async fn serve_one<R, W>(
    control: Arc<Control>,
    rd: R,
    wr: W,
    place: PendingPlace,
    open: &AtomicUsize,
    tokens: ApiTokens,
    limits: &WireLimits,
    ingress: Arc<Semaphore>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut rd = BufReader::with_capacity(WIRE_BUFFER_BYTES, rd);
    let mut wr = BufWriter::with_capacity(WIRE_BUFFER_BYTES, wr);
    let said = match tokio::time::timeout(limits.hello_timeout, hello(&mut rd, &tokens)).await {
        Ok(said) => said,
        Err(_) => Err(format!("no hello within {} ms", limits.hello_timeout.as_millis())),
    };
    drop(place); // it said hello, or it is refused: its pending place is free
    let over = open.fetch_add(1, Ordering::Relaxed) >= limits.connections_max;
    let _open = OpenPlace(open);
    let refused = match (said, over) {
        (Err(why), _) => Err(why),
        (Ok(_), true) => Err(format!("the node holds --wire-connections-max {} connections; retry later", limits.connections_max)),
        (Ok(version), false) => Ok(version),
    };
    match refused {
        Ok(version) => connection(control, rd, wr, version, ingress).await,
        Err(why) => {
            control.wire_refused.fetch_add(1, Ordering::Relaxed);
            write_frame(&mut wr, format!("{HELLO} refused: {why}").as_bytes()).await?;
            wr.flush().await?;
            wr.shutdown().await
        }
    }
}

/// Reads a frame's length prefix; `None` at a clean end of stream.
async fn read_len<R: AsyncReadExt + Unpin>(r: &mut R, max: usize) -> std::io::Result<Option<usize>> {
    let len = match r.read_u32_le().await {
        Ok(n) => n as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {len} bytes is over {max}")));
    }
    Ok(Some(len))
}

async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_u32_le(bytes.len() as u32).await?;
    w.write_all(bytes).await
}

fn failure(to: &str, about: &Header, reason: &str) -> Message {
    let header = Header {
        performative: Performative::Failure.code(),
        conversation_id: about.conversation_id,
        in_reply_to: about.reply_with,
        trace: about.trace,
        ..Header::default()
    };
    Message::encode(&header, NODE_SENDER.as_bytes(), to.as_bytes(), reason.as_bytes()).expect("a valid failure notice")
}

/// The hello (rule 2): the version it asks for, or why it is refused.
async fn hello<R: AsyncReadExt + Unpin>(rd: &mut R, tokens: &ApiTokens) -> Result<&'static str, String> {
    let len = read_len(rd, WIRE_HELLO_BYTES_MAX).await.map_err(|e| e.to_string())?.ok_or("closed before its hello")?;
    let mut frame = vec![0u8; len];
    rd.read_exact(&mut frame).await.map_err(|e| e.to_string())?;
    let hello = String::from_utf8_lossy(&frame);
    let (version, given) = match [HELLO, HELLO_V1].into_iter().find_map(|h| Some((h, hello.strip_prefix(h)?))) {
        Some((h, rest)) if rest.is_empty() || rest.starts_with(' ') => (h, rest.trim()),
        _ => return Err(format!("expected {HELLO} (or {HELLO_V1})")),
    };
    if tokens.required() && !tokens.accepts(given) {
        return Err("missing or wrong token".into());
    }
    Ok(version)
}

async fn connection<R, W>(
    control: Arc<Control>,
    mut rd: BufReader<R>,
    mut wr: BufWriter<W>,
    version: &'static str,
    ingress: Arc<Semaphore>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (id, outbox, mut rx) = control.register_wire();
    let name = format!("{WIRE_NAME_PREFIX}{id}");
    write_frame(&mut wr, format!("{version} ok {name}").as_bytes()).await?;
    wr.flush().await?;
    let counter = control.clone();
    let v1 = version == HELLO_V1;
    let writer = tokio::spawn(async move {
        let mut down = Vec::new();
        while let Some(held) = rx.recv().await {
            write_message(&mut wr, held.message(), v1, &mut down, &counter).await?;
            drop(held); // gone: its bytes leave the budget
            while let Ok(held) = rx.try_recv() {
                write_message(&mut wr, held.message(), v1, &mut down, &counter).await?;
            }
            wr.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });
    // A stopped node closes the connection, after the writer has flushed
    // what is due to it (control `drain` rule 1).
    let mut phase = control.phase();
    let result = tokio::select! {
        r = read_loop(&control, &mut rd, &name, &outbox, &ingress) => r,
        _ = phase.wait_for(|p| *p >= Phase::Stopped) => Ok(()),
    };
    control.unregister_wire(id);
    drop(outbox);
    let _ = writer.await;
    result
}

/// Writes a message to the client, in version 1 (into `down`, reused) if
/// its hello asked for it (rule 3).
async fn write_message<W: AsyncWriteExt + Unpin>(wr: &mut W, m: &Message, v1: bool, down: &mut Vec<u8>, control: &Control) -> std::io::Result<()> {
    let bytes = if v1 {
        if m.downgrade_into(down).is_err() {
            control.undeliverable_wire.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        &down[..]
    } else {
        m.as_bytes()
    };
    write_frame(wr, bytes).await?;
    control.wire_sent_bytes.fetch_add(4 + bytes.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// What a connection has read and not yet handed over (rule 5).
struct Batch {
    by_shard: Vec<Vec<Message>>,
    bytes: usize,
    permits: Option<OwnedSemaphorePermit>,
}

impl Batch {
    fn keep(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.permits {
            Some(p) => p.merge(permit),
            None => self.permits = Some(permit),
        }
    }
}

async fn read_loop<R: AsyncReadExt + Unpin>(
    control: &Control,
    rd: &mut BufReader<R>,
    name: &str,
    outbox: &WireOutbox,
    ingress: &Arc<Semaphore>,
) -> std::io::Result<()> {
    let mut batch = Batch { by_shard: (0..control.shard_count()).map(|_| Vec::new()).collect(), bytes: 0, permits: None };
    loop {
        // Read what has arrived, up to a batch; block only for the first frame.
        let mut taken = 0;
        loop {
            let Some(len) = read_len(rd, ENVELOPE_BYTES_MAX).await? else {
                flush(control, &mut batch, name, outbox).await;
                return Ok(());
            };
            // Rule 5: permits before the bytes; never wait while holding some.
            let permit = match ingress.clone().try_acquire_many_owned(len.max(1) as u32) {
                Ok(p) => p,
                Err(_) => {
                    flush(control, &mut batch, name, outbox).await;
                    ingress.clone().acquire_many_owned(len.max(1) as u32).await.expect("the semaphore is never closed")
                }
            };
            let mut frame = vec![0u8; len];
            rd.read_exact(&mut frame).await?;
            batch.keep(permit);
            control.wire_received_bytes.fetch_add(4 + len as u64, Ordering::Relaxed);
            match control.wire_message(name, frame) {
                Ok((shard, m)) => {
                    batch.bytes += m.len();
                    batch.by_shard[shard].push(m);
                }
                Err(refusal) => {
                    let (header, why) = *refusal;
                    let notice = failure(name, &header, &why);
                    if let Err(notice) = try_notify(control, outbox, notice) {
                        // Rule 5: hand over what is held before waiting.
                        flush(control, &mut batch, name, outbox).await;
                        notify(control, outbox, notice).await;
                    }
                }
            }
            taken += 1;
            if taken >= WIRE_BATCH_MESSAGES_MAX || batch.bytes >= WIRE_BATCH_BYTES_MAX || rd.buffer().len() < 4 {
                break;
            }
        }
        flush(control, &mut batch, name, outbox).await;
    }
}

/// Queues a failure notice for the client if its outbox has room, in count
/// and in bytes; hands it back if not.
fn try_notify(control: &Control, outbox: &WireOutbox, notice: Message) -> Result<(), Message> {
    if !control.wire_has_room(outbox, notice.len()) {
        return Err(notice);
    }
    let held = caxton_shards::runtime_outbox::Held::counted(notice, vec![outbox.bytes.clone(), control.wire_bytes.clone()]);
    match outbox.tx.try_send(held) {
        Ok(()) => Ok(()),
        Err(tokio::sync::mpsc::error::TrySendError::Full(held)) => Err(held.into_message()),
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Ok(()), // the connection is ending
    }
}

/// Waits for room in the client's outbox (it reads, or the connection
/// ends), then queues the notice. Called holding no ingress permits (rule
/// 5): a client that does not read its notices stops its own reads (TCP
/// back-pressure), and its notices stay within the wire outboxes' bytes,
/// so it costs no one else room.
async fn notify(control: &Control, outbox: &WireOutbox, mut notice: Message) {
    let mut pause = Duration::from_micros(WIRE_RETRY_PAUSE_MIN_US);
    loop {
        match try_notify(control, outbox, notice) {
            Ok(()) => return,
            Err(_) if outbox.tx.is_closed() => return,
            Err(back) => notice = back,
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(WIRE_NOTICE_WAIT_MAX_MS));
    }
}

/// Hands each shard its batch; retries what was busy until taken. Then the
/// batch's permits go back (rule 5), and only then does it wait for room
/// for the failure notices of messages no shard could route.
async fn flush(control: &Control, batch: &mut Batch, name: &str, outbox: &WireOutbox) {
    let mut waiting = Vec::new();
    for (shard, messages) in batch.by_shard.iter_mut().enumerate() {
        let mut pending = std::mem::take(messages);
        let mut pause = Duration::from_micros(WIRE_RETRY_PAUSE_MIN_US);
        while !pending.is_empty() {
            let refused = match control.inject(shard, pending).await {
                Ok(r) => r,
                Err(back) => back.into_iter().map(|m| (RouteError::Busy, m)).collect(),
            };
            pending = Vec::new();
            for (why, m) in refused {
                let reason = match why {
                    // Drain rule 1: once the node drains, a frame read but not
                    // yet taken is refused like one read now, so a reader
                    // never sits on it until the stop drops it unanswered.
                    RouteError::Busy if control.draining() => FailureReason::NodeDown,
                    RouteError::Busy => {
                        pending.push(m);
                        continue;
                    }
                    RouteError::UnknownReceiver => FailureReason::UnknownReceiver,
                    RouteError::Unreachable => FailureReason::NodeDown,
                };
                if let Err(notice) = try_notify(control, outbox, failure(name, &m.header(), reason.as_str())) {
                    waiting.push(notice);
                }
            }
            if !pending.is_empty() {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_micros(WIRE_RETRY_PAUSE_MAX_US));
            }
        }
    }
    batch.bytes = 0;
    batch.permits = None;
    assert!(waiting.len() <= WIRE_BATCH_MESSAGES_MAX, "at most one notice a message of the batch");
    for notice in waiting {
        notify(control, outbox, notice).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn frame(bytes: &[u8]) -> Vec<u8> {
        [(bytes.len() as u32).to_le_bytes().as_slice(), bytes].concat()
    }

    #[test]
    fn a_hello_names_the_protocol_and_the_token() {
        let token = ApiTokens::new(Some("secret".to_string()), None);
        assert_eq!(block_on(hello(&mut &frame(b"caxton-wire/1 secret")[..], &token)), Ok(HELLO_V1));
        assert_eq!(block_on(hello(&mut &frame(b"caxton-wire/2 secret")[..], &token)), Ok(HELLO));
        assert!(block_on(hello(&mut &frame(b"caxton-wire/1 other")[..], &token)).is_err());
        assert!(block_on(hello(&mut &frame(b"caxton-wire/2")[..], &ApiTokens::default())).is_ok());
        assert!(block_on(hello(&mut &frame(b"caxton-wire/22")[..], &ApiTokens::default())).is_err());
        assert!(block_on(hello(&mut &frame(b"caxton-wire/3")[..], &ApiTokens::default())).is_err());
        assert!(block_on(hello(&mut &frame(b"GET / HTTP/1.1")[..], &ApiTokens::default())).is_err());
        assert!(block_on(hello(&mut &frame(&[b'x'; WIRE_HELLO_BYTES_MAX + 1])[..], &ApiTokens::default())).is_err(), "a hello is short");
    }

    mod fuzz {
        use super::*;

        proptest! {
            #![proptest_config(caxton_cluster::fuzz::config(512))]

            /// A first frame of any bytes: a hello or a refusal, never a panic.
            #[test]
            fn any_opening_is_a_hello_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..300), framed in any::<bool>(), token in proptest::option::of("[a-z]{1,8}")) {
                let input = if framed { frame(&bytes) } else { bytes.clone() };
                if block_on(hello(&mut &input[..], &ApiTokens::new(token.clone(), None))).is_ok() {
                    prop_assert!(framed && (bytes.starts_with(HELLO.as_bytes()) || bytes.starts_with(HELLO_V1.as_bytes())));
                }
            }

            /// Length prefixes of any bytes: within the bound, or an error.
            #[test]
            fn frame_lengths_are_bounded(bytes in prop::collection::vec(any::<u8>(), 0..8)) {
                if let Ok(Some(len)) = block_on(read_len(&mut &bytes[..], ENVELOPE_BYTES_MAX)) {
                    prop_assert!(len <= ENVELOPE_BYTES_MAX);
                }
            }
        }
    }
}
