//! TLS for the metrics listener: a self-signed certificate made in memory at start, or
//! `tls.crt`/`tls.key` from a directory (a mounted Secret, cert-manager), read again when
//! the files change so that a renewed certificate is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("generating the self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How often the certificate files are looked at (their modification times) at most.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Where the listener's certificate comes from.
#[derive(Debug)]
enum Source {
    SelfSigned,
    Dir { cert: PathBuf, key: PathBuf },
}

/// Serves the current certificate; with a directory, reloads it when the files change.
#[derive(Debug)]
pub(crate) struct CertResolver {
    source: Source,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// Modification times of (tls.crt, tls.key) when loaded.
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_path_buf(), message: message.to_string() }
}

fn load_dir(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no certificate in the file"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let signing = any_supported_type(&private).map_err(|e| file_error(key, e))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

fn self_signed() -> Result<Arc<CertifiedKey>, TlsError> {
    let names = vec!["sidecar-watch".to_string(), "localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let private = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let signing = any_supported_type(&private)?;
    Ok(Arc::new(CertifiedKey::new(vec![certified.cert.der().clone()], signing)))
}

impl CertResolver {
    /// A resolver for `tls.crt`/`tls.key` in `dir`, or a fresh self-signed certificate
    /// (names `sidecar-watch`, `localhost`, `127.0.0.1`) when `dir` is `None`.
    pub(crate) fn new(dir: Option<&Path>) -> Result<Self, TlsError> {
        let (source, key, stamps) = match dir {
            None => (Source::SelfSigned, self_signed()?, (None, None)),
            Some(dir) => {
                let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
                let loaded = load_dir(&cert, &key)?;
                let stamps = (modified(&cert), modified(&key));
                (Source::Dir { cert, key }, loaded, stamps)
            }
        };
        Ok(CertResolver { source, state: Mutex::new(Loaded { key, stamps, checked: Instant::now() }) })
    }

    /// The certificate to serve now, reloaded first if the files changed (a failed reload
    /// keeps the previous certificate and says so in the log).
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock();
        if let Source::Dir { cert, key } = &self.source {
            if state.checked.elapsed() >= RELOAD_CHECK {
                state.checked = Instant::now();
                let stamps = (modified(cert), modified(key));
                if stamps != state.stamps {
                    match load_dir(cert, key) {
                        Ok(loaded) => {
                            tracing::info!(cert = %cert.display(), "serving the renewed metrics certificate");
                            state.key = loaded;
                            state.stamps = stamps;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot reload the metrics certificate; keeping the old one")
                        }
                    }
                }
            }
        }
        state.key.clone()
    }

    /// A rustls server configuration that asks this resolver on every handshake.
    pub(crate) fn server_config(self: Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_and_reloaded_from_a_directory() {
        let resolver = CertResolver::new(None).expect("self-signed");
        assert_eq!(resolver.current().cert.len(), 1);

        let dir = std::env::temp_dir().join(format!("sw-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write = |name: &str| {
            let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
            std::fs::write(dir.join("tls.crt"), c.cert.pem()).expect("crt");
            std::fs::write(dir.join("tls.key"), c.signing_key.serialize_pem()).expect("key");
            c.cert.der().clone()
        };
        let first = write("first");
        let resolver = CertResolver::new(Some(&dir)).expect("from files");
        assert_eq!(resolver.current().cert[0], first);
        std::thread::sleep(Duration::from_millis(20));
        let second = write("second");
        resolver.state.lock().checked -= RELOAD_CHECK;
        assert_eq!(resolver.current().cert[0], second, "the renewed certificate is served");

        std::fs::write(dir.join("tls.key"), "not a key").expect("write");
        resolver.state.lock().checked -= RELOAD_CHECK;
        assert_eq!(resolver.current().cert[0], second, "a broken renewal keeps the last good one");
        let missing = CertResolver::new(Some(&dir.join("nowhere"))).expect_err("no files");
        assert!(missing.to_string().contains("tls.crt"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
