//! The mail store behind IMAP (and POP3): an account's mailboxes, their UID index, flags,
//! and the changes sessions must hear about.
//!
//! # Layout (the same as docker-mailserver's Dovecot, so either reads the other's mail)
//!
//! ```text
//! <data_dir>/mail/<domain>/<local>/          INBOX: cur/ new/ tmp/
//!     dovecot-uidlist                          INBOX's UID index (see index.rs)
//!     dovecot-keywords                         INBOX's keyword letters (see flags.rs)
//!     ironpost.cache                           INBOX's header cache for SEARCH (see cache.rs)
//!     subscriptions                            the account's subscriptions
//!     .Sent/ .Drafts/ .Trash/ .Junk/           folders (Maildir++), each with cur/ new/ tmp/,
//!     .Archive.2024/                           its own index files and a `maildirfolder` file
//! ```
//!
//! * Hierarchy delimiter `.` (docker-mailserver sets no `separator`, so Dovecot uses
//!   Maildir++'s `.`); folder directories carry each level in modified UTF-7; the API takes
//!   and returns UTF-8 names (see [`names`]).
//! * Message files: `<base>:2,<flags>` with `D F P R S T` (Draft, Flagged, Passed, Replied =
//!   `\Answered`, Seen, Trashed = `\Deleted`) and keyword letters `a`–`z`.
//! * `subscriptions`: Dovecot's version 2 file, `V\t2\n\n` then one name per line, hierarchy
//!   levels separated by a tab, each level in modified UTF-7.
//!
//! # Concurrency
//!
//! One [`MailboxRegistry`] per process holds each open mailbox's index once, behind a mutex;
//! every session's [`MailboxView`] of a mailbox shares it, so they see each other's changes,
//! and wakers registered on views are called on every change. SMTP delivery calls
//! [`MailboxRegistry::notify`] after committing. Other processes (Dovecot, a mail filter)
//! are noticed by the next sync (directory mtimes); IDLE should also look every ~30 s.
//!
//! All operations block (disk, fsync): call them from worker threads.

mod append;
mod cache;
mod flags;
mod folders;
mod index;
mod mailbox;
pub mod names;
mod registry;
mod utf7;
mod view;

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use append::{AppendWriter, Appended};
pub use cache::{CachedField, HeaderSummary};
pub use flags::{KeywordSet, StoreOp, SystemFlags};
pub use folders::{Account, MailboxInfo};
pub use mailbox::{MailboxStatus, SharedMailbox};
pub use names::{pattern_matches, SpecialUse, DELIMITER};
pub use registry::MailboxRegistry;
pub use view::{Changes, CopyResult, MailboxView, MessageInfo, StoreOutcome};

use crate::maildir::MailboxRef;

pub type Result<T, E = MailstoreError> = std::result::Result<T, E>;

