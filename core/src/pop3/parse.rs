//! The POP3 command grammar: RFC 1939 commands, CAPA (RFC 2449), STLS (RFC 2595) and
//! AUTH (RFC 5034), and the client's answer to an AUTH challenge.
//!
//! The parser looks at the unconsumed input and never needs more than one line of it. It
//! keeps no state between calls, so every split of the input behaves the same. Every string
//! in a [`Command`] borrows from the input.
//!
//! ```text
//! parse_command(&buf, &limits) ->
//!   Ok((n, command))           drop n octets (the line and its end), run the command
//!   Err(Incomplete)            no line end yet: wait for more input
//!   Err(Bad { consumed, reason })
//!                              answer "-ERR <reason>", drop consumed octets (the line)
//!   Err(TooLong)               no line end within the limit: answer -ERR, then discard input
//!                              through the next LF, however long that takes
//! ```
//!
//! Lexical notes: lines end with CRLF or a bare LF. Keywords are case-insensitive. Arguments
//! are separated by one or more spaces; trailing spaces are ignored, except in PASS, whose
//! argument is the rest of the line as sent (RFC 1939 7: a password may contain spaces).
//! Message numbers are decimal and fit in 32 bits; whether one names a message is the
//! session's business (0 parses, and is answered "no such message").

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while1};
use nom::character::complete::{digit1, space0, space1};
use nom::combinator::{all_consuming, opt};
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// Bounds on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, CRLF included. RFC 2449 4: 255 octets.
    pub max_line: usize,
    /// Longest line answering an AUTH challenge, CRLF included (RFC 5034 4 lifts the 255
    /// octet limit for these).
    pub max_auth_line: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_line: 255,
        max_auth_line: 4096,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// One client command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `USER name`
    User(&'a str),
    /// `PASS string`: the rest of the line, spaces included.
    Pass(&'a str),
    /// `APOP name digest` (parsed so it can be refused politely).
    Apop {
        name: &'a str,
        digest: &'a str,
    },
    /// `AUTH` (list mechanisms), `AUTH mechanism`, or `AUTH mechanism initial-response`.
    Auth {
        mechanism: Option<&'a str>,
        /// Base64 as sent; `=` is an empty response (RFC 5034 4).
        initial: Option<&'a str>,
    },
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    Top {
        msg: u32,
        lines: u32,
    },
    Uidl(Option<u32>),
    Capa,
    Stls,
}

impl Command<'_> {
    /// The keyword, upper case.
    pub fn name(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } => "AUTH",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top { .. } => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
        }
    }
}

/// The client's line after an AUTH challenge (`+ ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResponse<'a> {
    /// `*`: the client gives up (RFC 5034 4).
    Cancel,
    /// Base64 as sent; empty or `=` for an empty response.
    Response(&'a str),
}

/// Why the input did not yield a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The line has not ended yet.
    Incomplete,
    /// A complete line that is malformed: answer `-ERR <reason>` and drop `consumed` octets.
    Bad { consumed: usize, reason: Reason },
    /// No line end within the limit: answer -ERR and discard input through the next LF.
    TooLong,
}

/// Why a line is malformed: the text of the -ERR response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("Empty command line")]
    EmptyLine,
    #[error("Unknown command")]
    UnknownCommand,
    #[error("Missing argument")]
    MissingArgument,
    #[error("Unexpected argument")]
    UnexpectedArgument,
    #[error("Invalid message number")]
    InvalidNumber,
    #[error("Invalid argument")]
    InvalidArgument,
    #[error("Command line too long")]
    LineTooLong,
}

/// The next complete line: (octets through its LF, the line without CR LF), or the error.
fn line(input: &[u8], max: usize) -> Result<(usize, &[u8]), ParseError> {
    match input.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let consumed = i + 1;
            let text = &input[..i];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if consumed > max {
                return Err(ParseError::Bad {
                    consumed,
                    reason: Reason::LineTooLong,
                });
            }
            Ok((consumed, text))
        }
        // Even a LF arriving next would make the line longer than the limit.
        None if input.len() >= max => Err(ParseError::TooLong),
        None => Err(ParseError::Incomplete),
    }
}

