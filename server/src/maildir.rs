//! Maildir delivery: the store behind the promise that a 250 to DATA/BDAT means the message
//! is on disk, fsynced.
//!
//! Layout is docker-mailserver's Dovecot one, so either server reads the other's mail:
//! `<data_dir>/mail/<domain>/<localpart>/{cur,new,tmp}`, files named
//! `<secs>.M<usec>P<pid>Q<n>.<host>` in `tmp/` and `<same>,S=<size>` in `new/`.
//!
//! A delivery writes each recipient's copy into `tmp/`, fsyncs it, then hands the renames to
//! the group [`Committer`], which publishes them into `new/` and fsyncs `new/` once per
//! batch. Anything that fails before that leaves nothing behind: the writer's drop removes
//! its tmp files, and the committer removes a failed message's files itself.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::commit::Committer;

/// Makes file names unique within the process (the `Q<n>` part), across all stores.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Body writes are buffered this much so small network chunks do not each cost a syscall.
const WRITE_BUFFER: usize = 64 * 1024;

/// A tmp file this old is abandoned whoever made it (the usual Maildir rule).
const STALE_TMP: Duration = Duration::from_secs(36 * 60 * 60);

/// Why a delivery failed, with the path and step for the log. Everything but
/// [`StoreError::InvalidMailbox`] / [`StoreError::InvalidAddress`] /
/// [`StoreError::NoRecipients`] is a local, transient failure (reply 451).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A domain or local part that could name something outside its mailbox.
    #[error("invalid mailbox name {name:?}: {reason}")]
    InvalidMailbox { name: String, reason: &'static str },
    /// An address that would break the header line it goes into.
    #[error("invalid address {0:?}: contains CR, LF or NUL")]
    InvalidAddress(String),
    #[error("message has no recipients")]
    NoRecipients,
    /// A file-system step failed.
    #[error("{step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Publishing into `new/` failed; the committer has already removed the message's files.
    #[error("committing into new/: {source}")]
    Commit { source: io::Error },
}

impl StoreError {
    fn io(step: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            step,
            path: path.to_owned(),
            source,
        }
    }
}

/// A mailbox named by domain and local part, already lowercased and validated by the caller;
/// [`MailboxRef::validate`] is the last line of defence against a path escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxRef<'a> {
    pub domain: &'a str,
    pub local: &'a str,
}

impl MailboxRef<'_> {
    /// Rejects names that are empty, contain `/` or NUL, or start with `.` (which covers `.`,
    /// `..` and Maildir++ folder names).
    pub fn validate(&self) -> Result<(), StoreError> {
        for name in [self.domain, self.local] {
            let reason = if name.is_empty() {
                "empty"
            } else if name.contains('/') {
                "contains '/'"
            } else if name.contains('\0') {
                "contains NUL"
            } else if name.starts_with('.') {
                "starts with '.'"
            } else {
                continue;
            };
            return Err(StoreError::InvalidMailbox {
                name: name.to_owned(),
                reason,
            });
        }
        Ok(())
    }
}

/// One local recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub domain: String,
    pub local: String,
    /// The address for this copy's `Delivered-To:` header.
    pub delivered_to: String,
}

struct Inner {
    mail_root: PathBuf,
    /// Configured hostname, escaped as Dovecot does so it cannot break the name's syntax.
    host: String,
    pid: u32,
    /// When this store opened: tmp files of our pid named earlier belong to a previous
    /// process that had the same pid (typical for PID 1 in a container).
    opened: (u64, u32),
    /// Maildirs whose directories this process has made durable; skips the checks after the
    /// first delivery.
    ready: Mutex<HashSet<PathBuf>>,
    committer: Committer,
}

