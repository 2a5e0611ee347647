//! A blocking client of a node's wire listener (docs/WIRE.md): frames are
//! a little-endian `u32` length and the bytes; the first one is the hello.
//! The one wire client of the load test and the tests.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpStream;

use caxton_abi::{encode_into, encoded_len, Envelope, Header, ENVELOPE_BYTES_MAX};

/// The hello of the wire protocol this client speaks: version 2 envelopes
/// both ways (docs/WIRE.md).
pub const HELLO: &str = "caxton-wire/2";

/// Buffered bytes each way.
const BUFFER_BYTES: usize = 256 * 1024;

pub struct WireReader(BufReader<TcpStream>);

pub struct WireWriter {
    out: BufWriter<TcpStream>,
    /// Reused to encode envelopes: sending allocates nothing.
    scratch: Vec<u8>,
}

/// Connects and says hello; returns the two halves, our sender name, and
/// a handle to shut the connection down.
pub fn connect(addr: &str, token: Option<&str>) -> std::io::Result<(WireReader, WireWriter, String, TcpStream)> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut w = WireWriter { out: BufWriter::with_capacity(BUFFER_BYTES, stream.try_clone()?), scratch: Vec::new() };
    let mut r = WireReader(BufReader::with_capacity(BUFFER_BYTES, stream));
    let hello = match token {
        Some(t) => format!("{HELLO} {t}"),
        None => HELLO.to_string(),
    };
    w.frame(hello.as_bytes())?;
    w.flush()?;
    let answer = r.frame()?.ok_or_else(|| std::io::Error::other("closed during hello"))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    match answer.strip_prefix(&format!("{HELLO} ok ")) {
        Some(name) => {
            let handle = r.0.get_ref().try_clone()?;
            Ok((r, w, name.to_string(), handle))
        }
        None => Err(std::io::Error::other(answer)),
    }
}

/// Writes one frame to any writer.
pub fn write_frame(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(&(bytes.len() as u32).to_le_bytes())?;
    w.write_all(bytes)
}

/// Reads one frame from any reader; `None` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > ENVELOPE_BYTES_MAX {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

impl WireWriter {
    pub fn frame(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write_frame(&mut self.out, bytes)
    }

    /// Sends an envelope to `receiver` (the node sets the sender and id).
    pub fn send(&mut self, header: &Header, receiver: &[u8], content: &[u8]) -> std::io::Result<()> {
        self.scratch.resize(encoded_len(header, b"", receiver, content), 0);
        let n =
            encode_into(&mut self.scratch, header, b"", receiver, content).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        write_frame(&mut self.out, &self.scratch[..n])
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl WireReader {
    /// The next frame, or `None` at end of stream.
    pub fn frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        read_frame(&mut self.0)
    }

    /// The next frame, checked to be an envelope; `None` at end of stream.
    pub fn envelope(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        match self.frame()? {
            None => Ok(None),
            Some(bytes) => match Envelope::parse(&bytes) {
                Ok(_) => Ok(Some(bytes)),
                Err(e) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
            },
        }
    }
}
