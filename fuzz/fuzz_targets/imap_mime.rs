//! The server's MIME part scanner (`server::imap::mime`): the part tree with exact octet
//! ranges, ENVELOPE, BODYSTRUCTURE and body sections, and the FETCH response written from
//! them (`server::imap::fetch::write_fetch_parsed` through core's `FetchWriter`).
//!
//! Input: `[L][control: L bytes][message]` (see `ironpost_fuzz::split_control`); the control
//! block names body sections to fetch (part path, HEADER / HEADER.FIELDS (.NOT) / TEXT /
//! MIME, partial range).
//!
//! Invariants:
//! - no panic; the message as served has CRLF line endings only and no NUL (and is the
//!   input when the input had neither bare LF nor NUL);
//! - `BODY[]` is the whole message; `HEADER` starts it, `TEXT` ends it, and HEADER ++ TEXT is
//!   the whole message;
//! - the part tree is bounded: depth at most `MAX_NESTING` + 1 (+1 for the message itself),
//!   at most one node per octet (plus one);
//! - for every part `P` of the tree (numbered as RFC 3501 6.4.5 numbers them): `BODY[P]` is a
//!   range of the message inside its parent's body, after the previous sibling; `P.MIME`
//!   ends where `BODY[P]` starts; BODYSTRUCTURE's size is `BODY[P]`'s length and its line
//!   count that of `BODY[P]`; for a message/rfc822 part, `P.HEADER` ++ `P.TEXT` is exactly
//!   `BODY[P]`; other parts have no `P.HEADER` / `P.TEXT`; a multipart with n parts has no
//!   part n+1;
//! - `HEADER.FIELDS (.NOT)` end with the empty line; a partial is the section's slice
//!   (`apply_partial` and `section_range` agree);
//! - the FETCH response (ENVELOPE, BODY, BODYSTRUCTURE, RFC822.SIZE, RFC822.HEADER and the
//!   sections) parses with `imap-codec` as exactly one response, and what it parses is what
//!   was written: the same ENVELOPE and BODYSTRUCTURE trees, section names, origins and
//!   octets. imap-codec refuses bodies nested 7 deep or more (its parser's recursion
//!   limit), so such a response is checked only by `imap_value::check_wellformed`, which
//!   every response passes first (balanced parentheses, literal lengths, no CR / LF / NUL outside literals, none in
//!   quoted strings, no NUL in literals).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::{Data, Response};
use ironpost::imap::fetch::{apply_partial, section_range, write_fetch_parsed};
use ironpost::imap::mime::MAX_NESTING;
use ironpost::imap::{FetchOptions, MessageMeta, ParsedMessage, SectionData};
use ironpost::mailstore::SystemFlags;
use ironpost_core::imap::encode::{BodyStructure, SingleKind};
use ironpost_core::imap::{parse_command, CommandBody, FetchAttr, Limits, Section};
use ironpost_fuzz::imap_value as iv;
use ironpost_fuzz::{split_control, trace};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 10] = [
    "From",
    "To",
    "Subject",
    "Content-Type",
    "Date",
    "Message-ID",
    "Received",
    "X-A",
    "\"Cc\"",
    "content-transfer-encoding",
];

