//! A blocking client of the node's wire listener (docs/WIRE.md): frames are
//! a little-endian `u32` length and the bytes.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpStream;

use caxton_shards::envelope::Message;

pub const HELLO: &str = "caxton-wire/1";

pub struct WireReader(BufReader<TcpStream>);
pub struct WireWriter(BufWriter<TcpStream>);

/// Connects and says hello; returns the two halves, our sender name, and
/// a handle to shut the connection down.
pub fn connect(addr: &str, token: Option<&str>) -> std::io::Result<(WireReader, WireWriter, String, TcpStream)> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut w = WireWriter(BufWriter::with_capacity(256 * 1024, stream.try_clone()?));
    let mut r = WireReader(BufReader::with_capacity(256 * 1024, stream));
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

impl WireWriter {
    pub fn frame(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.0.write_all(bytes)
    }

    pub fn send(&mut self, m: &Message) -> std::io::Result<()> {
        self.frame(m.as_bytes())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl WireReader {
    /// The next frame, or `None` at end of stream.
    pub fn frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        match self.0.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
        self.0.read_exact(&mut buf)?;
        Ok(Some(buf))
    }

    pub fn message(&mut self) -> std::io::Result<Option<Message>> {
        match self.frame()? {
            None => Ok(None),
            Some(bytes) => Message::decode(bytes).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}
