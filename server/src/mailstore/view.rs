//! A session's view of a selected mailbox: its own message sequence, which changes only when
//! the session asks what changed (so sequence numbers move only when the session can tell
//! its client, as IMAP requires).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::cache::HeaderSummary;
use super::flags::{FileName, KeywordSet, Keywords, StoreOp, SystemFlags, MAX_KEYWORDS};
use super::index::sync_dir;
use super::mailbox::{NewFile, SharedMailbox};
use super::{open_message_file, Account, MailstoreError, Result};

/// One message as a session sees it. Everything here comes from the index: no message file
/// is opened to produce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    pub uid: u32,
    pub flags: SystemFlags,
    /// Keywords as bits over the mailbox's keyword table ([`MailboxView::keyword_names`]).
    pub keywords: KeywordSet,
    /// `\Recent` for this session.
    pub recent: bool,
    /// RFC822.SIZE.
    pub size: u64,
    /// INTERNALDATE, seconds since the Unix epoch (the file's mtime).
    pub internal_date: i64,
    /// Expunged by someone else, not yet reported to this session (it keeps its sequence
    /// number until [`MailboxView::refresh`] may report expunges). Its file is gone.
    pub expunged: bool,
}

/// What changed since the session last looked, in the order the responses go out:
/// EXPUNGE for each of `expunged`, then EXISTS/RECENT, then FLAGS (if `keywords`), then
/// FETCH (FLAGS) for each of `flags`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sequence numbers to send `* n EXPUNGE` for, highest first (so each is right as sent).
    pub expunged: Vec<u32>,
    /// New message count, if messages were added (`* n EXISTS`).
    pub exists: Option<u32>,
    /// New `\Recent` count, sent with EXISTS.
    pub recent: Option<u32>,
    /// The keyword table grew: send `* FLAGS (...)` and the PERMANENTFLAGS again.
    pub keywords: bool,
    /// Sequence numbers (after the expunges) whose flags changed: `* n FETCH (FLAGS ...)`.
    pub flags: Vec<u32>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// Outcome of [`MailboxView::store`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// Sequence numbers of the messages the STORE applied to (changed or not), ascending.
    pub messages: Vec<u32>,
    /// New keywords were defined: send `* FLAGS` / PERMANENTFLAGS.
    pub keywords: bool,
}

/// Outcome of COPY or MOVE: what COPYUID (RFC 4315) reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResult {
    /// UIDVALIDITY of the destination.
    pub uidvalidity: u32,
    /// (source UID, destination UID), ascending by source UID.
    pub uids: Vec<(u32, u32)>,
}

/// A session's handle on a selected (or examined) mailbox. Dropping it unregisters its waker.
pub struct MailboxView {
    account: Account,
    shared: Arc<SharedMailbox>,
    id: u64,
    name: String,
    read_only: bool,
    uidvalidity: u32,
    uidnext: u32,
    messages: Vec<MessageInfo>,
    keywords: Keywords,
    modseq: u64,
    counter: u64,
}

impl std::fmt::Debug for MailboxView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxView")
            .field("name", &self.name)
            .field("read_only", &self.read_only)
            .field("exists", &self.messages.len())
            .finish()
    }
}

fn info(e: &super::mailbox::Entry, recent: bool) -> MessageInfo {
    MessageInfo {
        uid: e.uid,
        flags: e.flags(),
        keywords: e.keywords,
        recent,
        size: if e.size == u64::MAX { 0 } else { e.size },
        internal_date: e.mtime.unwrap_or(0),
        expunged: false,
    }
}

impl MailboxView {
    /// SELECT (`read_only` false: claims `\Recent`, allows changes) or EXAMINE.
    pub(crate) fn open(
        account: Account,
        shared: Arc<SharedMailbox>,
        name: String,
        read_only: bool,
    ) -> Result<MailboxView> {
        let counter = shared.change_counter();
        let id = account.registry().next_view_id();
        let mut view = shared.run(None, |st, ctx| {
            st.sync(ctx, false)?;
            let messages = st
                .entries
                .iter()
                .map(|e| info(e, e.uid >= st.recent_from))
                .collect();
            if !read_only {
                st.recent_from = st.uidnext;
            }
            Ok(MailboxView {
                account: account.clone(),
                shared: Arc::clone(&shared),
                id,
                name: name.clone(),
                read_only,
                uidvalidity: st.uidvalidity,
                uidnext: st.uidnext,
                messages,
                keywords: st.keywords.clone(),
                modseq: st.modseq,
                counter,
            })
        })?;
        view.counter = counter;
        Ok(view)
    }

