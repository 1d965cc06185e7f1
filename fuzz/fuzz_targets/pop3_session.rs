//! The POP3 server `Session` driven by an arbitrary script.
//!
//! Input: `[L][control: L bytes][client byte stream]` (see `ironpost_fuzz::split_control`).
//! The control block is decoded with `arbitrary` into a [`Script`]: the listener's
//! configuration (STLS, implicit TLS, small limits), the application's answers in order
//! (login ok or refused, a maildrop snapshot or a failure, message bytes streamed in chunks
//! or a failure before or after the response began, the update's outcome, failure texts
//! trying to forge lines) and steps: feed the next n bytes, hold answers back, answer one,
//! let time pass, shut down, drop the connection, complete a STLS handshake. What the
//! script leaves of the stream is fed at the end with every answer given.
//!
//! Invariants checked:
//! - no panic;
//! - the output is whole CRLF-terminated lines: status lines starting with `+OK`, `-ERR`
//!   or `+ `, and multi-line responses (CAPA, AUTH, LIST, UIDL, RETR, TOP) whose data ends
//!   with `.` CRLF; only a connection closed in the middle of one (a message failing after
//!   its response began, shutdown, a timeout) may leave it unfinished;
//! - nothing is written once the session is closed.

#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use ironpost_core::pop3::{Event, Failure, Limits, Message, RespCode, Session, SessionConfig};
use ironpost_core::tls::{Protocol, TlsInfo};
use ironpost_fuzz::{split_control, trace};
use libfuzzer_sys::fuzz_target;

const MAX_READ: usize = 16 * 1024;

#[derive(Arbitrary, Debug)]
struct Script {
    starttls: bool,
    implicit_tls: bool,
    /// 0 keeps the default.
    max_line: u8,
    max_auth_failures: u8,
    max_errors: u8,
    /// 0 keeps the default; otherwise small, so LIST and UIDL pause.
    output_limit: u8,
    answers: Vec<Answer>,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Answer {
    Login(bool),
    Maildrop(Vec<(String, u16)>),
    Fail(Option<u8>, String),
    Message { text: Vec<u8>, chunk: u8 },
    FailAfterBegin,
    Update(bool),
}

#[derive(Arbitrary, Debug)]
enum Step {
    Feed(u16),
    Hold,
    Release,
    AnswerOne,
    Wait(u16),
    Shutdown,
    PeerClosed,
    TlsUp,
}

/// `Message::uidl`'s contract: 1 to 70 characters from 0x21 to 0x7E (the session writes it
/// as given).
fn valid_uidl(s: &str) -> String {
    let u: String = s
        .chars()
        .filter(|c| ('\x21'..='\x7e').contains(c))
        .take(70)
        .collect();
    if u.is_empty() {
        "U1".into()
    } else {
        u
    }
}

fn failure(code: Option<u8>, text: &str) -> Failure {
    let code = code.map(|c| match c % 4 {
        0 => RespCode::InUse,
        1 => RespCode::SysTemp,
        2 => RespCode::SysPerm,
        _ => RespCode::Auth,
    });
    Failure::new(code, text)
}

/// Checks the output line by line as it arrives.
#[derive(Default)]
struct Checker {
    /// Bytes of an unfinished line.
    partial: Vec<u8>,
    /// Inside the data of a multi-line response.
    multi: bool,
}

impl Checker {
    fn push(&mut self, out: &[u8]) {
        self.partial.extend_from_slice(out);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let text = line.strip_suffix(b"\r\n").unwrap_or_else(|| {
                panic!("line without CRLF: {:?}", String::from_utf8_lossy(&line))
            });
            assert!(
                !text.contains(&b'\r'),
                "bare CR in {:?}",
                String::from_utf8_lossy(&line)
            );
            if self.multi {
                if text == b"." {
                    self.multi = false;
                }
                continue;
            }
            let t = String::from_utf8_lossy(text);
            if t == "+ " {
                continue;
            }
            assert!(
                t.starts_with("+OK") || t.starts_with("-ERR"),
                "not a status line: {t:?}"
            );
            self.multi = opens_multiline(&t);
        }
    }

