//! What every connection handler shares: configuration, the account directory, the store,
//! TLS settings and connection accounting.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hashbrown::HashMap;

use crate::config::Config;
use crate::directory::DirectoryHandle;
use crate::maildir::Store;
use crate::mailstore::MailStore;

pub struct App {
    pub config: Config,
    pub directory: DirectoryHandle,
    pub store: Store,
    /// The mail store IMAP reads (one mailbox registry per process).
    pub mail: MailStore,
    pub tls: Arc<rustls::ServerConfig>,
    connections: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl App {
    pub fn new(
        config: Config,
        directory: DirectoryHandle,
        store: Store,
        mail: MailStore,
        tls: Arc<rustls::ServerConfig>,
    ) -> Self {
        App {
            config,
            directory,
            store,
            mail,
            tls,
            connections: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection against the limits; `None` when it is over one of them.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let limits = &self.config.limits;
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_ip {
            return None;
        }
        if self.connections.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            app: self.clone(),
            ip,
        })
    }
}

/// One admitted connection; dropping it frees its place.
pub struct ConnectionSlot {
    app: Arc<App>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.app.connections.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = self.app.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}
