//! IMAP client commands written by the independent `imap-codec` crate, parsed by core's
//! command parser (`core::imap::parse_command`): ironpost understands every command a
//! conforming client can send for what it implements, and reads it as the client meant it.
//!
//! Input: arbitrary bytes, decoded with `arbitrary` into up to 4 commands, each built as an
//! imap-codec `Command` value (tag and body) and encoded with its `CommandCodec` into wire
//! bytes, literals included (synchronising and non-synchronising, fed whole as a client does
//! after the continuation). Commands: CAPABILITY, NOOP, LOGOUT, AUTHENTICATE (with or
//! without an initial response, empty included), LOGIN, ENABLE, ID, NAMESPACE, SELECT,
//! EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS, APPEND, IDLE,
//! CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE, SEARCH, FETCH, STORE, COPY, MOVE (each with
//! its UID form). Strings come as atoms, quoted strings (7-bit, or UTF-8 as RFC 6855 allows),
//! synchronising or non-synchronising literals; mailbox names are UTF-8 names the target
//! encodes in modified UTF-7 itself (its own encoder, not core's).
//!
//! Invariants:
//! - every command parses (`Ok`) and consumes exactly the encoded length; for APPEND the
//!   parse stops after the line announcing the message literal, the message's octets follow,
//!   and `parse_append_end` takes exactly the rest;
//! - before each literal's octets, the parser asks for exactly that literal (size, `sync` as
//!   written, offset where the octets start), or for APPEND's message returns the command;
//! - the parsed command is the one written: tag; command kind (and UID form); mailbox names
//!   (the octets written, and their modified UTF-7 decoding is the UTF-8 name generated, or
//!   INBOX for INBOX in any case); LIST / LSUB reference and pattern octets; sequence sets
//!   element by element (`*` included); flags; STORE mode and .SILENT; STATUS items; APPEND
//!   flags, date-time (instant and zone), message size, literal kind and octets; SEARCH
//!   CHARSET and the whole key tree (strings, dates, numbers, sets, NOT / OR / parenthesised
//!   lists); FETCH macros and attributes with sections (part, text kind, header names) and
//!   partials; LOGIN, ID, HEADER, header-list and search strings octet for octet; ENABLE
//!   capabilities; the AUTHENTICATE mechanism (ignoring ASCII case: imap-codec writes known
//!   mechanisms in upper case) and the initial response (its base64 is that of the bytes).
//!
//! Not generated, with the reason (see the README):
//! - STARTTLS: this crate builds imap-codec without its `starttls` feature, so imap-codec has
//!   no such command (`imap_command` covers the line);
//! - RFC 5258 extended LIST: imap-codec is built without `ext_list_extended`;
//! - what ironpost does not implement: CONDSTORE / QRESYNC parameters and modifiers (SELECT,
//!   FETCH, STORE, SEARCH MODSEQ, STATUS HIGHESTMODSEQ), STATUS DELETED / DELETED-STORAGE,
//!   BINARY (FETCH BINARY[...], APPEND `~{n}`), SORT, THREAD, COMPRESS, QUOTA, METADATA,
//!   SEARCH OLDER / YOUNGER;
//! - `\Recent` in STORE and APPEND flags: imap-codec writes it as a flag-extension, RFC 3501
//!   says a client cannot set it (2.3.2), and ironpost refuses it with BAD by design;
//! - an empty FETCH attribute list: imap-codec writes `()`, which RFC 3501's
//!   `"(" fetch-att *(SP fetch-att) ")"` does not allow;
//! - dates imap-codec cannot represent (chrono: no leap second); dates are made by imap-codec
//!   from their text (this crate cannot name chrono).

#![no_main]

use std::num::NonZeroU32;

use arbitrary::{Arbitrary, Unstructured};
use imap_codec::decode::Decoder;
use imap_codec::encode::{Encoder, Fragment};
use imap_codec::imap_types::auth::AuthMechanism as CMech;
use imap_codec::imap_types::command::{Command as CCommand, CommandBody as CBody};
use imap_codec::imap_types::core::{
    AString, Atom, Charset, IString as CIString, Literal, LiteralMode, NString, Quoted, Tag, Vec1,
};
use imap_codec::imap_types::datetime::{DateTime as CDateTime, NaiveDate};
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::extensions::utf8::QuotedUtf8;
use imap_codec::imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItemName, Part, Section as CSection,
};
use imap_codec::imap_types::flag::{Flag as CFlag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListCharString, ListMailbox, Mailbox as CMailbox};
use imap_codec::imap_types::search::SearchKey as CKey;
use imap_codec::imap_types::secret::Secret;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet as CSet};
use imap_codec::imap_types::status::StatusDataItemName;
use imap_codec::CommandCodec;
use ironpost_core::imap::{
    parse_append_end, parse_command, AuthMechanism, CommandBody, FetchAttr, FetchItems, Flag,
    InitialResponse, Limits, Mailbox, Needed, ParseError, SearchKey, SeqNo, SequenceSet,
    StatusItems, StoreAction,
};
use ironpost_fuzz::imap_value as iv;
use ironpost_fuzz::trace;
use libfuzzer_sys::fuzz_target;

// ---------------------------------------------------------------------------------------
// Character classes (RFC 3501 section 9)

fn is_atom_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b)
}

fn alphabet(class: impl Fn(u8) -> bool) -> Vec<u8> {
    (0u8..=0x7f).filter(|&b| class(b)).collect()
}

fn from_alphabet(bytes: &[u8], alpha: &[u8], max: usize, default: &str) -> String {
    let s: String = bytes
        .iter()
        .take(max)
        .map(|&b| alpha[b as usize % alpha.len()] as char)
        .collect();
    if s.is_empty() {
        default.to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------
// Generators

/// An atom (never empty).
#[derive(Arbitrary, Debug)]
struct GAtom(Vec<u8>);

impl GAtom {
    fn get(&self) -> String {
        from_alphabet(&self.0, &alphabet(is_atom_char), 24, "a")
    }
}

/// A tag: ASTRING-CHARs but `+`.
#[derive(Arbitrary, Debug)]
struct GTag(Vec<u8>);

impl GTag {
    fn get(&self) -> String {
        let alpha = alphabet(|b| (is_atom_char(b) || b == b']') && b != b'+');
        from_alphabet(&self.0, &alpha, 16, "A1")
    }
}

/// How a string is written.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Form {
    /// imap-codec's own choice: atom if it can, else quoted, else a literal.
    Auto,
    /// Quoted (7-bit TEXT-CHARs, or UTF-8 as RFC 6855's quoted), else a literal.
    Quoted,
    Literal,
    LiteralPlus,
}

/// String content: octets without NUL (CHAR8), or atom characters, or 7-bit text.
#[derive(Arbitrary, Debug)]
struct GStr {
    form: Form,
    kind: u8,
    data: Vec<u8>,
}

impl GStr {
    fn content(&self) -> Vec<u8> {
        let data = &self.data[..self.data.len().min(300)];
        match self.kind % 4 {
            0 => from_alphabet(data, &alphabet(is_atom_char), 300, "").into_bytes(),
            1 => data
                .iter()
                .map(|&b| match b % 0x80 {
                    0 | b'\r' | b'\n' => b' ',
                    c => c,
                })
                .collect(),
            2 => String::from_utf8_lossy(data)
                .chars()
                .filter(|&c| c != '\0')
                .collect::<String>()
                .into_bytes(),
            _ => data.iter().copied().filter(|&b| b != 0).collect(),
        }
    }

    fn istring(&self, content: Vec<u8>) -> CIString<'static> {
        istring(self.form, content)
    }

    fn astring(&self, content: Vec<u8>) -> AString<'static> {
        astring(self.form, content)
    }
}

