//! SEARCH (RFC 3501 6.4.4): `SEARCH [CHARSET astring] 1*(SP search-key)`.

use std::borrow::Cow;

use nom::Parser;

use super::super::types::{CommandBody, SearchKey};
use super::lex::{
    astring, atom, atom_bytes, date, failure, must, number, sequence_set, sp, upper, In, PResult,
};
use super::Reason;

/// How deeply parentheses, NOT and OR may nest: bounds the parser's recursion (and the
/// evaluator's) whatever the client sends.
pub const MAX_SEARCH_DEPTH: u32 = 64;

/// The arguments of SEARCH / UID SEARCH, after the command name.
pub(super) fn search(i: In<'_>, uid: bool) -> PResult<'_, CommandBody<'_>> {
    let (mut rest, ()) = sp(i)?;
    let mut charset = None;
    if let Ok((r, a)) = atom_bytes(rest) {
        if a.eq_ignore_ascii_case(b"CHARSET") {
            let (r, ()) = must(Reason::Syntax, sp).parse(r)?;
            let (r, cs) = must(Reason::Syntax, astring).parse(r)?;
            let (r, ()) = must(Reason::Syntax, sp).parse(r)?;
            charset = Some(cs);
            rest = r;
        }
    }
    let mut criteria = Vec::new();
    loop {
        let (r, key) = search_key(rest, 0)?;
        criteria.push(key);
        match sp(r) {
            Ok((r, ())) => rest = r,
            Err(_) => {
                return Ok((
                    r,
                    CommandBody::Search {
                        uid,
                        charset,
                        criteria,
                    },
                ))
            }
        }
    }
}

/// One `search-key`; `depth` counts the enclosing parentheses, NOTs and ORs.
pub(super) fn search_key(i: In<'_>, depth: u32) -> PResult<'_, SearchKey<'_>> {
    if depth >= MAX_SEARCH_DEPTH {
        return failure(Reason::NestingTooDeep);
    }
    match i.first() {
        Some(b'(') => {
            let mut rest = &i[1..];
            let mut keys = Vec::new();
            loop {
                let (r, key) = search_key(rest, depth + 1)?;
                keys.push(key);
                match r.first() {
                    Some(b' ') => rest = &r[1..],
                    Some(b')') => return Ok((&r[1..], SearchKey::And(keys))),
                    _ => return failure(Reason::BadSearchKey),
                }
            }
        }
        Some(b'0'..=b'9' | b'*') => {
            let (rest, set) = sequence_set(i)?;
            Ok((rest, SearchKey::SequenceSet(set)))
        }
        Some(_) => {
            let (rest, name) = match atom_bytes(i) {
                Ok(r) => r,
                Err(_) => return failure(Reason::BadSearchKey),
            };
            keyword(rest, name, depth)
        }
        None => failure(Reason::BadSearchKey),
    }
}

