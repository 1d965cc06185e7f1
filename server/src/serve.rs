//! `ironpost serve`: binds the listeners, starts the runtime, and stops on SIGTERM/SIGINT.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ironpost_core::service::{HandlerFactory, RuntimeOptions};
use ironpost_runtime_mio as rt_mio;
use ironpost_runtime_smol as rt_smol;

use crate::app::App;
use crate::config::{Config, RuntimeKind};
use crate::directory::DirectoryHandle;
use crate::imap::handler::ImapFactory;
use crate::maildir::Store;
use crate::mailstore::MailStore;
use crate::outbound::Delivery;
use crate::pop3::{MaildropLocks, Pop3Factory};
use crate::queue::Queue;
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
    #[error("mail store: {0}")]
    MailStore(#[from] crate::mailstore::MailstoreError),
    #[error("queue: {0}")]
    Queue(std::io::Error),
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
    raise_fd_limit(config.limits.max_connections);
    let tls = crate::tls::server_config(&config)?;
    let directory =
        DirectoryHandle::new(&config.domains, &config.accounts_file, &config.aliases_file)?;
    let store = Store::open(&config.data_dir, &config.hostname).map_err(data_err)?;
    match store.recover() {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed temporary files left by an earlier run"),
        Err(e) => tracing::warn!(error = %e, "could not clean temporary files"),
    }
    let queue = Queue::open(&config.data_dir).map_err(ServeError::Queue)?;
    let recovered = queue.recover().map_err(ServeError::Queue)?;
    if recovered.removed > 0 {
        tracing::info!(
            files = recovered.removed,
            "removed unfinished queue files left by an earlier run"
        );
    }
    if !recovered.corrupt.is_empty() {
        tracing::error!(ids = ?recovered.corrupt, "queued messages with unreadable metadata are kept but not delivered (see `ironpost queue list`)");
    }
    let mail = MailStore::open(&config.data_dir, &config.hostname)?;
    let app = Arc::new(App::new(config, directory, store, mail, tls));
    let delivery =
        Delivery::start(app.clone(), queue, recovered.messages).map_err(ServeError::Queue)?;

    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    let c = &app.config;
    let smtp = |role: Role| -> (&'static str, Arc<dyn HandlerFactory>) {
        (
            role.name(),
            Arc::new(SmtpFactory::new(app.clone(), role).with_delivery(delivery.clone())),
        )
    };
    let imap = |implicit| -> (&'static str, Arc<dyn HandlerFactory>) {
        let f = ImapFactory::new(app.clone(), implicit);
        (f.name(), Arc::new(f))
    };
    // One lock table for both POP3 listeners: one POP3 session per maildrop.
    let pop3_locks = MaildropLocks::new();
    let pop3 = |implicit| -> (&'static str, Arc<dyn HandlerFactory>) {
        let f = Pop3Factory::new(app.clone(), implicit, pop3_locks.clone());
        (f.name(), Arc::new(f))
    };
    let roles = [
        (c.smtp.enabled, &c.smtp.listen, smtp(Role::Smtp)),
        (
            c.submission.enabled,
            &c.submission.listen,
            smtp(Role::Submission),
        ),
        (
            c.submissions.enabled,
            &c.submissions.listen,
            smtp(Role::Submissions),
        ),
        (c.imap.enabled, &c.imap.listen, imap(false)),
        (c.imaps.enabled, &c.imaps.listen, imap(true)),
        (c.pop3.enabled, &c.pop3.listen, pop3(false)),
        (c.pop3s.enabled, &c.pop3s.listen, pop3(true)),
    ];
    for (enabled, addrs, (name, factory)) in roles {
        if !enabled {
            continue;
        }
        for &addr in addrs {
            let l = TcpListener::bind(addr).map_err(|source| ServeError::Bind {
                listener: name,
                addr,
                source,
            })?;
            let local = l.local_addr().map_err(|source| ServeError::Bind {
                listener: name,
                addr,
                source,
            })?;
            tracing::info!(listener = name, address = %local, "listening");
            bound.push((name, local));
            listeners.push((l, factory.clone()));
        }
    }

    let opts = RuntimeOptions {
        event_loops: app.config.event_loop_count(),
        workers: app.config.workers,
        write_timeout: app.config.limits.write_timeout,
        ..RuntimeOptions::default()
    };
    // Before the runtime starts and the listeners file says the server is up: a SIGTERM
    // that comes right after must stop it gracefully, not kill it.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(ServeError::Runtime)?;
    let signal_handle = signals.handle();
    let (shutdown, wait) = start_runtime(app.config.runtime, listeners, opts)?;
    tracing::info!(runtime = app.config.runtime.name(), "started");
    write_listeners(&app.config.data_dir, &bound).map_err(data_err)?;

    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(
                    signal = sig,
                    "shutting down: finishing transactions in flight"
                );
                shutdown();
            }
        })
        .map_err(ServeError::Runtime)?;
    let result = wait().map_err(ServeError::Runtime);
    // Deliveries in progress get a moment to finish; anything unfinished stays queued.
    delivery.shutdown(Duration::from_secs(5));
    signal_handle.close();
    let _ = std::fs::remove_file(app.config.data_dir.join("listeners"));
    tracing::info!("stopped");
    result
}

/// Begins graceful shutdown of the running runtime, from any thread.
type Shutdown = Box<dyn Fn() + Send>;
/// Blocks until the runtime has shut down.
type Wait = Box<dyn FnOnce() -> io::Result<()>>;

/// Starts the chosen runtime on the bound listeners.
fn start_runtime(
    kind: RuntimeKind,
    listeners: Vec<(TcpListener, Arc<dyn HandlerFactory>)>,
    opts: RuntimeOptions,
) -> Result<(Shutdown, Wait), ServeError> {
    Ok(match kind {
        RuntimeKind::Mio => {
            let listeners = listeners
                .into_iter()
                .map(|(listener, factory)| rt_mio::Listener { listener, factory })
                .collect();
            let runtime = rt_mio::Runtime::start(listeners, opts).map_err(ServeError::Runtime)?;
            let handle = runtime.handle();
            (
                Box::new(move || handle.shutdown()),
                Box::new(move || runtime.wait()),
            )
        }
        RuntimeKind::Smol => {
            let listeners = listeners
                .into_iter()
                .map(|(listener, factory)| rt_smol::Listener { listener, factory })
                .collect();
            let runtime = rt_smol::Runtime::start(listeners, opts).map_err(ServeError::Runtime)?;
            let handle = runtime.handle();
            (
                Box::new(move || handle.shutdown()),
                Box::new(move || runtime.wait()),
            )
        }
    })
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

/// Raises the soft limit on open files to the hard limit, as Postfix and Dovecot do: each
/// connection holds a socket, and the usual soft limit of 1,024 would refuse connections long
/// before `limits.max_connections`. Warns when even the hard limit is too low.
fn raise_fd_limit(max_connections: usize) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the local struct passed by pointer.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        r.rlim_cur
    };
    // Listeners, the mail store and delivery need some descriptors of their own.
    let wanted = max_connections as u64 + 256;
    if soft < wanted {
        tracing::warn!(
            open_files = soft,
            max_connections,
            "the open-file limit is below limits.max_connections plus a margin of 256; raise it (ulimit -n, LimitNOFILE=) or connections beyond it will be refused"
        );
    }
}
