//! The wire listener (`--wire ADDR`): a binary, length-prefixed stream of
//! envelopes for clients that send many messages, such as the load test.
//! The REST API stays the control plane; this is a data plane.
//!
//! Protocol (all integers little-endian):
//! 1. Every frame is `u32 length` then `length` bytes; a frame longer than
//!    an envelope can be closes the connection.
//! 2. The client's first frame is `caxton-wire/1`, followed by ` TOKEN` when
//!    the node has an API token. The node answers `caxton-wire/1 ok NAME`,
//!    where NAME (`@wire/<n>`) is the connection's sender name; a wrong hello
//!    gets `caxton-wire/1 refused: why` and the connection is closed.
//! 3. Then each client frame is an ABI v1 envelope. The node sets its sender
//!    to NAME and assigns its `message_id`, and routes it like an agent's
//!    send. Messages to NAME come back as envelope frames.
//! 4. A message that cannot be routed (unknown receiver, malformed) is
//!    answered by a `failure` envelope from `@node`, with `in_reply_to` set
//!    to its `reply_with` and the reason as content. A busy receiver is not
//!    an error: the node retries, and stops reading the socket meanwhile, so
//!    back-pressure reaches the client through TCP. Nothing is dropped.

use std::sync::Arc;
use std::time::Duration;

use caxton_shards::envelope::{Header, Message};
use caxton_shards::limits::ENVELOPE_BYTES_MAX;
use caxton_shards::router::RouteError;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpListener;

use crate::control::Control;

pub const HELLO: &str = "caxton-wire/1";
/// Envelopes read before they are handed to the shards as one batch.
const BATCH_MESSAGES_MAX: usize = 512;

pub async fn serve(control: Arc<Control>, listener: TcpListener, token: Option<String>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let (control, token) = (control.clone(), token.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(control, stream, token).await {
                        tracing::debug!(%peer, error = %e, "wire connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "wire accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let len = match r.read_u32_le().await {
        Ok(n) => n as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    };
    if len > ENVELOPE_BYTES_MAX {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {len} bytes is over {ENVELOPE_BYTES_MAX}")));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(true)
}

async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_u32_le(bytes.len() as u32).await?;
    w.write_all(bytes).await
}

fn failure(to: &str, about: &Header, reason: &str) -> Message {
    let header = Header { performative: 9, message_id: 0, conversation_id: about.conversation_id, reply_with: 0, in_reply_to: about.reply_with };
    Message::encode(&header, b"@node", to.as_bytes(), reason.as_bytes()).expect("a valid failure notice")
}

async fn connection(control: Arc<Control>, stream: tokio::net::TcpStream, token: Option<String>) -> std::io::Result<()> {
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let mut wr = BufWriter::with_capacity(256 * 1024, wr);
    let mut frame = Vec::new();
    if !read_frame(&mut rd, &mut frame).await? {
        return Ok(());
    }
    let hello = String::from_utf8_lossy(&frame).into_owned();
    let given = hello.strip_prefix(HELLO).map(|rest| rest.trim());
    let refusal = match (given, &token) {
        (None, _) => Some(format!("expected {HELLO}")),
        (Some(t), Some(want)) if t != want => Some("missing or wrong token".to_string()),
        _ => None,
    };
    if let Some(why) = refusal {
        write_frame(&mut wr, format!("{HELLO} refused: {why}").as_bytes()).await?;
        wr.flush().await?;
        return Ok(());
    }
    let (id, mut outbox) = control.register_wire();
    let name = format!("@wire/{id}");
    write_frame(&mut wr, format!("{HELLO} ok {name}").as_bytes()).await?;
    wr.flush().await?;
    let notices = control.wire_sender(id).expect("just registered");
    let counter = control.clone();
    let writer = tokio::spawn(async move {
        let sent = |m: &Message| counter.wire_sent_bytes.fetch_add(4 + m.len() as u64, std::sync::atomic::Ordering::Relaxed);
        while let Some(m) = outbox.recv().await {
            write_frame(&mut wr, m.as_bytes()).await?;
            sent(&m);
            while let Ok(m) = outbox.try_recv() {
                write_frame(&mut wr, m.as_bytes()).await?;
                sent(&m);
            }
            wr.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });
    let result = read_loop(&control, &mut rd, &name, &notices).await;
    control.unregister_wire(id);
    drop(notices);
    let _ = writer.await;
    result
}

async fn read_loop<R: AsyncReadExt + Unpin>(
    control: &Control,
    rd: &mut BufReader<R>,
    name: &str,
    notices: &tokio::sync::mpsc::Sender<Message>,
) -> std::io::Result<()> {
    let mut frame = Vec::new();
    let mut batches: Vec<Vec<Message>> = (0..control.shard_count()).map(|_| Vec::new()).collect();
    loop {
        // Read what has arrived, up to a batch; block only for the first frame.
        let mut taken = 0;
        loop {
            if !read_frame(rd, &mut frame).await? {
                flush(control, &mut batches, name, notices).await;
                return Ok(());
            }
            control.wire_received_bytes.fetch_add(4 + frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
            match control.wire_message(name, std::mem::take(&mut frame)) {
                Ok((shard, m)) => batches[shard].push(m),
                Err((header, why)) => {
                    let _ = notices.send(failure(name, &header, &why)).await;
                }
            }
            taken += 1;
            if taken >= BATCH_MESSAGES_MAX || rd.buffer().len() < 4 {
                break;
            }
        }
        flush(control, &mut batches, name, notices).await;
    }
}

/// Hands each shard its batch; retries what was busy until taken.
async fn flush(control: &Control, batches: &mut [Vec<Message>], name: &str, notices: &tokio::sync::mpsc::Sender<Message>) {
    for (shard, batch) in batches.iter_mut().enumerate() {
        let mut pending = std::mem::take(batch);
        let mut pause = Duration::from_micros(50);
        while !pending.is_empty() {
            let refused = match control.inject(shard, pending).await {
                Ok(r) => r,
                Err(back) => back.into_iter().map(|m| (RouteError::Busy, m)).collect(),
            };
            pending = Vec::new();
            for (why, m) in refused {
                match why {
                    RouteError::Busy => pending.push(m),
                    RouteError::UnknownReceiver | RouteError::Unreachable => {
                        let text = format!("unknown receiver {}", String::from_utf8_lossy(m.receiver()));
                        let _ = notices.send(failure(name, &m.header(), &text)).await;
                    }
                }
            }
            if !pending.is_empty() {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(5));
            }
        }
    }
}