/// The search key named `name`, with its arguments from `i`.
fn keyword<'a>(i: In<'a>, name: &[u8], depth: u32) -> PResult<'a, SearchKey<'a>> {
    use SearchKey as K;
    let mut buf = [0u8; 16];
    let Some(upper) = upper(name, &mut buf) else {
        return failure(Reason::BadSearchKey);
    };

    let s = |i| arg(i, astring, Reason::Syntax);
    let d = |i| arg(i, date, Reason::BadDate);
    let n = |i| arg(i, number, Reason::BadNumber);
    let kw = |i| arg(i, atom, Reason::BadFlag);
    let (i, key) = match upper {
        b"ALL" => (i, K::All),
        b"ANSWERED" => (i, K::Answered),
        b"BCC" => s(i).map(|(r, v)| (r, K::Bcc(v)))?,
        b"BEFORE" => d(i).map(|(r, v)| (r, K::Before(v)))?,
        b"BODY" => s(i).map(|(r, v)| (r, K::Body(v)))?,
        b"CC" => s(i).map(|(r, v)| (r, K::Cc(v)))?,
        b"DELETED" => (i, K::Deleted),
        b"DRAFT" => (i, K::Draft),
        b"FLAGGED" => (i, K::Flagged),
        b"FROM" => s(i).map(|(r, v)| (r, K::From(v)))?,
        b"HEADER" => {
            let (i, field) = s(i)?;
            let (i, value) = s(i)?;
            (i, K::Header(field, value))
        }
        b"KEYWORD" => kw(i).map(|(r, v)| (r, K::Keyword(Cow::Borrowed(v))))?,
        b"LARGER" => n(i).map(|(r, v)| (r, K::Larger(v)))?,
        b"NEW" => (i, K::New),
        b"NOT" => {
            let (i, ()) = must(Reason::BadSearchKey, sp).parse(i)?;
            let (i, k) = search_key(i, depth + 1)?;
            (i, K::Not(Box::new(k)))
        }
        b"OLD" => (i, K::Old),
        b"ON" => d(i).map(|(r, v)| (r, K::On(v)))?,
        b"OR" => {
            let (i, ()) = must(Reason::BadSearchKey, sp).parse(i)?;
            let (i, a) = search_key(i, depth + 1)?;
            let (i, ()) = must(Reason::BadSearchKey, sp).parse(i)?;
            let (i, b) = search_key(i, depth + 1)?;
            (i, K::Or(Box::new(a), Box::new(b)))
        }
        b"RECENT" => (i, K::Recent),
        b"SEEN" => (i, K::Seen),
        b"SENTBEFORE" => d(i).map(|(r, v)| (r, K::SentBefore(v)))?,
        b"SENTON" => d(i).map(|(r, v)| (r, K::SentOn(v)))?,
        b"SENTSINCE" => d(i).map(|(r, v)| (r, K::SentSince(v)))?,
        b"SINCE" => d(i).map(|(r, v)| (r, K::Since(v)))?,
        b"SMALLER" => n(i).map(|(r, v)| (r, K::Smaller(v)))?,
        b"SUBJECT" => s(i).map(|(r, v)| (r, K::Subject(v)))?,
        b"TEXT" => s(i).map(|(r, v)| (r, K::Text(v)))?,
        b"TO" => s(i).map(|(r, v)| (r, K::To(v)))?,
        b"UID" => arg(i, sequence_set, Reason::BadSequenceSet).map(|(r, v)| (r, K::Uid(v)))?,
        b"UNANSWERED" => (i, K::Unanswered),
        b"UNDELETED" => (i, K::Undeleted),
        b"UNDRAFT" => (i, K::Undraft),
        b"UNFLAGGED" => (i, K::Unflagged),
        b"UNKEYWORD" => kw(i).map(|(r, v)| (r, K::Unkeyword(Cow::Borrowed(v))))?,
        b"UNSEEN" => (i, K::Unseen),
        _ => return failure(Reason::BadSearchKey),
    };
    // A key must be followed by a separator, not run into the next token (`ALLx`, `SEEN(`).
    match i.first() {
        None | Some(b' ' | b')' | b'\r' | b'\n') => Ok((i, key)),
        Some(_) => failure(Reason::BadSearchKey),
    }
}

/// `SP value`, failing with `reason` once the key is known.
fn arg<'a, O>(
    i: In<'a>,
    p: impl Parser<In<'a>, Output = O, Error = super::lex::PErr>,
    reason: Reason,
) -> PResult<'a, O> {
    let (i, ()) = must(reason, sp).parse(i)?;
    must(reason, p).parse(i)
}

