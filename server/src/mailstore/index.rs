//! The per-mailbox UID index, in Dovecot's `dovecot-uidlist` format (version 3), so a
//! mailbox keeps its UIDs when it moves between Dovecot and ironpost:
//!
//! ```text
//! 3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//! 25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,
//! 25017 W2481 :1276533073.M242911P3632.kurkku:2,F
//! ```
//!
//! The header holds UIDVALIDITY (`V`), the next UID (`N`) and the mailbox GUID (`G`, 128 bits
//! in hex); fields we do not know are kept. Each line maps a UID to the last known file name
//! (only its base, before `:`, identifies the message: flags change the rest); tokens between
//! the UID and the `:` are per-message extensions (`W<vsize>`, POP3 UIDLs, ...), kept as they
//! are. Version 1 files (Courier's `uid filename`) are read too.
//!
//! Writes follow Dovecot's locking: the new contents go into the dot-lock file
//! `dovecot-uidlist.lock` (created with O_EXCL, so it is also the lock), which is fsynced and
//! renamed over `dovecot-uidlist`, and the directory is fsynced. A reader never sees a partial
//! file, and a crash leaves either the old or the new index (plus, at worst, a stale lock
//! file, which [`acquire_lock`] removes).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub(crate) const UIDLIST: &str = "dovecot-uidlist";
pub(crate) const KEYWORDS: &str = "dovecot-keywords";

/// One message line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) uid: u32,
    /// Extension tokens between the UID and the file name, space-separated; empty if none.
    pub(crate) ext: String,
    pub(crate) file: String,
}

/// A parsed `dovecot-uidlist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UidList {
    pub(crate) uidvalidity: u32,
    /// Never below the highest UID + 1 (a damaged header is repaired on reading).
    pub(crate) uidnext: u32,
    pub(crate) guid: [u8; 16],
    /// Header fields other than V, N and G, kept for the next write.
    pub(crate) extra_header: Vec<String>,
    /// In ascending UID order, one line per UID and per file base.
    pub(crate) records: Vec<Record>,
}

/// Why a file could not be used as an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

impl UidList {
    pub(crate) fn parse(text: &str) -> Result<UidList, Corrupt> {
        let mut lines = text.split('\n');
        let header = lines.next().unwrap_or("");
        let mut fields = header.split(' ').filter(|f| !f.is_empty());
        let version = fields.next().ok_or(Corrupt("empty file"))?;
        let mut list = UidList {
            uidvalidity: 0,
            uidnext: 1,
            guid: [0; 16],
            extra_header: Vec::new(),
            records: Vec::new(),
        };
        let v3 = match version {
            "3" => {
                for f in fields {
                    let (key, value) = f.split_at(1);
                    match key {
                        "V" => list.uidvalidity = value.parse().map_err(|_| Corrupt("bad V"))?,
                        "N" => list.uidnext = value.parse().map_err(|_| Corrupt("bad N"))?,
                        "G" => list.guid = parse_guid(value).ok_or(Corrupt("bad G"))?,
                        _ => list.extra_header.push(f.to_owned()),
                    }
                }
                true
            }
            "1" => {
                list.uidvalidity = fields
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or(Corrupt("bad uidvalidity"))?;
                list.uidnext = fields
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or(Corrupt("bad next uid"))?;
                false
            }
            _ => return Err(Corrupt("unknown version")),
        };
        if list.uidvalidity == 0 {
            return Err(Corrupt("no UIDVALIDITY"));
        }
        // A last line without its newline was cut short by a crash: ignore it. Its UID was
        // never reported (a UID is only used once the index holding it is durable).
        let lines: Vec<&str> = lines.collect();
        let complete = lines.len().saturating_sub(1);
        for line in &lines[..complete] {
            if line.is_empty() {
                continue;
            }
            if let Some(r) = parse_record(line, v3) {
                list.records.push(r);
            } else {
                tracing::warn!(line, "skipping malformed dovecot-uidlist line");
            }
        }
        if let Some(max) = list.records.iter().map(|r| r.uid).max() {
            list.uidnext = list.uidnext.max(max.saturating_add(1));
        }
        if !list.records.windows(2).all(|w| w[0].uid < w[1].uid) {
            list.records.sort_by_key(|r| r.uid);
            list.records.dedup_by_key(|r| r.uid);
        }
        // One UID per message: if a base appears twice, the lower UID wins.
        let mut bases = std::collections::HashSet::new();
        list.records
            .retain(|r| bases.insert(base_of(&r.file).to_owned()));
        list.uidnext = list.uidnext.max(1);
        Ok(list)
    }

    /// Writes the version 3 file.
    pub(crate) fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        write!(out, "3 V{} N{} G", self.uidvalidity, self.uidnext)?;
        for b in self.guid {
            write!(out, "{b:02x}")?;
        }
        for f in &self.extra_header {
            write!(out, " {f}")?;
        }
        out.write_all(b"\n")?;
        for r in &self.records {
            write_record(out, r.uid, &r.ext, &r.file)?;
        }
        Ok(())
    }
}

