//! Lexical rules of RFC 3501 section 9: atoms, strings, literals, numbers, sequence sets,
//! dates and flags, as nom parsers over a complete command (framing has already made sure
//! every literal's octets are in the buffer).

use std::borrow::Cow;

use nom::bytes::complete::{tag, tag_no_case, take, take_while1, take_while_m_n};
use nom::combinator::opt;
use nom::error::{ErrorKind, FromExternalError, ParseError as NomParseError};
use nom::{IResult, Parser};

use super::super::types::{Date, DateTime, Flag, IString, LiteralHeader, Mailbox, SequenceSet};
use super::Reason;

pub(super) type In<'a> = &'a [u8];
pub(super) type PResult<'a, O> = IResult<In<'a>, O, PErr>;

/// The nom error: the most specific reason known for the failure, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PErr {
    pub reason: Option<Reason>,
}

impl<'a> NomParseError<In<'a>> for PErr {
    fn from_error_kind(_: In<'a>, _: ErrorKind) -> Self {
        PErr { reason: None }
    }

    fn append(_: In<'a>, _: ErrorKind, other: Self) -> Self {
        other
    }

    fn or(self, other: Self) -> Self {
        if other.reason.is_some() {
            other
        } else {
            self
        }
    }
}

impl<'a, E> FromExternalError<In<'a>, E> for PErr {
    fn from_external_error(_: In<'a>, _: ErrorKind, _: E) -> Self {
        PErr { reason: None }
    }
}

/// A recoverable error (the caller may try another branch).
pub(super) fn error<O>(reason: Reason) -> Result<O, nom::Err<PErr>> {
    Err(nom::Err::Error(PErr {
        reason: Some(reason),
    }))
}

/// A recoverable error without a reason: the enclosing parser says what was expected.
pub(super) fn no_match<O>() -> Result<O, nom::Err<PErr>> {
    Err(nom::Err::Error(PErr { reason: None }))
}

/// An unrecoverable error: the branch was the right one and its content is wrong.
pub(super) fn failure<O>(reason: Reason) -> Result<O, nom::Err<PErr>> {
    Err(nom::Err::Failure(PErr {
        reason: Some(reason),
    }))
}

/// Runs `p`, labelling a failure that has no reason yet with `reason`.
pub(super) fn why<'a, O, P>(reason: Reason, mut p: P) -> impl FnMut(In<'a>) -> PResult<'a, O>
where
    P: Parser<In<'a>, Output = O, Error = PErr>,
{
    move |i| {
        p.parse(i).map_err(|e| {
            e.map(|mut pe| {
                pe.reason.get_or_insert(reason);
                pe
            })
        })
    }
}

/// Runs `p` and turns its recoverable errors into failures labelled with `reason`: for the
/// arguments of a keyword that has been recognised.
pub(super) fn must<'a, O, P>(reason: Reason, p: P) -> impl Parser<In<'a>, Output = O, Error = PErr>
where
    P: Parser<In<'a>, Output = O, Error = PErr>,
{
    nom::combinator::cut(why(reason, p))
}

/// `name` upper-cased into `buf`, if it fits: for matching keywords without allocating.
pub(super) fn upper<'b>(name: &[u8], buf: &'b mut [u8; 16]) -> Option<&'b [u8]> {
    let b = buf.get_mut(..name.len())?;
    b.copy_from_slice(name);
    b.make_ascii_uppercase();
    Some(b)
}

/// The text of a slice known to be ASCII.
pub(super) fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Character classes

/// `ATOM-CHAR`: any CHAR except atom-specials `( ) { SP CTL % * " \ ]`.
pub(super) fn is_atom_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// `ASTRING-CHAR`: ATOM-CHAR or `]`.
pub(super) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// A tag character: any ASTRING-CHAR except `+`.
pub(super) fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// `list-char`: ATOM-CHAR, the wildcards `%` `*`, or `]`.
fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

// ---------------------------------------------------------------------------------------
// Tokens

