//! The client side's SMTP reply parser (`core::smtp::reply_parse`), on bytes from a server
//! nobody controls, and the round trip through ironpost's own reply writer.
//!
//! Input: `[L][control: L bytes][server byte stream]` (see `ironpost_fuzz::split_control`);
//! the control block gives the pieces the stream is cut into and a reply to round-trip.
//!
//! Invariants: no panic; the same replies and errors whether the stream is pushed whole or in
//! pieces; the reader's buffer stays bounded (one line plus one reply) however the stream is
//! cut; every reply has a code in 200..=599 and text free of control characters but TAB and
//! the line separator; an enhanced code matches the reply's class; EHLO keywords read from
//! any reply without panicking. Round trip: a reply written with `Reply::write_to` parses
//! back to the same code, enhanced code and text (with control characters shown as `?`).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ironpost_core::smtp::reply_parse::{
    ehlo_line, split_enhanced, Extensions, ReplyError, ReplyReader, MAX_LINE, MAX_REPLY,
};
use ironpost_core::smtp::{Enhanced, Reply};
use ironpost_fuzz::{split_control, trace};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct GenReply {
    code: u16,
    enhanced: Option<(u16, u16)>,
    lines: Vec<String>,
}

#[derive(Arbitrary, Debug)]
struct Control {
    pieces: Vec<u16>,
    round_trip: Option<GenReply>,
}

type Outcome = Result<Reply, ReplyError>;

/// Pushes the stream in pieces (cycled; none: whole), collecting every reply and error.
fn read(stream: &[u8], pieces: &[u16]) -> Vec<Outcome> {
    let mut r = ReplyReader::new();
    let mut got = Vec::new();
    let mut at = 0;
    let mut sizes = pieces.iter().copied().filter(|&n| n > 0).cycle();
    while at < stream.len() {
        let n = sizes
            .next()
            .map_or(stream.len() - at, |n| (n as usize).min(stream.len() - at));
        r.push(&stream[at..at + n]);
        at += n;
        while let Some(reply) = r.next_reply() {
            match &reply {
                Ok(reply) => check_reply(reply),
                Err(_) => {
                    // A client hangs up on a server that broke the grammar: what the reader
                    // would make of later bytes depends on how much it had buffered.
                    got.push(reply);
                    return got;
                }
            }
            got.push(reply);
        }
        assert!(
            r.buffered() < MAX_REPLY + MAX_LINE,
            "reader holds {} octets",
            r.buffered()
        );
    }
    got
}

fn check_reply(r: &Reply) {
    assert!((200..=599).contains(&r.code), "code {}", r.code);
    assert!(
        !r.text
            .chars()
            .any(|c| c.is_control() && c != '\t' && c != '\n'),
        "control character in {:?}",
        r.text
    );
    if let Some(Enhanced(class, ..)) = r.enhanced {
        assert_eq!(u16::from(class), r.code / 100, "enhanced class of {r:?}");
    }
    let _ = Extensions::from_ehlo(r);
    for line in r.text.split('\n') {
        if let Some((kw, params)) = ehlo_line(line) {
            let range = line.as_bytes().as_ptr_range();
            for s in [kw, params] {
                let sr = s.as_bytes().as_ptr_range();
                assert!(range.start <= sr.start && sr.end <= range.end);
            }
        }
    }
}

fn round_trip(g: &GenReply) {
    let code = 200 + g.code % 400;
    let class = (code / 100) as u8;
    let enhanced = g
        .enhanced
        .filter(|_| class != 3)
        .map(|(s, d)| Enhanced(class, s % 1000, d % 1000));
    let lines: Vec<String> = if g.lines.is_empty() {
        vec![String::new()]
    } else {
        g.lines
            .iter()
            .map(|l| l.replace(['\r', '\n'], ""))
            .collect()
    };
    if enhanced.is_none()
        && lines
            .iter()
            .any(|l| split_enhanced(code, l.as_bytes()).0.is_some())
    {
        // Text that starts like an enhanced code reads back as one.
        return;
    }
    let reply = Reply::new(code, enhanced, lines.join("\n"));
    let mut wire = Vec::new();
    reply.write_to(&mut wire, true);
    if trace() {
        eprintln!("round trip: {:?}", String::from_utf8_lossy(&wire));
    }

    let too_long = wire.len() > MAX_REPLY
        || wire
            .split_inclusive(|&b| b == b'\n')
            .any(|l| l.len() > MAX_LINE);
    match Reply::parse(&wire) {
        Ok(back) => {
            assert!(!too_long, "an over-long reply was accepted");
            let shown: Vec<String> = lines
                .iter()
                .map(|l| {
                    l.chars()
                        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
                        .collect()
                })
                .collect();
            assert_eq!(back.code, code);
            assert_eq!(back.enhanced, enhanced);
            assert_eq!(back.text, shown.join("\n"), "wire: {wire:?}");
        }
        Err(ReplyError::LineTooLong | ReplyError::TooLong) if too_long => {}
        Err(e) => panic!("{e}: our own reply {wire:?} does not parse"),
    }
}

fuzz_target!(|input: &[u8]| {
    let (control, stream) = split_control(input);
    let Ok(control) = Control::arbitrary_take_rest(Unstructured::new(control)) else {
        return;
    };

    let whole = read(stream, &[]);
    if trace() {
        eprintln!("{whole:?}");
    }
    assert_eq!(whole, read(stream, &[1]), "byte by byte differs");
    if !control.pieces.is_empty() {
        assert_eq!(whole, read(stream, &control.pieces), "pieces differ");
    }

    if let Some(g) = &control.round_trip {
        round_trip(g);
    }
});
