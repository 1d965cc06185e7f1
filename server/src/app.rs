//! What every connection handler shares: configuration, the account directory, the store,
//! TLS settings, connection accounting and the login of IMAP and POP3 users.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hashbrown::HashMap;

use crate::config::Config;
use crate::directory::DirectoryHandle;
use crate::maildir::Store;
use crate::mailstore::{Account, MailStore};

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

    /// Checks a user's password and opens their mail: an IMAP or POP3 login. It blocks
    /// (password hash, store), so handlers run it as a job.
    pub fn login(&self, user: &str, password: &str) -> Option<Account> {
        if !self.directory.get().verify_password(user, password) {
            return None;
        }
        let (domain, local) = account_name(user)?;
        match self.mail.account(&domain, &local) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::error!(user = %user, error = %e, "cannot open the account's mail");
                None
            }
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

/// The account's domain and local part as the store names its directories (the same
/// normalisation as the directory's: local part lowercased, domain ASCII-lowercased).
fn account_name(user: &str) -> Option<(String, String)> {
    let (local, domain) = user.trim().rsplit_once('@')?;
    Some((domain.to_ascii_lowercase(), local.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_map_to_account_directories() {
        assert_eq!(
            account_name(" Alice@Example.TEST "),
            Some(("example.test".into(), "alice".into()))
        );
        assert_eq!(account_name("nobody"), None);
    }
}