    /// The mailbox name (UTF-8, normalised: `INBOX` in capitals).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opened with EXAMINE: no flag changes, expunges, moves; `\Recent` is shown but not
    /// claimed (the next SELECT still sees it).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    /// UIDNEXT as of the last look.
    pub fn uidnext(&self) -> u32 {
        self.uidnext
    }

    /// EXISTS: the number of messages in this session's sequence.
    pub fn exists(&self) -> u32 {
        self.messages.len() as u32
    }

    /// RECENT: messages that are `\Recent` for this session.
    pub fn recent(&self) -> u32 {
        self.messages.iter().filter(|m| m.recent).count() as u32
    }

    /// Messages without `\Seen`.
    pub fn unseen(&self) -> u32 {
        self.messages
            .iter()
            .filter(|m| !m.flags.contains(SystemFlags::SEEN))
            .count() as u32
    }

    /// Sequence number of the first message without `\Seen` (for `[UNSEEN n]`).
    pub fn first_unseen(&self) -> Option<u32> {
        self.messages
            .iter()
            .position(|m| !m.flags.contains(SystemFlags::SEEN))
            .map(|i| i as u32 + 1)
    }

    /// The messages, index = sequence number − 1, ascending UIDs.
    pub fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    /// The message with a sequence number (1-based).
    pub fn message(&self, seq: u32) -> Option<&MessageInfo> {
        self.messages.get((seq as usize).checked_sub(1)?)
    }

