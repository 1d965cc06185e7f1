//! The SMTP client's command lines, parsed back by the server's parser (round trip): an
//! envelope the client accepts goes out as MAIL and RCPT lines that the server reads as the
//! same addresses and parameters, or refuses as a bad address; never as anything else.
//!
//! Input: an `arbitrary` envelope (sender, up to 8 recipients, size, 8-bit and SMTPUTF8
//! flags, from arbitrary strings and from pieces of real addresses) and the server's EHLO
//! offer (PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING). The client is driven with
//! accepting replies until its DATA or BDAT.
//!
//! Invariants: every output is whole CRLF lines without another CR or LF; the greeting gets
//! EHLO with the configured name; `send_message` refuses exactly the addresses with control
//! characters or angle brackets, or over 1,000 octets (and an empty recipient); MAIL parses to the envelope's
//! reverse-path, less any source route (or `BadAddress`), with SIZE, BODY and SMTPUTF8 as offered and asked; each
//! RCPT parses to its recipient (or `BadAddress`), in order, once each.

#![no_main]

use std::sync::Arc;
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use ironpost_core::smtp::client::{ClientConfig, ClientSession, Envelope, TlsMode};
use ironpost_core::smtp::command::{
    BodyType, Domain, ForwardPath, LocalPart, Mailbox, ReversePath,
};
use ironpost_core::smtp::{parse_command, Command, ParseError};
use ironpost_fuzz::trace;
use libfuzzer_sys::fuzz_target;

/// An address: arbitrary text, or one put together from parts real mail uses.
#[derive(Debug)]
struct Addr(String);

impl<'a> Arbitrary<'a> for Addr {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const LOCALS: &[&str] = &[
            "alice",
            "a.b",
            "\"a b\"",
            "\"a\\\"b\"",
            "x+tag",
            "пользователь",
            "",
            ".a",
            "a..b",
            "Postmaster",
        ];
        const DOMAINS: &[&str] = &[
            "example.org",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "пример.рф",
            "-bad.example",
            "a",
            "[tag:x]",
            "",
        ];
        Ok(Addr(match u.int_in_range(0..=3)? {
            0 => String::arbitrary(u)?,
            1 => String::new(),
            2 => "Postmaster".to_string(),
            _ => {
                let l = u.choose(LOCALS)?;
                let d = u.choose(DOMAINS)?;
                let mut s = format!("{l}@{d}");
                if u.ratio(1, 8)? {
                    s.insert_str(0, u.choose(&["@relay.example:", " ", "<", "\r\n"])?);
                }
                s
            }
        }))
    }
}

#[derive(Arbitrary, Debug)]
struct Script {
    from: Addr,
    recipients: Vec<Addr>,
    size: Option<u64>,
    eight_bit: bool,
    smtputf8: bool,
    pipelining: bool,
    offer_size: bool,
    offer_8bit: bool,
    offer_utf8: bool,
    chunking: bool,
}

/// Takes the client's output as lines, checking each is one CRLF-ended line.
fn lines(c: &mut ClientSession) -> Vec<String> {
    let mut out = Vec::new();
    c.take_output(&mut out);
    if trace() && !out.is_empty() {
        eprintln!("C: {:?}", String::from_utf8_lossy(&out));
    }
    let text = String::from_utf8(out).expect("the client writes UTF-8 only");
    let mut v = Vec::new();
    for line in text.split_inclusive('\n') {
        let body = line
            .strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("line without CRLF: {line:?}"));
        assert!(!body.contains(['\r', '\n']), "bare line ending in {line:?}");
        v.push(body.to_string());
    }
    v
}

/// The address as the client had it, from what the server parsed.
fn written(m: &Mailbox<'_>) -> String {
    let local = match m.local {
        LocalPart::Dot(s) => s.to_string(),
        LocalPart::Quoted(s) => format!("\"{s}\""),
    };
    let domain = match m.domain {
        Domain::Name(s) => s.to_string(),
        Domain::Literal(s) => format!("[{s}]"),
    };
    format!("{local}@{domain}")
}

/// The address the server keeps: RFC 5321 has it drop a source route (`@relay:`).
fn without_route(a: &str) -> &str {
    if !a.starts_with('@') {
        return a;
    }
    let mut depth = 0;
    for (i, c) in a.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => return &a[i + 1..],
            _ => {}
        }
    }
    a
}

