//! One mailbox's shared in-memory index and the operations on its Maildir.
//!
//! A [`SharedMailbox`] exists once per mailbox directory in the process (the registry hands
//! out the same `Arc` to every session); its [`State`] sits behind a mutex, and every change
//! to the mailbox (by a session here, or found on disk by a sync) bumps `modseq`, so views
//! can tell cheaply whether anything happened since their last look.
//!
//! The rule that keeps UIDs safe: a UID is handed out only after the `dovecot-uidlist` that
//! holds it is durable ([`State::commit_index`]), and the file is the only place UIDs are
//! assigned from, under its lock. A crash therefore loses at most UIDs nobody has seen.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::cache::HeaderCache;
use super::flags::{
    read_keywords, FileName, KeywordError, KeywordSet, Keywords, StoreOp, SystemFlags, MAX_KEYWORDS,
};
use super::index::{
    base_of, replace_file, sync_dir, FileStamp, LockedWrite, UidList, KEYWORDS, UIDLIST,
};
use super::registry::StoreCtx;
use super::{MailstoreError, Result};

/// A directory whose mtime is this close to "now" may change again within the same
/// timestamp tick without its mtime moving: rescan it next time whatever the stamp says.
const SETTLE: Duration = Duration::from_secs(2);

/// How often a sync starts over because another process rewrote the index under us.
const MAX_RETRIES: usize = 100;

/// One message of the index.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) uid: u32,
    /// The current file name (in `cur/`, or in `new/` if `in_new`).
    pub(crate) file: Box<str>,
    pub(crate) in_new: bool,
    /// uidlist extension tokens, kept for the next write.
    pub(crate) ext: Box<str>,
    /// System flag letters, including Maildir's P.
    pub(crate) letters: u8,
    pub(crate) keywords: KeywordSet,
    /// RFC822.SIZE: `,W=`, else `,S=`, else the file size.
    pub(crate) size: u64,
    /// INTERNALDATE: the file's mtime (`None` until stat'ed).
    pub(crate) mtime: Option<i64>,
}

impl Entry {
    fn from_record(uid: u32, file: &str, ext: &str) -> Entry {
        let parsed = FileName::parse(file);
        Entry {
            uid,
            file: file.into(),
            in_new: false,
            ext: ext.into(),
            letters: parsed.letters,
            keywords: parsed.keywords,
            // The CRLF size: ",W=" in the name, else a "W<vsize>" extension, else ",S=".
            size: parsed
                .vsize()
                .or_else(|| {
                    ext.split(' ')
                        .find_map(|t| t.strip_prefix('W')?.parse().ok())
                })
                .or_else(|| parsed.size())
                .unwrap_or(u64::MAX),
            mtime: None,
        }
    }

    pub(crate) fn flags(&self) -> SystemFlags {
        SystemFlags::from_letters(self.letters)
    }
}

/// A message file ready to get a UID: already in `cur/` (or `new/`) under its final name.
#[derive(Debug)]
pub(crate) struct NewFile {
    pub(crate) file: String,
    pub(crate) in_new: bool,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
}

/// Counts for STATUS and SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    pub messages: u32,
    /// Messages no session has claimed as `\Recent` yet.
    pub recent: u32,
    pub uidnext: u32,
    pub uidvalidity: u32,
    pub unseen: u32,
}

/// What reading `dovecot-uidlist` found.
enum IndexFile {
    Missing,
    /// Unusable; its stamp, so that replacing it is not mistaken for a race.
    Damaged(FileStamp),
    Good(UidList, FileStamp),
}

