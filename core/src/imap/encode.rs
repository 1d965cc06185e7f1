//! IMAP server responses (RFC 3501 7), written into a caller's `Vec<u8>`.
//!
//! - Status responses, tagged or untagged, with their response codes: [`status`].
//! - Command continuation requests: [`continuation`], [`continuation_base64`].
//! - Untagged data (`* CAPABILITY`, `* LIST`, `* 12 EXISTS`, ...): [`Data::write_to`].
//! - FETCH responses, item by item, with literals the caller may stream: [`FetchWriter`].
//!
//! Strings are written in the lightest form the grammar allows: an atom where an `astring`
//! may be one, else a quoted string, else a literal (`{n}\r\n` and the octets) for anything
//! with CR, LF, NUL or 8-bit octets, or longer than [`MAX_QUOTED`]. Text that a peer may
//! have chosen (a status text) never carries CR or LF, so it cannot forge response lines.

use base64::Engine as _;

use super::types::{DateTime, Flag, IString, Section, SectionText};
use super::utf7;

/// Strings longer than this are sent as literals even when they could be quoted.
pub const MAX_QUOTED: usize = 1024;

// ---------------------------------------------------------------------------------------
// Strings

/// Whether `s` can be sent as a quoted string: TEXT-CHARs (7-bit, no NUL, CR or LF), not
/// too long. `None` if not, else whether it has a `"` or `\` to escape.
fn quoted_escapes(s: &[u8]) -> Option<bool> {
    if s.len() > MAX_QUOTED {
        return None;
    }
    // One pass without early exit, over octets rather than booleans, so that the compiler
    // vectorises it.
    let (mut bad, mut esc) = (0u8, 0u8);
    for &b in s {
        bad |= u8::from(b == 0 || b >= 0x80) | u8::from(b == b'\r') | u8::from(b == b'\n');
        esc |= u8::from(b == b'"') | u8::from(b == b'\\');
    }
    (bad == 0).then_some(esc != 0)
}

fn is_astring_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
}

/// Writes `{len}\r\n`: the caller follows it with exactly `len` octets.
pub fn write_literal_header(out: &mut Vec<u8>, len: u64) {
    out.push(b'{');
    push_num(out, len);
    out.extend_from_slice(b"}\r\n");
}

fn write_quoted(out: &mut Vec<u8>, s: &[u8], escapes: bool) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    if escapes {
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
    } else {
        out.extend_from_slice(s);
    }
    out.push(b'"');
}

/// Writes a `string`: quoted or a literal.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    if let Some(escapes) = quoted_escapes(s) {
        write_quoted(out, s, escapes);
    } else {
        write_literal_header(out, s.len() as u64);
        out.extend_from_slice(s);
    }
}

/// Writes an `astring`: an atom when it can be one (never `NIL`, which a careless client
/// might read as nil), else as [`write_string`].
pub fn write_astring(out: &mut Vec<u8>, s: &[u8]) {
    if !s.is_empty()
        && s.len() <= MAX_QUOTED
        && s.iter().all(|&b| is_astring_char(b))
        && !s.eq_ignore_ascii_case(b"NIL")
    {
        out.extend_from_slice(s);
    } else {
        write_string(out, s);
    }
}

/// Writes an `nstring`: `NIL` for `None`.
pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => write_string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Writes a mailbox name given in UTF-8: modified UTF-7 encoded, as an astring.
pub fn write_mailbox(out: &mut Vec<u8>, name: &str) {
    write_astring(out, utf7::encode(name).as_bytes());
}

/// Writes a mailbox name for a client that enabled UTF8=ACCEPT (RFC 6855 3): the UTF-8 as
/// is, an atom when it is one, else a quoted string (RFC 6855 allows UTF8-2/3/4 in quoted
/// strings), else (CR, LF, NUL, or too long) a literal.
pub fn write_mailbox_utf8(out: &mut Vec<u8>, name: &str) {
    if name.is_ascii() {
        write_astring(out, name.as_bytes());
    } else {
        write_string_utf8(out, name);
    }
}

/// Writes a `string` of UTF-8 text for a client that enabled UTF8=ACCEPT: quoted unless it
/// has CR, LF or NUL or is too long (then a literal).
fn write_string_utf8(out: &mut Vec<u8>, text: &str) {
    let s = text.as_bytes();
    if s.len() <= MAX_QUOTED && !s.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
        let escapes = s.iter().any(|&b| b == b'"' || b == b'\\');
        write_quoted(out, s, escapes);
    } else {
        write_literal_header(out, s.len() as u64);
        out.extend_from_slice(s);
    }
}

/// Writes a mailbox name in the session's form: UTF-8 if `utf8` (the client enabled
/// UTF8=ACCEPT), else modified UTF-7.
pub fn write_mailbox_as(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if utf8 {
        write_mailbox_utf8(out, name);
    } else {
        write_mailbox(out, name);
    }
}

fn nstring(out: &mut Vec<u8>, s: &Option<IString<'_>>) {
    write_nstring(out, s.as_ref().map(IString::as_bytes));
}

fn push_num(out: &mut Vec<u8>, n: impl Into<u64>) {
    let mut buf = [0u8; 20];
    let mut n: u64 = n.into();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes free text, dropping CR, LF and NUL.
fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().filter(|&b| !matches!(b, b'\r' | b'\n' | 0)));
}

/// Writes `(a b c)` with `item` for each element.
fn list<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'(');
    for (n, x) in items.iter().enumerate() {
        if n > 0 {
            out.push(b' ');
        }
        item(out, x);
    }
    out.push(b')');
}

/// Writes a hierarchy delimiter: a quoted character, or NIL.
fn delimiter(out: &mut Vec<u8>, d: Option<char>) {
    match d {
        Some(c) => {
            let mut buf = [0u8; 4];
            write_string(out, c.encode_utf8(&mut buf).as_bytes());
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

fn flag(out: &mut Vec<u8>, f: &Flag<'_>) {
    match f {
        Flag::Seen => out.extend_from_slice(b"\\Seen"),
        Flag::Answered => out.extend_from_slice(b"\\Answered"),
        Flag::Flagged => out.extend_from_slice(b"\\Flagged"),
        Flag::Deleted => out.extend_from_slice(b"\\Deleted"),
        Flag::Draft => out.extend_from_slice(b"\\Draft"),
        Flag::Recent => out.extend_from_slice(b"\\Recent"),
        Flag::Keyword(k) => out.extend_from_slice(k.as_bytes()),
        Flag::Extension(k) => {
            out.push(b'\\');
            out.extend_from_slice(k.as_bytes());
        }
    }
}

/// Writes a UID set compactly: ascending runs become ranges (`1:3,5,7:8`), in the given
/// order (COPYUID's two sets correspond element by element).
pub fn write_uid_set(out: &mut Vec<u8>, uids: &[u32]) {
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut j = i;
        while j + 1 < uids.len() && uids[j].checked_add(1) == Some(uids[j + 1]) {
            j += 1;
        }
        if i > 0 {
            out.push(b',');
        }
        push_num(out, start);
        if j > i {
            out.push(b':');
            push_num(out, uids[j]);
        }
        i = j + 1;
    }
}

// ---------------------------------------------------------------------------------------
// Status responses

/// The condition of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    /// Untagged only: the greeting of a pre-authenticated connection.
    PreAuth,
    /// Untagged only: the server is closing the connection.
    Bye,
}

impl Status {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Status::Ok => b"OK",
            Status::No => b"NO",
            Status::Bad => b"BAD",
            Status::PreAuth => b"PREAUTH",
            Status::Bye => b"BYE",
        }
    }
}