/// What the client should refuse: RFC 5321 has no room for controls or angle brackets, and
/// the client takes at most 1,000 octets (a path is at most 256).
fn forbidden(a: &str) -> bool {
    a.len() > 1000 || a.chars().any(|c| c.is_control() || c == '<' || c == '>')
}

fuzz_target!(|script: Script| {
    let now = Instant::now();
    let mut cfg = ClientConfig::new("client.example.org");
    cfg.starttls = TlsMode::Disabled;
    let mut c = ClientSession::new(Arc::new(cfg), now);
    c.feed(now, b"220 mx.example.test ESMTP\r\n");
    assert_eq!(lines(&mut c), ["EHLO client.example.org"]);
    let mut ehlo = String::from("250-mx.example.test\r\n");
    for (on, ext) in [
        (script.pipelining, "PIPELINING"),
        (script.offer_size, "SIZE 100000000"),
        (script.offer_8bit, "8BITMIME"),
        (script.offer_utf8, "SMTPUTF8"),
        (script.chunking, "CHUNKING"),
    ] {
        if on {
            ehlo.push_str(&format!("250-{ext}\r\n"));
        }
    }
    ehlo.push_str("250 HELP\r\n");
    c.feed(now, ehlo.as_bytes());
    assert!(lines(&mut c).is_empty());
    assert!(c.is_ready());

    let from = script.from.0;
    let recipients: Vec<String> = script.recipients.into_iter().take(8).map(|a| a.0).collect();
    let envelope = Envelope {
        from: from.clone(),
        recipients: recipients.clone(),
        size: script.size.map(|s| s % 200_000_000),
        eight_bit: script.eight_bit,
        smtputf8: script.smtputf8,
    };
    let size = envelope.size;
    let refused = forbidden(&from)
        || recipients.is_empty()
        || recipients.iter().any(|r| r.is_empty() || forbidden(r));
    let sent = c.send_message(now, envelope);
    assert_eq!(sent.is_err(), refused, "{sent:?}");
    if refused {
        return;
    }
    let utf8 = script.smtputf8 || !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
    let mut out = lines(&mut c);
    if out.is_empty() {
        // Refused before MAIL: too big for the offered SIZE, or SMTPUTF8 not offered.
        assert!(
            (script.offer_size && size.is_some_and(|s| s > 100_000_000))
                || (utf8 && !script.offer_utf8)
        );
        return;
    }

    // MAIL
    let mail = out.remove(0);
    match parse_command(mail.as_bytes()) {
        Ok(Command::Mail { from: path, params }) => {
            match path {
                ReversePath::Null => assert!(from.is_empty(), "{mail:?}"),
                ReversePath::Mailbox(m) => {
                    assert_eq!(written(&m), without_route(&from), "{mail:?}")
                }
            }
            assert_eq!(
                params.size,
                if script.offer_size { size } else { None },
                "{mail:?}"
            );
            let body = (script.eight_bit && script.offer_8bit).then_some(BodyType::EightBitMime);
            assert_eq!(params.body, body, "{mail:?}");
            assert_eq!(params.smtputf8, utf8, "{mail:?}");
            assert_eq!(params.auth, None);
        }
        Err(ParseError::BadAddress) => {}
        other => panic!("MAIL line {mail:?} parsed as {other:?}"),
    }

    // RCPT, one per recipient in order, answered as they come.
    let mut seen = 0;
    let mut guard = 0;
    while seen < recipients.len() {
        guard += 1;
        assert!(guard < 64, "the client stopped before its RCPTs: {out:?}");
        if out.is_empty() {
            c.feed(now, b"250 2.1.0 Ok\r\n");
            out = lines(&mut c);
            continue;
        }
        let line = out.remove(0);
        if line == "DATA" || line.starts_with("BDAT") {
            panic!("{line:?} before all RCPTs");
        }
        match parse_command(line.as_bytes()) {
            Ok(Command::Rcpt { to }) => match to {
                ForwardPath::Postmaster => {
                    assert!(
                        recipients[seen].eq_ignore_ascii_case("postmaster"),
                        "{line:?}"
                    )
                }
                ForwardPath::Mailbox(m) => {
                    assert_eq!(written(&m), without_route(&recipients[seen]), "{line:?}")
                }
            },
            Err(ParseError::BadAddress) => {}
            other => panic!("RCPT line {line:?} parsed as {other:?}"),
        }
        seen += 1;
    }
    assert!(
        out.iter().all(|l| l == "DATA" || l.starts_with("BDAT")),
        "more than MAIL, the RCPTs and DATA: {out:?}"
    );
});
