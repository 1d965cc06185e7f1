//! nom parser for SMTP command lines (RFC 5321 4.1, with SIZE, 8BITMIME, SMTPUTF8,
//! CHUNKING and AUTH).
//!
//! The line is checked to be UTF-8 once, up front; everything after that is nom over `&str`,
//! so every string in the resulting [`Command`] is a slice of the caller's buffer and the
//! parse path never allocates.
//!
//! Errors are classified by the stage that fails: the verb ([`ParseError::UnknownCommand`]),
//! the arguments ([`ParseError::Syntax`]), a path ([`ParseError::BadAddress`]) or an ESMTP
//! parameter ([`ParseError::BadParameter`]). Invalid UTF-8 anywhere, and non-ASCII text
//! where only ASCII may appear (the verb, free-text and numeric arguments), give
//! [`ParseError::BadEncoding`]. Non-ASCII is always accepted inside addresses and the
//! EHLO/HELO domain; whether SMTPUTF8 was negotiated is for the session to check.

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_till, take_while, take_while1, take_while_m_n};
use nom::character::complete::{char, digit1, satisfy};
use nom::combinator::{all_consuming, map, not, opt, recognize, value, verify};
use nom::multi::many0_count;
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};

use super::command::{
    AuthMechanism, BodyType, Command, Domain, ForwardPath, InitialResponse, LocalPart, MailParams,
    Mailbox, ParseError, ReversePath,
};

/// Internal nom result over an already UTF-8-checked line.
type PResult<'a, O> = IResult<&'a str, O>;
/// The failure of a parser run to completion, for `map_err`.
type Failure<'a> = nom::Err<nom::error::Error<&'a str>>;

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
    let line = core::str::from_utf8(line).map_err(|_| ParseError::BadEncoding)?;
    let line = line.trim_end_matches([' ', '\t']);

    let (rest, verb) = match verb(line) {
        Ok(parsed) => parsed,
        Err(_) => {
            let (_, token) = take_till::<_, _, nom::error::Error<&str>>(|c| c == ' ')
                .parse(line)
                .map_err(|_| ParseError::UnknownCommand)?;
            return Err(if token.is_ascii() {
                ParseError::UnknownCommand
            } else {
                ParseError::BadEncoding
            });
        }
    };
    // `verb` only succeeds when followed by the end of the line or one SP.
    let arg = rest.strip_prefix(' ');
    if arg.is_some_and(|a| a.starts_with([' ', '\t'])) {
        // RFC 5321 puts exactly one SP between the verb and its argument.
        return Err(ParseError::Syntax);
    }

    match verb {
        Verb::Ehlo => helo_argument(arg).map(Command::Ehlo),
        Verb::Helo => helo_argument(arg).map(Command::Helo),
        Verb::Mail => mail(arg),
        Verb::Rcpt => rcpt(arg),
        Verb::Data => no_argument(arg, Command::Data),
        Verb::Bdat => bdat(arg),
        Verb::Rset => no_argument(arg, Command::Rset),
        Verb::Noop => match arg {
            None => Ok(Command::Noop),
            Some(a) => free_text(a).map(|_| Command::Noop),
        },
        Verb::Quit => no_argument(arg, Command::Quit),
        Verb::Vrfy => free_text(arg.ok_or(ParseError::Syntax)?).map(Command::Vrfy),
        Verb::Help => arg.map(free_text).transpose().map(Command::Help),
        Verb::StartTls => no_argument(arg, Command::StartTls),
        Verb::Auth => auth(arg),
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

/// A known verb, case-insensitive, followed by SP or the end of the line (so `DATAX` is
/// not `DATA`).
fn verb(i: &str) -> PResult<'_, Verb> {
    terminated(
        alt((
            value(Verb::Ehlo, tag_no_case("EHLO")),
            value(Verb::Helo, tag_no_case("HELO")),
            value(Verb::Mail, tag_no_case("MAIL")),
            value(Verb::Rcpt, tag_no_case("RCPT")),
            value(Verb::Data, tag_no_case("DATA")),
            value(Verb::Bdat, tag_no_case("BDAT")),
            value(Verb::Rset, tag_no_case("RSET")),
            value(Verb::Noop, tag_no_case("NOOP")),
            value(Verb::Quit, tag_no_case("QUIT")),
            value(Verb::Vrfy, tag_no_case("VRFY")),
            value(Verb::Help, tag_no_case("HELP")),
            value(Verb::StartTls, tag_no_case("STARTTLS")),
            value(Verb::Auth, tag_no_case("AUTH")),
        )),
        not(satisfy(|c| c != ' ')),
    )
    .parse(i)
}

