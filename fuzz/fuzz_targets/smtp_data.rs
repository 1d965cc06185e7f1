//! `DotDecoder` (DATA dot-unstuffing and end-of-data detection) against a reference model.
//!
//! Input: `[L][control: L bytes][body bytes]` (see `ironpost_fuzz::split_control`); the
//! control block gives the bare-line-ending policy and the sizes the body is cut into.
//!
//! Invariants: the same output, end and bare-line-ending verdict whether the body is decoded
//! whole, byte by byte or cut at arbitrary points; the end is reported exactly after the
//! first CRLF.CRLF (counting the CRLF of the DATA command line before the body), never after
//! a bare CR or LF; under `Reject` the output is the body with one leading dot removed from
//! each line and is never longer than the input; under `Normalize` the output has no bare CR
//! or LF.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ironpost_core::smtp::data::{BareLineEndings, Decoded, DotDecoder};
use ironpost_fuzz::split_control;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Control {
    normalize: bool,
    /// Sizes of the pieces the body is fed in, cycled; 0 feeds an empty slice.
    pieces: Vec<u16>,
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    out: Vec<u8>,
    /// Input consumed when the end was reached.
    end: Option<usize>,
    bare: bool,
}

fn decode_pieces(policy: BareLineEndings, body: &[u8], pieces: &[u16]) -> Outcome {
    let mut d = DotDecoder::new(policy);
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = pieces.iter().copied().cycle();
    let mut empty_feeds = 0;
    while at < body.len() {
        let n = match sizes.next() {
            Some(n) if empty_feeds <= pieces.len() => (n as usize).min(body.len() - at),
            _ => body.len() - at,
        };
        // An empty slice must change nothing; a script of only zeros ends in one last feed.
        if n == 0 {
            empty_feeds += 1;
        } else {
            empty_feeds = 0;
        }
        let (used, r) = d.decode(&body[at..at + n], &mut out);
        assert!(used <= n);
        at += used;
        if policy == BareLineEndings::Reject {
            assert!(out.len() <= at, "more output than input");
        }
        if r == Decoded::End {
            return Outcome {
                out,
                end: Some(at),
                bare: d.saw_bare_line_ending(),
            };
        }
        assert_eq!(used, n, "input left unconsumed without an end");
    }
    Outcome {
        out,
        end: None,
        bare: d.saw_bare_line_ending(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where the message ends: after the first CRLF.CRLF, the CRLF ending the DATA line
/// counting as the first one.
fn reference_end(body: &[u8]) -> Option<usize> {
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(body);
    find(&framed, b"\r\n.\r\n").map(|at| at + 5 - 2)
}

/// Dot-unstuffing with bare line endings passed through: every "CRLF ." loses its dot.
fn reference_unstuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut line_start = true;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if !(line_start && b == b'.') {
            out.push(b);
        }
        line_start = b == b'\n' && i > 0 && body[i - 1] == b'\r';
        i += 1;
    }
    out
}

fn has_bare_line_ending(s: &[u8]) -> bool {
    s.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => s.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || s[i - 1] != b'\r',
        _ => false,
    })
}

fuzz_target!(|input: &[u8]| {
    let (control, body) = split_control(input);
    let Ok(control) = Control::arbitrary_take_rest(Unstructured::new(control)) else {
        return;
    };
    let policy = if control.normalize {
        BareLineEndings::Normalize
    } else {
        BareLineEndings::Reject
    };

    let whole = decode_pieces(policy, body, &[]);
    let bytewise = decode_pieces(policy, body, &[1]);
    assert_eq!(whole, bytewise, "byte-by-byte decoding differs");
    if !control.pieces.is_empty() {
        let pieces = decode_pieces(policy, body, &control.pieces);
        assert_eq!(whole, pieces, "decoding in pieces differs");
    }

    assert_eq!(whole.end, reference_end(body), "end of data misplaced");
    let consumed = &body[..whole.end.unwrap_or(body.len())];
    match policy {
        BareLineEndings::Reject => {
            assert!(whole.out.len() <= consumed.len());
            match whole.end {
                Some(end) => {
                    // The CRLF before the final dot belongs to the message.
                    assert_eq!(whole.out, reference_unstuff(&body[..end - 3]));
                    assert_eq!(whole.bare, has_bare_line_ending(consumed));
                }
                None => {
                    // A trailing CR (or `.` CR) may still be held back, waiting for its LF.
                    let full = reference_unstuff(body);
                    assert!(full.starts_with(&whole.out), "output is not the reference");
                    assert!(matches!(&full[whole.out.len()..], b"" | b"\r"));
                    let settled = consumed.strip_suffix(b"\r").unwrap_or(consumed);
                    assert_eq!(whole.bare, has_bare_line_ending(settled));
                }
            }
        }
        BareLineEndings::Normalize => {
            let out = &whole.out;
            assert!(out.len() <= 2 * consumed.len());
            assert!(!has_bare_line_ending(out), "a bare line ending survived");
            if !has_bare_line_ending(consumed.strip_suffix(b"\r").unwrap_or(consumed)) {
                assert!(!whole.bare);
            }
        }
    }
});
