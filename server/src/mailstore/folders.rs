//! An account: its mailboxes (list, create, delete, rename), subscriptions, and the entry
//! points for selecting, STATUS and APPEND.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::append::{AppendWriter, Appended};
use super::flags::SystemFlags;
use super::index::{replace_file, sync_dir};
use super::mailbox::{MailboxStatus, SharedMailbox};
use super::names::{self, MailboxName, SpecialUse, DELIMITER};
use super::registry::MailboxRegistry;
use super::view::MailboxView;
use super::{utf7, MailstoreError, Result};

const SUBSCRIPTIONS: &str = "subscriptions";
const SUBSCRIPTIONS_HEADER: &str = "V\t2\n\n";
/// A deleted folder is first renamed to this (plus a unique suffix) and then removed, so it
/// vanishes from listings at once; leftovers of a crash are removed on the next open.
const TRASH_PREFIX: &str = "ironpost-deleted.";

/// One LIST entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// UTF-8, `.`-delimited (encode to modified UTF-7 for the wire unless UTF8=ACCEPT).
    pub name: String,
    /// `\Noselect`: a parent that exists only through its children (or, from
    /// [`Account::list_subscribed`], a subscribed name that does not exist).
    pub noselect: bool,
    /// `\NonExistent` (RFC 5258): nothing by this name exists (only from
    /// [`Account::list_subscribed`]).
    pub nonexistent: bool,
    pub has_children: bool,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
}

impl MailboxInfo {
    /// The LIST attributes: `\Noselect` (or `\NonExistent`), `\HasChildren` or
    /// `\HasNoChildren`, and the special use (`\Sent`, ...). `\Subscribed` is not included
    /// (it belongs only to LIST (SUBSCRIBED) answers).
    pub fn attributes(&self) -> Vec<&'static str> {
        let mut a = Vec::with_capacity(3);
        if self.nonexistent {
            a.push("\\NonExistent");
        } else if self.noselect {
            a.push("\\Noselect");
        }
        a.push(if self.has_children {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        });
        if let Some(u) = self.special_use {
            a.push(u.attribute());
        }
        a
    }
}

struct AccountInner {
    registry: Arc<MailboxRegistry>,
    root: PathBuf,
    user: String,
}

/// A logged-in account. Cheap to clone. Every path it touches is its root or a folder
/// directory directly inside it, built from a validated name: one account cannot reach
/// another's mail.
#[derive(Clone)]
pub struct Account {
    inner: Arc<AccountInner>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.inner.user)
            .field("root", &self.inner.root)
            .finish()
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MailstoreError + 'a {
    move |source| MailstoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn mkdir(path: &Path) -> io::Result<bool> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

