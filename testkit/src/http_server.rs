//! A small real HTTP/1.1 server on loopback for the tool tests: a thread
//! per connection, every request recorded (method, path, headers), and
//! routes that behave as good and hostile HTTP tools do:
//!
//! - `/ok`: 200 `hello`;
//! - `/bin`: 200 with 256 bytes that are not UTF-8;
//! - `/slow/MS`: 200 `slept` after MS milliseconds;
//! - `/big`: 200 with 100 MB, no length, streamed until the peer goes;
//! - `/redirect-in`: 302 to `/ok`; `/redirect-out`: 302 to another origin;
//! - `/headers`: 200 with the request's headers, one `name: value` a line;
//! - anything else: 404.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server read it (header names in lower case).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub struct HttpServer {
    pub addr: std::net::SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// Bytes `/big` sends (100 MB).
pub const BIG_BYTES: usize = 100 * 1024 * 1024;

impl HttpServer {
    /// Starts on `ip` (a 127.0.0.0/8 address), on a free port.
    pub fn start(ip: &str) -> HttpServer {
        let listener = TcpListener::bind((ip, 0)).expect("a loopback port");
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, addr, &record);
                });
            }
        });
        HttpServer { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, me: std::net::SocketAddr, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let length: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let request = Seen { method, path: path.clone(), headers, body };
        seen.lock().unwrap().push(request.clone());
        let respond = |out: &mut TcpStream, status: &str, extra: &str, body: &[u8]| -> std::io::Result<()> {
            write!(out, "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra}\r\n", body.len())?;
            out.write_all(body)?;
            out.flush()
        };
        match path.as_str() {
            "/ok" => respond(&mut out, "200 OK", "content-type: text/plain\r\n", b"hello")?,
            "/bin" => respond(&mut out, "200 OK", "", &(0..=255u8).collect::<Vec<_>>())?,
            "/redirect-in" => respond(&mut out, "302 Found", "location: /ok\r\n", b"")?,
            "/redirect-out" => respond(&mut out, "302 Found", &format!("location: http://127.0.0.9:{}/ok\r\n", me.port()), b"")?,
            "/headers" => {
                let text: String = request.headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
                respond(&mut out, "200 OK", "", text.as_bytes())?
            }
            "/big" => {
                // No length: the body runs until the connection closes.
                write!(out, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")?;
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < BIG_BYTES {
                    out.write_all(&chunk)?;
                    sent += chunk.len();
                }
                return Ok(());
            }
            p if p.starts_with("/slow/") => {
                let ms: u64 = p["/slow/".len()..].parse().unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                respond(&mut out, "200 OK", "", b"slept")?
            }
            _ => respond(&mut out, "404 Not Found", "", b"")?,
        }
    }
}