#[derive(Arbitrary, Debug)]
enum TextKind {
    Whole,
    Header,
    Text,
    Mime,
    Fields(Vec<u8>),
    FieldsNot(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Sec {
    /// Part numbers, each 1 to 6.
    part: Vec<u8>,
    text: TextKind,
    partial: Option<(u16, u16)>,
}

impl Sec {
    fn spec(&self) -> String {
        let mut s: Vec<String> = self
            .part
            .iter()
            .take(5)
            .map(|n| (n % 6 + 1).to_string())
            .collect();
        let names = |idx: &[u8]| {
            let mut v: Vec<&str> = idx
                .iter()
                .take(4)
                .map(|i| NAMES[*i as usize % NAMES.len()])
                .collect();
            if v.is_empty() {
                v.push("Subject");
            }
            format!("({})", v.join(" "))
        };
        let text = match &self.text {
            TextKind::Whole => None,
            TextKind::Header => Some("HEADER".to_string()),
            TextKind::Text => Some("TEXT".to_string()),
            // MIME only after a part number.
            TextKind::Mime if !s.is_empty() => Some("MIME".to_string()),
            TextKind::Mime => None,
            TextKind::Fields(i) => Some(format!("HEADER.FIELDS {}", names(i))),
            TextKind::FieldsNot(i) => Some(format!("HEADER.FIELDS.NOT {}", names(i))),
        };
        s.extend(text);
        let mut spec = format!("BODY.PEEK[{}]", s.join("."));
        if let Some((o, l)) = self.partial {
            spec.push_str(&format!("<{}.{}>", o % 300, u32::from(l % 300) + 1));
        }
        spec
    }
}

#[derive(Arbitrary, Debug)]
struct Control {
    sections: Vec<Sec>,
}

/// The attributes of `FETCH 1 <items>`, through core's parser.
fn fetch_attrs(items: &str) -> Vec<FetchAttr<'static>> {
    let line = format!("a FETCH 1 ({items})\r\n");
    let (_, cmd) = parse_command(line.as_bytes(), &Limits::default())
        .unwrap_or_else(|e| panic!("{line:?} does not parse: {e:?}"));
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
    match fetch_attrs(&format!("BODY[{spec}]")).remove(0) {
        FetchAttr::BodySection { section, .. } => section,
        other => panic!("{other:?}"),
    }
}

fn range(m: &ParsedMessage, spec: &str) -> Option<std::ops::Range<usize>> {
    match m.section(&section(spec)) {
        SectionData::Range(r) => {
            assert!(
                r.start <= r.end && r.end <= m.bytes().len(),
                "BODY[{spec}] = {r:?} outside {} octets",
                m.bytes().len()
            );
            Some(r)
        }
        SectionData::Missing => None,
        SectionData::Owned(o) => panic!("BODY[{spec}] built, not a range: {o:?}"),
    }
}

fn count_lines(b: &[u8]) -> u32 {
    let lf = b.iter().filter(|&&c| c == b'\n').count();
    (lf + usize::from(!b.is_empty() && !b.ends_with(b"\n"))) as u32
}

struct Walk<'m> {
    m: &'m ParsedMessage,
    nodes: usize,
    /// Parts whose sections were checked (bounded, to keep an input fast).
    checked: usize,
}

