//! The header cache: what SEARCH needs from each message's header, kept per mailbox so that a
//! search on SUBJECT, FROM, TO, CC, BCC, HEADER or the sent date does not open every file.
//!
//! # What is kept
//!
//! A [`HeaderSummary`] per message: the date of its `Date:` field as written, and for a few
//! field names (the five SEARCH names, plus names HEADER searches asked for) the decoded
//! values of every field with that name, lower-cased. The IMAP side makes a summary from the
//! parsed message with the same functions a search of the file uses, so a summary answers
//! exactly as the file would; a name a summary lacks (or whose values were too long to keep)
//! sends the search to the file, and a new summary with that name replaces the old. FETCH
//! makes one too when it reads a message's header for a message the cache lacks (a client
//! fetches every ENVELOPE before it ever searches), with the five SEARCH names. In
//! memory a summary is one block of octets laid out as in the file (a few hundred octets for
//! a typical message; each field name's values are capped at 4 KiB, 16 names at most).
//!
//! # Keys and validity
//!
//! Entries are keyed by the message file's base name (before `:2,`), which flag changes do
//! not touch, and carry the message's size as the index knows it: a base whose size differs
//! is a miss. Maildir files are written once and never changed, so a base names one content
//! for good. Entries of messages no longer in the index are dropped whenever the file is
//! written.
//!
//! # The file
//!
//! `ironpost.cache` in the mailbox directory, next to `dovecot-uidlist`:
//!
//! ```text
//! "IPHCACHE" version:u32 count:u32 entry*count fnv1a64(everything before):u64
//! entry: base_len:u16 base size:u64 year:u16 month:u8 day:u8 (all 0: no date) nfields:u8 field*
//! field: name_len:u8 name kind:u8 (0 too long, 1 values) [nvalues:u16 (len:u32 utf8)*]
//! ```
//!
//! Little-endian. It is replaced whole (under the dot-lock `ironpost.cache.lock`, written to
//! the lock file and renamed over the old one), without fsync: it is only a cache, and a file
//! that is short, damaged, of another version or fails its checksum is ignored whole and
//! rebuilt by the next searches. Another process's rewrite is noticed by the file's stamp and
//! merged into what this one knows. A SEARCH that made new summaries, and a FETCH (which
//! adds its summaries in memory a batch at a time) at its end, write the file if enough are
//! new (`worth_saving`: one in sixteen entries, at most 64); fewer stay in memory until a
//! later write, and are lost (made again when needed) if the process ends first.

use hashbrown::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use ironpost_core::imap::Date;

use super::index::{base_of, FileStamp, LockedWrite};
use super::mailbox::Entry;

/// The cache file in a mailbox directory.
pub(crate) const CACHE_FILE: &str = "ironpost.cache";
const MAGIC: &[u8; 8] = b"IPHCACHE";
/// Bump when the layout, or how the IMAP side derives what it stores, changes.
const VERSION: u32 = 1;

/// Decoded values longer than this (in total, per field name) are not kept.
const MAX_FIELD_TEXT: usize = 4096;
/// At most this many field names per message.
const MAX_FIELDS: usize = 16;
/// Longest field name kept.
const MAX_NAME: usize = 255;

/// One field name for a new [`HeaderSummary`], with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedField {
    /// In ASCII lower case.
    name: Vec<u8>,
    /// Lower-cased; `None`: too long to keep.
    values: Option<Vec<String>>,
}

impl CachedField {
    /// Longest field name kept.
    pub const MAX_NAME: usize = MAX_NAME;
    /// Decoded values longer than this (together) are not kept.
    pub const MAX_TEXT: usize = MAX_FIELD_TEXT;

