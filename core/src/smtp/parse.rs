//! Parser for SMTP command lines (RFC 5321 4.1, with SIZE, 8BITMIME, SMTPUTF8, CHUNKING
//! and AUTH), in nom's style: each rule takes the rest of the input and returns what is left
//! with its value (`IResult`), so every string in the resulting [`Command`] is a slice of the
//! caller's buffer and the parse path never allocates.
//!
//! The verb, the SP after it and trailing blanks are ASCII and found on octets; the argument
//! is checked to be UTF-8 once (a word-at-a-time ASCII test, `from_utf8` only when it is not
//! ASCII). Every character class is one lookup in a table of octets, never a decoded `char`:
//! the classes either take every non-ASCII octet (addresses and domains, where RFC 6531
//! allows UTF-8) or none, so a run of them always ends on a character boundary. A
//! four-letter verb is found by a perfect hash of its case-folded word, keywords are
//! compared a word or a fold at a time, and each alternative is tried only where its first
//! octet is. Together these keep a command line to a few dozen nanoseconds.
//!
//! Errors are classified by the stage that fails: the verb ([`ParseError::UnknownCommand`]),
//! the arguments ([`ParseError::Syntax`]), a path ([`ParseError::BadAddress`]) or an ESMTP
//! parameter ([`ParseError::BadParameter`]). Invalid UTF-8 anywhere, and non-ASCII text
//! where only ASCII may appear (the verb, free-text and numeric arguments), give
//! [`ParseError::BadEncoding`]. Non-ASCII is always accepted inside addresses and the
//! EHLO/HELO domain; whether SMTPUTF8 was negotiated is for the session to check.

use nom::combinator::map;
use nom::error::{Error, ErrorKind};
use nom::{IResult, Parser};

use super::command::{
    AuthMechanism, BodyType, Command, Domain, ForwardPath, InitialResponse, LocalPart, MailParams,
    Mailbox, ParseError, ReversePath,
};

/// Internal nom result over an already UTF-8-checked line.
type PResult<'a, O> = IResult<&'a str, O>;

/// RFC 5321 4.5.3.1.1: at most 64 octets of local part.
const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 4.5.3.1.2: at most 255 octets of domain.
const MAX_DOMAIN: usize = 255;
/// RFC 1035 2.3.4: at most 63 octets per label (checked for ASCII labels only, since a
/// U-label's length limit applies to its A-label form).
const MAX_LABEL: usize = 63;
/// RFC 4422 3.1: a SASL mechanism name is 1 to 20 characters.
const MAX_MECHANISM: usize = 20;

/// Parses one command line, without its CRLF.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ParseError> {
    // The verb, the SP after it and trailing blanks are ASCII, so they are found on octets
    // and only the argument is checked to be UTF-8: the same answer as checking the whole
    // line first, without the char-boundary checks of slicing a `str`.
    let line = &line[..line
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |last| last + 1)];

    // Nearly every verb is four letters: look for the SP there before searching for it.
    let token_len = if line.len() == 4 || line.get(4) == Some(&b' ') {
        4
    } else {
        line.iter().position(|&c| c == b' ').unwrap_or(line.len())
    };
    let (token, rest) = line.split_at(token_len);
    let Some(verb) = Verb::recognize(token) else {
        // The guess of four may have cut a shorter token's argument: split again.
        let (token, rest) =
            line.split_at(line.iter().position(|&c| c == b' ').unwrap_or(line.len()));
        return Err(if token.is_ascii() && utf8(rest).is_ok() {
            ParseError::UnknownCommand
        } else {
            ParseError::BadEncoding
        });
    };
    let arg = match rest {
        [] => None,
        [_, arg @ ..] => Some(utf8(arg)?),
    };
    if arg.is_some_and(|a| matches!(a.as_bytes().first(), Some(b' ' | b'\t'))) {
        // RFC 5321 puts exactly one SP between the verb and its argument.
        return Err(ParseError::Syntax);
    }

    match verb {
        Verb::Ehlo => helo_argument(arg).map(Command::Ehlo),
        Verb::Helo => helo_argument(arg).map(Command::Helo),
        Verb::Mail => mail(arg),
        Verb::Rcpt => rcpt(arg),
        Verb::Data => no_argument(arg).map(|()| Command::Data),
        Verb::Bdat => bdat(arg),
        Verb::Rset => no_argument(arg).map(|()| Command::Rset),
        Verb::Noop => match arg {
            None => Ok(Command::Noop),
            Some(a) => free_text(a).map(|_| Command::Noop),
        },
        Verb::Quit => no_argument(arg).map(|()| Command::Quit),
        Verb::Vrfy => free_text(arg.ok_or(ParseError::Syntax)?).map(Command::Vrfy),
        Verb::Help => arg.map(free_text).transpose().map(Command::Help),
        Verb::StartTls => no_argument(arg).map(|()| Command::StartTls),
        Verb::Auth => auth(arg),
    }
}

/// An argument as `&str`. Nearly every command line is ASCII, which is checked a word at a
/// time with no branch per octet; `from_utf8` walks a slice that does not start word-aligned
/// octet by octet and cost a fifth of the parse.
#[allow(unsafe_code)]
fn utf8(arg: &[u8]) -> Result<&str, ParseError> {
    if is_ascii(arg) {
        // SAFETY: every ASCII octet string is valid UTF-8.
        Ok(unsafe { core::str::from_utf8_unchecked(arg) })
    } else {
        core::str::from_utf8(arg).map_err(|_| ParseError::BadEncoding)
    }
}

/// `<[u8]>::is_ascii` for the short slices of a command line: whole words ORed together,
/// the last (possibly overlapping) word included, and one test at the end.
fn is_ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("eight octets"));
    match b.len() {
        0..8 => b.iter().fold(0, |acc, &c| acc | c) < 0x80,
        n => {
            let tail = word(&b[n - 8..]);
            b.chunks_exact(8).fold(tail, |acc, w| acc | word(w)) & HIGH == 0
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    Auth,
}

/// A four-letter verb in lower case, as one little-endian word.
const fn word4(verb: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*verb)
}

/// The four-letter verbs, each at the slot a perfect hash of its word gives: one multiply,
/// one load and one compare. A `match` on the word compiled to a tree of compares that
/// mispredicted about once a line on a mixed command stream.
static VERBS4: [(u32, Option<Verb>); 16] = verbs4();

/// Found by search: the twelve verbs' words fall in twelve different slots.
const VERB_HASH: u32 = 0x7549_1bc3;

const fn verb_slot(word: u32) -> usize {
    (word.wrapping_mul(VERB_HASH) >> 28) as usize
}

const fn verbs4() -> [(u32, Option<Verb>); 16] {
    let verbs = [
        (b"ehlo", Verb::Ehlo),
        (b"helo", Verb::Helo),
        (b"mail", Verb::Mail),
        (b"rcpt", Verb::Rcpt),
        (b"data", Verb::Data),
        (b"bdat", Verb::Bdat),
        (b"rset", Verb::Rset),
        (b"noop", Verb::Noop),
        (b"quit", Verb::Quit),
        (b"vrfy", Verb::Vrfy),
        (b"help", Verb::Help),
        (b"auth", Verb::Auth),
    ];
    let mut table = [(0, None); 16];
    let mut i = 0;
    while i < verbs.len() {
        let word = word4(verbs[i].0);
        let slot = verb_slot(word);
        // Checked at compile time.
        assert!(table[slot].1.is_none(), "two verbs share a slot");
        table[slot] = (word, Some(verbs[i].1));
        i += 1;
    }
    table
}

impl Verb {
    /// The verb spelled by `token` (the line up to its first SP), in any case.
    ///
    /// Setting bit 5 of every octet folds ASCII upper case onto lower case; since every verb
    /// is letters only, a folded octet equals a verb's letter exactly when the octet is
    /// that letter in either case, so the compare is exact.
    fn recognize(token: &[u8]) -> Option<Verb> {
        if let Ok(w) = <[u8; 4]>::try_from(token) {
            let w = u32::from_le_bytes(w) | 0x2020_2020;
            let (word, verb) = VERBS4[verb_slot(w)];
            return if word == w { verb } else { None };
        }
        let w = <[u8; 8]>::try_from(token).ok()?;
        (u64::from_le_bytes(w) | 0x2020_2020_2020_2020 == u64::from_le_bytes(*b"starttls"))
            .then_some(Verb::StartTls)
    }
}

// ---------------------------------------------------------------------------------------
// Octet classes and the runs of them

/// Which classes an octet belongs to, one bit each (see the `C_*` constants).
static CLASSES: [u16; 256] = classes();

/// RFC 5322 `atext`, plus any non-ASCII octet (RFC 6531).
const C_ATEXT: u16 = 1;
/// `qtextSMTP`: SP and printable ASCII but `"` and `\`, plus any non-ASCII octet.
const C_QTEXT: u16 = 2;
/// Letters, digits and `-`, plus any non-ASCII octet (U-labels).
const C_LDH: u16 = 4;
/// `dcontent` of an address literal: printable ASCII but `[`, `\` and `]`.
const C_DCONTENT: u16 = 8;
/// An `esmtp-value` octet: above SP, not `=` nor DEL (non-ASCII allowed by RFC 6531).
const C_ESMTP_VALUE: u16 = 16;
/// `.`, which separates atoms and labels.
const C_DOT: u16 = 64;
/// Free text of NOOP, HELP and VRFY: HTAB, SP and printable ASCII.
const C_TEXT: u16 = 32;
/// A SASL mechanism name: letters, digits, `-` and `_` (RFC 4422 3.1).
const C_SASL: u16 = 128;
/// The base64 alphabet but its padding: letters, digits, `+` and `/`.
const C_BASE64: u16 = 256;