/// A response code, written in brackets before the text of a status response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code<'a> {
    Alert,
    /// The charsets SEARCH supports (may be empty).
    BadCharset(&'a [&'a str]),
    Capability(&'a [&'a str]),
    Parse,
    /// `PERMANENTFLAGS (flags [\*])`: `new_keywords` adds `\*`.
    PermanentFlags {
        flags: &'a [Flag<'a>],
        new_keywords: bool,
    },
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    /// RFC 4315.
    AppendUid {
        uid_validity: u32,
        uid: u32,
    },
    /// RFC 4315: `source[i]` was copied to `dest[i]`.
    CopyUid {
        uid_validity: u32,
        source: &'a [u32],
        dest: &'a [u32],
    },
    /// RFC 4315.
    UidNotSticky,
    /// RFC 7162: the previous mailbox is closed (sent before the new SELECT's data).
    Closed,
    /// RFC 7162.
    HighestModSeq(u64),
    /// RFC 7162.
    NoModSeq,
    // RFC 5530.
    Unavailable,
    AuthenticationFailed,
    AuthorizationFailed,
    Expired,
    PrivacyRequired,
    ContactAdmin,
    NoPerm,
    InUse,
    ExpungeIssued,
    Corruption,
    ServerBug,
    ClientBug,
    Cannot,
    Limit,
    OverQuota,
    AlreadyExists,
    Nonexistent,
    /// Any other code: an atom and optional text (no `]`).
    Other {
        name: &'a str,
        text: Option<&'a str>,
    },
}

impl Code<'_> {
    fn write_to(&self, out: &mut Vec<u8>) {
        let simple: &[u8] = match self {
            Code::Alert => b"ALERT",
            Code::Parse => b"PARSE",
            Code::ReadOnly => b"READ-ONLY",
            Code::ReadWrite => b"READ-WRITE",
            Code::TryCreate => b"TRYCREATE",
            Code::UidNotSticky => b"UIDNOTSTICKY",
            Code::Closed => b"CLOSED",
            Code::NoModSeq => b"NOMODSEQ",
            Code::Unavailable => b"UNAVAILABLE",
            Code::AuthenticationFailed => b"AUTHENTICATIONFAILED",
            Code::AuthorizationFailed => b"AUTHORIZATIONFAILED",
            Code::Expired => b"EXPIRED",
            Code::PrivacyRequired => b"PRIVACYREQUIRED",
            Code::ContactAdmin => b"CONTACTADMIN",
            Code::NoPerm => b"NOPERM",
            Code::InUse => b"INUSE",
            Code::ExpungeIssued => b"EXPUNGEISSUED",
            Code::Corruption => b"CORRUPTION",
            Code::ServerBug => b"SERVERBUG",
            Code::ClientBug => b"CLIENTBUG",
            Code::Cannot => b"CANNOT",
            Code::Limit => b"LIMIT",
            Code::OverQuota => b"OVERQUOTA",
            Code::AlreadyExists => b"ALREADYEXISTS",
            Code::Nonexistent => b"NONEXISTENT",
            Code::BadCharset(charsets) => {
                out.extend_from_slice(b"BADCHARSET");
                if !charsets.is_empty() {
                    out.push(b' ');
                    list(out, charsets, |o, c| write_astring(o, c.as_bytes()));
                }
                return;
            }
            Code::Capability(caps) => {
                out.extend_from_slice(b"CAPABILITY");
                for c in *caps {
                    out.push(b' ');
                    push_text(out, c);
                }
                return;
            }
            Code::PermanentFlags {
                flags,
                new_keywords,
            } => {
                out.extend_from_slice(b"PERMANENTFLAGS (");
                for (n, f) in flags.iter().enumerate() {
                    if n > 0 {
                        out.push(b' ');
                    }
                    flag(out, f);
                }
                if *new_keywords {
                    if !flags.is_empty() {
                        out.push(b' ');
                    }
                    out.extend_from_slice(b"\\*");
                }
                out.push(b')');
                return;
            }
            Code::UidNext(n) => return code_num(out, b"UIDNEXT", *n),
            Code::UidValidity(n) => return code_num(out, b"UIDVALIDITY", *n),
            Code::Unseen(n) => return code_num(out, b"UNSEEN", *n),
            Code::HighestModSeq(n) => return code_num(out, b"HIGHESTMODSEQ", *n),
            Code::AppendUid { uid_validity, uid } => {
                code_num(out, b"APPENDUID", *uid_validity);
                out.push(b' ');
                push_num(out, *uid);
                return;
            }
            Code::CopyUid {
                uid_validity,
                source,
                dest,
            } => {
                code_num(out, b"COPYUID", *uid_validity);
                out.push(b' ');
                write_uid_set(out, source);
                out.push(b' ');
                write_uid_set(out, dest);
                return;
            }
            Code::Other { name, text } => {
                push_text(out, name);
                let keep = |b: &u8| !matches!(b, b'\r' | b'\n' | 0 | b']');
                // The grammar wants at least one character after the space.
                if let Some(t) = text.filter(|t| t.bytes().any(|b| keep(&b))) {
                    out.push(b' ');
                    out.extend(t.bytes().filter(keep));
                }
                return;
            }
        };
        out.extend_from_slice(simple);
    }
}

fn code_num(out: &mut Vec<u8>, name: &[u8], n: impl Into<u64>) {
    out.extend_from_slice(name);
    out.push(b' ');
    push_num(out, n);
}

/// Writes a status response: `tag OK [CODE] text` (tagged) or `* OK [CODE] text`
/// (untagged, `tag` = `None`). RFC 3501 wants `text` non-empty.
pub fn status(
    out: &mut Vec<u8>,
    tag: Option<&str>,
    status: Status,
    code: Option<&Code<'_>>,
    text: &str,
) {
    debug_assert!(
        tag.is_none() || matches!(status, Status::Ok | Status::No | Status::Bad),
        "PREAUTH and BYE are untagged"
    );
    match tag {
        Some(t) => push_text(out, t),
        None => out.push(b'*'),
    }
    out.push(b' ');
    out.extend_from_slice(status.as_bytes());
    out.push(b' ');
    if let Some(c) = code {
        out.push(b'[');
        c.write_to(out);
        out.extend_from_slice(b"] ");
    }
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Writes a continuation request: `+ text`.
pub fn continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Writes a SASL challenge: `+ <base64>` (`+ ` alone for an empty challenge).
pub fn continuation_base64(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(data)
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
}

// ---------------------------------------------------------------------------------------
// Untagged data

/// A mailbox attribute in a LIST or LSUB response (RFC 3501, RFC 5258, RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxAttr<'a> {
    NoInferiors,
    NoSelect,
    Marked,
    Unmarked,
    HasChildren,
    HasNoChildren,
    NonExistent,
    Subscribed,
    Remote,
    // Special use.
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
    /// Another attribute, without its backslash.
    Other(&'a str),
}

impl MailboxAttr<'_> {
    fn write_to(&self, out: &mut Vec<u8>) {
        let name: &str = match self {
            MailboxAttr::NoInferiors => "Noinferiors",
            MailboxAttr::NoSelect => "Noselect",
            MailboxAttr::Marked => "Marked",
            MailboxAttr::Unmarked => "Unmarked",
            MailboxAttr::HasChildren => "HasChildren",
            MailboxAttr::HasNoChildren => "HasNoChildren",
            MailboxAttr::NonExistent => "NonExistent",
            MailboxAttr::Subscribed => "Subscribed",
            MailboxAttr::Remote => "Remote",
            MailboxAttr::All => "All",
            MailboxAttr::Archive => "Archive",
            MailboxAttr::Drafts => "Drafts",
            MailboxAttr::Flagged => "Flagged",
            MailboxAttr::Junk => "Junk",
            MailboxAttr::Sent => "Sent",
            MailboxAttr::Trash => "Trash",
            MailboxAttr::Other(s) => s,
        };
        out.push(b'\\');
        push_text(out, name);
    }
}

