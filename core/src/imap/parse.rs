//! The IMAP command parser: framing (lines and literals, incomplete input) and the RFC 3501
//! section 9 grammar. See [`crate::imap`] for how a session drives it.
//!
//! Parsing a command is two passes over the buffer. The framing pass finds the command's
//! extent: it walks line by line, and where a line ends with a literal announcement `{N}` or
//! `{N+}` it skips the N octets and carries on, until a line ends without one. It is the only
//! pass that can report [`ParseError::Incomplete`], so the grammar pass runs on a complete
//! command (nom's `complete` combinators throughout) and every failure is a real syntax
//! error. The grammar pass borrows every string from the buffer.

mod fetch;
mod lex;
mod search;

use std::borrow::Cow;

use nom::Parser;

use super::types::{
    AuthMechanism, AuthResponse, Command, CommandBody, InitialResponse, ListReturn, ListSelect,
    StatusItems, StoreAction,
};
use lex::{
    ascii, astring, atom, atom_bytes, date_time, eol, failure, flag, flag_list, list_mailbox,
    literal_header, mailbox, must, nstring, sequence_set, sp, string, tag_bytes, tag_token, upper,
    why, In, PErr, PResult,
};

pub(crate) use lex::valid_sequence_set;
pub use search::MAX_SEARCH_DEPTH;

/// Bounds on what the parser accepts, so that a client cannot make a session buffer without
/// end. APPEND's message literal is exempt: it is streamed, never buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line of a command, not counting its CRLF nor any literal. Long UID sets make
    /// long lines; RFC 7162 3.2.1 asks servers to take at least 8192 octets.
    pub max_line: usize,
    /// Largest literal accepted in a command other than APPEND's message.
    pub max_literal: u32,
    /// Largest command, all its lines and literals together (APPEND's message aside).
    pub max_command: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_line: 64 * 1024,
        max_literal: 64 * 1024,
        max_command: 256 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What an incomplete buffer is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// The end of a line.
    Line,
    /// The octets of a literal, `size` of them starting at `offset` in the buffer. For a
    /// synchronising literal (`sync`) the client waits for a `+` continuation before it
    /// sends them: send one the first time this `offset` is reported, then wait until
    /// `offset + size` octets (and the rest of the line) are buffered.
    Literal {
        size: u32,
        sync: bool,
        offset: usize,
    },
}

/// Why a buffer did not yield a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// The command is not all in the buffer yet.
    Incomplete(Needed),
    /// A complete command (or line) that is malformed: answer `<tag> BAD <reason>` (or
    /// `* BAD <reason>` without a tag) and drop `consumed` octets, the whole command.
    Bad {
        tag: Option<&'a str>,
        consumed: usize,
        reason: Reason,
    },
    /// A line longer than [`Limits::max_line`] whose end has not arrived: answer BAD and
    /// discard input up to and including the next LF, however long that takes.
    TooLong { tag: Option<&'a str> },
    /// A literal larger than [`Limits::max_literal`], or that would make the command larger
    /// than [`Limits::max_command`]. `consumed` covers the command up to the end of the
    /// announcing line. For a synchronising literal, answer `<tag> BAD` (or NO) and drop
    /// `consumed` octets: the client sends nothing more of this command. For a
    /// non-synchronising one the octets are already on their way: answer, then close the
    /// connection (RFC 7888 4), or drop `size` more octets and the rest of the command.
    LiteralTooLarge {
        tag: Option<&'a str>,
        size: u32,
        sync: bool,
        consumed: usize,
    },
}

impl ParseError<'_> {
    /// The tag of the command, when it could be read.
    pub fn tag(&self) -> Option<&str> {
        match self {
            ParseError::Incomplete(_) => None,
            ParseError::Bad { tag, .. }
            | ParseError::TooLong { tag }
            | ParseError::LiteralTooLarge { tag, .. } => *tag,
        }
    }
}