/// Parses a SEARCH argument string for a test, without a command around it.
#[cfg(test)]
fn key(s: &str) -> Result<SearchKey<'_>, Option<Reason>> {
    match search_key(s.as_bytes(), 0) {
        Ok((b"", k)) => Ok(k),
        Ok(_) => Err(None),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e.reason),
        Err(nom::Err::Incomplete(_)) => Err(None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::types::{Date, SequenceSet};
    use super::*;

    fn d(y: u16, m: u8, day: u8) -> Date {
        Date::new(y, m, day).unwrap()
    }

    #[test]
    fn every_key_without_arguments() {
        use SearchKey as K;
        for (s, k) in [
            ("ALL", K::All),
            ("ANSWERED", K::Answered),
            ("DELETED", K::Deleted),
            ("DRAFT", K::Draft),
            ("FLAGGED", K::Flagged),
            ("NEW", K::New),
            ("OLD", K::Old),
            ("RECENT", K::Recent),
            ("SEEN", K::Seen),
            ("UNANSWERED", K::Unanswered),
            ("UNDELETED", K::Undeleted),
            ("UNDRAFT", K::Undraft),
            ("UNFLAGGED", K::Unflagged),
            ("UNSEEN", K::Unseen),
        ] {
            assert_eq!(key(s), Ok(k.clone()), "{s}");
            assert_eq!(key(&s.to_ascii_lowercase()), Ok(k), "{s}");
        }
    }

    #[test]
    fn every_key_with_arguments() {
        use SearchKey as K;
        for (s, k) in [
            ("BCC boss", K::Bcc("boss".into())),
            ("BEFORE 1-Feb-1994", K::Before(d(1994, 2, 1))),
            ("BODY \"x y\"", K::Body("x y".into())),
            ("CC {3}\r\na b", K::Cc("a b".into())),
            ("FROM Smith", K::From("Smith".into())),
            (
                "HEADER Message-ID <a@b>",
                K::Header("Message-ID".into(), "<a@b>".into()),
            ),
            (
                "HEADER X-Empty \"\"",
                K::Header("X-Empty".into(), "".into()),
            ),
            ("KEYWORD $Forwarded", K::Keyword("$Forwarded".into())),
            ("LARGER 1024", K::Larger(1024)),
            ("ON \"3-Mar-2003\"", K::On(d(2003, 3, 3))),
            ("SENTBEFORE 1-Jan-2000", K::SentBefore(d(2000, 1, 1))),
            ("SENTON 29-Feb-2000", K::SentOn(d(2000, 2, 29))),
            ("SENTSINCE 10-oct-2010", K::SentSince(d(2010, 10, 10))),
            ("SINCE 1-Feb-1994", K::Since(d(1994, 2, 1))),
            ("SMALLER 0", K::Smaller(0)),
            (
                "SUBJECT \"IMAP4rev1 WG\"",
                K::Subject("IMAP4rev1 WG".into()),
            ),
            (
                "TEXT \"string not in mailbox\"",
                K::Text("string not in mailbox".into()),
            ),
            ("TO imap@example.com", K::To("imap@example.com".into())),
            (
                "UID 443:557",
                K::Uid(SequenceSet::parse("443:557").unwrap()),
            ),
            ("UNKEYWORD Junk", K::Unkeyword("Junk".into())),
            (
                "2:4,7,*",
                K::SequenceSet(SequenceSet::parse("2:4,7,*").unwrap()),
            ),
            ("*", K::SequenceSet(SequenceSet::parse("*").unwrap())),
        ] {
            assert_eq!(key(s), Ok(k), "{s}");
        }
    }

    #[test]
    fn nesting() {
        use SearchKey as K;
        assert_eq!(key("NOT SEEN"), Ok(K::Not(Box::new(K::Seen))));
        assert_eq!(
            key("OR SEEN FLAGGED"),
            Ok(K::Or(Box::new(K::Seen), Box::new(K::Flagged)))
        );
        assert_eq!(
            key("OR (SEEN FROM x) NOT (DELETED)"),
            Ok(K::Or(
                Box::new(K::And(vec![K::Seen, K::From("x".into())])),
                Box::new(K::Not(Box::new(K::And(vec![K::Deleted])))),
            ))
        );
        assert_eq!(
            key("OR OR 1 2 3"),
            Ok(K::Or(
                Box::new(K::Or(
                    Box::new(K::SequenceSet(SequenceSet::parse("1").unwrap())),
                    Box::new(K::SequenceSet(SequenceSet::parse("2").unwrap())),
                )),
                Box::new(K::SequenceSet(SequenceSet::parse("3").unwrap())),
            ))
        );
        assert_eq!(key("((ALL))"), Ok(K::And(vec![K::And(vec![K::All])])));
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}SEEN", "NOT ".repeat(MAX_SEARCH_DEPTH as usize - 1));
        assert!(key(&ok).is_ok());
        let deep = format!("{}SEEN", "NOT ".repeat(MAX_SEARCH_DEPTH as usize));
        assert_eq!(key(&deep), Err(Some(Reason::NestingTooDeep)));
        let parens = format!("{}ALL{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(key(&parens), Err(Some(Reason::NestingTooDeep)));
        let ors = format!("{}ALL", "OR ALL ".repeat(100_000));
        assert_eq!(key(&ors), Err(Some(Reason::NestingTooDeep)));
    }

    #[test]
    fn malformed_keys() {
        for (s, why) in [
            ("BOGUS", Some(Reason::BadSearchKey)),
            ("SEENX", Some(Reason::BadSearchKey)),
            ("SEEN(", Some(Reason::BadSearchKey)),
            ("BEFORE", Some(Reason::BadDate)),
            ("BEFORE 1-Foo-1994", Some(Reason::BadDate)),
            ("BEFORE 30-Feb-1994", Some(Reason::BadDate)),
            ("LARGER x", Some(Reason::BadNumber)),
            ("LARGER 99999999999", Some(Reason::BadNumber)),
            ("UID 0", Some(Reason::BadSequenceSet)),
            ("UID x", Some(Reason::BadSequenceSet)),
            ("0", Some(Reason::BadSequenceSet)),
            ("NOT", Some(Reason::BadSearchKey)),
            ("OR SEEN", Some(Reason::BadSearchKey)),
            ("(SEEN", Some(Reason::BadSearchKey)),
            ("()", Some(Reason::BadSearchKey)),
            ("KEYWORD \\Seen", Some(Reason::BadFlag)),
            ("HEADER Subject", Some(Reason::Syntax)),
            ("FROM \"unterminated", Some(Reason::BadString)),
            ("", Some(Reason::BadSearchKey)),
        ] {
            assert_eq!(key(s), Err(why), "{s:?}");
        }
    }
}