/// One mailbox of a LIST or LSUB response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListItem<'a> {
    pub attributes: &'a [MailboxAttr<'a>],
    /// The hierarchy delimiter; `None` for a flat namespace.
    pub delimiter: Option<char>,
    /// The name in UTF-8: it is sent modified-UTF-7 encoded (as is with
    /// [`Data::write_with`] in UTF-8 mode).
    pub name: &'a str,
}

impl ListItem<'_> {
    fn write_to(&self, out: &mut Vec<u8>, utf8: bool) {
        list(out, self.attributes, |o, a| a.write_to(o));
        out.push(b' ');
        delimiter(out, self.delimiter);
        out.push(b' ');
        write_mailbox_as(out, self.name, utf8);
    }
}

/// One item of a STATUS response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusValue {
    Messages(u32),
    Recent(u32),
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    /// RFC 8438.
    Size(u64),
}

/// One namespace of a NAMESPACE response (RFC 2342).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceDesc<'a> {
    /// In UTF-8: sent modified-UTF-7 encoded.
    pub prefix: &'a str,
    pub delimiter: Option<char>,
}

/// Untagged data other than FETCH (see [`FetchWriter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data<'a> {
    /// `* CAPABILITY IMAP4rev1 ...`.
    Capability(&'a [&'a str]),
    List(ListItem<'a>),
    Lsub(ListItem<'a>),
    /// `* STATUS mailbox (MESSAGES 3 ...)`; the mailbox name in UTF-8.
    Status {
        mailbox: &'a str,
        items: &'a [StatusValue],
    },
    /// `* SEARCH 2 84 882`.
    Search(&'a [u32]),
    /// `* FLAGS (...)`.
    Flags(&'a [Flag<'a>]),
    /// `* 23 EXISTS`.
    Exists(u32),
    /// `* 5 RECENT`.
    Recent(u32),
    /// `* 4 EXPUNGE`.
    Expunge(u32),
    /// `* ENABLED ...` (RFC 5161).
    Enabled(&'a [&'a str]),
    /// `* ID (...)` or `* ID NIL` (RFC 2971).
    Id(Option<&'a [(&'a str, Option<&'a str>)]>),
    /// `* NAMESPACE personal other shared` (RFC 2342): an empty slice is NIL.
    Namespace {
        personal: &'a [NamespaceDesc<'a>],
        other: &'a [NamespaceDesc<'a>],
        shared: &'a [NamespaceDesc<'a>],
    },
}

impl Data<'_> {
    /// Writes the response for a client that has not enabled UTF8=ACCEPT: mailbox names in
    /// modified UTF-7.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.write_with(out, false);
    }

    /// Writes the response; mailbox names (LIST, LSUB, STATUS, NAMESPACE prefixes) in UTF-8
    /// if `utf8` (the client enabled UTF8=ACCEPT, RFC 6855 3), else in modified UTF-7.
    pub fn write_with(&self, out: &mut Vec<u8>, utf8: bool) {
        out.extend_from_slice(b"* ");
        match self {
            Data::Capability(caps) => {
                out.extend_from_slice(b"CAPABILITY");
                for c in *caps {
                    out.push(b' ');
                    push_text(out, c);
                }
            }
            Data::List(item) => {
                out.extend_from_slice(b"LIST ");
                item.write_to(out, utf8);
            }
            Data::Lsub(item) => {
                out.extend_from_slice(b"LSUB ");
                item.write_to(out, utf8);
            }
            Data::Status { mailbox, items } => {
                out.extend_from_slice(b"STATUS ");
                write_mailbox_as(out, mailbox, utf8);
                out.push(b' ');
                list(out, items, |o, v| match *v {
                    StatusValue::Messages(n) => code_num(o, b"MESSAGES", n),
                    StatusValue::Recent(n) => code_num(o, b"RECENT", n),
                    StatusValue::UidNext(n) => code_num(o, b"UIDNEXT", n),
                    StatusValue::UidValidity(n) => code_num(o, b"UIDVALIDITY", n),
                    StatusValue::Unseen(n) => code_num(o, b"UNSEEN", n),
                    StatusValue::Size(n) => code_num(o, b"SIZE", n),
                });
            }
            Data::Search(ids) => {
                out.extend_from_slice(b"SEARCH");
                for &n in *ids {
                    out.push(b' ');
                    push_num(out, n);
                }
            }
            Data::Flags(flags) => {
                out.extend_from_slice(b"FLAGS ");
                list(out, flags, flag);
            }
            Data::Exists(n) => {
                push_num(out, *n);
                out.extend_from_slice(b" EXISTS");
            }
            Data::Recent(n) => {
                push_num(out, *n);
                out.extend_from_slice(b" RECENT");
            }
            Data::Expunge(n) => {
                push_num(out, *n);
                out.extend_from_slice(b" EXPUNGE");
            }
            Data::Enabled(caps) => {
                out.extend_from_slice(b"ENABLED");
                for c in *caps {
                    out.push(b' ');
                    push_text(out, c);
                }
            }
            Data::Id(params) => {
                out.extend_from_slice(b"ID ");
                match params {
                    None => out.extend_from_slice(b"NIL"),
                    Some(params) => list(out, params, |o, (k, v)| {
                        write_string(o, k.as_bytes());
                        o.push(b' ');
                        write_nstring(o, v.map(str::as_bytes));
                    }),
                }
            }
            Data::Namespace {
                personal,
                other,
                shared,
            } => {
                out.extend_from_slice(b"NAMESPACE");
                for ns in [personal, other, shared] {
                    out.push(b' ');
                    if ns.is_empty() {
                        out.extend_from_slice(b"NIL");
                        continue;
                    }
                    out.push(b'(');
                    for d in ns.iter() {
                        out.push(b'(');
                        if utf8 {
                            write_string_utf8(out, d.prefix);
                        } else {
                            write_string(out, utf7::encode(d.prefix).as_bytes());
                        }
                        out.push(b' ');
                        delimiter(out, d.delimiter);
                        out.push(b')');
                    }
                    out.push(b')');
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

// ---------------------------------------------------------------------------------------
// FETCH

/// An address of an envelope: `(name adl mailbox host)`.
///
/// RFC 3501 7.4.2 represents a group as an address with `host` NIL and the group name in
/// `mailbox` (see [`Address::group_start`]), its members, then an address with `mailbox`
/// and `host` NIL ([`Address::group_end`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address<'a> {
    /// The display name (raw, as in the header: RFC 2047 encoded words stay encoded).
    pub name: Option<IString<'a>>,
    /// The source route (obsolete).
    pub adl: Option<IString<'a>>,
    /// The local part.
    pub mailbox: Option<IString<'a>>,
    /// The domain.
    pub host: Option<IString<'a>>,
}

impl<'a> Address<'a> {
    pub fn group_start(name: impl Into<IString<'a>>) -> Self {
        Address {
            mailbox: Some(name.into()),
            ..Address::default()
        }
    }

    pub fn group_end() -> Self {
        Address::default()
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'(');
        nstring(out, &self.name);
        out.push(b' ');
        nstring(out, &self.adl);
        out.push(b' ');
        nstring(out, &self.mailbox);
        out.push(b' ');
        nstring(out, &self.host);
        out.push(b')');
    }
}

/// A message's envelope (RFC 3501 7.4.2). The server fills it from the header; RFC 3501
/// asks that an absent or empty Sender or Reply-To be given the From addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub date: Option<IString<'a>>,
    pub subject: Option<IString<'a>>,
    pub from: Vec<Address<'a>>,
    pub sender: Vec<Address<'a>>,
    pub reply_to: Vec<Address<'a>>,
    pub to: Vec<Address<'a>>,
    pub cc: Vec<Address<'a>>,
    pub bcc: Vec<Address<'a>>,
    pub in_reply_to: Option<IString<'a>>,
    pub message_id: Option<IString<'a>>,
}

impl Envelope<'_> {
    /// Writes the parenthesised envelope.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'(');
        nstring(out, &self.date);
        out.push(b' ');
        nstring(out, &self.subject);
        for addrs in [
            &self.from,
            &self.sender,
            &self.reply_to,
            &self.to,
            &self.cc,
            &self.bcc,
        ] {
            out.push(b' ');
            if addrs.is_empty() {
                out.extend_from_slice(b"NIL");
            } else {
                out.push(b'(');
                for a in addrs {
                    a.write_to(out);
                }
                out.push(b')');
            }
        }
        out.push(b' ');
        nstring(out, &self.in_reply_to);
        out.push(b' ');
        nstring(out, &self.message_id);
        out.push(b')');
    }
}

