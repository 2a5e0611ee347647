//! systemd's readiness protocol (`Type=notify`, sd_notify(3)): the node
//! tells its service manager when it serves, reloads its secrets and
//! stops, so `systemctl start caxton` returns once the API answers and the
//! stored agents are back, not when the process has merely started.
//!
//! Rules:
//! 1. `NOTIFY_SOCKET` is read once, at the start. Without it (outside
//!    systemd, or under `Type=exec`) nothing is sent and nothing fails.
//! 2. A notification that cannot be sent is logged, once per kind, and
//!    never stops the node: the service manager's timeout is the judge.
//! 3. The order is systemd's: `READY=1` once, after restore and after every
//!    listener serves; `RELOADING=1` (with `MONOTONIC_USEC`) then
//!    `READY=1` around each SIGHUP; `STOPPING=1` when the drain begins.
//!    Every message carries a `STATUS=` line for `systemctl status`.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where to tell systemd, if anywhere (rule 1).
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// A failure was logged (rule 2).
    failed: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (rule 1): a path, or `@name` for a socket in
    /// the abstract namespace.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|socket| match Notifier::connect(&socket) {
            Ok(target) => Some(target),
            Err(e) => {
                tracing::warn!(socket = %socket.to_string_lossy(), error = %e, "NOTIFY_SOCKET is set but unusable; systemd will not hear that the node is ready");
                None
            }
        });
        Notifier { target, failed: AtomicBool::new(false) }
    }

    fn connect(socket: &std::ffi::OsStr) -> std::io::Result<(UnixDatagram, SocketAddr)> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = socket.as_bytes();
        let address = match bytes.split_first() {
            Some((b'@', name)) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            Some((b'/', _)) => SocketAddr::from_pathname(socket)?,
            _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "neither an absolute path nor @name")),
        };
        Ok((UnixDatagram::unbound()?, address))
    }

    /// Is anyone listening (rule 1)?
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The node serves (rule 3).
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// SIGHUP: the secrets are being read again (rule 3); [`Notifier::ready`]
    /// follows.
    pub fn reloading(&self) {
        let micros = caxton_shards::clock::now_ns() / 1_000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={micros}\nSTATUS=reading the secrets again (SIGHUP)"));
    }

    /// The drain has begun (rule 3).
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining: no new work, finishing what the shards hold");
    }

    fn send(&self, message: &str) {
        let Some((socket, address)) = &self.target else { return };
        assert!(!message.is_empty() && message.lines().all(|l| l.contains('=')), "sd_notify takes VARIABLE=value lines");
        if let Err(e) = socket.send_to_addr(message.as_bytes(), address) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET); further failures are not logged");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules 1 and 3, both address forms: what is sent arrives whole.
    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier { target: Some(Notifier::connect(path.as_os_str()).unwrap()), failed: AtomicBool::new(false) };
        notifier.ready("serving");
        let mut buf = [0u8; 512];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");

        let name = format!("@caxton-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let listener = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name.as_bytes()[1..]).unwrap()).unwrap();
        let notifier = Notifier { target: Some(Notifier::connect(std::ffi::OsStr::new(&name)).unwrap()), failed: AtomicBool::new(false) };
        notifier.reloading();
        let n = listener.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC=") && text.contains("\nSTATUS="), "{text}");
    }

    /// Rules 1 and 2: no socket, a relative one, or one nobody listens on:
    /// nothing fails.
    #[test]
    fn without_a_listener_nothing_fails() {
        assert!(Notifier::connect(std::ffi::OsStr::new("relative/path")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nobody");
        let notifier = Notifier { target: Some(Notifier::connect(gone.as_os_str()).unwrap()), failed: AtomicBool::new(false) };
        notifier.stopping();
        notifier.stopping();
        assert!(notifier.failed.load(Ordering::Relaxed));
        let silent = Notifier { target: None, failed: AtomicBool::new(false) };
        assert!(!silent.enabled());
        silent.ready("x");
    }
}
