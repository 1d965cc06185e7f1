//! IMAP responses written by core's encoder (`core::imap::encode`), parsed back by the
//! independent `imap-codec` crate: a session never emits a reply that violates the grammar.
//!
//! Input: arbitrary bytes, decoded with `arbitrary` into up to 8 responses: tagged and
//! untagged status responses (OK / NO / BAD / BYE / PREAUTH) with every response code the
//! encoder has, continuation requests (text and base64), CAPABILITY, LIST / LSUB (mailbox
//! names in UTF-8, sent in modified UTF-7, with delimiters and attributes), STATUS, SEARCH,
//! FLAGS, EXISTS, RECENT, EXPUNGE, ENABLED, ID, NAMESPACE (mailbox names in modified UTF-7, or
//! in UTF-8 for a session with UTF8=ACCEPT enabled), and FETCH with UID, FLAGS,
//! INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY, BODYSTRUCTURE and content items (BODY[section]
//! with origin, RFC822, RFC822.HEADER, RFC822.TEXT) as quoted strings, literals or NIL, and
//! as literals the caller streams (`FetchWriter::literal_start`).
//!
//! Values stay within what the encoder's callers promise (see the README): tags are
//! ASTRING-CHARs but `+`; status text is non-empty 7-bit TEXT-CHARs not starting with `[`;
//! atoms (capabilities, keywords, flag and attribute names, response code names) are atoms;
//! numbers the grammar wants non-zero are non-zero; delimiters are 7-bit; content carries no
//! NUL (the server replaces NUL on load); MESSAGE bodies are RFC822 (imap-codec has no
//! MESSAGE/GLOBAL).
//!
//! Invariants: each response parses with imap-codec as exactly one response (a greeting for
//! PREAUTH), and
//! - FETCH: the parsed items are those written: sequence number, UID, flags, the date and
//!   zone, size, the ENVELOPE and BODY / BODYSTRUCTURE trees, section names, origins and
//!   octets of content items;
//! - LIST / LSUB / STATUS: the mailbox name is the name given (after modified UTF-7
//!   decoding, or as it is under UTF8=ACCEPT);
//! - everything else: imap-codec's own encoding of what it parsed is, ignoring ASCII case,
//!   the line ironpost wrote (so no part of it was lost or read differently);
//! - a response code imap-codec does not know it reads up to `]` whatever is there, so the
//!   target checks RFC 3501's `atom [SP 1*<TEXT-CHAR except "]">]` itself.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::flag::{Flag as CFlag, FlagFetch};
use imap_codec::imap_types::mailbox::Mailbox as CMailbox;
use imap_codec::imap_types::response::{Data as CData, Response};
use imap_codec::{GreetingCodec, ResponseCodec};
use ironpost_core::imap::encode::{
    self as enc, Address, BodyExtension, BodyFields, BodyStructure, Code, ContentItem, Data,
    Disposition, Envelope, FetchWriter, ListItem, MailboxAttr, NamespaceDesc, SingleKind, Status,
    StatusValue,
};
use ironpost_core::imap::{
    parse_command, utf7, CommandBody, DateTime, FetchAttr, Flag, IString, Limits, Section,
};
use ironpost_fuzz::imap_value as iv;
use ironpost_fuzz::trace;
use libfuzzer_sys::fuzz_target;

// ---------------------------------------------------------------------------------------
// Generators of values within the encoder's contract

const ATOM: &[u8] = b"abcXYZ0129$-._!#&'+,/:;<=>?@^`|~[";

/// An atom from arbitrary bytes (never empty).
#[derive(Arbitrary, Debug)]
struct GAtom(Vec<u8>);

impl GAtom {
    fn get(&self) -> String {
        let mut s: String = self
            .0
            .iter()
            .take(20)
            .map(|b| ATOM[*b as usize % ATOM.len()] as char)
            .collect();
        if s.is_empty() {
            s.push('a');
        }
        s
    }
}

/// A tag: ASTRING-CHARs but `+`.
#[derive(Arbitrary, Debug)]
struct GTag(Vec<u8>);

impl GTag {
    fn get(&self) -> String {
        let s: String = self
            .0
            .iter()
            .take(12)
            .map(|b| {
                let c = ATOM[*b as usize % ATOM.len()];
                if c == b'+' {
                    ']'
                } else {
                    c as char
                }
            })
            .collect();
        if s.is_empty() {
            "A1".into()
        } else {
            s
        }
    }
}

/// Status text: non-empty 7-bit TEXT-CHARs, not starting with `[`.
#[derive(Arbitrary, Debug)]
struct GText(Vec<u8>);