    /// The output so far ends at a response boundary.
    fn at_boundary(&self) {
        assert!(
            self.partial.is_empty(),
            "unfinished line {:?}",
            String::from_utf8_lossy(&self.partial)
        );
        assert!(!self.multi, "unfinished multi-line response");
    }
}

fn opens_multiline(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("+OK ") else {
        return false;
    };
    if matches!(
        rest,
        "Capability list follows"
            | "Mechanisms follow"
            | "Unique-ID listing follows"
            | "Top of message follows"
    ) {
        return true;
    }
    // LIST: "N messages (S octets)"; RETR: "S octets".
    let mut words = rest.split(' ');
    let first_num = words
        .next()
        .is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()));
    let second = words.next();
    first_num
        && match second {
            Some("octets") => words.next().is_none(),
            Some("messages") => words.next().is_some_and(|w| w.starts_with('(')),
            _ => false,
        }
}

struct Driver {
    s: Session,
    now: Instant,
    answers: std::vec::IntoIter<Answer>,
    queue: Vec<Event>,
    hold: bool,
    check: Checker,
    closed: bool,
    tls_pending: bool,
}

impl Driver {
    /// Takes output; true if there was some.
    fn flush(&mut self) -> bool {
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
        self.check.push(&out);
        if self.s.take_starttls() {
            self.tls_pending = true;
        }
        if self.s.is_closed() {
            self.closed = true;
        }
        !out.is_empty()
    }

    fn pump(&mut self) {
        while let Some(ev) = self.s.poll_event() {
            if trace() {
                eprintln!("event {ev:?}");
            }
            self.queue.push(ev);
        }
        if !self.hold {
            while !self.queue.is_empty() {
                self.answer_one();
            }
        }
        self.flush();
    }

    /// Polls until the session writes nothing more (LIST and UIDL resume once their output
    /// is taken).
    fn settle(&mut self) {
        loop {
            let mut any = false;
            while let Some(ev) = self.s.poll_event() {
                self.queue.push(ev);
                any = true;
            }
            while !self.queue.is_empty() {
                self.answer_one();
                any = true;
            }
            if !self.flush() && !any {
                break;
            }
        }
    }

    fn answer_one(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let ev = self.queue.remove(0);
        let now = self.now;
        let a = self.answers.next();
        match ev {
            Event::Login { .. } => match a {
                Some(Answer::Login(ok)) => self.s.login_result(now, ok),
                _ => self.s.login_result(now, true),
            },
            Event::OpenMaildrop => match a {
                Some(Answer::Fail(c, t)) => self.s.maildrop(now, Err(failure(c, &t))),
                Some(Answer::Maildrop(m)) => self.s.maildrop(
                    now,
                    Ok(m.into_iter()
                        .map(|(uidl, size)| Message {
                            uidl: valid_uidl(&uidl),
                            size: u64::from(size),
                        })
                        .collect()),
                ),
                _ => self.s.maildrop(
                    now,
                    Ok(vec![
                        Message {
                            uidl: "A1".into(),
                            size: 12,
                        },
                        Message {
                            uidl: "B2".into(),
                            size: 30,
                        },
                    ]),
                ),
            },
            Event::Retr { .. } | Event::Top { .. } => match a {
                Some(Answer::Fail(c, t)) => self.s.message_failed(now, failure(c, &t)),
                Some(Answer::FailAfterBegin) => {
                    self.s.message_begin(now);
                    self.s.message_data(now, b"Subject: x\r\n\r\npart");
                    self.s.message_failed(now, Failure::temp("gone"));
                }
                Some(Answer::Message { text, chunk }) => {
                    self.s.message_begin(now);
                    for c in text.chunks(usize::from(chunk).max(1)) {
                        if !self.s.message_data(now, c) {
                            break;
                        }
                        self.flush();
                    }
                    self.s.message_end(now);
                }
                _ => {
                    self.s.message_begin(now);
                    self.s
                        .message_data(now, b"Subject: hi\r\n\r\n.line\r\nend\n");
                    self.s.message_end(now);
                }
            },
            Event::Update { .. } => match a {
                Some(Answer::Fail(c, t)) => self.s.update_done(now, Err(failure(c, &t))),
                Some(Answer::Update(false)) => self
                    .s
                    .update_done(now, Err(Failure::temp("some deleted messages not removed"))),
                _ => self.s.update_done(now, Ok(())),
            },
        }
        // The session may ask for more at once (a pipelined command behind the answer).
        while let Some(ev) = self.s.poll_event() {
            self.queue.push(ev);
        }
        self.flush();
    }
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        sni: None,
    }
}