/// Why a command is malformed: the text of the BAD response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("Empty command line")]
    EmptyLine,
    #[error("Missing or invalid tag")]
    BadTag,
    #[error("Missing command")]
    MissingCommand,
    #[error("Unknown command")]
    UnknownCommand,
    #[error("Syntax error in arguments")]
    Syntax,
    #[error("Command line too long")]
    LineTooLong,
    #[error("Command too long")]
    CommandTooLong,
    #[error("Invalid literal")]
    BadLiteral,
    #[error("Invalid quoted string")]
    BadString,
    #[error("Invalid number")]
    BadNumber,
    #[error("Invalid sequence set")]
    BadSequenceSet,
    #[error("Invalid date")]
    BadDate,
    #[error("Invalid date-time")]
    BadDateTime,
    #[error("Invalid flag")]
    BadFlag,
    #[error("\\Recent cannot be set by a client")]
    RecentNotAllowed,
    #[error("Invalid mailbox name")]
    BadMailbox,
    #[error("Invalid search key")]
    BadSearchKey,
    #[error("Search keys nested too deeply")]
    NestingTooDeep,
    #[error("Invalid fetch attribute")]
    BadFetchAttribute,
    #[error("Invalid body section")]
    BadSection,
    #[error("Invalid partial range")]
    BadPartial,
    #[error("Invalid STORE data item")]
    BadStoreAction,
    #[error("Invalid STATUS data item")]
    BadStatusItem,
    #[error("Invalid LIST option")]
    BadListOption,
    #[error("Invalid base64")]
    BadBase64,
    #[error("Too many ID parameters")]
    TooManyIdParams,
    #[error("Expected DONE")]
    ExpectedDone,
}

/// RFC 2971 3.3: at most 30 field-value pairs.
const MAX_ID_PARAMS: usize = 30;

// ---------------------------------------------------------------------------------------
// Entry points

/// Parses the command at the start of `input`.
///
/// On success, returns how many octets the command took and the command, borrowing from
/// `input`. For [`CommandBody::Append`], the command ends just after the line announcing
/// the message literal: the message's `size` octets follow in the stream, then the end of
/// the line ([`parse_append_end`], or [`parse_append_utf8_end`] for the UTF8 form).
pub fn parse_command<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(usize, Command<'a>), ParseError<'a>> {
    let append = is_append(input);
    let mut pos = 0;
    loop {
        let (line_end, content) = line_at(input, pos, limits)?;
        let Some(announced) = literal_announcement(content) else {
            if line_end > limits.max_command {
                return Err(bad(input, line_end, Reason::CommandTooLong));
            }
            return complete_command(input, line_end);
        };
        let Some(h) = announced else {
            return Err(bad(input, line_end, Reason::BadLiteral));
        };
        let data_start = line_end;
        if append {
            if let Ok((rest, cmd)) = command(&input[..data_start]) {
                if rest.is_empty() && matches!(cmd.body, CommandBody::Append { .. }) {
                    return Ok((data_start, cmd));
                }
            }
        }
        let size = h.size as usize;
        if h.size > limits.max_literal || data_start.saturating_add(size) > limits.max_command {
            return Err(ParseError::LiteralTooLarge {
                tag: peek_tag(input),
                size: h.size,
                sync: h.sync,
                consumed: data_start,
            });
        }
        if input.len() < data_start + size {
            return Err(ParseError::Incomplete(Needed::Literal {
                size: h.size,
                sync: h.sync,
                offset: data_start,
            }));
        }
        pos = data_start + size;
    }
}

/// Parses the end of an APPEND command once its message literal has been read: the CRLF
/// that ends the command line. Returns the octets it took. A BAD carries no tag: use the
/// APPEND's.
pub fn parse_append_end<'a>(input: &'a [u8], limits: &Limits) -> Result<usize, ParseError<'a>> {
    let (end, content) = line_at(input, 0, limits).map_err(untagged)?;
    if content.is_empty() {
        Ok(end)
    } else {
        Err(ParseError::Bad {
            tag: None,
            consumed: end,
            reason: Reason::Syntax,
        })
    }
}