impl GText {
    fn get(&self) -> String {
        let mut s: String = self
            .0
            .iter()
            .take(60)
            .map(|b| match b % 0x80 {
                0 | b'\r' | b'\n' => ' ',
                c => c as char,
            })
            .collect();
        if s.is_empty() || s.starts_with('[') {
            s.insert(0, 'x');
        }
        s
    }
}

/// String data: any octets but NUL.
#[derive(Arbitrary, Debug)]
struct GStr(Vec<u8>);

impl GStr {
    fn get(&self) -> IString<'static> {
        IString::from(
            self.0
                .iter()
                .map(|&b| if b == 0 { 0x80 } else { b })
                .collect::<Vec<u8>>(),
        )
    }
}

fn nz(n: u32) -> u32 {
    n.max(1)
}

#[derive(Arbitrary, Debug)]
enum GFlag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    Recent,
    Keyword(GAtom),
    Extension(GAtom),
}

impl GFlag {
    fn get(&self, recent: bool) -> Flag<'static> {
        match self {
            GFlag::Seen => Flag::Seen,
            GFlag::Answered => Flag::Answered,
            GFlag::Flagged => Flag::Flagged,
            GFlag::Deleted => Flag::Deleted,
            GFlag::Draft => Flag::Draft,
            GFlag::Recent if recent => Flag::Recent,
            GFlag::Recent => Flag::Seen,
            GFlag::Keyword(a) => Flag::Keyword(a.get().into()),
            // `\*` is PERMANENTFLAGS' own; `\Recent` only where allowed.
            GFlag::Extension(a) => {
                let a = a.get();
                if a.eq_ignore_ascii_case("Recent") && !recent {
                    Flag::Seen
                } else {
                    Flag::Extension(a.into())
                }
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum GCode {
    Alert,
    BadCharset(Vec<GAtom>),
    Capability(Vec<GAtom>),
    Parse,
    PermanentFlags(Vec<GFlag>, bool),
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    AppendUid(u32, u32),
    CopyUid(u32, Vec<(u32, u32)>),
    UidNotSticky,
    Closed,
    HighestModSeq(u64),
    NoModSeq,
    Simple(u8),
    Other(GAtom, Option<GText>),
}

struct CodeOwned {
    strings: Vec<String>,
    flags: Vec<Flag<'static>>,
    source: Vec<u32>,
    dest: Vec<u32>,
}

const SIMPLE: [Code<'static>; 19] = [
    Code::Unavailable,
    Code::AuthenticationFailed,
    Code::AuthorizationFailed,
    Code::Expired,
    Code::PrivacyRequired,
    Code::ContactAdmin,
    Code::NoPerm,
    Code::InUse,
    Code::ExpungeIssued,
    Code::Corruption,
    Code::ServerBug,
    Code::ClientBug,
    Code::Cannot,
    Code::Limit,
    Code::OverQuota,
    Code::AlreadyExists,
    Code::Nonexistent,
    Code::Alert,
    Code::Parse,
];

impl GCode {
    fn owned(&self) -> CodeOwned {
        let mut o = CodeOwned {
            strings: Vec::new(),
            flags: Vec::new(),
            source: Vec::new(),
            dest: Vec::new(),
        };
        match self {
            GCode::BadCharset(c) => o.strings = c.iter().take(4).map(GAtom::get).collect(),
            GCode::Capability(c) => {
                o.strings.push("IMAP4rev1".into());
                o.strings
                    .extend(c.iter().take(6).map(|a| format!("X{}", a.get())));
            }
            GCode::PermanentFlags(f, _) => {
                o.flags = f.iter().take(6).map(|f| f.get(false)).collect()
            }
            GCode::CopyUid(_, pairs) => {
                for (s, d) in pairs.iter().take(6) {
                    o.source.push(nz(*s));
                    o.dest.push(nz(*d));
                }
                if o.source.is_empty() {
                    o.source.push(1);
                    o.dest.push(1);
                }
            }
            GCode::Other(name, text) => {
                o.strings.push(format!("X{}", name.get()));
                o.strings.extend(text.as_ref().map(GText::get));
            }
            _ => {}
        }
        o
    }

    fn code<'a>(&self, o: &'a CodeOwned, refs: &'a [&'a str]) -> Code<'a> {
        match self {
            GCode::Alert => Code::Alert,
            GCode::BadCharset(_) => Code::BadCharset(refs),
            GCode::Capability(_) => Code::Capability(refs),
            GCode::Parse => Code::Parse,
            GCode::PermanentFlags(_, star) => Code::PermanentFlags {
                flags: &o.flags,
                new_keywords: *star,
            },
            GCode::ReadOnly => Code::ReadOnly,
            GCode::ReadWrite => Code::ReadWrite,
            GCode::TryCreate => Code::TryCreate,
            GCode::UidNext(n) => Code::UidNext(nz(*n)),
            GCode::UidValidity(n) => Code::UidValidity(nz(*n)),
            GCode::Unseen(n) => Code::Unseen(nz(*n)),
            GCode::AppendUid(v, u) => Code::AppendUid {
                uid_validity: nz(*v),
                uid: nz(*u),
            },
            GCode::CopyUid(v, _) => Code::CopyUid {
                uid_validity: nz(*v),
                source: &o.source,
                dest: &o.dest,
            },
            GCode::UidNotSticky => Code::UidNotSticky,
            GCode::Closed => Code::Closed,
            GCode::HighestModSeq(n) => Code::HighestModSeq((*n % i64::MAX as u64).max(1)),
            GCode::NoModSeq => Code::NoModSeq,
            GCode::Simple(i) => SIMPLE[*i as usize % SIMPLE.len()].clone(),
            GCode::Other(..) => Code::Other {
                name: refs[0],
                text: refs.get(1).copied(),
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum GStatus {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

#[derive(Arbitrary, Debug)]
enum GAttr {
    Simple(u8),
    Other(GAtom),
}

const ATTRS: [MailboxAttr<'static>; 16] = [
    MailboxAttr::NoInferiors,
    MailboxAttr::NoSelect,
    MailboxAttr::Marked,
    MailboxAttr::Unmarked,
    MailboxAttr::HasChildren,
    MailboxAttr::HasNoChildren,
    MailboxAttr::NonExistent,
    MailboxAttr::Subscribed,
    MailboxAttr::Remote,
    MailboxAttr::All,
    MailboxAttr::Archive,
    MailboxAttr::Drafts,
    MailboxAttr::Flagged,
    MailboxAttr::Junk,
    MailboxAttr::Sent,
    MailboxAttr::Trash,
];

/// A hierarchy delimiter: 7-bit, not NUL, CR or LF.
fn delim(d: Option<u8>) -> Option<char> {
    d.map(|b| match b % 0x80 {
        0 | b'\r' | b'\n' => '/',
        c => c as char,
    })
}

#[derive(Arbitrary, Debug)]
enum GStatusValue {
    Messages(u32),
    Recent(u32),
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    Size(u64),
}

#[derive(Arbitrary, Debug)]
struct GAddress {
    name: Option<GStr>,
    adl: Option<GStr>,
    mailbox: Option<GStr>,
    host: Option<GStr>,
}

#[derive(Arbitrary, Debug)]
struct GEnvelope {
    date: Option<GStr>,
    subject: Option<GStr>,
    addrs: [Vec<GAddress>; 6],
    in_reply_to: Option<GStr>,
    message_id: Option<GStr>,
}

fn opt(s: &Option<GStr>) -> Option<IString<'static>> {
    s.as_ref().map(GStr::get)
}

impl GEnvelope {
    fn get(&self) -> Envelope<'static> {
        let a = |i: usize| -> Vec<Address<'static>> {
            self.addrs[i]
                .iter()
                .take(4)
                .map(|a| Address {
                    name: opt(&a.name),
                    adl: opt(&a.adl),
                    mailbox: opt(&a.mailbox),
                    host: opt(&a.host),
                })
                .collect()
        };
        Envelope {
            date: opt(&self.date),
            subject: opt(&self.subject),
            from: a(0),
            sender: a(1),
            reply_to: a(2),
            to: a(3),
            cc: a(4),
            bcc: a(5),
            in_reply_to: opt(&self.in_reply_to),
            message_id: opt(&self.message_id),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct GExt {
    md5: Option<GStr>,
    disposition: Option<(GStr, Vec<(GStr, GStr)>)>,
    language: Vec<GStr>,
    location: Option<GStr>,
}

fn params(p: &[(GStr, GStr)]) -> enc::Params<'static> {
    p.iter().take(4).map(|(k, v)| (k.get(), v.get())).collect()
}

impl GExt {
    fn get(&self) -> BodyExtension<'static> {
        BodyExtension {
            md5: opt(&self.md5),
            disposition: self.disposition.as_ref().map(|(k, p)| Disposition {
                kind: k.get(),
                params: params(p),
            }),
            language: self.language.iter().take(3).map(GStr::get).collect(),
            location: opt(&self.location),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct GFields {
    params: Vec<(GStr, GStr)>,
    id: Option<GStr>,
    description: Option<GStr>,
    encoding: GStr,
    size: u32,
}

impl GFields {
    fn get(&self) -> BodyFields<'static> {
        BodyFields {
            params: params(&self.params),
            id: opt(&self.id),
            description: opt(&self.description),
            encoding: self.encoding.get(),
            size: self.size,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum GBody {
    Basic(GStr, GStr, GFields, GExt),
    Text(GStr, u32, GFields, GExt),
    Message(Box<GEnvelope>, Box<GBody>, u32, GFields, GExt),
    Multipart(Vec<GBody>, GStr, Vec<(GStr, GStr)>, GExt),
}

impl GBody {
    fn get(&self, depth: usize) -> BodyStructure<'static> {
        let leaf = || BodyStructure::Single {
            kind: SingleKind::Basic {
                media_type: IString::from("APPLICATION"),
                subtype: IString::from("OCTET-STREAM"),
            },
            fields: BodyFields::default(),
            ext: BodyExtension::default(),
        };
        match self {
            GBody::Basic(t, s, f, e) => {
                let (t, s) = (t.get(), s.get());
                // TEXT and MESSAGE/RFC822 have their own forms (SingleKind::Text, Message).
                let special = t.as_bytes().eq_ignore_ascii_case(b"TEXT")
                    || (t.as_bytes().eq_ignore_ascii_case(b"MESSAGE")
                        && s.as_bytes().eq_ignore_ascii_case(b"RFC822"));
                if special {
                    return leaf();
                }
                BodyStructure::Single {
                    kind: SingleKind::Basic {
                        media_type: t,
                        subtype: s,
                    },
                    fields: f.get(),
                    ext: e.get(),
                }
            }
            GBody::Text(s, lines, f, e) => BodyStructure::Single {
                kind: SingleKind::Text {
                    subtype: s.get(),
                    lines: *lines,
                },
                fields: f.get(),
                ext: e.get(),
            },
            GBody::Message(env, body, lines, f, e) if depth < 4 => BodyStructure::Single {
                kind: SingleKind::Message {
                    subtype: IString::from("RFC822"),
                    envelope: Box::new(env.get()),
                    body: Box::new(body.get(depth + 1)),
                    lines: *lines,
                },
                fields: f.get(),
                ext: e.get(),
            },
            GBody::Multipart(parts, s, p, e) if depth < 4 && !parts.is_empty() => {
                BodyStructure::Multipart {
                    parts: parts.iter().take(4).map(|p| p.get(depth + 1)).collect(),
                    subtype: s.get(),
                    params: params(p),
                    ext: e.get(),
                }
            }
            _ => leaf(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum GSection {
    Whole,
    Header,
    Text,
    Mime,
    Fields(bool, Vec<GStr>),
}

#[derive(Arbitrary, Debug)]
struct GSectionSpec {
    part: Vec<u8>,
    text: GSection,
}

impl GSectionSpec {
    /// The section, through core's parser (as a session gets it).
    fn get(&self) -> Section<'static> {
        let mut spec: Vec<u8> = Vec::new();
        let part: Vec<String> = self
            .part
            .iter()
            .take(4)
            .map(|n| (n % 20 + 1).to_string())
            .collect();
        spec.extend_from_slice(part.join(".").as_bytes());
        let text: Vec<u8> = match &self.text {
            GSection::Whole => Vec::new(),
            GSection::Header => b"HEADER".to_vec(),
            GSection::Text => b"TEXT".to_vec(),
            GSection::Mime if !part.is_empty() => b"MIME".to_vec(),
            GSection::Mime => Vec::new(),
            GSection::Fields(not, names) => {
                let mut t = if *not {
                    b"HEADER.FIELDS.NOT (".to_vec()
                } else {
                    b"HEADER.FIELDS (".to_vec()
                };
                let mut first = true;
                for n in names.iter().take(3) {
                    // A field name is an astring; send it as a literal (any octet but NUL,
                    // CR and LF, so that the command stays one line apart from literals).
                    let n: Vec<u8> = n.get().as_bytes().to_vec();
                    if !first {
                        t.push(b' ');
                    }
                    first = false;
                    t.extend_from_slice(format!("{{{}+}}\r\n", n.len()).as_bytes());
                    t.extend_from_slice(&n);
                }
                if first {
                    t.extend_from_slice(b"Subject");
                }
                t.push(b')');
                t
            }
        };
        if !part.is_empty() && !text.is_empty() {
            spec.push(b'.');
        }
        spec.extend_from_slice(&text);
        let mut line = b"a FETCH 1 BODY[".to_vec();
        line.extend_from_slice(&spec);
        line.extend_from_slice(b"]\r\n");
        let parsed = parse_command(&line, &Limits::default());
        match parsed {
            Ok((_, cmd)) => match cmd.body {
                CommandBody::Fetch { items, .. } => match items.attrs().first() {
                    Some(FetchAttr::BodySection { section, .. }) => section.clone().into_owned(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            },
            // A field name core's parser refuses (an empty literal, say): the whole message.
            Err(_) => Section::default(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum GContentKind {
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    Body(GSectionSpec, Option<u32>),
}

#[derive(Arbitrary, Debug)]
enum GItem {
    Uid(u32),
    Flags(Vec<GFlag>),
    InternalDate(i64, i16),
    Rfc822Size(u32),
    Envelope(Box<GEnvelope>),
    Body(Box<GBody>),
    BodyStructure(Box<GBody>),
    Content(GContentKind, Option<GStr>),
    Streamed(GContentKind, GStr),
}

#[derive(Arbitrary, Debug)]
enum GResp {
    Status(Option<GTag>, GStatus, Option<GCode>, GText),
    Continuation(GText),
    ContinuationBase64(Vec<u8>),
    Capability(Vec<GAtom>),
    /// LSUB, UTF8=ACCEPT, attributes, delimiter, name.
    List(bool, bool, Vec<GAttr>, Option<u8>, String),
    StatusData(bool, String, Vec<GStatusValue>),
    Search(Vec<u32>),
    Flags(Vec<GFlag>),
    Exists(u32),
    Recent(u32),
    Expunge(u32),
    Enabled(Vec<GAtom>),
    Id(Option<Vec<(String, Option<String>)>>),
    Namespace(bool, [Vec<(String, Option<u8>)>; 3]),
    Fetch(u32, Vec<GItem>),
}

// ---------------------------------------------------------------------------------------
// Checks

/// imap-codec's encoding of what it parsed is the line ironpost wrote, ignoring ASCII case.
fn same_line(out: &[u8], parsed: &Response<'_>) {
    let again = ResponseCodec::default().encode(parsed).dump();
    assert!(
        again.eq_ignore_ascii_case(out),
        "imap-codec read {:?} as {parsed:?}, which it writes {:?}",
        String::from_utf8_lossy(out),
        String::from_utf8_lossy(&again)
    );
}

/// imap-codec reads any unknown response code up to `]`; RFC 3501's grammar is narrower:
/// `atom [SP 1*<any TEXT-CHAR except "]">]`. Checked here on the code between the brackets.
fn check_other_code(out: &[u8]) {
    // `tag SP status SP "[" code "]"`: the tag may hold `[` too.
    let mut spaces = out.iter().enumerate().filter(|(_, &b)| b == b' ');
    let second = spaces.nth(1).expect("tag and status").0;
    assert_eq!(out[second + 1], b'[', "no response code");
    let start = second + 2;
    let len = out[start..].iter().position(|&b| b == b']').expect("]");
    let code = &out[start..start + len];
    let (atom, text) = match code.iter().position(|&b| b == b' ') {
        Some(sp) => (&code[..sp], Some(&code[sp + 1..])),
        None => (code, None),
    };
    let line = String::from_utf8_lossy(out);
    assert!(
        !atom.is_empty() && atom.iter().all(|&b| ATOM.contains(&b)),
        "response code name is no atom: {line:?}"
    );
    if let Some(t) = text {
        assert!(
            !t.is_empty()
                && t.iter()
                    .all(|&b| b >= 1 && b < 0x80 && b != b'\r' && b != b'\n'),
            "response code text is not 1*TEXT-CHAR: {line:?}"
        );
    }
}

fn mailbox_name(m: &CMailbox<'_>) -> Vec<u8> {
    match m {
        CMailbox::Inbox => b"INBOX".to_vec(),
        CMailbox::Other(o) => AsRef::<[u8]>::as_ref(o).to_vec(),
    }
}

/// Mailbox names a session can have: in UTF-8 mode (sent as they are) without NUL, which no
/// command can create (quoted strings and literals exclude it).
fn mailbox_domain(name: &str, utf8: bool) -> String {
    if utf8 {
        name.replace('\0', " ")
    } else {
        name.to_string()
    }
}

/// The parsed mailbox name is the UTF-8 name given: as sent under UTF8=ACCEPT, else after
/// decoding modified UTF-7 (INBOX in any case).
fn check_mailbox(m: &CMailbox<'_>, name: &str, utf8: bool) {
    let wire = mailbox_name(m);
    if matches!(m, CMailbox::Inbox) {
        assert!(
            name.eq_ignore_ascii_case("INBOX"),
            "{name:?} came back as INBOX"
        );
    } else if utf8 {
        assert_eq!(wire, name.as_bytes(), "mailbox name (UTF8=ACCEPT)");
    } else {
        let decoded = utf7::decode_bytes(&wire).expect("modified UTF-7 that does not decode");
        assert_eq!(decoded, name, "mailbox name");
    }
}

fn flag_name(f: &FlagFetch<'_>) -> String {
    match f {
        FlagFetch::Recent => "\\Recent".into(),
        FlagFetch::Flag(CFlag::Keyword(k)) => k.inner().to_string(),
        FlagFetch::Flag(f) => f.to_string(),
    }
}

fn content_item<'a>(k: &GContentKind, section: &'a Section<'a>) -> ContentItem<'a> {
    match k {
        GContentKind::Rfc822 => ContentItem::Rfc822,
        GContentKind::Rfc822Header => ContentItem::Rfc822Header,
        GContentKind::Rfc822Text => ContentItem::Rfc822Text,
        GContentKind::Body(_, origin) => ContentItem::Body {
            section,
            origin: *origin,
        },
    }
}

fn check_fetch(out: &[u8], seq: u32, items: &[GItem]) {
    let parsed = iv::parse_response(out);
    let Response::Data(CData::Fetch { seq: s, items: got }) = parsed else {
        panic!("not a FETCH: {parsed:?}");
    };
    assert_eq!(s.get(), seq);
    let got = got.into_inner();
    assert_eq!(got.len(), items.len(), "{got:?}");
    for (g, want) in got.iter().zip(items) {
        match (want, g) {
            (GItem::Uid(u), MessageDataItem::Uid(v)) => assert_eq!(nz(*u), v.get()),
            (GItem::Flags(f), MessageDataItem::Flags(v)) => {
                let want: Vec<String> = f.iter().take(8).map(|f| f.get(true).to_string()).collect();
                let got: Vec<String> = v.iter().map(flag_name).collect();
                assert_eq!(want.len(), got.len());
                for (a, b) in want.iter().zip(&got) {
                    assert!(a.eq_ignore_ascii_case(b), "flag {a} came back as {b}");
                }
            }
            (GItem::InternalDate(secs, off), MessageDataItem::InternalDate(d)) => {
                let want = date(*secs, *off);
                let d = d.as_ref();
                assert_eq!(d.timestamp(), want.to_unix(), "INTERNALDATE");
                assert_eq!(
                    d.offset().local_minus_utc(),
                    i32::from(want.offset_minutes) * 60,
                    "INTERNALDATE zone"
                );
            }
            (GItem::Rfc822Size(n), MessageDataItem::Rfc822Size(m)) => assert_eq!(n, m),
            (GItem::Envelope(e), MessageDataItem::Envelope(c)) => {
                assert_eq!(iv::codec_envelope(c), iv::envelope(&e.get()), "ENVELOPE")
            }
            (GItem::Body(b), MessageDataItem::Body(c)) => assert_eq!(
                iv::codec_body_structure(c),
                iv::body_structure(&b.get(0), false),
                "BODY"
            ),
            (GItem::BodyStructure(b), MessageDataItem::BodyStructure(c)) => assert_eq!(
                iv::codec_body_structure(c),
                iv::body_structure(&b.get(0), true),
                "BODYSTRUCTURE"
            ),
            (GItem::Content(k, data), g) => {
                check_content(k, data.as_ref().map(|d| d.get().as_bytes().to_vec()), g)
            }
            (GItem::Streamed(k, data), g) => {
                check_content(k, Some(data.get().as_bytes().to_vec()), g)
            }
            (w, g) => panic!("{w:?} came back as {g:?}"),
        }
    }
}

fn check_content(k: &GContentKind, data: Option<Vec<u8>>, g: &MessageDataItem<'_>) {
    match (k, g) {
        (GContentKind::Rfc822, MessageDataItem::Rfc822(d))
        | (GContentKind::Rfc822Header, MessageDataItem::Rfc822Header(d))
        | (GContentKind::Rfc822Text, MessageDataItem::Rfc822Text(d)) => {
            assert_eq!(iv::codec_nstring(d), data)
        }
        (
            GContentKind::Body(spec, origin),
            MessageDataItem::BodyExt {
                section,
                origin: o,
                data: d,
            },
        ) => {
            assert_eq!(iv::codec_section(section), iv::section(&spec.get()));
            assert_eq!(o, origin);
            assert_eq!(iv::codec_nstring(d), data);
        }
        (k, g) => panic!("{k:?} came back as {g:?}"),
    }
}

fn date(secs: i64, off: i16) -> DateTime {
    let off = off % (24 * 60);
    DateTime::from_unix(secs.rem_euclid(253_402_300_799 - 86_400 * 2), off)
        .or_else(|| DateTime::from_unix(0, 0))
        .expect("a valid date")
}

fn write_fetch(out: &mut Vec<u8>, seq: u32, items: &[GItem]) {
    let mut f = FetchWriter::begin(out, seq);
    for item in items {
        match item {
            GItem::Uid(u) => f.uid(out, nz(*u)),
            GItem::Flags(fl) => {
                let flags: Vec<Flag<'_>> = fl.iter().take(8).map(|f| f.get(true)).collect();
                f.flags(out, &flags)
            }
            GItem::InternalDate(s, o) => f.internal_date(out, &date(*s, *o)),
            GItem::Rfc822Size(n) => f.rfc822_size(out, u64::from(*n)),
            GItem::Envelope(e) => f.envelope(out, &e.get()),
            GItem::Body(b) => f.body(out, &b.get(0)),
            GItem::BodyStructure(b) => f.body_structure(out, &b.get(0)),
            GItem::Content(k, data) => {
                let section = match k {
                    GContentKind::Body(s, _) => s.get(),
                    _ => Section::default(),
                };
                let data = data.as_ref().map(GStr::get);
                f.content(
                    out,
                    content_item(k, &section),
                    data.as_ref().map(IString::as_bytes),
                )
            }
            GItem::Streamed(k, data) => {
                let section = match k {
                    GContentKind::Body(s, _) => s.get(),
                    _ => Section::default(),
                };
                let data = data.get();
                f.literal_start(out, content_item(k, &section), data.len() as u64);
                out.extend_from_slice(data.as_bytes());
            }
        }
    }
    f.finish(out);
}

fn one(r: &GResp) {
    let mut out = Vec::new();
    match r {
        GResp::Status(tag, st, code, text) => {
            let tag = tag.as_ref().map(GTag::get);
            let status = match st {
                GStatus::Ok => Status::Ok,
                GStatus::No => Status::No,
                GStatus::Bad => Status::Bad,
                GStatus::PreAuth if tag.is_none() => Status::PreAuth,
                GStatus::Bye if tag.is_none() => Status::Bye,
                _ => Status::Ok,
            };
            let owned = code.as_ref().map(GCode::owned);
            let refs: Vec<&str> = owned.as_ref().map_or(Vec::new(), |o| {
                o.strings.iter().map(String::as_str).collect()
            });
            let c = code
                .as_ref()
                .zip(owned.as_ref())
                .map(|(g, o)| g.code(o, &refs));
            enc::status(&mut out, tag.as_deref(), status, c.as_ref(), &text.get());
            if trace() {
                eprintln!("{}", String::from_utf8_lossy(&out));
            }
            if status == Status::PreAuth {
                match GreetingCodec::default().decode(&out) {
                    Ok((rest, g)) => {
                        assert!(rest.is_empty());
                        let again = GreetingCodec::default().encode(&g).dump();
                        assert!(again.eq_ignore_ascii_case(&out), "{g:?}");
                    }
                    Err(e) => panic!(
                        "imap-codec cannot parse the greeting ({e:?}): {:?}",
                        String::from_utf8_lossy(&out)
                    ),
                }
                return;
            }
            if let Some(GCode::Other(..)) = code {
                check_other_code(&out);
            }
            let parsed = iv::parse_response(&out);
            same_line(&out, &parsed);
            return;
        }
        GResp::Continuation(t) => enc::continuation(&mut out, &t.get()),
        GResp::ContinuationBase64(d) => enc::continuation_base64(&mut out, d),
        GResp::Capability(caps) => {
            let mut c = vec!["IMAP4rev1".to_string()];
            c.extend(caps.iter().take(8).map(|a| format!("X{}", a.get())));
            let refs: Vec<&str> = c.iter().map(String::as_str).collect();
            Data::Capability(&refs).write_to(&mut out);
        }
        GResp::List(lsub, utf8, attrs, d, name) => {
            let name = &mailbox_domain(name, *utf8);
            let others: Vec<String> = attrs
                .iter()
                .take(4)
                .map(|a| match a {
                    GAttr::Other(a) => format!("X{}", a.get()),
                    GAttr::Simple(_) => String::new(),
                })
                .collect();
            let list: Vec<MailboxAttr<'_>> = attrs
                .iter()
                .take(4)
                .zip(&others)
                .map(|(a, o)| match a {
                    GAttr::Simple(i) => ATTRS[*i as usize % ATTRS.len()],
                    GAttr::Other(_) => MailboxAttr::Other(o),
                })
                .collect();
            let item = ListItem {
                attributes: &list,
                delimiter: delim(*d),
                name,
            };
            if *lsub {
                Data::Lsub(item).write_with(&mut out, *utf8);
            } else {
                Data::List(item).write_with(&mut out, *utf8);
            }
            let parsed = iv::parse_response(&out);
            match &parsed {
                Response::Data(CData::List {
                    mailbox, delimiter, ..
                })
                | Response::Data(CData::Lsub {
                    mailbox, delimiter, ..
                }) => {
                    check_mailbox(mailbox, name, *utf8);
                    assert_eq!(delimiter.as_ref().map(|c| c.inner()), delim(*d));
                }
                other => panic!("not a LIST: {other:?}"),
            }
            same_line(&out, &parsed);
            return;
        }
        GResp::StatusData(utf8, name, items) => {
            let name = &mailbox_domain(name, *utf8);
            let items: Vec<StatusValue> = items
                .iter()
                .take(6)
                .map(|v| match *v {
                    GStatusValue::Messages(n) => StatusValue::Messages(n),
                    GStatusValue::Recent(n) => StatusValue::Recent(n),
                    GStatusValue::UidNext(n) => StatusValue::UidNext(nz(n)),
                    GStatusValue::UidValidity(n) => StatusValue::UidValidity(nz(n)),
                    GStatusValue::Unseen(n) => StatusValue::Unseen(n),
                    GStatusValue::Size(n) => StatusValue::Size(n),
                })
                .collect();
            Data::Status {
                mailbox: name,
                items: &items,
            }
            .write_with(&mut out, *utf8);
            let parsed = iv::parse_response(&out);
            match &parsed {
                Response::Data(CData::Status { mailbox, .. }) => {
                    check_mailbox(mailbox, name, *utf8)
                }
                other => panic!("not a STATUS: {other:?}"),
            }
            same_line(&out, &parsed);
            return;
        }
        GResp::Search(ids) => {
            let ids: Vec<u32> = ids.iter().take(16).map(|n| nz(*n)).collect();
            Data::Search(&ids).write_to(&mut out);
        }
        GResp::Flags(f) => {
            let flags: Vec<Flag<'_>> = f.iter().take(8).map(|f| f.get(false)).collect();
            Data::Flags(&flags).write_to(&mut out);
        }
        GResp::Exists(n) => Data::Exists(*n).write_to(&mut out),
        GResp::Recent(n) => Data::Recent(*n).write_to(&mut out),
        GResp::Expunge(n) => Data::Expunge(nz(*n)).write_to(&mut out),
        GResp::Enabled(caps) => {
            let c: Vec<String> = caps
                .iter()
                .take(4)
                .map(|a| format!("X{}", a.get()))
                .collect();
            let refs: Vec<&str> = c.iter().map(String::as_str).collect();
            Data::Enabled(&refs).write_to(&mut out);
        }
        GResp::Id(params) => {
            let p: Option<Vec<(&str, Option<&str>)>> = params.as_ref().map(|p| {
                p.iter()
                    .take(4)
                    .map(|(k, v)| (k.as_str(), v.as_deref()))
                    .collect()
            });
            // ID values are the server's name and version: no NUL.
            if p.iter()
                .flatten()
                .any(|(k, v)| k.contains('\0') || v.is_some_and(|v| v.contains('\0')))
            {
                return;
            }
            Data::Id(p.as_deref()).write_to(&mut out);
        }
        GResp::Namespace(utf8, ns) => {
            let ns: Vec<Vec<(String, Option<u8>)>> = ns
                .iter()
                .map(|n| {
                    n.iter()
                        .map(|(p, d)| (mailbox_domain(p, *utf8), *d))
                        .collect()
                })
                .collect();
            let descs: Vec<Vec<NamespaceDesc<'_>>> = ns
                .iter()
                .map(|n| {
                    n.iter()
                        .take(3)
                        .map(|(p, d)| NamespaceDesc {
                            prefix: p,
                            delimiter: delim(*d),
                        })
                        .collect()
                })
                .collect();
            Data::Namespace {
                personal: &descs[0],
                other: &descs[1],
                shared: &descs[2],
            }
            .write_with(&mut out, *utf8);
        }
        GResp::Fetch(seq, items) => {
            if items.is_empty() {
                return;
            }
            let items = &items[..items.len().min(8)];
            write_fetch(&mut out, nz(*seq), items);
            if trace() {
                eprintln!("{}", String::from_utf8_lossy(&out));
            }
            check_fetch(&out, nz(*seq), items);
            return;
        }
    }
    if trace() {
        eprintln!("{}", String::from_utf8_lossy(&out));
    }
    let parsed = iv::parse_response(&out);
    same_line(&out, &parsed);
}

fuzz_target!(|input: &[u8]| {
    let mut u = Unstructured::new(input);
    for _ in 0..8 {
        if u.is_empty() {
            return;
        }
        let Ok(r) = GResp::arbitrary(&mut u) else {
            return;
        };
        if trace() {
            eprintln!("{r:?}");
        }
        one(&r);
    }
});
