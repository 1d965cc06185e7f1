//! FETCH (RFC 3501 6.4.5): one `* n FETCH (...)` response per message, from the index
//! metadata and, only when an attribute needs it, the message file.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use ironpost_core::imap::encode::{ContentItem, FetchWriter};
use ironpost_core::imap::{DateTime, FetchAttr, Flag, Partial, Section, SectionText};

use super::mime::{ParsedMessage, SectionData};
use crate::mailstore::{MailstoreError, MessageInfo, SystemFlags};

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
/// expanded: [`ironpost_core::imap::FetchItems::attrs`]).
///
/// FLAGS, UID, RFC822.SIZE and INTERNALDATE come from `meta`; the message is opened and
/// parsed (once) only if another attribute is asked for, and before anything is written, so
/// on error `out` is left as it was.
///
/// Body contents are written into `out` as literals. They are bounded by the server's
/// maximum message size; to stream a huge body in chunks instead, a caller would split here:
/// [`FetchWriter::literal_start`] with the section's length, then send
/// `msg.bytes()[range]` (a [`SectionData::Range`] into the mapped file) in pieces before
/// the next item.
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
    let set_seen = will_set_seen(meta.flags, attrs, opts.read_only);
    let mut shown = *meta;
    if set_seen {
        shown.flags = meta.flags.union(SystemFlags::SEEN);
    }
    let mut f = FetchWriter::begin(out, meta.seq);
    if opts.uid_command {
        f.uid(out, meta.uid);
    }
    let mut flags_written = false;
    for attr in attrs {
        match attr {
            FetchAttr::Uid => {
                if !opts.uid_command {
                    f.uid(out, meta.uid);
                }
            }
            FetchAttr::Flags => {
                f.flags(out, &shown.imap_flags());
                flags_written = true;
            }
            FetchAttr::Rfc822Size => f.rfc822_size(out, meta.size),
            FetchAttr::InternalDate => {
                let date = DateTime::from_unix(meta.internal_date, 0)
                    .or_else(|| DateTime::from_unix(0, 0))
                    .expect("the epoch is a valid date");
                f.internal_date(out, &date);
            }
            _ => {
                let Some(msg) = msg else {
                    debug_assert!(false, "{attr:?} needs the message");
                    continue;
                };
                write_message_item(&mut f, out, msg, attr);
            }
        }
    }
    if set_seen && !flags_written {
        f.flags(out, &shown.imap_flags());
    }
    f.finish(out);
    FetchResult {
        set_seen,
        flags: shown.flags,
    }
}

fn write_message_item(
    f: &mut FetchWriter,
    out: &mut Vec<u8>,
    msg: &ParsedMessage,
    attr: &FetchAttr<'_>,
) {
    match attr {
        FetchAttr::Envelope => f.envelope(out, &msg.envelope()),
        FetchAttr::Body => f.body(out, &msg.body_structure()),
        FetchAttr::BodyStructure => f.body_structure(out, &msg.body_structure()),
        FetchAttr::Rfc822 => {
            f.content(out, ContentItem::Rfc822, Some(msg.bytes()));
        }
        FetchAttr::Rfc822Header => {
            let data = msg.section(&HEADER);
            f.content(out, ContentItem::Rfc822Header, data.bytes(msg));
        }
        FetchAttr::Rfc822Text => {
            let data = msg.section(&TEXT);
            f.content(out, ContentItem::Rfc822Text, data.bytes(msg));
        }
        FetchAttr::BodySection {
            section, partial, ..
        } => {
            let data = msg.section(section);
            let bytes = data.bytes(msg).map(|b| apply_partial(b, *partial));
            f.content(
                out,
                ContentItem::Body {
                    section,
                    origin: partial.map(|p| p.offset),
                },
                bytes,
            );
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

/// The section's octet range within [`ParsedMessage::bytes`] after a partial, for a caller
/// that streams from the file: `None` for built contents ([`SectionData::Owned`]) or a
/// missing section.
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