    /// The sequence number of a UID.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| i as u32 + 1)
    }

    /// Every keyword defined in this mailbox (for the FLAGS response).
    pub fn keywords(&self) -> Vec<&str> {
        self.keywords.all().collect()
    }

    /// Names of the keywords in a message's set.
    pub fn keyword_names(&self, set: KeywordSet) -> Vec<&str> {
        self.keywords.names(set).collect()
    }

    /// Whether a client may still create keywords (`\*` in PERMANENTFLAGS).
    pub fn can_create_keywords(&self) -> bool {
        !self.read_only && self.keywords.len() < MAX_KEYWORDS
    }

    /// Goes up whenever the mailbox may have changed; compare with [`Self::has_changes`].
    pub fn change_counter(&self) -> u64 {
        self.shared.change_counter()
    }

    /// Something may have changed since the last [`Self::refresh`] (cheap: one atomic load).
    pub fn has_changes(&self) -> bool {
        self.shared.change_counter() != self.counter
    }

    /// Calls `waker` (from whatever thread made the change) whenever another session, a
    /// delivery or a sync changes the mailbox; replaces any earlier waker. Keep it short and
    /// non-blocking (e.g. wake an event loop); never call into the store from it.
    pub fn set_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        self.shared.set_waker(self.id, Some(Arc::from(waker)));
    }

    /// Removes the waker.
    pub fn clear_waker(&self) {
        self.shared.set_waker(self.id, None);
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            Err(MailstoreError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Looks at the mailbox (a cheap sync with the directory) and brings this view up to date,
    /// returning what to tell the client. With `allow_expunge` false (during FETCH, STORE,
    /// SEARCH by sequence number), expunged messages stay in the sequence, marked
    /// [`MessageInfo::expunged`], until a later call may report them.
    ///
    /// Fails with [`MailstoreError::MailboxGone`] if the mailbox was deleted or renamed, and
    /// with [`MailstoreError::UidValidityChanged`] if another program reset its UIDs: either
    /// way the session must deselect it (close the connection with BYE for the latter).
    pub fn refresh(&mut self, allow_expunge: bool) -> Result<Changes> {
        let shared = Arc::clone(&self.shared);
        self.counter = shared.change_counter();
        shared.run(Some(self.id), |st, ctx| {
            st.sync(ctx, false)?;
            if st.uidvalidity != self.uidvalidity {
                return Err(MailstoreError::UidValidityChanged);
            }
            let pending = allow_expunge && self.messages.iter().any(|m| m.expunged);
            let mut changes = Changes::default();
            if st.modseq == self.modseq && !pending {
                return Ok(changes);
            }
            let old = std::mem::take(&mut self.messages);
            let mut messages = Vec::with_capacity(st.entries.len());
            let mut changed_uids = Vec::new();
            let mut j = 0;
            for (i, mut m) in old.into_iter().enumerate() {
                while j < st.entries.len() && st.entries[j].uid < m.uid {
                    j += 1;
                }
                match st.entries.get(j) {
                    Some(e) if e.uid == m.uid => {
                        if (e.flags(), e.keywords) != (m.flags, m.keywords) {
                            m.flags = e.flags();
                            m.keywords = e.keywords;
                            changed_uids.push(m.uid);
                        }
                        messages.push(m);
                    }
                    _ if allow_expunge => changes.expunged.push(i as u32 + 1),
                    _ => {
                        m.expunged = true;
                        messages.push(m);
                    }
                }
            }
            changes.expunged.reverse();
            let start = st.entries.partition_point(|e| e.uid < self.uidnext);
            let added = st.entries.len() - start;
            for e in &st.entries[start..] {
                messages.push(info(e, e.uid >= st.recent_from));
            }
            if !self.read_only {
                st.recent_from = st.recent_from.max(st.uidnext);
            }
            self.messages = messages;
            self.uidnext = st.uidnext;
            if added > 0 {
                changes.exists = Some(self.exists());
                changes.recent = Some(self.recent());
            }
            if st.keywords != self.keywords {
                self.keywords = st.keywords.clone();
                changes.keywords = true;
            }
            changes.flags = changed_uids
                .iter()
                .filter_map(|&u| self.seq_of(u))
                .collect();
            self.modseq = st.modseq;
            Ok(changes)
        })
    }

    /// STORE on UIDs (translate sequence numbers with [`Self::message`] first). Messages
    /// already expunged are skipped. The view's own copy of the flags is updated, so its next
    /// [`Self::refresh`] does not report them again (other sessions' refresh does).
    pub fn store(
        &mut self,
        uids: &[u32],
        op: StoreOp,
        flags: SystemFlags,
        keywords: &[&str],
    ) -> Result<StoreOutcome> {
        self.writable()?;
        let shared = Arc::clone(&self.shared);
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        shared.run(Some(self.id), |st, ctx| {
            let done = st.store(ctx, &uids, op, flags, keywords)?;
            let mut outcome = StoreOutcome::default();
            if st.keywords != self.keywords {
                self.keywords = st.keywords.clone();
                outcome.keywords = true;
            }
            for uid in done {
                let (Some(i), Some(seq)) = (st.position(uid), self.seq_of(uid)) else {
                    continue;
                };
                let e = &st.entries[i];
                let m = &mut self.messages[seq as usize - 1];
                m.flags = e.flags();
                m.keywords = e.keywords;
                outcome.messages.push(seq);
            }
            Ok(outcome)
        })
    }

    /// EXPUNGE (`uids` None) or UID EXPUNGE: removes the messages flagged `\Deleted`
    /// (limited to `uids` if given). Returns the UIDs removed; call [`Self::refresh`] with
    /// `allow_expunge` next to get the EXPUNGE responses (they include these).
    pub fn expunge(&mut self, uids: Option<&[u32]>) -> Result<Vec<u32>> {
        self.writable()?;
        let shared = Arc::clone(&self.shared);
        shared.run(Some(self.id), |st, ctx| {
            st.sync(ctx, false)?;
            let targets: Vec<u32> = st
                .entries
                .iter()
                .filter(|e| e.flags().contains(SystemFlags::DELETED))
                .map(|e| e.uid)
                .filter(|u| uids.is_none_or(|set| set.contains(u)))
                .collect();
            st.remove(ctx, &targets)
        })
    }

    /// The header cache's summaries of this view's messages, in sequence order (`None` for
    /// a message without one, or expunged). Reads the cache file on first use. Make missing
    /// ones from the files and hand them to [`Self::cache_headers`].
    pub fn cached_headers(&self) -> Result<Vec<Option<Arc<HeaderSummary>>>> {
        let uids: Vec<u32> = self.messages.iter().map(|m| m.uid).collect();
        self.cached_headers_of(&uids)
    }

    /// [`Self::cached_headers`] of the messages with these UIDs (ascending), in that order:
    /// what FETCH asks for each batch.
    pub fn cached_headers_of(&self, uids: &[u32]) -> Result<Vec<Option<Arc<HeaderSummary>>>> {
        let uidvalidity = self.uidvalidity;
        self.shared.run(None, |st, _| {
            if st.gone {
                return Err(MailstoreError::MailboxGone);
            }
            if st.uidvalidity != uidvalidity {
                return Ok(vec![None; uids.len()]);
            }
            let dir = st.dir.clone();
            Ok(st.headers.lookup(&dir, &st.entries, uids))
        })
    }

    /// Adds header summaries made from the files of these messages (by UID) to the cache,
    /// and writes the cache file if that is worth it (as [`Self::save_headers_if_worth_it`]).
    /// Summaries of messages expunged meanwhile are dropped, and so are all of them if the
    /// mailbox's UIDs were reset since this view looked.
    pub fn cache_headers(&self, summaries: Vec<(u32, HeaderSummary)>) -> Result<()> {
        self.update_headers(summaries, Save::IfWorthIt)
    }

    /// [`Self::cache_headers`] in memory only (every session of this process sees them at
    /// once); [`Self::save_headers`] writes the file. FETCH notes each batch's summaries and
    /// saves at its end, if that is worth it ([`Self::save_headers_if_worth_it`]): writing
    /// the whole file after every batch would make a FETCH of a large mailbox write it over
    /// and over.
    pub fn note_headers(&self, summaries: Vec<(u32, HeaderSummary)>) -> Result<()> {
        self.update_headers(summaries, Save::Never)
    }

    /// Writes the cache file if it lacks summaries noted with [`Self::note_headers`].
    pub fn save_headers(&self) -> Result<()> {
        self.update_headers(Vec::new(), Save::Always)
    }

    /// [`Self::save_headers`] if enough summaries were noted since the file was last
    /// written to be worth rewriting it (see `HeaderCache::worth_saving`); the others stay in
    /// memory, for every session of this process, until a later save.
    pub fn save_headers_if_worth_it(&self) -> Result<()> {
        self.update_headers(Vec::new(), Save::IfWorthIt)
    }

    fn update_headers(&self, summaries: Vec<(u32, HeaderSummary)>, save: Save) -> Result<()> {
        let uidvalidity = self.uidvalidity;
        self.shared.run(None, |st, ctx| {
            if st.gone {
                return Ok(());
            }
            // UIDs of another UIDVALIDITY name other messages: keep none of these.
            if st.uidvalidity == uidvalidity {
                st.headers.insert(&st.entries, summaries);
            }
            let save = match save {
                Save::Never => false,
                Save::IfWorthIt => st.headers.worth_saving(),
                Save::Always => true,
            };
            if !save {
                return Ok(());
            }
            let dir = st.dir.clone();
            st.headers
                .save(&dir, &st.entries, ctx.started)
                .map_err(|source| MailstoreError::Io {
                    op: "writing",
                    path: dir.join(super::cache::CACHE_FILE),
                    source,
                })
        })
    }

    /// Opens a message file for reading by UID. Fails with [`MailstoreError::Expunged`] if it
    /// no longer exists.
    pub fn open_message(&self, uid: u32) -> Result<File> {
        open_by_uid(&self.shared, uid)
    }

    /// COPY into another mailbox of the same account (it must exist: if not, the error is
    /// [`MailstoreError::NoSuchMailbox`], answered with `[TRYCREATE]`). Hard links where the
    /// file system allows, else copies. Flags and keywords go along; the copies are `\Recent`
    /// for the first session to see them there.
    pub fn copy(&self, uids: &[u32], dest: &str) -> Result<CopyResult> {
        copy_messages(&self.account, &self.shared, uids, dest)
    }

    /// MOVE (RFC 6851): copy, then remove from here. Send the COPYUID, then call
    /// [`Self::refresh`] with `allow_expunge` for the EXPUNGE responses.
    pub fn move_to(&mut self, uids: &[u32], dest: &str) -> Result<CopyResult> {
        self.writable()?;
        let result = copy_messages(&self.account, &self.shared, uids, dest)?;
        let moved: Vec<u32> = result.uids.iter().map(|(s, _)| *s).collect();
        let shared = Arc::clone(&self.shared);
        shared.run(Some(self.id), |st, ctx| st.remove(ctx, &moved))?;
        Ok(result)
    }
}

/// When [`MailboxView::update_headers`] writes the cache file.
#[derive(Debug, Clone, Copy)]
enum Save {
    Never,
    IfWorthIt,
    Always,
}

impl Drop for MailboxView {
    fn drop(&mut self) {
        self.shared.set_waker(self.id, None);
    }
}

pub(crate) fn open_by_uid(shared: &SharedMailbox, uid: u32) -> Result<File> {
    let path = shared.run(None, |st, ctx| st.locate(ctx, uid, false))?;
    match open_message_file(&path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Renamed by a flag change in another process, or expunged: look again.
            let path = shared.run(None, |st, ctx| st.locate(ctx, uid, true))?;
            open_message_file(&path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => MailstoreError::Expunged { uid },
                _ => MailstoreError::Io {
                    op: "opening",
                    path,
                    source: e,
                },
            })
        }
        Err(e) => Err(MailstoreError::Io {
            op: "opening",
            path,
            source: e,
        }),
    }
}

