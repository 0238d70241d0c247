//! Encrypted links between nodes (cargo feature `tls`).
//!
//! A node started with `--tls-listen ADDR` serves HTTPS there, beside its plain listener (which
//! stays for the browser and the CLI on this machine). Its certificate is the one given with
//! `--tls-cert`/`--tls-key`, or one it makes on first start and keeps in `<data dir>/tls/`. The
//! SHA-256 fingerprint of that certificate travels in invite codes and pairing requests, and the
//! other node pins it: it dials this node only if it presents exactly that certificate, so a
//! self-signed certificate is as safe as a bought one and nobody has to manage a CA. A peer
//! address with `https://` and no pin (a node behind a TLS-terminating proxy with a public
//! certificate) is checked against the system's root certificates instead.
//!
//! Without the feature every function here exists and refuses with a message that says how to
//! build a node that has it, so the rest of the code has no `cfg` of its own.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream to a peer: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub type Stream = Box<dyn Io>;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "this Parley was built without TLS; rebuild it with `cargo build --release --features tls` to {0}"
    )]
    NotBuilt(&'static str),
    #[error("{0}")]
    Cert(String),
}

/// This node's certificate, as the HTTPS listener needs it.
#[derive(Clone)]
pub struct NodeCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// Hex SHA-256 of the certificate (DER): what peers pin.
    pub fingerprint: String,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Hex SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(der))
}

/// Whether `s` looks like a fingerprint this module makes (64 lower-case hex digits).
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a made certificate is kept.
pub fn default_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let d = data_dir.join("tls");
    (d.join("node-cert.pem"), d.join("node-key.pem"))
}

/// Opens a connection to the first of `addrs` that answers (already resolved and checked
/// against the outbound-address rules by the caller); with `tls`, a TLS session to the server
/// called `server_name` whose certificate has fingerprint `pin` (or, without one, chains to the
/// system's roots).
pub async fn connect(
    addrs: &[std::net::SocketAddr],
    tls: Option<(&str, Option<&str>)>,
) -> Result<Stream, String> {
    let tcp = TcpStream::connect(addrs).await.map_err(|e| {
        let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        format!("cannot reach {}: {e}", list.join(", "))
    })?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some((name, pin)) => imp::handshake(tcp, name, pin).await,
    }
}

/// Makes aws-lc the process's rustls provider, once. With TLS built in, the HTTP client's
/// rustls backend needs a provider to build any client, even one that only speaks
/// `http://`; without it, building one panics.
pub fn ensure_provider() {
    #[cfg(feature = "tls")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // Err: another provider was installed first, which serves as well.
            let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
        });
    }
}

/// Sets up `https://` for the HTTP client: pinned to `pin` when given, else the system roots.
pub fn reqwest_tls(
    b: reqwest::ClientBuilder,
    pin: Option<&str>,
) -> Result<reqwest::ClientBuilder, String> {
    imp::reqwest_tls(b, pin)
}