// ---------------------------------------------------------------------------------------
// Commands

/// DATA, RSET, QUIT and STARTTLS take nothing.
fn no_argument<'a>(arg: Option<&str>, cmd: Command<'a>) -> Result<Command<'a>, ParseError> {
    match arg {
        None => Ok(cmd),
        Some(a) if !a.is_ascii() => Err(ParseError::BadEncoding),
        Some(_) => Err(ParseError::Syntax),
    }
}

/// The argument of NOOP, HELP and VRFY: printable ASCII, SP and HTAB.
fn free_text(a: &str) -> Result<&str, ParseError> {
    if !a.is_ascii() {
        return Err(ParseError::BadEncoding);
    }
    all_consuming(take_while1(|c: char| c == '\t' || (' '..='~').contains(&c)))
        .parse(a)
        .map(|(_, s)| s)
        .map_err(|_: Failure| ParseError::Syntax)
}

/// `EHLO`/`HELO` argument: a domain or an address literal, returned as written (brackets
/// included for a literal).
fn helo_argument(arg: Option<&str>) -> Result<&str, ParseError> {
    let a = arg.ok_or(ParseError::Syntax)?;
    all_consuming(alt((recognize(address_literal), domain_name)))
        .parse(a)
        .map(|_| a)
        .map_err(|_| ParseError::Syntax)
}

/// `MAIL FROM:<reverse-path> [SP Mail-parameters]`.
fn mail(arg: Option<&str>) -> Result<Command<'_>, ParseError> {
    let a = arg.ok_or(ParseError::Syntax)?;
    let (rest, ()) = path_keyword("FROM:", a)?;
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
    let (rest, ()) = path_keyword("TO:", a)?;
    let (rest, to) = forward_path(rest).map_err(|_| ParseError::BadAddress)?;
    match after_path(rest)? {
        None => Ok(Command::Rcpt { to }),
        Some(_) => Err(ParseError::BadParameter),
    }
}

/// `FROM:` or `TO:`, case-insensitive, then (tolerated, as Postfix does) spaces before `<`.
fn path_keyword<'a>(keyword: &'static str, a: &'a str) -> Result<(&'a str, ()), ParseError> {
    value((), (tag_no_case(keyword), take_while(|c| c == ' ')))
        .parse(a)
        .map_err(|_: Failure| ParseError::Syntax)
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
    let (_, (digits, last)) =
        all_consuming((digit1, opt(preceded(char(' '), tag_no_case("LAST")))))
            .parse(a)
            .map_err(|_: Failure| ParseError::Syntax)?;
    let size = digits.parse::<u64>().map_err(|_| ParseError::Syntax)?;
    Ok(Command::Bdat {
        size,
        last: last.is_some(),
    })
}