/// `attribute value` pairs (Content-Type parameters, disposition parameters); empty is NIL.
pub type Params<'a> = Vec<(IString<'a>, IString<'a>)>;

/// A Content-Disposition: `("ATTACHMENT" ("FILENAME" "x.pdf"))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposition<'a> {
    pub kind: IString<'a>,
    pub params: Params<'a>,
}

/// The fields common to every non-multipart body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyFields<'a> {
    pub params: Params<'a>,
    /// Content-ID.
    pub id: Option<IString<'a>>,
    /// Content-Description.
    pub description: Option<IString<'a>>,
    /// Content-Transfer-Encoding (`"7BIT"` when absent).
    pub encoding: IString<'a>,
    /// Octets of the body, as encoded.
    pub size: u32,
}

/// Extension data of BODYSTRUCTURE, beyond what BODY shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyExtension<'a> {
    /// Content-MD5 (single parts only; ignored for a multipart).
    pub md5: Option<IString<'a>>,
    pub disposition: Option<Disposition<'a>>,
    /// Content-Language: none is NIL, one a string, several a list.
    pub language: Vec<IString<'a>>,
    /// Content-Location.
    pub location: Option<IString<'a>>,
}

/// What kind of non-multipart body, with the data specific to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingleKind<'a> {
    /// Any type other than TEXT and MESSAGE/RFC822.
    Basic {
        media_type: IString<'a>,
        subtype: IString<'a>,
    },
    /// `TEXT/subtype`, with its size in lines.
    Text { subtype: IString<'a>, lines: u32 },
    /// `MESSAGE/RFC822` (or `MESSAGE/GLOBAL`): the encapsulated message's envelope and
    /// structure, and its size in lines.
    Message {
        subtype: IString<'a>,
        envelope: Box<Envelope<'a>>,
        body: Box<BodyStructure<'a>>,
        lines: u32,
    },
}

/// A message's MIME structure, for FETCH BODY and BODYSTRUCTURE (RFC 3501 7.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStructure<'a> {
    Single {
        kind: SingleKind<'a>,
        fields: BodyFields<'a>,
        ext: BodyExtension<'a>,
    },
    /// RFC 3501 needs at least one part.
    Multipart {
        parts: Vec<BodyStructure<'a>>,
        subtype: IString<'a>,
        /// Content-Type parameters (the boundary, ...).
        params: Params<'a>,
        ext: BodyExtension<'a>,
    },
}

fn params(out: &mut Vec<u8>, p: &Params<'_>) {
    if p.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        list(out, p, |o, (k, v)| {
            write_string(o, k.as_bytes());
            o.push(b' ');
            write_string(o, v.as_bytes());
        });
    }
}

impl BodyExtension<'_> {
    /// `SP body-fld-dsp SP body-fld-lang SP body-fld-loc`.
    fn write_common(&self, out: &mut Vec<u8>) {
        out.push(b' ');
        match &self.disposition {
            None => out.extend_from_slice(b"NIL"),
            Some(d) => {
                out.push(b'(');
                write_string(out, d.kind.as_bytes());
                out.push(b' ');
                params(out, &d.params);
                out.push(b')');
            }
        }
        out.push(b' ');
        match self.language.as_slice() {
            [] => out.extend_from_slice(b"NIL"),
            [one] => write_string(out, one.as_bytes()),
            many => list(out, many, |o, l| write_string(o, l.as_bytes())),
        }
        out.push(b' ');
        nstring(out, &self.location);
    }
}

impl BodyStructure<'_> {
    /// Writes the parenthesised structure: with the extension data for BODYSTRUCTURE
    /// (`extended`), without it for BODY.
    pub fn write_to(&self, out: &mut Vec<u8>, extended: bool) {
        out.push(b'(');
        match self {
            BodyStructure::Single { kind, fields, ext } => {
                match kind {
                    SingleKind::Basic {
                        media_type,
                        subtype,
                    } => {
                        write_string(out, media_type.as_bytes());
                        out.push(b' ');
                        write_string(out, subtype.as_bytes());
                    }
                    SingleKind::Text { subtype, .. } => {
                        out.extend_from_slice(b"\"TEXT\" ");
                        write_string(out, subtype.as_bytes());
                    }
                    SingleKind::Message { subtype, .. } => {
                        out.extend_from_slice(b"\"MESSAGE\" ");
                        write_string(out, subtype.as_bytes());
                    }
                }
                out.push(b' ');
                params(out, &fields.params);
                out.push(b' ');
                nstring(out, &fields.id);
                out.push(b' ');
                nstring(out, &fields.description);
                out.push(b' ');
                write_string(out, fields.encoding.as_bytes());
                out.push(b' ');
                push_num(out, fields.size);
                match kind {
                    SingleKind::Basic { .. } => {}
                    SingleKind::Text { lines, .. } => {
                        out.push(b' ');
                        push_num(out, *lines);
                    }
                    SingleKind::Message {
                        envelope,
                        body,
                        lines,
                        ..
                    } => {
                        out.push(b' ');
                        envelope.write_to(out);
                        out.push(b' ');
                        body.write_to(out, extended);
                        out.push(b' ');
                        push_num(out, *lines);
                    }
                }
                if extended {
                    out.push(b' ');
                    nstring(out, &ext.md5);
                    ext.write_common(out);
                }
            }
            BodyStructure::Multipart {
                parts,
                subtype,
                params: p,
                ext,
            } => {
                for part in parts {
                    part.write_to(out, extended);
                }
                out.push(b' ');
                write_string(out, subtype.as_bytes());
                if extended {
                    out.push(b' ');
                    params(out, p);
                    ext.write_common(out);
                }
            }
        }
        out.push(b')');
    }
}

/// The name of a FETCH data item that carries message content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentItem<'a> {
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    /// `BODY[section]` or `BODY[section]<origin>` (the offset of a partial fetch). The
    /// response names the section as the request did, minus `.PEEK`.
    Body {
        section: &'a Section<'a>,
        origin: Option<u32>,
    },
}

impl ContentItem<'_> {
    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            ContentItem::Rfc822 => out.extend_from_slice(b"RFC822"),
            ContentItem::Rfc822Header => out.extend_from_slice(b"RFC822.HEADER"),
            ContentItem::Rfc822Text => out.extend_from_slice(b"RFC822.TEXT"),
            ContentItem::Body { section, origin } => {
                out.extend_from_slice(b"BODY[");
                write_section(out, section);
                out.push(b']');
                if let Some(o) = origin {
                    out.push(b'<');
                    push_num(out, *o);
                    out.push(b'>');
                }
            }
        }
    }
}