const fn classes() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let non_ascii = b >= 0x80;
        let alnum = b.is_ascii_alphanumeric();
        let printable = b >= b' ' && b <= b'~';
        let mut c = 0;
        if alnum
            || non_ascii
            || matches!(b, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'/')
            || matches!(
                b,
                b'=' | b'?' | b'^' | b'_' | b'`' | b'{' | b'|' | b'}' | b'~'
            )
        {
            c |= C_ATEXT;
        }
        if (printable && b != b'"' && b != b'\\') || non_ascii {
            c |= C_QTEXT;
        }
        if alnum || b == b'-' || non_ascii {
            c |= C_LDH;
        }
        if matches!(b, b'!'..=b'Z' | b'^'..=b'~') {
            c |= C_DCONTENT;
        }
        if b > b' ' && b != b'=' && b != 0x7f {
            c |= C_ESMTP_VALUE;
        }
        if printable || b == b'\t' {
            c |= C_TEXT;
        }
        if b == b'.' {
            c |= C_DOT;
        }
        if alnum || b == b'-' || b == b'_' {
            c |= C_SASL;
        }
        if alnum || b == b'+' || b == b'/' {
            c |= C_BASE64;
        }
        t[i] = c;
        i += 1;
    }
    t
}

fn is(class: u16, b: u8) -> bool {
    CLASSES[b as usize] & class != 0
}

/// The length of the run of `class` octets at the start of `i`. Every class takes all
/// non-ASCII octets or none, so the run ends on a character boundary.
fn run_len(i: &str, class: u16) -> usize {
    octet_run(i.as_bytes(), class)
}

/// [`run_len`] on octets, for scanning inside a `str` without char-boundary checks.
fn octet_run(b: &[u8], class: u16) -> usize {
    b.iter().position(|&c| !is(class, c)).unwrap_or(b.len())
}

/// The length of a run expected to be long (base64) of `class` (one class bit) octets at
/// the start of `b`, eight octets a step: the eight table entries are ANDed and tested once,
/// one branch per step instead of one per octet. For the short runs of addresses this is
/// slower than [`run_len`].
fn long_run(b: &[u8], class: u16) -> usize {
    debug_assert!(class.is_power_of_two());
    let mut n = 0;
    while let Some(chunk) = b.get(n..n + 8) {
        if chunk
            .iter()
            .fold(class, |all, &c| all & CLASSES[c as usize])
            == 0
        {
            break;
        }
        n += 8;
    }
    n + b[n..]
        .iter()
        .position(|&c| !is(class, c))
        .unwrap_or(b.len() - n)
}

/// At least one octet of `class`, as nom's `take_while1`.
fn run1(i: &str, class: u16) -> PResult<'_, &str> {
    match run_len(i, class) {
        0 => Err(fail(i)),
        n => Ok((&i[n..], &i[..n])),
    }
}

fn fail(i: &str) -> nom::Err<Error<&str>> {
    nom::Err::Error(Error::new(i, ErrorKind::Verify))
}

/// One given ASCII octet, as nom's `char` for ASCII.
fn byte(i: &str, b: u8) -> PResult<'_, ()> {
    match i.as_bytes().first() {
        Some(&c) if c == b => Ok((&i[1..], ())),
        _ => Err(fail(i)),
    }
}

/// Whether `s` is `keyword` (lower case ASCII) in any case. With `keyword` a constant,
/// each octet compiles to one OR and one compare: setting bit 5 folds a letter's upper case
/// onto its lower case, and octets that are not letters are compared exactly. No branch per
/// octet: keywords are tried one after another, and an early exit would be mispredicted.
#[inline(always)]
fn keyword_is<const N: usize>(s: impl AsRef<[u8]>, keyword: &[u8; N]) -> bool {
    let s = s.as_ref();
    s.len() == N
        && s.iter().zip(keyword).fold(true, |same, (&c, &k)| {
            let fold = if k.is_ascii_lowercase() { 0x20 } else { 0 };
            same & (c | fold == k)
        })
}

/// `i` split after `n` octets, the first part returned as the parsed value.
fn taken(i: &str, n: usize) -> PResult<'_, &str> {
    Ok((&i[n..], &i[..n]))
}

// ---------------------------------------------------------------------------------------
// Commands

/// DATA, RSET, QUIT and STARTTLS take nothing. (The command is built by the caller: passing
/// the 88-octet value through here and back cost as much as the rest of the parse.)
fn no_argument(arg: Option<&str>) -> Result<(), ParseError> {
    match arg {
        None => Ok(()),
        Some(a) if !a.is_ascii() => Err(ParseError::BadEncoding),
        Some(_) => Err(ParseError::Syntax),
    }
}

/// The argument of NOOP, HELP and VRFY: printable ASCII, SP and HTAB.
fn free_text(a: &str) -> Result<&str, ParseError> {
    if !a.is_ascii() {
        return Err(ParseError::BadEncoding);
    }
    if a.is_empty() || run_len(a, C_TEXT) != a.len() {
        return Err(ParseError::Syntax);
    }
    Ok(a)
}

/// `EHLO`/`HELO` argument: a domain or an address literal, returned as written (brackets
/// included for a literal).
fn helo_argument(arg: Option<&str>) -> Result<&str, ParseError> {
    let a = arg.ok_or(ParseError::Syntax)?;
    let rest = match a.as_bytes().first() {
        Some(b'[') => address_literal(a).map_err(|_| ParseError::Syntax)?.0,
        _ => domain_name(a).map_err(|_| ParseError::Syntax)?.0,
    };
    if rest.is_empty() {
        Ok(a)
    } else {
        Err(ParseError::Syntax)
    }
}

/// `MAIL FROM:<reverse-path> [SP Mail-parameters]`.
fn mail(arg: Option<&str>) -> Result<Command<'_>, ParseError> {
    let a = arg.ok_or(ParseError::Syntax)?;
    let rest = path_keyword(b"from:", a)?;
    let (rest, from) = reverse_path(rest).map_err(|_| ParseError::BadAddress)?;
    let params = match after_path(rest)? {
        None => MailParams::default(),
        Some(p) => mail_params(p)?,
    };
    Ok(Command::Mail { from, params })
}

/// `RCPT TO:<forward-path>`: we implement no RCPT parameters.
fn rcpt(arg: Option<&str>) -> Result<Command<'_>, ParseError> {
    let a = arg.ok_or(ParseError::Syntax)?;
    let rest = path_keyword(b"to:", a)?;
    let (rest, to) = forward_path(rest).map_err(|_| ParseError::BadAddress)?;
    match after_path(rest)? {
        None => Ok(Command::Rcpt { to }),
        Some(_) => Err(ParseError::BadParameter),
    }
}

/// `FROM:` or `TO:` (`keyword`, in lower case), case-insensitive, then (tolerated, as
/// Postfix does) spaces before `<`.
fn path_keyword<'a, const N: usize>(keyword: &[u8; N], a: &'a str) -> Result<&'a str, ParseError> {
    match a.as_bytes().get(..N) {
        // Every octet but the final `:` is a letter, so setting bit 5 folds exactly.
        Some(k)
            if k[N - 1] == b':' && k[..N - 1].iter().zip(keyword).all(|(c, k)| c | 0x20 == *k) =>
        {
            let rest = &a[N..];
            Ok(match rest.as_bytes().first() {
                Some(b' ') => rest.trim_start_matches(' '),
                _ => rest,
            })
        }
        _ => Err(ParseError::Syntax),
    }
}

/// What follows a path: nothing, or one SP and the parameters.
fn after_path(rest: &str) -> Result<Option<&str>, ParseError> {
    if rest.is_empty() {
        Ok(None)
    } else {
        rest.strip_prefix(' ').map(Some).ok_or(ParseError::Syntax)
    }
}

/// `BDAT chunk-size [SP "LAST"]` (RFC 3030).
fn bdat(arg: Option<&str>) -> Result<Command<'_>, ParseError> {
    let a = arg.ok_or(ParseError::Syntax)?;
    if !a.is_ascii() {
        return Err(ParseError::BadEncoding);
    }
    let (digits, last) = match a.bytes().position(|b| b == b' ') {
        None => (a, false),
        Some(sp) if keyword_is(&a[sp + 1..], b"last") => (&a[..sp], true),
        Some(_) => return Err(ParseError::Syntax),
    };
    let size = number(digits).ok_or(ParseError::Syntax)?;
    Ok(Command::Bdat { size, last })
}

/// `1*DIGIT` as a `u64`; `None` if empty, not all digits, or too large.
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u64, |n, b| {
        let d = b.wrapping_sub(b'0');
        (d < 10).then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// `AUTH mechanism [SP initial-response]` (RFC 4954 4).
fn auth(arg: Option<&str>) -> Result<Command<'_>, ParseError> {
    let a = arg.ok_or(ParseError::Syntax)?;
    if !a.is_ascii() {
        return Err(ParseError::BadEncoding);
    }
    let n = run_len(a, C_SASL);
    if n == 0 || n > MAX_MECHANISM {
        return Err(ParseError::Syntax);
    }
    let (mechanism, rest) = a.split_at(n);
    let initial = match rest.as_bytes() {
        [] => None,
        [b' ', b'='] => Some(InitialResponse::Empty),
        [b' ', response @ ..] if is_base64(response) => Some(InitialResponse::Base64(&rest[1..])),
        _ => return Err(ParseError::Syntax),
    };
    let mechanism = if keyword_is(mechanism, b"plain") {
        AuthMechanism::Plain
    } else if keyword_is(mechanism, b"login") {
        AuthMechanism::Login
    } else {
        AuthMechanism::Other(mechanism)
    };
    Ok(Command::Auth { mechanism, initial })
}