    /// A field from its decoded values (as SEARCH decodes them). The values are lower-cased
    /// here; if together they are longer than [`MAX_FIELD_TEXT`], only their existence is
    /// kept. `None` if the name is longer than [`MAX_NAME`].
    pub fn new(name: &[u8], decoded: Vec<String>) -> Option<CachedField> {
        if name.len() > MAX_NAME {
            return None;
        }
        let lower: Vec<String> = decoded.iter().map(|v| v.to_lowercase()).collect();
        let total: usize = lower.iter().map(String::len).sum();
        Some(CachedField {
            name: name.to_ascii_lowercase(),
            values: (total <= MAX_FIELD_TEXT && lower.len() <= usize::from(u16::MAX))
                .then_some(lower),
        })
    }
}

/// One field name of a [`HeaderSummary`].
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    name: &'a [u8],
    /// The encoded values (`None`: too long to keep), and how many.
    values: Option<(&'a [u8], u16)>,
}

impl<'a> Field<'a> {
    /// In ASCII lower case.
    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    /// Every field of that name, in order, decoded and lower-cased (none: the message has no
    /// such field). `None` if they were too long to keep: ask the file.
    pub fn values(&self) -> Option<impl Iterator<Item = &'a str> + 'a> {
        let (mut data, count) = self.values?;
        Some((0..count).map_while(move |_| {
            let mut r = Reader(data);
            let len = r.u32()? as usize;
            let v = r.str(len)?;
            data = r.0;
            Some(v)
        }))
    }

    /// Whether the message has a field of this name (known even when the values were not
    /// kept: they were long, so there was one).
    pub fn present(&self) -> bool {
        self.values.is_none_or(|(_, n)| n > 0)
    }
}

/// What SEARCH needs from one message's header (see the module documentation), in one
/// block of memory: the fields as the file has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSummary {
    /// The date of the `Date:` field as written (SENTBEFORE, SENTON, SENTSINCE); `None` if
    /// there is none or it does not parse.
    pub sent_date: Option<Date>,
    nfields: u8,
    /// `field*` of the file format (checked when made or read).
    data: Box<[u8]>,
}

impl HeaderSummary {
    /// At most this many field names per message.
    pub const MAX_FIELDS: usize = MAX_FIELDS;

    /// A summary of these fields (names after the first [`MAX_FIELDS`], and repeated ones,
    /// are left out).
    pub fn new(sent_date: Option<Date>, fields: Vec<CachedField>) -> HeaderSummary {
        let mut names: Vec<&[u8]> = Vec::with_capacity(fields.len().min(MAX_FIELDS));
        let mut data = Vec::new();
        for f in &fields {
            if names.len() == MAX_FIELDS || names.contains(&f.name.as_slice()) {
                continue;
            }
            names.push(&f.name);
            data.push(f.name.len() as u8);
            data.extend_from_slice(&f.name);
            match &f.values {
                None => data.push(0),
                Some(values) => {
                    data.push(1);
                    data.extend_from_slice(&(values.len() as u16).to_le_bytes());
                    for v in values {
                        data.extend_from_slice(&(v.len() as u32).to_le_bytes());
                        data.extend_from_slice(v.as_bytes());
                    }
                }
            }
        }
        HeaderSummary {
            sent_date,
            nfields: names.len() as u8,
            data: data.into(),
        }
    }

    /// The field called `name` (ASCII case-insensitive), if this summary has that name.
    pub fn field(&self, name: &[u8]) -> Option<Field<'_>> {
        self.fields().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Its field names, in order.
    pub fn fields(&self) -> impl Iterator<Item = Field<'_>> + '_ {
        let mut r = Reader(&self.data);
        (0..self.nfields).map_while(move |_| read_field(&mut r))
    }

    fn approx_size(&self) -> usize {
        self.data.len() + 48
    }
}

/// One `field` of the file format; `None` if it is cut short.
fn read_field<'a>(r: &mut Reader<'a>) -> Option<Field<'a>> {
    let n = r.u8()?.into();
    let name = r.take(n)?;
    let values = match r.u8()? {
        0 => None,
        1 => {
            let count = r.u16()?;
            let start = r.0;
            for _ in 0..count {
                let len = r.u32()? as usize;
                r.take(len)?;
            }
            Some((&start[..start.len() - r.0.len()], count))
        }
        _ => return None,
    };
    Some(Field { name, values })
}