/// Writes a section spec (between the brackets): `1.2.HEADER.FIELDS (From To)`.
pub fn write_section(out: &mut Vec<u8>, section: &Section<'_>) {
    if let Some(part) = &section.part {
        out.extend_from_slice(part.as_str().as_bytes());
        if section.text.is_some() {
            out.push(b'.');
        }
    }
    let fields = |out: &mut Vec<u8>, name: &[u8], f: &[IString<'_>]| {
        out.extend_from_slice(name);
        out.push(b' ');
        list(out, f, |o, h| write_astring(o, h.as_bytes()));
    };
    match &section.text {
        None => {}
        Some(SectionText::Header) => out.extend_from_slice(b"HEADER"),
        Some(SectionText::Text) => out.extend_from_slice(b"TEXT"),
        Some(SectionText::Mime) => out.extend_from_slice(b"MIME"),
        Some(SectionText::HeaderFields(f)) => fields(out, b"HEADER.FIELDS", f),
        Some(SectionText::HeaderFieldsNot(f)) => fields(out, b"HEADER.FIELDS.NOT", f),
    }
}

/// Writes one FETCH response item by item: `* 12 FETCH (UID 5 FLAGS (\Seen) ...)`.
///
/// The writer holds no buffer, only whether an item has been written, so the caller can
/// interleave its own output: after [`FetchWriter::literal_start`] it sends exactly the
/// announced number of octets (streamed from storage, never whole in memory), then goes on
/// with more items or [`FetchWriter::finish`].
///
/// ```
/// # use ironpost_core::imap::encode::{ContentItem, FetchWriter};
/// # use ironpost_core::imap::Section;
/// let mut out = Vec::new();
/// let mut f = FetchWriter::begin(&mut out, 12);
/// f.uid(&mut out, 5);
/// let section = Section::default();
/// f.literal_start(&mut out, ContentItem::Body { section: &section, origin: None }, 4);
/// out.extend_from_slice(b"Hi\r\n"); // or stream the octets straight to the connection
/// f.finish(&mut out);
/// assert_eq!(out, b"* 12 FETCH (UID 5 BODY[] {4}\r\nHi\r\n)\r\n");
/// ```
#[derive(Debug)]
#[must_use = "a FETCH response must be finished"]
pub struct FetchWriter {
    first: bool,
}

impl FetchWriter {
    /// Writes `* seq FETCH (`.
    pub fn begin(out: &mut Vec<u8>, seq: u32) -> Self {
        out.extend_from_slice(b"* ");
        push_num(out, seq);
        out.extend_from_slice(b" FETCH (");
        FetchWriter { first: true }
    }

    fn item(&mut self, out: &mut Vec<u8>, name: &[u8]) {
        if !self.first {
            out.push(b' ');
        }
        self.first = false;
        out.extend_from_slice(name);
    }

    pub fn uid(&mut self, out: &mut Vec<u8>, uid: u32) {
        self.item(out, b"UID ");
        push_num(out, uid);
    }