/// Base64 text (RFC 4648 alphabet): at least one character, then at most two `=` of
/// padding; not decoded here.
fn is_base64(b: &[u8]) -> bool {
    let n = long_run(b, C_BASE64);
    let pad = &b[n..];
    n > 0 && pad.len() <= 2 && pad.iter().all(|&c| c == b'=')
}

// ---------------------------------------------------------------------------------------
// MAIL parameters

/// `esmtp-param *(SP esmtp-param)`, applied to [`MailParams`]; anything we do not know,
/// or a repeat, fails.
fn mail_params(mut s: &str) -> Result<MailParams<'_>, ParseError> {
    let mut params = MailParams::default();
    loop {
        let (rest, (keyword, val)) = esmtp_param(s).map_err(|_| ParseError::BadParameter)?;
        apply_param(&mut params, keyword, val)?;
        if rest.is_empty() {
            return Ok(params);
        }
        s = rest.strip_prefix(' ').ok_or(ParseError::BadParameter)?;
    }
}

/// `esmtp-keyword ["=" esmtp-value]`. The value is any non-space, non-control character
/// but `=` (RFC 5321 4.1.2, extended with UTF-8 by RFC 6531).
fn esmtp_param(i: &str) -> PResult<'_, (&str, Option<&str>)> {
    let b = i.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphanumeric) {
        return Err(fail(i));
    }
    let n = b
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'-'))
        .unwrap_or(b.len());
    let (rest, keyword) = taken(i, n)?;
    match byte(rest, b'=') {
        Ok((v, ())) => {
            let (rest, val) = run1(v, C_ESMTP_VALUE)?;
            Ok((rest, (keyword, Some(val))))
        }
        Err(_) => Ok((rest, (keyword, None))),
    }
}

fn apply_param<'a>(
    params: &mut MailParams<'a>,
    keyword: &str,
    val: Option<&'a str>,
) -> Result<(), ParseError> {
    let bad = ParseError::BadParameter;
    if keyword_is(keyword, b"size") {
        let v = val.ok_or(bad)?;
        if params.size.is_some() {
            return Err(bad);
        }
        params.size = Some(number(v).ok_or(bad)?);
    } else if keyword_is(keyword, b"body") {
        let v = val.ok_or(bad)?;
        if params.body.is_some() {
            return Err(bad);
        }
        params.body = Some(if keyword_is(v, b"7bit") {
            BodyType::SevenBit
        } else if keyword_is(v, b"8bitmime") {
            BodyType::EightBitMime
        } else {
            return Err(bad);
        });
    } else if keyword_is(keyword, b"smtputf8") {
        if val.is_some() || params.smtputf8 {
            return Err(bad);
        }
        params.smtputf8 = true;
    } else if keyword_is(keyword, b"auth") {
        let v = val.ok_or(bad)?;
        if params.auth.is_some() || !is_xtext(v) {
            return Err(bad);
        }
        params.auth = Some(v);
    } else {
        return Err(bad);
    }
    Ok(())
}

/// `xtext` of RFC 3461 4: `!`..`~` except `+` and `=`, or `+` and two hex digits.
fn is_xtext(v: &str) -> bool {
    let mut b = v.as_bytes();
    while let Some((&c, rest)) = b.split_first() {
        b = match c {
            b'+' => match rest {
                [h, l, rest @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => rest,
                _ => return false,
            },
            b'!'..=b'~' if c != b'=' => rest,
            _ => return false,
        };
    }
    true
}

// ---------------------------------------------------------------------------------------
// Paths and mailboxes

/// `"<>"` or a `Path`.
fn reverse_path(i: &str) -> PResult<'_, ReversePath<'_>> {
    match i.as_bytes() {
        [b'<', b'>', ..] => Ok((&i[2..], ReversePath::Null)),
        _ => path(i).map(|(rest, m)| (rest, ReversePath::Mailbox(m))),
    }
}

/// `"<Postmaster>"` (any case, no domain) or a `Path`.
fn forward_path(i: &str) -> PResult<'_, ForwardPath<'_>> {
    const POSTMASTER: &[u8; 12] = b"<postmaster>";
    match i.as_bytes().get(..POSTMASTER.len()) {
        Some(p) if keyword_is(p, POSTMASTER) => {
            Ok((&i[POSTMASTER.len()..], ForwardPath::Postmaster))
        }
        _ => map(path, ForwardPath::Mailbox).parse(i),
    }
}

/// `"<" [ A-d-l ":" ] Mailbox ">"`; a source route is parsed and dropped.
// Inlined: returned through memory, the mailbox is stored in words and reloaded in wider
// moves, a store-forwarding stall in each caller.
#[inline(always)]
fn path(i: &str) -> PResult<'_, Mailbox<'_>> {
    let (i, ()) = byte(i, b'<')?;
    // Each alternative is tried only where its first octet is; the call of one that
    // cannot match costs as much as a short match.
    let i = match i.as_bytes().first() {
        Some(b'@') => source_route(i).map_or(i, |(rest, ())| rest),
        _ => i,
    };
    let (i, m) = mailbox(i)?;
    let (i, ()) = byte(i, b'>')?;
    Ok((i, m))
}

/// `At-domain *( "," At-domain ) ":"`. Address literals are accepted in a route too.
fn source_route(i: &str) -> PResult<'_, ()> {
    let at_domain = |i| {
        let (i, ()) = byte(i, b'@')?;
        domain(i).map(|(rest, _)| rest)
    };
    let mut i = at_domain(i)?;
    while let Some(rest) = byte(i, b',').ok().and_then(|(r, ())| at_domain(r).ok()) {
        i = rest;
    }
    let (i, ()) = byte(i, b':')?;
    Ok((i, ()))
}

/// `Local-part "@" ( Domain / address-literal )`.
#[inline(always)]
fn mailbox(i: &str) -> PResult<'_, Mailbox<'_>> {
    let (i, local) = local_part(i)?;
    let (i, ()) = byte(i, b'@')?;
    let (i, domain) = domain(i)?;
    Ok((i, Mailbox { local, domain }))
}

/// `Dot-string / Quoted-string`, at most 64 octets as written.
#[inline(always)]
fn local_part(i: &str) -> PResult<'_, LocalPart<'_>> {
    let (rest, local) = match i.as_bytes().first() {
        Some(b'"') => quoted_string(i).map(|(rest, q)| (rest, LocalPart::Quoted(q)))?,
        _ => dot_string(i).map(|(rest, d)| (rest, LocalPart::Dot(d)))?,
    };
    if i.len() - rest.len() > MAX_LOCAL_PART {
        return Err(nom::Err::Error(Error::new(i, ErrorKind::TooLarge)));
    }
    Ok((rest, local))
}

/// `Atom *("." Atom)`.
#[inline(always)]
fn dot_string(i: &str) -> PResult<'_, &str> {
    let b = i.as_bytes();
    let mut n = run_len(i, C_ATEXT);
    if n == 0 {
        return Err(fail(i));
    }
    // A dot continues the string only when an atom follows it.
    while b.get(n) == Some(&b'.') && b.get(n + 1).is_some_and(|&c| is(C_ATEXT, c)) {
        n += 1 + octet_run(&b[n + 1..], C_ATEXT);
    }
    taken(i, n)
}

/// `DQUOTE *QcontentSMTP DQUOTE`, giving the content between the quotes, escapes kept.
fn quoted_string(i: &str) -> PResult<'_, &str> {
    let (body, ()) = byte(i, b'"')?;
    let b = body.as_bytes();
    let mut n = 0;
    loop {
        match b.get(n) {
            Some(b'"') => return Ok((&body[n + 1..], &body[..n])),
            // A quoted pair: a backslash and printable ASCII.
            Some(b'\\') if b.get(n + 1).is_some_and(|&c| (b' '..=b'~').contains(&c)) => n += 2,
            Some(&c) if is(C_QTEXT, c) => n += octet_run(&b[n..], C_QTEXT),
            _ => return Err(fail(i)),
        }
    }
}

/// `Domain / address-literal`.
#[inline(always)]
fn domain(i: &str) -> PResult<'_, Domain<'_>> {
    match i.as_bytes().first() {
        Some(b'[') => address_literal(i).map(|(rest, lit)| (rest, Domain::Literal(lit))),
        _ => domain_name(i).map(|(rest, name)| (rest, Domain::Name(name))),
    }
}

/// `sub-domain *("." sub-domain)`, at most 255 octets.
fn domain_name(i: &str) -> PResult<'_, &str> {
    let b = i.as_bytes();
    let mut n = sub_domain(b).ok_or_else(|| fail(i))?;
    while b.get(n) == Some(&b'.') {
        match sub_domain(&b[n + 1..]) {
            Some(len) => n += 1 + len,
            None => break,
        }
    }
    if n > MAX_DOMAIN {
        return Err(fail(i));
    }
    taken(i, n)
}

/// The length of the `Let-dig [Ldh-str]` at the start of `i`, where any non-ASCII
/// character counts as a letter (U-labels).
fn sub_domain(b: &[u8]) -> Option<usize> {
    let n = octet_run(b, C_LDH);
    let l = &b[..n];
    let ok = n > 0 && l[0] != b'-' && l[n - 1] != b'-' && (n <= MAX_LABEL || !l.is_ascii());
    ok.then_some(n)
}

/// `"[" ( IPv4 / "IPv6:" IPv6 / tag ":" 1*dcontent ) "]"`, giving the content between the
/// brackets.
fn address_literal(i: &str) -> PResult<'_, &str> {
    let (body, ()) = byte(i, b'[')?;
    let (rest, s) = run1(body, C_DCONTENT)?;
    if s.len() + 2 > MAX_DOMAIN || !is_literal_content(s) {
        return Err(fail(i));
    }
    let (rest, ()) = byte(rest, b']')?;
    Ok((rest, s))
}

