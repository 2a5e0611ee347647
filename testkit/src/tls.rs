//! A test CA and a server certificate made for one node, so that tests can
//! run the API over TLS (`--tls-cert`, `--tls-key`) and clients that trust
//! it (`--ca`, or [`TestPki::agent`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files of a node's test PKI, in its directory.
pub struct TestPki {
    /// The CA's certificate (PEM): what a client trusts.
    pub ca: PathBuf,
    /// The node's certificate (PEM) for its IP address, signed by the CA.
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
    ca_der: Vec<u8>,
}

impl TestPki {
    /// A new CA and a certificate for `ip` (its subject alternative name),
    /// written under `dir`.
    pub fn for_ip(ip: &str, dir: &Path) -> Result<TestPki, String> {
        let e = |e: rcgen::Error| e.to_string();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "caxton test CA");
        let ca_key = rcgen::KeyPair::generate().map_err(e)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(e)?;
        let params = rcgen::CertificateParams::new(vec![ip.to_string()]).map_err(e)?;
        let key = rcgen::KeyPair::generate().map_err(e)?;
        let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(e)?;
        let pki = TestPki { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem"), ca_der: ca_cert.der().to_vec() };
        let write = |p: &Path, text: String| std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()));
        write(&pki.ca, ca_cert.pem())?;
        write(&pki.cert, cert.pem())?;
        write(&pki.key, key.serialize_pem())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
        Ok(pki)
    }

    /// An HTTP client that trusts this CA only.
    pub fn agent(&self) -> ureq::Agent {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(self.ca_der.clone())).expect("the test CA parses");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        ureq::AgentBuilder::new().tls_config(Arc::new(config)).build()
    }
}
