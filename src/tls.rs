//! TLS for the REST API (rustls, with the `ring` provider): the node's
//! certificate and key from PEM files, and the CLI's trust in a private CA.
//!
//! Rules:
//! 1. `--tls-cert` and `--tls-key` come together; both are read and checked
//!    at start (a bad file stops the node with its path, never a later
//!    handshake failure).
//! 2. A handshake has the API's header time bound: a peer that opens a
//!    connection and never finishes its handshake holds a place no longer
//!    than one that never sends a request head.
//! 3. An API on a non-loopback address must have TLS: its bearer token
//!    would otherwise cross the network in cleartext (`node::serve`
//!    refuses to start).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The API's server configuration from `--tls-cert` (a PEM chain, the
/// node's certificate first) and `--tls-key` (its PEM private key).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = certificates(cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert and --tls-key do not make a usable pair: {e}"))?;
    Ok(Arc::new(config))
}

/// The CLI's client configuration: trust the CA certificates in `ca`
/// (`--ca`, a private CA). Without `--ca` the CLI trusts ureq's
/// well-known public roots.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca, "--ca")? {
        roots.add(cert).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