pub(super) fn sp(i: In<'_>) -> PResult<'_, ()> {
    match i.first() {
        Some(b' ') => Ok((&i[1..], ())),
        _ => no_match(),
    }
}

/// The end of a line: CRLF, or a bare LF (tolerated as most servers do).
pub(super) fn eol(i: In<'_>) -> PResult<'_, ()> {
    match i {
        [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => Ok((rest, ())),
        _ => no_match(),
    }
}

/// The length of the run of octets in `class` at the start of `i`.
fn run(i: In<'_>, class: impl Fn(u8) -> bool) -> usize {
    i.iter().position(|&b| !class(b)).unwrap_or(i.len())
}

/// The octets of a tag, not yet made text.
pub(super) fn tag_bytes(i: In<'_>) -> PResult<'_, &[u8]> {
    match run(i, is_tag_char) {
        0 => no_match(),
        n => Ok((&i[n..], &i[..n])),
    }
}

pub(super) fn tag_token(i: In<'_>) -> PResult<'_, &str> {
    let (rest, t) = tag_bytes(i)?;
    Ok((rest, ascii(t)))
}

/// The octets of an atom: for a keyword that is only matched, never kept as text.
pub(super) fn atom_bytes(i: In<'_>) -> PResult<'_, &[u8]> {
    match run(i, is_atom_char) {
        0 => no_match(),
        n => Ok((&i[n..], &i[..n])),
    }
}

pub(super) fn atom(i: In<'_>) -> PResult<'_, &str> {
    let (rest, a) = atom_bytes(i)?;
    Ok((rest, ascii(a)))
}

/// `NIL`, not followed by an atom character (so `NILE` is an atom).
pub(super) fn nil(i: In<'_>) -> PResult<'_, ()> {
    let (rest, _) = tag_no_case(&b"NIL"[..]).parse(i)?;
    match rest.first() {
        Some(&b) if is_astring_char(b) => no_match(),
        _ => Ok((rest, ())),
    }
}

/// `number`: an unsigned 32-bit decimal.
pub(super) fn number(i: In<'_>) -> PResult<'_, u32> {
    let (rest, digits) = take_while1(|b: u8| b.is_ascii_digit()).parse(i)?;
    match parse_u32(digits) {
        Some(n) => Ok((rest, n)),
        None => failure(Reason::BadNumber),
    }
}

/// `nz-number`: a `number` without leading zeros, not zero.
pub(super) fn nz_number(i: In<'_>) -> PResult<'_, u32> {
    match i.first() {
        Some(b'1'..=b'9') => number(i),
        _ => no_match(),
    }
}

pub(super) fn parse_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    u32::try_from(n).ok()
}

// ---------------------------------------------------------------------------------------
// Strings

/// `quoted`: the content with `\"` and `\\` unescaped, borrowed when there were none.
/// Octets above 0x7F are accepted (UTF-8 under RFC 6855); NUL, CR and LF are not.
pub(super) fn quoted(i: In<'_>) -> PResult<'_, IString<'_>> {
    let Some(body) = i.strip_prefix(b"\"") else {
        return no_match();
    };
    let mut escaped = false;
    let mut j = 0;
    loop {
        match body.get(j) {
            Some(b'"') => break,
            Some(b'\\') => match body.get(j + 1) {
                Some(b'"' | b'\\') => {
                    escaped = true;
                    j += 2;
                }
                _ => return failure(Reason::BadString),
            },
            Some(0 | b'\r' | b'\n') | None => return failure(Reason::BadString),
            Some(_) => j += 1,
        }
    }
    let raw = &body[..j];
    let rest = &body[j + 1..];
    if !escaped {
        return Ok((rest, IString(Cow::Borrowed(raw))));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut k = 0;
    while k < raw.len() {
        if raw[k] == b'\\' {
            k += 1;
        }
        out.push(raw[k]);
        k += 1;
    }
    Ok((rest, IString(Cow::Owned(out))))
}

/// `{N}` or `{N+}` and the end of its line. A number that overflows is a failure.
pub(super) fn literal_header(i: In<'_>) -> PResult<'_, LiteralHeader> {
    let (rest, _) = tag(&b"{"[..]).parse(i)?;
    let (rest, size) = must(Reason::BadLiteral, number).parse(rest)?;
    let (rest, plus) = opt(tag(&b"+"[..])).parse(rest)?;
    let (rest, _) = must(Reason::BadLiteral, tag(&b"}"[..])).parse(rest)?;
    let (rest, ()) = must(Reason::BadLiteral, eol).parse(rest)?;
    Ok((
        rest,
        LiteralHeader {
            size,
            sync: plus.is_none(),
        },
    ))
}

/// `literal`: the announcement and its octets (CHAR8: anything but NUL).
pub(super) fn literal(i: In<'_>) -> PResult<'_, IString<'_>> {
    let (rest, h) = literal_header(i)?;
    let (rest, data) = must(Reason::BadLiteral, take(h.size as usize)).parse(rest)?;
    if data.contains(&0) {
        return failure(Reason::BadLiteral);
    }
    Ok((rest, IString(Cow::Borrowed(data))))
}

/// `string = quoted / literal`.
pub(super) fn string(i: In<'_>) -> PResult<'_, IString<'_>> {
    match i.first() {
        Some(b'"') => quoted(i),
        Some(b'{') => literal(i),
        _ => no_match(),
    }
}

/// `astring = 1*ASTRING-CHAR / string`.
pub(super) fn astring(i: In<'_>) -> PResult<'_, IString<'_>> {
    match i.first() {
        Some(b'"' | b'{') => string(i),
        _ => {
            let (rest, a) = take_while1(is_astring_char).parse(i)?;
            Ok((rest, IString(Cow::Borrowed(a))))
        }
    }
}

/// `nstring = string / nil`.
pub(super) fn nstring(i: In<'_>) -> PResult<'_, Option<IString<'_>>> {
    match i.first() {
        Some(b'"' | b'{') => string(i).map(|(r, s)| (r, Some(s))),
        _ => nil(i).map(|(r, ())| (r, None)),
    }
}

/// `mailbox = "INBOX" / astring`, INBOX in any case.
pub(super) fn mailbox(i: In<'_>) -> PResult<'_, Mailbox<'_>> {
    let (rest, name) = why(Reason::BadMailbox, astring).parse(i)?;
    Ok((rest, Mailbox::from_name(name)))
}

/// `list-mailbox = 1*list-char / string`: a LIST pattern.
pub(super) fn list_mailbox(i: In<'_>) -> PResult<'_, IString<'_>> {
    match i.first() {
        Some(b'"' | b'{') => string(i),
        _ => {
            let (rest, a) = take_while1(is_list_char).parse(i)?;
            Ok((rest, IString(Cow::Borrowed(a))))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sequence sets

/// Whether `s` is a `sequence-set`: comma-separated `seq-number` or `seq-number:seq-number`,
/// where a seq-number is `*` or an nz-number.
pub(crate) fn valid_sequence_set(s: &[u8]) -> bool {
    fn seq_number(n: &[u8]) -> bool {
        n == b"*"
            || (n.first().is_some_and(|d| (b'1'..=b'9').contains(d)) && parse_u32(n).is_some())
    }
    !s.is_empty()
        && s.split(|&b| b == b',').all(|elem| {
            let mut ends = elem.splitn(2, |&b| b == b':');
            let first = ends.next().is_some_and(seq_number);
            first && ends.next().is_none_or(seq_number)
        })
}

pub(super) fn sequence_set(i: In<'_>) -> PResult<'_, SequenceSet<'_>> {
    let (rest, s) =
        take_while1(|b: u8| b.is_ascii_digit() || matches!(b, b'*' | b':' | b',')).parse(i)?;
    if valid_sequence_set(s) {
        Ok((rest, SequenceSet::from_validated(ascii(s))))
    } else {
        failure(Reason::BadSequenceSet)
    }
}

// ---------------------------------------------------------------------------------------
// Dates

fn month(i: In<'_>) -> PResult<'_, u8> {
    let (rest, m) = take(3usize).parse(i)?;
    const NAMES: [&[u8]; 12] = [
        b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV",
        b"DEC",
    ];
    match NAMES.iter().position(|n| n.eq_ignore_ascii_case(m)) {
        Some(p) => Ok((rest, p as u8 + 1)),
        None => no_match(),
    }
}

fn digits(n: usize) -> impl FnMut(In<'_>) -> PResult<'_, u32> {
    move |i| {
        let (rest, d) = take_while_m_n(n, n, |b: u8| b.is_ascii_digit()).parse(i)?;
        Ok((rest, parse_u32(d).unwrap_or(0)))
    }
}

/// `date-text = date-day "-" date-month "-" date-year` with a 1- or 2-digit day.
fn date_text(i: In<'_>) -> PResult<'_, Date> {
    let (rest, day) = take_while_m_n(1, 2, |b: u8| b.is_ascii_digit()).parse(i)?;
    let (rest, _) = tag(&b"-"[..]).parse(rest)?;
    let (rest, m) = month(rest)?;
    let (rest, _) = tag(&b"-"[..]).parse(rest)?;
    let (rest, year) = digits(4)(rest)?;
    let day = parse_u32(day).unwrap_or(0);
    match Date::new(year as u16, m, day as u8) {
        Some(d) => Ok((rest, d)),
        None => no_match(),
    }
}

/// SEARCH's `date = date-text / DQUOTE date-text DQUOTE`.
pub(super) fn date(i: In<'_>) -> PResult<'_, Date> {
    why(Reason::BadDate, date_inner).parse(i)
}

fn date_inner(i: In<'_>) -> PResult<'_, Date> {
    match i.strip_prefix(b"\"") {
        Some(q) => {
            let (rest, d) = date_text(q)?;
            let (rest, _) = tag(&b"\""[..]).parse(rest)?;
            Ok((rest, d))
        }
        None => date_text(i),
    }
}

/// `date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE`.
/// The day may be space-padded (` 1`), zero-padded (`01`) or, leniently, a single digit.
pub(super) fn date_time(i: In<'_>) -> PResult<'_, DateTime> {
    why(Reason::BadDateTime, date_time_inner).parse(i)
}

fn date_time_inner(i: In<'_>) -> PResult<'_, DateTime> {
    let (rest, _) = tag(&b"\""[..]).parse(i)?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let (rest, d) = date_text(rest)?;
    let (rest, ()) = sp(rest)?;
    let (rest, hour) = digits(2)(rest)?;
    let (rest, _) = tag(&b":"[..]).parse(rest)?;
    let (rest, minute) = digits(2)(rest)?;
    let (rest, _) = tag(&b":"[..]).parse(rest)?;
    let (rest, second) = digits(2)(rest)?;
    let (rest, ()) = sp(rest)?;
    let (rest, sign) = take(1usize).parse(rest)?;
    let (rest, zh) = digits(2)(rest)?;
    let (rest, zm) = digits(2)(rest)?;
    let (rest, _) = tag(&b"\""[..]).parse(rest)?;
    let sign: i16 = match sign {
        b"+" => 1,
        b"-" => -1,
        _ => return error(Reason::BadDateTime),
    };
    if hour > 23 || minute > 59 || second > 60 || zm > 59 || zh > 23 {
        return error(Reason::BadDateTime);
    }
    Ok((
        rest,
        DateTime {
            date: d,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            offset_minutes: sign * (zh as i16 * 60 + zm as i16),
        },
    ))
}

// ---------------------------------------------------------------------------------------
// Flags

/// A `flag` of STORE and APPEND: a system flag, a `\Extension` or a keyword. `\Recent` is
/// refused: only the server sets it.
pub(super) fn flag(i: In<'_>) -> PResult<'_, Flag<'_>> {
    if let Some(rest) = i.strip_prefix(b"\\") {
        let (rest, name) = must(Reason::BadFlag, atom).parse(rest)?;
        let mut buf = [0u8; 16];
        let f = match upper(name.as_bytes(), &mut buf) {
            Some(b"SEEN") => Flag::Seen,
            Some(b"ANSWERED") => Flag::Answered,
            Some(b"FLAGGED") => Flag::Flagged,
            Some(b"DELETED") => Flag::Deleted,
            Some(b"DRAFT") => Flag::Draft,
            Some(b"RECENT") => return failure(Reason::RecentNotAllowed),
            _ => Flag::Extension(Cow::Borrowed(name)),
        };
        return Ok((rest, f));
    }
    let (rest, k) = why(Reason::BadFlag, atom).parse(i)?;
    Ok((rest, Flag::Keyword(Cow::Borrowed(k))))
}

/// `flag-list = "(" [flag *(SP flag)] ")"`.
pub(super) fn flag_list(i: In<'_>) -> PResult<'_, Vec<Flag<'_>>> {
    let (mut rest, _) = tag(&b"("[..]).parse(i)?;
    let mut flags = Vec::new();
    if let Some(r) = rest.strip_prefix(b")") {
        return Ok((r, flags));
    }
    loop {
        let (r, f) = must(Reason::BadFlag, flag).parse(rest)?;
        flags.push(f);
        match r.first() {
            Some(b' ') => rest = &r[1..],
            Some(b')') => return Ok((&r[1..], flags)),
            _ => return failure(Reason::BadFlag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<'a, O>(r: PResult<'a, O>) -> (In<'a>, O) {
        r.unwrap_or_else(|e| panic!("parse failed: {e:?}"))
    }

    #[test]
    fn character_classes() {
        for b in b"abcXYZ019.-_!#$&'+,/:;<=>?@[^`|}~" {
            assert!(is_atom_char(*b), "{}", *b as char);
        }
        for b in b"(){ %*\"\\]\x00\x1f\x7f\x80\xff" {
            assert!(!is_atom_char(*b), "{b:#x}");
        }
        assert!(is_astring_char(b']'));
        assert!(!is_tag_char(b'+'));
        assert!(is_tag_char(b']'));
    }

    #[test]
    fn quoted_strings() {
        let (rest, s) = ok(quoted(b"\"hello world\" x"));
        assert_eq!((rest, s.as_bytes()), (&b" x"[..], &b"hello world"[..]));
        assert!(s.is_borrowed());
        let (_, s) = ok(quoted(br#""a\"b\\c""#));
        assert_eq!(s.as_bytes(), br#"a"b\c"#);
        assert!(!s.is_borrowed());
        let (_, s) = ok(quoted(b"\"\""));
        assert!(s.is_empty());
        let (_, s) = ok(quoted("\"caf\u{e9}\"".as_bytes()));
        assert_eq!(s.to_str(), Some("caf\u{e9}"));
        for bad in [
            &b"\"abc"[..],
            b"\"a\\b\"",
            b"\"a\rb\"",
            b"\"a\nb\"",
            b"\"a\0b\"",
            b"\"a\\",
        ] {
            assert!(matches!(quoted(bad), Err(nom::Err::Failure(_))), "{bad:?}");
        }
    }

    #[test]
    fn literals() {
        let (rest, s) = ok(literal(b"{5}\r\nhello rest"));
        assert_eq!((rest, s.as_bytes()), (&b" rest"[..], &b"hello"[..]));
        let (_, s) = ok(literal(b"{5+}\r\nhe\r\nl"));
        assert_eq!(s.as_bytes(), b"he\r\nl");
        let (_, s) = ok(literal(b"{0}\r\n"));
        assert!(s.is_empty());
        let (_, h) = ok(literal_header(b"{42+}\n"));
        assert_eq!(
            h,
            LiteralHeader {
                size: 42,
                sync: false
            }
        );
        assert!(literal(b"{3}\r\na\0b").is_err());
        assert!(literal(b"{3}\r\nab").is_err());
        assert!(literal(b"{3} \r\nabc").is_err());
        assert!(literal(b"{99999999999}\r\n").is_err());
        assert!(literal(b"{-1}\r\n").is_err());
    }

    #[test]
    fn astrings() {
        let (rest, s) = ok(astring(b"foo]bar baz"));
        assert_eq!((rest, s.as_bytes()), (&b" baz"[..], &b"foo]bar"[..]));
        let (_, s) = ok(astring(b"\"a b\""));
        assert_eq!(s.as_bytes(), b"a b");
        let (_, s) = ok(astring(b"{3}\r\na b"));
        assert_eq!(s.as_bytes(), b"a b");
        assert!(astring(b"(x").is_err());
        assert!(astring(b"").is_err());
    }

    #[test]
    fn nstrings_and_nil() {
        assert_eq!(ok(nstring(b"NIL")).1, None);
        assert_eq!(ok(nstring(b"nil)")).1, None);
        assert_eq!(ok(nstring(b"\"NIL\"")).1, Some("NIL".into()));
        assert!(nstring(b"NILE").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(ok(number(b"0")).1, 0);
        assert_eq!(ok(number(b"4294967295")).1, u32::MAX);
        assert!(number(b"4294967296").is_err());
        assert!(nz_number(b"0").is_err());
        assert!(nz_number(b"01").is_err());
        assert_eq!(ok(nz_number(b"10 ")).1, 10);
    }

    #[test]
    fn sequence_sets() {
        for good in [
            "1",
            "*",
            "1:*",
            "*:1",
            "2,4:7,9,12:*",
            "4294967295",
            "3:2,1",
        ] {
            assert!(valid_sequence_set(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "0",
            "1:0",
            "01",
            ",1",
            "1,",
            "1::2",
            "1:2:3",
            "4294967296",
            "**",
            "1,,2",
        ] {
            assert!(!valid_sequence_set(bad.as_bytes()), "{bad}");
        }
        let (rest, s) = ok(sequence_set(b"1:3,5 FLAGS"));
        assert_eq!((rest, s.as_str()), (&b" FLAGS"[..], "1:3,5"));
        assert!(matches!(sequence_set(b"1:0 x"), Err(nom::Err::Failure(_))));
    }

    #[test]
    fn dates() {
        let d = ok(date(b"1-Feb-1994")).1;
        assert_eq!((d.year, d.month, d.day), (1994, 2, 1));
        let d = ok(date(b"\"01-feb-1994\"")).1;
        assert_eq!((d.year, d.month, d.day), (1994, 2, 1));
        assert_eq!(ok(date(b"31-DEC-2023")).1.day, 31);
        for bad in [
            &b"1-Foo-1994"[..],
            b"32-Jan-1994",
            b"29-Feb-1994",
            b"1-Feb-94",
            b"1 Feb 1994",
            b"\"1-Feb-1994",
            b"123-Feb-1994",
        ] {
            assert!(date(bad).is_err() || !ok(date(bad)).0.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn date_times() {
        let dt = ok(date_time(b"\"17-Jul-1996 02:44:25 -0700\"")).1;
        assert_eq!(dt.to_string(), "17-Jul-1996 02:44:25 -0700");
        let dt = ok(date_time(b"\" 1-Feb-1994 08:00:00 +0000\"")).1;
        assert_eq!((dt.date.day, dt.hour, dt.offset_minutes), (1, 8, 0));
        let dt = ok(date_time(b"\"01-Feb-1994 08:00:00 +0530\"")).1;
        assert_eq!(dt.offset_minutes, 330);
        let dt = ok(date_time(b"\"1-Feb-1994 23:59:60 -1200\"")).1;
        assert_eq!((dt.second, dt.offset_minutes), (60, -720));
        for bad in [
            &b"17-Jul-1996 02:44:25 -0700"[..],
            b"\"17-Jul-1996 24:00:00 +0000\"",
            b"\"17-Jul-1996 02:60:00 +0000\"",
            b"\"17-Jul-1996 02:44 +0000\"",
            b"\"17-Jul-1996 02:44:25 0700\"",
            b"\"17-Jul-1996 02:44:25 +07\"",
            b"\"17-Jul-1996 02:44:25 +0760\"",
            b"\"31-Jun-1996 02:44:25 +0000\"",
        ] {
            assert!(date_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags() {
        assert_eq!(ok(flag(b"\\SEEN")).1, Flag::Seen);
        assert_eq!(ok(flag(b"\\answered")).1, Flag::Answered);
        assert_eq!(ok(flag(b"\\Flagged")).1, Flag::Flagged);
        assert_eq!(ok(flag(b"\\Deleted")).1, Flag::Deleted);
        assert_eq!(ok(flag(b"\\Draft")).1, Flag::Draft);
        assert_eq!(
            ok(flag(b"\\Important")).1,
            Flag::Extension("Important".into())
        );
        assert_eq!(
            ok(flag(b"$Forwarded")).1,
            Flag::Keyword("$Forwarded".into())
        );
        assert_eq!(
            flag(b"\\Recent"),
            Err(nom::Err::Failure(PErr {
                reason: Some(Reason::RecentNotAllowed)
            }))
        );
        assert!(flag(b"\\*").is_err());
        assert!(flag(b"\\").is_err());
        assert_eq!(ok(flag_list(b"()")).1, vec![]);
        assert_eq!(
            ok(flag_list(b"(\\Seen $Junk)")).1,
            vec![Flag::Seen, Flag::Keyword("$Junk".into())]
        );
        assert!(flag_list(b"(\\Seen ").is_err());
        assert!(flag_list(b"(\\Seen  $Junk)").is_err());
        assert!(flag_list(b"( \\Seen)").is_err());
    }
}