fn literal(form: Form, content: Vec<u8>) -> Literal<'static> {
    let l = Literal::try_from(content).expect("no NUL");
    match form {
        Form::LiteralPlus => l.into_non_sync(),
        _ => l,
    }
}

fn istring(form: Form, content: Vec<u8>) -> CIString<'static> {
    match form {
        Form::Auto => CIString::try_from(content).expect("no NUL"),
        Form::Quoted => {
            if let Ok(q) = Quoted::try_from(content.clone()) {
                return CIString::Quoted(q);
            }
            match String::from_utf8(content) {
                Ok(s) => match QuotedUtf8::try_from(s.clone()) {
                    Ok(q) => CIString::QuotedUtf8(q),
                    Err(_) => CIString::Literal(literal(form, s.into_bytes())),
                },
                Err(e) => CIString::Literal(literal(form, e.into_bytes())),
            }
        }
        Form::Literal | Form::LiteralPlus => CIString::Literal(literal(form, content)),
    }
}

fn astring(form: Form, content: Vec<u8>) -> AString<'static> {
    match form {
        Form::Auto => AString::try_from(content).expect("no NUL"),
        _ => AString::String(istring(form, content)),
    }
}

/// A mailbox name in UTF-8, sent in modified UTF-7.
#[derive(Arbitrary, Debug)]
struct GName {
    form: Form,
    inbox: bool,
    name: String,
}

impl GName {
    fn name(&self) -> String {
        if self.inbox {
            // INBOX in some case.
            return self
                .name
                .bytes()
                .chain(std::iter::repeat(0))
                .zip("INBOX".chars())
                .map(|(b, c)| {
                    if b & 1 == 1 {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect();
        }
        self.name.chars().take(60).collect()
    }

    fn get(&self) -> (CMailbox<'static>, String) {
        let name = self.name();
        let wire = mutf7(&name).into_bytes();
        (CMailbox::from(astring(self.form, wire)), name)
    }
}

/// Modified UTF-7 (RFC 3501 5.1.3), written independently of core's `utf7`.
fn mutf7(s: &str) -> String {
    fn flush(out: &mut String, run: &mut Vec<u16>) {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.drain(..).flat_map(u16::to_be_bytes).collect();
        out.push('&');
        out.push_str(&base64(&bytes, false).replace('/', ","));
        out.push('-');
    }
    let mut out = String::new();
    let mut run = Vec::new();
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut run);
            out.push_str(if c == '&' { "&-" } else { "" });
            if c != '&' {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut run);
    out
}

fn base64(data: &[u8], pad: bool) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(A[(v >> (18 - 6 * i) & 0x3f) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// A LIST / LSUB pattern: a list-char token or a string.
#[derive(Arbitrary, Debug)]
struct GPattern {
    token: bool,
    s: GStr,
    wildcards: Vec<(u8, bool)>,
}

impl GPattern {
    fn get(&self) -> ListMailbox<'static> {
        let mut content = self.s.content();
        for &(at, star) in self.wildcards.iter().take(4) {
            let at = at as usize % (content.len() + 1);
            content.insert(at, if star { b'*' } else { b'%' });
        }
        if self.token {
            if let Ok(s) = String::from_utf8(content.clone()) {
                if let Ok(t) = ListCharString::try_from(s) {
                    return ListMailbox::Token(t);
                }
            }
        }
        ListMailbox::String(self.s.istring(content))
    }
}

/// A sequence set: 0 stands for `*`.
#[derive(Arbitrary, Debug)]
struct GSet(u32, Option<u32>, Vec<(u32, Option<u32>)>);

impl GSet {
    fn get(&self) -> CSet {
        let n = |v: u32| NonZeroU32::new(v).map_or(SeqOrUid::Asterisk, SeqOrUid::Value);
        let one = |&(a, b): &(u32, Option<u32>)| match b {
            None => Sequence::Single(n(a)),
            Some(b) => Sequence::Range(n(a), n(b)),
        };
        let seqs: Vec<Sequence> = std::iter::once(&(self.0, self.1))
            .chain(self.2.iter().take(16))
            .map(one)
            .collect();
        CSet(Vec1::try_from(seqs).expect("not empty"))
    }
}

#[derive(Arbitrary, Debug)]
enum GFlag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    Keyword(GAtom),
    Extension(GAtom),
}

impl GFlag {
    fn get(&self) -> CFlag<'static> {
        let s = match self {
            GFlag::Seen => "\\Seen".to_string(),
            GFlag::Answered => "\\answered".to_string(),
            GFlag::Flagged => "\\FLAGGED".to_string(),
            GFlag::Deleted => "\\Deleted".to_string(),
            GFlag::Draft => "\\Draft".to_string(),
            GFlag::Keyword(a) => a.get(),
            GFlag::Extension(a) => {
                let a = a.get();
                // `\Recent` is not a client's to set (RFC 3501 2.3.2): ironpost refuses it.
                if a.eq_ignore_ascii_case("Recent") {
                    "\\XRecent".to_string()
                } else {
                    format!("\\{a}")
                }
            }
        };
        let (system, name) = match s.strip_prefix('\\') {
            Some(n) => (true, n.to_string()),
            None => (false, s),
        };
        let atom = Atom::try_from(name).expect("an atom");
        if system {
            CFlag::system(atom)
        } else {
            CFlag::keyword(atom)
        }
    }
}

fn flags(f: &[GFlag]) -> Vec<CFlag<'static>> {
    f.iter().take(8).map(GFlag::get).collect()
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A date: made by imap-codec from its text (this crate cannot name chrono).
#[derive(Arbitrary, Debug, Clone, Copy)]
struct GDate(u16, u8, u8);

impl GDate {
    fn ymd(&self) -> (u16, u8, u8) {
        let y = self.0 % 10_000;
        let m = self.1 % 12 + 1;
        let mut d = self.2 % 31 + 1;
        if ironpost_core::imap::Date::new(y, m, d).is_none() {
            d = 28;
        }
        (y, m, d)
    }

