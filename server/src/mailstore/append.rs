//! APPEND: a message streamed into `tmp/`, then published into `cur/` with its flags and
//! given a UID.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::flags::{FileName, SystemFlags};
use super::index::sync_dir;
use super::mailbox::{NewFile, SharedMailbox};
use super::{MailstoreError, Result};

/// The UID an APPEND got (for `[APPENDUID <uidvalidity> <uid>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub uidvalidity: u32,
    pub uid: u32,
}

/// A message being appended. Write it in chunks of any size (it never sits whole in memory),
/// then [`AppendWriter::commit`]; dropping it uncommitted removes the partial file.
pub struct AppendWriter {
    shared: Arc<SharedMailbox>,
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    base: String,
    len: u64,
}

impl std::fmt::Debug for AppendWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendWriter")
            .field("tmp", &self.tmp)
            .field("len", &self.len)
            .finish()
    }
}

impl AppendWriter {
    pub(crate) fn begin(shared: Arc<SharedMailbox>) -> Result<AppendWriter> {
        let base = shared.ctx.unique_name();
        let tmp = shared.path().join("tmp").join(&base);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|source| MailstoreError::Io {
                op: "creating",
                path: tmp.clone(),
                source,
            })?;
        Ok(AppendWriter {
            shared,
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            tmp,
            base,
            len: 0,
        })
    }

    pub(crate) fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Appends bytes of the message, exactly as given (CRLF line endings).
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("AppendWriter used after commit");
        out.write_all(chunk).map_err(|source| MailstoreError::Io {
            op: "writing",
            path: self.tmp.clone(),
            source,
        })?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the message durable in `cur/` with these flags and keywords and INTERNALDATE
    /// (the file's mtime; now if `None`), and returns its UID once the index holding it is
    /// durable.
    pub fn commit(
        mut self,
        flags: SystemFlags,
        keywords: &[&str],
        internal_date: Option<SystemTime>,
    ) -> Result<Appended> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| MailstoreError::Io { op, path, source }
        };
        let out = self.out.take().expect("AppendWriter used after commit");
        let file = out
            .into_inner()
            .map_err(|e| io("writing", &self.tmp)(e.into_error()))?;
        if let Some(date) = internal_date {
            file.set_modified(date)
                .map_err(io("setting the date of", &self.tmp))?;
        }
        file.sync_all().map_err(io("fsync of", &self.tmp))?;
        let meta = file.metadata().map_err(io("stat of", &self.tmp))?;
        drop(file);
        let (size, mtime) = (meta.len(), meta.mtime());
        let base = format!("{},S={size}", self.base);
        let tmp = self.tmp.clone();
        self.shared.run(None, |st, ctx| {
            st.sync(ctx, false)?;
            let kw = st.resolve_keywords(ctx, keywords, true)?;
            let name = FileName::format(&base, flags.bits(), kw, "");
            let cur = st.dir.join("cur");
            let to = cur.join(&name);
            fs::rename(&tmp, &to).map_err(io("renaming into", &to))?;
            let result = sync_dir(&cur).map_err(io("fsync of", &cur)).and_then(|()| {
                st.add_files(
                    ctx,
                    vec![NewFile {
                        file: name,
                        in_new: false,
                        size,
                        mtime,
                    }],
                )
            });
            match result {
                Ok(uids) => Ok(Appended {
                    uidvalidity: st.uidvalidity,
                    uid: uids[0],
                }),
                Err(e) => {
                    let _ = fs::remove_file(&to);
                    Err(e)
                }
            }
        })
    }
}

impl Drop for AppendWriter {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            drop(out.into_parts());
        }
        // After a commit the file has been renamed away and this finds nothing.
        let _ = fs::remove_file(&self.tmp);
    }
}