pub(crate) struct State {
    pub(crate) dir: PathBuf,
    loaded: bool,
    /// Deleted or renamed away: every operation fails with [`MailstoreError::MailboxGone`].
    pub(crate) gone: bool,
    pub(crate) uidvalidity: u32,
    pub(crate) uidnext: u32,
    guid: [u8; 16],
    extra_header: Vec<String>,
    /// Ascending UIDs.
    pub(crate) entries: Vec<Entry>,
    pub(crate) keywords: Keywords,
    pub(crate) modseq: u64,
    /// UIDs from here on have not been claimed as `\Recent` by any session.
    pub(crate) recent_from: u32,
    uidlist_stamp: Option<FileStamp>,
    keywords_stamp: Option<FileStamp>,
    new_stamp: Option<FileStamp>,
    cur_stamp: Option<FileStamp>,
    /// The directory stamps were old enough to trust when taken.
    settled: bool,
    /// The index on disk lacks something we know (it is missing, or was damaged).
    index_stale: bool,
    /// What SEARCH keeps of message headers, filled by SEARCH and FETCH (see cache.rs);
    /// loaded on first use.
    pub(crate) headers: HeaderCache,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MailstoreError + 'a {
    move |source| MailstoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Names of the entries of a directory (not starting with `.`); a missing directory is empty.
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("reading directory", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("reading directory", dir))?;
        match entry.file_name().into_string() {
            Ok(name) if !name.starts_with('.') => names.push(name),
            Ok(_) => {}
            Err(name) => {
                tracing::warn!(dir = %dir.display(), ?name, "skipping a file name that is not UTF-8");
            }
        }
    }
    Ok(names)
}

impl State {
    pub(crate) fn new(dir: PathBuf) -> State {
        State {
            dir,
            loaded: false,
            gone: false,
            uidvalidity: 0,
            uidnext: 1,
            guid: [0; 16],
            extra_header: Vec::new(),
            entries: Vec::new(),
            keywords: Keywords::default(),
            modseq: 0,
            recent_from: 1,
            uidlist_stamp: None,
            keywords_stamp: None,
            new_stamp: None,
            cur_stamp: None,
            settled: false,
            index_stale: false,
            headers: HeaderCache::default(),
        }
    }

    fn bump(&mut self) {
        self.modseq += 1;
    }

    pub(crate) fn path_of(&self, e: &Entry) -> PathBuf {
        self.dir
            .join(if e.in_new { "new" } else { "cur" })
            .join(&*e.file)
    }

    pub(crate) fn position(&self, uid: u32) -> Option<usize> {
        self.entries.binary_search_by_key(&uid, |e| e.uid).ok()
    }

    pub(crate) fn status(&self) -> MailboxStatus {
        let count =
            |f: &dyn Fn(&Entry) -> bool| self.entries.iter().filter(|e| f(e)).count() as u32;
        MailboxStatus {
            messages: self.entries.len() as u32,
            recent: count(&|e| e.uid >= self.recent_from),
            uidnext: self.uidnext,
            uidvalidity: self.uidvalidity,
            unseen: count(&|e| !e.flags().contains(SystemFlags::SEEN)),
        }
    }

    /// Marks the mailbox deleted (or renamed away) for every holder of it.
    pub(crate) fn set_gone(&mut self) {
        self.gone = true;
        self.entries.clear();
        self.headers.clear();
        self.bump();
    }

    /// Brings the index up to date with the directory. Cheap when nothing changed: two stats
    /// of `new/` and `cur/` and one of the index file. `force` rescans regardless.
    pub(crate) fn sync(&mut self, ctx: &StoreCtx, force: bool) -> Result<()> {
        if self.gone {
            return Err(MailstoreError::MailboxGone);
        }
        let mut force = force;
        if !self.loaded {
            self.load(ctx)?;
            force = true;
        }
        for attempt in 0..MAX_RETRIES {
            let uidlist = self.dir.join(UIDLIST);
            let stamp = FileStamp::read(&uidlist).map_err(io_err("stat of", &uidlist))?;
            if stamp != self.uidlist_stamp {
                self.reload_index(ctx)?;
                force = true;
            }
            let kw_path = self.dir.join(KEYWORDS);
            let kw_stamp = FileStamp::read(&kw_path).map_err(io_err("stat of", &kw_path))?;
            if kw_stamp != self.keywords_stamp {
                let keywords = read_keywords(&kw_path).map_err(io_err("reading", &kw_path))?;
                if keywords != self.keywords {
                    self.keywords = keywords;
                    self.bump();
                }
                self.keywords_stamp = kw_stamp;
            }
            if self.scan(ctx, force)? {
                return Ok(());
            }
            force = true;
            backoff(attempt);
        }
        Err(MailstoreError::Io {
            op: "updating (the index keeps changing under us)",
            path: self.dir.join(UIDLIST),
            source: io::Error::new(io::ErrorKind::WouldBlock, "too many retries"),
        })
    }

