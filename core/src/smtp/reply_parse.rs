//! Parsing SMTP replies as a client reads them (RFC 5321 4.2), with enhanced status codes
//! (RFC 2034, RFC 3463) and the EHLO keywords a client acts on.
//!
//! A reply comes from a server we do not control, so nothing about it is trusted: lines are
//! bounded ([`MAX_LINE`]), a whole reply is bounded ([`MAX_REPLY`]), every line of a
//! multi-line reply must carry the same code, and anything that is not `ddd`, `ddd SP text`
//! or `ddd-text` is an error rather than a guess. Text is kept for logs and bounces only,
//! with control characters replaced so it cannot forge log lines.
//!
//! Each line is parsed in place (nom over the caller's bytes); the only allocation is the
//! text of the finished [`Reply`].

use nom::bytes::complete::{take_while, take_while_m_n};
use nom::character::complete::{char, one_of};
use nom::combinator::{eof, map_res, opt};
use nom::sequence::terminated;
use nom::{IResult, Parser};

use super::reply::{Enhanced, Reply};

/// Longest reply line accepted, CRLF included. RFC 5321 4.5.3.1.5 sets 512; real servers
/// exceed it with long texts or AUTH lists, so there is room, but not without bound.
pub const MAX_LINE: usize = 4096;
/// Longest reply accepted, all lines together: a server cannot make a client buffer more.
pub const MAX_REPLY: usize = 64 * 1024;

/// Why bytes from a server are not an SMTP reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_LINE} octets")]
    LineTooLong,
    #[error("reply longer than {MAX_REPLY} octets")]
    TooLong,
    #[error("malformed reply line")]
    Malformed,
    #[error("lines of a multi-line reply carry different codes")]
    MixedCodes,
    /// [`Reply::parse`] was given less than one whole reply.
    #[error("incomplete reply")]
    Incomplete,
    /// [`Reply::parse`] was given more than one reply.
    #[error("data after the end of the reply")]
    TrailingData,
}

/// One reply line, borrowed from the input, without its line ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    pub code: u16,
    /// `ddd SP` or a bare `ddd`: the reply ends with this line.
    pub last: bool,
    /// What follows the code and separator, enhanced code included.
    pub text: &'a [u8],
}

type PResult<'a, O> = IResult<&'a [u8], O>;

/// A reply code: first digit 2 to 5, then two digits (RFC 5321 4.2: `%x32-35 %x30-35 %x30-39`,
/// with the middle digit taken loosely since some servers use it beyond 5).
fn code(i: &[u8]) -> PResult<'_, u16> {
    (one_of("2345"), one_of("0123456789"), one_of("0123456789"))
        .map(|(a, b, c)| {
            (a as u16 - '0' as u16) * 100 + (b as u16 - '0' as u16) * 10 + (c as u16 - '0' as u16)
        })
        .parse(i)
}

/// Parses one reply line, without its CRLF.
pub fn parse_line(line: &[u8]) -> Result<ReplyLine<'_>, ReplyError> {
    let (rest, code) = code(line).map_err(|_| ReplyError::Malformed)?;
    match rest.split_first() {
        None => Ok(ReplyLine {
            code,
            last: true,
            text: rest,
        }),
        Some((b' ', text)) => Ok(ReplyLine {
            code,
            last: true,
            text,
        }),
        Some((b'-', text)) => Ok(ReplyLine {
            code,
            last: false,
            text,
        }),
        Some(_) => Err(ReplyError::Malformed),
    }
}

/// 1 to 3 digits as a number.
fn number(i: &[u8]) -> PResult<'_, u16> {
    map_res(take_while_m_n(1, 3, |b: u8| b.is_ascii_digit()), |d| {
        // Cannot fail: 1 to 3 ASCII digits.
        std::str::from_utf8(d)
            .map_err(|_| ())
            .and_then(|s| s.parse().map_err(|_| ()))
    })
    .parse(i)
}

/// `class.subject.detail` followed by SP or the end of the line.
fn enhanced(i: &[u8]) -> PResult<'_, Enhanced> {
    (
        one_of("245"),
        char('.'),
        number,
        char('.'),
        terminated(
            number,
            nom::branch::alt((eof, nom::bytes::complete::tag(" "))),
        ),
    )
        .map(|(c, _, s, _, d)| Enhanced(c as u8 - b'0', s, d))
        .parse(i)
}

/// Splits an enhanced status code off the front of a line's text. The code counts only
/// when its class matches the reply's (RFC 3463 2): `250 5.0.0 x` is text, not a code.
pub fn split_enhanced(code: u16, text: &[u8]) -> (Option<Enhanced>, &[u8]) {
    match enhanced(text) {
        Ok((rest, e)) if u16::from(e.0) == code / 100 => (Some(e), rest),
        _ => (None, text),
    }
}

