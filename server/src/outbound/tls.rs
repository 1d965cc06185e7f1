//! TLS towards other servers: rustls client configurations for STARTTLS.
//!
//! `outbound.tls` says when TLS is used and `outbound.tls_verify` what a certificate must
//! pass:
//!
//! | tls | tls_verify | certificate that fails verification |
//! |---|---|---|
//! | `may` | false | accepted (opportunistic encryption, RFC 7435; Postfix's `may`) |
//! | `may` | true | accepted, and logged as `unverified` (cleartext would be worse) |
//! | `encrypt` | false | accepted: encryption required, identity not checked |
//! | `encrypt` | true | the handshake fails and the mail stays queued (Postfix's `secure`) |
//!
//! Verification is against the web PKI roots (webpki-roots) and the host name the
//! connection was made to (the MX host, or the route's host).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::config::OutboundTls;

/// Accepts any certificate whose handshake signatures are sound: encryption without
/// authentication.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The outbound TLS policy with its rustls configurations, built once.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    pub mode: OutboundTls,
    pub verify: bool,
    /// Used for the handshake.
    config: Arc<ClientConfig>,
    /// Checks the certificate after a handshake that did not (`may` + `tls_verify`).
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

/// What a finished handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSummary {
    /// `TLSv1.3`.
    pub version: String,
    pub cipher: String,
    /// The certificate passed verification (always false when it was not checked).
    pub verified: bool,
}

impl std::fmt::Display for TlsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let trust = if self.verified {
            "verified"
        } else {
            "unverified"
        };
        write!(f, "{} {} {trust}", self.version, self.cipher)
    }
}

impl TlsPolicy {
    pub fn new(mode: OutboundTls, verify: bool) -> Result<TlsPolicy, rustls::Error> {
        Self::with_roots(mode, verify, webpki_roots_store())
    }

    /// As [`TlsPolicy::new`] with other trust anchors (tests).
    pub fn with_roots(
        mode: OutboundTls,
        verify: bool,
        roots: rustls::RootCertStore,
    ) -> Result<TlsPolicy, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = if verify {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?,
            )
        } else {
            None
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let config = match (&verifier, mode) {
            (Some(v), OutboundTls::Encrypt) => builder
                .with_webpki_verifier(v.clone())
                .with_no_client_auth(),
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        };
        Ok(TlsPolicy {
            mode,
            verify,
            config: Arc::new(config),
            verifier,
        })
    }

    /// A client connection for a handshake with `host` (a name or an IP address).
    pub fn connect(&self, host: &str) -> Result<ClientConnection, rustls::Error> {
        let name = server_name(host)?;
        ClientConnection::new(self.config.clone(), name)
    }

    /// After the handshake: what it established, the certificate checked if verification is
    /// on (with `encrypt` the handshake itself already refused a bad one).
    pub fn summary(&self, conn: &ClientConnection, host: &str) -> TlsSummary {
        let version = conn
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("TLS")
            .replace("TLSv1_", "TLSv1.");
        let cipher = conn
            .negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("unknown")
            .to_string();
        let verified = match (&self.verifier, self.mode) {
            (Some(_), OutboundTls::Encrypt) => true,
            (Some(v), _) => match (conn.peer_certificates(), server_name(host)) {
                (Some([end, rest @ ..]), Ok(name)) => v
                    .verify_server_cert(end, rest, &name, &[], UnixTime::now())
                    .is_ok(),
                _ => false,
            },
            (None, _) => false,
        };
        TlsSummary {
            version,
            cipher,
            verified,
        }
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, rustls::Error> {
    ServerName::try_from(host.trim_end_matches('.').to_string())
        .map_err(|_| rustls::Error::General(format!("{host:?} is not a valid server name")))
}

fn webpki_roots_store() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::ServerConnection;

    /// A server config for `name` with a fresh self-signed certificate, and that certificate.
    fn server(name: &str) -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
        (Arc::new(cfg), cert)
    }

    /// Runs a handshake in memory; the summary, or the client's error.
    fn handshake(
        policy: &TlsPolicy,
        host: &str,
        server_cfg: Arc<rustls::ServerConfig>,
    ) -> Result<TlsSummary, String> {
        let mut c = policy.connect(host).map_err(|e| e.to_string())?;
        let mut s = ServerConnection::new(server_cfg).unwrap();
        for _ in 0..20 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                s.read_tls(&mut &buf[..]).unwrap();
                if s.process_new_packets().is_err() {
                    // The server's alert goes back to the client.
                }
            }
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                c.read_tls(&mut &buf[..]).unwrap();
                c.process_new_packets().map_err(|e| e.to_string())?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(policy.summary(&c, host));
            }
        }
        Err("handshake did not finish".into())
    }

    fn trusting(cert: &CertificateDer<'static>) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        roots
    }

    #[test]
    fn may_without_verification_takes_any_certificate() {
        let (cfg, _) = server("mx.remote.test");
        let p = TlsPolicy::new(OutboundTls::May, false).unwrap();
        let t = handshake(&p, "mx.remote.test", cfg).unwrap();
        assert!(t.version.starts_with("TLSv1."), "{t:?}");
        assert!(!t.verified);
        assert!(t.to_string().ends_with(" unverified"), "{t}");
    }

    #[test]
    fn may_with_verification_logs_the_result_but_never_refuses() {
        let (cfg, cert) = server("mx.remote.test");
        let untrusted = TlsPolicy::new(OutboundTls::May, true).unwrap();
        assert!(
            !handshake(&untrusted, "mx.remote.test", cfg.clone())
                .unwrap()
                .verified
        );
        let trusted = TlsPolicy::with_roots(OutboundTls::May, true, trusting(&cert)).unwrap();
        let t = handshake(&trusted, "mx.remote.test", cfg.clone()).unwrap();
        assert!(t.verified, "{t:?}");
        assert!(t.to_string().ends_with(" verified"), "{t}");
        // The right certificate for another name is not verified either.
        assert!(!handshake(&trusted, "other.test", cfg).unwrap().verified);
    }

    #[test]
    fn encrypt_with_verification_refuses_a_bad_certificate() {
        let (cfg, cert) = server("mx.remote.test");
        let untrusted = TlsPolicy::new(OutboundTls::Encrypt, true).unwrap();
        let err = handshake(&untrusted, "mx.remote.test", cfg.clone()).unwrap_err();
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        let trusted = TlsPolicy::with_roots(OutboundTls::Encrypt, true, trusting(&cert)).unwrap();
        assert!(
            handshake(&trusted, "mx.remote.test", cfg.clone())
                .unwrap()
                .verified
        );
        assert!(handshake(&trusted, "wrong.test", cfg.clone()).is_err());
        // Without verification, encryption alone is required.
        let any = TlsPolicy::new(OutboundTls::Encrypt, false).unwrap();
        assert!(!handshake(&any, "mx.remote.test", cfg).unwrap().verified);
    }

    #[test]
    fn ip_addresses_are_server_names_too() {
        let (cfg, _) = server("127.0.0.1");
        let p = TlsPolicy::new(OutboundTls::May, false).unwrap();
        assert!(handshake(&p, "127.0.0.1", cfg).is_ok());
        assert!(p.connect("not a name").is_err());
    }
}
