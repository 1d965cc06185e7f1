//! The outbound queue in `<data_dir>/queue/`: mail for other servers, kept safe until it is
//! delivered or returned to its sender.
//!
//! Each message is two files: `<id>.msg`, the message as it will be sent (our Received:
//! field, then the client's bytes), written once; and `<id>.meta`, its envelope and each
//! recipient's state ([`Meta`]), replaced whole on every change (temp file in `tmp/`,
//! fsync, rename, fsync of the directory). New messages and metadata updates go through a
//! group [`Committer`], so many of them share each directory fsync.
//!
//! A message is in the queue while its `.msg` exists. Recovery at start-up (after a crash
//! or SIGKILL) removes what an unfinished write left: files in `tmp/`, a `.msg` without
//! `.meta` (no 250 was given for it), a `.meta` whose `.msg` is gone (deleted). A `.meta`
//! that cannot be read is set aside as `.meta.corrupt` with its message kept, and reported:
//! mail is never thrown away on a guess.

mod accept;
pub mod cli;
mod meta;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use self::accept::{Accepting, Envelope};
pub use self::meta::{valid_id, Meta, MetaError, RecipientState, Status, META_VERSION};
pub use self::writer::QueueWriter;
use crate::commit::Committer;
use crate::maildir::StoreError;

/// Makes temporary file names unique within the process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The most of a message's header section read back for a DSN.
pub const MAX_HEADERS: usize = 64 * 1024;

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    pub(crate) committer: Committer,
}

impl Inner {
    pub(crate) fn message_path(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}.msg"))
    }

    pub(crate) fn meta_path(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}.meta"))
    }

    fn tmp_path(&self, id: &str, ext: &str) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.tmp
            .join(format!("{id}.{ext}.{}.{n}", std::process::id()))
    }

    pub(crate) fn tmp_meta_path(&self, id: &str) -> PathBuf {
        self.tmp_path(id, "meta")
    }
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Messages in the queue, oldest first.
    pub messages: Vec<Meta>,
    /// Ids whose metadata could not be read (set aside as `.meta.corrupt`).
    pub corrupt: Vec<String>,
    /// Leftover files removed.
    pub removed: usize,
}

/// A read-only look at the queue, for `ironpost queue list`.
#[derive(Debug, Default)]
pub struct Listing {
    pub messages: Vec<Meta>,
    /// Ids whose metadata cannot be read, with the reason.
    pub unreadable: Vec<(String, String)>,
}

