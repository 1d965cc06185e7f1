//! The IMAP command parser (`core::imap::parse`): framing of lines and literals, and the
//! RFC 3501 grammar, over a stream of commands the way a session walks its buffer.
//!
//! Input: `[L][control: L bytes][client byte stream]` (see `ironpost_fuzz::split_control`);
//! the control block gives the parser's limits and where to cut the buffer.
//!
//! Invariants: no panic; parsing is deterministic; a result other than `Incomplete` never
//! changes when more input arrives (so a session gets the same commands whatever the TCP
//! segmentation); a parsed command is self-delimiting (re-parsing exactly its octets gives it
//! back) and every `consumed` count lies within the input; the same holds for the lines that
//! end an APPEND or an IDLE and for AUTHENTICATE responses.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ironpost_core::imap::{
    parse_append_end, parse_auth_response, parse_command, parse_idle_done, CommandBody, Limits,
    ParseError, Reason,
};
use ironpost_fuzz::{split_control, trace};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Control {
    /// 0 keeps each default limit.
    max_line: u16,
    max_literal: u16,
    max_command: u32,
    /// Where to cut the buffer when checking that results do not change with more input.
    cuts: Vec<u16>,
}

impl Control {
    fn limits(&self) -> Limits {
        let mut l = Limits::DEFAULT;
        if self.max_line != 0 {
            l.max_line = 64 + self.max_line as usize;
        }
        if self.max_literal != 0 {
            l.max_literal = u32::from(self.max_literal);
        }
        if self.max_command != 0 {
            l.max_command = 64 + self.max_command as usize % (1 << 20);
        }
        l
    }
}

fn in_input(input: &[u8], n: usize) {
    assert!(n > 0 && n <= input.len(), "{n} octets of {}", input.len());
}

/// Checks one entry point at the start of `buf`: determinism, bounds, and stability of
/// complete results under every cut.
fn check<'a, T, F>(buf: &'a [u8], cuts: &[usize], f: F) -> Result<T, ParseError<'a>>
where
    T: PartialEq + std::fmt::Debug,
    F: Fn(&'a [u8]) -> Result<T, ParseError<'a>>,
{
    let r = f(buf);
    assert_eq!(r, f(buf), "not deterministic");
    match &r {
        Err(ParseError::Bad { consumed, .. }) => in_input(buf, *consumed),
        Err(ParseError::LiteralTooLarge { consumed, .. }) => in_input(buf, *consumed),
        _ => {}
    }
    for &k in cuts {
        let k = k % (buf.len() + 1);
        let early = f(&buf[..k]);
        match (&early, &r) {
            (Err(ParseError::Incomplete(_)), _) => continue,
            // An overlong line whose end has not arrived yet; once it has, the same line is
            // a BAD that drops it whole: the same answer and the same octets skipped.
            (
                Err(ParseError::TooLong { tag: t1 }),
                Err(ParseError::Bad {
                    tag: t2,
                    consumed,
                    reason: Reason::LineTooLong,
                }),
            ) if *consumed > k && (t1.is_none() || t1 == t2) => continue,
            // A tag is only known once the octet after it has arrived.
            (Err(ParseError::TooLong { tag: t1 }), Err(ParseError::TooLong { tag: t2 }))
                if t1.is_none() || t1 == t2 =>
            {
                continue
            }
            _ => {
                assert_eq!(
                    early,
                    r,
                    "result changed when input grew from {k} to {} octets",
                    buf.len()
                );
            }
        }
    }
    r
}

fn skip_line(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |i| i + 1)
}

fuzz_target!(|input: &[u8]| {
    let (control, stream) = split_control(input);
    let Ok(control) = Control::arbitrary_take_rest(Unstructured::new(control)) else {
        return;
    };
    let limits = control.limits();
    let cuts: Vec<usize> = control
        .cuts
        .iter()
        .map(|&c| c as usize)
        .chain([1, 17])
        .collect();

    let mut pos = 0;
    for _ in 0..1000 {
        let buf = &stream[pos..];
        if buf.is_empty() {
            break;
        }
        let _ = check(buf, &cuts, |b| parse_idle_done(b, &limits));
        let _ = check(buf, &cuts, |b| parse_auth_response(b, &limits));
        let _ = check(buf, &cuts, |b| parse_append_end(b, &limits));
        let parsed = check(buf, &cuts, |b| parse_command(b, &limits));
        if trace() {
            eprintln!("{parsed:?}");
        }
        let advance = match parsed {
            Ok((n, cmd)) => {
                in_input(buf, n);
                assert_eq!(
                    parse_command(&buf[..n], &limits),
                    Ok((n, cmd.clone())),
                    "command is not self-delimiting"
                );
                assert!(!cmd.tag.is_empty());
                match cmd.body {
                    // The message literal streams past; then the end of the command line.
                    CommandBody::Append { message, .. } => {
                        let after = n.saturating_add(message.size as usize).min(buf.len());
                        match parse_append_end(&buf[after..], &limits) {
                            Ok(end) => after + end,
                            Err(ParseError::Bad { consumed, .. }) => after + consumed,
                            Err(_) => break,
                        }
                    }
                    _ => n,
                }
            }
            Err(ParseError::Bad { consumed, .. }) => consumed,
            Err(ParseError::TooLong { .. }) => skip_line(buf),
            Err(ParseError::LiteralTooLarge {
                consumed,
                size,
                sync,
                ..
            }) => {
                if sync {
                    consumed
                } else {
                    consumed.saturating_add(size as usize).min(buf.len())
                }
            }
            Err(ParseError::Incomplete(_)) => break,
        };
        assert!(advance > 0);
        pos += advance;
    }
});