    pub fn flags(&mut self, out: &mut Vec<u8>, flags: &[Flag<'_>]) {
        self.item(out, b"FLAGS ");
        list(out, flags, flag);
    }

    pub fn internal_date(&mut self, out: &mut Vec<u8>, date: &DateTime) {
        self.item(out, b"INTERNALDATE \"");
        out.extend_from_slice(date.to_string().as_bytes());
        out.push(b'"');
    }

    pub fn rfc822_size(&mut self, out: &mut Vec<u8>, size: u64) {
        self.item(out, b"RFC822.SIZE ");
        push_num(out, size);
    }

    pub fn envelope(&mut self, out: &mut Vec<u8>, envelope: &Envelope<'_>) {
        self.item(out, b"ENVELOPE ");
        envelope.write_to(out);
    }

    /// `BODY (...)`: the structure without extension data.
    pub fn body(&mut self, out: &mut Vec<u8>, body: &BodyStructure<'_>) {
        self.item(out, b"BODY ");
        body.write_to(out, false);
    }

    /// `BODYSTRUCTURE (...)`: the structure with extension data.
    pub fn body_structure(&mut self, out: &mut Vec<u8>, body: &BodyStructure<'_>) {
        self.item(out, b"BODYSTRUCTURE ");
        body.write_to(out, true);
    }

    /// A content item whose octets are at hand: written as a quoted string or a literal
    /// (`None`: NIL, for a section that does not exist).
    pub fn content(&mut self, out: &mut Vec<u8>, item: ContentItem<'_>, data: Option<&[u8]>) {
        self.item(out, b"");
        item.write_to(out);
        out.push(b' ');
        write_nstring(out, data);
    }

    /// A content item as a literal whose `len` octets the caller sends next, before any
    /// other item or [`FetchWriter::finish`].
    pub fn literal_start(&mut self, out: &mut Vec<u8>, item: ContentItem<'_>, len: u64) {
        self.item(out, b"");
        item.write_to(out);
        out.push(b' ');
        write_literal_header(out, len);
    }

    /// Writes `)` and the end of the line.
    pub fn finish(self, out: &mut Vec<u8>) {
        out.extend_from_slice(b")\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{parse_command, Limits};
    use super::super::types::{CommandBody, SearchKey, SectionPart};
    use super::*;

    fn wire(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Found by the imap_response fuzz target: a text of nothing but `]`, CR, LF or NUL left
    /// `[NAME ]`, but RFC 3501 wants `atom [SP 1*<any TEXT-CHAR except "]">]`.
    #[test]
    fn other_code_without_text_left_after_filtering() {
        let code = |text| {
            wire(|o| {
                status(
                    o,
                    None,
                    Status::Bye,
                    Some(&Code::Other { name: "XA", text }),
                    "x",
                )
            })
        };
        assert_eq!(code(Some("]")), "* BYE [XA] x\r\n");
        assert_eq!(code(Some("")), "* BYE [XA] x\r\n");
        assert_eq!(code(Some("\r\n")), "* BYE [XA] x\r\n");
        assert_eq!(code(Some("a]b")), "* BYE [XA ab] x\r\n");
        assert_eq!(code(None), "* BYE [XA] x\r\n");
    }

    #[test]
    fn status_responses() {
        let caps = ["IMAP4rev1", "STARTTLS", "LOGINDISABLED"];
        assert_eq!(
            wire(|o| status(
                o,
                None,
                Status::Ok,
                Some(&Code::Capability(&caps)),
                "ironpost ready"
            )),
            "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ironpost ready\r\n"
        );
        assert_eq!(
            wire(|o| status(
                o,
                Some("A142"),
                Status::Ok,
                Some(&Code::ReadWrite),
                "SELECT completed"
            )),
            "A142 OK [READ-WRITE] SELECT completed\r\n"
        );
        assert_eq!(
            wire(|o| status(o, Some("a1"), Status::No, None, "no such mailbox")),
            "a1 NO no such mailbox\r\n"
        );
        assert_eq!(
            wire(|o| status(o, None, Status::Bad, None, "Unknown command")),
            "* BAD Unknown command\r\n"
        );
        assert_eq!(
            wire(|o| status(o, None, Status::Bye, None, "Logging out")),
            "* BYE Logging out\r\n"
        );
        assert_eq!(
            wire(|o| status(o, None, Status::PreAuth, None, "welcome")),
            "* PREAUTH welcome\r\n"
        );
    }

    #[test]
    fn every_response_code() {
        let flags = [Flag::Deleted, Flag::Seen, Flag::Keyword("$Junk".into())];
        for (code, text) in [
            (Code::Alert, "ALERT"),
            (Code::BadCharset(&[]), "BADCHARSET"),
            (
                Code::BadCharset(&["UTF-8", "US-ASCII"]),
                "BADCHARSET (UTF-8 US-ASCII)",
            ),
            (Code::Capability(&["IMAP4rev1"]), "CAPABILITY IMAP4rev1"),
            (Code::Parse, "PARSE"),
            (
                Code::PermanentFlags {
                    flags: &flags,
                    new_keywords: true,
                },
                "PERMANENTFLAGS (\\Deleted \\Seen $Junk \\*)",
            ),
            (
                Code::PermanentFlags {
                    flags: &[],
                    new_keywords: false,
                },
                "PERMANENTFLAGS ()",
            ),
            (
                Code::PermanentFlags {
                    flags: &[],
                    new_keywords: true,
                },
                "PERMANENTFLAGS (\\*)",
            ),
            (Code::ReadOnly, "READ-ONLY"),
            (Code::ReadWrite, "READ-WRITE"),
            (Code::TryCreate, "TRYCREATE"),
            (Code::UidNext(4392), "UIDNEXT 4392"),
            (Code::UidValidity(3857529045), "UIDVALIDITY 3857529045"),
            (Code::Unseen(17), "UNSEEN 17"),
            (
                Code::AppendUid {
                    uid_validity: 38505,
                    uid: 3955,
                },
                "APPENDUID 38505 3955",
            ),
            (
                Code::CopyUid {
                    uid_validity: 38505,
                    source: &[304, 319, 320],
                    dest: &[3956, 3957, 3958],
                },
                "COPYUID 38505 304,319:320 3956:3958",
            ),
            (Code::UidNotSticky, "UIDNOTSTICKY"),
            (Code::Closed, "CLOSED"),
            (
                Code::HighestModSeq(715194045007),
                "HIGHESTMODSEQ 715194045007",
            ),
            (Code::NoModSeq, "NOMODSEQ"),
            (Code::Unavailable, "UNAVAILABLE"),
            (Code::AuthenticationFailed, "AUTHENTICATIONFAILED"),
            (Code::AuthorizationFailed, "AUTHORIZATIONFAILED"),
            (Code::Expired, "EXPIRED"),
            (Code::PrivacyRequired, "PRIVACYREQUIRED"),
            (Code::ContactAdmin, "CONTACTADMIN"),
            (Code::NoPerm, "NOPERM"),
            (Code::InUse, "INUSE"),
            (Code::ExpungeIssued, "EXPUNGEISSUED"),
            (Code::Corruption, "CORRUPTION"),
            (Code::ServerBug, "SERVERBUG"),
            (Code::ClientBug, "CLIENTBUG"),
            (Code::Cannot, "CANNOT"),
            (Code::Limit, "LIMIT"),
            (Code::OverQuota, "OVERQUOTA"),
            (Code::AlreadyExists, "ALREADYEXISTS"),
            (Code::Nonexistent, "NONEXISTENT"),
            (
                Code::Other {
                    name: "X-FOO",
                    text: Some("a]b"),
                },
                "X-FOO ab",
            ),
            (
                Code::Other {
                    name: "X-BAR",
                    text: None,
                },
                "X-BAR",
            ),
        ] {
            assert_eq!(
                wire(|o| status(o, Some("t"), Status::No, Some(&code), "x")),
                format!("t NO [{text}] x\r\n")
            );
        }
    }

    #[test]
    fn text_cannot_forge_lines() {
        assert_eq!(
            wire(|o| status(o, Some("a"), Status::Ok, None, "done\r\n* BYE\0")),
            "a OK done* BYE\r\n"
        );
        assert_eq!(wire(|o| continuation(o, "go\r\nahead")), "+ goahead\r\n");
    }

    #[test]
    fn continuations() {
        assert_eq!(wire(|o| continuation(o, "Ready")), "+ Ready\r\n");
        assert_eq!(wire(|o| continuation_base64(o, b"")), "+ \r\n");
        assert_eq!(
            wire(|o| continuation_base64(o, b"Username:")),
            "+ VXNlcm5hbWU6\r\n"
        );
    }

    #[test]
    fn string_forms() {
        let astr = |s: &[u8]| wire(|o| write_astring(o, s));
        let str_ = |s: &[u8]| wire(|o| write_string(o, s));
        assert_eq!(astr(b"INBOX"), "INBOX");
        assert_eq!(astr(b"a]b"), "a]b");
        assert_eq!(astr(b""), "\"\"");
        assert_eq!(astr(b"two words"), "\"two words\"");
        assert_eq!(astr(b"NIL"), "\"NIL\"");
        assert_eq!(astr(b"nil"), "\"nil\"");
        assert_eq!(astr(b"50%"), "\"50%\"");
        assert_eq!(astr(b"*"), "\"*\"");
        assert_eq!(astr(b"(x)"), "\"(x)\"");
        assert_eq!(astr(b"{3}"), "\"{3}\"");
        assert_eq!(astr(br#"say "hi" \o/"#), r#""say \"hi\" \\o/""#);
        assert_eq!(str_(b"INBOX"), "\"INBOX\"");
        assert_eq!(str_(b"a\r\nb"), "{4}\r\na\r\nb");
        assert_eq!(str_(b"a\nb"), "{3}\r\na\nb");
        assert_eq!(str_(b"a\0b"), "{3}\r\na\0b");
        assert_eq!(str_("caf\u{e9}".as_bytes()), "{5}\r\ncaf\u{e9}");
        assert_eq!(str_(b"tab\there"), "\"tab\there\"");
        assert_eq!(str_(b"a\rb"), "{3}\r\na\rb");
        assert_eq!(str_(b"\x01\x7f"), "\"\x01\x7f\"");
        let mut o = Vec::new();
        write_string(&mut o, b"\x80");
        assert_eq!(o, b"{1}\r\n\x80");
        // Octets to escape or to refuse far into a string, past any vector width.
        let pad = "y".repeat(70);
        assert_eq!(
            str_(format!("{pad}\"{pad}\\").as_bytes()),
            format!("\"{pad}\\\"{pad}\\\\\"")
        );
        assert_eq!(
            str_(format!("{pad}{pad}\n").as_bytes()),
            format!("{{141}}\r\n{pad}{pad}\n")
        );
        let long = "x".repeat(MAX_QUOTED + 1);
        assert_eq!(
            str_(long.as_bytes()),
            format!("{{{}}}\r\n{long}", long.len())
        );
        let max = "x".repeat(MAX_QUOTED);
        assert_eq!(str_(max.as_bytes()), format!("\"{max}\""));
        assert_eq!(
            astr(long.as_bytes()),
            format!("{{{}}}\r\n{long}", long.len())
        );
        assert_eq!(wire(|o| write_nstring(o, None)), "NIL");
        assert_eq!(wire(|o| write_nstring(o, Some(b"NIL"))), "\"NIL\"");
    }

    /// Whatever the encoder writes as an astring (or a string) parses back to the same
    /// octets.
    #[test]
    fn strings_round_trip_through_the_parser() {
        let samples: Vec<Vec<u8>> = vec![
            b"simple".to_vec(),
            b"".to_vec(),
            b"two words".to_vec(),
            br#"q"uo\te"#.to_vec(),
            b"NIL".to_vec(),
            b"line\r\nbreak".to_vec(),
            "ünïcødé".as_bytes().to_vec(),
            b"\x01\x7f".to_vec(),
            b"a]b".to_vec(),
            b"%*".to_vec(),
            b"{5}".to_vec(),
            b"x".repeat(5000),
            (1u8..=255).collect(),
        ];
        for s in &samples {
            let mut line = b"a1 LOGIN ".to_vec();
            write_astring(&mut line, s);
            line.push(b' ');
            write_string(&mut line, s);
            line.extend_from_slice(b"\r\n");
            let (n, cmd) = parse_command(&line, &Limits::DEFAULT).unwrap();
            assert_eq!(n, line.len());
            let CommandBody::Login { username, password } = cmd.body else {
                panic!()
            };
            assert_eq!(username.as_bytes(), &s[..], "{s:?}");
            assert_eq!(password.as_bytes(), &s[..], "{s:?}");

            let mut line = b"a2 SEARCH SUBJECT ".to_vec();
            write_string(&mut line, s);
            line.extend_from_slice(b"\r\n");
            let (_, cmd) = parse_command(&line, &Limits::DEFAULT).unwrap();
            let CommandBody::Search { criteria, .. } = cmd.body else {
                panic!()
            };
            assert_eq!(criteria, [SearchKey::Subject(IString::from(&s[..]))]);
        }
    }

    #[test]
    fn uid_sets() {
        let set = |u: &[u32]| wire(|o| write_uid_set(o, u));
        assert_eq!(set(&[]), "");
        assert_eq!(set(&[7]), "7");
        assert_eq!(set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(set(&[3, 2, 1]), "3,2,1");
        assert_eq!(set(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
    }

    #[test]
    fn untagged_data() {
        let cases: Vec<(Data<'_>, &str)> = vec![
            (
                Data::Capability(&["IMAP4rev1", "IDLE"]),
                "* CAPABILITY IMAP4rev1 IDLE\r\n",
            ),
            (
                Data::List(ListItem {
                    attributes: &[MailboxAttr::NoSelect, MailboxAttr::HasChildren],
                    delimiter: Some('/'),
                    name: "~/Mail/foo",
                }),
                "* LIST (\\Noselect \\HasChildren) \"/\" ~/Mail/foo\r\n",
            ),
            (
                Data::List(ListItem {
                    attributes: &[],
                    delimiter: Some('.'),
                    name: "INBOX",
                }),
                "* LIST () \".\" INBOX\r\n",
            ),
            (
                Data::List(ListItem {
                    attributes: &[MailboxAttr::Sent, MailboxAttr::Other("X-Thing")],
                    delimiter: Some('/'),
                    name: "~peter/mail/台北/日本語",
                }),
                "* LIST (\\Sent \\X-Thing) \"/\" ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n",
            ),
            (
                Data::List(ListItem {
                    attributes: &[MailboxAttr::NoInferiors],
                    delimiter: None,
                    name: "Tom & Jerry",
                }),
                "* LIST (\\Noinferiors) NIL \"Tom &- Jerry\"\r\n",
            ),
            (
                Data::Lsub(ListItem {
                    attributes: &[],
                    delimiter: Some('\\'),
                    name: "a\\b",
                }),
                "* LSUB () \"\\\\\" \"a\\\\b\"\r\n",
            ),
            (
                Data::Status {
                    mailbox: "blurdybloop",
                    items: &[StatusValue::Messages(231), StatusValue::UidNext(44292)],
                },
                "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
            ),
            (
                Data::Status {
                    mailbox: "Entwürfe",
                    items: &[
                        StatusValue::Recent(1),
                        StatusValue::UidValidity(7),
                        StatusValue::Unseen(2),
                        StatusValue::Size(123456789012),
                    ],
                },
                "* STATUS Entw&APw-rfe (RECENT 1 UIDVALIDITY 7 UNSEEN 2 SIZE 123456789012)\r\n",
            ),
            (Data::Search(&[2, 84, 882]), "* SEARCH 2 84 882\r\n"),
            (Data::Search(&[]), "* SEARCH\r\n"),
            (
                Data::Flags(&[
                    Flag::Answered,
                    Flag::Flagged,
                    Flag::Deleted,
                    Flag::Seen,
                    Flag::Draft,
                ]),
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
            ),
            (Data::Exists(23), "* 23 EXISTS\r\n"),
            (Data::Recent(5), "* 5 RECENT\r\n"),
            (Data::Expunge(44), "* 44 EXPUNGE\r\n"),
            (Data::Enabled(&["CONDSTORE"]), "* ENABLED CONDSTORE\r\n"),
            (Data::Enabled(&[]), "* ENABLED\r\n"),
            (Data::Id(None), "* ID NIL\r\n"),
            (
                Data::Id(Some(&[("name", Some("ironpost")), ("support-url", None)])),
                "* ID (\"name\" \"ironpost\" \"support-url\" NIL)\r\n",
            ),
            (
                Data::Namespace {
                    personal: &[NamespaceDesc {
                        prefix: "",
                        delimiter: Some('/'),
                    }],
                    other: &[],
                    shared: &[
                        NamespaceDesc {
                            prefix: "Public Folders/",
                            delimiter: Some('/'),
                        },
                        NamespaceDesc {
                            prefix: "Geteilt/",
                            delimiter: None,
                        },
                    ],
                },
                "* NAMESPACE ((\"\" \"/\")) NIL ((\"Public Folders/\" \"/\")(\"Geteilt/\" NIL))\r\n",
            ),
        ];
        for (data, text) in cases {
            assert_eq!(wire(|o| data.write_to(o)), text, "{data:?}");
        }
    }

    fn addr<'a>(name: Option<&'a str>, mailbox: &'a str, host: &'a str) -> Address<'a> {
        Address {
            name: name.map(IString::from),
            adl: None,
            mailbox: Some(mailbox.into()),
            host: Some(host.into()),
        }
    }

    fn text_plain<'a>(params: Params<'a>, size: u32, lines: u32) -> BodyStructure<'a> {
        BodyStructure::Single {
            kind: SingleKind::Text {
                subtype: "PLAIN".into(),
                lines,
            },
            fields: BodyFields {
                params,
                id: None,
                description: None,
                encoding: "7BIT".into(),
                size,
            },
            ext: BodyExtension::default(),
        }
    }

    fn us_ascii() -> Params<'static> {
        vec![("CHARSET".into(), "US-ASCII".into())]
    }

    /// RFC 3501 section 8: the answer to `a003 fetch 12 full`.
    #[test]
    fn rfc3501_fetch_full_example() {
        let gray = || vec![addr(Some("Terry Gray"), "gray", "cac.washington.edu")];
        let env = Envelope {
            date: Some("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)".into()),
            subject: Some("IMAP4rev1 WG mtg summary and minutes".into()),
            from: gray(),
            sender: gray(),
            reply_to: gray(),
            to: vec![addr(None, "imap", "cac.washington.edu")],
            cc: vec![
                addr(None, "minutes", "CNRI.Reston.VA.US"),
                addr(Some("John Klensin"), "KLENSIN", "MIT.EDU"),
            ],
            bcc: vec![],
            in_reply_to: None,
            message_id: Some("<B27397-0100000@cac.washington.edu>".into()),
        };
        let body = text_plain(us_ascii(), 3028, 92);
        let date = DateTime::from_unix(837_596_665, -420).unwrap();
        let got = wire(|o| {
            let mut f = FetchWriter::begin(o, 12);
            f.flags(o, &[Flag::Seen]);
            f.internal_date(o, &date);
            f.rfc822_size(o, 4286);
            f.envelope(o, &env);
            f.body(o, &body);
            f.finish(o);
        });
        assert_eq!(
            got,
            concat!(
                "* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" ",
                "RFC822.SIZE 4286 ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" ",
                "\"IMAP4rev1 WG mtg summary and minutes\" ",
                "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ",
                "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ",
                "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ",
                "((NIL NIL \"imap\" \"cac.washington.edu\")) ",
                "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")",
                "(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL ",
                "\"<B27397-0100000@cac.washington.edu>\") ",
                "BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92))\r\n",
            )
        );
    }

    fn rfc3501_multipart() -> BodyStructure<'static> {
        let second = BodyStructure::Single {
            kind: SingleKind::Text {
                subtype: "PLAIN".into(),
                lines: 73,
            },
            fields: BodyFields {
                params: vec![
                    ("CHARSET".into(), "US-ASCII".into()),
                    ("NAME".into(), "cc.diff".into()),
                ],
                id: Some("<960723163407.20117h@cac.washington.edu>".into()),
                description: Some("Compiler diff".into()),
                encoding: "BASE64".into(),
                size: 4554,
            },
            ext: BodyExtension::default(),
        };
        BodyStructure::Multipart {
            parts: vec![text_plain(us_ascii(), 1152, 23), second],
            subtype: "MIXED".into(),
            params: vec![],
            ext: BodyExtension::default(),
        }
    }

    /// RFC 3501 7.4.2: the BODYSTRUCTURE example (a multipart without extension data).
    #[test]
    fn rfc3501_multipart_example() {
        let b = rfc3501_multipart();
        assert_eq!(
            wire(|o| b.write_to(o, false)),
            concat!(
                "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)",
                "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") ",
                "\"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" ",
                "\"BASE64\" 4554 73) \"MIXED\")"
            )
        );
        assert_eq!(
            wire(|o| b.write_to(o, true)),
            concat!(
                "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23 ",
                "NIL NIL NIL NIL)",
                "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") ",
                "\"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" ",
                "\"BASE64\" 4554 73 NIL NIL NIL NIL) \"MIXED\" NIL NIL NIL NIL)"
            )
        );
    }