impl Account {
    pub(crate) fn open(
        registry: Arc<MailboxRegistry>,
        root: PathBuf,
        user: String,
    ) -> Result<Account> {
        let account = Account {
            inner: Arc::new(AccountInner {
                registry,
                root,
                user,
            }),
        };
        let root = account.root();
        if let Some(parent) = root.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err("creating directory", parent))?;
        }
        let made = mkdir(root).map_err(io_err("creating directory", root))?;
        for sub in ["cur", "new", "tmp"] {
            let p = root.join(sub);
            mkdir(&p).map_err(io_err("creating directory", &p))?;
        }
        if made {
            // The account directory, and the domain directory it may have created, must
            // survive a crash before anything is stored below them.
            for dir in root.ancestors().take(3) {
                sync_dir(dir).map_err(io_err("fsync of", dir))?;
            }
        }
        let lock = account.inner.registry.account_lock(root);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        account.remove_leftovers();
        let mut created = Vec::new();
        for (_, name) in SpecialUse::ALL {
            let mb = names::parse(name)?;
            let path = account.path_of(&mb);
            if !path.exists() {
                account.make_folder(&path)?;
                created.push(mb.name);
            }
        }
        if !created.is_empty() {
            account.update_subscriptions(|subs| {
                for name in created {
                    subs.insert(name);
                }
            })?;
        }
        Ok(account)
    }

    /// The account's root Maildir (INBOX).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// `local@domain`.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    pub fn registry(&self) -> &Arc<MailboxRegistry> {
        &self.inner.registry
    }

    fn path_of(&self, mb: &MailboxName) -> PathBuf {
        match &mb.dir {
            None => self.inner.root.clone(),
            Some(dir) => self.inner.root.join(dir),
        }
    }

    /// The directory of a mailbox name, validated (the name need not exist).
    pub fn mailbox_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self.path_of(&names::parse(name)?))
    }

    /// The shared mailbox of an existing mailbox.
    pub(crate) fn existing_mailbox(&self, name: &str) -> Result<Arc<SharedMailbox>> {
        let mb = names::parse(name)?;
        let path = self.path_of(&mb);
        if !path.join("cur").is_dir() {
            return Err(MailstoreError::NoSuchMailbox(mb.name));
        }
        Ok(self.inner.registry.get(&path))
    }

    /// The shared in-memory mailbox (for change counters and wakers outside a view).
    pub fn mailbox(&self, name: &str) -> Result<Arc<SharedMailbox>> {
        self.existing_mailbox(name)
    }

    /// SELECT: a read-write view that claims `\Recent`.
    pub fn select(&self, name: &str) -> Result<MailboxView> {
        let mb = names::parse(name)?;
        let shared = self.existing_mailbox(name)?;
        MailboxView::open(self.clone(), shared, mb.name, false)
    }

    /// EXAMINE: a read-only view.
    pub fn examine(&self, name: &str) -> Result<MailboxView> {
        let mb = names::parse(name)?;
        let shared = self.existing_mailbox(name)?;
        MailboxView::open(self.clone(), shared, mb.name, true)
    }

    /// STATUS (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN), from the index.
    pub fn status(&self, name: &str) -> Result<MailboxStatus> {
        self.existing_mailbox(name)?.status()
    }

    /// Starts an APPEND: write the message with [`AppendWriter::write`], then
    /// [`AppendWriter::commit`] with its flags and date.
    pub fn append(&self, name: &str) -> Result<AppendWriter> {
        AppendWriter::begin(self.existing_mailbox(name)?)
    }

    /// APPEND from a reader, streamed to disk.
    pub fn append_from(
        &self,
        name: &str,
        message: &mut dyn Read,
        flags: SystemFlags,
        keywords: &[&str],
        internal_date: Option<SystemTime>,
    ) -> Result<Appended> {
        let mut w = self.append(name)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match message.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("reading message for", w.tmp_path())(e)),
            };
            w.write(&buf[..n])?;
        }
        w.commit(flags, keywords, internal_date)
    }

    /// Opens a message of a mailbox by UID (for POP3 and the like; IMAP uses its view).
    pub fn open_message(&self, name: &str, uid: u32) -> Result<File> {
        let shared = self.existing_mailbox(name)?;
        super::view::open_by_uid(&shared, uid)
    }

    /// Names of the folders on disk (not INBOX), decoded; ill-formed directories are skipped.
    fn folder_names(&self) -> Result<BTreeSet<String>> {
        let root = self.root();
        let mut out = BTreeSet::new();
        for entry in fs::read_dir(root).map_err(io_err("reading directory", root))? {
            let entry = entry.map_err(io_err("reading directory", root))?;
            let Ok(dir) = entry.file_name().into_string() else {
                continue;
            };
            if !dir.starts_with('.') || dir == "." || dir == ".." {
                continue;
            }
            if !fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            match names::from_dir(&dir) {
                Some(name) => {
                    out.insert(name);
                }
                None => tracing::debug!(dir, "skipping a directory that is not a folder name"),
            }
        }
        Ok(out)
    }

    fn remove_leftovers(&self) {
        let Ok(entries) = fs::read_dir(self.root()) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(TRASH_PREFIX)
            {
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a deleted folder");
                }
            }
        }
    }

    /// Every mailbox: INBOX, the folders, and `\Noselect` parents that exist only through
    /// their children. INBOX first, then by name.
    pub fn list(&self) -> Result<Vec<MailboxInfo>> {
        let folders = self.folder_names()?;
        let subs = self.subscriptions()?;
        let mut all: BTreeMap<String, bool> = BTreeMap::new(); // name → exists
        all.insert("INBOX".into(), true);
        for name in &folders {
            all.insert(name.clone(), true);
            let mut end = 0;
            while let Some(i) = name[end..].find(DELIMITER) {
                end += i;
                all.entry(name[..end].to_owned()).or_insert(false);
                end += 1;
            }
        }
        let names: Vec<&String> = all.keys().collect();
        let mut out: Vec<MailboxInfo> = all
            .iter()
            .map(|(name, exists)| {
                let prefix = format!("{name}{DELIMITER}");
                MailboxInfo {
                    name: name.clone(),
                    noselect: !exists,
                    nonexistent: false,
                    has_children: names.iter().any(|n| n.starts_with(&prefix)),
                    special_use: SpecialUse::of(name),
                    subscribed: subs.contains(name),
                }
            })
            .collect();
        out.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
        Ok(out)
    }

    /// The subscribed names (LSUB), each with what [`Account::list`] knows of it; names that
    /// do not exist come back `\NonExistent`.
    pub fn list_subscribed(&self) -> Result<Vec<MailboxInfo>> {
        let listed = self.list()?;
        let subs = self.subscriptions()?;
        Ok(subs
            .into_iter()
            .map(|name| match listed.iter().find(|i| i.name == name) {
                Some(info) => info.clone(),
                None => MailboxInfo {
                    special_use: SpecialUse::of(&name),
                    name,
                    noselect: true,
                    nonexistent: true,
                    has_children: false,
                    subscribed: true,
                },
            })
            .collect())
    }

    fn make_folder(&self, path: &Path) -> Result<()> {
        if !mkdir(path).map_err(io_err("creating directory", path))? {
            return Err(MailstoreError::AlreadyExists(
                path.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(names::from_dir)
                    .unwrap_or_default(),
            ));
        }
        let result = (|| {
            for sub in ["cur", "new", "tmp"] {
                mkdir(&path.join(sub))?;
            }
            // Maildir++ marks folders with an empty `maildirfolder` file.
            File::create(path.join("maildirfolder"))?;
            sync_dir(path)?;
            sync_dir(self.root())
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(path);
            return Err(io_err("creating folder", path)(e));
        }
        // Whatever an earlier mailbox of this name left in memory is not this one.
        self.inner.registry.retire(path);
        Ok(())
    }

    fn lock(&self) -> Arc<std::sync::Mutex<()>> {
        self.inner.registry.account_lock(self.root())
    }

    /// CREATE. A trailing delimiter (`foo.`) is dropped; missing parents are not created
    /// (they list as `\Noselect` until created).
    pub fn create(&self, name: &str) -> Result<()> {
        let name = match name.strip_suffix(DELIMITER) {
            Some(n) if !n.is_empty() => n,
            _ => name,
        };
        let mb = names::parse(name)?;
        if mb.is_inbox() {
            return Err(MailstoreError::AlreadyExists(mb.name));
        }
        let lock = self.lock();
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path_of(&mb);
        if path.exists() {
            return Err(MailstoreError::AlreadyExists(mb.name));
        }
        self.make_folder(&path)
    }

    /// DELETE. INBOX is refused. A folder with children loses its own messages and directory
    /// and stays as a `\Noselect` parent (RFC 3501); deleting such a `\Noselect` parent is
    /// refused ([`MailstoreError::HasChildren`]). Subscriptions are left alone (RFC 3501
    /// 6.3.9). Sessions that have it selected get [`MailstoreError::MailboxGone`].
    pub fn delete(&self, name: &str) -> Result<()> {
        let mb = names::parse(name)?;
        if mb.is_inbox() {
            return Err(MailstoreError::CannotDeleteInbox);
        }
        let lock = self.lock();
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path_of(&mb);
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            let prefix = format!("{}{DELIMITER}", mb.name);
            if self.folder_names()?.iter().any(|n| n.starts_with(&prefix)) {
                return Err(MailstoreError::HasChildren(mb.name));
            }
            return Err(MailstoreError::NoSuchMailbox(mb.name));
        }
        let trash = self.root().join(format!(
            "{TRASH_PREFIX}{}",
            self.inner.registry.ctx.unique_name()
        ));
        fs::rename(&path, &trash).map_err(io_err("renaming for deletion", &path))?;
        self.inner.registry.retire(&path);
        sync_dir(self.root()).map_err(io_err("fsync of", self.root()))?;
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(path = %trash.display(), error = %e, "cannot remove a deleted folder");
        }
        Ok(())
    }

    /// RENAME, children included (`a` → `b` also moves `a.x` to `b.x`), and their
    /// subscriptions. Renaming INBOX moves its messages into a new folder and leaves INBOX
    /// empty (RFC 3501); its children stay. Sessions that have a renamed mailbox selected get
    /// [`MailstoreError::MailboxGone`].
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let src = names::parse(from)?;
        let dst = names::parse(to)?;
        if dst.is_inbox() {
            return Err(MailstoreError::AlreadyExists(dst.name));
        }
        let lock = self.lock();
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        if src.is_inbox() {
            return self.rename_inbox(&dst);
        }
        if src.name == dst.name {
            return Err(MailstoreError::AlreadyExists(dst.name));
        }
        let prefix = format!("{}{DELIMITER}", src.name);
        if dst.name.starts_with(&prefix) {
            return Err(MailstoreError::RenameIntoItself {
                from: src.name,
                to: dst.name,
            });
        }
        let folders = self.folder_names()?;
        let mut moves: Vec<(String, PathBuf, String, PathBuf)> = Vec::new();
        for name in folders
            .iter()
            .filter(|n| **n == src.name || n.starts_with(&prefix))
        {
            let new_name = format!("{}{}", dst.name, &name[src.name.len()..]);
            let new = names::parse(&new_name)?;
            let old = names::parse(name)?;
            let new_path = self.path_of(&new);
            moves.push((name.clone(), self.path_of(&old), new.name, new_path));
        }
        if moves.is_empty() {
            return Err(MailstoreError::NoSuchMailbox(src.name));
        }
        for (_, _, new_name, new_path) in &moves {
            if new_path.exists() {
                return Err(MailstoreError::AlreadyExists(new_name.clone()));
            }
        }
        let mut done: Vec<(&Path, &Path)> = Vec::new();
        for (_, old, _, new) in &moves {
            if let Err(e) = fs::rename(old, new) {
                for (o, n) in done.into_iter().rev() {
                    let _ = fs::rename(n, o);
                }
                return Err(io_err("renaming", old)(e));
            }
            done.push((old, new));
        }
        for (_, old, _, new) in &moves {
            self.inner.registry.retire(old);
            self.inner.registry.retire(new);
        }
        sync_dir(self.root()).map_err(io_err("fsync of", self.root()))?;
        self.update_subscriptions(|subs| {
            let renamed: Vec<String> = subs
                .iter()
                .filter(|s| **s == src.name || s.starts_with(&prefix))
                .cloned()
                .collect();
            for old in renamed {
                subs.remove(&old);
                subs.insert(format!("{}{}", dst.name, &old[src.name.len()..]));
            }
        })
    }

    fn rename_inbox(&self, dst: &MailboxName) -> Result<()> {
        let dst_path = self.path_of(dst);
        if dst_path.exists() {
            return Err(MailstoreError::AlreadyExists(dst.name.clone()));
        }
        self.make_folder(&dst_path)?;
        let inbox = self.inner.registry.get(self.root());
        let dst_cur = dst_path.join("cur");
        inbox.run(None, |st, ctx| {
            st.sync(ctx, false)?;
            let mut moved = Vec::new();
            for e in &st.entries {
                let from = st.path_of(e);
                match fs::rename(&from, dst_cur.join(&*e.file)) {
                    Ok(()) => moved.push(e.uid),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(io_err("moving", &from)(err)),
                }
            }
            sync_dir(&dst_cur).map_err(io_err("fsync of", &dst_cur))?;
            st.forget(ctx, &moved)
        })
    }

    /// Subscribed names, INBOX first. A missing file is no subscriptions.
    pub fn subscriptions(&self) -> Result<BTreeSet<String>> {
        let path = self.root().join(SUBSCRIPTIONS);
        let text = match fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        Ok(parse_subscriptions(&text))
    }

    fn update_subscriptions(&self, change: impl FnOnce(&mut BTreeSet<String>)) -> Result<()> {
        let mut subs = self.subscriptions()?;
        let before = subs.clone();
        change(&mut subs);
        if subs == before {
            return Ok(());
        }
        let root = self.root();
        replace_file(
            root,
            SUBSCRIPTIONS,
            self.inner.registry.ctx.started,
            |out| {
                out.write_all(SUBSCRIPTIONS_HEADER.as_bytes())?;
                for name in &subs {
                    out.write_all(format_subscription(name).as_bytes())?;
                    out.write_all(b"\n")?;
                }
                Ok(())
            },
        )
        .map_err(io_err("writing", &root.join(SUBSCRIPTIONS)))?;
        Ok(())
    }

    /// SUBSCRIBE (the mailbox need not exist). Returns false if it already was.
    pub fn subscribe(&self, name: &str) -> Result<bool> {
        let mb = names::parse(name)?;
        let lock = self.lock();
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut added = false;
        self.update_subscriptions(|s| added = s.insert(mb.name))?;
        Ok(added)
    }

    /// UNSUBSCRIBE. Returns false if it was not subscribed.
    pub fn unsubscribe(&self, name: &str) -> Result<bool> {
        let mb = names::parse(name)?;
        let lock = self.lock();
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = false;
        self.update_subscriptions(|s| removed = s.remove(&mb.name))?;
        Ok(removed)
    }
}