/// A message to copy: where it is now and what goes with it.
struct Source {
    uid: u32,
    path: PathBuf,
    letters: u8,
    keywords: Vec<String>,
    size: u64,
    mtime: i64,
}

/// Files staged in a destination's `tmp/`, removed on drop unless handed on.
struct Staged(Vec<PathBuf>);

impl Drop for Staged {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

pub(crate) fn copy_messages(
    account: &Account,
    src: &Arc<SharedMailbox>,
    uids: &[u32],
    dest: &str,
) -> Result<CopyResult> {
    let dst = account.existing_mailbox(dest)?;
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    let sources: Vec<Source> = src.run(None, |st, ctx| {
        st.sync(ctx, false)?;
        Ok(uids
            .iter()
            .filter_map(|&uid| st.position(uid))
            .map(|i| {
                let e = &st.entries[i];
                Source {
                    uid: e.uid,
                    path: st.path_of(e),
                    letters: e.letters,
                    keywords: st.keywords.names(e.keywords).map(str::to_owned).collect(),
                    size: e.size,
                    mtime: e.mtime.unwrap_or(0),
                }
            })
            .collect())
    })?;

    let tmp_dir = dst.path().join("tmp");
    let mut staged = Staged(Vec::new());
    let mut copied: Vec<(Source, String)> = Vec::new();
    for mut s in sources {
        let base = dst.ctx.unique_name();
        let tmp = tmp_dir.join(&base);
        let mut retried = false;
        loop {
            match fs::hard_link(&s.path, &tmp) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !retried => {
                    retried = true;
                    match src.run(None, |st, ctx| st.locate(ctx, s.uid, true)) {
                        Ok(p) => s.path = p,
                        Err(MailstoreError::Expunged { .. }) => break,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !tmp_dir.exists() => {
                    return Err(MailstoreError::Io {
                        op: "linking into",
                        path: tmp,
                        source: e,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(_) => {
                    copy_file(&s.path, &tmp, s.mtime)?;
                    break;
                }
            }
        }
        if !tmp.exists() {
            continue; // expunged meanwhile: COPY skips it
        }
        staged.0.push(tmp);
        copied.push((s, base));
    }

    dst.run(None, |st, ctx| {
        st.sync(ctx, false)?;
        let cur = st.dir.join("cur");
        let mut files = Vec::with_capacity(copied.len());
        let mut placed = Vec::with_capacity(copied.len());
        let result = (|| {
            for ((s, base), tmp) in copied.iter().zip(&staged.0) {
                let kw = st.resolve_keywords_lossy(ctx, &s.keywords)?;
                let name = FileName::format(&format!("{base},S={}", s.size), s.letters, kw, "");
                let to = cur.join(&name);
                fs::rename(tmp, &to).map_err(|e| MailstoreError::Io {
                    op: "renaming into",
                    path: to.clone(),
                    source: e,
                })?;
                placed.push(to);
                files.push(NewFile {
                    file: name,
                    in_new: false,
                    size: s.size,
                    mtime: s.mtime,
                });
            }
            sync_dir(&cur).map_err(|e| MailstoreError::Io {
                op: "fsync of",
                path: cur.clone(),
                source: e,
            })?;
            st.add_files(ctx, std::mem::take(&mut files))
        })();
        match result {
            Ok(new_uids) => {
                staged.0.clear();
                Ok(CopyResult {
                    uidvalidity: st.uidvalidity,
                    uids: copied.iter().map(|(s, _)| s.uid).zip(new_uids).collect(),
                })
            }
            Err(e) => {
                for p in placed {
                    let _ = fs::remove_file(p);
                }
                Err(e)
            }
        }
    })
}

/// Copies a message file's bytes when a hard link is not possible (another file system).
fn copy_file(from: &Path, to: &Path, mtime: i64) -> Result<()> {
    let io = |op, path: &Path| {
        let path = path.to_owned();
        move |source| MailstoreError::Io { op, path, source }
    };
    let mut src = open_message_file(from).map_err(io("opening", from))?;
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(io("creating", to))?;
    let result = (|| {
        let mut w = BufWriter::new(&out);
        io::copy(&mut src, &mut w)?;
        w.flush()?;
        drop(w);
        out.set_modified(UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64))?;
        out.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(to);
        return Err(io("copying to", to)(e));
    }
    Ok(())
}