/// This node's certificate: the files given, else the one kept in the data directory, made on
/// first use.
pub fn load_or_create(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<NodeCert, TlsError> {
    imp::load_or_create(data_dir, cert, key)
}

#[cfg(feature = "tls")]
mod imp {
    use std::path::Path;
    use std::sync::Arc;

    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::client::danger::{
        HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    };
    use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use tokio_rustls::rustls::{
        self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    };

    use super::{NodeCert, Stream, TlsError, default_paths, fingerprint};

    /// Accepts exactly one certificate, named by its fingerprint; signatures are still checked
    /// so the peer must hold the certificate's key.
    #[derive(Debug)]
    struct Pinned {
        pin: String,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if fingerprint(end_entity.as_ref()) == self.pin {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(
                    "the node's certificate is not the one its invite named (fingerprint mismatch)"
                        .into(),
                ))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    fn client_config(pin: Option<&str>) -> Result<ClientConfig, String> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        Ok(match pin {
            Some(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    pin: pin.to_string(),
                    provider,
                }))
                .with_no_client_auth(),
            None => {
                let mut roots = RootCertStore::empty();
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        })
    }

    pub fn reqwest_tls(
        b: reqwest::ClientBuilder,
        pin: Option<&str>,
    ) -> Result<reqwest::ClientBuilder, String> {
        Ok(b.tls_backend_preconfigured(client_config(pin)?))
    }

    pub async fn handshake(
        tcp: TcpStream,
        name: &str,
        pin: Option<&str>,
    ) -> Result<Stream, String> {
        let config = client_config(pin)?;
        let server = ServerName::try_from(name.to_string())
            .map_err(|_| format!("{name} is not a host name TLS can check"))?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(server, tcp)
            .await
            .map_err(|e| format!("TLS with {name} failed: {e}"))?;
        Ok(Box::new(tls))
    }

    fn read(path: &Path) -> Result<String, TlsError> {
        std::fs::read_to_string(path)
            .map_err(|e| TlsError::Cert(format!("cannot read {}: {e}", path.display())))
    }

    pub fn load_or_create(
        data_dir: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<NodeCert, TlsError> {
        let (cert_path, key_path) = match (cert, key) {
            (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
            _ => {
                let (c, k) = default_paths(data_dir);
                if !c.exists() {
                    create(&c, &k)?;
                }
                (c, k)
            }
        };
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            TlsError::Cert(format!(
                "{} holds no PEM certificate: {e}",
                cert_path.display()
            ))
        })?;
        Ok(NodeCert {
            fingerprint: fingerprint(der.as_ref()),
            cert_pem,
            key_pem,
        })
    }

    /// Makes a self-signed certificate; its name does not matter, peers pin the certificate.
    fn create(cert: &Path, key: &Path) -> Result<(), TlsError> {
        let made = rcgen::generate_simple_self_signed(vec!["parley-node".to_string()])
            .map_err(|e| TlsError::Cert(format!("cannot make a certificate: {e}")))?;
        let io = |p: &Path, e: std::io::Error| {
            TlsError::Cert(format!("cannot write {}: {e}", p.display()))
        };
        if let Some(dir) = cert.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        write_private(key, made.key_pair.serialize_pem().as_bytes()).map_err(|e| io(key, e))?;
        std::fs::write(cert, made.cert.pem()).map_err(|e| io(cert, e))?;
        Ok(())
    }

    /// Writes a file only its owner can read (the private key).
    fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        o.open(path)?.write_all(bytes)
    }
}

#[cfg(not(feature = "tls"))]
mod imp {
    use std::path::Path;

    use tokio::net::TcpStream;

    use super::{NodeCert, Stream, TlsError};

    pub async fn handshake(
        _tcp: TcpStream,
        name: &str,
        _pin: Option<&str>,
    ) -> Result<Stream, String> {
        Err(TlsError::NotBuilt("reach https:// peers").to_string() + &format!(" ({name})"))
    }

    pub fn reqwest_tls(
        _b: reqwest::ClientBuilder,
        _pin: Option<&str>,
    ) -> Result<reqwest::ClientBuilder, String> {
        Err(TlsError::NotBuilt("reach https:// peers").to_string())
    }

    pub fn load_or_create(
        _data_dir: &Path,
        _cert: Option<&Path>,
        _key: Option<&Path>,
    ) -> Result<NodeCert, TlsError> {
        Err(TlsError::NotBuilt("serve peers over TLS (--tls-listen)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_hex_sha256() {
        let f = fingerprint(b"x");
        assert!(is_fingerprint(&f), "{f}");
        assert!(!is_fingerprint("ABC"));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn a_made_certificate_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), None, None).unwrap();
        let b = load_or_create(dir.path(), None, None).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint, "made once, then reused");
        assert!(is_fingerprint(&a.fingerprint));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let (_, key) = default_paths(dir.path());
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is readable by its owner only");
        }
    }
}