fn is_literal_content(s: &str) -> bool {
    if is_ipv4(s) {
        return true;
    }
    let Some((tag, rest)) = s.split_once(':') else {
        return false;
    };
    if tag.eq_ignore_ascii_case("IPv6") {
        return is_ipv6(rest);
    }
    // General-address-literal: Standardized-tag ":" 1*dcontent, the tag an Ldh-str.
    !rest.is_empty()
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && tag
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// `Snum 3("." Snum)`, each Snum 1 to 3 digits worth at most 255.
fn is_ipv4(s: &str) -> bool {
    let (mut dots, mut digits, mut value) = (0, 0, 0u16);
    for &b in s.as_bytes() {
        match b {
            b'0'..=b'9' if digits < 3 => {
                digits += 1;
                value = value * 10 + u16::from(b - b'0');
            }
            b'.' if digits > 0 && value <= 255 && dots < 3 => {
                dots += 1;
                digits = 0;
                value = 0;
            }
            _ => return false,
        }
    }
    dots == 3 && digits > 0 && value <= 255
}

/// An IPv6 address in the text forms of RFC 4291 2.2 (full, `::`-compressed, and either of
/// those ending in a dotted IPv4 address). RFC 5321 allows `::` to stand for two or more
/// groups only; one group is accepted too, as RFC 4291 does.
fn is_ipv6(s: &str) -> bool {
    // A trailing IPv4 address stands for two groups.
    let (hex, v4_groups) = match s.rfind(':') {
        Some(at) if s[at + 1..].contains('.') => {
            if !is_ipv4(&s[at + 1..]) {
                return false;
            }
            // Keep a `::` right before the IPv4 part; drop a lone separating `:`.
            if s[..=at].ends_with("::") {
                (&s[..=at], 2)
            } else {
                (&s[..at], 2)
            }
        }
        _ => (s, 0),
    };
    match hex.split_once("::") {
        None => hex_groups(hex).is_some_and(|n| n + v4_groups == 8),
        Some((left, right)) => match (hex_groups(left), hex_groups(right)) {
            (Some(l), Some(r)) => l + r + v4_groups <= 7,
            _ => false,
        },
    }
}

/// The number of `1*4HEXDIG` groups in a `:`-separated list (possibly empty), or `None`
/// if the list is malformed.
fn hex_groups(s: &str) -> Option<usize> {
    if s.is_empty() {
        return Some(0);
    }
    let mut n = 0;
    for group in s.split(':') {
        if !(1..=4).contains(&group.len()) || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        n += 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseError::*;

    fn parse(line: &str) -> Result<Command<'_>, ParseError> {
        parse_command(line.as_bytes())
    }

    fn dot(local: &'static str, domain: &'static str) -> Mailbox<'static> {
        Mailbox {
            local: LocalPart::Dot(local),
            domain: Domain::Name(domain),
        }
    }

    fn mail_from(line: &str) -> Result<(ReversePath<'_>, MailParams<'_>), ParseError> {
        match parse(line)? {
            Command::Mail { from, params } => Ok((from, params)),
            other => panic!("not MAIL: {other:?}"),
        }
    }

    fn from_mailbox(line: &str) -> Result<Mailbox<'_>, ParseError> {
        match mail_from(line)?.0 {
            ReversePath::Mailbox(m) => Ok(m),
            ReversePath::Null => panic!("null path"),
        }
    }

    fn params(line: &str) -> Result<MailParams<'_>, ParseError> {
        mail_from(line).map(|(_, p)| p)
    }

    fn rcpt_to(line: &str) -> Result<ForwardPath<'_>, ParseError> {
        match parse(line)? {
            Command::Rcpt { to } => Ok(to),
            other => panic!("not RCPT: {other:?}"),
        }
    }

    // --- verbs and the line as a whole ------------------------------------------------

    #[test]
    fn empty_line_is_not_a_command() {
        assert_eq!(parse(""), Err(UnknownCommand));
        assert_eq!(parse("   "), Err(UnknownCommand));
        assert_eq!(parse("\t \t"), Err(UnknownCommand));
    }

    #[test]
    fn unknown_verbs() {
        for line in [
            "FOO",
            "EXPN staff",
            "TURN",
            "ETRN example.com",
            "DATAX",
            "EHL",
            "EHLOO example.com",
            "MAIL:FROM:<>",
            "STARTTL",
            "SEND FROM:<a@b>",
            "X",
            // Four octets with an SP inside: the verb is shorter, its argument UTF-8.
            " \u{c0}.",
            "AB \u{e9}",
            "A B",
        ] {
            assert_eq!(parse(line), Err(UnknownCommand), "{line}");
        }
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse("ehlo example.com"), Ok(Command::Ehlo("example.com")));
        assert_eq!(parse("HeLo example.com"), Ok(Command::Helo("example.com")));
        assert!(matches!(parse("mail FROM:<>"), Ok(Command::Mail { .. })));
        assert!(matches!(parse("rCpT TO:<a@b.c>"), Ok(Command::Rcpt { .. })));
        assert_eq!(parse("data"), Ok(Command::Data));
        assert_eq!(
            parse("bdat 1"),
            Ok(Command::Bdat {
                size: 1,
                last: false
            })
        );
        assert_eq!(parse("Rset"), Ok(Command::Rset));
        assert_eq!(parse("nOOp"), Ok(Command::Noop));
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(parse("vrfy x"), Ok(Command::Vrfy("x")));
        assert_eq!(parse("help"), Ok(Command::Help(None)));
        assert_eq!(parse("StartTLS"), Ok(Command::StartTls));
        assert!(matches!(parse("auth plain"), Ok(Command::Auth { .. })));
    }

    #[test]
    fn trailing_whitespace_is_tolerated() {
        assert_eq!(parse("DATA "), Ok(Command::Data));
        assert_eq!(parse("QUIT \t "), Ok(Command::Quit));
        assert_eq!(
            parse("EHLO example.com  "),
            Ok(Command::Ehlo("example.com"))
        );
        assert_eq!(parse("HELP\t"), Ok(Command::Help(None)));
        assert_eq!(parse("VRFY Smith "), Ok(Command::Vrfy("Smith")));
        assert_eq!(
            parse("BDAT 10 LAST "),
            Ok(Command::Bdat {
                size: 10,
                last: true
            })
        );
        assert_eq!(
            mail_from("MAIL FROM:<a@example.com> SIZE=5  "),
            Ok((
                ReversePath::Mailbox(dot("a", "example.com")),
                MailParams {
                    size: Some(5),
                    ..MailParams::default()
                }
            ))
        );
        assert_eq!(
            rcpt_to("RCPT TO:<Postmaster> "),
            Ok(ForwardPath::Postmaster)
        );
    }

    #[test]
    fn only_one_space_after_the_verb() {
        assert_eq!(parse("EHLO  example.com"), Err(Syntax));
        assert_eq!(parse("MAIL  FROM:<>"), Err(Syntax));
        assert_eq!(parse("VRFY  Smith"), Err(Syntax));
        assert_eq!(parse("NOOP \tx"), Err(Syntax));
        assert_eq!(parse("BDAT  5"), Err(Syntax));
    }

    #[test]
    fn verb_separated_by_tab_is_not_recognized() {
        assert_eq!(parse("EHLO\texample.com"), Err(UnknownCommand));
        assert_eq!(parse("NOOP\tx"), Err(UnknownCommand));
    }

    #[test]
    fn leading_space_is_not_a_command() {
        assert_eq!(parse(" QUIT"), Err(UnknownCommand));
    }

    #[test]
    fn invalid_utf8_anywhere_is_bad_encoding() {
        assert_eq!(parse_command(b"\xffQUIT"), Err(BadEncoding));
        assert_eq!(parse_command(b"EHLO ex\xc3ample.com"), Err(BadEncoding));
        assert_eq!(
            parse_command(b"MAIL FROM:<\xe9@example.com>"),
            Err(BadEncoding)
        );
        assert_eq!(parse_command(b"RCPT TO:<a@b.c>\x80"), Err(BadEncoding));
        assert_eq!(parse_command(b"NOOP \xc0\xaf"), Err(BadEncoding));
        // An encoded surrogate is not UTF-8.
        assert_eq!(parse_command(b"VRFY \xed\xa0\x80"), Err(BadEncoding));
    }

    #[test]
    fn binary_junk() {
        assert_eq!(parse_command(b"\x00\x01\x02\x03"), Err(UnknownCommand));
        assert_eq!(
            parse_command(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"),
            Err(BadEncoding)
        );
        assert_eq!(parse_command(b"QUIT\x00"), Err(UnknownCommand));
        assert_eq!(parse_command(b"DATA \x00"), Err(Syntax));
        assert_eq!(parse_command(b"VRFY a\x00b"), Err(Syntax));
        assert_eq!(parse_command(b"HELP \x1b[2J"), Err(Syntax));
        assert_eq!(
            parse_command(b"MAIL FROM:<a\x00b@example.com>"),
            Err(BadAddress)
        );
        assert_eq!(parse_command(b"EHLO exa\x7fmple.com"), Err(Syntax));
    }

    #[test]
    fn non_ascii_verb_is_bad_encoding() {
        assert_eq!(parse("MAİL FROM:<>"), Err(BadEncoding));
        assert_eq!(parse("ÉHLO example.com"), Err(BadEncoding));
        assert_eq!(parse("QUIT\u{a0}"), Err(BadEncoding));
    }

    #[test]
    fn results_borrow_from_the_line() {
        let line = b"MAIL FROM:<\"j s\"@[IPv6:2001:db8::1]> AUTH=<> SIZE=1".to_vec();
        let range = line.as_ptr_range();
        let inside = |s: &str| range.contains(&s.as_ptr());
        let Ok(Command::Mail {
            from: ReversePath::Mailbox(m),
            params,
        }) = parse_command(&line)
        else {
            panic!("parse failed")
        };
        assert!(matches!(m.local, LocalPart::Quoted(s) if inside(s)));
        assert!(inside(m.domain.as_str()));
        assert!(inside(params.auth.unwrap()));
        let ehlo = b"EHLO example.com";
        let Ok(Command::Ehlo(d)) = parse_command(ehlo) else {
            panic!()
        };
        assert_eq!(d.as_ptr(), ehlo[5..].as_ptr());
    }

    // --- EHLO / HELO -------------------------------------------------------------------

    #[test]
    fn ehlo_and_helo_with_domain() {
        assert_eq!(parse("EHLO bar.com"), Ok(Command::Ehlo("bar.com")));
        assert_eq!(parse("HELO foo.bar.com"), Ok(Command::Helo("foo.bar.com")));
        assert_eq!(parse("EHLO localhost"), Ok(Command::Ehlo("localhost")));
        assert_eq!(parse("EHLO 3com.com"), Ok(Command::Ehlo("3com.com")));
        assert_eq!(parse("EHLO a-b--c.x1"), Ok(Command::Ehlo("a-b--c.x1")));
        assert_eq!(
            parse("EHLO MX.Example.ORG"),
            Ok(Command::Ehlo("MX.Example.ORG"))
        );
    }

    #[test]
    fn ehlo_and_helo_need_an_argument() {
        assert_eq!(parse("EHLO"), Err(Syntax));
        assert_eq!(parse("HELO"), Err(Syntax));
        assert_eq!(parse("EHLO "), Err(Syntax));
    }

    #[test]
    fn ehlo_address_literals() {
        assert_eq!(parse("EHLO [192.0.2.1]"), Ok(Command::Ehlo("[192.0.2.1]")));
        assert_eq!(parse("EHLO [0.0.0.0]"), Ok(Command::Ehlo("[0.0.0.0]")));
        assert_eq!(
            parse("EHLO [255.255.255.255]"),
            Ok(Command::Ehlo("[255.255.255.255]"))
        );
        assert_eq!(
            parse("EHLO [IPv6:2001:db8::1]"),
            Ok(Command::Ehlo("[IPv6:2001:db8::1]"))
        );
        assert_eq!(
            parse("EHLO [ipv6:::ffff:192.0.2.1]"),
            Ok(Command::Ehlo("[ipv6:::ffff:192.0.2.1]"))
        );
        assert_eq!(parse("EHLO [x-foo:bar]"), Ok(Command::Ehlo("[x-foo:bar]")));
        // HELO takes literals too, leniently.
        assert_eq!(parse("HELO [192.0.2.1]"), Ok(Command::Helo("[192.0.2.1]")));
    }

    #[test]
    fn ehlo_bad_address_literals() {
        for line in [
            "EHLO [192.0.2.256]",
            "EHLO [192.0.2]",
            "EHLO [192.0.2.1.5]",
            "EHLO [1922.0.2.1]",
            "EHLO [192.0.2.1",
            "EHLO 192.0.2.1]",
            "EHLO []",
            "EHLO [IPv6:2001:db8::g]",
            "EHLO [IPv6:192.0.2.1]",
            "EHLO [IPv6:]",
            "EHLO [foo]",
            "EHLO [-:x]",
            "EHLO [tag-:x]",
            "EHLO [tag:]",
            "EHLO [a b:c]",
            "EHLO [tag:a[b]",
            "EHLO [tag:a\\b]",
            "EHLO [192.0.2.1] x",
            "EHLO [192.0.2.1].com",
        ] {
            assert_eq!(parse(line), Err(Syntax), "{line}");
        }
    }

    #[test]
    fn ehlo_bad_domains() {
        for line in [
            "EHLO -example.com",
            "EHLO example-.com",
            "EHLO example..com",
            "EHLO .example.com",
            "EHLO example.com.",
            "EHLO exa_mple.com",
            "EHLO example.com extra",
            "EHLO exa(mple)",
            "EHLO user@example.com",
        ] {
            assert_eq!(parse(line), Err(Syntax), "{line}");
        }
    }

    #[test]
    fn ehlo_utf8_domain() {
        assert_eq!(parse("EHLO münchen.de"), Ok(Command::Ehlo("münchen.de")));
        assert_eq!(parse("EHLO 例え.テスト"), Ok(Command::Ehlo("例え.テスト")));
        assert_eq!(
            parse("HELO xn--mnchen-3ya.de"),
            Ok(Command::Helo("xn--mnchen-3ya.de"))
        );
    }

    #[test]
    fn ehlo_label_and_domain_length() {
        let label63 = "a".repeat(63);
        let line = format!("EHLO {label63}.com");
        assert_eq!(parse(&line), Ok(Command::Ehlo(&line[5..])));
        assert_eq!(parse(&format!("EHLO {label63}a.com")), Err(Syntax));

        // 4 labels of 63 plus 3 dots = 255 octets.
        let d255 = [label63.as_str(); 4].join(".");
        assert_eq!(d255.len(), 255);
        let line = format!("EHLO {d255}");
        assert_eq!(parse(&line), Ok(Command::Ehlo(&line[5..])));
        assert_eq!(parse(&format!("EHLO a.{d255}")), Err(Syntax));
    }

    // --- MAIL ------------------------------------------------------------------------

    #[test]
    fn mail_rfc5321_examples() {
        // RFC 5321 D.1 and D.3.
        assert_eq!(
            mail_from("MAIL FROM:<Smith@bar.com>"),
            Ok((
                ReversePath::Mailbox(dot("Smith", "bar.com")),
                MailParams::default()
            ))
        );
        assert_eq!(
            from_mailbox("MAIL FROM:<JQP@bar.com>"),
            Ok(dot("JQP", "bar.com"))
        );
    }

    #[test]
    fn mail_is_case_insensitive() {
        assert_eq!(
            from_mailbox("mail from:<Smith@Bar.COM>"),
            Ok(dot("Smith", "Bar.COM"))
        );
        assert_eq!(from_mailbox("MAIL From:<a@b>"), Ok(dot("a", "b")));
    }

    #[test]
    fn mail_null_reverse_path() {
        assert_eq!(
            mail_from("MAIL FROM:<>"),
            Ok((ReversePath::Null, MailParams::default()))
        );
        assert_eq!(
            mail_from("MAIL FROM:<> BODY=8BITMIME"),
            Ok((
                ReversePath::Null,
                MailParams {
                    body: Some(BodyType::EightBitMime),
                    ..MailParams::default()
                }
            ))
        );
    }

    #[test]
    fn mail_space_before_path_is_tolerated() {
        assert_eq!(
            from_mailbox("MAIL FROM: <a@example.com>"),
            Ok(dot("a", "example.com"))
        );
        assert_eq!(
            from_mailbox("MAIL FROM:  <a@example.com>"),
            Ok(dot("a", "example.com"))
        );
        assert_eq!(
            mail_from("MAIL FROM: <>").map(|m| m.0),
            Ok(ReversePath::Null)
        );
    }

    #[test]
    fn mail_keyword_errors() {
        assert_eq!(parse("MAIL"), Err(Syntax));
        assert_eq!(parse("MAIL <a@b>"), Err(Syntax));
        assert_eq!(parse("MAIL TO:<a@b>"), Err(Syntax));
        assert_eq!(parse("MAIL FROM <a@b>"), Err(Syntax));
        assert_eq!(parse("MAIL FRM:<a@b>"), Err(Syntax));
        assert_eq!(parse("MAIL FROM"), Err(Syntax));
    }

    #[test]
    fn mail_malformed_paths() {
        for line in [
            "MAIL FROM:",
            "MAIL FROM:a@example.com",
            "MAIL FROM:<a@example.com",
            "MAIL FROM:a@example.com>",
            "MAIL FROM:<",
            "MAIL FROM:<<>>",
            "MAIL FROM:<a>",
            "MAIL FROM:<a@>",
            "MAIL FROM:<@example.com>",
            "MAIL FROM:<a@@example.com>",
            "MAIL FROM:<a@b@example.com>",
            "MAIL FROM:<a b@example.com>",
            "MAIL FROM:<a@exa mple.com>",
            "MAIL FROM:<a@-example.com>",
            "MAIL FROM:<a@example.com.>",
            "MAIL FROM:<a@[300.0.0.1]>",
            "MAIL FROM:<John Smith <js@example.com>>",
            "MAIL FROM:\"a\"@example.com",
        ] {
            assert_eq!(parse(line), Err(BadAddress), "{line}");
        }
    }

    #[test]
    fn mail_junk_after_path() {
        assert_eq!(parse("MAIL FROM:<a@b>x"), Err(Syntax));
        assert_eq!(parse("MAIL FROM:<>>"), Err(Syntax));
        assert_eq!(parse("MAIL FROM:<a@b>,<c@d>"), Err(Syntax));
    }

    #[test]
    fn dot_string_rules() {
        assert_eq!(
            from_mailbox("MAIL FROM:<john.q.public@example.com>"),
            Ok(dot("john.q.public", "example.com"))
        );
        let specials = "!#$%&'*+-/=?^_`{|}~";
        let line = format!("MAIL FROM:<{specials}@example.com>");
        assert_eq!(from_mailbox(&line), Ok(dot_owned(&line, specials)));
        for bad in [
            ".a", "a.", "a..b", "a(b", "a,b", "a[b", "a\\b", "a\"b", "a:b", "a;b",
        ] {
            let line = format!("MAIL FROM:<{bad}@example.com>");
            assert_eq!(parse(&line), Err(BadAddress), "{line}");
        }
    }

    fn dot_owned<'a>(line: &'a str, local: &str) -> Mailbox<'a> {
        let start = line.find(local).unwrap();
        Mailbox {
            local: LocalPart::Dot(&line[start..start + local.len()]),
            domain: Domain::Name("example.com"),
        }
    }

    #[test]
    fn quoted_local_parts() {
        let quoted = |line| from_mailbox(line).map(|m| m.local);
        assert_eq!(
            quoted("MAIL FROM:<\"John Smith\"@example.com>"),
            Ok(LocalPart::Quoted("John Smith"))
        );
        let m = from_mailbox(r#"MAIL FROM:<"John \"Q\" Smith"@example.com>"#).unwrap();
        assert_eq!(m.local, LocalPart::Quoted(r#"John \"Q\" Smith"#));
        assert_eq!(m.local.unquoted(), r#"John "Q" Smith"#);
        assert_eq!(
            quoted(r#"MAIL FROM:<"back\\slash"@example.com>"#),
            Ok(LocalPart::Quoted(r"back\\slash"))
        );
        assert_eq!(
            quoted(r#"MAIL FROM:<"a>b"@example.com>"#),
            Ok(LocalPart::Quoted("a>b"))
        );
        assert_eq!(
            quoted(r#"MAIL FROM:<"a@b"@example.com>"#),
            Ok(LocalPart::Quoted("a@b"))
        );
        assert_eq!(
            quoted(r#"MAIL FROM:<"a..b."@example.com>"#),
            Ok(LocalPart::Quoted("a..b."))
        );
        assert_eq!(
            quoted(r#"MAIL FROM:<""@example.com>"#),
            Ok(LocalPart::Quoted(""))
        );
        assert_eq!(
            quoted(r#"MAIL FROM:<"\ "@example.com>"#),
            Ok(LocalPart::Quoted(r"\ "))
        );
    }

    #[test]
    fn malformed_quoted_local_parts() {
        for line in [
            r#"MAIL FROM:<"unterminated@example.com>"#,
            r#"MAIL FROM:<"a"b"@example.com>"#,
            r#"MAIL FROM:<"a\"@example.com>"#,
            r#"MAIL FROM:<"a".b@example.com>"#,
            r#"MAIL FROM:<a."b"@example.com>"#,
            "MAIL FROM:<\"a\tb\"@example.com>",
            "MAIL FROM:<\"a\\\tb\"@example.com>",
            "MAIL FROM:<\"a\\é\"@example.com>",
        ] {
            assert_eq!(parse(line), Err(BadAddress), "{line}");
        }
    }

    #[test]
    fn mailbox_with_address_literal() {
        assert_eq!(
            from_mailbox("MAIL FROM:<user@[192.0.2.1]>").map(|m| m.domain),
            Ok(Domain::Literal("192.0.2.1"))
        );
        let m = from_mailbox("MAIL FROM:<user@[IPv6:2001:db8::1]>").unwrap();
        assert_eq!(m.domain, Domain::Literal("IPv6:2001:db8::1"));
        assert_eq!(m.to_string(), "user@[IPv6:2001:db8::1]");
        assert_eq!(
            rcpt_to("RCPT TO:<user@[x-tag:anything]>"),
            Ok(ForwardPath::Mailbox(Mailbox {
                local: LocalPart::Dot("user"),
                domain: Domain::Literal("x-tag:anything"),
            }))
        );
    }

    #[test]
    fn utf8_addresses() {
        let m = from_mailbox("MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8").unwrap();
        assert_eq!(m.local, LocalPart::Dot("δοκιμή"));
        assert_eq!(m.domain, Domain::Name("παράδειγμα.δοκιμή"));
        assert!(!m.is_ascii());
        // Accepted here even without SMTPUTF8: the session decides.
        let m = from_mailbox("MAIL FROM:<jörg@example.com>").unwrap();
        assert_eq!(m.local, LocalPart::Dot("jörg"));
        assert!(!m.is_ascii());
        let m = from_mailbox("MAIL FROM:<user@bücher.example>").unwrap();
        assert_eq!(m.domain, Domain::Name("bücher.example"));
        assert!(!m.is_ascii());
        assert_eq!(
            from_mailbox("MAIL FROM:<\"пользователь\"@example.com>").map(|m| m.local),
            Ok(LocalPart::Quoted("пользователь"))
        );
        assert!(from_mailbox("MAIL FROM:<a@b.c>").unwrap().is_ascii());
        assert_eq!(
            rcpt_to("RCPT TO:<用户@例子.广告>"),
            Ok(ForwardPath::Mailbox(Mailbox {
                local: LocalPart::Dot("用户"),
                domain: Domain::Name("例子.广告"),
            }))
        );
    }

    #[test]
    fn source_routes_are_dropped() {
        // RFC 5321 D.3 and 3.6.1.
        assert_eq!(
            from_mailbox("MAIL FROM:<@hosta.int,@jkl.org:userc@d.bar.org>"),
            Ok(dot("userc", "d.bar.org"))
        );
        assert_eq!(
            from_mailbox("MAIL FROM:<@a:user@example.com>"),
            Ok(dot("user", "example.com"))
        );
        assert_eq!(
            rcpt_to("RCPT TO:<@ONE,@TWO:JOE@THREE>"),
            Ok(ForwardPath::Mailbox(dot("JOE", "THREE")))
        );
        for line in [
            "MAIL FROM:<@a user@example.com>",
            "MAIL FROM:<@:user@example.com>",
            "MAIL FROM:<@a,user@example.com>",
            "MAIL FROM:<@a,:user@example.com>",
            "MAIL FROM:<@a,b:user@example.com>",
            "MAIL FROM:<@a:>",
            "MAIL FROM:<@a:@b:user@example.com>",
            "RCPT TO:<@a:Postmaster>",
        ] {
            assert_eq!(parse(line), Err(BadAddress), "{line}");
        }
    }

    #[test]
    fn local_part_length_limit() {
        let l64 = "a".repeat(64);
        let line = format!("MAIL FROM:<{l64}@example.com>");
        assert_eq!(
            from_mailbox(&line).map(|m| m.local),
            Ok(LocalPart::Dot(&line[11..75]))
        );
        assert_eq!(
            parse(&format!("MAIL FROM:<a{l64}@example.com>")),
            Err(BadAddress)
        );
        // The limit counts octets: 32 two-octet characters fit, 33 do not.
        assert!(from_mailbox(&format!("MAIL FROM:<{}@example.com>", "é".repeat(32))).is_ok());
        assert_eq!(
            parse(&format!("MAIL FROM:<{}@example.com>", "é".repeat(33))),
            Err(BadAddress)
        );
        // A quoted local part counts its quotes.
        let q62 = "a".repeat(62);
        assert!(from_mailbox(&format!("MAIL FROM:<\"{q62}\"@example.com>")).is_ok());
        assert_eq!(
            parse(&format!("MAIL FROM:<\"a{q62}\"@example.com>")),
            Err(BadAddress)
        );
        assert_eq!(
            parse(&format!("RCPT TO:<a{l64}@example.com>")),
            Err(BadAddress)
        );
    }

    #[test]
    fn domain_length_limit() {
        let label = "a".repeat(63);
        let d255 = [label.as_str(); 4].join(".");
        let line = format!("MAIL FROM:<u@{d255}>");
        assert_eq!(
            from_mailbox(&line).map(|m| m.domain.as_str().len()),
            Ok(255)
        );
        assert_eq!(parse(&format!("MAIL FROM:<u@b.{d255}>")), Err(BadAddress));
        assert_eq!(parse(&format!("RCPT TO:<u@{d255}.b>")), Err(BadAddress));
        assert_eq!(
            parse(&format!("MAIL FROM:<u@{label}b.com>")),
            Err(BadAddress)
        );
    }

    // --- MAIL parameters --------------------------------------------------------------

    #[test]
    fn mail_size() {
        assert_eq!(
            params("MAIL FROM:<a@b> SIZE=12345").map(|p| p.size),
            Ok(Some(12345))
        );
        assert_eq!(
            params("MAIL FROM:<a@b> size=0").map(|p| p.size),
            Ok(Some(0))
        );
        assert_eq!(
            params("MAIL FROM:<> SIZE=18446744073709551615").map(|p| p.size),
            Ok(Some(u64::MAX))
        );
        assert_eq!(params("MAIL FROM:<> SIZE=007").map(|p| p.size), Ok(Some(7)));
    }

    #[test]
    fn mail_size_errors() {
        for line in [
            "MAIL FROM:<> SIZE=18446744073709551616",
            "MAIL FROM:<> SIZE=99999999999999999999999",
            "MAIL FROM:<> SIZE=",
            "MAIL FROM:<> SIZE",
            "MAIL FROM:<> SIZE=abc",
            "MAIL FROM:<> SIZE=12k",
            "MAIL FROM:<> SIZE=+12",
            "MAIL FROM:<> SIZE=-1",
            "MAIL FROM:<> SIZE=1.5",
            "MAIL FROM:<> SIZE==1",
            "MAIL FROM:<> SIZE=١٢",
        ] {
            assert_eq!(parse(line), Err(BadParameter), "{line}");
        }
    }

    #[test]
    fn mail_body() {
        assert_eq!(
            params("MAIL FROM:<a@b> BODY=7BIT").map(|p| p.body),
            Ok(Some(BodyType::SevenBit))
        );
        assert_eq!(
            params("MAIL FROM:<a@b> BODY=8BITMIME").map(|p| p.body),
            Ok(Some(BodyType::EightBitMime))
        );
        assert_eq!(
            params("MAIL FROM:<a@b> body=8bitmime").map(|p| p.body),
            Ok(Some(BodyType::EightBitMime))
        );
        assert_eq!(
            params("MAIL FROM:<a@b> Body=7bit").map(|p| p.body),
            Ok(Some(BodyType::SevenBit))
        );
        for line in [
            "MAIL FROM:<a@b> BODY=BINARYMIME",
            "MAIL FROM:<a@b> BODY=8BIT",
            "MAIL FROM:<a@b> BODY=",
            "MAIL FROM:<a@b> BODY",
        ] {
            assert_eq!(parse(line), Err(BadParameter), "{line}");
        }
    }

    #[test]
    fn mail_smtputf8() {
        assert_eq!(
            params("MAIL FROM:<a@b> SMTPUTF8").map(|p| p.smtputf8),
            Ok(true)
        );
        assert_eq!(
            params("MAIL FROM:<a@b> smtputf8").map(|p| p.smtputf8),
            Ok(true)
        );
        assert_eq!(params("MAIL FROM:<a@b>").map(|p| p.smtputf8), Ok(false));
        assert_eq!(parse("MAIL FROM:<a@b> SMTPUTF8=yes"), Err(BadParameter));
        assert_eq!(parse("MAIL FROM:<a@b> SMTPUTF8="), Err(BadParameter));
    }

    #[test]
    fn mail_auth() {
        assert_eq!(
            params("MAIL FROM:<a@b> AUTH=<>").map(|p| p.auth),
            Ok(Some("<>"))
        );
        assert_eq!(
            params("MAIL FROM:<a@b> auth=user@example.com").map(|p| p.auth),
            Ok(Some("user@example.com"))
        );
        // xtext is kept encoded: "+2B" is "+", "+3D" is "=".
        assert_eq!(
            params("MAIL FROM:<e=mc2@example.com> AUTH=e+3Dmc2@example.com").map(|p| p.auth),
            Ok(Some("e+3Dmc2@example.com"))
        );
        assert_eq!(
            params("MAIL FROM:<a@b> AUTH=a+2bb@c").map(|p| p.auth),
            Ok(Some("a+2bb@c"))
        );
        for line in [
            "MAIL FROM:<a@b> AUTH",
            "MAIL FROM:<a@b> AUTH=",
            "MAIL FROM:<a@b> AUTH=a+b@c",
            "MAIL FROM:<a@b> AUTH=a+2",
            "MAIL FROM:<a@b> AUTH=a+ZZ@c",
            "MAIL FROM:<a@b> AUTH=a=b",
            "MAIL FROM:<a@b> AUTH=jörg@example.com",
        ] {
            assert_eq!(parse(line), Err(BadParameter), "{line}");
        }
    }

    #[test]
    fn mail_all_parameters_together() {
        assert_eq!(
            mail_from("MAIL FROM:<ρ@example.com> SIZE=1000 BODY=8BITMIME SMTPUTF8 AUTH=<>"),
            Ok((
                ReversePath::Mailbox(Mailbox {
                    local: LocalPart::Dot("ρ"),
                    domain: Domain::Name("example.com"),
                }),
                MailParams {
                    size: Some(1000),
                    body: Some(BodyType::EightBitMime),
                    smtputf8: true,
                    auth: Some("<>"),
                }
            ))
        );
        // Order does not matter.
        assert_eq!(
            params("MAIL FROM:<> AUTH=x SMTPUTF8 BODY=7BIT SIZE=1"),
            Ok(MailParams {
                size: Some(1),
                body: Some(BodyType::SevenBit),
                smtputf8: true,
                auth: Some("x"),
            })
        );
    }

    #[test]
    fn mail_duplicate_parameters() {
        for line in [
            "MAIL FROM:<> SIZE=1 SIZE=1",
            "MAIL FROM:<> SIZE=1 size=2",
            "MAIL FROM:<> BODY=7BIT BODY=8BITMIME",
            "MAIL FROM:<> SMTPUTF8 SMTPUTF8",
            "MAIL FROM:<> AUTH=<> AUTH=a@b",
        ] {
            assert_eq!(parse(line), Err(BadParameter), "{line}");
        }
    }

    #[test]
    fn mail_unknown_parameters() {
        for line in [
            "MAIL FROM:<> RET=FULL",
            "MAIL FROM:<> ENVID=QQ314159",
            "MAIL FROM:<> SIZE=10 XFOO",
            "MAIL FROM:<> REQUIRETLS",
            "MAIL FROM:<> BODY=8BITMIME X-Y=z",
        ] {
            assert_eq!(parse(line), Err(BadParameter), "{line}");
        }
    }

    #[test]
    fn mail_malformed_parameter_lists() {
        for line in [
            "MAIL FROM:<> SIZE=1  BODY=7BIT",
            "MAIL FROM:<> SIZE=1\tBODY=7BIT",
            "MAIL FROM:<> =1",
            "MAIL FROM:<> -SIZE=1",
            "MAIL FROM:<> SI_ZE=1",
            "MAIL FROM:<> SIZE=1=2",
            "MAIL FROM:<> SIZE = 1",
            "MAIL FROM:<> \x01",
            "MAIL FROM:<> ü",
        ] {
            assert_eq!(parse(line), Err(BadParameter), "{line}");
        }
    }

    // --- RCPT ------------------------------------------------------------------------

    #[test]
    fn rcpt_rfc5321_examples() {
        // RFC 5321 D.1.
        assert_eq!(
            rcpt_to("RCPT TO:<Jones@foo.com>"),
            Ok(ForwardPath::Mailbox(dot("Jones", "foo.com")))
        );
        assert_eq!(
            rcpt_to("RCPT TO:<Green@foo.com>"),
            Ok(ForwardPath::Mailbox(dot("Green", "foo.com")))
        );
        assert_eq!(
            rcpt_to("RCPT TO:<Brown@foo.com>"),
            Ok(ForwardPath::Mailbox(dot("Brown", "foo.com")))
        );
    }

    #[test]
    fn rcpt_is_case_insensitive_and_tolerates_space() {
        assert_eq!(
            rcpt_to("rcpt to:<a@b.c>"),
            Ok(ForwardPath::Mailbox(dot("a", "b.c")))
        );
        assert_eq!(
            rcpt_to("RCPT To: <a@b.c>"),
            Ok(ForwardPath::Mailbox(dot("a", "b.c")))
        );
    }

    #[test]
    fn rcpt_postmaster() {
        assert_eq!(rcpt_to("RCPT TO:<Postmaster>"), Ok(ForwardPath::Postmaster));
        assert_eq!(rcpt_to("RCPT TO:<postmaster>"), Ok(ForwardPath::Postmaster));
        assert_eq!(rcpt_to("RCPT TO:<POSTMASTER>"), Ok(ForwardPath::Postmaster));
        // With a domain it is an ordinary mailbox.
        assert_eq!(
            rcpt_to("RCPT TO:<Postmaster@example.com>"),
            Ok(ForwardPath::Mailbox(dot("Postmaster", "example.com")))
        );
        assert_eq!(
            rcpt_to("RCPT TO:<postmaster.x@example.com>"),
            Ok(ForwardPath::Mailbox(dot("postmaster.x", "example.com")))
        );
        assert_eq!(parse("RCPT TO:<Postmasterx>"), Err(BadAddress));
        assert_eq!(parse("RCPT TO:<\"Postmaster\">"), Err(BadAddress));
    }

    #[test]
    fn rcpt_errors() {
        assert_eq!(parse("RCPT"), Err(Syntax));
        assert_eq!(parse("RCPT <a@b>"), Err(Syntax));
        assert_eq!(parse("RCPT FROM:<a@b>"), Err(Syntax));
        assert_eq!(parse("RCPT TO <a@b>"), Err(Syntax));
        assert_eq!(parse("RCPT TO:<>"), Err(BadAddress));
        assert_eq!(parse("RCPT TO:"), Err(BadAddress));
        assert_eq!(parse("RCPT TO:a@b"), Err(BadAddress));
        assert_eq!(parse("RCPT TO:<a@b"), Err(BadAddress));
        assert_eq!(parse("RCPT TO:<a..b@c>"), Err(BadAddress));
        assert_eq!(parse("RCPT TO:<a@b>junk"), Err(Syntax));
    }

    #[test]
    fn rcpt_parameters_are_refused() {
        for line in [
            "RCPT TO:<a@b> NOTIFY=NEVER",
            "RCPT TO:<a@b> ORCPT=rfc822;a@b",
            "RCPT TO:<Postmaster> X",
            "RCPT TO:<a@b> SIZE=1",
            "RCPT TO:<a@b> =",
        ] {
            assert_eq!(parse(line), Err(BadParameter), "{line}");
        }
    }

    // --- commands without arguments ----------------------------------------------------

    #[test]
    fn argument_free_commands() {
        assert_eq!(parse("DATA"), Ok(Command::Data));
        assert_eq!(parse("RSET"), Ok(Command::Rset));
        assert_eq!(parse("QUIT"), Ok(Command::Quit));
        assert_eq!(parse("STARTTLS"), Ok(Command::StartTls));
    }

    #[test]
    fn argument_free_commands_refuse_arguments() {
        for line in [
            "DATA x",
            "RSET now",
            "QUIT please",
            "STARTTLS TLSv1.3",
            "DATA 5",
        ] {
            assert_eq!(parse(line), Err(Syntax), "{line}");
        }
        assert_eq!(parse("QUIT ü"), Err(BadEncoding));
    }

    // --- NOOP, HELP, VRFY --------------------------------------------------------------

    #[test]
    fn noop() {
        assert_eq!(parse("NOOP"), Ok(Command::Noop));
        assert_eq!(parse("NOOP anything at all"), Ok(Command::Noop));
        assert_eq!(parse("NOOP \"quoted\" <x@y>"), Ok(Command::Noop));
        assert_eq!(parse("NOOP ünïcode"), Err(BadEncoding));
        assert_eq!(parse("NOOP a\x07b"), Err(Syntax));
    }

    #[test]
    fn help() {
        assert_eq!(parse("HELP"), Ok(Command::Help(None)));
        assert_eq!(parse("HELP MAIL"), Ok(Command::Help(Some("MAIL"))));
        assert_eq!(
            parse("HELP mail from"),
            Ok(Command::Help(Some("mail from")))
        );
        assert_eq!(parse("HELP ¿"), Err(BadEncoding));
        assert_eq!(parse("HELP \x7f"), Err(Syntax));
    }

    #[test]
    fn vrfy() {
        // RFC 5321 D.4 and 3.5.3.
        assert_eq!(parse("VRFY Smith"), Ok(Command::Vrfy("Smith")));
        assert_eq!(parse("VRFY Jones"), Ok(Command::Vrfy("Jones")));
        assert_eq!(
            parse("VRFY <Smith@bar.com>"),
            Ok(Command::Vrfy("<Smith@bar.com>"))
        );
        assert_eq!(
            parse("VRFY \"J. Smith\""),
            Ok(Command::Vrfy("\"J. Smith\""))
        );
        assert_eq!(parse("VRFY"), Err(Syntax));
        assert_eq!(parse("VRFY Jörg"), Err(BadEncoding));
        assert_eq!(parse("VRFY a\rb"), Err(Syntax));
    }

    // --- BDAT -------------------------------------------------------------------------

    #[test]
    fn bdat_forms() {
        // RFC 3030 4.2.
        assert_eq!(
            parse("BDAT 86"),
            Ok(Command::Bdat {
                size: 86,
                last: false
            })
        );
        assert_eq!(
            parse("BDAT 986 LAST"),
            Ok(Command::Bdat {
                size: 986,
                last: true
            })
        );
        assert_eq!(
            parse("BDAT 0 LAST"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            parse("bdat 5 last"),
            Ok(Command::Bdat {
                size: 5,
                last: true
            })
        );
        assert_eq!(
            parse("BDAT 5 Last"),
            Ok(Command::Bdat {
                size: 5,
                last: true
            })
        );
        assert_eq!(
            parse("BDAT 0"),
            Ok(Command::Bdat {
                size: 0,
                last: false
            })
        );
        assert_eq!(
            parse("BDAT 18446744073709551615 LAST"),
            Ok(Command::Bdat {
                size: u64::MAX,
                last: true
            })
        );
    }

    #[test]
    fn bdat_errors() {
        for line in [
            "BDAT",
            "BDAT LAST",
            "BDAT -1",
            "BDAT +1",
            "BDAT 1.0",
            "BDAT 0x10",
            "BDAT 18446744073709551616",
            "BDAT 100 LASTX",
            "BDAT 100 LAS",
            "BDAT 100 LAST extra",
            "BDAT 100  LAST",
            "BDAT 100\tLAST",
            "BDAT 100 100",
            "BDAT 1 2 LAST",
        ] {
            assert_eq!(parse(line), Err(Syntax), "{line}");
        }
        assert_eq!(parse("BDAT ١٠٠"), Err(BadEncoding));
    }

    // --- AUTH -------------------------------------------------------------------------

    #[test]
    fn auth_mechanisms() {
        assert_eq!(
            parse("AUTH PLAIN"),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial: None
            })
        );
        assert_eq!(
            parse("auth plain"),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial: None
            })
        );
        assert_eq!(
            parse("AUTH Login"),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Login,
                initial: None
            })
        );
        assert_eq!(
            parse("AUTH CRAM-MD5"),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Other("CRAM-MD5"),
                initial: None
            })
        );
        assert_eq!(
            parse("AUTH scram-sha-256"),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Other("scram-sha-256"),
                initial: None
            })
        );
        assert_eq!(
            parse("AUTH X_OAUTH2"),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Other("X_OAUTH2"),
                initial: None
            })
        );
        // Exactly 20 characters is the longest name.
        let name20 = "ABCDEFGHIJ0123456789";
        assert_eq!(
            parse(&format!("AUTH {name20}")),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Other(name20),
                initial: None
            })
        );
    }

    #[test]
    fn auth_initial_response() {
        // RFC 4954 4: "AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=".
        assert_eq!(
            parse("AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ="),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial: Some(InitialResponse::Base64("dGVzdAB0ZXN0ADEyMzQ="))
            })
        );
        assert_eq!(
            parse("AUTH PLAIN AGpvZQBzZWNyZXQ"),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial: Some(InitialResponse::Base64("AGpvZQBzZWNyZXQ"))
            })
        );
        assert_eq!(
            parse("AUTH LOGIN dXNlcg=="),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Login,
                initial: Some(InitialResponse::Base64("dXNlcg=="))
            })
        );
        assert_eq!(
            parse("AUTH X a+b/c"),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Other("X"),
                initial: Some(InitialResponse::Base64("a+b/c"))
            })
        );
        assert_eq!(
            parse("AUTH PLAIN ="),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial: Some(InitialResponse::Empty)
            })
        );
    }

    #[test]
    fn auth_errors() {
        for line in [
            "AUTH",
            "AUTH PL@IN",
            "AUTH PLAIN.",
            "AUTH ABCDEFGHIJ0123456789K",
            "AUTH PLAIN ==",
            "AUTH PLAIN abc===",
            "AUTH PLAIN ab=c",
            "AUTH PLAIN abc!",
            "AUTH PLAIN a-b",
            "AUTH PLAIN abc def",
            "AUTH PLAIN  abc",
            "AUTH PLAIN\tabc",
            "AUTH PLAIN = =",
            "AUTH =",
        ] {
            assert_eq!(parse(line), Err(Syntax), "{line}");
        }
        assert_eq!(parse("AUTH PLÄIN"), Err(BadEncoding));
        assert_eq!(parse("AUTH PLAIN dGVzdA==é"), Err(BadEncoding));
    }

    #[test]
    fn helo_with_ipv6_literal() {
        assert_eq!(
            parse("HELO [IPv6:fe80::1:2]"),
            Ok(Command::Helo("[IPv6:fe80::1:2]"))
        );
        assert_eq!(parse("HELO [IPv6:fe80::1::2]"), Err(Syntax));
    }

    #[test]
    fn address_literal_length_limit() {
        // 253 octets of content plus the brackets is 255.
        let content = format!("x:{}", "a".repeat(251));
        let line = format!("RCPT TO:<u@[{content}]>");
        assert_eq!(
            rcpt_to(&line).map(|to| match to {
                ForwardPath::Mailbox(m) => m.domain.as_str().len(),
                ForwardPath::Postmaster => 0,
            }),
            Ok(253)
        );
        assert_eq!(parse(&format!("RCPT TO:<u@[{content}a]>")), Err(BadAddress));
    }

    #[test]
    fn quoted_mailbox_round_trips_through_display() {
        let line = r#"RCPT TO:<"a\"b c"@[192.0.2.1]>"#;
        let Ok(ForwardPath::Mailbox(m)) = rcpt_to(line) else {
            panic!("parse failed")
        };
        assert_eq!(format!("RCPT TO:<{m}>"), line);
        assert_eq!(m.local.unquoted(), r#"a"b c"#);
    }

    #[test]
    fn params_need_one_space_after_the_path() {
        assert_eq!(parse("MAIL FROM:<>SIZE=1"), Err(Syntax));
        assert_eq!(parse("MAIL FROM:<>  SIZE=1"), Err(BadParameter));
        assert_eq!(parse("MAIL FROM:<a@b>\tSIZE=1"), Err(Syntax));
    }

    #[test]
    fn parsing_does_not_allocate() {
        let lines: [&[u8]; 8] = [
            b"EHLO mail.example.com",
            b"MAIL FROM:<@a,@b:\"J. Q\\\" S\"@[IPv6:2001:db8::1]> SIZE=1 BODY=8BITMIME SMTPUTF8 AUTH=<>",
            "RCPT TO:<用户@例子.广告>".as_bytes(),
            b"RCPT TO:<a@b> NOTIFY=NEVER",
            b"BDAT 1000 LAST",
            b"AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=",
            b"VRFY Smith",
            b"\xff\xfe",
        ];
        // The counter does see allocations.
        let before = alloc_count::get();
        drop(std::hint::black_box(vec![0u8; 16]));
        assert!(alloc_count::get() > before);

        for line in lines {
            let before = alloc_count::get();
            let result = parse_command(line);
            assert_eq!(alloc_count::get(), before, "{result:?}");
        }
    }

    /// Counts allocations made by the current thread, so that tests running in parallel
    /// do not disturb each other.
    mod alloc_count {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static COUNT: Cell<usize> = const { Cell::new(0) };
        }

        pub fn get() -> usize {
            COUNT.with(Cell::get)
        }

        struct Counting;

        // SAFETY: every call is forwarded unchanged to the system allocator.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
                unsafe { System.alloc(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                unsafe { System.dealloc(ptr, layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static ALLOCATOR: Counting = Counting;
    }

    // --- literal internals ------------------------------------------------------------

    #[test]
    fn ipv6_text_forms() {
        for ok in [
            "2001:db8:0:0:0:0:0:1",
            "2001:DB8::1",
            "::",
            "::1",
            "1::",
            "fe80::1:2:3:4:5",
            "1:2:3:4:5:6:7::",
            "1:2:3::5:6:7:8",
            "::ffff:192.0.2.1",
            "1:2:3:4:5:6:192.0.2.1",
            "1::6:192.0.2.1",
            "::192.0.2.1",
        ] {
            assert!(is_ipv6(ok), "{ok}");
        }
        for bad in [
            "",
            ":",
            ":::",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7:8::",
            "1::2::3",
            "12345::1",
            "g::1",
            ":1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:",
            "1:2:3:4:5:6:7:192.0.2.1",
            "1:2:3:4:5:192.0.2.1",
            "::192.0.2.256",
            "::1.2.3",
            "192.0.2.1",
            "1:::2",
        ] {
            assert!(!is_ipv6(bad), "{bad}");
        }
    }
}
