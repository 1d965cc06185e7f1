//! `pop3::parse_command` and `pop3::parse_auth_response` on arbitrary bytes, walked as a
//! session walks its input buffer (each result's `consumed` dropped, TooLong discarding
//! through the next LF).
//!
//! Input: `[L][stream]`, L picking small line limits (0 = the defaults) so that the
//! TooLong path is reached with short inputs.
//!
//! Invariants: no panic; deterministic; every string a command or AUTH response borrows
//! lies inside the input and carries no CR, LF or NUL; every `consumed` is within the input,
//! non-zero, and ends just after an LF; a result other than `Incomplete` does not change
//! when more input arrives.

#![no_main]

use ironpost_core::pop3::{
    parse_auth_response, parse_command, AuthResponse, Command, Limits, ParseError,
};
use libfuzzer_sys::fuzz_target;

fn strings<'a>(c: &Command<'a>) -> Vec<&'a str> {
    match *c {
        Command::User(s) | Command::Pass(s) => vec![s],
        Command::Apop { name, digest } => vec![name, digest],
        Command::Auth { mechanism, initial } => mechanism.into_iter().chain(initial).collect(),
        _ => Vec::new(),
    }
}

fn inside(input: &[u8], s: &str) {
    if s.is_empty() {
        // An empty AUTH response is a static "".
        return;
    }
    let range = input.as_ptr_range();
    let sr = s.as_bytes().as_ptr_range();
    assert!(
        range.start <= sr.start && sr.end <= range.end,
        "{s:?} does not point into the input"
    );
    assert!(
        !s.contains(['\r', '\n', '\0']),
        "{s:?} carries CR, LF or NUL"
    );
}

fn check_consumed(input: &[u8], consumed: usize) {
    assert!(
        consumed > 0 && consumed <= input.len(),
        "consumed {consumed} of {}",
        input.len()
    );
    assert_eq!(
        input[consumed - 1],
        b'\n',
        "consumed does not end after an LF"
    );
}

// The AUTH response parser is tried on every line too, as a session in the middle of an
// AUTH exchange would.
fuzz_target!(|data: &[u8]| {
    let Some((&l, stream)) = data.split_first() else {
        return;
    };
    let limits = if l == 0 {
        Limits::DEFAULT
    } else {
        Limits {
            max_line: usize::from(l & 0x3f) + 1,
            max_auth_line: usize::from(l >> 2) + 1,
        }
    };

    let mut rest = stream;
    while !rest.is_empty() {
        let cmd = parse_command(rest, &limits);
        assert_eq!(
            cmd,
            parse_command(rest, &limits),
            "parse_command is not deterministic"
        );
        let auth = parse_auth_response(rest, &limits);
        assert_eq!(
            auth,
            parse_auth_response(rest, &limits),
            "parse_auth_response is not deterministic"
        );

        // Stability: a decided result stays decided when more input arrives.
        let mut longer = rest.to_vec();
        longer.extend_from_slice(b"NOOP\r\n");
        // (TooLong may become Bad { LineTooLong } once the LF is there: both drop the line.)
        if !matches!(cmd, Err(ParseError::Incomplete | ParseError::TooLong)) {
            let again = parse_command(&longer, &limits);
            match (&cmd, &again) {
                (Ok((c1, a)), Ok((c2, b))) => {
                    assert!(c1 == c2 && a == b, "{cmd:?} became {again:?}")
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("{cmd:?} became {again:?}"),
            }
        }

        if let Ok((consumed, resp)) = &auth {
            check_consumed(rest, *consumed);
            if let AuthResponse::Response(s) = resp {
                inside(rest, s);
            }
        }
        let consumed = match &cmd {
            Ok((consumed, c)) => {
                check_consumed(rest, *consumed);
                for s in strings(c) {
                    inside(rest, s);
                }
                *consumed
            }
            Err(ParseError::Bad { consumed, .. }) => {
                check_consumed(rest, *consumed);
                *consumed
            }
            Err(ParseError::TooLong) => {
                assert!(rest.len() >= limits.max_line && !rest.contains(&b'\n'));
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None => break,
                }
            }
            Err(ParseError::Incomplete) => {
                assert!(!rest.contains(&b'\n'), "Incomplete with an LF in the input");
                break;
            }
        };
        rest = &rest[consumed..];
    }
});