    fn text(&self) -> String {
        let (y, m, d) = self.ymd();
        format!("{d}-{}-{y:04}", MONTHS[m as usize - 1])
    }

    fn get(&self) -> Option<NaiveDate> {
        let line = format!("t SEARCH ON {}\r\n", self.text());
        let (_, cmd) = CommandCodec::default().decode(line.as_bytes()).ok()?;
        match cmd.body {
            CBody::Search { criteria, .. } => match criteria.as_ref().first() {
                Some(CKey::On(d)) => Some(d.clone()),
                _ => None,
            },
            _ => None,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct GDateTime {
    date: GDate,
    hour: u8,
    minute: u8,
    second: u8,
    east: bool,
    zone_hours: u8,
    zone_minutes: u8,
}

impl GDateTime {
    fn get(&self) -> Option<CDateTime> {
        let text = format!(
            "{:>2}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}",
            self.date.ymd().2,
            MONTHS[self.date.ymd().1 as usize - 1],
            self.date.ymd().0,
            self.hour % 24,
            self.minute % 60,
            self.second % 60,
            if self.east { '+' } else { '-' },
            self.zone_hours % 24,
            self.zone_minutes % 60
        );
        let line = format!("t APPEND x \"{text}\" {{0+}}\r\n\r\n");
        let (_, cmd) = CommandCodec::default().decode(line.as_bytes()).ok()?;
        match cmd.body {
            CBody::Append { date, .. } => date,
            _ => None,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum GKey {
    All,
    Answered,
    Bcc(GStr),
    Before(GDate),
    Body(GStr),
    Cc(GStr),
    Deleted,
    Draft,
    Flagged,
    From(GStr),
    Header(GStr, GStr),
    Keyword(GAtom),
    Larger(u32),
    New,
    Not(Box<GKey>),
    Old,
    On(GDate),
    Or(Box<GKey>, Box<GKey>),
    Recent,
    Seen,
    SentBefore(GDate),
    SentOn(GDate),
    SentSince(GDate),
    Since(GDate),
    Smaller(u32),
    Subject(GStr),
    Text(GStr),
    To(GStr),
    Uid(GSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(GAtom),
    Unseen,
    Set(GSet),
    And(Vec<GKey>),
}

impl GKey {
    fn get(&self, depth: u32) -> CKey<'static> {
        if depth > 8 {
            return CKey::All;
        }
        let s = |g: &GStr| g.astring(g.content());
        let d = |g: &GDate, f: fn(NaiveDate) -> CKey<'static>| g.get().map_or(CKey::All, f);
        let a = |g: &GAtom| Atom::try_from(g.get()).expect("an atom");
        match self {
            GKey::All => CKey::All,
            GKey::Answered => CKey::Answered,
            GKey::Bcc(g) => CKey::Bcc(s(g)),
            GKey::Before(g) => d(g, CKey::Before),
            GKey::Body(g) => CKey::Body(s(g)),
            GKey::Cc(g) => CKey::Cc(s(g)),
            GKey::Deleted => CKey::Deleted,
            GKey::Draft => CKey::Draft,
            GKey::Flagged => CKey::Flagged,
            GKey::From(g) => CKey::From(s(g)),
            GKey::Header(f, v) => CKey::Header(s(f), s(v)),
            GKey::Keyword(g) => CKey::Keyword(a(g)),
            GKey::Larger(n) => CKey::Larger(*n),
            GKey::New => CKey::New,
            GKey::Not(k) => CKey::Not(Box::new(k.get(depth + 1))),
            GKey::Old => CKey::Old,
            GKey::On(g) => d(g, CKey::On),
            GKey::Or(x, y) => CKey::Or(Box::new(x.get(depth + 1)), Box::new(y.get(depth + 1))),
            GKey::Recent => CKey::Recent,
            GKey::Seen => CKey::Seen,
            GKey::SentBefore(g) => d(g, CKey::SentBefore),
            GKey::SentOn(g) => d(g, CKey::SentOn),
            GKey::SentSince(g) => d(g, CKey::SentSince),
            GKey::Since(g) => d(g, CKey::Since),
            GKey::Smaller(n) => CKey::Smaller(*n),
            GKey::Subject(g) => CKey::Subject(s(g)),
            GKey::Text(g) => CKey::Text(s(g)),
            GKey::To(g) => CKey::To(s(g)),
            GKey::Uid(g) => CKey::Uid(g.get()),
            GKey::Unanswered => CKey::Unanswered,
            GKey::Undeleted => CKey::Undeleted,
            GKey::Undraft => CKey::Undraft,
            GKey::Unflagged => CKey::Unflagged,
            GKey::Unkeyword(g) => CKey::Unkeyword(a(g)),
            GKey::Unseen => CKey::Unseen,
            GKey::Set(g) => CKey::SequenceSet(g.get()),
            GKey::And(keys) => {
                let keys: Vec<CKey<'static>> =
                    keys.iter().take(6).map(|k| k.get(depth + 1)).collect();
                Vec1::try_from(keys).map_or(CKey::All, CKey::And)
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum GSection {
    Part(Vec<u8>),
    Header(Vec<u8>),
    HeaderFields(Vec<u8>, GStr, Vec<GStr>),
    HeaderFieldsNot(Vec<u8>, GStr, Vec<GStr>),
    Text(Vec<u8>),
    Mime(Vec<u8>),
}

fn part(p: &[u8]) -> Option<Part> {
    let nums: Vec<NonZeroU32> = p
        .iter()
        .take(6)
        .map(|&n| NonZeroU32::new(u32::from(n).max(1)).expect("non-zero"))
        .collect();
    Vec1::try_from(nums).ok().map(Part)
}

fn part1(p: &[u8]) -> Part {
    part(p).unwrap_or(Part(Vec1::from(NonZeroU32::MIN)))
}

impl GSection {
    fn get(&self) -> CSection<'static> {
        let names = |first: &GStr, more: &[GStr]| {
            let v: Vec<AString<'static>> = std::iter::once(first)
                .chain(more.iter().take(5))
                .map(|g| g.astring(g.content()))
                .collect();
            Vec1::try_from(v).expect("not empty")
        };
        match self {
            GSection::Part(p) => CSection::Part(part1(p)),
            GSection::Header(p) => CSection::Header(part(p)),
            GSection::HeaderFields(p, f, m) => CSection::HeaderFields(part(p), names(f, m)),
            GSection::HeaderFieldsNot(p, f, m) => CSection::HeaderFieldsNot(part(p), names(f, m)),
            GSection::Text(p) => CSection::Text(part(p)),
            GSection::Mime(p) => CSection::Mime(part1(p)),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum GItem {
    Body,
    BodyStructure,
    Envelope,
    Flags,
    InternalDate,
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    Uid,
    BodyExt {
        section: Option<GSection>,
        partial: Option<(u32, u32)>,
        peek: bool,
    },
}

impl GItem {
    fn get(&self) -> MessageDataItemName<'static> {
        use MessageDataItemName as N;
        match self {
            GItem::Body => N::Body,
            GItem::BodyStructure => N::BodyStructure,
            GItem::Envelope => N::Envelope,
            GItem::Flags => N::Flags,
            GItem::InternalDate => N::InternalDate,
            GItem::Rfc822 => N::Rfc822,
            GItem::Rfc822Header => N::Rfc822Header,
            GItem::Rfc822Size => N::Rfc822Size,
            GItem::Rfc822Text => N::Rfc822Text,
            GItem::Uid => N::Uid,
            GItem::BodyExt {
                section,
                partial,
                peek,
            } => N::BodyExt {
                section: section.as_ref().map(GSection::get),
                partial: partial.map(|(o, l)| (o, NonZeroU32::new(l.max(1)).expect("non-zero"))),
                peek: *peek,
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum GFetch {
    All,
    Fast,
    Full,
    Items(GItem, Vec<GItem>),
}

#[derive(Arbitrary, Debug)]
enum GMech {
    Plain,
    Login,
    Other(GAtom),
}

#[derive(Arbitrary, Debug)]
enum GCap {
    Utf8Accept,
    CondStore,
    Other(GAtom),
}

#[derive(Arbitrary, Debug)]
enum GCmd {
    Capability,
    Noop,
    Logout,
    Authenticate(GMech, Option<Vec<u8>>),
    Login(GStr, GStr),
    Enable(GCap, Vec<GCap>),
    Id(Option<Vec<(GStr, Option<GStr>)>>),
    Namespace,
    Select(GName),
    Examine(GName),
    Create(GName),
    Delete(GName),
    Rename(GName, GName),
    Subscribe(GName),
    Unsubscribe(GName),
    List(GName, GPattern),
    Lsub(GName, GPattern),
    Status(GName, u8, Vec<u8>),
    Append {
        mailbox: GName,
        flags: Vec<GFlag>,
        date: Option<GDateTime>,
        plus: bool,
        message: Vec<u8>,
    },
    Idle,
    Check,
    Close,
    Unselect,
    Expunge,
    UidExpunge(GSet),
    Search {
        uid: bool,
        charset: Option<(bool, GAtom)>,
        first: GKey,
        more: Vec<GKey>,
    },
    Fetch(bool, GSet, GFetch),
    Store {
        uid: bool,
        set: GSet,
        kind: u8,
        silent: bool,
        flags: Vec<GFlag>,
    },
    Copy(bool, GSet, GName),
    Move(bool, GSet, GName),
}

/// What the target expects besides the command: the UTF-8 mailbox names, in order.
struct Built {
    body: CBody<'static>,
    names: Vec<String>,
}

const STATUS: [StatusDataItemName; 6] = [
    StatusDataItemName::Messages,
    StatusDataItemName::Recent,
    StatusDataItemName::UidNext,
    StatusDataItemName::UidValidity,
    StatusDataItemName::Unseen,
    StatusDataItemName::Size,
];

fn build(g: &GCmd) -> Built {
    let mut names = Vec::new();
    let mut mb = |n: &GName| {
        let (m, name) = n.get();
        names.push(name);
        m
    };
    let body = match g {
        GCmd::Capability => CBody::Capability,
        GCmd::Noop => CBody::Noop,
        GCmd::Logout => CBody::Logout,
        GCmd::Authenticate(m, ir) => CBody::Authenticate {
            mechanism: match m {
                GMech::Plain => CMech::Plain,
                GMech::Login => CMech::Login,
                GMech::Other(a) => CMech::from(Atom::try_from(a.get()).expect("an atom")),
            },
            initial_response: ir
                .as_ref()
                .map(|b| Secret::new(b[..b.len().min(300)].to_vec().into())),
        },
        GCmd::Login(u, p) => CBody::Login {
            username: u.astring(u.content()),
            password: Secret::new(p.astring(p.content())),
        },
        GCmd::Enable(first, more) => {
            let caps: Vec<CapabilityEnable<'static>> = std::iter::once(first)
                .chain(more.iter().take(5))
                .map(|c| {
                    let s = match c {
                        GCap::Utf8Accept => "UTF8=ACCEPT".to_string(),
                        GCap::CondStore => "condstore".to_string(),
                        GCap::Other(a) => a.get(),
                    };
                    CapabilityEnable::from(Atom::try_from(s).expect("an atom"))
                })
                .collect();
            CBody::Enable {
                capabilities: Vec1::try_from(caps).expect("not empty"),
            }
        }
        GCmd::Id(params) => CBody::Id {
            parameters: params.as_ref().map(|p| {
                p.iter()
                    .take(30)
                    .map(|(k, v)| {
                        (
                            k.istring(k.content()),
                            NString(v.as_ref().map(|v| v.istring(v.content()))),
                        )
                    })
                    .collect()
            }),
        },
        GCmd::Namespace => CBody::Namespace,
        GCmd::Select(n) => CBody::Select {
            mailbox: mb(n),
            parameters: Vec::new(),
        },
        GCmd::Examine(n) => CBody::Examine {
            mailbox: mb(n),
            parameters: Vec::new(),
        },
        GCmd::Create(n) => CBody::Create { mailbox: mb(n) },
        GCmd::Delete(n) => CBody::Delete { mailbox: mb(n) },
        GCmd::Rename(a, b) => CBody::Rename {
            from: mb(a),
            to: mb(b),
        },
        GCmd::Subscribe(n) => CBody::Subscribe { mailbox: mb(n) },
        GCmd::Unsubscribe(n) => CBody::Unsubscribe { mailbox: mb(n) },
        GCmd::List(r, p) => CBody::List {
            reference: mb(r),
            mailbox_wildcard: p.get(),
        },
        GCmd::Lsub(r, p) => CBody::Lsub {
            reference: mb(r),
            mailbox_wildcard: p.get(),
        },
        GCmd::Status(n, first, more) => CBody::Status {
            mailbox: mb(n),
            item_names: std::iter::once(first)
                .chain(more.iter().take(8))
                .map(|i| STATUS[*i as usize % STATUS.len()].clone())
                .collect::<Vec<_>>()
                .into(),
        },
        GCmd::Append {
            mailbox,
            flags: f,
            date,
            plus,
            message,
        } => {
            let data: Vec<u8> = message.iter().copied().filter(|&b| b != 0).collect();
            let form = if *plus {
                Form::LiteralPlus
            } else {
                Form::Literal
            };
            CBody::Append {
                mailbox: mb(mailbox),
                flags: flags(f),
                date: date.as_ref().and_then(GDateTime::get),
                message: LiteralOrLiteral8::Literal(literal(form, data)),
            }
        }
        GCmd::Idle => CBody::Idle,
        GCmd::Check => CBody::Check,
        GCmd::Close => CBody::Close,
        GCmd::Unselect => CBody::Unselect,
        GCmd::Expunge => CBody::Expunge,
        GCmd::UidExpunge(s) => CBody::ExpungeUid {
            sequence_set: s.get(),
        },
        GCmd::Search {
            uid,
            charset,
            first,
            more,
        } => {
            let keys: Vec<CKey<'static>> = std::iter::once(first)
                .chain(more.iter().take(7))
                .map(|k| k.get(0))
                .collect();
            CBody::Search {
                charset: charset.as_ref().map(|(quoted, a)| {
                    let a = a.get();
                    if *quoted {
                        Charset::Quoted(Quoted::try_from(a).expect("7-bit"))
                    } else {
                        Charset::Atom(Atom::try_from(a).expect("an atom"))
                    }
                }),
                criteria: Vec1::try_from(keys).expect("not empty"),
                uid: *uid,
            }
        }
        GCmd::Fetch(uid, set, f) => CBody::Fetch {
            sequence_set: set.get(),
            macro_or_item_names: match f {
                GFetch::All => MacroOrMessageDataItemNames::Macro(Macro::All),
                GFetch::Fast => MacroOrMessageDataItemNames::Macro(Macro::Fast),
                GFetch::Full => MacroOrMessageDataItemNames::Macro(Macro::Full),
                GFetch::Items(first, more) => MacroOrMessageDataItemNames::MessageDataItemNames(
                    std::iter::once(first)
                        .chain(more.iter().take(7))
                        .map(GItem::get)
                        .collect(),
                ),
            },
            uid: *uid,
            modifiers: Vec::new(),
        },
        GCmd::Store {
            uid,
            set,
            kind,
            silent,
            flags: f,
        } => CBody::Store {
            sequence_set: set.get(),
            kind: match kind % 3 {
                0 => StoreType::Replace,
                1 => StoreType::Add,
                _ => StoreType::Remove,
            },
            response: if *silent {
                StoreResponse::Silent
            } else {
                StoreResponse::Answer
            },
            flags: flags(f),
            uid: *uid,
            modifiers: Vec::new(),
        },
        GCmd::Copy(uid, set, n) => CBody::Copy {
            sequence_set: set.get(),
            mailbox: mb(n),
            uid: *uid,
        },
        GCmd::Move(uid, set, n) => CBody::Move {
            sequence_set: set.get(),
            mailbox: mb(n),
            uid: *uid,
        },
    };
    Built { body, names }
}

// ---------------------------------------------------------------------------------------
// Comparison

fn bytes_of(a: &impl AsRef<[u8]>) -> Vec<u8> {
    a.as_ref().to_vec()
}

fn mailbox_eq(c: &CMailbox<'_>, i: &Mailbox<'_>, name: &str) {
    match (c, i) {
        (CMailbox::Inbox, Mailbox::Inbox) => {
            assert!(name.eq_ignore_ascii_case("INBOX"), "{name:?} read as INBOX")
        }
        (CMailbox::Other(o), Mailbox::Other(s)) => {
            assert_eq!(s.as_bytes(), o.as_ref(), "mailbox octets");
            let decoded = i
                .decode()
                .unwrap_or_else(|e| panic!("{:?} does not decode: {e}", s));
            assert_eq!(decoded, name, "mailbox name after modified UTF-7 decoding");
        }
        (c, i) => panic!("mailbox {c:?} read as {i:?}"),
    }
}

fn codec_mailbox_bytes(c: &CMailbox<'_>) -> Vec<u8> {
    match c {
        CMailbox::Inbox => b"INBOX".to_vec(),
        CMailbox::Other(o) => bytes_of(o),
    }
}

/// A sequence set as `(start, end)` pairs, 0 for `*`.
fn codec_set(s: &CSet) -> Vec<(u32, u32)> {
    let n = |v: &SeqOrUid| match v {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => 0,
    };
    s.0.as_ref()
        .iter()
        .map(|q| match q {
            Sequence::Single(a) => (n(a), n(a)),
            Sequence::Range(a, b) => (n(a), n(b)),
        })
        .collect()
}

fn ip_set(s: &SequenceSet<'_>) -> Vec<(u32, u32)> {
    let n = |v: SeqNo| match v {
        SeqNo::Value(v) => v,
        SeqNo::Largest => 0,
    };
    s.iter().map(|r| (n(r.start), n(r.end))).collect()
}

fn set_eq(c: &CSet, i: &SequenceSet<'_>) {
    assert_eq!(ip_set(i), codec_set(c), "sequence set {i}");
}

fn flags_eq(c: &[CFlag<'_>], i: &[Flag<'_>]) {
    let c: Vec<String> = c.iter().map(ToString::to_string).collect();
    let i: Vec<String> = i.iter().map(ToString::to_string).collect();
    assert_eq!(i, c, "flags");
}

/// A search key as a plain tree.
#[derive(Debug, PartialEq, Eq)]
enum K {
    Unit(&'static str),
    S(&'static str, Vec<u8>),
    H(Vec<u8>, Vec<u8>),
    D(&'static str, String),
    N(&'static str, u32),
    Set(&'static str, Vec<(u32, u32)>),
    Not(Box<K>),
    Or(Box<K>, Box<K>),
    And(Vec<K>),
}

fn codec_key(k: &CKey<'_>) -> K {
    let d = |name, d: &NaiveDate| K::D(name, d.as_ref().format("%Y-%m-%d").to_string());
    match k {
        CKey::And(v) => K::And(v.as_ref().iter().map(codec_key).collect()),
        CKey::SequenceSet(s) => K::Set("SET", codec_set(s)),
        CKey::All => K::Unit("ALL"),
        CKey::Answered => K::Unit("ANSWERED"),
        CKey::Bcc(s) => K::S("BCC", bytes_of(s)),
        CKey::Before(x) => d("BEFORE", x),
        CKey::Body(s) => K::S("BODY", bytes_of(s)),
        CKey::Cc(s) => K::S("CC", bytes_of(s)),
        CKey::Deleted => K::Unit("DELETED"),
        CKey::Draft => K::Unit("DRAFT"),
        CKey::Flagged => K::Unit("FLAGGED"),
        CKey::From(s) => K::S("FROM", bytes_of(s)),
        CKey::Header(f, v) => K::H(bytes_of(f), bytes_of(v)),
        CKey::Keyword(a) => K::S("KEYWORD", a.inner().as_bytes().to_vec()),
        CKey::Larger(n) => K::N("LARGER", *n),
        CKey::New => K::Unit("NEW"),
        CKey::Not(k) => K::Not(Box::new(codec_key(k))),
        CKey::Old => K::Unit("OLD"),
        CKey::On(x) => d("ON", x),
        CKey::Or(a, b) => K::Or(Box::new(codec_key(a)), Box::new(codec_key(b))),
        CKey::Recent => K::Unit("RECENT"),
        CKey::Seen => K::Unit("SEEN"),
        CKey::SentBefore(x) => d("SENTBEFORE", x),
        CKey::SentOn(x) => d("SENTON", x),
        CKey::SentSince(x) => d("SENTSINCE", x),
        CKey::Since(x) => d("SINCE", x),
        CKey::Smaller(n) => K::N("SMALLER", *n),
        CKey::Subject(s) => K::S("SUBJECT", bytes_of(s)),
        CKey::Text(s) => K::S("TEXT", bytes_of(s)),
        CKey::To(s) => K::S("TO", bytes_of(s)),
        CKey::Uid(s) => K::Set("UID", codec_set(s)),
        CKey::Unanswered => K::Unit("UNANSWERED"),
        CKey::Undeleted => K::Unit("UNDELETED"),
        CKey::Undraft => K::Unit("UNDRAFT"),
        CKey::Unflagged => K::Unit("UNFLAGGED"),
        CKey::Unkeyword(a) => K::S("UNKEYWORD", a.inner().as_bytes().to_vec()),
        CKey::Unseen => K::Unit("UNSEEN"),
        other => panic!("not generated: {other:?}"),
    }
}

fn ip_key(k: &SearchKey<'_>) -> K {
    use SearchKey as S;
    let d = |name, d: &ironpost_core::imap::Date| {
        K::D(name, format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
    };
    let s = |name, s: &ironpost_core::imap::IString<'_>| K::S(name, s.as_bytes().to_vec());
    match k {
        S::All => K::Unit("ALL"),
        S::Answered => K::Unit("ANSWERED"),
        S::Bcc(x) => s("BCC", x),
        S::Before(x) => d("BEFORE", x),
        S::Body(x) => s("BODY", x),
        S::Cc(x) => s("CC", x),
        S::Deleted => K::Unit("DELETED"),
        S::Draft => K::Unit("DRAFT"),
        S::Flagged => K::Unit("FLAGGED"),
        S::From(x) => s("FROM", x),
        S::Header(f, v) => K::H(f.as_bytes().to_vec(), v.as_bytes().to_vec()),
        S::Keyword(a) => K::S("KEYWORD", a.as_bytes().to_vec()),
        S::Larger(n) => K::N("LARGER", *n),
        S::New => K::Unit("NEW"),
        S::Not(k) => K::Not(Box::new(ip_key(k))),
        S::Old => K::Unit("OLD"),
        S::On(x) => d("ON", x),
        S::Or(a, b) => K::Or(Box::new(ip_key(a)), Box::new(ip_key(b))),
        S::Recent => K::Unit("RECENT"),
        S::Seen => K::Unit("SEEN"),
        S::SentBefore(x) => d("SENTBEFORE", x),
        S::SentOn(x) => d("SENTON", x),
        S::SentSince(x) => d("SENTSINCE", x),
        S::Since(x) => d("SINCE", x),
        S::Smaller(n) => K::N("SMALLER", *n),
        S::Subject(x) => s("SUBJECT", x),
        S::Text(x) => s("TEXT", x),
        S::To(x) => s("TO", x),
        S::Uid(set) => K::Set("UID", ip_set(set)),
        S::Unanswered => K::Unit("UNANSWERED"),
        S::Undeleted => K::Unit("UNDELETED"),
        S::Undraft => K::Unit("UNDRAFT"),
        S::Unflagged => K::Unit("UNFLAGGED"),
        S::Unkeyword(a) => K::S("UNKEYWORD", a.as_bytes().to_vec()),
        S::Unseen => K::Unit("UNSEEN"),
        S::SequenceSet(set) => K::Set("SET", ip_set(set)),
        S::And(v) => K::And(v.iter().map(ip_key).collect()),
    }
}

/// A FETCH attribute as text, section and partial compared as plain values.
fn codec_att(a: &MessageDataItemName<'_>) -> String {
    use MessageDataItemName as N;
    match a {
        N::Body => "BODY".into(),
        N::BodyExt {
            section,
            partial,
            peek,
        } => format!(
            "BODY{} {:?} {:?}",
            if *peek { ".PEEK" } else { "" },
            iv::codec_section(section),
            partial.map(|(o, l)| (o, l.get()))
        ),
        N::BodyStructure => "BODYSTRUCTURE".into(),
        N::Envelope => "ENVELOPE".into(),
        N::Flags => "FLAGS".into(),
        N::InternalDate => "INTERNALDATE".into(),
        N::Rfc822 => "RFC822".into(),
        N::Rfc822Header => "RFC822.HEADER".into(),
        N::Rfc822Size => "RFC822.SIZE".into(),
        N::Rfc822Text => "RFC822.TEXT".into(),
        N::Uid => "UID".into(),
        other => panic!("not generated: {other:?}"),
    }
}

fn ip_att(a: &FetchAttr<'_>) -> String {
    use FetchAttr as A;
    match a {
        A::Body => "BODY".into(),
        A::BodySection {
            peek,
            section,
            partial,
        } => format!(
            "BODY{} {:?} {:?}",
            if *peek { ".PEEK" } else { "" },
            iv::section(section),
            partial.map(|p| (p.offset, p.length))
        ),
        A::BodyStructure => "BODYSTRUCTURE".into(),
        A::Envelope => "ENVELOPE".into(),
        A::Flags => "FLAGS".into(),
        A::InternalDate => "INTERNALDATE".into(),
        A::Rfc822 => "RFC822".into(),
        A::Rfc822Header => "RFC822.HEADER".into(),
        A::Rfc822Size => "RFC822.SIZE".into(),
        A::Rfc822Text => "RFC822.TEXT".into(),
        A::Uid => "UID".into(),
    }
}

fn status_items(items: &[StatusDataItemName]) -> StatusItems {
    let mut s = StatusItems::default();
    for i in items {
        match i {
            StatusDataItemName::Messages => s.messages = true,
            StatusDataItemName::Recent => s.recent = true,
            StatusDataItemName::UidNext => s.uid_next = true,
            StatusDataItemName::UidValidity => s.uid_validity = true,
            StatusDataItemName::Unseen => s.unseen = true,
            StatusDataItemName::Size => s.size = true,
            other => panic!("not generated: {other:?}"),
        }
    }
    s
}

/// Compares what ironpost parsed with what imap-codec was given.
fn same(c: &CBody<'_>, i: &CommandBody<'_>, names: &[String]) {
    let mut names = names.iter();
    let mut name = || names.next().expect("a name").as_str();
    match (c, i) {
        (CBody::Capability, CommandBody::Capability)
        | (CBody::Noop, CommandBody::Noop)
        | (CBody::Logout, CommandBody::Logout)
        | (CBody::Namespace, CommandBody::Namespace)
        | (CBody::Idle, CommandBody::Idle)
        | (CBody::Check, CommandBody::Check)
        | (CBody::Close, CommandBody::Close)
        | (CBody::Unselect, CommandBody::Unselect)
        | (CBody::Expunge, CommandBody::Expunge) => {}
        (
            CBody::Authenticate {
                mechanism,
                initial_response,
            },
            CommandBody::Authenticate {
                mechanism: m,
                initial,
            },
        ) => {
            let got = match m {
                AuthMechanism::Plain => "PLAIN",
                AuthMechanism::Login => "LOGIN",
                AuthMechanism::Other(s) => s,
            };
            assert!(
                got.eq_ignore_ascii_case(&mechanism.to_string()),
                "mechanism {mechanism} read as {m:?}"
            );
            match (initial_response.as_ref().map(|s| s.declassify()), initial) {
                (None, None) => {}
                (Some(b), Some(InitialResponse::Empty)) if b.is_empty() => {}
                (Some(b), Some(InitialResponse::Base64(s))) if !b.is_empty() => {
                    assert_eq!(s.as_ref(), base64(b, true), "initial response")
                }
                (b, r) => panic!("initial response {b:?} read as {r:?}"),
            }
        }
        (
            CBody::Login { username, password },
            CommandBody::Login {
                username: u,
                password: p,
            },
        ) => {
            assert_eq!(u.as_bytes(), username.as_ref(), "user name");
            assert_eq!(p.as_bytes(), password.declassify().as_ref(), "password");
        }
        (CBody::Enable { capabilities }, CommandBody::Enable(caps)) => {
            let want: Vec<String> = capabilities
                .as_ref()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(caps, &want, "ENABLE capabilities");
        }
        (CBody::Id { parameters }, CommandBody::Id(p)) => {
            let want = parameters.as_ref().map(|p| {
                p.iter()
                    .map(|(k, v)| (bytes_of(k), v.0.as_ref().map(bytes_of)))
                    .collect::<Vec<_>>()
            });
            let got = p.as_ref().map(|p| {
                p.iter()
                    .map(|(k, v)| {
                        (
                            k.as_bytes().to_vec(),
                            v.as_ref().map(|v| v.as_bytes().to_vec()),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "ID parameters");
        }
        (CBody::Select { mailbox, .. }, CommandBody::Select { mailbox: m })
        | (CBody::Examine { mailbox, .. }, CommandBody::Examine { mailbox: m })
        | (CBody::Create { mailbox }, CommandBody::Create { mailbox: m })
        | (CBody::Delete { mailbox }, CommandBody::Delete { mailbox: m })
        | (CBody::Subscribe { mailbox }, CommandBody::Subscribe { mailbox: m })
        | (CBody::Unsubscribe { mailbox }, CommandBody::Unsubscribe { mailbox: m }) => {
            mailbox_eq(mailbox, m, name())
        }
        (CBody::Rename { from, to }, CommandBody::Rename { from: f, to: t }) => {
            mailbox_eq(from, f, name());
            mailbox_eq(to, t, name());
        }
        (
            CBody::List {
                reference,
                mailbox_wildcard,
            },
            CommandBody::List {
                reference: r,
                patterns,
                select,
                ret,
            },
        ) => {
            assert_eq!(r.as_bytes(), codec_mailbox_bytes(reference), "reference");
            let want = match mailbox_wildcard {
                ListMailbox::Token(t) => bytes_of(t),
                ListMailbox::String(s) => bytes_of(s),
            };
            let got: Vec<&[u8]> = patterns.iter().map(|p| p.as_bytes()).collect();
            assert_eq!(got, [want.as_slice()], "LIST pattern");
            assert_eq!(*select, Default::default());
            assert_eq!(*ret, Default::default());
        }
        (
            CBody::Lsub {
                reference,
                mailbox_wildcard,
            },
            CommandBody::Lsub {
                reference: r,
                pattern,
            },
        ) => {
            assert_eq!(r.as_bytes(), codec_mailbox_bytes(reference), "reference");
            let want = match mailbox_wildcard {
                ListMailbox::Token(t) => bytes_of(t),
                ListMailbox::String(s) => bytes_of(s),
            };
            assert_eq!(pattern.as_bytes(), want, "LSUB pattern");
        }
        (
            CBody::Status {
                mailbox,
                item_names,
            },
            CommandBody::Status { mailbox: m, items },
        ) => {
            mailbox_eq(mailbox, m, name());
            assert_eq!(*items, status_items(item_names), "STATUS items");
        }
        (
            CBody::Append {
                mailbox,
                flags,
                date,
                message,
            },
            CommandBody::Append {
                mailbox: m,
                flags: f,
                date: d,
                message: h,
                utf8,
            },
        ) => {
            mailbox_eq(mailbox, m, name());
            flags_eq(flags, f);
            match (date, d) {
                (None, None) => {}
                (Some(c), Some(d)) => {
                    let c = c.as_ref();
                    assert_eq!(d.to_unix(), c.timestamp(), "APPEND date-time");
                    assert_eq!(
                        i32::from(d.offset_minutes) * 60,
                        c.offset().local_minus_utc(),
                        "APPEND zone"
                    );
                }
                (c, d) => panic!("date-time {c:?} read as {d:?}"),
            }
            let LiteralOrLiteral8::Literal(l) = message else {
                panic!("not generated")
            };
            assert_eq!(h.size as usize, l.data().len(), "message size");
            assert_eq!(h.sync, l.mode() == LiteralMode::Sync, "literal kind");
            assert!(!utf8);
        }
        (CBody::ExpungeUid { sequence_set }, CommandBody::UidExpunge(s)) => set_eq(sequence_set, s),
        (
            CBody::Search {
                charset,
                criteria,
                uid,
            },
            CommandBody::Search {
                uid: u,
                charset: cs,
                criteria: k,
            },
        ) => {
            assert_eq!(uid, u, "UID SEARCH");
            let want = charset.as_ref().map(|c| match c {
                Charset::Atom(a) => a.inner().as_bytes().to_vec(),
                Charset::Quoted(q) => q.inner().as_bytes().to_vec(),
            });
            assert_eq!(cs.as_ref().map(|c| c.as_bytes().to_vec()), want, "CHARSET");
            let want: Vec<K> = criteria.as_ref().iter().map(codec_key).collect();
            let got: Vec<K> = k.iter().map(ip_key).collect();
            assert_eq!(got, want, "search keys");
        }
        (
            CBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            },
            CommandBody::Fetch { uid: u, set, items },
        ) => {
            assert_eq!(uid, u, "UID FETCH");
            set_eq(sequence_set, set);
            match (macro_or_item_names, items) {
                (MacroOrMessageDataItemNames::Macro(Macro::All), FetchItems::All)
                | (MacroOrMessageDataItemNames::Macro(Macro::Fast), FetchItems::Fast)
                | (MacroOrMessageDataItemNames::Macro(Macro::Full), FetchItems::Full) => {}
                (MacroOrMessageDataItemNames::MessageDataItemNames(n), FetchItems::Attrs(a)) => {
                    let want: Vec<String> = n.iter().map(codec_att).collect();
                    let got: Vec<String> = a.iter().map(ip_att).collect();
                    assert_eq!(got, want, "FETCH attributes");
                }
                (c, i) => panic!("FETCH {c:?} read as {i:?}"),
            }
        }
        (
            CBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            },
            CommandBody::Store {
                uid: u,
                set,
                action,
                silent,
                flags: f,
            },
        ) => {
            assert_eq!(uid, u, "UID STORE");
            set_eq(sequence_set, set);
            let want = match kind {
                StoreType::Replace => StoreAction::Replace,
                StoreType::Add => StoreAction::Add,
                StoreType::Remove => StoreAction::Remove,
            };
            assert_eq!(*action, want, "STORE action");
            assert_eq!(*silent, *response == StoreResponse::Silent, ".SILENT");
            flags_eq(flags, f);
        }
        (
            CBody::Copy {
                sequence_set,
                mailbox,
                uid,
            },
            CommandBody::Copy {
                uid: u,
                set,
                mailbox: m,
            },
        )
        | (
            CBody::Move {
                sequence_set,
                mailbox,
                uid,
            },
            CommandBody::Move {
                uid: u,
                set,
                mailbox: m,
            },
        ) => {
            assert_eq!(uid, u, "UID form");
            set_eq(sequence_set, set);
            mailbox_eq(mailbox, m, name());
        }
        (c, i) => panic!("{} read as {}", c.name(), i.name()),
    }
}

// ---------------------------------------------------------------------------------------
// The target

fn one(tag: &GTag, g: &GCmd) {
    let limits = Limits::DEFAULT;
    let Built { body, names } = build(g);
    let tag = tag.get();
    let cmd = CCommand {
        tag: Tag::try_from(tag.clone()).expect("a tag"),
        body,
    };
    let fragments: Vec<Fragment> = CommandCodec::default().encode(&cmd).collect();
    let wire: Vec<u8> = fragments
        .iter()
        .flat_map(|f| match f {
            Fragment::Line { data } | Fragment::Literal { data, .. } => data.clone(),
        })
        .collect();
    if trace() {
        eprintln!("{}", String::from_utf8_lossy(&wire));
    }
    let is_append = matches!(cmd.body, CBody::Append { .. });
    let last_literal = fragments
        .iter()
        .rposition(|f| matches!(f, Fragment::Literal { .. }));

    // Before each literal, the parser asks for it (or, for APPEND's message, returns the
    // command).
    let mut offset = 0;
    for (k, f) in fragments.iter().enumerate() {
        match f {
            Fragment::Line { data } => offset += data.len(),
            Fragment::Literal { data, mode } => {
                let r = parse_command(&wire[..offset], &limits);
                if is_append && Some(k) == last_literal {
                    assert!(
                        matches!(r, Ok((n, _)) if n == offset),
                        "APPEND not returned at its message literal: {r:?}"
                    );
                } else {
                    // An empty literal is already complete: the parser reads on.
                    let want = if data.is_empty() {
                        Needed::Line
                    } else {
                        Needed::Literal {
                            size: data.len() as u32,
                            sync: *mode == LiteralMode::Sync,
                            offset,
                        }
                    };
                    assert_eq!(
                        r.map(|_| ()),
                        Err(ParseError::Incomplete(want)),
                        "what the parser waits for at octet {offset}"
                    );
                }
                offset += data.len();
            }
        }
    }

    let (n, parsed) = match parse_command(&wire, &limits) {
        Ok(r) => r,
        Err(e) => panic!(
            "ironpost refuses {:?}: {e:?}",
            String::from_utf8_lossy(&wire)
        ),
    };
    if trace() {
        eprintln!("{parsed:?}");
    }
    assert_eq!(parsed.tag, tag, "tag");
    if let CommandBody::Append { message, .. } = &parsed.body {
        let end = n + message.size as usize;
        let Some(CBody::Append {
            message: LiteralOrLiteral8::Literal(l),
            ..
        }) = Some(&cmd.body)
        else {
            panic!("APPEND read from {}", cmd.body.name());
        };
        assert!(end <= wire.len(), "message literal beyond the command");
        assert_eq!(&wire[n..end], l.data(), "message octets");
        let tail = parse_append_end(&wire[end..], &limits)
            .unwrap_or_else(|e| panic!("end of APPEND refused: {e:?}"));
        assert_eq!(end + tail, wire.len(), "APPEND did not end with its line");
    } else {
        assert_eq!(n, wire.len(), "consumed {n} of {} octets", wire.len());
    }
    same(&cmd.body, &parsed.body, &names);
}

fuzz_target!(|input: &[u8]| {
    let mut u = Unstructured::new(input);
    for _ in 0..4 {
        if u.is_empty() {
            return;
        }
        let Ok((tag, cmd)) = <(GTag, GCmd)>::arbitrary(&mut u) else {
            return;
        };
        if trace() {
            eprintln!("{cmd:?}");
        }
        one(&tag, &cmd);
    }
});