    #[test]
    fn body_structure_with_extension_data() {
        let pdf = BodyStructure::Single {
            kind: SingleKind::Basic {
                media_type: "APPLICATION".into(),
                subtype: "PDF".into(),
            },
            fields: BodyFields {
                params: vec![("NAME".into(), "r\u{e9}sum\u{e9}.pdf".into())],
                id: None,
                description: None,
                encoding: "BASE64".into(),
                size: 2000,
            },
            ext: BodyExtension {
                md5: Some("Q2hlY2sgSW50ZWdyaXR5IQ==".into()),
                disposition: Some(Disposition {
                    kind: "ATTACHMENT".into(),
                    params: vec![("FILENAME".into(), "cv.pdf".into())],
                }),
                language: vec!["EN".into()],
                location: Some("http://example.com/cv.pdf".into()),
            },
        };
        let inner = text_plain(us_ascii(), 10, 1);
        let forwarded = BodyStructure::Single {
            kind: SingleKind::Message {
                subtype: "RFC822".into(),
                envelope: Box::new(Envelope {
                    subject: Some("fwd".into()),
                    ..Envelope::default()
                }),
                body: Box::new(inner),
                lines: 5,
            },
            fields: BodyFields {
                encoding: "7BIT".into(),
                size: 300,
                ..BodyFields::default()
            },
            ext: BodyExtension {
                language: vec!["EN".into(), "FR".into()],
                ..BodyExtension::default()
            },
        };
        let mixed = BodyStructure::Multipart {
            parts: vec![pdf, forwarded],
            subtype: "MIXED".into(),
            params: vec![("BOUNDARY".into(), "xyz".into())],
            ext: BodyExtension {
                disposition: Some(Disposition {
                    kind: "INLINE".into(),
                    params: vec![],
                }),
                ..BodyExtension::default()
            },
        };
        assert_eq!(
            wire(|o| mixed.write_to(o, true)),
            concat!(
                "((\"APPLICATION\" \"PDF\" (\"NAME\" {12}\r\nr\u{e9}sum\u{e9}.pdf) NIL NIL ",
                "\"BASE64\" 2000 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"ATTACHMENT\" (\"FILENAME\" \"cv.pdf\")) ",
                "\"EN\" \"http://example.com/cv.pdf\")",
                "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 300 ",
                "(NIL \"fwd\" NIL NIL NIL NIL NIL NIL NIL NIL) ",
                "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL) ",
                "5 NIL NIL (\"EN\" \"FR\") NIL) ",
                "\"MIXED\" (\"BOUNDARY\" \"xyz\") (\"INLINE\" NIL) NIL NIL)"
            )
        );
        // BODY drops the extension data at every level.
        assert_eq!(
            wire(|o| mixed.write_to(o, false)),
            concat!(
                "((\"APPLICATION\" \"PDF\" (\"NAME\" {12}\r\nr\u{e9}sum\u{e9}.pdf) NIL NIL ",
                "\"BASE64\" 2000)",
                "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 300 ",
                "(NIL \"fwd\" NIL NIL NIL NIL NIL NIL NIL NIL) ",
                "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 1) 5) \"MIXED\")"
            )
        );
    }

