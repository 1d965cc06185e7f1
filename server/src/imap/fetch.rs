//! FETCH (RFC 3501 6.4.5): one `* n FETCH (...)` response per message, from the index
//! metadata and, only when an attribute needs it, the message file.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ironpost_core::imap::encode::{ContentItem, FetchWriter};
use ironpost_core::imap::{DateTime, FetchAttr, Flag, Partial, Section, SectionText};

use super::mime::{ParsedMessage, SectionData};
use super::search::header_summary;
use crate::mailstore::{HeaderSummary, MailstoreError, MessageInfo, SystemFlags};

/// What the index knows of a message: everything FETCH answers without reading the file.
#[derive(Debug, Clone, Copy)]
pub struct MessageMeta<'a> {
    /// Sequence number in the session's view.
    pub seq: u32,
    pub uid: u32,
    /// System flags (`\Recent` is [`MessageMeta::recent`]).
    pub flags: SystemFlags,
    /// The names of the message's keywords ([`crate::mailstore::MailboxView::keyword_names`]).
    pub keywords: &'a [&'a str],
    /// `\Recent` in this session.
    pub recent: bool,
    /// RFC822.SIZE.
    pub size: u64,
    /// INTERNALDATE, seconds since the Unix epoch.
    pub internal_date: i64,
}

impl<'a> MessageMeta<'a> {
    /// The metadata of message `seq` of a mailbox view; `keywords` from
    /// [`crate::mailstore::MailboxView::keyword_names`]`(info.keywords)`.
    pub fn from_info(seq: u32, info: &MessageInfo, keywords: &'a [&'a str]) -> Self {
        MessageMeta {
            seq,
            uid: info.uid,
            flags: info.flags,
            keywords,
            recent: info.recent,
            size: info.size,
            internal_date: info.internal_date,
        }
    }

    /// The flags as FETCH FLAGS shows them: system flags, keywords, then `\Recent`.
    pub fn imap_flags(&self) -> Vec<Flag<'a>> {
        let mut out = Vec::with_capacity(6 + self.keywords.len());
        for (bit, flag) in [
            (SystemFlags::SEEN, Flag::Seen),
            (SystemFlags::ANSWERED, Flag::Answered),
            (SystemFlags::FLAGGED, Flag::Flagged),
            (SystemFlags::DELETED, Flag::Deleted),
            (SystemFlags::DRAFT, Flag::Draft),
        ] {
            if self.flags.contains(bit) {
                out.push(flag);
            }
        }
        out.extend(self.keywords.iter().map(|k| Flag::Keyword((*k).into())));
        if self.recent {
            out.push(Flag::Recent);
        }
        out
    }
}

/// Why a message could not be answered. The handler answers the command `NO` (for
/// [`MailstoreError::Expunged`], `NO [EXPUNGEISSUED]`, or it may skip the message).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("reading the message: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] MailstoreError),
}

/// Where a message's octets come from. Opened only when an attribute or search key needs
/// the message: the handler passes `&|| view.open_message(uid)` (the file's name changes
/// with its flags, so it is opened by UID), tests pass a path.
pub trait MessageSource {
    fn open_message(&self) -> Result<File, FetchError>;
}

impl MessageSource for Path {
    fn open_message(&self) -> Result<File, FetchError> {
        Ok(File::open(self)?)
    }
}

impl MessageSource for PathBuf {
    fn open_message(&self) -> Result<File, FetchError> {
        Ok(File::open(self)?)
    }
}

impl<F, E> MessageSource for F
where
    F: Fn() -> Result<File, E>,
    E: Into<FetchError>,
{
    fn open_message(&self) -> Result<File, FetchError> {
        self().map_err(Into::into)
    }
}

/// Opens and parses a message.
pub fn load<S: MessageSource + ?Sized>(source: &S) -> Result<ParsedMessage, FetchError> {
    Ok(ParsedMessage::open(source.open_message()?)?)
}

/// How the FETCH was asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// `UID FETCH`: the response always carries UID (RFC 3501 6.4.8).
    pub uid_command: bool,
    /// The mailbox was opened with EXAMINE: `\Seen` is never set.
    pub read_only: bool,
}

/// What the caller must do after [`write_fetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchResult {
    /// Store `\Seen` on the message: a non-PEEK body section, RFC822 or RFC822.TEXT was
    /// fetched from a message without it, in a read-write mailbox. The response already
    /// shows it: its FLAGS item (added if not asked for, as RFC 3501 6.4.5 wants) includes
    /// `\Seen`.
    pub set_seen: bool,
    /// The system flags the response's FLAGS item showed (or would have shown).
    pub flags: SystemFlags,
}