/// One name as a line of a version 2 `subscriptions` file: levels in modified UTF-7, joined
/// by tabs (Dovecot's tab escaping is moot: names hold no control characters).
fn format_subscription(name: &str) -> String {
    if name == "INBOX" {
        return name.to_owned();
    }
    name.split(DELIMITER)
        .map(utf7::encode)
        .collect::<Vec<_>>()
        .join("\t")
}

/// Reads a `subscriptions` file (version 2, or version 1: one `.`-delimited name a line).
fn parse_subscriptions(text: &str) -> BTreeSet<String> {
    let (v2, body) = match text.strip_prefix(SUBSCRIPTIONS_HEADER) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut out = BTreeSet::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        let levels: Vec<String> = if v2 {
            line.split('\t').map(tab_unescape).collect()
        } else {
            line.split('.').map(str::to_owned).collect()
        };
        let decoded: Option<Vec<String>> = levels.iter().map(|l| utf7::decode(l)).collect();
        let Some(decoded) = decoded else {
            tracing::debug!(line, "skipping an undecodable subscription");
            continue;
        };
        match names::parse(&decoded.join(&DELIMITER.to_string())) {
            Ok(mb) => {
                out.insert(mb.name);
            }
            Err(_) => tracing::debug!(line, "skipping an invalid subscription"),
        }
    }
    out
}

/// Dovecot's tab unescaping: `\x01` followed by `1`, `t`, `r` or `n`.
fn tab_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\u{1}'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_file_format() {
        let text = "V\t2\n\nINBOX\nSent\nArchive\t2024\nEntw&APw-rfe\n\n";
        let subs = parse_subscriptions(text);
        let want: BTreeSet<String> = ["INBOX", "Sent", "Archive.2024", "Entw\u{fc}rfe"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(subs, want);
        assert_eq!(format_subscription("Archive.2024"), "Archive\t2024");
        assert_eq!(format_subscription("Entw\u{fc}rfe.x"), "Entw&APw-rfe\tx");
        // Version 1.
        let v1 = parse_subscriptions("Sent\nArchive.2024\n../evil\n");
        assert_eq!(v1.len(), 2);
        assert_eq!(tab_unescape("a\u{1}tb\u{1}1"), "a\tb\u{1}");
    }
}