impl Walk<'_> {
    /// The parts numbered under a message node (the top-level message or the message in a
    /// message/rfc822 part) whose own body structure is `bs`, whose body is `body`.
    fn message(&mut self, prefix: &str, bs: &BodyStructure<'_>, depth: usize) {
        match bs {
            BodyStructure::Multipart { parts, .. } => self.children(prefix, parts, depth),
            // A single-part message: part 1 is its body.
            BodyStructure::Single { .. } => {
                self.part(&join(prefix, 1), bs, depth);
            }
        }
    }

    fn children(&mut self, prefix: &str, parts: &[BodyStructure<'_>], depth: usize) {
        assert!(!parts.is_empty(), "a multipart without parts at {prefix:?}");
        let mut prev_end = None;
        for (i, p) in parts.iter().enumerate() {
            let path = join(prefix, i + 1);
            if let Some(r) = self.part(&path, p, depth) {
                if let Some(e) = prev_end {
                    assert!(r.start >= e, "part {path} starts before its sibling ends");
                }
                prev_end = Some(r.end);
            }
        }
        if self.checked < 64 {
            let next = join(prefix, parts.len() + 1);
            assert_eq!(range(self.m, &next), None, "part {next} past the last part");
        }
    }

    fn part(
        &mut self,
        path: &str,
        bs: &BodyStructure<'_>,
        depth: usize,
    ) -> Option<std::ops::Range<usize>> {
        self.nodes += 1;
        assert!(
            depth <= MAX_NESTING + 2,
            "part {path} nested {depth} deep (max {MAX_NESTING})"
        );
        assert!(
            self.nodes <= self.m.bytes().len() + 1,
            "{} parts in {} octets",
            self.nodes,
            self.m.bytes().len()
        );
        if self.checked >= 64 {
            // Still count and bound the rest of the tree.
            match bs {
                BodyStructure::Multipart { parts, .. } => {
                    for p in parts {
                        self.part(path, p, depth + 1);
                    }
                }
                BodyStructure::Single {
                    kind: SingleKind::Message { body, .. },
                    ..
                } => {
                    self.part(path, body, depth + 1);
                }
                _ => {}
            }
            return None;
        }
        self.checked += 1;
        let raw = self.m.bytes();
        let r = range(self.m, path).unwrap_or_else(|| panic!("part {path} is missing"));
        let mime = range(self.m, &format!("{path}.MIME"))
            .unwrap_or_else(|| panic!("part {path}.MIME is missing"));
        assert_eq!(
            mime.end, r.start,
            "{path}.MIME does not end where {path} starts"
        );
        let header = range(self.m, &format!("{path}.HEADER"));
        let text = range(self.m, &format!("{path}.TEXT"));
        match bs {
            BodyStructure::Multipart { parts, .. } => {
                assert_eq!((header, text), (None, None), "{path} is a multipart");
                self.children(path, parts, depth + 1);
            }
            BodyStructure::Single { kind, fields, .. } => {
                let body = &raw[r.clone()];
                assert_eq!(fields.size as usize, body.len(), "size of part {path}");
                match kind {
                    SingleKind::Basic { .. } => {
                        assert_eq!((header, text), (None, None), "{path} is no message");
                    }
                    SingleKind::Text { lines, .. } => {
                        assert_eq!(*lines, count_lines(body), "lines of {path}");
                        assert_eq!((header, text), (None, None), "{path} is no message");
                    }
                    SingleKind::Message {
                        body: inner, lines, ..
                    } => {
                        assert_eq!(*lines, count_lines(body), "lines of {path}");
                        let h = header.unwrap_or_else(|| panic!("{path}.HEADER missing"));
                        let t = text.unwrap_or_else(|| panic!("{path}.TEXT missing"));
                        assert_eq!(
                            (h.start, h.end, t.end),
                            (r.start, t.start, r.end),
                            "{path}.HEADER ++ {path}.TEXT is not {path}"
                        );
                        self.message(path, inner, depth + 1);
                    }
                }
            }
        }
        Some(r)
    }
}

/// Nesting at which imap-codec's `body(8)` refuses a BODYSTRUCTURE.
const IMAP_CODEC_BODY_DEPTH: usize = 7;

/// Levels of parenthesised bodies: 1 for a single part.
fn body_depth(b: &BodyStructure<'_>) -> usize {
    1 + match b {
        BodyStructure::Multipart { parts, .. } => parts.iter().map(body_depth).max().unwrap_or(0),
        BodyStructure::Single {
            kind: SingleKind::Message { body, .. },
            ..
        } => body_depth(body),
        BodyStructure::Single { .. } => 0,
    }
}

fn join(prefix: &str, n: usize) -> String {
    if prefix.is_empty() {
        n.to_string()
    } else {
        format!("{prefix}.{n}")
    }
}

fn has_bare_lf(b: &[u8]) -> bool {
    b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'\n' && (i == 0 || b[i - 1] != b'\r'))
}

