//! A stored message as IMAP sees it: its MIME part tree with exact octet ranges, the
//! ENVELOPE and BODYSTRUCTURE built from it, body sections (RFC 3501 6.4.5), and the
//! decoded header and body text that SEARCH matches against.
//!
//! # Who parses what
//!
//! IMAP defines sizes, line counts and `BODY[...]` sections on the raw octets of the
//! message, so the part tree (where each header and body starts and ends) is computed here,
//! by RFC 2046's rules: a boundary delimiter is a line that starts with `--boundary`, and
//! the CRLF before it belongs to the delimiter, not to the part before it. Everything that
//! needs a real MIME parser is done by the `mail-parser` crate: Content-Type and
//! Content-Disposition values (quoting, comments, RFC 2231 parameter continuations and
//! charsets), Date values, RFC 2047 encoded words, quoted-printable and base64 bodies and
//! charset conversion (for SEARCH).
//!
//! ENVELOPE strings are the raw header text, unfolded: RFC 3501 returns encoded words still
//! encoded, so addresses are split here over the raw value rather than taken from
//! mail-parser's decoded address lists.
//!
//! # Memory
//!
//! A message under [`MMAP_THRESHOLD`] is read into a `Vec`; a larger one is mapped with
//! `memmap2`, so a 50 MB attachment is paged in from the file as it is sent rather than
//! copied onto the heap. Files with bare LF line endings (written by other software into the
//! Maildir) are converted to CRLF on load, in a copy, so sizes and sections are always
//! those of the CRLF form IMAP speaks. A NUL octet cannot be sent in an IMAP4rev1 literal
//! (`CHAR8` is %x01-ff, RFC 3501 9), so the same copy replaces each NUL with 0x80 (as
//! Dovecot does): a FETCH of such a message stays within the grammar, and sizes and
//! offsets do not change.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;

use ironpost_core::imap::encode::{
    Address, BodyExtension, BodyFields, BodyStructure, Disposition, Envelope, Params, SingleKind,
};
use ironpost_core::imap::{Date, IString, Section, SectionText};
use mail_parser::parsers::MessageStream;
use mail_parser::HeaderValue;

/// Messages at least this large are memory-mapped rather than read into a `Vec`.
pub const MMAP_THRESHOLD: u64 = 64 * 1024;

/// Deeper nesting of multiparts and message/rfc822 parts than this is not looked into (the
/// innermost part is reported as an opaque body): a hostile message cannot exhaust the stack.
pub const MAX_NESTING: usize = 32;

/// Placeholders for an address without a local part or a domain (`NIL` would read as a group
/// marker, RFC 3501 7.4.2).
const MISSING_MAILBOX: &str = "MISSING_MAILBOX";
const MISSING_DOMAIN: &str = "MISSING_DOMAIN";

enum Storage {
    Heap(Vec<u8>),
    Mapped(memmap2::Mmap),
}

/// A message loaded from its file, with its part tree computed on first use.
pub struct ParsedMessage {
    raw: Storage,
    tree: OnceCell<Part>,
}

impl std::fmt::Debug for ParsedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedMessage")
            .field("len", &self.bytes().len())
            .field("mapped", &matches!(self.raw, Storage::Mapped(_)))
            .finish()
    }
}

/// One node of the part tree. The top-level message and the message inside a
/// message/rfc822 part are nodes too: their `header` is the RFC 5322 header.
#[derive(Debug)]
struct Part {
    /// The header, with the empty line that ends it (when there is one).
    header: Range<usize>,
    body: Range<usize>,
    ctype: ContentType,
    content: Content,
}

#[derive(Debug)]
enum Content {
    /// A body without parts of its own (text, attachment, or anything not looked into).
    Leaf,
    /// At least one part.
    Multipart(Vec<Part>),
    /// message/rfc822: the encapsulated message.
    Message(Box<Part>),
}

/// The Content-Type of a part, lower case as mail-parser gives it.
#[derive(Debug)]
struct ContentType {
    media: String,
    subtype: String,
    params: Vec<(String, String)>,
}

impl ContentType {
    fn is(&self, media: &str, subtype: &str) -> bool {
        self.media == media && self.subtype == subtype
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// message/rfc822, the one type RFC 3501's BODYSTRUCTURE describes with an envelope.
    /// message/global (RFC 6532) is an opaque body: its envelope form is IMAP4rev2's (RFC 9051
    /// `media-message`), which an IMAP4rev1 client would read as a basic body and fail on.
    fn is_message(&self) -> bool {
        self.media == "message" && self.subtype == "rfc822"
    }
}

/// What a body section resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionData {
    /// These octets of [`ParsedMessage::bytes`]: send them from there.
    Range(Range<usize>),
    /// Octets built for the answer (`HEADER.FIELDS` and `HEADER.FIELDS.NOT`).
    Owned(Vec<u8>),
    /// The section does not exist in this message (answered `NIL`).
    Missing,
}

impl SectionData {
    /// The octets, given the message they refer to (`None` for a missing section).
    pub fn bytes<'a>(&'a self, msg: &'a ParsedMessage) -> Option<&'a [u8]> {
        match self {
            SectionData::Range(r) => Some(&msg.bytes()[r.clone()]),
            SectionData::Owned(v) => Some(v),
            SectionData::Missing => None,
        }
    }
}

impl ParsedMessage {
    /// Loads a message from an open file: read if small, mapped if large (see the module
    /// documentation), converted to CRLF line endings if it has bare LFs.
    pub fn open(mut file: File) -> io::Result<ParsedMessage> {
        let len = file.metadata()?.len();
        let raw = if len >= MMAP_THRESHOLD {
            // SAFETY: Maildir message files are written once, in tmp/, before they are
            // renamed into place; afterwards they are only renamed (flag changes) or
            // unlinked (expunge), never written or truncated, so the mapped octets cannot
            // change under us. An unlinked file stays mapped until the map is dropped.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            Storage::Mapped(map)
        } else {
            let mut buf = Vec::with_capacity(len as usize);
            file.read_to_end(&mut buf)?;
            Storage::Heap(buf)
        };
        let raw = match &raw {
            Storage::Heap(b) if needs_rewrite(b) => Storage::Heap(rewrite(b)),
            Storage::Mapped(m) if needs_rewrite(m) => Storage::Heap(rewrite(m)),
            _ => raw,
        };
        Ok(ParsedMessage {
            raw,
            tree: OnceCell::new(),
        })
    }

    /// A message already in memory (tests, APPEND), converted to CRLF (and NUL to 0x80) if
    /// needed.
    pub fn from_bytes(bytes: Vec<u8>) -> ParsedMessage {
        let bytes = if needs_rewrite(&bytes) {
            rewrite(&bytes)
        } else {
            bytes
        };
        ParsedMessage {
            raw: Storage::Heap(bytes),
            tree: OnceCell::new(),
        }
    }

    /// The whole message (CRLF line endings): `BODY[]`.
    pub fn bytes(&self) -> &[u8] {
        match &self.raw {
            Storage::Heap(b) => b,
            Storage::Mapped(m) => m,
        }
    }

    fn tree(&self) -> &Part {
        self.tree.get_or_init(|| {
            let raw = self.bytes();
            parse_part(raw, 0..raw.len(), false, 0)
        })
    }

    /// The octets of the top-level header, with its final empty line: `BODY[HEADER]`.
    pub fn header_range(&self) -> Range<usize> {
        let raw = self.bytes();
        split_header(raw, 0..raw.len()).0
    }