/// Parses the end of an APPEND with RFC 6855's UTF8 data extension once its message
/// literal has been read: the `)` that closes `UTF8 (~{n}`, then the CRLF. Returns the octets
/// it took. A BAD carries no tag: use the APPEND's.
pub fn parse_append_utf8_end<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<usize, ParseError<'a>> {
    let (end, content) = line_at(input, 0, limits).map_err(untagged)?;
    if content == b")" {
        Ok(end)
    } else {
        Err(ParseError::Bad {
            tag: None,
            consumed: end,
            reason: Reason::Syntax,
        })
    }
}

/// Parses the line that ends an IDLE (RFC 2177): `DONE`, in any case. Returns the octets it
/// took; any other line is a BAD [`Reason::ExpectedDone`] (without a tag).
pub fn parse_idle_done<'a>(input: &'a [u8], limits: &Limits) -> Result<usize, ParseError<'a>> {
    let (end, content) = line_at(input, 0, limits).map_err(untagged)?;
    if content.eq_ignore_ascii_case(b"DONE") {
        Ok(end)
    } else {
        Err(ParseError::Bad {
            tag: None,
            consumed: end,
            reason: Reason::ExpectedDone,
        })
    }
}

/// Parses a client's answer to an AUTHENTICATE challenge: base64, an empty line (an empty
/// response) or `*` (cancel). A BAD carries no tag: use the AUTHENTICATE's.
pub fn parse_auth_response<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(usize, AuthResponse<'a>), ParseError<'a>> {
    let (end, content) = line_at(input, 0, limits).map_err(untagged)?;
    let response = match content {
        b"*" => AuthResponse::Cancel,
        b"" | b"=" => AuthResponse::Response(InitialResponse::Empty),
        b if valid_base64(b) => {
            AuthResponse::Response(InitialResponse::Base64(Cow::Borrowed(ascii(b))))
        }
        _ => {
            return Err(ParseError::Bad {
                tag: None,
                consumed: end,
                reason: Reason::BadBase64,
            })
        }
    };
    Ok((end, response))
}

/// The tag at the start of `input`, if there is a well-formed one followed by SP or the end
/// of the line: what to put in a BAD response.
pub fn peek_tag(input: &[u8]) -> Option<&str> {
    let (rest, tag) = tag_token(input).ok()?;
    match rest.first() {
        Some(b' ' | b'\r' | b'\n') => Some(tag),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Framing

/// The line starting at `pos`: the offset just past its LF, and its content without the
/// CRLF (or bare LF).
fn line_at<'a>(
    input: &'a [u8],
    pos: usize,
    limits: &Limits,
) -> Result<(usize, &'a [u8]), ParseError<'a>> {
    // The longest acceptable line, CR and LF included.
    let window_end = input
        .len()
        .min(pos.saturating_add(limits.max_line).saturating_add(2));
    let Some(lf) = crate::scan::find_lf(&input[pos..window_end]) else {
        if window_end - pos < limits.max_line.saturating_add(2) {
            return Err(ParseError::Incomplete(Needed::Line));
        }
        // Too long: if the end of the line is buffered, drop the line whole.
        return Err(match memchr::memchr(b'\n', &input[window_end..]) {
            Some(lf) => bad(input, window_end + lf + 1, Reason::LineTooLong),
            None => ParseError::TooLong {
                tag: peek_tag(input),
            },
        });
    };
    let end = pos + lf + 1;
    let line = &input[pos..pos + lf];
    let content = line.strip_suffix(b"\r").unwrap_or(line);
    if content.len() > limits.max_line {
        return Err(bad(input, end, Reason::LineTooLong));
    }
    Ok((end, content))
}

/// `None` if the line does not end with `{N}` / `{N+}`; `Some(None)` if N overflows.
fn literal_announcement(line: &[u8]) -> Option<Option<super::types::LiteralHeader>> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let inner = &body[open + 1..];
    let (digits, sync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(lex::parse_u32(digits).map(|size| super::types::LiteralHeader { size, sync }))
}

/// Whether the buffer starts with `tag SP APPEND SP`, whose last literal is streamed.
fn is_append(input: &[u8]) -> bool {
    match tag_bytes(input) {
        Ok((rest, _)) => rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b" APPEND "),
        Err(_) => false,
    }
}

fn bad(input: &[u8], consumed: usize, reason: Reason) -> ParseError<'_> {
    ParseError::Bad {
        tag: peek_tag(input),
        consumed,
        reason,
    }
}

/// Drops the tag guessed from a continuation line, which is not a command.
fn untagged(e: ParseError<'_>) -> ParseError<'_> {
    match e {
        ParseError::Bad {
            consumed, reason, ..
        } => ParseError::Bad {
            tag: None,
            consumed,
            reason,
        },
        ParseError::TooLong { .. } => ParseError::TooLong { tag: None },
        e => e,
    }
}

fn reason_of(e: nom::Err<PErr>) -> Reason {
    match e {
        nom::Err::Error(p) | nom::Err::Failure(p) => p.reason.unwrap_or(Reason::Syntax),
        nom::Err::Incomplete(_) => Reason::Syntax,
    }
}

/// Runs the grammar over the framed command `input[..end]`.
fn complete_command(input: &[u8], end: usize) -> Result<(usize, Command<'_>), ParseError<'_>> {
    let text = &input[..end];
    if eol(text).is_ok_and(|(rest, ())| rest.is_empty()) {
        return Err(ParseError::Bad {
            tag: None,
            consumed: end,
            reason: Reason::EmptyLine,
        });
    }
    let parsed = command(text).map_err(reason_of).and_then(|(rest, cmd)| {
        if matches!(cmd.body, CommandBody::Append { .. }) {
            return Err(Reason::Syntax);
        }
        match eol(rest) {
            Ok((b"", ())) => Ok(cmd),
            _ => Err(Reason::Syntax),
        }
    });
    parsed
        .map(|cmd| (end, cmd))
        .map_err(|reason| bad(input, end, reason))
}

// ---------------------------------------------------------------------------------------
// Grammar

/// `tag SP command`, without the final CRLF (APPEND: up to and including the line that
/// announces the message literal).
fn command(i: In<'_>) -> PResult<'_, Command<'_>> {
    let (i, tag) = why(Reason::BadTag, tag_token).parse(i)?;
    let (i, ()) = why(Reason::MissingCommand, sp).parse(i)?;
    let (i, verb) = must(Reason::MissingCommand, atom_bytes).parse(i)?;
    let (i, body) = command_body(i, verb)?;
    Ok((
        i,
        Command {
            tag: Cow::Borrowed(tag),
            body,
        },
    ))
}

fn command_body<'a>(i: In<'a>, verb: &[u8]) -> PResult<'a, CommandBody<'a>> {
    use CommandBody as C;
    let mut buf = [0u8; 16];
    let Some(name) = upper(verb, &mut buf) else {
        return failure(Reason::UnknownCommand);
    };
    match name {
        b"CAPABILITY" => Ok((i, C::Capability)),
        b"NOOP" => Ok((i, C::Noop)),
        b"LOGOUT" => Ok((i, C::Logout)),
        b"STARTTLS" => Ok((i, C::StartTls)),
        b"AUTHENTICATE" => authenticate(i),
        b"LOGIN" => {
            let (i, ()) = sp(i)?;
            let (i, username) = astring(i)?;
            let (i, ()) = sp(i)?;
            let (i, password) = astring(i)?;
            Ok((i, C::Login { username, password }))
        }
        b"ENABLE" => enable(i),
        b"ID" => id(i),
        b"NAMESPACE" => Ok((i, C::Namespace)),
        b"SELECT" => one_mailbox(i).map(|(i, mailbox)| (i, C::Select { mailbox })),
        b"EXAMINE" => one_mailbox(i).map(|(i, mailbox)| (i, C::Examine { mailbox })),
        b"CREATE" => one_mailbox(i).map(|(i, mailbox)| (i, C::Create { mailbox })),
        b"DELETE" => one_mailbox(i).map(|(i, mailbox)| (i, C::Delete { mailbox })),
        b"SUBSCRIBE" => one_mailbox(i).map(|(i, mailbox)| (i, C::Subscribe { mailbox })),
        b"UNSUBSCRIBE" => one_mailbox(i).map(|(i, mailbox)| (i, C::Unsubscribe { mailbox })),
        b"RENAME" => {
            let (i, from) = one_mailbox(i)?;
            let (i, to) = one_mailbox(i)?;
            Ok((i, C::Rename { from, to }))
        }
        b"LIST" => list(i),
        b"LSUB" => {
            let (i, ()) = sp(i)?;
            let (i, reference) = why(Reason::BadMailbox, astring).parse(i)?;
            let (i, ()) = sp(i)?;
            let (i, pattern) = why(Reason::BadMailbox, list_mailbox).parse(i)?;
            Ok((i, C::Lsub { reference, pattern }))
        }
        b"STATUS" => {
            let (i, mailbox) = one_mailbox(i)?;
            let (i, ()) = sp(i)?;
            let (i, items) = status_items(i)?;
            Ok((i, C::Status { mailbox, items }))
        }
        b"APPEND" => append(i),
        b"IDLE" => Ok((i, C::Idle)),
        b"CHECK" => Ok((i, C::Check)),
        b"CLOSE" => Ok((i, C::Close)),
        b"UNSELECT" => Ok((i, C::Unselect)),
        b"EXPUNGE" => Ok((i, C::Expunge)),
        b"SEARCH" => search::search(i, false),
        b"FETCH" => fetch::fetch(i, false),
        b"STORE" => store(i, false),
        b"COPY" => copy_or_move(i, false, false),
        b"MOVE" => copy_or_move(i, false, true),
        b"UID" => uid(i),
        _ => failure(Reason::UnknownCommand),
    }
}

/// `UID SP (COPY / MOVE / FETCH / SEARCH / STORE / EXPUNGE)`.
fn uid(i: In<'_>) -> PResult<'_, CommandBody<'_>> {
    let (i, ()) = why(Reason::MissingCommand, sp).parse(i)?;
    let (i, verb) = must(Reason::MissingCommand, atom_bytes).parse(i)?;
    let mut buf = [0u8; 16];
    match upper(verb, &mut buf) {
        Some(b"FETCH") => fetch::fetch(i, true),
        Some(b"SEARCH") => search::search(i, true),
        Some(b"STORE") => store(i, true),
        Some(b"COPY") => copy_or_move(i, true, false),
        Some(b"MOVE") => copy_or_move(i, true, true),
        Some(b"EXPUNGE") => {
            let (i, ()) = sp(i)?;
            let (i, set) = must(Reason::BadSequenceSet, sequence_set).parse(i)?;
            Ok((i, CommandBody::UidExpunge(set)))
        }
        _ => failure(Reason::UnknownCommand),
    }
}

/// `SP mailbox`.
fn one_mailbox(i: In<'_>) -> PResult<'_, super::types::Mailbox<'_>> {
    let (i, ()) = sp(i)?;
    mailbox(i)
}

/// `AUTHENTICATE SP auth-type [SP (base64 / "=")]`.
fn authenticate(i: In<'_>) -> PResult<'_, CommandBody<'_>> {
    let (i, ()) = sp(i)?;
    let (i, mech) = atom(i)?;
    let mechanism = if mech.eq_ignore_ascii_case("PLAIN") {
        AuthMechanism::Plain
    } else if mech.eq_ignore_ascii_case("LOGIN") {
        AuthMechanism::Login
    } else {
        AuthMechanism::Other(Cow::Borrowed(mech))
    };
    let (i, initial) = match i.strip_prefix(b" ") {
        None => (i, None),
        Some(r) => {
            let len = r
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
                .unwrap_or(r.len());
            let (token, rest) = r.split_at(len);
            let initial = match token {
                b"=" => InitialResponse::Empty,
                t if valid_base64(t) => InitialResponse::Base64(Cow::Borrowed(ascii(t))),
                _ => return failure(Reason::BadBase64),
            };
            (rest, Some(initial))
        }
    };
    Ok((i, CommandBody::Authenticate { mechanism, initial }))
}

/// Non-empty base64 with correct padding (RFC 4648 4, as RFC 3501's `base64` rule).
fn valid_base64(b: &[u8]) -> bool {
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return false;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    pad <= 2
        && b[..b.len() - pad]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

/// `ENABLE 1*(SP capability)`.
fn enable(i: In<'_>) -> PResult<'_, CommandBody<'_>> {
    let mut caps = Vec::new();
    let mut rest = i;
    while let Ok((r, ())) = sp(rest) {
        let (r, cap) = atom(r)?;
        caps.push(Cow::Borrowed(cap));
        rest = r;
    }
    if caps.is_empty() {
        return failure(Reason::Syntax);
    }
    Ok((rest, CommandBody::Enable(caps)))
}

/// `ID SP ("(" [string SP nstring *(SP string SP nstring)] ")" / nil)`.
fn id(i: In<'_>) -> PResult<'_, CommandBody<'_>> {
    let (i, ()) = sp(i)?;
    let Some(mut rest) = i.strip_prefix(b"(") else {
        let (i, ()) = lex::nil(i)?;
        return Ok((i, CommandBody::Id(None)));
    };
    let mut params = Vec::new();
    if let Some(r) = rest.strip_prefix(b")") {
        return Ok((r, CommandBody::Id(Some(params))));
    }
    loop {
        if params.len() == MAX_ID_PARAMS {
            return failure(Reason::TooManyIdParams);
        }
        let (r, field) = string(rest)?;
        let (r, ()) = sp(r)?;
        let (r, value) = nstring(r)?;
        params.push((field, value));
        match r.first() {
            Some(b' ') => rest = &r[1..],
            Some(b')') => return Ok((&r[1..], CommandBody::Id(Some(params)))),
            _ => return failure(Reason::Syntax),
        }
    }
}

/// `LIST [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]`
/// (RFC 3501 6.3.8 and RFC 5258 6).
fn list(i: In<'_>) -> PResult<'_, CommandBody<'_>> {
    let (mut i, ()) = sp(i)?;
    let mut select = ListSelect::default();
    if i.starts_with(b"(") {
        let (r, opts) = option_list(i)?;
        for o in opts {
            let mut buf = [0u8; 16];
            match upper(o, &mut buf) {
                Some(b"SUBSCRIBED") => select.subscribed = true,
                Some(b"REMOTE") => select.remote = true,
                Some(b"RECURSIVEMATCH") => select.recursive_match = true,
                Some(b"SPECIAL-USE") => select.special_use = true,
                _ => return failure(Reason::BadListOption),
            }
        }
        // RFC 5258 3: RECURSIVEMATCH modifies another selection option.
        if select.recursive_match && !(select.subscribed || select.remote || select.special_use) {
            return failure(Reason::BadListOption);
        }
        (i, ()) = sp(r)?;
    }
    let (i, reference) = why(Reason::BadMailbox, astring).parse(i)?;
    let (i, ()) = sp(i)?;
    let (mut i, patterns) = if let Some(mut rest) = i.strip_prefix(b"(") {
        let mut patterns = Vec::new();
        loop {
            let (r, p) = must(Reason::BadMailbox, list_mailbox).parse(rest)?;
            patterns.push(p);
            match r.first() {
                Some(b' ') => rest = &r[1..],
                Some(b')') => break (&r[1..], patterns),
                _ => return failure(Reason::Syntax),
            }
        }
    } else {
        let (i, p) = why(Reason::BadMailbox, list_mailbox).parse(i)?;
        (i, vec![p])
    };
    let mut ret = ListReturn::default();
    if let Some(r) = i.strip_prefix(b" ") {
        let (r, kw) = atom_bytes(r)?;
        if !kw.eq_ignore_ascii_case(b"RETURN") {
            return failure(Reason::BadListOption);
        }
        let (r, ()) = must(Reason::BadListOption, sp).parse(r)?;
        let Some(mut rest) = r.strip_prefix(b"(") else {
            return failure(Reason::BadListOption);
        };
        if let Some(r) = rest.strip_prefix(b")") {
            i = r;
        } else {
            loop {
                let (r, opt) = must(Reason::BadListOption, atom_bytes).parse(rest)?;
                let mut buf = [0u8; 16];
                let r = match upper(opt, &mut buf) {
                    Some(b"SUBSCRIBED") => {
                        ret.subscribed = true;
                        r
                    }
                    Some(b"CHILDREN") => {
                        ret.children = true;
                        r
                    }
                    Some(b"SPECIAL-USE") => {
                        ret.special_use = true;
                        r
                    }
                    Some(b"STATUS") => {
                        let (r, ()) = must(Reason::BadListOption, sp).parse(r)?;
                        let (r, items) = status_items(r)?;
                        ret.status = Some(items);
                        r
                    }
                    _ => return failure(Reason::BadListOption),
                };
                match r.first() {
                    Some(b' ') => rest = &r[1..],
                    Some(b')') => {
                        i = &r[1..];
                        break;
                    }
                    _ => return failure(Reason::BadListOption),
                }
            }
        }
    }
    Ok((
        i,
        CommandBody::List {
            reference,
            patterns,
            select,
            ret,
        },
    ))
}

/// `"(" [atom *(SP atom)] ")"`.
fn option_list(i: In<'_>) -> PResult<'_, Vec<&[u8]>> {
    let Some(mut rest) = i.strip_prefix(b"(") else {
        return failure(Reason::BadListOption);
    };
    let mut opts = Vec::new();
    if let Some(r) = rest.strip_prefix(b")") {
        return Ok((r, opts));
    }
    loop {
        let (r, o) = must(Reason::BadListOption, atom_bytes).parse(rest)?;
        opts.push(o);
        match r.first() {
            Some(b' ') => rest = &r[1..],
            Some(b')') => return Ok((&r[1..], opts)),
            _ => return failure(Reason::BadListOption),
        }
    }
}

/// `"(" status-att *(SP status-att) ")"`.
fn status_items(i: In<'_>) -> PResult<'_, StatusItems> {
    let Some(mut rest) = i.strip_prefix(b"(") else {
        return failure(Reason::BadStatusItem);
    };
    let mut items = StatusItems::default();
    loop {
        let (r, name) = must(Reason::BadStatusItem, atom_bytes).parse(rest)?;
        let mut buf = [0u8; 16];
        match upper(name, &mut buf) {
            Some(b"MESSAGES") => items.messages = true,
            Some(b"RECENT") => items.recent = true,
            Some(b"UIDNEXT") => items.uid_next = true,
            Some(b"UIDVALIDITY") => items.uid_validity = true,
            Some(b"UNSEEN") => items.unseen = true,
            Some(b"SIZE") => items.size = true,
            _ => return failure(Reason::BadStatusItem),
        }
        match r.first() {
            Some(b' ') => rest = &r[1..],
            Some(b')') => return Ok((&r[1..], items)),
            _ => return failure(Reason::BadStatusItem),
        }
    }
}

/// `APPEND SP mailbox [SP flag-list] [SP date-time] SP (literal / "UTF8" SP "(" literal8)`,
/// up to and including the literal's announcement line.
fn append(i: In<'_>) -> PResult<'_, CommandBody<'_>> {
    let (i, mailbox) = one_mailbox(i)?;
    let (mut i, ()) = sp(i)?;
    let mut flags = Vec::new();
    if i.starts_with(b"(") {
        let (r, f) = flag_list(i)?;
        flags = f;
        (i, ()) = sp(r)?;
    }
    let mut date = None;
    if i.starts_with(b"\"") {
        let (r, d) = date_time(i)?;
        date = Some(d);
        (i, ()) = sp(r)?;
    }
    // RFC 6855 4: `append-data =/ "UTF8" SP "(" literal8 ")"`, literal8 being `~{n}` or
    // (LITERAL+, RFC 7888) `~{n+}`; the `)` follows the message.
    let (i, utf8) = match i.first() {
        Some(b'{') => (i, false),
        _ => {
            let (r, kw) = must(Reason::Syntax, atom_bytes).parse(i)?;
            if !kw.eq_ignore_ascii_case(b"UTF8") {
                return failure(Reason::Syntax);
            }
            let Some(r) = r.strip_prefix(b" (~") else {
                return failure(Reason::BadLiteral);
            };
            (r, true)
        }
    };
    let (i, message) = must(Reason::BadLiteral, literal_header).parse(i)?;
    Ok((
        i,
        CommandBody::Append {
            mailbox,
            flags,
            date,
            message,
            utf8,
        },
    ))
}

/// `STORE SP sequence-set SP (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag
/// *(SP flag)))`.
fn store(i: In<'_>, uid: bool) -> PResult<'_, CommandBody<'_>> {
    let (i, ()) = sp(i)?;
    let (i, set) = must(Reason::BadSequenceSet, sequence_set).parse(i)?;
    let (i, ()) = sp(i)?;
    let (i, action) = match i.first() {
        Some(b'+') => (&i[1..], StoreAction::Add),
        Some(b'-') => (&i[1..], StoreAction::Remove),
        _ => (i, StoreAction::Replace),
    };
    let (i, item) = must(Reason::BadStoreAction, atom_bytes).parse(i)?;
    let silent = if item.eq_ignore_ascii_case(b"FLAGS") {
        false
    } else if item.eq_ignore_ascii_case(b"FLAGS.SILENT") {
        true
    } else {
        return failure(Reason::BadStoreAction);
    };
    let (i, ()) = sp(i)?;
    let (i, flags) = if i.starts_with(b"(") {
        flag_list(i)?
    } else {
        let mut flags = Vec::new();
        let mut rest = i;
        loop {
            let (r, f) = must(Reason::BadFlag, flag).parse(rest)?;
            flags.push(f);
            match sp(r) {
                Ok((r, ())) => rest = r,
                Err(_) => break (r, flags),
            }
        }
    };
    Ok((
        i,
        CommandBody::Store {
            uid,
            set,
            action,
            silent,
            flags,
        },
    ))
}

/// `COPY / MOVE SP sequence-set SP mailbox`.
fn copy_or_move(i: In<'_>, uid: bool, is_move: bool) -> PResult<'_, CommandBody<'_>> {
    let (i, ()) = sp(i)?;
    let (i, set) = must(Reason::BadSequenceSet, sequence_set).parse(i)?;
    let (i, mailbox) = one_mailbox(i)?;
    let body = if is_move {
        CommandBody::Move { uid, set, mailbox }
    } else {
        CommandBody::Copy { uid, set, mailbox }
    };
    Ok((i, body))
}
