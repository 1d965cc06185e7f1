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