fuzz_target!(|input: &[u8]| {
    let (control, stream) = split_control(input);
    let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(control)) else {
        return;
    };
    let mut cfg = SessionConfig {
        starttls: script.starttls,
        ..SessionConfig::default()
    };
    if script.max_line != 0 {
        cfg.limits = Limits {
            max_line: usize::from(script.max_line).max(8),
            max_auth_line: usize::from(script.max_line) * 4,
        };
    }
    if script.max_auth_failures != 0 {
        cfg.max_auth_failures = u32::from(script.max_auth_failures % 8);
    }
    if script.max_errors != 0 {
        cfg.max_errors = u32::from(script.max_errors % 16);
    }
    if script.output_limit != 0 {
        cfg.output_limit = usize::from(script.output_limit);
    }
    let now = Instant::now();
    let mut d = Driver {
        s: Session::new(Arc::new(cfg), script.implicit_tls, now),
        now,
        answers: script.answers.into_iter(),
        queue: Vec::new(),
        hold: false,
        check: Checker::default(),
        closed: false,
        tls_pending: false,
    };
    if script.implicit_tls {
        d.s.tls_established(tls_info());
    }
    d.flush();
    let mut pos = 0;
    for step in &script.steps {
        if trace() {
            eprintln!("step {step:?}");
        }
        match *step {
            Step::Feed(n) => {
                let n = usize::from(n).min(MAX_READ).min(stream.len() - pos);
                if trace() {
                    eprintln!("C: {:?}", String::from_utf8_lossy(&stream[pos..pos + n]));
                }
                d.s.feed(d.now, &stream[pos..pos + n]);
                pos += n;
            }
            Step::Hold => d.hold = true,
            Step::Release => d.hold = false,
            Step::AnswerOne => d.answer_one(),
            Step::Wait(secs) => {
                d.now += Duration::from_secs(u64::from(secs) * 8);
                if d.s.poll_timeout().is_some_and(|t| t <= d.now) {
                    d.s.handle_timeout(d.now);
                }
            }
            Step::Shutdown => d.s.shutdown(),
            Step::PeerClosed => d.s.peer_closed(),
            Step::TlsUp => {
                if std::mem::take(&mut d.tls_pending) {
                    d.s.tls_established(tls_info());
                }
            }
        }
        d.pump();
    }
    // The rest, line by line, every answer given.
    d.hold = false;
    d.pump();
    if d.tls_pending {
        d.s.tls_established(tls_info());
        d.tls_pending = false;
    }
    for line in stream[pos..].split_inclusive(|&b| b == b'\n') {
        if trace() {
            eprintln!("C: {:?}", String::from_utf8_lossy(line));
        }
        d.s.feed(d.now, line);
        d.pump();
        if d.tls_pending {
            d.s.tls_established(tls_info());
            d.tls_pending = false;
            d.pump();
        }
    }
    d.settle();
    if !d.closed && !d.s.is_waiting() && !d.s.is_streaming() && d.queue.is_empty() {
        d.check.at_boundary();
    }
});
