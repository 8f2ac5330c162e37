//! TLS served by keyledger itself, for deployments without a terminating
//! proxy (seed 004 refuses plain HTTP): a certificate chain and its private
//! key, both PEM files, loaded at start-up. rustls on ring; TLS 1.2 and
//! 1.3; HTTP/1.1 inside.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate chain {path}")]
    Certificate {
        path: String,
        #[source]
        source: pem::Error,
    },
    #[error("the TLS certificate chain {path} holds no certificate")]
    NoCertificate { path: String },
    #[error("cannot read the TLS private key {path}")]
    Key {
        path: String,
        #[source]
        source: pem::Error,
    },
    #[error("the TLS certificate and key do not make a server configuration")]
    Config(#[source] rustls::Error),
    #[error("KEYLEDGER_TLS_CERT and KEYLEDGER_TLS_KEY go together: give both or neither")]
    HalfConfigured,
}

/// An acceptor for the chain in `cert` and the key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certificate_error = |source: pem::Error| TlsError::Certificate { path: cert.display().to_string(), source };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(certificate_error)?
        .collect::<Result<_, _>>()
        .map_err(certificate_error)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.display().to_string() });
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|source| TlsError::Key { path: key.display().to_string(), source })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