/// The queue directory. Cheap to clone; one per process (the committer thread is in it).
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl Queue {
    /// Opens (creating if needed) `<data_dir>/queue` and starts its committer thread.
    pub fn open(data_dir: &Path) -> io::Result<Queue> {
        let root = data_dir.join("queue");
        let tmp = root.join("tmp");
        DirBuilder::new().recursive(true).mode(0o700).create(&tmp)?;
        for dir in [data_dir, &root] {
            sync_dir(dir)?;
        }
        Ok(Queue {
            inner: Arc::new(Inner {
                root,
                tmp,
                committer: Committer::try_start()?,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.root
    }

    pub fn message_path(&self, id: &str) -> PathBuf {
        self.inner.message_path(id)
    }

    /// Starts a message for foreign recipients: `(address, original address)` pairs,
    /// deduplicated by the caller. `header` (complete lines) comes before the body.
    pub fn begin(
        &self,
        id: &str,
        from: &str,
        recipients: &[(String, Option<String>)],
        header: &[u8],
        smtputf8: bool,
    ) -> Result<QueueWriter, StoreError> {
        if !valid_id(id) {
            return Err(StoreError::InvalidMailbox {
                name: id.to_string(),
                reason: "not a queue id",
            });
        }
        if recipients.is_empty() {
            return Err(StoreError::NoRecipients);
        }
        let bad = |a: &str| a.chars().any(|c| c.is_control() || c == '<' || c == '>');
        if let Some(a) = std::iter::once(from)
            .chain(recipients.iter().map(|(a, _)| a.as_str()))
            .find(|a| bad(a))
        {
            return Err(StoreError::InvalidAddress(a.to_string()));
        }
        let now = now_ms();
        let tmp = self.inner.tmp_path(id, "msg");
        let file = create_tmp(&tmp).map_err(|source| StoreError::Io {
            step: "creating",
            path: tmp.clone(),
            source,
        })?;
        let mut w = QueueWriter {
            inner: self.inner.clone(),
            id: id.to_string(),
            from: from.to_string(),
            recipients: recipients
                .iter()
                .map(|(a, o)| RecipientState::new(a.clone(), o.clone(), now))
                .collect(),
            smtputf8,
            out: Some(io::BufWriter::with_capacity(writer::WRITE_BUFFER, file)),
            tmp: tmp.clone(),
            size: 0,
            eight_bit: false,
            created: vec![tmp],
        };
        w.write(header)?;
        Ok(w)
    }

    /// Replaces a message's metadata atomically and durably. Fails with `NotFound` (and
    /// removes the metadata again) if the message was deleted meanwhile.
    pub fn save(&self, meta: &Meta) -> io::Result<()> {
        let tmp = self.inner.tmp_meta_path(&meta.id);
        let result = (|| {
            let mut f = create_tmp(&tmp)?;
            f.write_all(meta.to_toml().as_bytes())?;
            f.sync_data()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let path = self.inner.meta_path(&meta.id);
        self.inner.committer.commit(vec![(tmp, path.clone())])?;
        if !self.contains(&meta.id) {
            // `ironpost queue delete` removed it while this update was being written.
            let _ = fs::remove_file(&path);
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("queue message {} was deleted", meta.id),
            ));
        }
        Ok(())
    }

    /// Whether a message is (still) in the queue.
    pub fn contains(&self, id: &str) -> bool {
        self.inner.message_path(id).exists()
    }

    /// Reads one message's metadata.
    pub fn load(&self, id: &str) -> Result<Meta, String> {
        let text = fs::read_to_string(self.inner.meta_path(id)).map_err(|e| e.to_string())?;
        Meta::from_toml(&text, id).map_err(|e| e.to_string())
    }

    /// Removes a message: its message file first (from then on it is gone for the
    /// scheduler too), then its metadata. Returns whether there was one.
    pub fn remove(&self, id: &str) -> io::Result<bool> {
        if !valid_id(id) {
            return Ok(false);
        }
        let existed = match fs::remove_file(self.inner.message_path(id)) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        for ext in ["meta", "meta.corrupt"] {
            match fs::remove_file(self.inner.root.join(format!("{id}.{ext}"))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(existed)
    }

    pub fn open_message(&self, id: &str) -> io::Result<File> {
        File::open(self.inner.message_path(id))
    }

    /// The header section of a queued message (up to its empty line, at most
    /// [`MAX_HEADERS`] octets), for a DSN's text/rfc822-headers part.
    pub fn headers(&self, id: &str) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_message(id)?
            .take(MAX_HEADERS as u64)
            .read_to_end(&mut buf)?;
        Ok(header_section(&buf).to_vec())
    }

    /// Queues a complete message (a DSN) in one call.
    pub fn enqueue(
        &self,
        id: &str,
        from: &str,
        recipients: &[(String, Option<String>)],
        message: &[u8],
    ) -> Result<Meta, StoreError> {
        let mut w = self.begin(id, from, recipients, b"", false)?;
        w.write(message)?;
        w.commit()
    }

    /// Asks the running server to try every queued message now (`ironpost queue flush`):
    /// a marker file its scheduler looks for every second, or at its next start.
    pub fn request_flush(&self) -> io::Result<()> {
        File::create(self.inner.root.join("flush")).map(drop)
    }

    /// Takes a flush request, if one was made.
    pub fn take_flush_request(&self) -> bool {
        fs::remove_file(self.inner.root.join("flush")).is_ok()
    }

    /// Cleans up after an earlier process and returns what is queued (see the module
    /// documentation). Call once at start-up, before anything is queued.
    pub fn recover(&self) -> io::Result<Recovered> {
        let mut out = Recovered::default();
        for entry in fs::read_dir(&self.inner.tmp)? {
            let path = entry?.path();
            if fs::remove_file(&path).is_ok() {
                out.removed += 1;
            }
        }
        let (metas, messages) = self.names()?;
        for id in &metas {
            if !messages.contains(id) {
                tracing::warn!(queue_id = %id, "queue metadata without its message (deleted): removed");
                let _ = fs::remove_file(self.inner.meta_path(id));
                out.removed += 1;
                continue;
            }
            match self.load(id) {
                Ok(m) => out.messages.push(m),
                Err(why) => {
                    let from = self.inner.meta_path(id);
                    let to = self.inner.root.join(format!("{id}.meta.corrupt"));
                    tracing::error!(queue_id = %id, error = %why, "unreadable queue metadata: kept as {} with its message, not delivered", to.display());
                    fs::rename(&from, &to)?;
                    out.corrupt.push(id.clone());
                }
            }
        }
        for id in &messages {
            let corrupt = self.inner.root.join(format!("{id}.meta.corrupt"));
            if !metas.contains(id) && !corrupt.exists() {
                // Written but never committed: no 250 was given for it.
                let _ = fs::remove_file(self.inner.message_path(id));
                out.removed += 1;
            }
        }
        sync_dir(&self.inner.root)?;
        out.messages.sort_by_key(|m| (m.arrived_ms, m.id.clone()));
        Ok(out)
    }

    /// What is queued, without changing anything.
    pub fn list(&self) -> io::Result<Listing> {
        let mut out = Listing::default();
        let (metas, messages) = self.names()?;
        for id in metas {
            if !messages.contains(&id) {
                continue;
            }
            match self.load(&id) {
                Ok(m) => out.messages.push(m),
                Err(why) => out.unreadable.push((id, why)),
            }
        }
        for id in messages {
            let corrupt = self.inner.root.join(format!("{id}.meta.corrupt"));
            if corrupt.exists() {
                out.unreadable.push((
                    id,
                    "metadata set aside as unreadable (.meta.corrupt)".into(),
                ));
            }
        }
        out.messages.sort_by_key(|m| (m.arrived_ms, m.id.clone()));
        Ok(out)
    }

    /// Ids with a `.meta`, and ids with a `.msg`.
    fn names(&self) -> io::Result<(BTreeSet<String>, BTreeSet<String>)> {
        let mut metas = BTreeSet::new();
        let mut messages = BTreeSet::new();
        for entry in fs::read_dir(&self.inner.root)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name.strip_suffix(".meta").filter(|i| valid_id(i)) {
                metas.insert(id.to_string());
            } else if let Some(id) = name.strip_suffix(".msg").filter(|i| valid_id(i)) {
                messages.insert(id.to_string());
            }
        }
        Ok((metas, messages))
    }
}

/// The header section of a message: up to and including the CRLF before the empty line,
/// or everything if there is no empty line.
pub fn header_section(msg: &[u8]) -> &[u8] {
    if msg.starts_with(b"\r\n") {
        return &[];
    }
    match msg.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &msg[..i + 2],
        None => msg,
    }
}

pub(crate) fn create_tmp(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
