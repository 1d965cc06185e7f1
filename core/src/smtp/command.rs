//! The SMTP command grammar of RFC 5321 and its extensions, as borrowed views into one
//! command line. Nothing here allocates: every `&'a str` points into the caller's buffer.

use std::borrow::Cow;

/// One SMTP command line, parsed. The line excludes its terminating CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `EHLO domain-or-literal`.
    Ehlo(&'a str),
    /// `HELO domain`.
    Helo(&'a str),
    /// `MAIL FROM:<reverse-path> [params]`.
    Mail {
        from: ReversePath<'a>,
        params: MailParams<'a>,
    },
    /// `RCPT TO:<forward-path> [params]`.
    Rcpt {
        to: ForwardPath<'a>,
    },
    Data,
    /// `BDAT size [LAST]` (RFC 3030): exactly `size` octets of message follow the line.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    /// `NOOP [string]`: the argument is ignored.
    Noop,
    Quit,
    /// `VRFY string`.
    Vrfy(&'a str),
    /// `HELP [string]`.
    Help(Option<&'a str>),
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        mechanism: AuthMechanism<'a>,
        initial: Option<InitialResponse<'a>>,
    },
}

/// A SASL mechanism name as sent by the client. Only the named ones are implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism<'a> {
    Plain,
    Login,
    /// A syntactically valid mechanism name we do not implement (answered 504 5.5.4).
    Other(&'a str),
}

/// The optional initial response of `AUTH`: `=` stands for an empty response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialResponse<'a> {
    Empty,
    /// Still base64-encoded.
    Base64(&'a str),
}

/// `<>` or a mailbox (source routes, if any, are parsed and dropped as RFC 5321 C allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath<'a> {
    Null,
    Mailbox(Mailbox<'a>),
}

/// `<Postmaster>` without a domain (RFC 5321 4.5.1) or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath<'a> {
    Postmaster,
    Mailbox(Mailbox<'a>),
}

/// `local-part@domain` as written by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mailbox<'a> {
    pub local: LocalPart<'a>,
    pub domain: Domain<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPart<'a> {
    /// A dot-string: `john.smith`.
    Dot(&'a str),
    /// The content of a quoted-string, between the quotes and still backslash-escaped.
    Quoted(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain<'a> {
    /// A domain name (ASCII, or U-labels under SMTPUTF8).
    Name(&'a str),
    /// The content of an address literal between `[` and `]`: `192.0.2.1`, `IPv6:2001:db8::1`.
    Literal(&'a str),
}

/// ESMTP parameters of MAIL FROM that ironpost understands. Unknown ones fail the parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailParams<'a> {
    /// `SIZE=n` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=7BIT|8BITMIME` (RFC 6152).
    pub body: Option<BodyType>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `AUTH=<mailbox>|<>` (RFC 4954 5), still xtext-encoded.
    pub auth: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

impl LocalPart<'_> {
    /// The local part with quoting removed: `"a\"b"` gives `a"b`.
    pub fn unquoted(&self) -> Cow<'_, str> {
        match *self {
            LocalPart::Dot(s) => Cow::Borrowed(s),
            LocalPart::Quoted(s) if !s.contains('\\') => Cow::Borrowed(s),
            LocalPart::Quoted(s) => {
                let mut out = String::with_capacity(s.len());
                let mut chars = s.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            out.push(n);
                        }
                    } else {
                        out.push(c);
                    }
                }
                Cow::Owned(out)
            }
        }
    }
}

impl Domain<'_> {
    pub fn as_str(&self) -> &str {
        match *self {
            Domain::Name(s) | Domain::Literal(s) => s,
        }
    }
}

impl std::fmt::Display for Mailbox<'_> {
    /// The mailbox in the form it would be written back on the wire (quoting kept).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.local {
            LocalPart::Dot(s) => f.write_str(s)?,
            LocalPart::Quoted(s) => write!(f, "\"{s}\"")?,
        }
        match self.domain {
            Domain::Name(d) => write!(f, "@{d}"),
            Domain::Literal(d) => write!(f, "@[{d}]"),
        }
    }
}

/// Why a command line could not be parsed; each maps to one reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The verb is not an SMTP command we know: 500 5.5.1.
    #[error("command not recognized")]
    UnknownCommand,
    /// The verb is known but its arguments are malformed: 501 5.5.4.
    #[error("syntax error in parameters or arguments")]
    Syntax,
    /// The path (address) is malformed: 501 5.1.7 for MAIL, 501 5.1.3 for RCPT.
    #[error("bad address syntax")]
    BadAddress,
    /// An ESMTP parameter is unknown or malformed: 555 5.5.4.
    #[error("parameter not recognized or not implemented")]
    BadParameter,
    /// Non-ASCII octets outside an SMTPUTF8 transaction, or invalid UTF-8: 500 5.5.2.
    #[error("invalid characters in command")]
    BadEncoding,
}

impl Mailbox<'_> {
    /// Whether the mailbox needs SMTPUTF8 to be carried (RFC 6531).
    pub fn is_ascii(&self) -> bool {
        let local = match self.local {
            LocalPart::Dot(s) | LocalPart::Quoted(s) => s,
        };
        local.is_ascii() && self.domain.as_str().is_ascii()
    }
}