    /// `ENVELOPE` (RFC 3501 7.4.2) of the message.
    pub fn envelope(&self) -> Envelope<'_> {
        envelope(self.bytes(), self.header_range())
    }

    /// `BODYSTRUCTURE` (with extension data) or `BODY` (write it without): the encoder
    /// chooses when writing.
    pub fn body_structure(&self) -> BodyStructure<'_> {
        body_structure(self.bytes(), self.tree())
    }

    /// Resolves a body section (RFC 3501 6.4.5), without any partial range.
    pub fn section(&self, section: &Section<'_>) -> SectionData {
        let raw = self.bytes();
        let Some(part) = &section.part else {
            // The top-level message.
            let (header, body) = split_header(raw, 0..raw.len());
            return match &section.text {
                None => SectionData::Range(0..raw.len()),
                Some(SectionText::Header) => SectionData::Range(header),
                Some(SectionText::Text) => SectionData::Range(body),
                Some(SectionText::HeaderFields(names)) => {
                    SectionData::Owned(header_fields(raw, header, names, true))
                }
                Some(SectionText::HeaderFieldsNot(names)) => {
                    SectionData::Owned(header_fields(raw, header, names, false))
                }
                // The grammar allows MIME only after a part number.
                Some(SectionText::Mime) => SectionData::Missing,
            };
        };
        let mut numbers = part.iter();
        let Some(first) = numbers.next() else {
            return SectionData::Missing;
        };
        let Some(mut node) = message_child(self.tree(), first) else {
            return SectionData::Missing;
        };
        for n in numbers {
            match part_child(node, n) {
                Some(child) => node = child,
                None => return SectionData::Missing,
            }
        }
        match &section.text {
            None => SectionData::Range(node.body.clone()),
            Some(SectionText::Mime) => SectionData::Range(node.header.clone()),
            // HEADER, HEADER.FIELDS and TEXT after a part number are those of the message
            // encapsulated in a message/rfc822 part; other parts have none.
            Some(text) => match &node.content {
                Content::Message(inner) => match text {
                    SectionText::Header => SectionData::Range(inner.header.clone()),
                    SectionText::Text => SectionData::Range(inner.body.clone()),
                    SectionText::HeaderFields(names) => {
                        SectionData::Owned(header_fields(raw, inner.header.clone(), names, true))
                    }
                    SectionText::HeaderFieldsNot(names) => {
                        SectionData::Owned(header_fields(raw, inner.header.clone(), names, false))
                    }
                    SectionText::Mime => unreachable!("handled above"),
                },
                _ => SectionData::Missing,
            },
        }
    }

    // -----------------------------------------------------------------------------------
    // For SEARCH

    /// The raw values (after the colon, line terminators included) of every field of the
    /// top-level header called `name` (case-insensitive).
    fn header_values<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let raw = self.bytes();
        fields(raw, self.header_range())
            .filter(move |f| raw[f.name.clone()].eq_ignore_ascii_case(name))
            .map(move |f| &raw[f.value.start..f.end])
    }

    /// The decoded (RFC 2047, UTF-8) values of every top-level header field called `name`.
    pub fn header_text(&self, name: &[u8]) -> Vec<String> {
        self.header_values(name).map(decode_unstructured).collect()
    }

    /// Whether the top-level header has a field called `name`.
    pub fn has_header(&self, name: &[u8]) -> bool {
        self.header_values(name).next().is_some()
    }

    /// The whole top-level header, each field decoded, one per line (SEARCH TEXT).
    pub fn all_header_text(&self) -> String {
        decoded_header(self.bytes(), self.header_range())
    }

    /// The date of the Date: field as written, ignoring time and zone (SENTBEFORE & co.);
    /// `None` if there is none or it cannot be parsed.
    pub fn sent_date(&self) -> Option<Date> {
        let value = self.header_values(b"Date").next()?;
        let value = with_newline(value);
        match MessageStream::new(&value).parse_date() {
            HeaderValue::DateTime(dt) => Date::new(dt.year, dt.month, dt.day),
            _ => None,
        }
    }

    /// The text of the body for SEARCH BODY: every text/* part transfer-decoded and converted
    /// to UTF-8 (HTML reduced to its text), and the decoded header of every encapsulated
    /// message (which is body text of the message around it).
    pub fn body_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_texts(self.bytes(), self.tree(), &mut out);
        out
    }
}

/// Whether the octets need [`rewrite`]: a bare LF or a NUL. Every message open asks this
/// of the whole file (a mapped attachment of tens of MB included), so it goes from line end
/// to line end with `memchr` rather than octet by octet.
fn needs_rewrite(b: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', b).any(|lf| lf == 0 || b[lf - 1] != b'\r')
        || memchr::memchr(0, b).is_some()
}

/// The message as IMAP serves it: bare LFs become CRLF, NULs become 0x80.
fn rewrite(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 32);
    let mut prev = 0u8;
    for &c in b {
        if c == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(if c == 0 { 0x80 } else { c });
        prev = c;
    }
    out
}

// ---------------------------------------------------------------------------------------
// The part tree

fn find_lf(raw: &[u8], from: usize, end: usize) -> Option<usize> {
    raw[from..end]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
}

/// Splits a part into its header (with the empty line that ends it) and its body. A part
/// that starts with an empty line has an empty header (just that line); one without an
/// empty line is all header.
fn split_header(raw: &[u8], range: Range<usize>) -> (Range<usize>, Range<usize>) {
    let (start, end) = (range.start, range.end);
    let mut pos = start;
    while pos < end {
        if raw[pos] == b'\n' {
            return (start..pos + 1, pos + 1..end);
        }
        if raw[pos] == b'\r' && pos + 1 < end && raw[pos + 1] == b'\n' {
            return (start..pos + 2, pos + 2..end);
        }
        match find_lf(raw, pos, end) {
            Some(lf) => pos = lf + 1,
            None => break,
        }
    }
    (start..end, end..end)
}

/// One header field: its name, its value (after the colon, up to the final line
/// terminator), and where the field ends (after that terminator).
#[derive(Debug, Clone)]
struct Field {
    start: usize,
    name: Range<usize>,
    value: Range<usize>,
    end: usize,
}

/// The fields of a header block, folded continuation lines included in their field.
/// Lines that are not fields (no colon) are skipped.
fn fields(raw: &[u8], header: Range<usize>) -> impl Iterator<Item = Field> + '_ {
    let end = header.end;
    let mut pos = header.start;
    std::iter::from_fn(move || loop {
        if pos >= end || raw[pos] == b'\n' || raw[pos..end].starts_with(b"\r\n") {
            return None;
        }
        let start = pos;
        // The field runs to the first line terminator not followed by SP or HT.
        let mut line_end;
        loop {
            line_end = find_lf(raw, pos, end).map_or(end, |lf| lf + 1);
            pos = line_end;
            if pos >= end || !matches!(raw[pos], b' ' | b'\t') {
                break;
            }
        }
        let field = &raw[start..line_end];
        let mut value_end = line_end;
        if value_end > start && raw[value_end - 1] == b'\n' {
            value_end -= 1;
            if value_end > start && raw[value_end - 1] == b'\r' {
                value_end -= 1;
            }
        }
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            continue;
        };
        if matches!(raw[start], b' ' | b'\t') {
            // A continuation line with no field before it.
            continue;
        }
        let mut name_end = start + colon;
        while name_end > start && matches!(raw[name_end - 1], b' ' | b'\t') {
            name_end -= 1;
        }
        return Some(Field {
            start,
            name: start..name_end,
            value: (start + colon + 1).min(value_end)..value_end,
            end: line_end,
        });
    })
}

/// The value of a field unfolded (CR and LF removed) and trimmed of surrounding white
/// space, borrowed when it was on one line.
fn unfold(value: &[u8]) -> Cow<'_, [u8]> {
    let trimmed = value.trim_ascii();
    if trimmed.iter().any(|&b| b == b'\r' || b == b'\n') {
        Cow::Owned(
            trimmed
                .iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect(),
        )
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// mail-parser's field parsers read up to the line terminator that ends the field.
fn with_newline(value: &[u8]) -> Cow<'_, [u8]> {
    if value.ends_with(b"\n") {
        Cow::Borrowed(value)
    } else {
        let mut v = value.to_vec();
        v.extend_from_slice(b"\r\n");
        Cow::Owned(v)
    }
}

/// A field value with RFC 2047 encoded words decoded, as UTF-8.
fn decode_unstructured(value: &[u8]) -> String {
    let value = with_newline(value);
    match MessageStream::new(&value).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        _ => String::new(),
    }
}