/// The Maildir store. Cheap to clone; share one per process (the committer thread is in it).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("mail_root", &self.inner.mail_root)
            .field("host", &self.inner.host)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/mail` and starts the committer thread.
    pub fn open(data_dir: &Path, hostname: &str) -> io::Result<Store> {
        let mail_root = data_dir.join("mail");
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&mail_root)?;
        sync_dir(data_dir)?;
        Ok(Store {
            inner: Arc::new(Inner {
                mail_root,
                host: escape_host(hostname),
                pid: std::process::id(),
                opened: now(),
                ready: Mutex::new(HashSet::new()),
                committer: Committer::try_start()?,
            }),
        })
    }

    /// The group committer, for its counters.
    pub fn committer(&self) -> &Committer {
        &self.inner.committer
    }

    /// The Maildir (INBOX) of a mailbox. Does not validate: pass names that passed
    /// [`MailboxRef::validate`] (or that came from the account list).
    pub fn maildir_path(&self, domain: &str, local: &str) -> PathBuf {
        debug_assert!(MailboxRef { domain, local }.validate().is_ok());
        self.inner.mail_root.join(domain).join(local)
    }

    /// Removes files left in `tmp/` by an earlier process (crash, SIGKILL): files named by
    /// ironpost with another pid, or with our pid but a time before this store opened, and any
    /// file older than 36 hours. Call once at start-up, before deliveries. Returns how many
    /// files were removed; unreadable directories are logged and skipped.
    pub fn recover(&self) -> io::Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(STALE_TMP)
            .unwrap_or(UNIX_EPOCH);
        let domains = match fs::read_dir(&self.inner.mail_root) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for domain in domains {
            let domain = domain?.path();
            for mbox in subdirs(&domain) {
                removed += self.clean_tmp(&mbox.join("tmp"), cutoff);
                // Maildir++ folders (.Sent, .Trash, ...) have their own tmp/.
                for folder in subdirs(&mbox) {
                    if folder
                        .file_name()
                        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
                    {
                        removed += self.clean_tmp(&folder.join("tmp"), cutoff);
                    }
                }
            }
        }
        Ok(removed)
    }

    fn clean_tmp(&self, tmp: &Path, cutoff: SystemTime) -> usize {
        let entries = match fs::read_dir(tmp) {
            Ok(e) => e,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %tmp.display(), error = %e, "cannot scan tmp/");
                }
                return 0;
            }
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let abandoned = entry
                .file_name()
                .to_str()
                .and_then(parse_name)
                .is_some_and(|(time, pid)| pid != self.inner.pid || time < self.inner.opened);
            let old = meta.modified().is_ok_and(|m| m < cutoff);
            if abandoned || old {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed stale tmp file");
                        removed += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove stale tmp file");
                    }
                }
            }
        }
        removed
    }

    /// Starts a message for one or more local recipients (duplicates by domain+local are
    /// delivered once). Each copy starts with `Return-Path: <return_path>` and
    /// `Delivered-To: <delivered_to>` lines, then `header` (complete lines ending in CRLF,
    /// e.g. a `Received:` field), then the body given to [`MessageWriter::write`].
    /// An empty `return_path` is the null sender, written `Return-Path: <>`.
    pub fn begin(
        &self,
        return_path: &str,
        recipients: Vec<Recipient>,
        header: &[u8],
    ) -> Result<MessageWriter, StoreError> {
        check_header_value(return_path)?;
        let mut seen = HashSet::new();
        let mut copies = Vec::new();
        for r in recipients {
            MailboxRef {
                domain: &r.domain,
                local: &r.local,
            }
            .validate()?;
            check_header_value(&r.delivered_to)?;
            if !seen.insert((r.domain.clone(), r.local.clone())) {
                continue;
            }
            let maildir = self.ensure_maildir(&r.domain, &r.local)?;
            let lines = format!(
                "Return-Path: <{return_path}>\r\nDelivered-To: {}\r\n",
                r.delivered_to
            );
            copies.push(Copy {
                maildir,
                lines: lines.into_bytes(),
            });
        }
        if copies.is_empty() {
            return Err(StoreError::NoRecipients);
        }

        let name = self.inner.unique_name();
        let path = copies[0].maildir.join("tmp").join(&name);
        // Read access too: further recipients' copies read the body back from this file.
        let file = create_tmp(&path, true)?;
        let mut writer = MessageWriter {
            store: Arc::clone(&self.inner),
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            first_name: name,
            head_len: (copies[0].lines.len() + header.len()) as u64,
            body_len: 0,
            header: header.to_vec(),
            copies,
            created: vec![path],
        };
        let head = [writer.copies[0].lines.as_slice(), header].concat();
        writer.write_raw(&head)?;
        Ok(writer)
    }

    /// Creates a Maildir on first use and makes its directories durable: fsyncs the parent
    /// of every level once per process, which also covers directories made by a process that
    /// crashed before its own fsync.
    fn ensure_maildir(&self, domain: &str, local: &str) -> Result<PathBuf, StoreError> {
        let maildir = self.maildir_path(domain, local);
        if self.inner.lock_ready().contains(&maildir) {
            return Ok(maildir);
        }
        let root = &self.inner.mail_root;
        let domain_dir = root.join(domain);
        mkdir(&domain_dir)?;
        mkdir(&maildir)?;
        for sub in ["cur", "new", "tmp"] {
            mkdir(&maildir.join(sub))?;
        }
        for dir in [root, &domain_dir, &maildir] {
            sync_dir(dir).map_err(|e| StoreError::io("fsync of directory", dir, e))?;
        }
        self.inner.lock_ready().insert(maildir.clone());
        Ok(maildir)
    }
}

impl Inner {
    fn lock_ready(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unique_name(&self) -> String {
        let (secs, usec) = now();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{secs}.M{usec}P{}Q{n}.{}", self.pid, self.host)
    }
}

/// One recipient's copy: its Maildir and its own Return-Path/Delivered-To lines.
struct Copy {
    maildir: PathBuf,
    lines: Vec<u8>,
}

/// A message being received. Write the body, then [`MessageWriter::commit`]; dropping it
/// uncommitted removes its tmp files.
pub struct MessageWriter {
    store: Arc<Inner>,
    /// The first recipient's tmp file; `None` once handed on by commit.
    out: Option<BufWriter<File>>,
    first_name: String,
    /// Bytes before the body in the first file.
    head_len: u64,
    body_len: u64,
    header: Vec<u8>,
    copies: Vec<Copy>,
    /// tmp files to remove if the message is not committed.
    created: Vec<PathBuf>,
}

impl std::fmt::Debug for MessageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageWriter")
            .field("tmp", &self.created.first())
            .field("body_len", &self.body_len)
            .finish()
    }
}

impl MessageWriter {
    /// Appends body bytes exactly as given (CRLF line endings, dot-unstuffed already).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.write_raw(chunk)?;
        self.body_len += chunk.len() as u64;
        Ok(())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let out = self.out.as_mut().expect("writer used after commit");
        out.write_all(bytes)
            .map_err(|e| StoreError::io("writing", &self.created[0], e))
    }

    /// Body bytes written so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Makes the message durable in every recipient's `new/` and returns their paths once it
    /// is (the call blocks for the group commit: run it off any event loop). On error nothing
    /// of the message is left in `new/` or `tmp/`.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, StoreError> {
        let mut out = self.out.take().expect("writer used after commit");
        let flushed = out.flush();
        // The buffer is empty now, or the write failed: never let drop try again.
        let (first, _) = out.into_parts();
        flushed.map_err(|e| StoreError::io("writing", &self.created[0], e))?;

        let mut files = Vec::with_capacity(self.copies.len());
        files.push((first, self.first_name.clone()));
        for i in 1..self.copies.len() {
            (&files[0].0)
                .seek(SeekFrom::Start(self.head_len))
                .map_err(|e| StoreError::io("seeking", &self.created[0], e))?;
            let name = self.store.unique_name();
            let path = self.copies[i].maildir.join("tmp").join(&name);
            let mut file = create_tmp(&path, false)?;
            self.created.push(path.clone());
            let head = [self.copies[i].lines.as_slice(), &self.header].concat();
            file.write_all(&head)
                .map_err(|e| StoreError::io("writing", &path, e))?;
            // File to File: the kernel copies (copy_file_range) without a trip through here.
            let copied = io::copy(&mut (&files[0].0).take(self.body_len), &mut file)
                .map_err(|e| StoreError::io("copying body to", &path, e))?;
            if copied != self.body_len {
                let short =
                    io::Error::new(io::ErrorKind::UnexpectedEof, "body shorter than written");
                return Err(StoreError::io("copying body to", &path, short));
            }
            files.push((file, name));
        }

        let mut renames = Vec::with_capacity(files.len());
        for ((file, name), (copy, tmp)) in files.iter().zip(self.copies.iter().zip(&self.created)) {
            file.sync_data()
                .map_err(|e| StoreError::io("fsync of", tmp, e))?;
            let size = file
                .metadata()
                .map_err(|e| StoreError::io("stat of", tmp, e))?
                .len();
            let new = copy.maildir.join("new").join(format!("{name},S={size}"));
            renames.push((tmp.clone(), new));
        }
        drop(files);

        // From here the committer owns the files, including their removal on failure.
        self.created.clear();
        let published = renames.iter().map(|(_, new)| new.clone()).collect();
        self.store
            .committer
            .commit(renames)
            .map_err(|source| StoreError::Commit { source })?;
        Ok(published)
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            // Discard the buffer: flushing into a file about to be removed is wasted work.
            drop(out.into_parts());
        }
        for path in &self.created {
            if let Err(e) = fs::remove_file(path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove tmp file");
                }
            }
        }
    }
}

/// Dovecot's escaping of the hostname in file names: `/` and `:` would break the path or the
/// `:2,` flags suffix.
fn escape_host(host: &str) -> String {
    host.replace('/', "\\057").replace(':', "\\072")
}

/// Seconds and microseconds since the epoch.
fn now() -> (u64, u32) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_secs(), t.subsec_micros())
}

/// The time and pid in a name of ours (`<secs>.M<usec>P<pid>Q<n>.<host>`), `None` for
/// any other name.
fn parse_name(name: &str) -> Option<((u64, u32), u32)> {
    let mut parts = name.splitn(3, '.');
    let secs = parts.next()?.parse().ok()?;
    let rest = parts.next()?.strip_prefix('M')?;
    parts.next()?;
    let (usec, rest) = rest.split_once('P')?;
    let (pid, n) = rest.split_once('Q')?;
    n.parse::<u64>().ok()?;
    Some(((secs, usec.parse().ok()?), pid.parse().ok()?))
}

fn check_header_value(value: &str) -> Result<(), StoreError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(StoreError::InvalidAddress(value.to_owned()));
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), StoreError> {
    match DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(StoreError::io("creating directory", path, e))
        }
        _ => Ok(()),
    }
}

fn create_tmp(path: &Path, read: bool) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(read)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io("creating", path, e))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Subdirectories of `dir` (following symlinks); unreadable ones are logged and skipped.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) => {
            if e.kind() != io::ErrorKind::NotADirectory {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot scan directory");
            }
            Vec::new()
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A directory removed when dropped; enough for these tests without another dependency.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new() -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "ironpost-test-{}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed),
                super::now().1
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::TempDir;
    use super::*;
    use std::sync::Barrier;

    const HEADER: &[u8] = b"Received: from client by mx.example.org\r\n";

    fn rcpt(domain: &str, local: &str) -> Recipient {
        Recipient {
            domain: domain.into(),
            local: local.into(),
            delivered_to: format!("{local}@{domain}"),
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn single_recipient_exact_bytes_and_name() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "mx/1:a.example.org").unwrap();
        let mut w = store.begin("a@b", vec![rcpt("y", "x")], HEADER).unwrap();
        w.write(b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        assert_eq!(w.body_len(), 21);
        let paths = w.commit().unwrap();
        assert_eq!(paths.len(), 1);

        let md = store.maildir_path("y", "x");
        assert_eq!(files(&md.join("new")), paths);
        assert!(files(&md.join("tmp")).is_empty());
        assert!(md.join("cur").is_dir());
        let data = fs::read(&paths[0]).unwrap();
        let mut want = b"Return-Path: <a@b>\r\nDelivered-To: x@y\r\n".to_vec();
        want.extend_from_slice(HEADER);
        want.extend_from_slice(b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(data, want);

        let name = paths[0].file_name().unwrap().to_str().unwrap();
        let (base, size) = name.rsplit_once(",S=").unwrap();
        assert_eq!(size.parse::<usize>().unwrap(), data.len());
        assert!(base.ends_with(".mx\\0571\\072a.example.org"), "{base}");
        let (_, pid) = parse_name(base).unwrap();
        assert_eq!(pid, std::process::id());
        assert!(base.split('.').nth(1).unwrap().starts_with('M'));

        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&md).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn null_return_path() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        let mut w = store.begin("", vec![rcpt("y", "x")], b"").unwrap();
        w.write(b"x\r\n").unwrap();
        let paths = w.commit().unwrap();
        assert_eq!(
            fs::read(&paths[0]).unwrap(),
            b"Return-Path: <>\r\nDelivered-To: x@y\r\nx\r\n"
        );
    }

    #[test]
    fn multiple_recipients_get_their_own_lines_and_the_same_body() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        let mut recipients = vec![rcpt("y", "x"), rcpt("z", "w"), rcpt("y", "v")];
        let mut dup = rcpt("y", "x");
        dup.delivered_to = "alias@y".into();
        recipients.push(dup);
        let mut w = store.begin("a@b", recipients, HEADER).unwrap();
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        w.write(&body).unwrap();
        let paths = w.commit().unwrap();
        assert_eq!(paths.len(), 3, "duplicate recipient delivered once");
        for (path, to) in paths.iter().zip(["x@y", "w@z", "v@y"]) {
            let data = fs::read(path).unwrap();
            let head = format!("Return-Path: <a@b>\r\nDelivered-To: {to}\r\n");
            assert!(data.starts_with(head.as_bytes()));
            assert_eq!(&data[head.len()..head.len() + HEADER.len()], HEADER);
            assert_eq!(&data[head.len() + HEADER.len()..], &body[..]);
            let size = path.to_str().unwrap().rsplit_once(",S=").unwrap().1;
            assert_eq!(size.parse::<usize>().unwrap(), data.len());
        }
        for (d, l) in [("y", "x"), ("z", "w"), ("y", "v")] {
            assert_eq!(files(&store.maildir_path(d, l).join("new")).len(), 1);
            assert!(files(&store.maildir_path(d, l).join("tmp")).is_empty());
        }
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        let mut w = store
            .begin("a@b", vec![rcpt("y", "x"), rcpt("y", "u")], HEADER)
            .unwrap();
        w.write(b"partial").unwrap();
        assert_eq!(files(&store.maildir_path("y", "x").join("tmp")).len(), 1);
        drop(w);
        for l in ["x", "u"] {
            let md = store.maildir_path("y", l);
            for sub in ["tmp", "new", "cur"] {
                assert!(files(&md.join(sub)).is_empty(), "{l}/{sub}");
            }
        }
    }

    #[test]
    fn recover_removes_only_stale_tmp_files() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        // A live message of this process must survive.
        let mut live = store.begin("a@b", vec![rcpt("y", "x")], b"").unwrap();
        live.write(b"live\r\n").unwrap();
        let tmp = store.maildir_path("y", "x").join("tmp");
        let folder_tmp = store.maildir_path("y", "x").join(".Sent/tmp");
        fs::create_dir_all(&folder_tmp).unwrap();

        let pid = std::process::id();
        let (secs, _) = now();
        let other_pid = format!("{secs}.M1P{}Q0.h", pid.wrapping_add(1));
        let our_pid_earlier = format!("{}.M1P{pid}Q0.h", store.inner.opened.0 - 10);
        let our_pid_fresh = format!("{}.M1P{pid}Q999999.h", secs + 5);
        for name in [&other_pid, &our_pid_earlier, &our_pid_fresh] {
            fs::write(tmp.join(name), b"x").unwrap();
        }
        fs::write(folder_tmp.join(&other_pid), b"x").unwrap();
        fs::write(tmp.join("foreign-fresh"), b"x").unwrap();
        let old = File::create(tmp.join("foreign-old")).unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(37 * 3600))
            .unwrap();

        assert_eq!(store.recover().unwrap(), 4);
        let left: Vec<_> = files(&tmp)
            .into_iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(&our_pid_fresh));
        assert!(left.contains(&"foreign-fresh".to_owned()));
        assert!(files(&folder_tmp).is_empty());
        live.commit().unwrap();
    }

    #[test]
    fn recover_without_mail_is_zero() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        assert_eq!(store.recover().unwrap(), 0);
    }

    #[test]
    fn path_escapes_are_rejected() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        let bad = [
            ("..", "x"),
            (".", "x"),
            ("y", ".."),
            ("y", "."),
            ("y", ".hidden"),
            ("y", "a/b"),
            ("y", "/etc"),
            ("a/../..", "x"),
            ("y", "a\0b"),
            ("", "x"),
            ("y", ""),
        ];
        for (domain, local) in bad {
            let err = store
                .begin("a@b", vec![rcpt(domain, local)], b"")
                .unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidMailbox { .. }),
                "{domain:?} {local:?}: {err}"
            );
        }
        // Header injection through an address.
        let mut r = rcpt("y", "x");
        r.delivered_to = "x@y\r\nBcc: z".into();
        assert!(matches!(
            store.begin("a@b", vec![r], b""),
            Err(StoreError::InvalidAddress(_))
        ));
        assert!(matches!(
            store.begin("a@b\n", vec![rcpt("y", "x")], b""),
            Err(StoreError::InvalidAddress(_))
        ));
        assert!(matches!(
            store.begin("a@b", Vec::new(), b""),
            Err(StoreError::NoRecipients)
        ));
        // Nothing was created outside (or inside) the mail root.
        assert!(files(&td.path().join("mail")).is_empty());
        assert_eq!(files(td.path()), vec![td.path().join("mail")]);
    }

    #[test]
    fn large_body_in_odd_chunks_is_exact() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        let body: Vec<u8> = (0..5 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut w = store
            .begin("a@b", vec![rcpt("y", "x"), rcpt("y", "z")], HEADER)
            .unwrap();
        let sizes = [1usize, 7, 4093, 65_537, 130_001, 3];
        let mut rest = &body[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            w.write(&rest[..n]).unwrap();
            rest = &rest[n..];
            i += 1;
        }
        assert_eq!(w.body_len(), body.len() as u64);
        for path in w.commit().unwrap() {
            let data = fs::read(&path).unwrap();
            assert!(data.ends_with(&body));
            assert_eq!(data.len() - body.len(), {
                let prefix = &data[..data.len() - body.len()];
                assert!(prefix.ends_with(HEADER));
                prefix.len()
            });
        }
    }

    #[test]
    fn concurrent_deliveries_share_commit_batches() {
        const N: usize = 64;
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        let barrier = Arc::new(Barrier::new(N));
        let threads: Vec<_> = (0..N)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let local = format!("u{}", i % 8);
                    let mut w = store.begin("a@b", vec![rcpt("y", &local)], b"").unwrap();
                    w.write(format!("message {i}\r\n").as_bytes()).unwrap();
                    barrier.wait();
                    w.commit().unwrap()
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in threads {
            all.extend(t.join().unwrap());
        }
        assert_eq!(all.len(), N);
        let landed: usize = (0..8)
            .map(|u| files(&store.maildir_path("y", &format!("u{u}")).join("new")).len())
            .sum();
        assert_eq!(landed, N);
        let stats = store.committer().stats();
        assert_eq!(stats.messages, N as u64);
        assert!(stats.batches < N as u64, "{stats:?}");
    }

    #[test]
    fn failed_commit_leaves_nothing() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        let mut w = store.begin("a@b", vec![rcpt("y", "x")], b"").unwrap();
        w.write(b"x\r\n").unwrap();
        // Losing new/ makes the rename fail.
        let md = store.maildir_path("y", "x");
        fs::remove_dir(md.join("new")).unwrap();
        let err = w.commit().unwrap_err();
        assert!(matches!(err, StoreError::Commit { .. }), "{err}");
        assert!(files(&md.join("tmp")).is_empty());
    }

    #[test]
    fn parse_name_accepts_only_ours() {
        assert_eq!(
            parse_name("1700000000.M12P34Q5.host.example"),
            Some(((1_700_000_000, 12), 34))
        );
        assert_eq!(parse_name("1700000000.M12P34.host"), None);
        assert_eq!(parse_name("junk"), None);
    }
}