    fn load(&mut self, ctx: &StoreCtx) -> Result<()> {
        let cur = self.dir.join("cur");
        match fs::metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(MailstoreError::NoSuchMailbox(
                    self.dir.display().to_string(),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MailstoreError::NoSuchMailbox(
                    self.dir.display().to_string(),
                ));
            }
            Err(e) => return Err(io_err("stat of", &cur)(e)),
        }
        let kw_path = self.dir.join(KEYWORDS);
        self.keywords_stamp = FileStamp::read(&kw_path).map_err(io_err("stat of", &kw_path))?;
        self.keywords = read_keywords(&kw_path).map_err(io_err("reading", &kw_path))?;
        self.entries.clear();
        match self.read_index()? {
            IndexFile::Good(list, stamp) => {
                self.uidvalidity = list.uidvalidity;
                self.uidnext = list.uidnext;
                self.guid = list.guid;
                self.extra_header = list.extra_header;
                self.entries = list
                    .records
                    .iter()
                    .map(|r| Entry::from_record(r.uid, &r.file, &r.ext))
                    .collect();
                self.uidlist_stamp = Some(stamp);
            }
            IndexFile::Missing => self.fresh_index(ctx),
            IndexFile::Damaged(stamp) => {
                self.fresh_index(ctx);
                self.uidlist_stamp = Some(stamp);
            }
        }
        // Whatever is found from here on is new to every session.
        self.recent_from = self.uidnext;
        self.loaded = true;
        self.bump();
        Ok(())
    }

    /// A new identity for a mailbox without a usable index: new UIDVALIDITY, UIDs from 1.
    fn fresh_index(&mut self, ctx: &StoreCtx) {
        self.uidvalidity = ctx.new_uidvalidity();
        self.uidnext = 1;
        self.guid = ctx.random_guid();
        self.extra_header.clear();
        self.entries.clear();
        self.uidlist_stamp = None;
        self.index_stale = true;
    }

    /// Reads the index file. A damaged one is logged; the caller replaces it.
    fn read_index(&mut self) -> Result<IndexFile> {
        let path = self.dir.join(UIDLIST);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(IndexFile::Missing),
            Err(e) => return Err(io_err("opening", &path)(e)),
        };
        let stamp = FileStamp::of(&file.metadata().map_err(io_err("stat of", &path))?);
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut &file, &mut bytes).map_err(io_err("reading", &path))?;
        match UidList::parse(&String::from_utf8_lossy(&bytes)) {
            Ok(list) => Ok(IndexFile::Good(list, stamp)),
            Err(reason) => {
                tracing::error!(path = %path.display(), reason = reason.0, "damaged UID index: replacing it");
                Ok(IndexFile::Damaged(stamp))
            }
        }
    }

    /// The index file changed under us (another process wrote it, or it vanished): take
    /// its UIDs, keeping what we know of messages it still lists.
    fn reload_index(&mut self, ctx: &StoreCtx) -> Result<()> {
        match self.read_index()? {
            found @ (IndexFile::Missing | IndexFile::Damaged(_)) => {
                // Deleted or damaged by someone else: our copy is the best there is.
                tracing::warn!(dir = %self.dir.display(), "UID index gone or damaged: rewriting it from memory");
                if self.uidvalidity == 0 {
                    self.fresh_index(ctx);
                }
                self.uidlist_stamp = match found {
                    IndexFile::Damaged(stamp) => Some(stamp),
                    _ => None,
                };
                self.index_stale = true;
            }
            IndexFile::Good(list, stamp) => {
                let mut old: HashMap<u32, Entry> = if list.uidvalidity == self.uidvalidity {
                    self.entries.drain(..).map(|e| (e.uid, e)).collect()
                } else {
                    tracing::warn!(dir = %self.dir.display(), "UIDVALIDITY changed by another program");
                    self.entries.clear();
                    self.uidnext = 1;
                    HashMap::new()
                };
                self.entries = list
                    .records
                    .iter()
                    .map(|r| match old.remove(&r.uid) {
                        Some(mut e) if base_of(&e.file) == base_of(&r.file) => {
                            e.ext = r.ext.as_str().into();
                            e
                        }
                        _ => Entry::from_record(r.uid, &r.file, &r.ext),
                    })
                    .collect();
                self.uidvalidity = list.uidvalidity;
                self.uidnext = self.uidnext.max(list.uidnext);
                self.guid = list.guid;
                self.extra_header = list.extra_header;
                self.uidlist_stamp = Some(stamp);
                self.recent_from = self.recent_from.min(self.uidnext);
            }
        }
        self.bump();
        Ok(())
    }

    /// Moves `new/` into `cur/`, reads `cur/`, and reconciles the index with what is there.
    /// Returns false if the index file changed under us and the caller should start over.
    fn scan(&mut self, ctx: &StoreCtx, force: bool) -> Result<bool> {
        let new = self.dir.join("new");
        let cur = self.dir.join("cur");
        let stamps = || -> Result<(Option<FileStamp>, Option<FileStamp>)> {
            Ok((
                FileStamp::read(&new).map_err(io_err("stat of", &new))?,
                FileStamp::read(&cur).map_err(io_err("stat of", &cur))?,
            ))
        };
        let (new_stamp, cur_stamp) = stamps()?;
        if cur_stamp.is_none() {
            if !self.dir.exists() {
                self.set_gone();
                return Err(MailstoreError::MailboxGone);
            }
            return Err(io_err("reading directory", &cur)(
                io::ErrorKind::NotFound.into(),
            ));
        }
        if !force
            && !self.index_stale
            && self.settled
            && new_stamp == self.new_stamp
            && cur_stamp == self.cur_stamp
        {
            return Ok(true);
        }

        // new/ → cur/, as Dovecot does: the file keeps its base name and gains ":2,".
        let mut in_new = Vec::new();
        let mut moved = false;
        for name in list_dir(&new)? {
            let target = if name.contains(':') {
                name.clone()
            } else {
                format!("{name}:2,")
            };
            match fs::rename(new.join(&name), cur.join(&target)) {
                Ok(()) => moved = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %new.join(&name).display(), error = %e, "cannot move into cur/");
                    in_new.push(name);
                }
            }
        }
        if moved {
            // The delivery's fsync covered new/; make the move as durable before the file
            // gets a UID.
            sync_dir(&cur).map_err(io_err("fsync of", &cur))?;
        }
        let (new_stamp, cur_stamp) = stamps()?;
        let now = SystemTime::now();
        let old_enough = |s: &Option<FileStamp>| s.is_none_or(|s| s.modified() + SETTLE < now);
        let settled = old_enough(&new_stamp) && old_enough(&cur_stamp);

        let mut names: Vec<(String, bool)> =
            list_dir(&cur)?.into_iter().map(|n| (n, false)).collect();
        names.extend(in_new.into_iter().map(|n| (n, true)));
        let mut claimed = vec![false; names.len()];
        let mut missing = Vec::new();
        {
            let by_base: HashMap<&str, usize> = names
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (base_of(n), i))
                .collect();
            for (i, e) in self.entries.iter().enumerate() {
                match by_base.get(base_of(&e.file)) {
                    Some(&k) => claimed[k] = true,
                    None => missing.push(i),
                }
            }
        }
        if !missing.is_empty() {
            // readdir can skip a file that another process renames while we read: look
            // again before calling anything expunged.
            let again = list_dir(&cur)?;
            let by_base: HashMap<&str, &String> = again.iter().map(|n| (base_of(n), n)).collect();
            missing.retain(|&i| {
                let e = &self.entries[i];
                match by_base.get(base_of(&e.file)) {
                    Some(n) => {
                        names.push(((*n).clone(), false));
                        claimed.push(true);
                        false
                    }
                    None => true,
                }
            });
        }
        // Update names and flags of what is still there.
        let mut changed = false;
        {
            let by_base: HashMap<&str, usize> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| claimed[*i])
                .map(|(i, (n, _))| (base_of(n), i))
                .collect();
            for e in &mut self.entries {
                let Some(&k) = by_base.get(base_of(&e.file)) else {
                    continue;
                };
                let (name, in_new) = &names[k];
                if *e.file != **name || e.in_new != *in_new {
                    let p = FileName::parse(name);
                    if (p.letters, p.keywords) != (e.letters, e.keywords) {
                        e.letters = p.letters;
                        e.keywords = p.keywords;
                        changed = true;
                    }
                    e.file = name.as_str().into();
                    e.in_new = *in_new;
                }
            }
        }
        let removed = !missing.is_empty();
        if removed {
            let mut gone = missing.into_iter().peekable();
            let mut i = 0;
            self.entries.retain(|_| {
                let keep = gone.peek() != Some(&i);
                if !keep {
                    gone.next();
                }
                i += 1;
                keep
            });
            changed = true;
        }
        // Messages we know but have never stat'ed (loaded from the index): their dates.
        for idx in 0..self.entries.len() {
            if self.entries[idx].mtime.is_none() {
                let path = self.path_of(&self.entries[idx]);
                let e = &mut self.entries[idx];
                match fs::metadata(&path) {
                    Ok(m) => {
                        e.mtime = Some(m.mtime());
                        if e.size == u64::MAX {
                            e.size = m.len();
                        }
                    }
                    Err(err) => {
                        tracing::debug!(path = %path.display(), error = %err, "cannot stat message");
                        e.mtime = Some(0);
                        if e.size == u64::MAX {
                            e.size = 0;
                        }
                    }
                }
            }
        }
        // Files nobody has given a UID yet, oldest first.
        let mut fresh = Vec::new();
        for (k, (name, in_new)) in names.into_iter().enumerate() {
            if k < claimed.len() && claimed[k] {
                continue;
            }
            let path = self
                .dir
                .join(if in_new { "new" } else { "cur" })
                .join(&name);
            let meta = match fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat of", &path)(e)),
            };
            let size = FileName::parse(&name).size().unwrap_or(meta.len());
            fresh.push(NewFile {
                file: name,
                in_new,
                size,
                mtime: meta.mtime(),
            });
        }
        fresh.sort_by(|a, b| delivery_order(a).cmp(&delivery_order(b)));
        if changed {
            self.bump();
        }
        if (!fresh.is_empty() || removed || self.index_stale)
            && self.commit_index(ctx, fresh)?.is_none()
        {
            return Ok(false);
        }
        self.new_stamp = new_stamp;
        self.cur_stamp = cur_stamp;
        self.settled = settled;
        Ok(true)
    }

    /// Gives UIDs to `fresh` (already in place under their names), and rewrites the index
    /// with them, durably, before anything in memory changes. Returns the UIDs, or `None` if
    /// another process rewrote the index since we read it (sync again, then retry).
    pub(crate) fn commit_index(
        &mut self,
        ctx: &StoreCtx,
        fresh: Vec<NewFile>,
    ) -> Result<Option<Vec<u32>>> {
        let uidlist = self.dir.join(UIDLIST);
        let lock = LockedWrite::acquire(&self.dir, UIDLIST, ctx.started)
            .map_err(io_err("locking", &uidlist))?;
        let on_disk = FileStamp::read(&uidlist).map_err(io_err("stat of", &uidlist))?;
        if on_disk.is_some() && on_disk != self.uidlist_stamp {
            return Ok(None);
        }
        let first = self.uidnext;
        let next = first
            .checked_add(fresh.len() as u32)
            .filter(|&n| n < u32::MAX)
            .ok_or_else(|| MailstoreError::Io {
                op: "assigning UIDs",
                path: uidlist.clone(),
                source: io::Error::other("UID space exhausted"),
            })?;
        let header = UidList {
            uidvalidity: self.uidvalidity,
            uidnext: next,
            guid: self.guid,
            extra_header: std::mem::take(&mut self.extra_header),
            records: Vec::new(),
        };
        let entries = &self.entries;
        let written = lock.commit(|out| {
            header.write_to(out)?;
            for e in entries {
                super::index::write_record(out, e.uid, &e.ext, &e.file)?;
            }
            for (i, f) in fresh.iter().enumerate() {
                super::index::write_record(out, first + i as u32, "", &f.file)?;
            }
            Ok(())
        });
        self.extra_header = header.extra_header;
        let stamp = written.map_err(io_err("writing", &uidlist))?;
        self.uidlist_stamp = Some(stamp);
        self.index_stale = false;
        self.uidnext = next;
        let uids: Vec<u32> = (first..next).collect();
        for (uid, f) in uids.iter().zip(fresh) {
            let parsed = FileName::parse(&f.file);
            self.entries.push(Entry {
                uid: *uid,
                letters: parsed.letters,
                keywords: parsed.keywords,
                file: f.file.into(),
                in_new: f.in_new,
                ext: "".into(),
                size: f.size,
                mtime: Some(f.mtime),
            });
        }
        if !uids.is_empty() {
            self.bump();
        }
        Ok(Some(uids))
    }

    /// Registers files that the caller has just put into `cur/` (holding the mailbox lock),
    /// returning their UIDs in order.
    pub(crate) fn add_files(&mut self, ctx: &StoreCtx, files: Vec<NewFile>) -> Result<Vec<u32>> {
        let bases: Vec<String> = files.iter().map(|f| base_of(&f.file).to_owned()).collect();
        if let Some(uids) = self.commit_index(ctx, files)? {
            return Ok(uids);
        }
        // Someone else wrote the index: a full sync picks our files up with the rest.
        self.sync(ctx, true)?;
        let by_base: HashMap<&str, u32> = self
            .entries
            .iter()
            .map(|e| (base_of(&e.file), e.uid))
            .collect();
        bases
            .iter()
            .map(|b| {
                by_base
                    .get(b.as_str())
                    .copied()
                    .ok_or_else(|| MailstoreError::Io {
                        op: "registering",
                        path: self.dir.join("cur").join(b),
                        source: io::ErrorKind::NotFound.into(),
                    })
            })
            .collect()
    }

    /// Keyword slots for names, writing `dovecot-keywords` first if new ones are added.
    pub(crate) fn resolve_keywords(
        &mut self,
        ctx: &StoreCtx,
        names: &[&str],
        add: bool,
    ) -> Result<KeywordSet> {
        let mut table = self.keywords.clone();
        let (set, changed) = table.resolve(names, add).map_err(|e| match e {
            KeywordError::Invalid(k) => MailstoreError::InvalidKeyword(k),
            KeywordError::Full => MailstoreError::TooManyKeywords { max: MAX_KEYWORDS },
        })?;
        if changed {
            let stamp = replace_file(&self.dir, KEYWORDS, ctx.started, |out| table.write_to(out))
                .map_err(io_err("writing", &self.dir.join(KEYWORDS)))?;
            self.keywords = table;
            self.keywords_stamp = Some(stamp);
            self.bump();
        }
        Ok(set)
    }

    /// Like [`State::resolve_keywords`] but drops keywords that do not fit (for copies: a
    /// full keyword table must not make COPY fail).
    pub(crate) fn resolve_keywords_lossy(
        &mut self,
        ctx: &StoreCtx,
        names: &[String],
    ) -> Result<KeywordSet> {
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        match self.resolve_keywords(ctx, &all, true) {
            Err(MailstoreError::TooManyKeywords { .. }) => {
                let mut set = 0;
                for name in all {
                    match self.resolve_keywords(ctx, &[name], true) {
                        Ok(s) => set |= s,
                        Err(MailstoreError::TooManyKeywords { .. }) => {
                            tracing::warn!(dir = %self.dir.display(), keyword = name, "no room for keyword; dropped from copy");
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(set)
            }
            other => other,
        }
    }

    /// Changes flags of the messages with these UIDs (missing ones are skipped). Returns the
    /// UIDs found, whether changed or not.
    pub(crate) fn store(
        &mut self,
        ctx: &StoreCtx,
        uids: &[u32],
        op: StoreOp,
        flags: SystemFlags,
        keywords: &[&str],
    ) -> Result<Vec<u32>> {
        let kw = self.resolve_keywords(ctx, keywords, op != StoreOp::Remove)?;
        let mut done = Vec::with_capacity(uids.len());
        for &uid in uids {
            let mut retried = false;
            while let Some(i) = self.position(uid) {
                let e = &self.entries[i];
                let (letters, keywords) = op.apply(e.letters, e.keywords, flags.bits(), kw);
                if (letters, keywords) == (e.letters, e.keywords) {
                    done.push(uid);
                    break;
                }
                let parsed = FileName::parse(&e.file);
                let name = FileName::format(parsed.base, letters, keywords, parsed.extra);
                let from = self.path_of(e);
                let to = self.dir.join("cur").join(&name);
                match fs::rename(&from, &to) {
                    Ok(()) => {
                        let e = &mut self.entries[i];
                        e.file = name.into();
                        e.in_new = false;
                        e.letters = letters;
                        e.keywords = keywords;
                        self.bump();
                        done.push(uid);
                        break;
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound && !retried => {
                        // Another process renamed (or removed) it: find its current name.
                        retried = true;
                        self.sync(ctx, true)?;
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => break,
                    Err(err) => return Err(io_err("renaming", &from)(err)),
                }
            }
        }
        Ok(done)
    }

    /// Removes the messages with these UIDs (whatever their flags). Returns the UIDs removed.
    pub(crate) fn remove(&mut self, ctx: &StoreCtx, uids: &[u32]) -> Result<Vec<u32>> {
        let mut removed = Vec::new();
        let mut failure = None;
        for &uid in uids {
            let Some(i) = self.position(uid) else {
                continue;
            };
            let path = self.path_of(&self.entries[i]);
            match fs::remove_file(&path) {
                Ok(()) => removed.push(uid),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Renamed by another process meanwhile, or already gone: the next sync
                    // tells which; don't claim it.
                }
                Err(e) => {
                    failure = Some(io_err("removing", &path)(e));
                    break;
                }
            }
        }
        if !removed.is_empty() {
            let cur = self.dir.join("cur");
            sync_dir(&cur).map_err(io_err("fsync of", &cur))?;
            self.entries
                .retain(|e| removed.binary_search(&e.uid).is_err());
            self.bump();
            if self.commit_index(ctx, Vec::new())?.is_none() {
                self.sync(ctx, true)?;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Drops messages whose files the caller has moved elsewhere (RENAME of INBOX).
    pub(crate) fn forget(&mut self, ctx: &StoreCtx, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.entries.retain(|e| uids.binary_search(&e.uid).is_err());
        self.bump();
        if self.commit_index(ctx, Vec::new())?.is_none() {
            self.sync(ctx, true)?;
        }
        Ok(())
    }

    /// The path of a message, re-reading the directory once if the name we know is stale.
    pub(crate) fn locate(&mut self, ctx: &StoreCtx, uid: u32, rescan: bool) -> Result<PathBuf> {
        if rescan {
            self.sync(ctx, true)?;
        }
        let i = self.position(uid).ok_or(MailstoreError::Expunged { uid })?;
        Ok(self.path_of(&self.entries[i]))
    }
}

type Waker = Arc<dyn Fn() + Send + Sync>;

/// One mailbox, shared by every session of the process that has it open.
pub struct SharedMailbox {
    path: PathBuf,
    pub(crate) ctx: Arc<StoreCtx>,
    state: Mutex<State>,
    counter: AtomicU64,
    /// Set by [`super::MailboxRegistry::notify`]: rescan even if the directories look
    /// unchanged.
    dirty: AtomicBool,
    wakers: Mutex<Vec<(u64, Waker)>>,
}

impl std::fmt::Debug for SharedMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMailbox")
            .field("path", &self.path)
            .field("counter", &self.change_counter())
            .finish()
    }
}

impl SharedMailbox {
    pub(crate) fn new(path: PathBuf, ctx: Arc<StoreCtx>) -> SharedMailbox {
        SharedMailbox {
            state: Mutex::new(State::new(path.clone())),
            path,
            ctx,
            counter: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// The mailbox directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Goes up by at least one whenever the mailbox changes (or a delivery into it is
    /// announced). Compare with a remembered value to know whether to look again.
    pub fn change_counter(&self) -> u64 {
        self.counter.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            // A panic mid-update may have left the index half changed: reload it.
            let mut state = poisoned.into_inner();
            state.loaded = false;
            state
        })
    }

    /// Runs `f` on the locked state; if it changed anything, bumps the counter and wakes the
    /// watchers (except `except`, the caller's own) after unlocking.
    pub(crate) fn run<R>(
        &self,
        except: Option<u64>,
        f: impl FnOnce(&mut State, &StoreCtx) -> Result<R>,
    ) -> Result<R> {
        let (result, changed) = {
            let mut state = self.lock();
            let before = state.modseq;
            let force = self.dirty.swap(false, Ordering::AcqRel);
            let result = if force && state.loaded && !state.gone {
                state
                    .sync(&self.ctx, true)
                    .and_then(|()| f(&mut state, &self.ctx))
            } else {
                f(&mut state, &self.ctx)
            };
            (result, state.modseq != before)
        };
        if changed {
            self.counter.fetch_add(1, Ordering::AcqRel);
            self.wake(except);
        }
        result
    }

    /// Something changed on disk that we did not do (a delivery): rescan on the next look
    /// and tell the watchers.
    pub(crate) fn announce(&self) {
        self.dirty.store(true, Ordering::Release);
        self.counter.fetch_add(1, Ordering::AcqRel);
        self.wake(None);
    }

    /// Marks the mailbox gone (deleted or renamed) and tells the watchers.
    pub(crate) fn retire(&self) {
        self.lock().set_gone();
        self.counter.fetch_add(1, Ordering::AcqRel);
        self.wake(None);
    }

    fn wake(&self, except: Option<u64>) {
        let wakers: Vec<Waker> = self
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(id, _)| Some(*id) != except)
            .map(|(_, w)| Arc::clone(w))
            .collect();
        for w in wakers {
            w();
        }
    }

    pub(crate) fn set_waker(&self, id: u64, waker: Option<Waker>) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        wakers.retain(|(i, _)| *i != id);
        if let Some(w) = waker {
            wakers.push((id, w));
        }
    }

    /// STATUS: counts after a (cheap) sync.
    pub fn status(&self) -> Result<MailboxStatus> {
        self.run(None, |st, ctx| {
            st.sync(ctx, false)?;
            Ok(st.status())
        })
    }
}

/// The order new files get their UIDs in: arrival second, then the microseconds and the
/// per-process counter that Maildir names carry (`<secs>.M<usec>P<pid>Q<n>.<host>`), read
/// as numbers, since `M999` sorts after `M1000` as text. Names of another shape fall back to
/// their text.
fn delivery_order(f: &NewFile) -> (i64, u64, u64, &str) {
    fn number_after(name: &str, marker: char) -> Option<u64> {
        let rest = &name[name.find(marker)? + 1..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    }
    let unique = f.file.split(['.', ':']).nth(1).unwrap_or("");
    let usec = number_after(unique, 'M').unwrap_or(0);
    let seq = number_after(unique, 'Q').unwrap_or(0);
    (f.mtime, usec, seq, &f.file)
}

/// Waits a little before syncing again after another writer changed the index under us, so
/// that writers in several processes take turns instead of invalidating each other forever.
/// Grows with the attempt, with jitter from the clock so two writers do not stay in step.
fn backoff(attempt: usize) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 1000)
        .unwrap_or(0);
    let micros = 200 * (attempt.min(20) as u64 + 1) + u64::from(jitter);
    std::thread::sleep(std::time::Duration::from_micros(micros));
}

#[cfg(test)]
mod delivery_order_tests {
    use super::*;

    fn file(name: &str, mtime: i64) -> NewFile {
        NewFile {
            file: name.into(),
            in_new: true,
            size: 0,
            mtime,
        }
    }

    #[test]
    fn microseconds_compare_as_numbers() {
        let mut v = [
            file("1700000000.M1000P7Q2.h,S=1", 1700000000),
            file("1700000000.M999P7Q1.h,S=1", 1700000000),
            file("1699999999.M5P7Q0.h,S=1", 1699999999),
        ];
        v.sort_by(|a, b| delivery_order(a).cmp(&delivery_order(b)));
        let names: Vec<_> = v.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(
            names,
            [
                "1699999999.M5P7Q0.h,S=1",
                "1700000000.M999P7Q1.h,S=1",
                "1700000000.M1000P7Q2.h,S=1"
            ]
        );
    }
}