/// Whether fetching `attrs` sets `\Seen` on this message (see [`FetchResult::set_seen`]).
/// A handler that prefers to store `\Seen` before answering calls this first, then
/// [`write_fetch`] with the metadata as it was.
pub fn will_set_seen(flags: SystemFlags, attrs: &[FetchAttr<'_>], read_only: bool) -> bool {
    !read_only && !flags.contains(SystemFlags::SEEN) && attrs.iter().any(FetchAttr::sets_seen)
}

/// Whether answering `attr` needs the message file.
pub fn needs_message(attr: &FetchAttr<'_>) -> bool {
    !matches!(
        attr,
        FetchAttr::Flags | FetchAttr::Uid | FetchAttr::Rfc822Size | FetchAttr::InternalDate
    )
}

/// Whether answering `attr` reads the message's top-level header: ENVELOPE, the whole
/// message, its header or some of its fields. The header cache's summary
/// ([`write_fetch_streaming_cached`]) then costs little more than the answer; a part, the
/// text or the structure alone does not look at the fields the cache keeps.
pub fn reads_header(attr: &FetchAttr<'_>) -> bool {
    match attr {
        FetchAttr::Envelope | FetchAttr::Rfc822 | FetchAttr::Rfc822Header => true,
        FetchAttr::BodySection { section, .. } => {
            section.part.is_none() && !matches!(section.text, Some(SectionText::Text))
        }
        _ => false,
    }
}

/// `RFC822.HEADER` is `BODY.PEEK[HEADER]`.
const HEADER: Section<'static> = Section {
    part: None,
    text: Some(SectionText::Header),
};
/// `RFC822.TEXT` is `BODY[TEXT]`.
const TEXT: Section<'static> = Section {
    part: None,
    text: Some(SectionText::Text),
};

