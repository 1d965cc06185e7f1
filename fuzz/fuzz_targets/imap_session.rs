//! The IMAP server `Session` driven by an arbitrary script.
//!
//! Input: `[L][control: L bytes][client byte stream]` (see `ironpost_fuzz::split_control`).
//! The control block is decoded with `arbitrary` into a [`Script`]: the listener's
//! configuration (STARTTLS, implicit TLS, small limits), the application's answers in order
//! (login ok or refused, OK / NO / BAD completions with or without a response code,
//! untagged data written while a command runs or during IDLE) and steps: feed the next n
//! bytes (a socket read), feed a slice many times over, hold answers back, answer one, let
//! time pass, shut down, drop the connection, lose the selected mailbox, complete a STARTTLS
//! handshake. What the script leaves of the stream is fed line by line at the end.
//!
//! Invariants checked:
//! - no panic;
//! - bounded buffered input given regular polling: with a runtime that polls after every
//!   read and stops reading while a command is with the application and more than 64 KiB
//!   are buffered, the session never holds more than the largest command plus one read
//!   plus that high-water mark;
//! - the output is CRLF-terminated lines, and nothing is written once the session is
//!   closed;
//! - every tagged response names a tag the client sent (the first word of a line it fed, or
//!   of the line it is still sending, for a line too long).

#![no_main]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use ironpost_core::imap::session::{Event, Session, SessionConfig, Status};
use ironpost_core::imap::Limits;
use ironpost_core::tls::{Protocol, TlsInfo};
use ironpost_fuzz::{split_control, trace};
use libfuzzer_sys::fuzz_target;

const MAX_READ: usize = 16 * 1024;
const HIGH_WATER: usize = 64 * 1024;
/// Most bytes one run feeds (repeats included).
const MAX_STREAM: usize = 2 << 20;

#[derive(Arbitrary, Debug)]
struct Script {
    starttls: bool,
    implicit_tls: bool,
    /// 0 keeps the defaults; otherwise small limits.
    limits: u8,
    max_errors: u8,
    max_append_size: u16,
    answers: Vec<Answer>,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Answer {
    Login(bool),
    Ok,
    No(Option<String>),
    Bad,
    Untagged,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Feed(u16),
    Repeat { len: u8, times: u16 },
    Hold,
    Release,
    AnswerOne,
    Wait(u16),
    Shutdown,
    PeerClosed,
    MailboxGone,
    TlsUp,
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        sni: None,
    }
}

struct Driver {
    s: Session,
    now: Instant,
    answers: std::vec::IntoIter<Answer>,
    /// Events waiting for an answer (Login, Command, AppendEnd).
    queue: Vec<Event>,
    hold: bool,
    closed: bool,
    tls_pending: bool,
    partial: Vec<u8>,
    tags: Tags,
    bound: usize,
}

/// The first words of the lines the client sent, as they were fed (a repeated slice makes
/// lines of its own).
#[derive(Default)]
struct Tags {
    seen: HashSet<Vec<u8>>,
    word: Vec<u8>,
    in_word: bool,
}

impl Tags {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                if self.in_word {
                    self.seen.insert(std::mem::take(&mut self.word));
                }
                self.word.clear();
                self.in_word = true;
            } else if self.in_word {
                if b == b' ' || b == b'\r' || self.word.len() > 1024 {
                    self.seen.insert(std::mem::take(&mut self.word));
                    self.in_word = false;
                } else {
                    self.word.push(b);
                }
            }
        }
    }

    /// TLS came up after STARTTLS: the session dropped what it had buffered and all it was
    /// fed since (plaintext), so the next octet fed starts a line for it, wherever the
    /// stream's own lines fall.
    fn restart_line(&mut self) {
        if self.in_word {
            self.seen.insert(std::mem::take(&mut self.word));
        }
        self.word.clear();
        self.in_word = true;
    }

    fn contains(&self, tag: &[u8]) -> bool {
        self.seen.contains(tag) || (self.in_word && self.word.starts_with(tag))
    }
}