fuzz_target!(|input: &[u8]| {
    let (control, message) = split_control(input);
    let Ok(control) = Control::arbitrary_take_rest(Unstructured::new(control)) else {
        return;
    };
    if trace() {
        eprintln!("{control:?}\n{:?}", String::from_utf8_lossy(message));
    }
    let m = ParsedMessage::from_bytes(message.to_vec());
    let raw = m.bytes();
    assert!(!has_bare_lf(raw), "bare LF served");
    assert!(!raw.contains(&0), "NUL served");
    if !has_bare_lf(message) && !message.contains(&0) {
        assert_eq!(raw, message, "a CRLF message changed on load");
    }

    // The whole message, its header and its text.
    assert_eq!(range(&m, ""), Some(0..raw.len()));
    let header = range(&m, "HEADER").expect("HEADER");
    let text = range(&m, "TEXT").expect("TEXT");
    assert_eq!(header, m.header_range());
    assert_eq!(
        (header.start, header.end, text.end),
        (0, text.start, raw.len()),
        "HEADER ++ TEXT is not the message"
    );

    // The part tree.
    let bs = m.body_structure();
    let mut walk = Walk {
        m: &m,
        nodes: 0,
        checked: 0,
    };
    walk.message("", &bs, 0);
    if let BodyStructure::Single { fields, .. } = &bs {
        assert_eq!(
            fields.size as usize,
            text.len(),
            "size of a single-part message"
        );
    }

    // The requested sections, and the FETCH response.
    let specs: Vec<String> = control.sections.iter().take(8).map(Sec::spec).collect();
    let mut items = String::from("ENVELOPE BODY BODYSTRUCTURE RFC822.SIZE RFC822.HEADER");
    for s in &specs {
        items.push(' ');
        items.push_str(s);
    }
    let attrs = fetch_attrs(&items);
    let mut expected = Vec::new();
    for attr in &attrs {
        if let FetchAttr::BodySection {
            section, partial, ..
        } = attr
        {
            let data = m.section(section);
            if let SectionData::Owned(o) = &data {
                assert!(o.ends_with(b"\r\n"), "HEADER.FIELDS without its empty line");
                // Whole fields of the header, a CRLF for a last field without one, the
                // empty line.
                assert!(o.len() <= raw.len() + 4, "HEADER.FIELDS grew");
            }
            let bytes = data.bytes(&m).map(|b| apply_partial(b, *partial).to_vec());
            if let Some(r) = section_range(&data, *partial) {
                assert_eq!(
                    Some(&raw[r]),
                    bytes.as_deref(),
                    "section_range and apply_partial"
                );
            }
            expected.push((iv::section(section), partial.map(|p| p.offset), bytes));
        }
    }
    let meta = MessageMeta {
        seq: 7,
        uid: 42,
        flags: SystemFlags::empty(),
        keywords: &[],
        recent: false,
        size: raw.len() as u64,
        internal_date: 0,
    };
    let mut out = Vec::new();
    write_fetch_parsed(&mut out, &meta, Some(&m), &attrs, FetchOptions::default());
    if trace() {
        eprintln!("{}", String::from_utf8_lossy(&out));
    }
    // imap-codec's BODYSTRUCTURE parser stops at 8 levels of nesting (a recursion limit of
    // its own, not the grammar's); the server describes up to MAX_NESTING. Deeper trees are
    // checked for well-formedness only.
    iv::check_wellformed(&out);
    if body_depth(&bs) >= IMAP_CODEC_BODY_DEPTH {
        return;
    }
    let parsed = iv::parse_response(&out);
    let Response::Data(Data::Fetch { seq, items }) = parsed else {
        panic!("not a FETCH response: {parsed:?}");
    };
    assert_eq!(seq.get(), 7);
    let items = items.into_inner();
    assert_eq!(items.len(), 5 + expected.len(), "items: {items:?}");
    let mut sections = expected.into_iter();
    for (i, item) in items.iter().enumerate() {
        match (i, item) {
            (0, MessageDataItem::Envelope(e)) => {
                assert_eq!(
                    iv::codec_envelope(e),
                    iv::envelope(&m.envelope()),
                    "ENVELOPE"
                )
            }
            (1, MessageDataItem::Body(b)) => assert_eq!(
                iv::codec_body_structure(b),
                iv::body_structure(&bs, false),
                "BODY"
            ),
            (2, MessageDataItem::BodyStructure(b)) => assert_eq!(
                iv::codec_body_structure(b),
                iv::body_structure(&bs, true),
                "BODYSTRUCTURE"
            ),
            (3, MessageDataItem::Rfc822Size(n)) => assert_eq!(*n as usize, raw.len()),
            (4, MessageDataItem::Rfc822Header(h)) => {
                assert_eq!(iv::codec_nstring(h).as_deref(), Some(&raw[header.clone()]))
            }
            (
                _,
                MessageDataItem::BodyExt {
                    section,
                    origin,
                    data,
                },
            ) if i >= 5 => {
                let (sec, org, bytes) = sections.next().unwrap();
                assert_eq!(iv::codec_section(section), sec, "section name");
                assert_eq!(*origin, org, "origin");
                assert_eq!(iv::codec_nstring(data), bytes, "octets of BODY[{sec:?}]");
            }
            (i, other) => panic!("item {i} is {}: {other:?}", iv::item_name(other)),
        }
    }
});