/// Appends reply text for display: invalid UTF-8 replaced, control characters (which
/// could forge log lines or terminal output) turned into `?`.
fn push_text(out: &mut String, text: &[u8]) {
    let s = String::from_utf8_lossy(text);
    out.extend(
        s.chars()
            .map(|c| if c.is_control() && c != '\t' { '?' } else { c }),
    );
}

/// A reply being assembled line by line.
#[derive(Debug)]
struct Partial {
    code: u16,
    enhanced: Option<Enhanced>,
    text: String,
    size: usize,
}

/// Assembles replies from a byte stream that may be split anywhere.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    /// Start of unread input in `buf`.
    pos: usize,
    partial: Option<Partial>,
}

impl ReplyReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes from the server.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 4096 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Drops everything buffered, e.g. cleartext that followed a `220` to STARTTLS.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.partial = None;
    }

    /// Octets received but not yet part of a finished reply.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.partial.as_ref().map_or(0, |p| p.size)
    }

    /// The next complete reply, if one is buffered. After an error the reader is cleared:
    /// a client cannot resynchronise with a server that broke the grammar.
    pub fn next_reply(&mut self) -> Option<Result<Reply, ReplyError>> {
        loop {
            match self.next_line() {
                Ok(None) => return None,
                Ok(Some(reply)) => return Some(Ok(reply)),
                Err(ReplyError::Incomplete) => continue,
                Err(e) => {
                    self.clear();
                    return Some(Err(e));
                }
            }
        }
    }

    /// Consumes one line: `Ok(None)` when no whole line is buffered, `Err(Incomplete)` when
    /// a line was consumed but the reply goes on.
    fn next_line(&mut self) -> Result<Option<Reply>, ReplyError> {
        let rest = &self.buf[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() >= MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        if nl + 1 > MAX_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let line = &rest[..nl];
        // Tolerate a bare LF: the boundary is unambiguous, and only the text is kept.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.pos += nl + 1;
        let line = parse_line(line)?;
        let size = self.partial.as_ref().map_or(0, |p| p.size) + nl + 1;
        if size > MAX_REPLY {
            return Err(ReplyError::TooLong);
        }
        let partial = match self.partial.as_mut() {
            Some(p) if p.code != line.code => return Err(ReplyError::MixedCodes),
            Some(p) => {
                p.text.push('\n');
                let (_, text) = split_enhanced(line.code, line.text);
                push_text(&mut p.text, text);
                p
            }
            None => {
                let (enhanced, text) = split_enhanced(line.code, line.text);
                let mut s = String::with_capacity(text.len());
                push_text(&mut s, text);
                self.partial.insert(Partial {
                    code: line.code,
                    enhanced,
                    text: s,
                    size: 0,
                })
            }
        };
        partial.size = size;
        if !line.last {
            return Err(ReplyError::Incomplete);
        }
        let p = self.partial.take().expect("set above");
        Ok(Some(Reply::new(p.code, p.enhanced, p.text)))
    }
}

/// Parses one whole reply from the start of `input`: `Ok(None)` if more input is needed,
/// else the reply and how many octets it took.
pub fn parse_reply(input: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut r = ReplyReader::new();
    r.push(input);
    match r.next_reply() {
        None => Ok(None),
        Some(Ok(reply)) => Ok(Some((reply, r.pos))),
        Some(Err(e)) => Err(e),
    }
}

/// SASL mechanisms offered in the EHLO `AUTH` line that ironpost's client can use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthMechanisms {
    pub plain: bool,
    pub login: bool,
}

/// What a server offered in its EHLO reply. A HELO-only server offers nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 2920: commands may be sent in batches.
    pub pipelining: bool,
    /// RFC 1870 `SIZE [n]`: `Some(0)` when offered without a fixed limit (as the RFC reads
    /// a missing or zero value), `None` when not offered.
    pub size: Option<u64>,
    /// RFC 6152: `BODY=8BITMIME` is understood.
    pub eight_bit_mime: bool,
    /// RFC 6531: internationalised addresses and headers may be sent.
    pub smtputf8: bool,
    /// RFC 3030: BDAT may replace DATA.
    pub chunking: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 2034: replies carry enhanced status codes.
    pub enhanced_status_codes: bool,
    /// RFC 4954.
    pub auth: AuthMechanisms,
}

impl Extensions {
    /// The server's size limit, if it declared one.
    pub fn size_limit(&self) -> Option<u64> {
        self.size.filter(|&n| n > 0)
    }

