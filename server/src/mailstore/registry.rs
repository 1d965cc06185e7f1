//! The process-wide registry of open mailboxes, and how the rest of the server tells it that
//! a mailbox changed.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::mailbox::SharedMailbox;

/// Message file names made here (APPEND, COPY) use the same shape as SMTP delivery's,
/// `<secs>.M<usec>P<pid>Q<n>.<host>`, with `n` counted from 2^63 so they can never collide
/// with the delivery path's own counter (which starts at 0) in the same microsecond.
static NAME_COUNTER: AtomicU64 = AtomicU64::new(1 << 63);

/// The last UIDVALIDITY handed out: each new one is the current time, or one more than the
/// last if that is not larger, so a mailbox re-created in the same second gets a new one.
static LAST_UIDVALIDITY: AtomicU32 = AtomicU32::new(0);

/// What every mailbox of the process shares.
#[derive(Debug)]
pub(crate) struct StoreCtx {
    /// When this store started: a lock file older than that is a crashed process's.
    pub(crate) started: SystemTime,
    host: String,
    pid: u32,
}

impl StoreCtx {
    pub(crate) fn new(hostname: &str) -> StoreCtx {
        StoreCtx {
            started: SystemTime::now(),
            // Dovecot's escaping: '/' and ':' would break the path or the ":2," suffix.
            host: hostname.replace('/', "\\057").replace(':', "\\072"),
            pid: std::process::id(),
        }
    }

    /// A new unique base name for a message file (no size, no flags).
    pub(crate) fn unique_name(&self) -> String {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{}P{}Q{n}.{}",
            t.as_secs(),
            t.subsec_micros(),
            self.pid,
            self.host
        )
    }

    pub(crate) fn new_uidvalidity(&self) -> u32 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .clamp(1, u64::from(u32::MAX)) as u32;
        let prev = LAST_UIDVALIDITY
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or(0);
        now.max(prev.saturating_add(1))
    }

    /// 128 random bits for a mailbox GUID (from the kernel; falls back to time and pid, which
    /// is unique enough for an identifier nothing depends on for security).
    pub(crate) fn random_guid(&self) -> [u8; 16] {
        let mut guid = [0u8; 16];
        if File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut guid))
            .is_err()
        {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            guid[..8].copy_from_slice(&t.as_nanos().to_le_bytes()[..8]);
            guid[8..12].copy_from_slice(&self.pid.to_le_bytes());
            guid[12..].copy_from_slice(
                &(NAME_COUNTER.fetch_add(1, Ordering::Relaxed) as u32).to_le_bytes(),
            );
        }
        guid
    }
}

/// Open mailboxes of the process, keyed by directory, so that every session on a mailbox
/// shares one in-memory index and sees the others' changes. Create one per process (a
/// [`super::MailStore`] makes its own) and hand the same `Arc` to whatever delivers mail.
pub struct MailboxRegistry {
    pub(crate) ctx: Arc<StoreCtx>,
    mailboxes: Mutex<HashMap<PathBuf, Arc<SharedMailbox>>>,
    accounts: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    next_view: AtomicU64,
}

impl std::fmt::Debug for MailboxRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxRegistry")
            .field("open", &self.lock().len())
            .finish()
    }
}

impl MailboxRegistry {
    /// A registry whose new message files carry `hostname` in their names.
    pub fn new(hostname: &str) -> Arc<MailboxRegistry> {
        Arc::new(MailboxRegistry {
            ctx: Arc::new(StoreCtx::new(hostname)),
            mailboxes: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            next_view: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, Arc<SharedMailbox>>> {
        self.mailboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the sessions watching the mailbox in `maildir` (the directory holding `cur/`,
    /// `new/`, `tmp/`) that it changed, e.g. after SMTP committed a message into its `new/`.
    /// They are woken, and their next look rescans the directory. Does nothing if no session
    /// has the mailbox open. Cheap; never blocks on the mailbox.
    pub fn notify(&self, maildir: &Path) {
        let mailbox = self.lock().get(maildir).cloned();
        if let Some(mailbox) = mailbox {
            mailbox.announce();
        }
    }

    /// [`MailboxRegistry::notify`] for a delivered file: `<maildir>/new/<name>` (as returned
    /// by `MessageWriter::commit`) or `<maildir>/cur/<name>`.
    pub fn notify_delivered(&self, file: &Path) {
        if let Some(maildir) = file.parent().and_then(Path::parent) {
            self.notify(maildir);
        }
    }

    /// The shared mailbox of a directory, created (not yet loaded) on first use.
    pub(crate) fn get(&self, path: &Path) -> Arc<SharedMailbox> {
        let mut map = self.lock();
        if let Some(m) = map.get(path) {
            return Arc::clone(m);
        }
        let m = Arc::new(SharedMailbox::new(path.to_owned(), Arc::clone(&self.ctx)));
        map.insert(path.to_owned(), Arc::clone(&m));
        m
    }

    /// Forgets the mailbox in `path` (deleted or renamed away): whoever still holds it gets
    /// [`super::MailstoreError::MailboxGone`], and the next open starts afresh from disk.
    pub(crate) fn retire(&self, path: &Path) {
        let gone = self.lock().remove(path);
        if let Some(m) = gone {
            m.retire();
        }
    }

    /// Drops mailboxes nobody holds (no session, no view), freeing their in-memory index.
    /// Their `\Recent` state is lost (messages not yet claimed stop being recent). Returns
    /// how many were dropped; call it now and then (e.g. every few minutes).
    pub fn purge_unused(&self) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, m| Arc::strong_count(m) > 1);
        before - map.len()
    }

    /// How many mailboxes are in memory.
    pub fn open_mailboxes(&self) -> usize {
        self.lock().len()
    }

    /// A per-account lock serialising folder changes (create, delete, rename, subscribe).
    pub(crate) fn account_lock(&self, root: &Path) -> Arc<Mutex<()>> {
        let mut map = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(root.to_owned()).or_default())
    }

    pub(crate) fn next_view_id(&self) -> u64 {
        self.next_view.fetch_add(1, Ordering::Relaxed)
    }
}