/// `AUTH mechanism [SP initial-response]` (RFC 4954 4).
fn auth(arg: Option<&str>) -> Result<Command<'_>, ParseError> {
    let a = arg.ok_or(ParseError::Syntax)?;
    if !a.is_ascii() {
        return Err(ParseError::BadEncoding);
    }
    let mechanism = take_while_m_n(1, MAX_MECHANISM, |c: char| {
        c.is_ascii_alphanumeric() || c == '-' || c == '_'
    });
    let initial = alt((
        value(InitialResponse::Empty, char('=')),
        map(base64, InitialResponse::Base64),
    ));
    let (_, (mechanism, initial)) = all_consuming((mechanism, opt(preceded(char(' '), initial))))
        .parse(a)
        .map_err(|_| ParseError::Syntax)?;
    let mechanism = if mechanism.eq_ignore_ascii_case("PLAIN") {
        AuthMechanism::Plain
    } else if mechanism.eq_ignore_ascii_case("LOGIN") {
        AuthMechanism::Login
    } else {
        AuthMechanism::Other(mechanism)
    };
    Ok(Command::Auth { mechanism, initial })
}

/// Base64 text (RFC 4648 alphabet) with at most two `=` of padding; not decoded here.
fn base64(i: &str) -> PResult<'_, &str> {
    recognize((
        take_while1(|c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/'),
        take_while_m_n(0, 2, |c| c == '='),
    ))
    .parse(i)
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
    let keyword = recognize((
        satisfy(|c| c.is_ascii_alphanumeric()),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '-'),
    ));
    let esmtp_value = take_while1(|c: char| c > ' ' && c != '=' && c != '\x7f');
    (keyword, opt(preceded(char('='), esmtp_value))).parse(i)
}

fn apply_param<'a>(
    params: &mut MailParams<'a>,
    keyword: &str,
    val: Option<&'a str>,
) -> Result<(), ParseError> {
    let bad = ParseError::BadParameter;
    if keyword.eq_ignore_ascii_case("SIZE") {
        let v = val.ok_or(bad)?;
        if params.size.is_some() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad);
        }
        params.size = Some(v.parse().map_err(|_| bad)?);
    } else if keyword.eq_ignore_ascii_case("BODY") {
        let v = val.ok_or(bad)?;
        if params.body.is_some() {
            return Err(bad);
        }
        params.body = Some(if v.eq_ignore_ascii_case("7BIT") {
            BodyType::SevenBit
        } else if v.eq_ignore_ascii_case("8BITMIME") {
            BodyType::EightBitMime
        } else {
            return Err(bad);
        });
    } else if keyword.eq_ignore_ascii_case("SMTPUTF8") {
        if val.is_some() || params.smtputf8 {
            return Err(bad);
        }
        params.smtputf8 = true;
    } else if keyword.eq_ignore_ascii_case("AUTH") {
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
    let xchar = satisfy(|c| ('!'..='~').contains(&c) && c != '+' && c != '=');
    let hexchar = (
        char('+'),
        satisfy(|c| c.is_ascii_hexdigit()),
        satisfy(|c| c.is_ascii_hexdigit()),
    );
    all_consuming::<_, nom::error::Error<&str>, _>(many0_count(alt((
        value((), xchar),
        value((), hexchar),
    ))))
    .parse(v)
    .is_ok()
}

// ---------------------------------------------------------------------------------------
// Paths and mailboxes

/// `"<>"` or a `Path`.
fn reverse_path(i: &str) -> PResult<'_, ReversePath<'_>> {
    alt((
        value(ReversePath::Null, tag("<>")),
        map(path, ReversePath::Mailbox),
    ))
    .parse(i)
}

/// `"<Postmaster>"` (any case, no domain) or a `Path`.
fn forward_path(i: &str) -> PResult<'_, ForwardPath<'_>> {
    alt((
        value(
            ForwardPath::Postmaster,
            (char('<'), tag_no_case("Postmaster"), char('>')),
        ),
        map(path, ForwardPath::Mailbox),
    ))
    .parse(i)
}

/// `"<" [ A-d-l ":" ] Mailbox ">"`; a source route is parsed and dropped.
fn path(i: &str) -> PResult<'_, Mailbox<'_>> {
    delimited(char('<'), preceded(opt(source_route), mailbox), char('>')).parse(i)
}