/// Checks `nfields` fields at the start of `r` (as read from a file), returning their
/// octets.
fn check_fields<'a>(r: &mut Reader<'a>, nfields: usize) -> Option<&'a [u8]> {
    let start = r.0;
    let mut names: Vec<&[u8]> = Vec::with_capacity(nfields);
    for _ in 0..nfields {
        let f = read_field(r)?;
        if f.name.iter().any(u8::is_ascii_uppercase) || names.contains(&f.name) {
            return None;
        }
        names.push(f.name);
        if let Some((data, count)) = f.values {
            let mut total = 0;
            let mut v = Reader(data);
            for _ in 0..count {
                let len = v.u32()? as usize;
                total += len;
                v.str(len)?;
            }
            if total > MAX_FIELD_TEXT {
                return None;
            }
        }
    }
    Some(&start[..start.len() - r.0.len()])
}

#[derive(Debug)]
struct CacheEntry {
    /// The message's size as the index had it when the entry was made.
    size: u64,
    summary: Arc<HeaderSummary>,
}

/// One mailbox's header cache in memory (inside its locked state).
#[derive(Debug, Default)]
pub(crate) struct HeaderCache {
    /// The file has been read (or found missing or bad) since the mailbox was opened.
    loaded: bool,
    entries: HashMap<Box<str>, CacheEntry>,
    /// The file as last read or written here: another stamp means another process wrote it.
    stamp: Option<FileStamp>,
    /// Entries the file lacks (or has and should not): write it.
    dirty: bool,
    /// Summaries added since the file was last written.
    unsaved: usize,
}

impl HeaderCache {
    /// Forgets everything (the mailbox is gone).
    pub(crate) fn clear(&mut self) {
        *self = HeaderCache::default();
    }

