//! `ironpost serve`: binds the listeners, starts the runtime, and stops on SIGTERM/SIGINT.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use ironpost_core::service::HandlerFactory;
use ironpost_runtime_mio::{Listener, Runtime, RuntimeOptions};

use crate::app::App;
use crate::config::Config;
use crate::directory::DirectoryHandle;
use crate::maildir::Store;
use crate::smtp::{Role, SmtpFactory};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

pub fn serve(config: Config) -> Result<(), ServeError> {
    let data_path = config.data_dir.display().to_string();
    let data_err = |source| ServeError::DataDir {
        path: data_path.clone(),
        source,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(data_err)?;
    let tls = crate::tls::server_config(&config)?;
    let directory =
        DirectoryHandle::new(&config.domains, &config.accounts_file, &config.aliases_file)?;
    let store = Store::open(&config.data_dir, &config.hostname).map_err(data_err)?;
    match store.recover() {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed temporary files left by an earlier run"),
        Err(e) => tracing::warn!(error = %e, "could not clean temporary files"),
    }
    let app = Arc::new(App::new(config, directory, store, tls));

    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    let c = &app.config;
    let roles = [
        (Role::Smtp, c.smtp.enabled, &c.smtp.listen),
        (Role::Submission, c.submission.enabled, &c.submission.listen),
        (
            Role::Submissions,
            c.submissions.enabled,
            &c.submissions.listen,
        ),
    ];
    for (role, enabled, addrs) in roles {
        if !enabled {
            continue;
        }
        let factory: Arc<dyn HandlerFactory> = Arc::new(SmtpFactory::new(app.clone(), role));
        for &addr in addrs {
            let l = TcpListener::bind(addr).map_err(|source| ServeError::Bind {
                listener: role.name(),
                addr,
                source,
            })?;
            let local = l.local_addr().map_err(|source| ServeError::Bind {
                listener: role.name(),
                addr,
                source,
            })?;
            tracing::info!(listener = role.name(), address = %local, "listening");
            bound.push((role.name(), local));
            listeners.push(Listener {
                listener: l,
                factory: factory.clone(),
            });
        }
    }

    let opts = RuntimeOptions {
        event_loops: app.config.event_loop_count(),
        workers: app.config.workers,
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::start(listeners, opts).map_err(ServeError::Runtime)?;
    write_listeners(&app.config.data_dir, &bound).map_err(data_err)?;

    let handle = runtime.handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(ServeError::Runtime)?;
    let signal_handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(
                    signal = sig,
                    "shutting down: finishing transactions in flight"
                );
                handle.shutdown();
            }
        })
        .map_err(ServeError::Runtime)?;
    let result = runtime.wait().map_err(ServeError::Runtime);
    signal_handle.close();
    let _ = std::fs::remove_file(app.config.data_dir.join("listeners"));
    tracing::info!("stopped");
    result
}

/// `<data_dir>/listeners`: one `name address` line per bound socket, written once all accept,
/// so scripts and tests can use port 0 and learn the ports.
fn write_listeners(data_dir: &Path, bound: &[(&str, SocketAddr)]) -> std::io::Result<()> {
    let tmp = data_dir.join("listeners.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    for (name, addr) in bound {
        writeln!(f, "{name} {addr}")?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, data_dir.join("listeners"))
}
