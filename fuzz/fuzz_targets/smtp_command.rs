//! `parse_command` on arbitrary bytes (one command line, without its CRLF).
//!
//! Invariants: no panic; on success every string in the command is a slice of the input
//! (zero-copy), holds no CR, LF or NUL, and respects the RFC 5321 length limits; parsing is
//! deterministic; the verb is case-insensitive.

#![no_main]

use ironpost_core::smtp::command::{
    AuthMechanism, Command, Domain, ForwardPath, InitialResponse, LocalPart, Mailbox, ReversePath,
};
use ironpost_core::smtp::parse_command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let first = parse_command(line);
    assert_eq!(first, parse_command(line), "parse is not deterministic");

    if let Ok(cmd) = &first {
        for s in strings(cmd) {
            let range = line.as_ptr_range();
            let sr = s.as_bytes().as_ptr_range();
            assert!(
                range.start <= sr.start && sr.end <= range.end,
                "{s:?} does not point into the input"
            );
            assert!(
                !s.contains(['\r', '\n', '\0']),
                "{s:?} carries a line ending or NUL"
            );
        }
        check_limits(cmd);
    }

    // RFC 5321 2.4: verbs are case-insensitive. Flipping the case of the verb (the bytes
    // before the first space) must not change the outcome.
    let verb_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let mut flipped = line.to_vec();
    for b in &mut flipped[..verb_len] {
        if b.is_ascii_lowercase() {
            b.make_ascii_uppercase();
        } else {
            b.make_ascii_lowercase();
        }
    }
    assert_eq!(
        first,
        parse_command(&flipped),
        "verb case changes the parse of {:?}",
        String::from_utf8_lossy(line)
    );
});

fn mailbox_strings<'a>(m: &Mailbox<'a>, out: &mut Vec<&'a str>) {
    match m.local {
        LocalPart::Dot(s) | LocalPart::Quoted(s) => out.push(s),
    }
    match m.domain {
        Domain::Name(s) | Domain::Literal(s) => out.push(s),
    }
}

/// Every borrowed string of a command.
fn strings<'a>(cmd: &Command<'a>) -> Vec<&'a str> {
    let mut v = Vec::new();
    match cmd {
        Command::Ehlo(s) | Command::Helo(s) | Command::Vrfy(s) => v.push(*s),
        Command::Help(h) => v.extend(h.iter().copied()),
        Command::Mail { from, params } => {
            if let ReversePath::Mailbox(m) = from {
                mailbox_strings(m, &mut v);
            }
            v.extend(params.auth);
        }
        Command::Rcpt { to } => {
            if let ForwardPath::Mailbox(m) = to {
                mailbox_strings(m, &mut v);
            }
        }
        Command::Auth { mechanism, initial } => {
            if let AuthMechanism::Other(s) = mechanism {
                v.push(s);
            }
            if let Some(InitialResponse::Base64(s)) = initial {
                v.push(s);
            }
        }
        Command::Data
        | Command::Bdat { .. }
        | Command::Rset
        | Command::Noop
        | Command::Quit
        | Command::StartTls => {}
    }
    v
}

fn check_mailbox(m: &Mailbox<'_>) {
    // RFC 5321 4.5.3.1: 64 octets of local part (as written, quotes included), 255 of domain.
    let local_len = match m.local {
        LocalPart::Dot(s) => s.len(),
        LocalPart::Quoted(s) => s.len() + 2,
    };
    assert!(local_len <= 64, "local part too long: {m}");
    assert!(m.domain.as_str().len() <= 255, "domain too long: {m}");
    assert!(!m.domain.as_str().is_empty(), "empty domain: {m}");
}

fn check_limits(cmd: &Command<'_>) {
    match cmd {
        Command::Mail {
            from: ReversePath::Mailbox(m),
            ..
        }
        | Command::Rcpt {
            to: ForwardPath::Mailbox(m),
        } => check_mailbox(m),
        Command::Ehlo(s) | Command::Helo(s) => assert!(!s.is_empty()),
        Command::Auth {
            mechanism: AuthMechanism::Other(s),
            ..
        } => assert!((1..=20).contains(&s.len())),
        _ => {}
    }
}