    /// Reads the keywords of an EHLO reply (its first line is the server's name). Unknown
    /// keywords and malformed lines are skipped: an extension we cannot read is one we do
    /// not use.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut ext = Extensions::default();
        for line in reply.text.split('\n').skip(1) {
            let Some((keyword, params)) = ehlo_line(line) else {
                continue;
            };
            let mut params = params.split_ascii_whitespace();
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SIZE" => ext.size = Some(params.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "CHUNKING" => ext.chunking = true,
                "STARTTLS" => ext.starttls = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "AUTH" => {
                    for m in params {
                        if m.eq_ignore_ascii_case("PLAIN") {
                            ext.auth.plain = true;
                        } else if m.eq_ignore_ascii_case("LOGIN") {
                            ext.auth.login = true;
                        }
                    }
                }
                _ => {}
            }
        }
        ext
    }
}

/// One EHLO line: `keyword [SP params]` (RFC 5321 4.1.1.1), also accepting the old
/// `AUTH=mech ...` form some servers still send. Borrowed from the reply text.
pub fn ehlo_line(line: &str) -> Option<(&str, &str)> {
    let keyword = |i| -> IResult<&str, &str> {
        nom::combinator::recognize((
            nom::character::complete::satisfy(|c| c.is_ascii_alphanumeric()),
            take_while(|c: char| c.is_ascii_alphanumeric() || c == '-'),
        ))
        .parse(i)
    };
    let (rest, (kw, _)) = (keyword, opt(one_of(" ="))).parse(line).ok()?;
    if !rest.is_empty() && !line[kw.len()..].starts_with([' ', '=']) {
        return None;
    }
    Some((kw, rest.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> Reply {
        Reply::parse(input).unwrap()
    }

    #[test]
    fn line_forms() {
        assert_eq!(
            parse_line(b"250 Ok"),
            Ok(ReplyLine {
                code: 250,
                last: true,
                text: b"Ok"
            })
        );
        assert_eq!(
            parse_line(b"250-mx"),
            Ok(ReplyLine {
                code: 250,
                last: false,
                text: b"mx"
            })
        );
        assert_eq!(
            parse_line(b"354"),
            Ok(ReplyLine {
                code: 354,
                last: true,
                text: b""
            })
        );
        assert_eq!(
            parse_line(b"250-"),
            Ok(ReplyLine {
                code: 250,
                last: false,
                text: b""
            })
        );
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            &b""[..],
            b"25",
            b"2500 x",
            b"25a x",
            b"150 x",
            b"650 x",
            b"abc",
            b"250_x",
            b" 250 x",
            b"HTTP/1.1 400",
        ] {
            assert_eq!(parse_line(bad), Err(ReplyError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let r = one(b"550 5.1.1 <x@y>: Recipient address rejected\r\n");
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced, Some(Enhanced(5, 1, 1)));
        assert_eq!(r.text, "<x@y>: Recipient address rejected");
    }

    #[test]
    fn enhanced_code_of_another_class_is_text() {
        let r = one(b"250 5.0.0 odd\r\n");
        assert_eq!(r.enhanced, None);
        assert_eq!(r.text, "5.0.0 odd");
    }

    #[test]
    fn enhanced_code_needs_separator_and_bounded_numbers() {
        assert_eq!(one(b"250 2.0.0x\r\n").enhanced, None);
        assert_eq!(one(b"250 2.0.1000 x\r\n").enhanced, None);
        assert_eq!(one(b"250 2.0.0\r\n").enhanced, Some(Enhanced(2, 0, 0)));
        assert_eq!(one(b"250 2.0.0\r\n").text, "");
        assert_eq!(
            one(b"452 4.5.3 Too many\r\n").enhanced,
            Some(Enhanced(4, 5, 3))
        );
        assert_eq!(
            one(b"554 5.7.999 Policy\r\n").enhanced,
            Some(Enhanced(5, 7, 999))
        );
    }

    #[test]
    fn multi_line_strips_enhanced_codes_on_each_line() {
        let r = one(b"550-5.7.1 Message rejected\r\n550-5.7.1 see https://x\r\n550 5.7.1 bye\r\n");
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced, Some(Enhanced(5, 7, 1)));
        assert_eq!(r.text, "Message rejected\nsee https://x\nbye");
    }

    #[test]
    fn mixed_codes_are_an_error() {
        assert_eq!(
            Reply::parse(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::MixedCodes)
        );
    }

    #[test]
    fn incomplete_and_trailing() {
        assert_eq!(Reply::parse(b"250-a\r\n"), Err(ReplyError::Incomplete));
        assert_eq!(Reply::parse(b"250 a"), Err(ReplyError::Incomplete));
        assert_eq!(
            Reply::parse(b"250 a\r\n250 b\r\n"),
            Err(ReplyError::TrailingData)
        );
        assert_eq!(
            parse_reply(b"250-a\r\n250 b\r\n354 go\r\n")
                .unwrap()
                .unwrap()
                .1,
            14
        );
        assert_eq!(parse_reply(b"250-a\r\n").unwrap(), None);
    }

    #[test]
    fn bare_lf_is_tolerated() {
        let r = one(b"250-a\n250 b\n");
        assert_eq!(r.text, "a\nb");
    }

    #[test]
    fn control_characters_and_invalid_utf8_are_neutralised() {
        let r = one(b"550 evil\x1b[31m\rtext\xff\r\n");
        assert_eq!(r.text, "evil?[31m?text\u{fffd}");
    }

    #[test]
    fn overlong_line_is_refused_before_its_end() {
        let mut r = ReplyReader::new();
        let mut line = b"250 ".to_vec();
        line.resize(MAX_LINE, b'a');
        r.push(&line);
        assert_eq!(r.next_reply(), Some(Err(ReplyError::LineTooLong)));
        let mut r = ReplyReader::new();
        line.truncate(MAX_LINE - 2);
        line.extend_from_slice(b"\r\n");
        r.push(&line);
        assert!(matches!(r.next_reply(), Some(Ok(_))));
        let mut r = ReplyReader::new();
        line.truncate(MAX_LINE - 2);
        line.extend_from_slice(b"a\r\n");
        r.push(&line);
        assert_eq!(r.next_reply(), Some(Err(ReplyError::LineTooLong)));
    }

    #[test]
    fn overlong_reply_is_refused() {
        let mut r = ReplyReader::new();
        let line = format!("250-{}\r\n", "a".repeat(1000));
        let mut errs = None;
        for _ in 0..100 {
            r.push(line.as_bytes());
            if let Some(res) = r.next_reply() {
                errs = Some(res);
                break;
            }
        }
        assert_eq!(errs, Some(Err(ReplyError::TooLong)));
        assert!(r.buffered() == 0);
    }

    #[test]
    fn reader_handles_any_split() {
        let wire = b"220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n250 2.1.0 Ok\r\n";
        let mut whole = ReplyReader::new();
        whole.push(wire);
        let mut expected = Vec::new();
        while let Some(r) = whole.next_reply() {
            expected.push(r.unwrap());
        }
        assert_eq!(expected.len(), 3);
        for split in 0..wire.len() {
            let mut r = ReplyReader::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                r.push(part);
                while let Some(x) = r.next_reply() {
                    got.push(x.unwrap());
                }
            }
            assert_eq!(got, expected, "split at {split}");
        }
    }

    #[test]
    fn ehlo_keywords() {
        let r = one(b"250-mx.example.com Hello there\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n");
        let e = Extensions::from_ehlo(&r);
        assert_eq!(
            e,
            Extensions {
                pipelining: true,
                size: Some(10_240_000),
                eight_bit_mime: true,
                smtputf8: true,
                chunking: true,
                starttls: true,
                enhanced_status_codes: true,
                auth: AuthMechanisms {
                    plain: true,
                    login: true
                },
            }
        );
        assert_eq!(e.size_limit(), Some(10_240_000));
    }

    #[test]
    fn ehlo_keywords_case_and_odd_forms() {
        let r = one(b"250-mx\r\n250-pipelining\r\n250-SIZE\r\n250-auth=login\r\n250-!!bogus\r\n250-STARTTLSX\r\n250 size-x\r\n");
        let e = Extensions::from_ehlo(&r);
        assert!(e.pipelining);
        assert_eq!(e.size, Some(0));
        assert_eq!(e.size_limit(), None);
        assert!(e.auth.login && !e.auth.plain);
        assert!(!e.starttls);
        // The first line is the server's name, never a keyword.
        let r = one(b"250-PIPELINING\r\n250 8BITMIME\r\n");
        let e = Extensions::from_ehlo(&r);
        assert!(!e.pipelining && e.eight_bit_mime);
        // A HELO-style single line offers nothing.
        assert_eq!(
            Extensions::from_ehlo(&one(b"250 mx\r\n")),
            Extensions::default()
        );
    }

    #[test]
    fn ehlo_line_forms() {
        assert_eq!(ehlo_line("SIZE 100"), Some(("SIZE", "100")));
        assert_eq!(ehlo_line("AUTH=PLAIN LOGIN"), Some(("AUTH", "PLAIN LOGIN")));
        assert_eq!(ehlo_line("X-EXT"), Some(("X-EXT", "")));
        assert_eq!(ehlo_line("X:EXT"), None);
        assert_eq!(ehlo_line(""), None);
    }
}