    #[test]
    fn envelope_groups() {
        let env = Envelope {
            to: vec![
                Address::group_start("undisclosed-recipients"),
                Address::group_end(),
            ],
            ..Envelope::default()
        };
        assert_eq!(
            wire(|o| env.write_to(o)),
            "(NIL NIL NIL NIL NIL ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn fetch_content_items() {
        let fields = Section {
            part: None,
            text: Some(SectionText::HeaderFields(vec![
                "Date".into(),
                "From".into(),
            ])),
        };
        let mime = Section {
            part: Some(SectionPart::from_validated("1.2")),
            text: Some(SectionText::Mime),
        };
        let part = Section {
            part: Some(SectionPart::from_validated("3")),
            text: None,
        };
        let not = Section {
            part: Some(SectionPart::from_validated("2")),
            text: Some(SectionText::HeaderFieldsNot(vec!["X Y".into()])),
        };
        let got = wire(|o| {
            let mut f = FetchWriter::begin(o, 1);
            f.uid(o, 99);
            f.content(
                o,
                ContentItem::Body {
                    section: &fields,
                    origin: None,
                },
                Some(b"Date: x\r\n\r\n"),
            );
            f.content(
                o,
                ContentItem::Body {
                    section: &mime,
                    origin: None,
                },
                None,
            );
            f.content(
                o,
                ContentItem::Body {
                    section: &part,
                    origin: Some(100),
                },
                Some(b"abc"),
            );
            f.content(
                o,
                ContentItem::Body {
                    section: &not,
                    origin: None,
                },
                Some(b""),
            );
            f.content(o, ContentItem::Rfc822Header, Some(b"H: v\r\n\r\n"));
            f.finish(o);
        });
        assert_eq!(
            got,
            concat!(
                "* 1 FETCH (UID 99 BODY[HEADER.FIELDS (Date From)] {11}\r\nDate: x\r\n\r\n ",
                "BODY[1.2.MIME] NIL BODY[3]<100> \"abc\" BODY[2.HEADER.FIELDS.NOT (\"X Y\")] \"\" ",
                "RFC822.HEADER {8}\r\nH: v\r\n\r\n)\r\n"
            )
        );
    }

    /// The caller streams a literal's octets between `literal_start` and the next item.
    #[test]
    fn fetch_streamed_literal() {
        let whole = Section::default();
        let text = Section {
            part: None,
            text: Some(SectionText::Text),
        };
        let mut out = Vec::new();
        let mut f = FetchWriter::begin(&mut out, 12);
        f.uid(&mut out, 5);
        f.literal_start(
            &mut out,
            ContentItem::Body {
                section: &whole,
                origin: None,
            },
            1234,
        );
        assert_eq!(out, b"* 12 FETCH (UID 5 BODY[] {1234}\r\n");
        // The connection sends `out`, then 1234 octets from storage, then carries on.
        out.clear();
        f.literal_start(
            &mut out,
            ContentItem::Body {
                section: &text,
                origin: Some(0),
            },
            3,
        );
        out.extend_from_slice(b"xyz");
        f.literal_start(&mut out, ContentItem::Rfc822, 0);
        f.literal_start(&mut out, ContentItem::Rfc822Text, 1);
        out.push(b'!');
        f.finish(&mut out);
        assert_eq!(
            out,
            b" BODY[TEXT]<0> {3}\r\nxyz RFC822 {0}\r\n RFC822.TEXT {1}\r\n!)\r\n"
        );
    }

    #[test]
    fn fetch_flags_and_empty_response() {
        let got = wire(|o| {
            let mut f = FetchWriter::begin(o, 7);
            f.flags(
                o,
                &[
                    Flag::Recent,
                    Flag::Extension("Important".into()),
                    Flag::Keyword("$Label1".into()),
                ],
            );
            f.finish(o);
        });
        assert_eq!(got, "* 7 FETCH (FLAGS (\\Recent \\Important $Label1))\r\n");
        let got = wire(|o| {
            let mut f = FetchWriter::begin(o, 7);
            f.flags(o, &[]);
            f.finish(o);
        });
        assert_eq!(got, "* 7 FETCH (FLAGS ())\r\n");
    }
}