/// What went wrong, with the name or path and the step. [`MailstoreError::response_code`]
/// gives the RFC 5530 response code an IMAP server answers with.
#[derive(Debug, thiserror::Error)]
pub enum MailstoreError {
    #[error("invalid account {domain:?} / {local:?}: {reason}")]
    InvalidAccount {
        domain: String,
        local: String,
        reason: String,
    },
    #[error("invalid mailbox name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("mailbox {0:?} does not exist")]
    NoSuchMailbox(String),
    #[error("mailbox {0:?} already exists")]
    AlreadyExists(String),
    #[error("INBOX cannot be deleted")]
    CannotDeleteInbox,
    /// DELETE of a `\Noselect` name that has children (RFC 3501 6.3.4).
    #[error("mailbox {0:?} holds only other mailboxes: delete those first")]
    HasChildren(String),
    #[error("cannot rename {from:?} to {to:?}, inside itself")]
    RenameIntoItself { from: String, to: String },
    #[error("message UID {uid} no longer exists")]
    Expunged { uid: u32 },
    #[error("invalid keyword {0:?}")]
    InvalidKeyword(String),
    #[error("no room for another keyword in this mailbox (at most {max})")]
    TooManyKeywords { max: usize },
    #[error("the mailbox is open read-only")]
    ReadOnly,
    #[error("the mailbox was deleted or renamed")]
    MailboxGone,
    #[error("the mailbox's UIDVALIDITY was changed by another program")]
    UidValidityChanged,
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl MailstoreError {
    /// The RFC 5530 response code for a tagged NO. (For APPEND and COPY/MOVE into a mailbox
    /// that does not exist, RFC 3501 wants `TRYCREATE` instead of `NONEXISTENT`.)
    pub fn response_code(&self) -> &'static str {
        match self {
            MailstoreError::InvalidAccount { .. } => "SERVERBUG",
            MailstoreError::InvalidName { .. }
            | MailstoreError::CannotDeleteInbox
            | MailstoreError::RenameIntoItself { .. }
            | MailstoreError::InvalidKeyword(_)
            | MailstoreError::HasChildren(_)
            | MailstoreError::ReadOnly => "CANNOT",
            MailstoreError::NoSuchMailbox(_) | MailstoreError::MailboxGone => "NONEXISTENT",
            MailstoreError::AlreadyExists(_) => "ALREADYEXISTS",
            MailstoreError::Expunged { .. } => "EXPUNGEISSUED",
            MailstoreError::TooManyKeywords { .. } => "LIMIT",
            MailstoreError::UidValidityChanged => "UNAVAILABLE",
            MailstoreError::Io { .. } => "UNAVAILABLE",
        }
    }
}

/// The store: where accounts live, and the registry of their open mailboxes. Cheap to clone;
/// share one per process.
#[derive(Debug, Clone)]
pub struct MailStore {
    mail_root: PathBuf,
    registry: Arc<MailboxRegistry>,
}

impl MailStore {
    /// Opens (creating if needed) `<data_dir>/mail` with a registry of its own.
    /// `hostname` goes into the names of message files made here (APPEND, COPY).
    pub fn open(data_dir: &Path, hostname: &str) -> Result<MailStore> {
        MailStore::with_registry(data_dir, MailboxRegistry::new(hostname))
    }

    /// Opens `<data_dir>/mail` sharing an existing registry.
    pub fn with_registry(data_dir: &Path, registry: Arc<MailboxRegistry>) -> Result<MailStore> {
        let mail_root = data_dir.join("mail");
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&mail_root)
            .map_err(|source| MailstoreError::Io {
                op: "creating directory",
                path: mail_root.clone(),
                source,
            })?;
        Ok(MailStore {
            mail_root,
            registry,
        })
    }

    /// The registry, for [`MailboxRegistry::notify`] from the delivery path.
    pub fn registry(&self) -> &Arc<MailboxRegistry> {
        &self.registry
    }

    /// The INBOX directory of an account (the same path SMTP delivery writes to).
    pub fn maildir_path(&self, domain: &str, local: &str) -> PathBuf {
        self.mail_root.join(domain).join(local)
    }

    /// Opens an account (domain and local part as the directory has them, lower case),
    /// creating its Maildir if needed, and Sent, Drafts, Trash and Junk (subscribed) if they
    /// do not exist. Call once per login.
    pub fn account(&self, domain: &str, local: &str) -> Result<Account> {
        MailboxRef { domain, local }
            .validate()
            .map_err(|e| MailstoreError::InvalidAccount {
                domain: domain.to_owned(),
                local: local.to_owned(),
                reason: e.to_string(),
            })?;
        Account::open(
            Arc::clone(&self.registry),
            self.maildir_path(domain, local),
            format!("{local}@{domain}"),
        )
    }
}

#[cfg(test)]
thread_local! {
    /// Message files opened by this thread: lets tests prove that listing, selecting and
    /// fetching metadata never read a message.
    pub(crate) static MESSAGE_OPENS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Every open of a message file goes through here.
pub(crate) fn open_message_file(path: &Path) -> io::Result<File> {
    #[cfg(test)]
    MESSAGE_OPENS.with(|c| c.set(c.get() + 1));
    File::open(path)
}

#[cfg(test)]
mod tests;