fn first_field(raw: &[u8], header: Range<usize>, name: &[u8]) -> Option<Field> {
    fields(raw, header).find(|f| raw[f.name.clone()].eq_ignore_ascii_case(name))
}

/// A Content-Type or Content-Disposition value as mail-parser parses it (names in lower
/// case; parameter values with RFC 2231 continuations joined and decoded).
struct RawContentType {
    kind: String,
    subtype: Option<String>,
    params: Vec<(String, String)>,
}

fn parse_content_type(value: &[u8]) -> Option<RawContentType> {
    let value = with_newline(value);
    match MessageStream::new(&value).parse_content_type() {
        HeaderValue::ContentType(ct) => Some(RawContentType {
            kind: ct.c_type.into_owned(),
            subtype: ct.c_subtype.map(Cow::into_owned),
            params: ct
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.name.into_owned(), a.value.into_owned()))
                .collect(),
        }),
        _ => None,
    }
}

fn content_type(raw: &[u8], header: Range<usize>, in_digest: bool) -> ContentType {
    let parsed = first_field(raw, header, b"Content-Type")
        .and_then(|f| parse_content_type(&raw[f.value.start..f.end]));
    match parsed {
        Some(RawContentType {
            kind,
            subtype: Some(subtype),
            params,
        }) if !kind.is_empty() && !subtype.is_empty() => ContentType {
            media: kind,
            subtype,
            params,
        },
        // RFC 2046 5.1.5: in a digest the default is message/rfc822.
        _ if in_digest => ContentType {
            media: "message".into(),
            subtype: "rfc822".into(),
            params: Vec::new(),
        },
        // RFC 2045 5.2: missing or invalid means text/plain; charset=us-ascii.
        _ => ContentType {
            media: "text".into(),
            subtype: "plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
        },
    }
}

/// The Content-Transfer-Encoding, lower case; empty when absent.
fn transfer_encoding(raw: &[u8], header: Range<usize>) -> String {
    first_field(raw, header, b"Content-Transfer-Encoding")
        .map(|f| String::from_utf8_lossy(&unfold(&raw[f.value.clone()])).to_ascii_lowercase())
        .unwrap_or_default()
}

fn parse_part(raw: &[u8], range: Range<usize>, in_digest: bool, depth: usize) -> Part {
    let (header, body) = split_header(raw, range);
    let ctype = content_type(raw, header.clone(), in_digest);
    let content = if depth >= MAX_NESTING {
        Content::Leaf
    } else if ctype.media == "multipart" {
        let boundary = ctype.param("boundary").unwrap_or("").as_bytes();
        let digest = ctype.subtype == "digest";
        let mut parts: Vec<Part> = split_multipart(raw, body.clone(), boundary)
            .into_iter()
            .map(|r| parse_part(raw, r, digest, depth + 1))
            .collect();
        if parts.is_empty() {
            // No delimiter: RFC 3501 needs one part at least; give an empty one at the end.
            let end = body.end;
            parts.push(Part {
                header: end..end,
                body: end..end,
                ctype: content_type(raw, end..end, false),
                content: Content::Leaf,
            });
        }
        Content::Multipart(parts)
    } else if ctype.is_message()
        && matches!(
            transfer_encoding(raw, header.clone()).as_str(),
            "" | "7bit" | "8bit" | "binary"
        )
    {
        // RFC 2046 5.2.1: message/rfc822 is never encoded; an encoded one stays opaque.
        Content::Message(Box::new(parse_part(raw, body.clone(), false, depth + 1)))
    } else {
        Content::Leaf
    };
    Part {
        header,
        body,
        ctype,
        content,
    }
}

/// The ranges of the parts of a multipart body: between delimiter lines `--boundary`, the
/// CRLF before each delimiter excluded, up to the close delimiter `--boundary--` (or the
/// end, if it is missing). The preamble and epilogue are not parts.
fn split_multipart(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    if boundary.is_empty() {
        return parts;
    }
    let end = body.end;
    let mut pos = body.start;
    let mut current: Option<usize> = None;
    while pos < end {
        let line_end = find_lf(raw, pos, end).map_or(end, |lf| lf + 1);
        let line = &raw[pos..line_end];
        if let Some(rest) = line
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
        {
            let (close, rest) = match rest.strip_prefix(b"--") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            // Only transport padding may follow the boundary.
            if rest
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                let mut delim_start = pos;
                if delim_start > body.start && raw[delim_start - 1] == b'\n' {
                    delim_start -= 1;
                    if delim_start > body.start && raw[delim_start - 1] == b'\r' {
                        delim_start -= 1;
                    }
                }
                if let Some(s) = current {
                    parts.push(s..delim_start.max(s));
                }
                if close {
                    return parts;
                }
                current = Some(line_end);
            }
        }
        pos = line_end;
    }
    if let Some(s) = current {
        parts.push(s..end);
    }
    parts
}

/// Part `n` of a message node (the top-level message, or one inside a message/rfc822
/// part): a part of its multipart body, or for `1` its only body.
fn message_child(msg: &Part, n: u32) -> Option<&Part> {
    match &msg.content {
        Content::Multipart(parts) => parts.get((n as usize).checked_sub(1)?),
        _ => (n == 1).then_some(msg),
    }
}

/// Part `n` inside a body part: of a multipart, its `n`th part; of a message/rfc822 part,
/// part `n` of the encapsulated message.
fn part_child(part: &Part, n: u32) -> Option<&Part> {
    match &part.content {
        Content::Multipart(parts) => parts.get((n as usize).checked_sub(1)?),
        Content::Message(inner) => message_child(inner, n),
        Content::Leaf => None,
    }
}

/// `HEADER.FIELDS` (`keep`) or `HEADER.FIELDS.NOT`: the matching fields as they are in
/// the message (folded lines and all), then the empty line.
fn header_fields(raw: &[u8], header: Range<usize>, names: &[IString<'_>], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields(raw, header) {
        let name = &raw[f.name.clone()];
        let listed = names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        if listed == keep {
            out.extend_from_slice(&raw[f.start..f.end]);
            if !out.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

// ---------------------------------------------------------------------------------------
// ENVELOPE

fn istr(b: Cow<'_, [u8]>) -> IString<'_> {
    IString(b)
}

fn owned(s: impl Into<String>) -> IString<'static> {
    IString::from(s.into())
}

fn envelope(raw: &[u8], header: Range<usize>) -> Envelope<'_> {
    let mut env = Envelope::default();
    let mut seen = [false; 10];
    for f in fields(raw, header) {
        let name = &raw[f.name.clone()];
        let value = &raw[f.value.clone()];
        const NAMES: [&[u8]; 10] = [
            b"Date",
            b"Subject",
            b"From",
            b"Sender",
            b"Reply-To",
            b"To",
            b"Cc",
            b"Bcc",
            b"In-Reply-To",
            b"Message-ID",
        ];
        let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) else {
            continue;
        };
        // The first of repeated fields counts.
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        match i {
            0 => env.date = Some(istr(unfold(value))),
            1 => env.subject = Some(istr(unfold(value))),
            2 => env.from = addresses(value),
            3 => env.sender = addresses(value),
            4 => env.reply_to = addresses(value),
            5 => env.to = addresses(value),
            6 => env.cc = addresses(value),
            7 => env.bcc = addresses(value),
            8 => env.in_reply_to = Some(istr(unfold(value))),
            _ => env.message_id = Some(istr(unfold(value))),
        }
    }
    // RFC 3501 7.4.2: the server fills in Sender and Reply-To from From.
    if env.sender.is_empty() {
        env.sender = env.from.clone();
    }
    if env.reply_to.is_empty() {
        env.reply_to = env.from.clone();
    }
    env
}

#[derive(Debug, Clone, PartialEq)]
enum TokKind<'a> {
    /// An atom (dots included), a quoted string (`text` without quotes and escapes) or a
    /// domain literal.
    Word { raw: &'a [u8], text: Cow<'a, [u8]> },
    /// One of `< > : ; , @`.
    Special(u8),
    /// A comment's text, without its parentheses.
    Comment(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq)]