impl Driver {
    fn flush(&mut self) {
        let mut out = Vec::new();
        self.s.take_output(&mut out);
        if trace() && !out.is_empty() {
            eprintln!("S: {:?}", String::from_utf8_lossy(&out));
        }
        if self.closed {
            assert!(
                out.is_empty(),
                "output after close: {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        self.partial.extend_from_slice(&out);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            assert!(
                line.ends_with(b"\r\n"),
                "line without CRLF: {:?}",
                String::from_utf8_lossy(&line)
            );
            let tag = line
                .split(|&b| b == b' ' || b == b'\r')
                .next()
                .unwrap_or(&[]);
            if tag != b"*" && tag != b"+" {
                assert!(
                    self.tags.contains(tag),
                    "tagged response with a tag the client never sent: {:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        if self.s.take_starttls() {
            self.tls_pending = true;
        }
        if self.s.is_closed() {
            self.closed = true;
            self.tls_pending = false;
        }
        assert!(
            self.s.buffered_input() <= self.bound,
            "{} bytes buffered",
            self.s.buffered_input()
        );
    }

    fn pump(&mut self) {
        while let Some(ev) = self.s.poll_event() {
            if trace() {
                eprintln!("event {ev:?}");
            }
            match ev {
                Event::Login { .. } | Event::Command { .. } | Event::AppendEnd => {
                    self.queue.push(ev)
                }
                Event::IdleStart => self.s.write(b"* 3 EXISTS\r\n"),
                _ => {}
            }
        }
        if !self.hold {
            while !self.queue.is_empty() {
                self.answer_one();
            }
        }
        self.flush();
    }

    fn answer_one(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let ev = self.queue.remove(0);
        let now = self.now;
        let a = self.answers.next();
        match (ev, a) {
            (Event::Login { .. }, Some(Answer::Login(ok))) => self.s.login_result(now, ok),
            (Event::Login { .. }, _) => self.s.login_result(now, true),
            (_, Some(Answer::No(code))) => {
                self.s.complete(now, Status::No, code.as_deref(), "failed")
            }
            (_, Some(Answer::Bad)) => self.s.complete(now, Status::Bad, None, "bad"),
            (_, Some(Answer::Untagged)) => {
                self.s.write(b"* 1 EXISTS\r\n* 0 RECENT\r\n");
                self.s.complete(now, Status::Ok, Some("READ-WRITE"), "done");
            }
            _ => self.s.complete(now, Status::Ok, None, "completed"),
        }
        while let Some(ev) = self.s.poll_event() {
            match ev {
                Event::Login { .. } | Event::Command { .. } | Event::AppendEnd => {
                    self.queue.push(ev)
                }
                _ => {}
            }
        }
        self.flush();
    }

    fn feed(&mut self, data: &[u8]) {
        self.tags.feed(data);
        self.s.feed(self.now, data);
    }

    /// A runtime stops reading while a command is with the application and much is
    /// buffered.
    fn reading(&self) -> bool {
        self.queue.is_empty() || self.s.buffered_input() <= HIGH_WATER
    }
}

fuzz_target!(|input: &[u8]| {
    let (control, stream) = split_control(input);
    let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(control)) else {
        return;
    };
    let mut cfg = SessionConfig {
        starttls: script.starttls,
        store_capabilities: vec!["UIDPLUS", "MOVE"],
        ..SessionConfig::default()
    };
    if script.limits != 0 {
        let l = usize::from(script.limits);
        cfg.limits = Limits {
            max_line: l.max(8),
            max_literal: u32::from(script.limits) * 4,
            max_command: l * 16,
        };
    }
    if script.max_errors != 0 {
        cfg.max_errors = u32::from(script.max_errors % 32);
    }
    if script.max_append_size != 0 {
        cfg.max_append_size = u32::from(script.max_append_size);
    }
    let bound = cfg.limits.max_command.max(cfg.limits.max_line) + HIGH_WATER + 2 * MAX_READ;

    let now = Instant::now();
    let mut d = Driver {
        s: Session::new(Arc::new(cfg), script.implicit_tls, now),
        now,
        answers: script.answers.into_iter(),
        queue: Vec::new(),
        hold: false,
        closed: false,
        tls_pending: false,
        partial: Vec::new(),
        tags: Tags {
            in_word: true,
            ..Tags::default()
        },
        bound,
    };
    if script.implicit_tls {
        d.s.tls_established(tls_info());
    }
    d.flush();
    let mut pos = 0;
    let mut fed = 0;
    for step in &script.steps {
        if trace() {
            eprintln!("step {step:?}");
        }
        match *step {
            Step::Feed(n) => {
                if d.reading() {
                    let n = usize::from(n).min(MAX_READ).min(stream.len() - pos);
                    d.feed(&stream[pos..pos + n]);
                    pos += n;
                    fed += n;
                }
            }
            Step::Repeat { len, times } => {
                let n = usize::from(len).min(stream.len() - pos);
                if n > 0 {
                    for _ in 0..times {
                        if fed + n > MAX_STREAM || !d.reading() {
                            break;
                        }
                        d.feed(&stream[pos..pos + n]);
                        fed += n;
                        d.pump();
                    }
                    pos += n;
                }
            }
            Step::Hold => d.hold = true,
            Step::Release => d.hold = false,
            Step::AnswerOne => d.answer_one(),
            Step::Wait(secs) => {
                d.now += Duration::from_secs(u64::from(secs));
                if d.s.poll_timeout().is_some_and(|t| t <= d.now) {
                    d.s.handle_timeout(d.now);
                }
            }
            Step::Shutdown => d.s.shutdown(),
            Step::PeerClosed => d.s.peer_closed(),
            Step::MailboxGone => d.s.mailbox_gone(),
            Step::TlsUp => {
                if std::mem::take(&mut d.tls_pending) {
                    d.s.tls_established(tls_info());
                    d.tags.restart_line();
                }
            }
        }
        d.pump();
    }
    d.hold = false;
    d.pump();
    for line in stream[pos..].split_inclusive(|&b| b == b'\n') {
        if std::mem::take(&mut d.tls_pending) {
            d.s.tls_established(tls_info());
            d.tags.restart_line();
        }
        if trace() {
            eprintln!("C: {:?}", String::from_utf8_lossy(line));
        }
        d.feed(line);
        d.pump();
    }
});