pub(crate) fn write_record(
    out: &mut impl Write,
    uid: u32,
    ext: &str,
    file: &str,
) -> io::Result<()> {
    if ext.is_empty() {
        writeln!(out, "{uid} :{file}")
    } else {
        writeln!(out, "{uid} {ext} :{file}")
    }
}

fn parse_record(line: &str, v3: bool) -> Option<Record> {
    let (uid, rest) = line.split_once(' ')?;
    let uid: u32 = uid.parse().ok().filter(|&u| u > 0)?;
    if !v3 {
        let file = rest.trim();
        return (!file.is_empty()).then(|| Record {
            uid,
            ext: String::new(),
            file: file.to_owned(),
        });
    }
    // Extensions are tokens up to the first one that starts with ':'; the rest of the line is
    // the file name (which itself contains ':').
    let mut pos = 0;
    let bytes = rest.as_bytes();
    loop {
        while pos < bytes.len() && bytes[pos] == b' ' {
            pos += 1;
        }
        if pos >= bytes.len() {
            return None;
        }
        if bytes[pos] == b':' {
            let file = &rest[pos + 1..];
            if file.is_empty() || file.contains('/') {
                return None;
            }
            let ext = rest[..pos].trim().to_owned();
            return Some(Record {
                uid,
                ext,
                file: file.to_owned(),
            });
        }
        while pos < bytes.len() && bytes[pos] != b' ' {
            pos += 1;
        }
    }
}

fn parse_guid(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut guid = [0; 16];
    for (i, b) in guid.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(guid)
}

/// The part of a Maildir file name that identifies the message: everything before `:`.
pub(crate) fn base_of(file: &str) -> &str {
    file.split_once(':').map_or(file, |(b, _)| b)
}

/// What identifies one version of a file, to notice that another process replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    ino: u64,
    dev: u64,
    size: u64,
    mtime: (i64, i64),
}