struct Tok<'a> {
    kind: TokKind<'a>,
    /// White space (or a comment) came before it.
    space: bool,
}

fn tokenize(v: &[u8]) -> Vec<Tok<'_>> {
    let mut toks = Vec::new();
    let mut i = 0;
    let mut space = false;
    while i < v.len() {
        let c = v[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                space = true;
                i += 1;
                continue;
            }
            b'(' => {
                let start = i + 1;
                let mut depth = 0usize;
                while i < v.len() {
                    match v[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                let end = i.min(v.len());
                toks.push(Tok {
                    kind: TokKind::Comment(&v[start..end]),
                    space,
                });
                i = end + 1;
                space = true;
                continue;
            }
            b'"' => {
                let start = i;
                let mut text = Vec::new();
                i += 1;
                while i < v.len() && v[i] != b'"' {
                    if v[i] == b'\\' && i + 1 < v.len() {
                        i += 1;
                    }
                    if v[i] != b'\r' && v[i] != b'\n' {
                        text.push(v[i]);
                    }
                    i += 1;
                }
                i = (i + 1).min(v.len());
                toks.push(Tok {
                    kind: TokKind::Word {
                        raw: &v[start..i],
                        text: Cow::Owned(text),
                    },
                    space,
                });
            }
            b'[' => {
                let start = i;
                while i < v.len() && v[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(v.len());
                toks.push(Tok {
                    kind: TokKind::Word {
                        raw: &v[start..i],
                        text: Cow::Borrowed(&v[start..i]),
                    },
                    space,
                });
            }
            b'<' | b'>' | b':' | b';' | b',' | b'@' => {
                toks.push(Tok {
                    kind: TokKind::Special(c),
                    space,
                });
                i += 1;
            }
            _ => {
                let start = i;
                while i < v.len()
                    && !matches!(
                        v[i],
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'('
                            | b')'
                            | b'"'
                            | b'['
                            | b'<'
                            | b'>'
                            | b':'
                            | b';'
                            | b','
                            | b'@'
                    )
                {
                    i += 1;
                }
                if i == start {
                    // A stray `)` or `]`.
                    i += 1;
                    space = true;
                    continue;
                }
                toks.push(Tok {
                    kind: TokKind::Word {
                        raw: &v[start..i],
                        text: Cow::Borrowed(&v[start..i]),
                    },
                    space,
                });
            }
        }
        space = false;
    }
    toks
}

fn is_special(t: &Tok<'_>, c: u8) -> bool {
    t.kind == TokKind::Special(c)
}

/// A display name from phrase tokens: words (quoted strings unquoted) separated by one
/// space where the header had white space; comments dropped. Encoded words stay as they are.
fn phrase(toks: &[Tok<'_>]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for t in toks {
        if let TokKind::Word { text, .. } = &t.kind {
            if !out.is_empty() && t.space {
                out.push(b' ');
            }
            out.extend_from_slice(text);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The raw text of tokens with white space and comments dropped (a local part or domain;
/// quoted strings keep their quotes).
fn concat_raw(toks: &[Tok<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in toks {
        match &t.kind {
            TokKind::Word { raw, .. } => out.extend_from_slice(raw),
            TokKind::Special(c) => out.push(*c),
            TokKind::Comment(_) => {}
        }
    }
    out
}

/// `local@domain` from the tokens of an addr-spec (the last `@` splits).
fn addr_spec(toks: &[Tok<'_>]) -> (Vec<u8>, Vec<u8>) {
    match toks.iter().rposition(|t| is_special(t, b'@')) {
        Some(at) => (concat_raw(&toks[..at]), concat_raw(&toks[at + 1..])),
        None => (concat_raw(toks), Vec::new()),
    }
}

fn make_address(
    name: Option<Vec<u8>>,
    adl: Option<Vec<u8>>,
    local: Vec<u8>,
    domain: Vec<u8>,
) -> Address<'static> {
    let or = |v: Vec<u8>, missing: &str| {
        if v.is_empty() {
            owned(missing)
        } else {
            IString::from(v)
        }
    };
    Address {
        name: name.map(IString::from),
        adl: adl.filter(|a| !a.is_empty()).map(IString::from),
        mailbox: Some(or(local, MISSING_MAILBOX)),
        host: Some(or(domain, MISSING_DOMAIN)),
    }
}

/// One mailbox from its tokens (no `,` or group `;` among them); `None` if empty.
fn mailbox(toks: &[Tok<'_>]) -> Option<Address<'static>> {
    if toks.iter().all(|t| matches!(t.kind, TokKind::Comment(_))) {
        return None;
    }
    if let Some(lt) = toks.iter().position(|t| is_special(t, b'<')) {
        let gt = toks[lt..]
            .iter()
            .position(|t| is_special(t, b'>'))
            .map_or(toks.len(), |i| lt + i);
        let inner = &toks[lt + 1..gt];
        // An obsolete source route: `<@a,@b:user@host>`.
        let (adl, spec) = match inner.iter().position(|t| is_special(t, b':')) {
            Some(colon) => (Some(concat_raw(&inner[..colon])), &inner[colon + 1..]),
            None => (None, inner),
        };
        let (local, domain) = addr_spec(spec);
        return Some(make_address(phrase(&toks[..lt]), adl, local, domain));
    }
    // A bare addr-spec; a comment after it (`user@host (Name)`) is taken as the name.
    let name = toks.iter().rev().find_map(|t| match &t.kind {
        TokKind::Comment(c) if !c.trim_ascii().is_empty() => Some(c.trim_ascii().to_vec()),
        _ => None,
    });
    let (local, domain) = addr_spec(toks);
    if local.is_empty() && domain.is_empty() {
        return None;
    }
    Some(make_address(name, None, local, domain))
}

/// Parses an address list (RFC 5322 3.4, with groups and the obsolete forms) into ENVELOPE
/// addresses; display names stay as in the header (encoded words encoded).
fn addresses(value: &[u8]) -> Vec<Address<'static>> {
    let toks = tokenize(value);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        // A group is a phrase followed by `:` before any `<`, `@` or `,`.
        let stop = toks[i..]
            .iter()
            .position(|t| matches!(t.kind, TokKind::Special(_)))
            .map(|p| i + p);
        if let Some(colon) = stop.filter(|&p| is_special(&toks[p], b':')) {
            let name = phrase(&toks[i..colon]).unwrap_or_default();
            out.push(Address::group_start(IString::from(name)));
            i = colon + 1;
            loop {
                let end = item_end(&toks, i, true);
                if let Some(a) = mailbox(&toks[i..end]) {
                    out.push(a);
                }
                i = end;
                if i >= toks.len() {
                    break;
                }
                i += 1;
                if is_special(&toks[i - 1], b';') {
                    break;
                }
            }
            out.push(Address::group_end());
            continue;
        }
        let end = item_end(&toks, i, false);
        if let Some(a) = mailbox(&toks[i..end]) {
            out.push(a);
        }
        i = end + 1;
    }
    out
}

/// Where the list item starting at `i` ends: the next `,` (or `;` in a group) outside
/// angle brackets.
fn item_end(toks: &[Tok<'_>], i: usize, in_group: bool) -> usize {
    let mut angle = false;
    for (j, t) in toks.iter().enumerate().skip(i) {
        match t.kind {
            TokKind::Special(b'<') => angle = true,
            TokKind::Special(b'>') => angle = false,
            TokKind::Special(b',') if !angle => return j,
            TokKind::Special(b';') if in_group => return j,
            _ => {}
        }
    }
    toks.len()
}

// ---------------------------------------------------------------------------------------
// BODYSTRUCTURE

fn upper(s: &str) -> IString<'static> {
    owned(s.to_ascii_uppercase())
}

/// Parameters as BODYSTRUCTURE sends them. Values are decoded (RFC 2231 `%00`, RFC 2047
/// encoded words) and may hold NUL, which no IMAP string can carry: it is dropped.
fn params(p: &[(String, String)]) -> Params<'static> {
    p.iter()
        .map(|(n, v)| (upper(n), owned(v.replace('\0', ""))))
        .collect()
}

fn field_value<'a>(raw: &'a [u8], header: &Range<usize>, name: &[u8]) -> Option<IString<'a>> {
    first_field(raw, header.clone(), name).map(|f| istr(unfold(&raw[f.value])))
}

fn extension<'a>(raw: &'a [u8], part: &Part) -> BodyExtension<'a> {
    let h = &part.header;
    let disposition = first_field(raw, h.clone(), b"Content-Disposition")
        .and_then(|f| parse_content_type(&raw[f.value.start..f.end]))
        .filter(|d| !d.kind.is_empty())
        .map(|d| Disposition {
            kind: upper(&d.kind),
            params: params(&d.params),
        });
    let language = first_field(raw, h.clone(), b"Content-Language")
        .map(|f| {
            unfold(&raw[f.value])
                .split(|&b| b == b',')
                .map(|l| l.trim_ascii())
                .filter(|l| !l.is_empty())
                .map(|l| IString::from(l.to_vec()))
                .collect()
        })
        .unwrap_or_default();
    let location = first_field(raw, h.clone(), b"Content-Location").map(|f| {
        // RFC 2557 4.4.1: a folded URL is unfolded by removing the white space.
        IString::from(
            raw[f.value]
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect::<Vec<u8>>(),
        )
    });
    BodyExtension {
        md5: field_value(raw, h, b"Content-MD5"),
        disposition,
        language,
        location,
    }
}

/// Lines of a body: its line terminators, plus a last line without one (a part's last line
/// before a boundary delimiter, whose CRLF belongs to the delimiter).
fn count_lines(b: &[u8]) -> u32 {
    let lf = b.iter().filter(|&&c| c == b'\n').count();
    let partial = usize::from(!b.is_empty() && !b.ends_with(b"\n"));
    u32::try_from(lf + partial).unwrap_or(u32::MAX)
}

fn body_structure<'a>(raw: &'a [u8], part: &Part) -> BodyStructure<'a> {
    let ct = &part.ctype;
    if let Content::Multipart(children) = &part.content {
        return BodyStructure::Multipart {
            parts: children.iter().map(|c| body_structure(raw, c)).collect(),
            subtype: upper(&ct.subtype),
            params: params(&ct.params),
            ext: extension(raw, part),
        };
    }
    let body = &raw[part.body.clone()];
    let kind = match &part.content {
        Content::Message(inner) => SingleKind::Message {
            subtype: upper(&ct.subtype),
            envelope: Box::new(envelope(raw, inner.header.clone())),
            body: Box::new(body_structure(raw, inner)),
            lines: count_lines(body),
        },
        _ if ct.media == "text" => SingleKind::Text {
            subtype: upper(&ct.subtype),
            lines: count_lines(body),
        },
        // A message/rfc822 part not looked into (encoded, or nested too deep) cannot be
        // described as MESSAGE/RFC822, whose form carries an envelope.
        _ if ct.is_message() => SingleKind::Basic {
            media_type: owned("APPLICATION"),
            subtype: owned("OCTET-STREAM"),
        },
        _ => SingleKind::Basic {
            media_type: upper(&ct.media),
            subtype: upper(&ct.subtype),
        },
    };
    let encoding = first_field(raw, part.header.clone(), b"Content-Transfer-Encoding")
        .map(|f| unfold(&raw[f.value]).to_ascii_uppercase())
        .filter(|e| !e.is_empty())
        .map_or_else(|| owned("7BIT"), IString::from);
    BodyStructure::Single {
        kind,
        fields: BodyFields {
            params: params(&ct.params),
            id: field_value(raw, &part.header, b"Content-ID"),
            description: field_value(raw, &part.header, b"Content-Description"),
            encoding,
            size: u32::try_from(body.len()).unwrap_or(u32::MAX),
        },
        ext: extension(raw, part),
    }
}