type In<'a> = &'a [u8];
type PResult<'a, O> = IResult<In<'a>, O, ()>;

/// An argument: one or more visible characters.
fn arg(i: In<'_>) -> PResult<'_, &str> {
    take_while1(|b: u8| b.is_ascii_graphic() || b >= 0x80)
        .map_res(std::str::from_utf8)
        .parse(i)
}

/// A number in 32 bits.
fn number(i: In<'_>) -> PResult<'_, u32> {
    digit1
        .map_res(|d: In<'_>| {
            // Leading zeros are fine; the value must fit.
            std::str::from_utf8(d)
                .map_err(|_| ())
                .and_then(|s| s.parse::<u32>().map_err(|_| ()))
        })
        .parse(i)
}

/// `SP <p>` then optional trailing spaces, to the end of the line.
fn only<'a, O>(
    p: impl Parser<In<'a>, Output = O, Error = ()>,
) -> impl Parser<In<'a>, Output = O, Error = ()> {
    all_consuming(preceded(space1, p).and(space0).map(|(o, _)| o))
}

/// The keyword at the start of a line, and the rest.
fn keyword(text: &[u8]) -> (&[u8], &[u8]) {
    let n = text
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(text.len());
    text.split_at(n)
}

/// What follows a keyword that takes no argument.
fn no_args<'a>(rest: &[u8], cmd: Command<'a>) -> Result<Command<'a>, Reason> {
    if rest.iter().all(|&b| b == b' ') {
        Ok(cmd)
    } else {
        Err(Reason::UnexpectedArgument)
    }
}

/// An optional message number.
fn opt_number(rest: &[u8]) -> Result<Option<u32>, Reason> {
    if rest.iter().all(|&b| b == b' ') {
        return Ok(None);
    }
    only(number)
        .parse(rest)
        .map(|(_, n)| Some(n))
        .map_err(|_| number_reason(rest))
}

/// A required message number.
fn one_number(rest: &[u8]) -> Result<u32, Reason> {
    opt_number(rest)?.ok_or(Reason::MissingArgument)
}

/// Why a message-number argument did not parse.
fn number_reason(rest: &[u8]) -> Reason {
    let words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty()).count();
    if words > 1 {
        Reason::UnexpectedArgument
    } else {
        Reason::InvalidNumber
    }
}

fn require_arg(rest: &[u8]) -> Result<&[u8], Reason> {
    if rest.iter().all(|&b| b == b' ') {
        Err(Reason::MissingArgument)
    } else {
        Ok(rest)
    }
}

