//! TLS served by keyledger itself, for deployments without a terminating
//! proxy (seed 004 refuses plain HTTP): a certificate chain and its private
//! key, both PEM files, loaded at start-up. rustls on ring; TLS 1.2 and
//! 1.3; HTTP/1.1 inside.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate chain {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot read the TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the TLS certificate and key do not make a server configuration: {0}")]
    Config(String),
    #[error("KEYLEDGER_TLS_CERT and KEYLEDGER_TLS_KEY go together: give both or neither")]
    HalfConfigured,
}

/// An acceptor for the chain in `cert` and the key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certificate_error = |reason: String| TlsError::Certificate { path: cert.display().to_string(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| certificate_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| certificate_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(certificate_error("no certificate in the file".to_owned()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key.display().to_string(), reason: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