    /// Roughly how many bytes the entries take.
    pub(crate) fn memory(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, e)| k.len() + 32 + e.summary.approx_size())
            .sum()
    }

    /// How many messages have an entry.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Reads the file if it is new to us: at first use, or when another process replaced it.
    /// What it holds is added to what we have; entries of messages not in `live` are left out.
    fn refresh(&mut self, dir: &Path, live: &[Entry]) {
        let path = dir.join(CACHE_FILE);
        let stamp = match FileStamp::read(&path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "stat of the header cache");
                return;
            }
        };
        if self.loaded && stamp == self.stamp {
            return;
        }
        let first = !self.loaded;
        self.loaded = true;
        self.stamp = stamp;
        if stamp.is_none() {
            // Removed by someone (or never written): write what we know next time.
            self.dirty |= !self.entries.is_empty();
            return;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "reading the header cache");
                self.dirty = true;
                return;
            }
        };
        let Some(read) = decode(&bytes) else {
            tracing::warn!(path = %path.display(), "damaged header cache: rebuilding it");
            self.dirty = true;
            return;
        };
        let live: HashMap<&str, u64> = live.iter().map(|e| (base_of(&e.file), e.size)).collect();
        let mut dropped = false;
        for (base, entry) in read {
            if live.get(&*base) != Some(&entry.size) {
                dropped = true;
                continue;
            }
            self.entries.entry(base).or_insert(entry);
        }
        // Another process's file is merged into ours: ours may now hold more than the file.
        if dropped || !first {
            self.dirty = true;
        }
    }

    /// The summaries of the messages with these UIDs (ascending), `None` where there is none.
    pub(crate) fn lookup(
        &mut self,
        dir: &Path,
        live: &[Entry],
        uids: &[u32],
    ) -> Vec<Option<Arc<HeaderSummary>>> {
        self.refresh(dir, live);
        let mut out = Vec::with_capacity(uids.len());
        // FETCH asks a batch at a time, often far into the mailbox: start at the first.
        let mut j = uids
            .first()
            .map_or(0, |&u| live.partition_point(|e| e.uid < u));
        for &uid in uids {
            while j < live.len() && live[j].uid < uid {
                j += 1;
            }
            let found = live.get(j).filter(|e| e.uid == uid).and_then(|e| {
                let c = self.entries.get(base_of(&e.file))?;
                (c.size == e.size).then(|| Arc::clone(&c.summary))
            });
            out.push(found);
        }
        out
    }

    /// Adds summaries made from the files of the messages with these UIDs (those no longer in
    /// `live` are skipped).
    pub(crate) fn insert(&mut self, live: &[Entry], items: Vec<(u32, HeaderSummary)>) {
        for (uid, summary) in items {
            let Ok(i) = live.binary_search_by_key(&uid, |e| e.uid) else {
                continue;
            };
            let e = &live[i];
            self.entries.insert(
                base_of(&e.file).into(),
                CacheEntry {
                    size: e.size,
                    summary: Arc::new(summary),
                },
            );
            self.dirty = true;
            self.unsaved += 1;
        }
    }

    /// Whether enough summaries were added since the last write to write the whole file for
    /// them: one in sixteen of the entries, capped at 64, so a mailbox of 10,000 messages is
    /// rewritten once per 64 new summaries (a client fetching each new message's ENVELOPE
    /// as it arrives) rather than once per message, and a small one at once.
    pub(crate) fn worth_saving(&self) -> bool {
        self.dirty && self.unsaved >= (self.entries.len() / 16).clamp(1, 64)
    }

    /// Writes the file if it lacks something we know, dropping entries of messages no longer
    /// in `live` (from memory too). What another process wrote since we last read the file
    /// is merged first rather than overwritten: FETCH inserts for a long while (a batch at a
    /// time) before it saves.
    pub(crate) fn save(
        &mut self,
        dir: &Path,
        live: &[Entry],
        started: SystemTime,
    ) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.refresh(dir, live);
        let bases: HashSet<&str> = live.iter().map(|e| base_of(&e.file)).collect();
        self.entries.retain(|b, _| bases.contains(&**b));
        let bytes = encode(&self.entries);
        let lock = LockedWrite::acquire(dir, CACHE_FILE, started)?;
        let stamp = lock.commit_unsynced(|out| out.write_all(&bytes))?;
        self.stamp = Some(stamp);
        self.loaded = true;
        self.dirty = false;
        self.unsaved = 0;
        tracing::debug!(
            dir = %dir.display(),
            messages = self.len(),
            bytes = bytes.len(),
            memory = self.memory(),
            "header cache written"
        );
        Ok(())
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn encode(entries: &HashMap<Box<str>, CacheEntry>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * 128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    for (base, e) in entries {
        // The constructors keep names and values within the field widths; a base longer than
        // a u16 would be no Maildir name.
        let Ok(base_len) = u16::try_from(base.len()) else {
            continue;
        };
        count += 1;
        out.extend_from_slice(&base_len.to_le_bytes());
        out.extend_from_slice(base.as_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        let (y, m, d) = e
            .summary
            .sent_date
            .map_or((0, 0, 0), |d| (d.year, d.month, d.day));
        out.extend_from_slice(&y.to_le_bytes());
        out.push(m);
        out.push(d);
        out.push(e.summary.nfields);
        out.extend_from_slice(&e.summary.data);
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// The entries of a cache file; `None` if anything about it is wrong.
fn decode(bytes: &[u8]) -> Option<Vec<(Box<str>, CacheEntry)>> {
    let body_len = bytes.len().checked_sub(8)?;
    let (body, sum) = bytes.split_at(body_len);
    if fnv1a(body) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC || r.u32()? != VERSION {
        return None;
    }
    let count = r.u32()? as usize;
    // Every entry takes at least 15 octets: a count beyond that is a lie.
    if count > r.0.len() / 15 {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let n = r.u16()?.into();
        let base = r.str(n)?;
        if base.is_empty() || base.contains(['/', ':']) {
            return None;
        }
        let size = r.u64()?;
        let (y, m, d) = (r.u16()?, r.u8()?, r.u8()?);
        let sent_date = if (y, m, d) == (0, 0, 0) {
            None
        } else {
            Some(Date::new(y, m, d)?)
        };
        let nfields = r.u8()?;
        if usize::from(nfields) > MAX_FIELDS {
            return None;
        }
        let data = check_fields(&mut r, nfields.into())?;
        out.push((
            base.into(),
            CacheEntry {
                size,
                summary: Arc::new(HeaderSummary {
                    sent_date,
                    nfields,
                    data: data.into(),
                }),
            },
        ));
    }
    r.0.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HashMap<Box<str>, CacheEntry> {
        let mut m = HashMap::new();
        let s = HeaderSummary::new(
            Date::new(2026, 3, 2),
            vec![
                CachedField::new(b"Subject", vec!["Grüße ÄÖ".into()]).unwrap(),
                CachedField::new(b"to", vec!["A".into(), "b".into()]).unwrap(),
                CachedField::new(b"cc", vec![]).unwrap(),
                CachedField::new(b"x-long", vec!["x".repeat(MAX_FIELD_TEXT + 1)]).unwrap(),
            ],
        );
        m.insert(
            "1700000000.M1P2Q3.host,S=10".into(),
            CacheEntry {
                size: 10,
                summary: Arc::new(s),
            },
        );
        m.insert(
            "b".into(),
            CacheEntry {
                size: u64::MAX,
                summary: Arc::new(HeaderSummary::default()),
            },
        );
        m
    }

    fn values<'a>(s: &'a HeaderSummary, name: &[u8]) -> Option<Vec<&'a str>> {
        Some(s.field(name)?.values()?.collect())
    }

    #[test]
    fn fields_are_lowered_and_capped() {
        let s = HeaderSummary::new(
            None,
            vec![
                CachedField::new(b"X-Test", vec!["ÄBC".into(), "d".into()]).unwrap(),
                CachedField::new(b"To", vec!["a".repeat(MAX_FIELD_TEXT + 1)]).unwrap(),
                CachedField::new(b"Cc", vec![]).unwrap(),
                CachedField::new(b"x-TEST", vec!["again".into()]).unwrap(),
            ],
        );
        let names: Vec<&[u8]> = s.fields().map(|f| f.name()).collect();
        assert_eq!(names, [&b"x-test"[..], b"to", b"cc"]);
        assert_eq!(values(&s, b"X-TEST").unwrap(), ["äbc", "d"]);
        let to = s.field(b"to").unwrap();
        assert!(to.values().is_none() && to.present());
        let cc = s.field(b"CC").unwrap();
        assert!(!cc.present() && values(&s, b"cc").unwrap().is_empty());
        assert!(s.field(b"bcc").is_none());
        assert!(CachedField::new(&[b'x'; MAX_NAME + 1], vec![]).is_none());
        let many: Vec<_> = (0..MAX_FIELDS + 3)
            .map(|i| CachedField::new(format!("f{i}").as_bytes(), vec![]).unwrap())
            .collect();
        let s = HeaderSummary::new(None, many);
        assert_eq!(s.fields().count(), MAX_FIELDS);
        assert!(s.field(format!("f{}", MAX_FIELDS).as_bytes()).is_none());
    }

    #[test]
    fn the_file_round_trips_and_any_damage_is_refused() {
        let entries = sample();
        let bytes = encode(&entries);
        let mut back: Vec<_> = decode(&bytes).unwrap();
        back.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(back.len(), 2);
        for (base, e) in &back {
            let orig = &entries[base];
            assert_eq!(e.size, orig.size);
            assert_eq!(e.summary, orig.summary);
        }
        // Every truncation, and every single-bit flip, is caught.
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_none(), "cut at {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(decode(&b).is_none(), "flip at {i}");
        }
        // Another version is refused even with a good checksum.
        let mut b = bytes[..bytes.len() - 8].to_vec();
        b[8] = 99;
        let sum = fnv1a(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        assert!(decode(&b).is_none());
        assert!(decode(b"").is_none());
        assert!(decode(b"garbage that is long enough").is_none());
    }
}
