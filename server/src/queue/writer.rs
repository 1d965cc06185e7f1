//! Writing a message into the queue: body into `tmp/`, then message and metadata published
//! together by the group committer, so a 250 is only given once both are durable.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::meta::{Meta, RecipientState, META_VERSION};
use super::{create_tmp, now_ms, Inner};
use crate::maildir::StoreError;

/// Body writes are buffered this much so small network chunks do not each cost a syscall.
pub(super) const WRITE_BUFFER: usize = 64 * 1024;

/// A message being queued. Write the body, then [`QueueWriter::commit`]; dropping it
/// uncommitted removes its temporary file.
pub struct QueueWriter {
    pub(super) inner: Arc<Inner>,
    pub(super) id: String,
    pub(super) from: String,
    pub(super) recipients: Vec<RecipientState>,
    pub(super) smtputf8: bool,
    pub(super) out: Option<BufWriter<File>>,
    pub(super) tmp: PathBuf,
    pub(super) size: u64,
    pub(super) eight_bit: bool,
    /// Temporary files to remove if the message is not committed.
    pub(super) created: Vec<PathBuf>,
}

impl std::fmt::Debug for QueueWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueWriter")
            .field("id", &self.id)
            .field("size", &self.size)
            .finish()
    }
}

impl QueueWriter {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends message bytes exactly as given (CRLF line endings, dot-unstuffed).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let out = self.out.as_mut().expect("queue writer used after commit");
        out.write_all(chunk).map_err(|e| StoreError::Io {
            step: "writing",
            path: self.tmp.clone(),
            source: e,
        })?;
        self.size += chunk.len() as u64;
        self.eight_bit |= chunk.iter().any(|&b| b >= 0x80);
        Ok(())
    }

    /// Makes message and metadata durable in the queue and returns the metadata (the call
    /// blocks for the group commit: run it off any event loop). On error nothing of the
    /// message is left in the queue.
    pub fn commit(mut self) -> Result<Meta, StoreError> {
        let io = |step: &'static str, path: &PathBuf| {
            let path = path.clone();
            move |source| StoreError::Io { step, path, source }
        };
        let out = self.out.take().expect("queue writer used after commit");
        let file = out
            .into_inner()
            .map_err(|e| io("writing", &self.tmp)(e.into_error()))?;
        file.sync_data().map_err(io("fsync of", &self.tmp))?;
        drop(file);

        let meta = Meta {
            version: META_VERSION,
            id: self.id.clone(),
            from: std::mem::take(&mut self.from),
            arrived_ms: now_ms(),
            size: self.size,
            eight_bit: self.eight_bit,
            smtputf8: self.smtputf8,
            recipients: std::mem::take(&mut self.recipients),
        };
        let meta_tmp = self.inner.tmp_meta_path(&self.id);
        let mut f = create_tmp(&meta_tmp).map_err(io("creating", &meta_tmp))?;
        self.created.push(meta_tmp.clone());
        f.write_all(meta.to_toml().as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(io("writing", &meta_tmp))?;
        drop(f);

        // The message first, then its metadata: a message file without metadata is an
        // unfinished one that recovery removes.
        let renames = vec![
            (self.tmp.clone(), self.inner.message_path(&self.id)),
            (meta_tmp, self.inner.meta_path(&self.id)),
        ];
        // From here the committer owns the files, including their removal on failure.
        self.created.clear();
        self.inner
            .committer
            .commit(renames)
            .map_err(|source| StoreError::Commit { source })?;
        Ok(meta)
    }
}

impl Drop for QueueWriter {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            drop(out.into_parts());
        }
        for path in &self.created {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove queue tmp file");
                }
            }
        }
    }
}