// ---------------------------------------------------------------------------------------
// Body text for SEARCH

/// A header block, each field decoded, one per line.
fn decoded_header(raw: &[u8], header: Range<usize>) -> String {
    let mut out = String::new();
    for f in fields(raw, header) {
        out.push_str(&String::from_utf8_lossy(&raw[f.name.clone()]));
        out.push_str(": ");
        out.push_str(&decode_unstructured(&raw[f.value.start..f.end]));
        out.push('\n');
    }
    out
}

fn collect_texts(raw: &[u8], part: &Part, out: &mut Vec<String>) {
    match &part.content {
        Content::Multipart(children) => {
            for c in children {
                collect_texts(raw, c, out);
            }
        }
        Content::Message(inner) => {
            out.push(decoded_header(raw, inner.header.clone()));
            collect_texts(raw, inner, out);
        }
        Content::Leaf if part.ctype.media == "text" => {
            let body = &raw[part.body.clone()];
            let decoded: Cow<'_, [u8]> = match transfer_encoding(raw, part.header.clone()).as_str()
            {
                "base64" => mail_parser::decoders::base64::base64_decode(body)
                    .map_or(Cow::Borrowed(body), Cow::Owned),
                "quoted-printable" => {
                    mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
                        .map_or(Cow::Borrowed(body), Cow::Owned)
                }
                _ => Cow::Borrowed(body),
            };
            let text =
                match part.ctype.param("charset").and_then(|c| {
                    mail_parser::decoders::charsets::map::charset_decoder(c.as_bytes())
                }) {
                    Some(decode) => decode(&decoded),
                    None => String::from_utf8_lossy(&decoded).into_owned(),
                };
            if part.ctype.is("text", "html") {
                out.push(mail_parser::decoders::html::html_to_text(&text));
            } else {
                out.push(text);
            }
        }
        Content::Leaf => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ironpost_core::imap::{parse_command, CommandBody, FetchAttr, Limits};

    pub(crate) fn fixture_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/imap")
            .join(name)
    }

    pub(crate) fn fixture(name: &str) -> ParsedMessage {
        ParsedMessage::open(File::open(fixture_path(name)).unwrap()).unwrap()
    }

    /// The attributes of `FETCH 1 <items>`, as the core parser gives them.
    pub(crate) fn fetch_attrs(items: &str) -> Vec<FetchAttr<'static>> {
        let line = format!("a FETCH 1 {items}\r\n");
        let (_, cmd) = parse_command(line.as_bytes(), &Limits::default()).unwrap();
        match cmd.body {
            CommandBody::Fetch { items, .. } => items
                .attrs()
                .iter()
                .cloned()
                .map(FetchAttr::into_owned)
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    fn section(spec: &str) -> Section<'static> {
        match fetch_attrs(&format!("BODY.PEEK[{spec}]")).remove(0) {
            FetchAttr::BodySection { section, .. } => section,
            other => panic!("{other:?}"),
        }
    }

    fn wire(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn env(m: &ParsedMessage) -> String {
        wire(|o| m.envelope().write_to(o))
    }

    fn bs(m: &ParsedMessage, extended: bool) -> String {
        wire(|o| m.body_structure().write_to(o, extended))
    }

    fn sect(m: &ParsedMessage, spec: &str) -> Option<String> {
        let d = m.section(&section(spec));
        d.bytes(m).map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    fn addrs(v: &str) -> String {
        wire(|o| {
            Envelope {
                to: addresses(v.as_bytes()),
                ..Envelope::default()
            }
            .write_to(o)
        })
    }

    /// RFC 3501 section 8's sample message gives the sample ENVELOPE.
    #[test]
    fn envelope_of_the_rfc3501_example() {
        let m = fixture("simple.eml");
        assert_eq!(
            env(&m),
            concat!(
                "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" ",
                "\"IMAP4rev1 WG mtg summary and minutes\" ",
                "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ",
                "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ",
                "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ",
                "((NIL NIL \"imap\" \"cac.washington.edu\")) ",
                "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")",
                "(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL ",
                "\"<B27397-0100000@cac.washington.edu>\")"
            )
        );
    }

    #[test]
    fn envelope_keeps_encoded_words_raw() {
        let m = fixture("encoded.eml");
        let joerg = "(\"=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?=\" NIL \"joerg\" \"example.de\")";
        assert_eq!(
            env(&m),
            format!(
                "(\"Thu, 1 Jan 2026 00:30:00 +0200\" \"=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\" \
                 ({joerg}) ({joerg}) ({joerg}) \
                 ((\"Smith, John\" NIL \"john\" \"example.com\")\
                 (\"=?UTF-8?Q?Ren=C3=A9e?=\" NIL \"renee\" \"example.fr\")) \
                 NIL NIL NIL \"<enc-1@example.de>\")"
            )
        );
    }

    #[test]
    fn envelope_groups_sender_and_reply_to() {
        let m = fixture("group.eml");
        assert_eq!(
            env(&m),
            concat!(
                "(\"Fri, 13 Mar 2026 09:00:00 +0000\" \"Group addresses\" ",
                "((\"Frank\" NIL \"frank\" \"example.org\")) ",
                "((NIL NIL \"list-bounces\" \"example.org\")) ",
                "((NIL NIL \"list\" \"example.org\")) ",
                "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) ",
                "((NIL NIL \"Team\" NIL)(NIL NIL \"ann\" \"example.org\")",
                "(\"B. Ob\" NIL \"bob\" \"example.org\")(NIL NIL NIL NIL)",
                "(NIL NIL \"outsider\" \"example.net\")) ",
                "((NIL NIL \"hidden\" \"example.org\")) ",
                "NIL \"<group-1@example.org>\")"
            )
        );
    }

    #[test]
    fn envelope_without_date_or_subject() {
        let m = fixture("nodate.eml");
        let nobody = "((NIL NIL \"nobody\" \"example.org\"))";
        assert_eq!(
            env(&m),
            format!(
                "(NIL NIL {nobody} {nobody} {nobody} ((NIL NIL \"someone\" \"example.org\")) \
                 NIL NIL NIL NIL)"
            )
        );
    }

    #[test]
    fn address_forms() {
        let one = |name: &str, mailbox: &str, host: &str| {
            format!("(NIL NIL NIL NIL NIL (({name} NIL {mailbox} {host})) NIL NIL NIL NIL)")
        };
        // A comment after a bare address is its name; one inside a phrase is dropped.
        assert_eq!(
            addrs("joe@example.com (Joe Bloggs)"),
            one("\"Joe Bloggs\"", "\"joe\"", "\"example.com\"")
        );
        assert_eq!(
            addrs("Joe (the boss)  Q. Bloggs <joe@example.com>"),
            one("\"Joe Q. Bloggs\"", "\"joe\"", "\"example.com\"")
        );
        // Quoted pairs are unescaped in names; a quoted local part keeps its quotes.
        assert_eq!(
            addrs(r#""Joe \"JB\" Bloggs" <"joe b"@example.com>"#),
            one(
                r#""Joe \"JB\" Bloggs""#,
                r#""\"joe b\"""#,
                "\"example.com\""
            )
        );
        // Source route; missing domain; a domain literal; folding white space.
        assert_eq!(
            addrs("<@relay1,@relay2:joe@example.com>"),
            "(NIL NIL NIL NIL NIL ((NIL \"@relay1,@relay2\" \"joe\" \"example.com\")) NIL NIL NIL NIL)"
        );
        assert_eq!(
            addrs("postmaster"),
            one("NIL", "\"postmaster\"", "\"MISSING_DOMAIN\"")
        );
        assert_eq!(
            addrs("Null <>"),
            one("\"Null\"", "\"MISSING_MAILBOX\"", "\"MISSING_DOMAIN\"")
        );
        assert_eq!(
            addrs("joe@[192.0.2.1]"),
            one("NIL", "\"joe\"", "\"[192.0.2.1]\"")
        );
        assert_eq!(
            addrs("Joe\r\n Bloggs\r\n <joe@example.com>"),
            one("\"Joe Bloggs\"", "\"joe\"", "\"example.com\"")
        );
        // Empty lists and empty elements.
        assert_eq!(addrs(" "), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        assert_eq!(addrs(", a@b ,, "), one("NIL", "\"a\"", "\"b\""));
        // An empty group and a name with 8-bit octets (sent as a literal).
        assert_eq!(
            addrs("Empty:;, J\u{f6}rg <j@x>"),
            "(NIL NIL NIL NIL NIL ((NIL NIL \"Empty\" NIL)(NIL NIL NIL NIL)({5}\r\nJ\u{f6}rg NIL \"j\" \"x\")) NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn body_structure_of_a_single_part() {
        let m = fixture("simple.eml");
        assert_eq!(
            bs(&m, false),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 102 2)"
        );
        assert_eq!(
            bs(&m, true),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 102 2 NIL NIL NIL NIL)"
        );
        // No Content-Type: text/plain; charset=us-ascii (RFC 2045), and a last line
        // without CRLF still counts.
        let m = fixture("nodate.eml");
        assert_eq!(
            bs(&m, false),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 61 2)"
        );
        let m = fixture("encoded.eml");
        assert_eq!(
            bs(&m, false),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"BASE64\" 34 1)"
        );
    }

    #[test]
    fn body_structure_of_an_alternative() {
        let m = fixture("alternative.eml");
        assert_eq!(
            bs(&m, false),
            concat!(
                "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 18 1)",
                "(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 34 1) \"ALTERNATIVE\")"
            )
        );
        assert_eq!(
            bs(&m, true),
            concat!(
                "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 18 1 ",
                "NIL NIL NIL NIL)",
                "(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 34 1 NIL NIL NIL NIL) ",
                "\"ALTERNATIVE\" (\"BOUNDARY\" \"alt-b\") NIL NIL NIL)"
            )
        );
        // The sizes are those of the octets between the delimiters.
        assert_eq!(sect(&m, "1").unwrap().len(), 18);
        assert_eq!(sect(&m, "2").unwrap(), "<p>Caf&eacute; at <b>noon</b>?</p>");
    }

    #[test]
    fn body_structure_of_a_mixed_message_with_a_forwarded_one() {
        let m = fixture("mixed.eml");
        let inner_env = concat!(
            "(\"Sun, 01 Feb 2026 12:00:00 +0000\" \"=?ISO-8859-1?Q?Caf=E9?= notes\" ",
            "((\"Eve\" NIL \"eve\" \"example.org\")) ((\"Eve\" NIL \"eve\" \"example.org\")) ",
            "((\"Eve\" NIL \"eve\" \"example.org\")) ((\"Carol\" NIL \"carol\" \"example.com\")) ",
            "NIL NIL NIL \"<inner@example.org>\")"
        );
        assert_eq!(
            bs(&m, false),
            format!(
                "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 24 1)\
                 (\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") \"<report@example.com>\" \
                 \"Quarterly report\" \"BASE64\" 24)\
                 (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 388 {inner_env} \
                 ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 11 1)\
                 (\"IMAGE\" \"PNG\" NIL NIL NIL \"BASE64\" 12) \"MIXED\") 18) \"MIXED\")"
            )
        );
        assert_eq!(
            bs(&m, true),
            format!(
                "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 24 1 NIL NIL NIL NIL)\
                 (\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") \"<report@example.com>\" \
                 \"Quarterly report\" \"BASE64\" 24 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" \
                 (\"ATTACHMENT\" (\"FILENAME\" \"report.pdf\")) (\"en\" \"fr\") \
                 \"http://example.com/report.pdf\")\
                 (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 388 {inner_env} \
                 ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)\
                 (\"IMAGE\" \"PNG\" NIL NIL NIL \"BASE64\" 12 NIL NIL NIL NIL) \"MIXED\" \
                 (\"BOUNDARY\" \"inner\") NIL NIL NIL) 18 NIL NIL NIL NIL) \
                 \"MIXED\" (\"BOUNDARY\" \"outer\") NIL \"en\" NIL)"
            )
        );
        // 388 octets, 18 lines: the forwarded message up to the CRLF before `--outer--`.
        let forwarded = sect(&m, "3").unwrap();
        assert_eq!(forwarded.len(), 388);
        assert_eq!(forwarded.matches('\n').count(), 18);
        assert!(forwarded.starts_with("From: Eve") && forwarded.ends_with("--inner--\r\n"));
    }

    #[test]
    fn sections_of_a_multipart_message() {
        let m = fixture("mixed.eml");
        let raw = std::fs::read(fixture_path("mixed.eml")).unwrap();
        let raw = String::from_utf8(raw).unwrap();
        assert_eq!(sect(&m, "").unwrap(), raw);
        let (header, text) = raw.split_at(raw.find("\r\n\r\n").unwrap() + 4);
        assert_eq!(sect(&m, "HEADER").unwrap(), header);
        assert_eq!(sect(&m, "TEXT").unwrap(), text);
        assert_eq!(sect(&m, "1").unwrap(), "See the attached report.");
        assert_eq!(
            sect(&m, "1.MIME").unwrap(),
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        );
        assert_eq!(sect(&m, "2").unwrap(), "JVBERi0xLjQKJcfsj6IKCg==");
        assert!(sect(&m, "2.MIME")
            .unwrap()
            .ends_with("Content-Location: http://example.com/\r\n report.pdf\r\n\r\n"));
        // The message/rfc822 part: its MIME header, and the encapsulated message's header,
        // text and parts.
        assert_eq!(
            sect(&m, "3.MIME").unwrap(),
            "Content-Type: message/rfc822\r\n\r\n"
        );
        let inner_header = concat!(
            "From: Eve <eve@example.org>\r\nTo: Carol <carol@example.com>\r\n",
            "Subject: =?ISO-8859-1?Q?Caf=E9?= notes\r\n",
            "Date: Sun, 01 Feb 2026 12:00:00 +0000\r\nMessage-ID: <inner@example.org>\r\n",
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n"
        );
        assert_eq!(sect(&m, "3.HEADER").unwrap(), inner_header);
        let inner_text = sect(&m, "3.TEXT").unwrap();
        assert_eq!(
            format!("{inner_header}{inner_text}"),
            sect(&m, "3").unwrap()
        );
        assert!(inner_text.starts_with("--inner\r\n") && inner_text.ends_with("--inner--\r\n"));
        assert_eq!(sect(&m, "3.1").unwrap(), "Inner text.");
        assert_eq!(
            sect(&m, "3.1.MIME").unwrap(),
            "Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(sect(&m, "3.2").unwrap(), "iVBORw0KGgo=");
        assert_eq!(
            sect(&m, "3.2.MIME").unwrap(),
            "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        );
        assert_eq!(
            sect(&m, "3.HEADER.FIELDS (Subject)").unwrap(),
            "Subject: =?ISO-8859-1?Q?Caf=E9?= notes\r\n\r\n"
        );
        assert_eq!(
            sect(&m, "3.HEADER.FIELDS.NOT (From To Date Message-ID)").unwrap(),
            concat!(
                "Subject: =?ISO-8859-1?Q?Caf=E9?= notes\r\nMIME-Version: 1.0\r\n",
                "Content-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n"
            )
        );
        // Sections that do not exist: no part 4 or 3.3, no HEADER/TEXT of a part that is not
        // message/rfc822, no parts inside a leaf.
        for missing in [
            "4",
            "3.3",
            "3.1.1",
            "1.HEADER",
            "1.TEXT",
            "2.HEADER.FIELDS (To)",
            "1.1",
        ] {
            assert_eq!(sect(&m, missing), None, "{missing}");
        }
        // Header field names match case-insensitively; the fields come in message order.
        assert_eq!(
            sect(&m, "HEADER.FIELDS (subject TO)").unwrap(),
            "To: Dave <dave@example.com>\r\nSubject: Report and a forwarded note\r\n\r\n"
        );
    }

    #[test]
    fn sections_of_a_single_part_message() {
        let m = fixture("simple.eml");
        let raw = String::from_utf8(std::fs::read(fixture_path("simple.eml")).unwrap()).unwrap();
        let (header, text) = raw.split_at(raw.find("\r\n\r\n").unwrap() + 4);
        // RFC 3501 6.4.5: part 1 of a non-multipart message is its body.
        assert_eq!(sect(&m, "1").unwrap(), text);
        assert_eq!(sect(&m, "TEXT").unwrap(), text);
        assert_eq!(sect(&m, "1.MIME").unwrap(), header);
        assert_eq!(sect(&m, "HEADER").unwrap(), header);
        assert_eq!(sect(&m, "2"), None);
        assert_eq!(sect(&m, "1.1"), None);
        assert_eq!(sect(&m, "1.HEADER"), None);
    }

    #[test]
    fn header_fields_keep_folding_and_end_with_the_empty_line() {
        let m = fixture("nodate.eml");
        assert_eq!(
            sect(&m, "HEADER.FIELDS (x-long)").unwrap(),
            "X-Long: first part\r\n  second part\r\n\tthird part\r\n\r\n"
        );
        assert_eq!(
            sect(&m, "HEADER.FIELDS.NOT (X-LONG from)").unwrap(),
            "X-Other: value\r\nTo: someone@example.org\r\n\r\n"
        );
        assert_eq!(sect(&m, "HEADER.FIELDS (Subject)").unwrap(), "\r\n");
        assert!(matches!(
            m.section(&section("HEADER.FIELDS (To)")),
            SectionData::Owned(_)
        ));
        assert!(matches!(m.section(&section("1")), SectionData::Range(_)));
    }

    #[test]
    fn message_rfc822_with_a_single_part_body() {
        let m = ParsedMessage::from_bytes(
            concat!(
                "Subject: outer\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
                "--b\r\n\r\nfirst\r\n",
                "--b\r\nContent-Type: message/rfc822\r\n\r\n",
                "Subject: inner\r\n\r\ninner body\r\n",
                "--b--\r\n"
            )
            .as_bytes()
            .to_vec(),
        );
        assert_eq!(sect(&m, "1").unwrap(), "first");
        assert_eq!(sect(&m, "2").unwrap(), "Subject: inner\r\n\r\ninner body");
        assert_eq!(sect(&m, "2.HEADER").unwrap(), "Subject: inner\r\n\r\n");
        assert_eq!(sect(&m, "2.TEXT").unwrap(), "inner body");
        // Part 1 of the encapsulated (non-multipart) message is its body.
        assert_eq!(sect(&m, "2.1").unwrap(), "inner body");
        assert_eq!(sect(&m, "2.2"), None);
        assert_eq!(
            bs(&m, false),
            concat!(
                "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 5 1)",
                "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 28 ",
                "(NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) ",
                "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 1) 3) \"MIXED\")"
            )
        );
    }

    #[test]
    fn multipart_edge_cases() {
        let parse = |s: &str| ParsedMessage::from_bytes(s.as_bytes().to_vec());
        // A line that only starts with the boundary is not a delimiter; a missing close
        // delimiter ends the last part at the end of the message; transport padding is allowed.
        let m = parse(concat!(
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
            "preamble\r\n--b  \r\n\r\none\r\n--bb\r\n--b\r\n\r\ntwo\r\n"
        ));
        assert_eq!(sect(&m, "1").unwrap(), "one\r\n--bb");
        assert_eq!(sect(&m, "2").unwrap(), "two\r\n");
        // No boundary parameter: one empty part, so BODYSTRUCTURE stays well-formed.
        let m = parse("Content-Type: multipart/mixed\r\n\r\nbody\r\n");
        assert_eq!(
            bs(&m, false),
            "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0) \"MIXED\")"
        );
        // In a digest, parts default to message/rfc822; an empty part is allowed.
        let m = parse(concat!(
            "Content-Type: multipart/digest; boundary=d\r\n\r\n",
            "--d\r\n\r\nSubject: a\r\n\r\nA\r\n--d\r\n--d--\r\n"
        ));
        let got = bs(&m, false);
        assert!(
            got.starts_with("((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 15 (NIL \"a\" "),
            "{got}"
        );
        assert_eq!(sect(&m, "1.1").unwrap(), "A");
        assert_eq!(sect(&m, "2").unwrap(), "");
        // An encoded message/rfc822 is not looked into.
        let m = parse(concat!(
            "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            "U3ViamVjdDogeA0KDQp5DQo=\r\n"
        ));
        assert_eq!(
            bs(&m, false),
            "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\" 26)"
        );
        // A message that is all header: empty TEXT.
        let m = parse("Subject: x\r\n");
        assert_eq!(sect(&m, "HEADER").unwrap(), "Subject: x\r\n");
        assert_eq!(sect(&m, "TEXT").unwrap(), "");
        // Nesting deeper than MAX_NESTING is not followed.
        let mut deep = String::new();
        for i in 0..MAX_NESTING + 5 {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
        }
        deep.push_str("\r\nleaf\r\n");
        let m = parse(&deep);
        assert!(bs(&m, true).starts_with("(((((("));
    }

    #[test]
    fn parameters_with_rfc2231_continuations_and_charsets() {
        let m = ParsedMessage::from_bytes(
            concat!(
                "Content-Type: application/octet-stream; name*0=\"long\"; name*1=\"name.bin\";\r\n",
                " x-Extra=\"a b\" (comment)\r\n",
                "Content-Disposition: inline;\r\n filename*=UTF-8''r%C3%A9sum%C3%A9.pdf; size=3\r\n",
                "Content-Language: de-CH\r\n",
                "\r\nabc"
            )
            .as_bytes()
            .to_vec(),
        );
        assert_eq!(
            bs(&m, true),
            concat!(
                "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"longname.bin\" \"X-EXTRA\" \"a b\") ",
                "NIL NIL \"7BIT\" 3 NIL (\"INLINE\" (\"FILENAME\" {12}\r\nr\u{e9}sum\u{e9}.pdf \"SIZE\" \"3\")) ",
                "\"de-CH\" NIL)"
            )
        );
    }

    #[test]
    fn bare_lf_files_are_served_with_crlf() {
        let m = ParsedMessage::from_bytes(b"Subject: x\n\nline 1\nline 2\n".to_vec());
        assert_eq!(m.bytes(), b"Subject: x\r\n\r\nline 1\r\nline 2\r\n");
        assert_eq!(
            bs(&m, false),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 16 2)"
        );
        // CRLF files are kept as they are.
        let m = ParsedMessage::from_bytes(b"Subject: x\r\n\r\nbody\r\n".to_vec());
        assert_eq!(m.bytes(), b"Subject: x\r\n\r\nbody\r\n");
    }

    #[test]
    fn needs_rewrite_finds_every_bare_lf_and_nul() {
        let naive = |b: &[u8]| {
            b.iter()
                .enumerate()
                .any(|(i, &c)| c == 0 || (c == b'\n' && (i == 0 || b[i - 1] != b'\r')))
        };
        // Every string of up to seven octets over the four that matter.
        let alphabet = [b'a', b'\r', b'\n', 0];
        for len in 0..=7u32 {
            for mut n in 0..4usize.pow(len) {
                let mut b = Vec::new();
                for _ in 0..len {
                    b.push(alphabet[n % 4]);
                    n /= 4;
                }
                assert_eq!(needs_rewrite(&b), naive(&b), "{b:?}");
            }
        }
    }

    /// Found by the imap_mime fuzz target: an RFC 2231 parameter value decodes `%00` to NUL,
    /// which BODYSTRUCTURE sent in a literal (IMAP4rev1 literals exclude NUL).
    #[test]
    fn nul_in_decoded_parameters_is_dropped() {
        let m = ParsedMessage::from_bytes(
            b"Content-Type: text/plain; name*=utf-8''a%00b\r\nContent-Disposition: attachment; filename*=utf-8''c%00d\r\n\r\nx\r\n"
                .to_vec(),
        );
        let s = bs(&m, true);
        assert!(!s.contains('\0'), "{s:?}");
        assert!(s.contains("(\"NAME\" \"ab\")"), "{s:?}");
        assert!(s.contains("(\"FILENAME\" \"cd\")"), "{s:?}");
    }

    /// Seen while writing the imap_mime fuzz target (imap-codec, an IMAP4rev1 parser, refused
    /// the response): message/global was written `("MESSAGE" "GLOBAL" ... envelope body
    /// lines)`, IMAP4rev2's form; for IMAP4rev1 it is a basic body.
    #[test]
    fn message_global_is_a_basic_body() {
        let m = ParsedMessage::from_bytes(
            b"Subject: g\r\nContent-Type: message/global\r\n\r\nSubject: inner\r\n\r\nbody\r\n"
                .to_vec(),
        );
        assert_eq!(
            bs(&m, false),
            "(\"MESSAGE\" \"GLOBAL\" NIL NIL NIL \"7BIT\" 24)"
        );
        assert_eq!(sect(&m, "1.HEADER"), None);
        assert_eq!(
            sect(&m, "1").as_deref(),
            Some("Subject: inner\r\n\r\nbody\r\n")
        );
    }

    /// Found by the imap_mime fuzz target: a message with NUL octets was sent in literals
    /// (`RFC822.HEADER {3}` and NULs), which IMAP4rev1 forbids (`CHAR8` is %x01-ff).
    #[test]
    fn nul_octets_are_served_as_0x80() {
        let m = ParsedMessage::from_bytes(b"Subject: a\0b\n\nx\0\r\n".to_vec());
        assert_eq!(m.bytes(), b"Subject: a\x80b\r\n\r\nx\x80\r\n");
        assert_eq!(m.bytes().len(), 20);
        let text = m.section(&section("TEXT"));
        assert_eq!(text.bytes(&m), Some(&b"x\x80\r\n"[..]));
        let mut out = Vec::new();
        m.envelope().write_to(&mut out);
        assert!(!out.contains(&0), "{out:?}");
    }

    #[test]
    fn large_messages_are_mapped() {
        let dir = std::env::temp_dir().join(format!("ironpost-mime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.eml");
        let mut data = b"Subject: big\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        let header_len = data.len();
        while data.len() < 2 * MMAP_THRESHOLD as usize {
            data.extend_from_slice(
                b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abc\r\n",
            );
        }
        std::fs::write(&path, &data).unwrap();
        let m = ParsedMessage::open(File::open(&path).unwrap()).unwrap();
        assert!(matches!(m.raw, Storage::Mapped(_)));
        assert_eq!(m.bytes(), &data[..]);
        assert_eq!(
            m.section(&section("TEXT")),
            SectionData::Range(header_len..data.len())
        );
        let lines = (data.len() - header_len) / 63;
        assert_eq!(
            bs(&m, false),
            format!(
                "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" {} {lines})",
                data.len() - header_len
            )
        );
        // A small one is read.
        let m = fixture("simple.eml");
        assert!(matches!(m.raw, Storage::Heap(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn decoded_text_for_search() {
        let m = fixture("encoded.eml");
        assert_eq!(m.header_text(b"subject"), ["Grüße aus München"]);
        assert_eq!(m.body_texts(), ["Die Straße ist schön.\n"]);
        assert!(m.header_text(b"From")[0].contains("Jörg Müller"));
        assert_eq!(m.sent_date(), Date::new(2026, 1, 1));
        let m = fixture("alternative.eml");
        let texts = m.body_texts();
        assert_eq!(texts[0], "Café at noon?");
        assert!(texts[1].contains("Café at noon?"), "{texts:?}");
        let m = fixture("mixed.eml");
        // Text parts of the forwarded message count; the attachments do not.
        let texts = m.body_texts();
        assert_eq!(texts.len(), 3);
        assert_eq!(texts[0], "See the attached report.");
        assert!(texts[1].starts_with(
            "From: Eve <eve@example.org>\nTo: Carol <carol@example.com>\nSubject: Café notes\n"
        ));
        assert_eq!(texts[2], "Inner text.");
        assert!(m
            .all_header_text()
            .contains("Subject: Report and a forwarded note\n"));
        assert_eq!(fixture("nodate.eml").sent_date(), None);
    }
}
