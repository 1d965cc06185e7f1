//! The rustls server configuration shared by every TLS listener and STARTTLS.
//!
//! With `[tls] cert`/`key` configured, those PEM files are used. Without, a self-signed
//! pair is generated once under `<data_dir>/tls/` and reused afterwards, so a fresh install
//! can offer STARTTLS (required before AUTH on 587) out of the box and clients that pinned
//! the certificate keep trusting it across restarts.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

use crate::config::Config;

/// Why TLS could not be set up; every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: malformed PEM: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: no certificate found (expected PEM \"BEGIN CERTIFICATE\")", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key found (expected PEM PKCS#8, PKCS#1 or SEC1 key)", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("certificate {} with key {}: {source}", cert.display(), key.display())]
    Rustls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot generate a self-signed certificate into {}: {source}", dir.display())]
    Generate {
        dir: PathBuf,
        #[source]
        source: rcgen::Error,
    },
}

/// Builds the server configuration: TLS 1.2 and 1.3 with the ring provider, no client
/// certificates.
pub fn server_config(cfg: &Config) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let (cert_path, key_path) = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => ensure_self_signed(&cfg.data_dir.join("tls"), &cfg.hostname)?,
    };
    let certs = load_certs(&cert_path)?;
    let key = load_key(&key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|source| TlsSetupError::Rustls {
            cert: cert_path,
            key: key_path,
            source,
        })?;
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = fs::read(path).map_err(|source| TlsSetupError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsSetupError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = fs::read(path).map_err(|source| TlsSetupError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsSetupError::Pem {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsSetupError::NoPrivateKey {
            path: path.to_path_buf(),
        })
}

/// Returns `<dir>/cert.pem` and `<dir>/key.pem`, generating them first unless both exist.
/// The key is written before the certificate, each atomically, so a crash leaves at worst
/// a lone key, which the next start replaces.
fn ensure_self_signed(dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), TlsSetupError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsSetupError::Io { path, source }
    };
    match (cert_path.try_exists(), key_path.try_exists()) {
        (Ok(true), Ok(true)) => return Ok((cert_path, key_path)),
        (Err(e), _) => return Err(io(&cert_path)(e)),
        (_, Err(e)) => return Err(io(&key_path)(e)),
        (Ok(c), Ok(k)) if c || k => {
            warn!(dir = %dir.display(), "only one of cert.pem and key.pem exists: generating both anew");
        }
        _ => {}
    }

    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let gen_err = |source| TlsSetupError::Generate {
        dir: dir.to_path_buf(),
        source,
    };
    let mut params = rcgen::CertificateParams::new(names).map_err(gen_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let key_pair = rcgen::KeyPair::generate().map_err(gen_err)?;
    let cert = params.self_signed(&key_pair).map_err(gen_err)?;

    fs::create_dir_all(dir).map_err(io(dir))?;
    write_atomically(&key_path, key_pair.serialize_pem().as_bytes(), 0o600)
        .map_err(io(&key_path))?;
    write_atomically(&cert_path, cert.pem().as_bytes(), 0o644).map_err(io(&cert_path))?;
    info!(cert = %cert_path.display(), "generated a self-signed certificate for {hostname}");
    Ok((cert_path, key_path))
}

/// Temp file with the final mode from the start (the key is never readable by others),
/// fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("tls".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; make it exact.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("ironpost-tls-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn config(data_dir: &Path, tls: &str) -> Config {
        let text = format!(
            "data_dir = {:?}\nhostname = \"mx.example.test\"\n[tls]\n{tls}",
            data_dir
        );
        Config::from_toml(&text, data_dir, "test.toml").unwrap()
    }

    #[test]
    fn generates_once_and_reuses() {
        let t = TempDir::new("gen");
        let cfg = config(&t.0, "");
        server_config(&cfg).unwrap();
        let cert = t.0.join("tls/cert.pem");
        let key = t.0.join("tls/key.pem");
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let cert_bytes = fs::read(&cert).unwrap();
        let key_bytes = fs::read(&key).unwrap();
        assert!(String::from_utf8_lossy(&cert_bytes).contains("BEGIN CERTIFICATE"));

        server_config(&cfg).unwrap();
        assert_eq!(fs::read(&cert).unwrap(), cert_bytes);
        assert_eq!(fs::read(&key).unwrap(), key_bytes);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(t.0.join("tls")).unwrap().count(), 2);

        // A lone key is replaced by a fresh pair.
        fs::remove_file(&cert).unwrap();
        server_config(&cfg).unwrap();
        assert_ne!(fs::read(&key).unwrap(), key_bytes);
    }

    #[test]
    fn generated_cert_names_host_and_loopback() {
        let t = TempDir::new("sans");
        let (cert, _) = ensure_self_signed(&t.0, "mx.example.test").unwrap();
        let der = load_certs(&cert).unwrap().remove(0);
        let der = der.as_ref();
        let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(contains(b"mx.example.test"));
        assert!(contains(b"localhost"));
        assert!(contains(&[127, 0, 0, 1]));
    }

    #[test]
    fn loads_explicit_files() {
        let t = TempDir::new("explicit");
        let (cert, key) = ensure_self_signed(&t.0.join("elsewhere"), "a.test").unwrap();
        let cfg = config(&t.0, &format!("cert = {:?}\nkey = {:?}\n", cert, key));
        server_config(&cfg).unwrap();
        // Nothing was generated under data_dir.
        assert!(!t.0.join("tls").exists());
    }

    #[test]
    fn mismatched_or_garbage_pem() {
        let t = TempDir::new("bad");
        let (cert_a, _) = ensure_self_signed(&t.0.join("a"), "a.test").unwrap();
        let (_, key_b) = ensure_self_signed(&t.0.join("b"), "b.test").unwrap();
        let cfg = config(&t.0, &format!("cert = {cert_a:?}\nkey = {key_b:?}\n"));
        let err = server_config(&cfg).unwrap_err();
        assert!(matches!(err, TlsSetupError::Rustls { .. }), "{err:?}");
        assert!(err.to_string().contains("a/cert.pem"), "{err}");

        let garbage = t.0.join("garbage.pem");
        fs::write(&garbage, "this is not PEM\n").unwrap();
        let cfg = config(&t.0, &format!("cert = {garbage:?}\nkey = {key_b:?}\n"));
        let err = server_config(&cfg).unwrap_err();
        assert!(
            matches!(err, TlsSetupError::NoCertificate { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("garbage.pem"), "{err}");

        let cfg = config(&t.0, &format!("cert = {cert_a:?}\nkey = {garbage:?}\n"));
        let err = server_config(&cfg).unwrap_err();
        assert!(matches!(err, TlsSetupError::NoPrivateKey { .. }), "{err:?}");

        let broken = t.0.join("broken.pem");
        fs::write(
            &broken,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let cfg = config(&t.0, &format!("cert = {cert_a:?}\nkey = {broken:?}\n"));
        let err = server_config(&cfg).unwrap_err();
        assert!(err.to_string().contains("broken.pem"), "{err}");

        let cfg = config(&t.0, "cert = \"missing.pem\"\nkey = \"missing-key.pem\"\n");
        let err = server_config(&cfg).unwrap_err();
        assert!(matches!(err, TlsSetupError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
