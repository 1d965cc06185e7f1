//! The outbound SMTP `ClientSession` fed arbitrary server bytes, and its DATA encoder
//! against the server's decoder.
//!
//! Input: `[L][control: L bytes][server byte stream]` (see `ironpost_fuzz::split_control`).
//! The control block is decoded with `arbitrary` into a [`Script`]: the client's
//! configuration (STARTTLS mode, credentials, implicit TLS), a message body, and steps:
//! feed the next n bytes of the server's stream, feed a slice many times over, start a
//! transaction, send body chunks, end the body, QUIT, complete a STARTTLS handshake (after
//! `ClientEvent::StartTls` only, as a runtime does), let
//! time pass, drop the connection.
//!
//! Invariants checked:
//! - no panic; `send_message` only errs, never panics, when the session is not ready;
//! - bounded buffering: the heap the session holds stays under 1 MiB whatever the server
//!   sends (up to 2 MiB), events drained after each step;
//! - after `Closed` no further event;
//! - round trip: `DotEncoder` output for the script's body, cut at the script's points,
//!   decoded by `DotDecoder` (normalize policy), ends exactly at its last octet and gives
//!   back the body with every bare CR or LF turned into CRLF and a final CRLF (an empty
//!   body stays empty).

#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use ironpost_core::smtp::client::{
    ClientConfig, ClientEvent, ClientSession, Credentials, DotEncoder, Envelope, TlsMode,
};
use ironpost_core::smtp::data::{BareLineEndings, Decoded, DotDecoder};
use ironpost_fuzz::{split_control, trace, CountingAlloc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MAX_STREAM: usize = 2 << 20;
const MAX_READ: usize = 16 * 1024;
const MEMORY_BOUND: isize = 1 << 20;

#[derive(Arbitrary, Debug)]
struct Script {
    /// 0: disabled, 1: opportunistic, 2: required.
    starttls: u8,
    auth: Option<bool>,
    implicit_tls: bool,
    body: Vec<u8>,
    cuts: Vec<u8>,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Feed(u16),
    Repeat {
        len: u8,
        times: u16,
    },
    Send {
        recipients: u8,
        eight_bit: bool,
        smtputf8: bool,
        size: Option<u32>,
    },
    Body(u8),
    BodyEnd,
    Quit,
    TlsUp,
    Wait(u16),
    PeerClosed,
}

/// The body with bare CR or LF as CRLF and a final CRLF (empty stays empty).
fn normalized(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if body.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn round_trip(body: &[u8], cuts: &[u8]) {
    let mut enc = DotEncoder::new();
    let mut wire = Vec::new();
    let mut rest = body;
    for &c in cuts {
        let n = (c as usize).min(rest.len());
        enc.encode(&rest[..n], &mut wire);
        rest = &rest[n..];
    }
    enc.encode(rest, &mut wire);
    enc.finish(&mut wire);

    let mut dec = DotDecoder::new(BareLineEndings::Normalize);
    let mut out = Vec::new();
    let (consumed, end) = dec.decode(&wire, &mut out);
    assert_eq!(end, Decoded::End, "the encoded body does not end: {wire:?}");
    assert_eq!(
        consumed,
        wire.len(),
        "the decoder ends before the encoder's end"
    );
    assert!(
        !dec.saw_bare_line_ending(),
        "the encoder let a bare CR or LF through"
    );
    assert_eq!(out, normalized(body), "round trip of {body:?} via {wire:?}");
}

fuzz_target!(|input: &[u8]| {
    let (control, stream) = split_control(input);
    let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(control)) else {
        return;
    };
    round_trip(&script.body, &script.cuts);

    let mut cfg = ClientConfig::new("client.fuzz.test");
    cfg.starttls = match script.starttls % 3 {
        0 => TlsMode::Disabled,
        1 => TlsMode::Opportunistic,
        _ => TlsMode::Required,
    };
    cfg.auth = script.auth.map(|allow_cleartext| Credentials {
        username: "alice".into(),
        password: "secret".into(),
        allow_cleartext,
    });
    let cfg = Arc::new(cfg);
    let mut now = Instant::now();
    let mut s = if script.implicit_tls {
        ClientSession::new_implicit_tls(cfg, now)
    } else {
        ClientSession::new(cfg, now)
    };
    let mut closed = false;
    let mut out = Vec::new();
    let baseline = CountingAlloc::live();
    let mut pos = 0;
    let mut fed = 0;

    // A StartTls event not yet followed by the handshake (the runtime completes one only
    // after that event, and drops it when the session closes).
    let mut tls_pending = false;
    let drain = |s: &mut ClientSession, closed: &mut bool, tls_pending: &mut bool| {
        while let Some(e) = s.poll_event() {
            if trace() {
                eprintln!("event {e:?}");
            }
            assert!(!*closed, "event {e:?} after Closed");
            match e {
                ClientEvent::Closed => {
                    *closed = true;
                    *tls_pending = false;
                }
                ClientEvent::StartTls => *tls_pending = true,
                _ => {}
            }
        }
    };

    for step in script.steps.iter().chain([&Step::Feed(u16::MAX)]) {
        if trace() {
            eprintln!("step {step:?}");
        }
        match *step {
            Step::Feed(n) => {
                let n = (n as usize).min(MAX_READ).min(stream.len() - pos);
                s.feed(now, &stream[pos..pos + n]);
                pos += n;
                fed += n;
            }
            Step::Repeat { len, times } => {
                let n = (len as usize).min(stream.len() - pos);
                if n > 0 {
                    for _ in 0..times {
                        if fed + n > MAX_STREAM {
                            break;
                        }
                        s.feed(now, &stream[pos..pos + n]);
                        fed += n;
                    }
                    pos += n;
                }
            }
            Step::Send {
                recipients,
                eight_bit,
                smtputf8,
                size,
            } => {
                let env = Envelope {
                    from: "bounce@client.fuzz.test".into(),
                    recipients: (0..recipients % 5)
                        .map(|i| format!("r{i}@example.net"))
                        .collect(),
                    size: size.map(u64::from),
                    eight_bit,
                    smtputf8,
                };
                let _ = s.send_message(now, env);
            }
            Step::Body(n) => {
                if s.wants_body() {
                    let n = (n as usize).min(script.body.len());
                    s.body(now, &script.body[..n]);
                }
            }
            Step::BodyEnd => {
                if s.wants_body() {
                    s.body_end(now);
                }
            }
            Step::Quit => s.quit(now),
            Step::TlsUp => {
                if std::mem::take(&mut tls_pending) {
                    s.tls_established(now);
                }
            }
            Step::Wait(secs) => {
                now += Duration::from_secs(u64::from(secs));
                if let Some(t) = s.poll_timeout() {
                    if t <= now {
                        s.handle_timeout(now);
                    }
                }
            }
            Step::PeerClosed => s.peer_closed(now),
        }
        drain(&mut s, &mut closed, &mut tls_pending);
        out.clear();
        s.take_output(&mut out);
        let held = CountingAlloc::live() - baseline;
        assert!(held <= MEMORY_BOUND, "client holds {held} bytes");
    }
});