/// `At-domain *( "," At-domain ) ":"`. Address literals are accepted in a route too.
fn source_route(i: &str) -> PResult<'_, ()> {
    let at_domain = || (char('@'), domain);
    value(
        (),
        (
            at_domain(),
            many0_count((char(','), at_domain())),
            char(':'),
        ),
    )
    .parse(i)
}

/// `Local-part "@" ( Domain / address-literal )`.
fn mailbox(i: &str) -> PResult<'_, Mailbox<'_>> {
    map((local_part, char('@'), domain), |(local, _, domain)| {
        Mailbox { local, domain }
    })
    .parse(i)
}

/// `Dot-string / Quoted-string`, at most 64 octets as written.
fn local_part(i: &str) -> PResult<'_, LocalPart<'_>> {
    let (rest, local) = alt((
        map(quoted_string, LocalPart::Quoted),
        map(dot_string, LocalPart::Dot),
    ))
    .parse(i)?;
    if i.len() - rest.len() > MAX_LOCAL_PART {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::TooLarge,
        )));
    }
    Ok((rest, local))
}

/// `Atom *("." Atom)`.
fn dot_string(i: &str) -> PResult<'_, &str> {
    let atom = || take_while1(is_atext);
    recognize((atom(), many0_count((char('.'), atom())))).parse(i)
}

/// `DQUOTE *QcontentSMTP DQUOTE`, giving the content between the quotes, escapes kept.
fn quoted_string(i: &str) -> PResult<'_, &str> {
    let quoted_pair = recognize((char('\\'), satisfy(|c| (' '..='~').contains(&c))));
    let content = recognize(many0_count(alt((take_while1(is_qtext), quoted_pair))));
    delimited(char('"'), content, char('"')).parse(i)
}

/// RFC 5322 `atext`, plus any non-ASCII character (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// `qtextSMTP`: SP and printable ASCII but `"` and `\`, plus any non-ASCII character.
fn is_qtext(c: char) -> bool {
    (matches!(c, ' '..='~') && c != '"' && c != '\\') || !c.is_ascii()
}

/// `Domain / address-literal`.
fn domain(i: &str) -> PResult<'_, Domain<'_>> {
    alt((
        map(address_literal, Domain::Literal),
        map(domain_name, Domain::Name),
    ))
    .parse(i)
}

/// `sub-domain *("." sub-domain)`, at most 255 octets.
fn domain_name(i: &str) -> PResult<'_, &str> {
    verify(
        recognize((sub_domain, many0_count((char('.'), sub_domain)))),
        |d: &str| d.len() <= MAX_DOMAIN,
    )
    .parse(i)
}

/// `Let-dig [Ldh-str]`, where any non-ASCII character counts as a letter (U-labels).
fn sub_domain(i: &str) -> PResult<'_, &str> {
    verify(take_while1(is_ldh), |l: &str| {
        !l.starts_with('-') && !l.ends_with('-') && (l.len() <= MAX_LABEL || !l.is_ascii())
    })
    .parse(i)
}

fn is_ldh(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii()
}

/// `"[" ( IPv4 / "IPv6:" IPv6 / tag ":" 1*dcontent ) "]"`, giving the content between the
/// brackets.
fn address_literal(i: &str) -> PResult<'_, &str> {
    let dcontent = |c: char| matches!(c, '!'..='Z' | '^'..='~');
    delimited(
        char('['),
        verify(take_while1(dcontent), |s: &str| {
            s.len() + 2 <= MAX_DOMAIN && is_literal_content(s)
        }),
        char(']'),
    )
    .parse(i)
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
    let snum = || {
        verify(
            take_while_m_n(1, 3, |c: char| c.is_ascii_digit()),
            |n: &str| n.parse::<u16>().is_ok_and(|v| v <= 255),
        )
    };
    all_consuming::<_, nom::error::Error<&str>, _>((
        snum(),
        char('.'),
        snum(),
        char('.'),
        snum(),
        char('.'),
        snum(),
    ))
    .parse(s)
    .is_ok()
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