fn command_of(text: &[u8]) -> Result<Command<'_>, Reason> {
    if text.iter().all(|&b| b == b' ' || b == b'\t') {
        return Err(Reason::EmptyLine);
    }
    let (word, rest) = keyword(text);
    if !rest.is_empty() && rest[0] != b' ' {
        return Err(Reason::UnknownCommand);
    }
    let mut upper = [0u8; 4];
    if word.len() < 3 || word.len() > 4 {
        return Err(Reason::UnknownCommand);
    }
    for (u, b) in upper.iter_mut().zip(word) {
        *u = b.to_ascii_uppercase();
    }
    let kw = &upper[..word.len()];
    let bad = |_| Reason::InvalidArgument;
    Ok(match kw {
        b"USER" => {
            let (_, name) = only(arg).parse(require_arg(rest)?).map_err(bad)?;
            Command::User(name)
        }
        b"PASS" => {
            // The whole rest of the line after one space, spaces and all.
            let pass = rest.strip_prefix(b" ").ok_or(Reason::MissingArgument)?;
            if pass.is_empty() {
                return Err(Reason::MissingArgument);
            }
            if pass.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
                return Err(Reason::InvalidArgument);
            }
            Command::Pass(std::str::from_utf8(pass).map_err(|_| Reason::InvalidArgument)?)
        }
        b"APOP" => {
            let (_, (name, digest)) = only((arg, preceded(space1, arg)))
                .parse(require_arg(rest)?)
                .map_err(bad)?;
            Command::Apop { name, digest }
        }
        b"AUTH" => {
            if rest.iter().all(|&b| b == b' ') {
                Command::Auth {
                    mechanism: None,
                    initial: None,
                }
            } else {
                let (_, (mechanism, initial)) = only((arg, opt(preceded(space1, arg))))
                    .parse(rest)
                    .map_err(bad)?;
                Command::Auth {
                    mechanism: Some(mechanism),
                    initial,
                }
            }
        }
        b"STAT" => no_args(rest, Command::Stat)?,
        b"LIST" => Command::List(opt_number(rest)?),
        b"RETR" => Command::Retr(one_number(rest)?),
        b"DELE" => Command::Dele(one_number(rest)?),
        b"NOOP" => no_args(rest, Command::Noop)?,
        b"RSET" => no_args(rest, Command::Rset)?,
        b"QUIT" => no_args(rest, Command::Quit)?,
        b"TOP" => {
            let rest = require_arg(rest)?;
            let (_, (msg, lines)) = only((number, preceded(space1, number)))
                .parse(rest)
                .map_err(|_| {
                    let words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty()).count();
                    match words {
                        0 | 1 => Reason::MissingArgument,
                        2 => Reason::InvalidNumber,
                        _ => Reason::UnexpectedArgument,
                    }
                })?;
            Command::Top { msg, lines }
        }
        b"UIDL" => Command::Uidl(opt_number(rest)?),
        b"CAPA" => no_args(rest, Command::Capa)?,
        b"STLS" => no_args(rest, Command::Stls)?,
        _ => return Err(Reason::UnknownCommand),
    })
}

/// Parses one command line from the start of `input`. See the module docs for the protocol.
pub fn parse_command<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(usize, Command<'a>), ParseError> {
    let (consumed, text) = line(input, limits.max_line)?;
    command_of(text)
        .map(|c| (consumed, c))
        .map_err(|reason| ParseError::Bad { consumed, reason })
}

/// Parses the client's answer to an AUTH challenge: base64, empty, `=`, or `*`.
pub fn parse_auth_response<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(usize, AuthResponse<'a>), ParseError> {
    let (consumed, text) = line(input, limits.max_auth_line)?;
    let token: PResult<'_, &[u8]> = alt((
        tag(&b"*"[..]),
        take_while1(|b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='),
    ))
    .parse(text);
    let resp = match token {
        _ if text.is_empty() => Some(AuthResponse::Response("")),
        Ok((rest, tok)) if rest.iter().all(|&b| b == b' ') => Some(if tok == b"*" {
            AuthResponse::Cancel
        } else {
            // Only ASCII was taken.
            AuthResponse::Response(std::str::from_utf8(tok).unwrap_or_default())
        }),
        _ => None,
    };
    resp.map(|r| (consumed, r)).ok_or(ParseError::Bad {
        consumed,
        reason: Reason::InvalidArgument,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<(usize, Command<'_>), ParseError> {
        parse_command(s.as_bytes(), &Limits::DEFAULT)
    }

    #[test]
    fn basic() {
        assert_eq!(p("STAT\r\n"), Ok((6, Command::Stat)));
        assert_eq!(p("top 1 10\n"), Ok((9, Command::Top { msg: 1, lines: 10 })));
        assert_eq!(p("PASS a b \r\n").unwrap().1, Command::Pass("a b "));
        assert_eq!(p("STAT"), Err(ParseError::Incomplete));
    }
}
