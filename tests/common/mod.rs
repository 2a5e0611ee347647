//! What every integration test file shares: the harness of `caxton-testkit`
//! (a real `caxton serve` process per node), and the binary under test.
#![allow(dead_code, unused_imports)]

pub use caxton_testkit::wire;
pub use caxton_testkit::{answer, answer_or_gone, eventually, example_agent, free_cluster_port, promtool_check, repo_path, Node};

/// The `caxton` binary these tests run (the same one `Node` starts).
pub const BIN: &str = env!("CARGO_BIN_EXE_caxton");

/// The client side of a link handshake with `ring`, as node `127.0.0.9:9`
/// (`caxton_cluster::session`); `forge` alters its first record, which a
/// server must then refuse.
pub fn link_client(addr: &str, ring: &caxton_cluster::KeyRing, forge: bool) -> (std::net::TcpStream, caxton_cluster::session::Session) {
    use caxton_cluster::session;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let (pending, hello) = session::client_hello(ring, session::Mode::Sealed);
    s.write_all(&hello).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut answer = vec![0u8; u16::from_le_bytes(len) as usize];
    s.read_exact(&mut answer).unwrap();
    let (session, mut confirm) = pending.finish(&answer, addr, "127.0.0.9:9").unwrap();
    if forge {
        *confirm.last_mut().unwrap() ^= 1;
    }
    s.write_all(&confirm).unwrap();
    (s, session)
}