/// Writes one `* n FETCH (...)` response for the requested attributes (macros already
/// expanded: [`ironpost_core::imap::FetchItems::attrs`]), all of it into `out`.
///
/// FLAGS, UID, RFC822.SIZE and INTERNALDATE come from `meta`; the message is opened and
/// parsed (once) only if another attribute is asked for, and before anything is written, so
/// on error `out` is left as it was.
///
/// Body contents are written into `out` whole: fine for small messages and tests. The
/// FETCH command uses [`write_fetch_streaming`], which leaves large sections in the file.
pub fn write_fetch<S: MessageSource + ?Sized>(
    out: &mut Vec<u8>,
    meta: &MessageMeta<'_>,
    source: &S,
    attrs: &[FetchAttr<'_>],
    opts: FetchOptions,
) -> Result<FetchResult, FetchError> {
    let msg = if attrs.iter().any(needs_message) {
        Some(load(source)?)
    } else {
        None
    };
    Ok(write_fetch_parsed(out, meta, msg.as_ref(), attrs, opts))
}

/// [`write_fetch`] with the message already loaded (`None` only if no attribute needs it).
pub fn write_fetch_parsed(
    out: &mut Vec<u8>,
    meta: &MessageMeta<'_>,
    msg: Option<&ParsedMessage>,
    attrs: &[FetchAttr<'_>],
    opts: FetchOptions,
) -> FetchResult {
    let mut emit = Emit::new(out, None);
    write_items(&mut emit, meta, msg, attrs, opts)
}

/// A body section longer than this is streamed from the message file rather than copied
/// into the response; so is a shorter one once the message's copied sections reach it.
/// It is also the most one read from the file takes at a time.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// [`write_fetch`] for the FETCH command: sections that are a contiguous octet range of the
/// message (`BODY[]`, `RFC822`, `TEXT`, numbered parts, `MIME`, `HEADER`, partials of
/// these) longer than [`STREAM_CHUNK`] are not copied. `out` then ends with the literal
/// header `{n}` of the first of them, and the returned [`BodyStream`] holds the rest of the
/// response: the open file, the octet ranges to copy from it, and the built items between
/// and after them. The caller sends it with [`BodyStream::copy`] as its output drains,
/// before anything else.
///
/// The message is mapped or read only while the response is laid out; a stream reads the
/// file through its own descriptor with positioned reads, so its memory is the chunk being
/// copied, never the message, and a file renamed (flag change) or unlinked (expunge
/// elsewhere) meanwhile is still read whole. Built sections (`HEADER.FIELDS`, ENVELOPE,
/// BODYSTRUCTURE) are small and go into the response as before.
///
/// A file with bare LF line endings (put in the Maildir by other software) is converted to
/// CRLF on load; its sections are not ranges of the file, so such a stream copies from the
/// converted message, which it keeps in memory until done.
pub fn write_fetch_streaming<S: MessageSource + ?Sized>(
    out: &mut Vec<u8>,
    meta: &MessageMeta<'_>,
    source: &S,
    attrs: &[FetchAttr<'_>],
    opts: FetchOptions,
) -> Result<(FetchResult, Option<BodyStream>), FetchError> {
    stream_fetch(out, meta, source, attrs, opts, |_| {})
}

/// [`write_fetch_streaming`] that also makes the header cache's summary of the message
/// (into `fresh`) when an attribute reads its header ([`reads_header`]) and the message's
/// cached summary (`headers`) is missing or lacks a field: a client fetches every message's
/// ENVELOPE or header fields before it searches, and the search then need not read the
/// files again. The summary is SEARCH's own ([`header_summary`]); hand it to
/// [`crate::mailstore::MailboxView::note_headers`].
pub fn write_fetch_streaming_cached<S: MessageSource + ?Sized>(
    out: &mut Vec<u8>,
    meta: &MessageMeta<'_>,
    source: &S,
    attrs: &[FetchAttr<'_>],
    opts: FetchOptions,
    headers: Option<&HeaderSummary>,
    fresh: &mut Option<HeaderSummary>,
) -> Result<(FetchResult, Option<BodyStream>), FetchError> {
    let reads = attrs.iter().any(reads_header);
    stream_fetch(out, meta, source, attrs, opts, |msg| {
        if reads {
            *fresh = header_summary(msg, headers);
        }
    })
}

/// [`write_fetch_streaming`], showing the parsed message to `parsed` (if it was read).
fn stream_fetch<S: MessageSource + ?Sized>(
    out: &mut Vec<u8>,
    meta: &MessageMeta<'_>,
    source: &S,
    attrs: &[FetchAttr<'_>],
    opts: FetchOptions,
    parsed: impl FnOnce(&ParsedMessage),
) -> Result<(FetchResult, Option<BodyStream>), FetchError> {
    if !attrs.iter().any(needs_message) {
        return Ok((write_fetch_parsed(out, meta, None, attrs, opts), None));
    }
    let file = source.open_message()?;
    let file_len = file.metadata()?.len();
    let msg = ParsedMessage::open(file.try_clone()?)?;
    parsed(&msg);
    let mut emit = Emit::new(out, Some(STREAM_CHUNK));
    let result = write_items(&mut emit, meta, Some(&msg), attrs, opts);
    let Some(mut segments) = emit.rest else {
        return Ok((result, None));
    };
    if !emit.tail.is_empty() {
        segments.push_back(Segment::Bytes(emit.tail));
    }
    // Section offsets are file offsets unless the message was converted on load.
    let source = if msg.bytes().len() as u64 == file_len {
        drop(msg);
        StreamSource::File(file)
    } else {
        StreamSource::Memory(msg)
    };
    Ok((
        result,
        Some(BodyStream {
            source,
            segments,
            uid: meta.uid,
        }),
    ))
}

/// Where a [`BodyStream`] copies its ranges from.
enum StreamSource {
    /// The message file: section offsets are file offsets.
    File(File),
    /// A message converted to CRLF on load: offsets are into the converted copy.
    Memory(ParsedMessage),
}

/// A piece of a FETCH response still to send.
#[derive(Debug)]
enum Segment {
    /// Built octets (items after a streamed literal, the closing parenthesis).
    Bytes(Vec<u8>),
    /// What remains of a streamed literal: these octets of the message.
    Range(Range<u64>),
}

/// Why a [`BodyStream`] could not finish its literal. The literal's length is already on
/// the wire and cannot be taken back: the connection has to end (as Dovecot does when a
/// message gives fewer octets than it announced).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("message UID {uid} ended {missing} octets short of its literal")]
    Short { uid: u32, missing: u64 },
    #[error("reading message UID {uid}: {source}")]
    Io {
        uid: u32,
        #[source]
        source: io::Error,
    },
}

/// The rest of a FETCH response whose body streams from the message file (see
/// [`write_fetch_streaming`]).
pub struct BodyStream {
    source: StreamSource,
    segments: VecDeque<Segment>,
    uid: u32,
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyStream")
            .field("uid", &self.uid)
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl BodyStream {
    /// Octets of the response still to send.
    pub fn remaining(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Bytes(b) => b.len() as u64,
                Segment::Range(r) => r.end - r.start,
            })
            .sum()
    }

    /// Appends the next part of the response to `out`: file octets up to `budget` (read
    /// [`STREAM_CHUNK`] at a time), and the built octets that follow them. Returns true once
    /// the whole response is written.
    ///
    /// On error `out` holds what could be read; the literal cannot be completed.
    pub fn copy(&mut self, out: &mut Vec<u8>, budget: usize) -> Result<bool, StreamError> {
        let mut left = budget.max(1) as u64;
        while let Some(seg) = self.segments.front_mut() {
            match seg {
                Segment::Bytes(b) => {
                    out.extend_from_slice(b);
                    self.segments.pop_front();
                }
                Segment::Range(r) => {
                    if left == 0 {
                        return Ok(false);
                    }
                    let n = (r.end - r.start).min(left).min(STREAM_CHUNK as u64);
                    let got = read_source(&self.source, self.uid, out, r.start, n as usize)?;
                    r.start += got as u64;
                    left -= got as u64;
                    if got < n as usize {
                        return Err(StreamError::Short {
                            uid: self.uid,
                            missing: r.end - r.start,
                        });
                    }
                    if r.start == r.end {
                        self.segments.pop_front();
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Appends `n` octets at `offset` of the message to `out`; fewer at the end of the file.
fn read_source(
    source: &StreamSource,
    uid: u32,
    out: &mut Vec<u8>,
    offset: u64,
    n: usize,
) -> Result<usize, StreamError> {
    match source {
        StreamSource::Memory(msg) => {
            let b = msg.bytes();
            let start = (offset as usize).min(b.len());
            let end = start.saturating_add(n).min(b.len());
            out.extend_from_slice(&b[start..end]);
            Ok(end - start)
        }
        StreamSource::File(file) => {
            use std::os::unix::fs::FileExt;
            let base = out.len();
            out.resize(base + n, 0);
            let mut got = 0;
            while got < n {
                match file.read_at(&mut out[base + got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        out.truncate(base + got);
                        return Err(StreamError::Io { uid, source });
                    }
                }
            }
            out.truncate(base + got);
            Ok(got)
        }
    }
}

/// Where [`write_items`] puts the response: `out` until the first streamed literal begins,
/// then segments.
struct Emit<'o> {
    out: &'o mut Vec<u8>,
    /// Streams ranges longer than this (and copies at most this much per message).
    stream_over: Option<usize>,
    /// Octets of ranges copied into the response so far.
    copied: usize,
    /// Once a literal streams: the segments after `out`.
    rest: Option<VecDeque<Segment>>,
    /// Built octets after the last streamed range.
    tail: Vec<u8>,
}

impl<'o> Emit<'o> {
    fn new(out: &'o mut Vec<u8>, stream_over: Option<usize>) -> Self {
        Emit {
            out,
            stream_over,
            copied: 0,
            rest: None,
            tail: Vec::new(),
        }
    }

    /// The buffer built output goes to now.
    fn buf(&mut self) -> &mut Vec<u8> {
        match self.rest {
            None => self.out,
            Some(_) => &mut self.tail,
        }
    }

    /// Whether a range of `len` octets streams rather than being copied.
    fn streams(&self, len: usize) -> bool {
        self.stream_over
            .is_some_and(|limit| len > 0 && self.copied.saturating_add(len) > limit)
    }

    /// A content item: a literal streamed from the file, or its octets copied.
    fn content(
        &mut self,
        f: &mut FetchWriter,
        msg: &ParsedMessage,
        item: ContentItem<'_>,
        data: &SectionData,
        partial: Option<Partial>,
    ) {
        match section_range(data, partial) {
            Some(r) if self.streams(r.len()) => {
                f.literal_start(self.buf(), item, r.len() as u64);
                let rest = self.rest.get_or_insert_with(VecDeque::new);
                if !self.tail.is_empty() {
                    rest.push_back(Segment::Bytes(std::mem::take(&mut self.tail)));
                }
                rest.push_back(Segment::Range(r.start as u64..r.end as u64));
            }
            Some(r) => {
                self.copied += r.len();
                f.content(self.buf(), item, Some(&msg.bytes()[r]));
            }
            None => {
                let bytes = data.bytes(msg).map(|b| apply_partial(b, partial));
                f.content(self.buf(), item, bytes);
            }
        }
    }
}

fn write_items(
    emit: &mut Emit<'_>,
    meta: &MessageMeta<'_>,
    msg: Option<&ParsedMessage>,
    attrs: &[FetchAttr<'_>],
    opts: FetchOptions,
) -> FetchResult {
    let set_seen = will_set_seen(meta.flags, attrs, opts.read_only);
    let mut shown = *meta;
    if set_seen {
        shown.flags = meta.flags.union(SystemFlags::SEEN);
    }
    let mut f = FetchWriter::begin(emit.buf(), meta.seq);
    if opts.uid_command {
        f.uid(emit.buf(), meta.uid);
    }
    let mut flags_written = false;
    for attr in attrs {
        match attr {
            FetchAttr::Uid => {
                if !opts.uid_command {
                    f.uid(emit.buf(), meta.uid);
                }
            }
            FetchAttr::Flags => {
                f.flags(emit.buf(), &shown.imap_flags());
                flags_written = true;
            }
            FetchAttr::Rfc822Size => f.rfc822_size(emit.buf(), meta.size),
            FetchAttr::InternalDate => {
                let date = DateTime::from_unix(meta.internal_date, 0)
                    .or_else(|| DateTime::from_unix(0, 0))
                    .expect("the epoch is a valid date");
                f.internal_date(emit.buf(), &date);
            }
            _ => {
                let Some(msg) = msg else {
                    debug_assert!(false, "{attr:?} needs the message");
                    continue;
                };
                write_message_item(&mut f, emit, msg, attr);
            }
        }
    }
    if set_seen && !flags_written {
        f.flags(emit.buf(), &shown.imap_flags());
    }
    f.finish(emit.buf());
    FetchResult {
        set_seen,
        flags: shown.flags,
    }
}

fn write_message_item(
    f: &mut FetchWriter,
    emit: &mut Emit<'_>,
    msg: &ParsedMessage,
    attr: &FetchAttr<'_>,
) {
    match attr {
        FetchAttr::Envelope => f.envelope(emit.buf(), &msg.envelope()),
        FetchAttr::Body => f.body(emit.buf(), &msg.body_structure()),
        FetchAttr::BodyStructure => f.body_structure(emit.buf(), &msg.body_structure()),
        FetchAttr::Rfc822 => {
            let whole = SectionData::Range(0..msg.bytes().len());
            emit.content(f, msg, ContentItem::Rfc822, &whole, None);
        }
        FetchAttr::Rfc822Header => {
            let data = msg.section(&HEADER);
            emit.content(f, msg, ContentItem::Rfc822Header, &data, None);
        }
        FetchAttr::Rfc822Text => {
            let data = msg.section(&TEXT);
            emit.content(f, msg, ContentItem::Rfc822Text, &data, None);
        }
        FetchAttr::BodySection {
            section, partial, ..
        } => {
            let data = msg.section(section);
            let item = ContentItem::Body {
                section,
                origin: partial.map(|p| p.offset),
            };
            emit.content(f, msg, item, &data, *partial);
        }
        FetchAttr::Flags | FetchAttr::Uid | FetchAttr::Rfc822Size | FetchAttr::InternalDate => {}
    }
}

/// `<offset.length>`: at most `length` octets from `offset`; empty past the end.
pub fn apply_partial(b: &[u8], partial: Option<Partial>) -> &[u8] {
    match partial {
        None => b,
        Some(p) => {
            let start = (p.offset as usize).min(b.len());
            let end = start.saturating_add(p.length as usize).min(b.len());
            &b[start..end]
        }
    }
}

/// The section's octet range within [`ParsedMessage::bytes`] after a partial: what
/// [`write_fetch_streaming`] streams from the file. `None` for built contents
/// ([`SectionData::Owned`]) or a missing section.
pub fn section_range(
    data: &SectionData,
    partial: Option<Partial>,
) -> Option<std::ops::Range<usize>> {
    match data {
        SectionData::Range(r) => {
            let len = r.len();
            let (start, end) = match partial {
                None => (0, len),
                Some(p) => {
                    let s = (p.offset as usize).min(len);
                    (s, s.saturating_add(p.length as usize).min(len))
                }
            };
            Some(r.start + start..r.start + end)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::mime::tests::{fetch_attrs, fixture_path};

    const KEYWORDS: &[&str] = &["$Forwarded"];

    fn meta(flags: SystemFlags) -> MessageMeta<'static> {
        MessageMeta {
            seq: 12,
            uid: 1001,
            flags,
            keywords: KEYWORDS,
            recent: false,
            size: 493,
            // RFC 3501's INTERNALDATE example, 17-Jul-1996 02:44:25 -0700, in UTC.
            internal_date: 837_596_665,
        }
    }

    fn fetch(
        name: &str,
        items: &str,
        meta: &MessageMeta<'_>,
        opts: FetchOptions,
    ) -> (String, FetchResult) {
        let mut out = Vec::new();
        let r = write_fetch(
            &mut out,
            meta,
            fixture_path(name).as_path(),
            &fetch_attrs(items),
            opts,
        )
        .unwrap();
        (String::from_utf8(out).unwrap(), r)
    }

    fn unseen() -> MessageMeta<'static> {
        meta(SystemFlags::empty())
    }

    #[test]
    fn metadata_items_never_open_the_file() {
        let never = || -> Result<File, io::Error> { panic!("the message was opened") };
        let mut m = meta(SystemFlags::SEEN.union(SystemFlags::FLAGGED));
        m.recent = true;
        let mut out = Vec::new();
        let r = write_fetch(
            &mut out,
            &m,
            &never,
            &fetch_attrs("FAST"),
            FetchOptions::default(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 12 FETCH (FLAGS (\\Seen \\Flagged $Forwarded \\Recent) \
             INTERNALDATE \"17-Jul-1996 09:44:25 +0000\" RFC822.SIZE 493)\r\n"
        );
        assert!(!r.set_seen);
        let mut out = Vec::new();
        let opts = FetchOptions {
            uid_command: true,
            read_only: false,
        };
        write_fetch(&mut out, &m, &never, &fetch_attrs("(FLAGS UID)"), opts).unwrap();
        // UID FETCH always carries UID, once.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 12 FETCH (UID 1001 FLAGS (\\Seen \\Flagged $Forwarded \\Recent))\r\n"
        );
    }

    #[test]
    fn all_and_full_macros() {
        let m = meta(SystemFlags::SEEN);
        let (all, _) = fetch("simple.eml", "ALL", &m, FetchOptions::default());
        assert!(all.starts_with(
            "* 12 FETCH (FLAGS (\\Seen $Forwarded) INTERNALDATE \"17-Jul-1996 09:44:25 +0000\" \
             RFC822.SIZE 493 ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
        ));
        assert!(
            all.ends_with("\"<B27397-0100000@cac.washington.edu>\"))\r\n"),
            "{all}"
        );
        let (full, _) = fetch("simple.eml", "FULL", &m, FetchOptions::default());
        assert_eq!(
            full,
            all.replace(
                "))\r\n",
                ") BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 102 2))\r\n"
            )
        );
        let (bs, _) = fetch("simple.eml", "BODYSTRUCTURE", &m, FetchOptions::default());
        assert_eq!(
            bs,
            "* 12 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \
             \"7BIT\" 102 2 NIL NIL NIL NIL))\r\n"
        );
    }

    #[test]
    fn body_sections_and_their_names() {
        let m = meta(SystemFlags::SEEN);
        let o = FetchOptions::default();
        let raw = String::from_utf8(std::fs::read(fixture_path("simple.eml")).unwrap()).unwrap();
        let (header, text) = raw.split_at(raw.find("\r\n\r\n").unwrap() + 4);
        let lit = |s: &str| format!("{{{}}}\r\n{s}", s.len());
        assert_eq!(
            fetch("simple.eml", "BODY[]", &m, o).0,
            format!("* 12 FETCH (BODY[] {})\r\n", lit(&raw))
        );
        assert_eq!(
            fetch("simple.eml", "RFC822", &m, o).0,
            format!("* 12 FETCH (RFC822 {})\r\n", lit(&raw))
        );
        assert_eq!(
            fetch("simple.eml", "RFC822.HEADER", &m, o).0,
            format!("* 12 FETCH (RFC822.HEADER {})\r\n", lit(header))
        );
        assert_eq!(
            fetch("simple.eml", "RFC822.TEXT", &m, o).0,
            format!("* 12 FETCH (RFC822.TEXT {})\r\n", lit(text))
        );
        assert_eq!(
            fetch("simple.eml", "(BODY.PEEK[HEADER] BODY[TEXT])", &m, o).0,
            format!(
                "* 12 FETCH (BODY[HEADER] {} BODY[TEXT] {})\r\n",
                lit(header),
                lit(text)
            )
        );
        assert_eq!(
            fetch(
                "simple.eml",
                "BODY.PEEK[HEADER.FIELDS (SUBJECT message-id)]",
                &m,
                o
            )
            .0,
            format!(
                "* 12 FETCH (BODY[HEADER.FIELDS (SUBJECT message-id)] {})\r\n",
                lit("Subject: IMAP4rev1 WG mtg summary and minutes\r\n\
                     Message-Id: <B27397-0100000@cac.washington.edu>\r\n\r\n")
            )
        );
        // Parts, MIME headers, a missing part.
        assert_eq!(
            fetch("mixed.eml", "(BODY[1] BODY[3.2.MIME] BODY[9])", &m, o).0,
            format!(
                "* 12 FETCH (BODY[1] \"See the attached report.\" BODY[3.2.MIME] {} BODY[9] NIL)\r\n",
                lit("Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n")
            )
        );
    }

    #[test]
    fn partial_fetches_name_their_origin() {
        let m = meta(SystemFlags::SEEN);
        let o = FetchOptions::default();
        assert_eq!(
            fetch("simple.eml", "BODY[]<0.11>", &m, o).0,
            "* 12 FETCH (BODY[]<0> \"Return-Path\")\r\n"
        );
        assert_eq!(
            fetch("simple.eml", "BODY.PEEK[TEXT]<6.3>", &m, o).0,
            "* 12 FETCH (BODY[TEXT]<6> \"Joe\")\r\n"
        );
        // Past the end: what there is, then nothing.
        assert_eq!(
            fetch("mixed.eml", "BODY[1]<20.100>", &m, o).0,
            "* 12 FETCH (BODY[1]<20> \"ort.\")\r\n"
        );
        assert_eq!(
            fetch("mixed.eml", "BODY[1]<2000.10>", &m, o).0,
            "* 12 FETCH (BODY[1]<2000> \"\")\r\n"
        );
        assert_eq!(
            fetch("mixed.eml", "BODY[3.HEADER.FIELDS (Subject)]<0.7>", &m, o).0,
            "* 12 FETCH (BODY[3.HEADER.FIELDS (Subject)]<0> \"Subject\")\r\n"
        );
        assert_eq!(
            section_range(
                &SectionData::Range(10..20),
                Some(Partial {
                    offset: 5,
                    length: 100
                })
            ),
            Some(15..20)
        );
        assert_eq!(section_range(&SectionData::Missing, None), None);
    }

    #[test]
    fn the_seen_rule() {
        let o = FetchOptions::default();
        // A non-PEEK body section on an unseen message sets \Seen, and FLAGS is added.
        let (r, res) = fetch("simple.eml", "BODY[1]<0.5>", &unseen(), o);
        assert_eq!(
            r,
            "* 12 FETCH (BODY[1]<0> \"Hello\" FLAGS (\\Seen $Forwarded))\r\n"
        );
        assert_eq!(
            res,
            FetchResult {
                set_seen: true,
                flags: SystemFlags::SEEN
            }
        );
        // FLAGS asked for shows the new \Seen, wherever it is in the list.
        let (r, res) = fetch("simple.eml", "(FLAGS RFC822.TEXT)", &unseen(), o);
        assert!(
            r.starts_with("* 12 FETCH (FLAGS (\\Seen $Forwarded) RFC822.TEXT {"),
            "{r}"
        );
        assert!(r.ends_with("tomorrow?\r\nThe minutes are attached to the next message.\r\n)\r\n"));
        assert!(res.set_seen);
        assert!(fetch("simple.eml", "RFC822", &unseen(), o).1.set_seen);
        // PEEK, RFC822.HEADER, and the structure items leave it alone.
        for items in [
            "BODY.PEEK[]",
            "RFC822.HEADER",
            "(ENVELOPE BODY BODYSTRUCTURE)",
            "FLAGS",
        ] {
            let (r, res) = fetch("simple.eml", items, &unseen(), o);
            assert!(!res.set_seen, "{items}");
            assert_eq!(res.flags, SystemFlags::empty());
            assert!(!r.contains("\\Seen"), "{r}");
        }
        // Already seen: nothing to store, no FLAGS added.
        let (r, res) = fetch("simple.eml", "BODY[1]<0.5>", &meta(SystemFlags::SEEN), o);
        assert_eq!(r, "* 12 FETCH (BODY[1]<0> \"Hello\")\r\n");
        assert!(!res.set_seen);
        // EXAMINE: never.
        let ro = FetchOptions {
            uid_command: false,
            read_only: true,
        };
        let (r, res) = fetch("simple.eml", "(FLAGS BODY[1]<0.5>)", &unseen(), ro);
        assert_eq!(
            r,
            "* 12 FETCH (FLAGS ($Forwarded) BODY[1]<0> \"Hello\")\r\n"
        );
        assert!(!res.set_seen);
        assert!(!will_set_seen(
            SystemFlags::empty(),
            &fetch_attrs("BODY[]"),
            true
        ));
        assert!(will_set_seen(
            SystemFlags::DRAFT,
            &fetch_attrs("BODY[]"),
            false
        ));
    }

    /// A multipart message of about 1.2 MB: a 300 KB text part and a 900 KB attachment.
    fn big_message(eol: &str) -> Vec<u8> {
        let mut m = String::new();
        for line in [
            "From: a@example.org",
            "To: b@example.org",
            "Subject: big one",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=\"xyz\"",
            "",
            "--xyz",
            "Content-Type: text/plain",
            "",
        ] {
            m.push_str(line);
            m.push_str(eol);
        }
        for i in 0..5000 {
            m.push_str(&format!("text line {i:05} {}{eol}", "t".repeat(44)));
        }
        m.push_str(&format!(
            "--xyz{eol}Content-Type: application/octet-stream{eol}"
        ));
        m.push_str(&format!("Content-Transfer-Encoding: base64{eol}{eol}"));
        for i in 0..12000 {
            m.push_str(&format!("{i:08}{}{eol}", "QUJD".repeat(16)));
        }
        m.push_str(&format!("--xyz--{eol}"));
        m.into_bytes()
    }

    /// The whole response through a stream, `budget` octets at a time; checks that no
    /// step copies more than the budget and the built octets between literals.
    fn streamed(path: &Path, items: &str, meta: &MessageMeta<'_>, budget: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let (_, stream) = write_fetch_streaming(
            &mut out,
            meta,
            path,
            &fetch_attrs(items),
            FetchOptions::default(),
        )
        .unwrap();
        if let Some(mut stream) = stream {
            assert!(
                out.ends_with(b"}\r\n"),
                "the batch ends with a literal header"
            );
            loop {
                let before = out.len();
                let done = stream.copy(&mut out, budget).unwrap();
                assert!(out.len() - before <= budget + 1024, "{items}");
                if done {
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn large_sections_stream_with_the_same_octets() {
        let td = crate::maildir::test_support::TempDir::new();
        for (name, eol) in [("crlf", "\r\n"), ("lf", "\n")] {
            let path = td.path().join(name);
            std::fs::write(&path, big_message(eol)).unwrap();
            let m = unseen();
            for items in [
                "BODY[]",
                "(UID BODY.PEEK[] FLAGS)",
                "RFC822",
                "(RFC822.HEADER RFC822.TEXT)",
                "BODY[TEXT]",
                "BODY.PEEK[1]",
                "BODY[2]<1000.200000>",
                "BODY[]<5.10>",
                "(BODY[1] ENVELOPE BODY[2] BODY.PEEK[HEADER.FIELDS (Subject)] BODY[2.MIME])",
                "(BODY[1]<0.40000> BODY[1]<40000.40000> RFC822.SIZE)",
                "(BODYSTRUCTURE BODY[3] BODY[1.HEADER])",
            ] {
                let mut expected = Vec::new();
                let want = write_fetch(
                    &mut expected,
                    &m,
                    path.as_path(),
                    &fetch_attrs(items),
                    FetchOptions::default(),
                )
                .unwrap();
                let mut out = Vec::new();
                let (got, stream) = write_fetch_streaming(
                    &mut out,
                    &m,
                    path.as_path(),
                    &fetch_attrs(items),
                    FetchOptions::default(),
                )
                .unwrap();
                assert_eq!(got, want, "{items}");
                // Small sections are copied, large ones are not.
                let small = ["BODY[]<5.10>", "(BODYSTRUCTURE BODY[3] BODY[1.HEADER])"];
                assert_eq!(stream.is_none(), small.contains(&items), "{items}");
                if let Some(s) = &stream {
                    let most = STREAM_CHUNK + 4096;
                    assert!(out.len() < most, "{items}: {} octets copied", out.len());
                    assert_eq!(
                        out.len() as u64 + s.remaining(),
                        expected.len() as u64,
                        "{items}"
                    );
                }
                for budget in [1, 1000, STREAM_CHUNK, 256 * 1024] {
                    assert!(
                        streamed(&path, items, &m, budget) == expected,
                        "{name} {items} in steps of {budget}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_stream_reads_through_its_descriptor() {
        let td = crate::maildir::test_support::TempDir::new();
        let path = td.path().join("m");
        let raw = big_message("\r\n");
        std::fs::write(&path, &raw).unwrap();
        let m = meta(SystemFlags::SEEN);
        let attrs = fetch_attrs("BODY[]");
        let o = FetchOptions::default();
        // Unlinked (expunged elsewhere) while streaming: the open file is read whole.
        let mut out = Vec::new();
        let (_, stream) = write_fetch_streaming(&mut out, &m, path.as_path(), &attrs, o).unwrap();
        let mut stream = stream.unwrap();
        stream.copy(&mut out, STREAM_CHUNK).unwrap();
        std::fs::remove_file(&path).unwrap();
        while !stream.copy(&mut out, STREAM_CHUNK).unwrap() {}
        let head = format!("* 12 FETCH (BODY[] {{{}}}\r\n", raw.len());
        assert_eq!(out[..head.len()], *head.as_bytes());
        assert_eq!(out[head.len()..out.len() - 3], raw[..]);
        assert!(out.ends_with(b")\r\n"));
        // Truncated in place (the store never does that): the literal cannot be completed.
        std::fs::write(&path, &raw).unwrap();
        let mut out = Vec::new();
        let (_, stream) = write_fetch_streaming(&mut out, &m, path.as_path(), &attrs, o).unwrap();
        let mut stream = stream.unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100_000)
            .unwrap();
        let start = out.len();
        let err = loop {
            match stream.copy(&mut out, STREAM_CHUNK) {
                Ok(done) => assert!(!done, "a short file cannot complete its literal"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err, StreamError::Short { uid: 1001, missing } if missing == raw.len() as u64 - 100_000),
            "{err}"
        );
        assert_eq!(out[start..], raw[..100_000], "what could be read is sent");
    }

    #[test]
    fn reading_the_header_makes_the_search_summary() {
        use crate::imap::search::{matches_cached, SearchContext};
        let m = meta(SystemFlags::SEEN);
        let o = FetchOptions::default();
        let path = fixture_path("mixed.eml");
        let want = header_summary(&load(path.as_path()).unwrap(), None).unwrap();
        for (items, reads) in [
            ("ENVELOPE", true),
            ("(UID ENVELOPE FLAGS)", true),
            ("BODY.PEEK[HEADER.FIELDS (Subject From Message-ID)]", true),
            ("BODY.PEEK[HEADER.FIELDS.NOT (Subject)]", true),
            ("BODY.PEEK[HEADER]", true),
            ("RFC822.HEADER", true),
            ("BODY.PEEK[]", true),
            ("BODY[]<0.10>", true),
            ("RFC822", true),
            ("BODY.PEEK[TEXT]", false),
            ("RFC822.TEXT", false),
            ("(BODY BODYSTRUCTURE)", false),
            ("BODY.PEEK[1]", false),
            ("BODY.PEEK[3.HEADER]", false),
            ("BODY.PEEK[3.HEADER.FIELDS (Subject)]", false),
            ("BODY.PEEK[2.MIME]", false),
            ("(FLAGS UID RFC822.SIZE)", false),
        ] {
            let attrs = fetch_attrs(items);
            assert_eq!(attrs.iter().any(reads_header), reads, "{items}");
            let mut plain = Vec::new();
            write_fetch_streaming(&mut plain, &m, path.as_path(), &attrs, o).unwrap();
            // The same answer, and SEARCH's own summary when the header was read.
            let mut out = Vec::new();
            let mut fresh = None;
            write_fetch_streaming_cached(&mut out, &m, path.as_path(), &attrs, o, None, &mut fresh)
                .unwrap();
            assert_eq!(out, plain, "{items}");
            assert_eq!(fresh.as_ref(), reads.then_some(&want), "{items}");
            // A message the cache has already: nothing new.
            let mut again = None;
            let cached = Some(&want);
            write_fetch_streaming_cached(
                &mut out,
                &m,
                path.as_path(),
                &attrs,
                o,
                cached,
                &mut again,
            )
            .unwrap();
            assert!(again.is_none(), "{items}");
        }
        // Nothing is made for a message that could not be read.
        let gone =
            || -> Result<File, MailstoreError> { Err(MailstoreError::Expunged { uid: 1001 }) };
        let mut fresh = None;
        let attrs = fetch_attrs("ENVELOPE");
        assert!(write_fetch_streaming_cached(
            &mut Vec::new(),
            &m,
            &gone,
            &attrs,
            o,
            None,
            &mut fresh
        )
        .is_err());
        assert!(fresh.is_none());
        // The summary answers header keys without the file.
        let never = || -> Result<File, io::Error> { panic!("the message was opened") };
        let ctx = SearchContext {
            max_seq: 20,
            max_uid: 2000,
        };
        for (keys, found) in [
            ("SUBJECT \"forwarded NOTE\"", true),
            ("FROM carol SENTON 10-Feb-2026", true),
            ("OR CC x BCC y", false),
            ("FROM eve", false),
        ] {
            let line = format!("a SEARCH {keys}\r\n");
            let (_, cmd) = ironpost_core::imap::parse_command(
                line.as_bytes(),
                &ironpost_core::imap::Limits::default(),
            )
            .unwrap();
            let ironpost_core::imap::CommandBody::Search { criteria, .. } = cmd.body else {
                panic!("{keys}");
            };
            let r = matches_cached(
                &criteria,
                &ctx,
                &m,
                &never,
                &mut None,
                Some(&want),
                &mut None,
            );
            assert_eq!(r.unwrap(), found, "{keys}");
        }
    }

    #[test]
    fn errors_leave_the_output_untouched() {
        let mut out = b"* 3 EXISTS\r\n".to_vec();
        let gone =
            || -> Result<File, MailstoreError> { Err(MailstoreError::Expunged { uid: 1001 }) };
        let err = write_fetch(
            &mut out,
            &unseen(),
            &gone,
            &fetch_attrs("(FLAGS BODY[])"),
            FetchOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            FetchError::Store(MailstoreError::Expunged { uid: 1001 })
        ));
        assert_eq!(out, b"* 3 EXISTS\r\n");
        let missing = Path::new("/nonexistent/ironpost/message");
        let err = write_fetch(
            &mut out,
            &unseen(),
            missing,
            &fetch_attrs("ENVELOPE"),
            FetchOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, FetchError::Io(_)));
        assert_eq!(out, b"* 3 EXISTS\r\n");
    }
}