impl FileStamp {
    pub(crate) fn of(meta: &fs::Metadata) -> FileStamp {
        FileStamp {
            ino: meta.ino(),
            dev: meta.dev(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }

    /// The modification time.
    pub(crate) fn modified(&self) -> SystemTime {
        let (secs, nsec) = self.mtime;
        let since = Duration::new(secs.unsigned_abs(), nsec.clamp(0, 999_999_999) as u32);
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + since
        } else {
            SystemTime::UNIX_EPOCH - since
        }
    }

    /// The stamp of a path; `None` if it does not exist.
    pub(crate) fn read(path: &Path) -> io::Result<Option<FileStamp>> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(FileStamp::of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// How long a lock may go untouched while we wait before we call it abandoned.
const STALE_WAIT: Duration = Duration::from_secs(2);
/// Give up waiting for a lock that keeps changing after this long.
const LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// Takes the dot-lock `<target>.lock` in `dir`, returning it opened for writing.
///
/// A lock left by a crashed process is removed: one older than `started` (the mail store's
/// start: no writer of ours can own it, and Dovecot holds its locks for milliseconds) that
/// has not changed for a second, or one that does not change while we wait [`STALE_WAIT`].
pub(crate) fn acquire_lock(
    dir: &Path,
    target: &str,
    started: SystemTime,
) -> io::Result<(File, PathBuf)> {
    let lock = dir.join(format!("{target}.lock"));
    let begun = Instant::now();
    let mut watched: Option<(FileStamp, Instant)> = None;
    loop {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&lock)
        {
            Ok(f) => return Ok((f, lock)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let meta = match fs::metadata(&lock) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let stamp = FileStamp::of(&meta);
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let age = SystemTime::now()
            .duration_since(modified)
            .unwrap_or(Duration::ZERO);
        let unchanged_for = match watched {
            Some((s, since)) if s == stamp => since.elapsed(),
            _ => {
                watched = Some((stamp, Instant::now()));
                Duration::ZERO
            }
        };
        let stale = (modified < started && age > Duration::from_secs(1))
            || unchanged_for >= STALE_WAIT
            || age > LOCK_TIMEOUT;
        if stale {
            tracing::warn!(lock = %lock.display(), "removing an abandoned lock file");
            match fs::remove_file(&lock) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            watched = None;
            continue;
        }
        if begun.elapsed() > LOCK_TIMEOUT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} is held by another process", lock.display()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A taken dot-lock whose file becomes the new version of its target on
/// [`LockedWrite::commit`]; dropping it uncommitted removes the lock.
pub(crate) struct LockedWrite {
    file: File,
    lock: PathBuf,
    dir: PathBuf,
    target: &'static str,
    done: bool,
}

impl LockedWrite {
    pub(crate) fn acquire(
        dir: &Path,
        target: &'static str,
        started: SystemTime,
    ) -> io::Result<LockedWrite> {
        let (file, lock) = acquire_lock(dir, target, started)?;
        Ok(LockedWrite {
            file,
            lock,
            dir: dir.to_owned(),
            target,
            done: false,
        })
    }

    /// Writes the contents, fsyncs them, renames the lock over the target and fsyncs the
    /// directory. Returns the new file's stamp. Once the rename is done the new contents
    /// are what every reader sees; a failure to fsync the directory after that is logged
    /// (the rename itself is ordered after the data on a journaling file system).
    pub(crate) fn commit(
        mut self,
        fill: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
    ) -> io::Result<FileStamp> {
        let mut out = BufWriter::with_capacity(64 * 1024, &self.file);
        fill(&mut out)?;
        out.flush()?;
        drop(out);
        self.file.sync_all()?;
        let stamp = FileStamp::of(&self.file.metadata()?);
        fs::rename(&self.lock, self.dir.join(self.target))?;
        self.done = true;
        if let Err(e) = sync_dir(&self.dir) {
            tracing::error!(dir = %self.dir.display(), error = %e, "fsync of directory after replacing {}", self.target);
        }
        Ok(stamp)
    }
}

impl LockedWrite {
    /// Like [`LockedWrite::commit`] without any fsync: for files whose loss or damage in a
    /// crash does no harm (the header cache, which checks itself when read).
    pub(crate) fn commit_unsynced(
        mut self,
        fill: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
    ) -> io::Result<FileStamp> {
        let mut out = BufWriter::with_capacity(64 * 1024, &self.file);
        fill(&mut out)?;
        out.flush()?;
        drop(out);
        let stamp = FileStamp::of(&self.file.metadata()?);
        fs::rename(&self.lock, self.dir.join(self.target))?;
        self.done = true;
        Ok(stamp)
    }
}

impl Drop for LockedWrite {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.lock);
        }
    }
}

/// Replaces `dir/target` with what `fill` writes, durably (see [`LockedWrite`]). On failure
/// the old file is untouched and the lock is removed.
pub(crate) fn replace_file(
    dir: &Path,
    target: &'static str,
    started: SystemTime,
    fill: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> io::Result<FileStamp> {
    LockedWrite::acquire(dir, target, started)?.commit(fill)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::test_support::TempDir;

    const SAMPLE: &str = "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1 X1\n\
        25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n\
        25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n";

    #[test]
    fn dovecot_sample_round_trips() {
        let list = UidList::parse(SAMPLE).unwrap();
        assert_eq!(list.uidvalidity, 1_275_660_208);
        assert_eq!(list.uidnext, 25022);
        assert_eq!(list.guid[0], 0x30);
        assert_eq!(list.guid[15], 0xc1);
        assert_eq!(list.extra_header, ["X1"]);
        assert_eq!(list.records.len(), 2);
        assert_eq!(list.records[1].ext, "W2481");
        assert_eq!(list.records[1].file, "1276533073.M242911P3632.kurkku:2,F");
        let mut out = Vec::new();
        list.write_to(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), SAMPLE);
    }

    #[test]
    fn damaged_files_are_repaired_or_refused() {
        // Truncated last line, low N, duplicates and disorder.
        let text = "3 V7 N2 G00000000000000000000000000000000\n\
            5 :b:2,S\n3 :a:2,\n5 :c\n9 :a:2,T\n12 :partial";
        let list = UidList::parse(text).unwrap();
        let uids: Vec<_> = list
            .records
            .iter()
            .map(|r| (r.uid, r.file.as_str()))
            .collect();
        assert_eq!(uids, [(3, "a:2,"), (5, "b:2,S")]);
        assert_eq!(
            list.uidnext, 10,
            "N repaired above every UID seen, even dropped ones"
        );
        // Version 1 (Courier).
        let list = UidList::parse("1 99 4\n1 a\n3 b:2,S\n").unwrap();
        assert_eq!(
            (list.uidvalidity, list.uidnext, list.records.len()),
            (99, 4, 2)
        );
        for bad in ["", "2 V1 N1\n", "3 N5\n", "3 Vx\n", "3 V1 Gzz\n"] {
            assert!(UidList::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replace_is_atomic_and_clears_stale_locks() {
        let td = TempDir::new();
        let dir = td.path();
        let started = SystemTime::now();
        replace_file(dir, UIDLIST, started, |o| o.write_all(b"one\n")).unwrap();
        assert_eq!(fs::read(dir.join(UIDLIST)).unwrap(), b"one\n");
        // A lock left behind by a crash before this process started.
        let lock = dir.join("dovecot-uidlist.lock");
        fs::write(&lock, b"half").unwrap();
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(started - Duration::from_secs(5))
            .unwrap();
        replace_file(dir, UIDLIST, started, |o| o.write_all(b"two\n")).unwrap();
        assert_eq!(fs::read(dir.join(UIDLIST)).unwrap(), b"two\n");
        assert!(!lock.exists());
        // A failing writer leaves the old file and no lock.
        let err = replace_file(dir, UIDLIST, started, |_| Err(io::Error::other("boom")));
        assert!(err.is_err());
        assert_eq!(fs::read(dir.join(UIDLIST)).unwrap(), b"two\n");
        assert!(!lock.exists());
    }
}
