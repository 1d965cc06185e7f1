//! The SMTP server `Session` driven by an arbitrary script.
//!
//! Input: `[L][control: L bytes][client byte stream]` (see `ironpost_fuzz::split_control`).
//! The control block is decoded with `arbitrary` into a [`Script`]: the listener's policy,
//! the application's answers (accept, queued, 4xx, 5xx, a reply text trying to forge lines)
//! and steps: feed the next n bytes of the stream, feed a slice many times over, hold answers
//! back for a few steps, let time pass, shut down, drop the connection, complete or delay a
//! STARTTLS handshake. Whatever the script leaves of the stream is then fed line by line, the
//! way a client waiting for each reply sends it.
//!
//! Invariants checked:
//! - no panic;
//! - output is whole reply lines (`^\d{3}[ -]`, CRLF-terminated, no other CR or LF, one code
//!   per multi-line reply), and once the session is closed nothing more comes out;
//! - while an event waits for its answer, the session produces nothing more;
//! - memory is bounded: with a runtime that stops reading while an answer is outstanding and
//!   more than 32 KiB are buffered, the input held stays below one line once nothing is
//!   pending, and the heap the session holds stays under 1 MiB whatever the stream's length
//!   (up to 2 MiB);
//! - policy: AUTH events only under TLS, MAIL only under TLS when STARTTLS is required and
//!   only after AUTH when AUTH is required; an accepted DATA message ends with CRLF, carries no
//!   bare CR or LF under the reject policy, and never exceeds the size limit; a passed deadline
//!   closes the session;
//! - the same stream (up to 256 KiB), fed in the script's pieces with answers held back or
//!   fed whole with answers given at once, gives the same events (bodies compared per
//!   message) and the same output.

#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use ironpost_core::smtp::data::BareLineEndings;
use ironpost_core::smtp::{Answer, AuthPolicy, Event, Reply, Session, SessionConfig, StartTls};
use ironpost_core::tls::{Protocol, TlsInfo};
use ironpost_fuzz::{check_smtp_replies, split_control, trace, CountingAlloc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Most bytes one run feeds (repeats included).
const MAX_STREAM: usize = 2 << 20;
/// The runtime stops reading and waits for the application beyond this much buffered input.
const HIGH_WATER: usize = 32 * 1024;
/// Largest single feed, as a runtime reading a socket into a 16 KiB buffer.
const MAX_READ: usize = 16 * 1024;
/// Streams up to this long are also run twice more to compare pieces with whole.
const COMPARE_LIMIT: usize = 256 * 1024;
/// Heap a session may hold, whatever it was fed.
const MEMORY_BOUND: isize = 1 << 20;

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Cfg {
    /// 0: off, 1: offered, 2: required.
    starttls: u8,
    auth_required: bool,
    implicit_tls: bool,
    normalize_bare_line_endings: bool,
    /// 0 keeps each limit's default.
    max_line_length: u16,
    max_message_size: u32,
    max_recipients: u8,
    max_errors: u8,
    max_auth_failures: u8,
}

impl Cfg {
    fn session_config(&self) -> SessionConfig {
        let mut c = SessionConfig::new("mx.fuzz.test");
        c.starttls = match self.starttls % 3 {
            0 => StartTls::Off,
            1 => StartTls::Offer,
            _ => StartTls::Required,
        };
        if self.auth_required {
            c.auth = AuthPolicy::Required;
        }
        if self.normalize_bare_line_endings {
            c.bare_line_endings = BareLineEndings::Normalize;
        }
        if self.max_line_length != 0 {
            c.max_line_length = 512 + self.max_line_length as usize % 4096;
        }
        if self.max_message_size != 0 {
            c.max_message_size = u64::from(self.max_message_size % 300_000);
        }
        if self.max_recipients != 0 {
            c.max_recipients = self.max_recipients as usize;
        }
        if self.max_errors != 0 {
            c.max_errors = u32::from(self.max_errors);
        }
        if self.max_auth_failures != 0 {
            c.max_auth_failures = u32::from(self.max_auth_failures);
        }
        c
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum AppAnswer {
    Accept,
    Queued,
    Temporary(u8),
    Permanent(u8),
    /// A reply whose text tries to forge extra reply lines.
    Forge,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Step {
    /// Feed the next n bytes of the stream (0: an empty feed), at most a socket read's worth.
    Feed(u16),
    /// Feed the next `len` bytes `times` times over.
    FeedRepeat {
        len: u8,
        times: u16,
    },
    /// Hold each later answer back for this many steps (mod 4).
    Delay(u8),
    /// Let this many seconds pass, then handle timeouts.
    Advance(u16),
    Shutdown,
    /// The client goes away; the run ends.
    PeerClosed,
    /// Complete a STARTTLS handshake that is under way.
    TlsUp,
    /// Later STARTTLS handshakes wait for a `TlsUp` step.
    SlowTls,
}

#[derive(Arbitrary, Debug)]
struct Script {
    cfg: Cfg,
    answers: Vec<AppAnswer>,
    steps: Vec<Step>,
}

/// What a run does, in order: the stream cut into pieces, and the control steps between.
enum Action<'a> {
    Feed(&'a [u8], usize),
    Control(Step),
}

fn plan<'a>(steps: &[Step], mut stream: &'a [u8]) -> Vec<Action<'a>> {
    let mut actions = Vec::new();
    let mut budget = MAX_STREAM;
    let take = |stream: &mut &'a [u8], n: usize| {
        let (a, b) = stream.split_at(n.min(stream.len()));
        *stream = b;
        a
    };
    for &step in steps {
        match step {
            Step::Feed(n) => {
                let piece = take(&mut stream, n as usize % (MAX_READ + 1));
                budget = budget.saturating_sub(piece.len());
                actions.push(Action::Feed(piece, 1));
            }
            Step::FeedRepeat { len, times } => {
                let piece = take(&mut stream, len as usize);
                let times = (times as usize).min(budget / piece.len().max(1));
                budget -= piece.len() * times;
                actions.push(Action::Feed(piece, times));
            }
            Step::PeerClosed => {
                actions.push(Action::Control(step));
                return actions;
            }
            _ => actions.push(Action::Control(step)),
        }
    }
    // The rest line by line, as a client that waits for each reply sends it.
    while !stream.is_empty() {
        let n = stream
            .iter()
            .position(|&b| b == b'\n')
            .map_or(stream.len(), |i| i + 1);
        actions.push(Action::Feed(take(&mut stream, n), 1));
    }
    actions
}

/// An event as compared between runs: bodies are joined per message, and dropped with the
/// message when it is abandoned (the application discards a partial message on `Reset`).
#[derive(Debug, PartialEq, Eq)]
enum Rec {
    Event(String),
    Message(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Auth,
    Mail,
    Rcpt,
    MessageEnd,
}

struct Driver<'s> {
    s: Session,
    config: Arc<SessionConfig>,
    implicit_tls: bool,
    now: Instant,
    answers: &'s [AppAnswer],
    next_answer: usize,
    /// An event awaiting the application's answer, and the steps left before it answers.
    pending: Option<(Kind, u8)>,
    delay: u8,
    /// Chaos: timeouts, shutdown, TLS; the memory bound is checked. Otherwise the run records
    /// events and output for comparison.
    chaos: bool,
    slow_tls: bool,
    handshake_pending: bool,
    tls_up: bool,
    closed: bool,
    scratch: Vec<u8>,
    open_reply: Option<[u8; 3]>,
    last_line_354: bool,
    baseline: isize,
    // The message being received.
    in_data: bool,
    body_len: u64,
    body_bare: bool,
    body_tail: [u8; 2],
    // Recorded (comparison runs only).
    recs: Vec<Rec>,
    message: Vec<u8>,
    output: Vec<u8>,
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        sni: None,
    }
}

impl<'s> Driver<'s> {
    fn new(cfg: &Cfg, answers: &'s [AppAnswer], chaos: bool) -> Self {
        let config = Arc::new(cfg.session_config());
        let now = Instant::now();
        let mut d = Driver {
            s: Session::new(config.clone(), cfg.implicit_tls, now),
            config,
            implicit_tls: cfg.implicit_tls,
            now,
            answers,
            next_answer: 0,
            pending: None,
            delay: 0,
            chaos,
            slow_tls: false,
            handshake_pending: false,
            tls_up: false,
            closed: false,
            scratch: Vec::with_capacity(4096),
            open_reply: None,
            last_line_354: false,
            baseline: 0,
            in_data: false,
            body_len: 0,
            body_bare: false,
            body_tail: [0; 2],
            recs: Vec::new(),
            message: Vec::new(),
            output: Vec::new(),
        };
        if chaos && cfg.implicit_tls {
            // The TLS layer reports the implicit handshake before any plaintext arrives.
            d.s.tls_established(tls_info());
            d.tls_up = true;
        }
        d.flush();
        d.baseline = CountingAlloc::live();
        d
    }

    fn tls_active(&self) -> bool {
        self.tls_up || self.implicit_tls
    }

    fn flush(&mut self) {
        self.scratch.clear();
        self.s.take_output(&mut self.scratch);
        if self.scratch.is_empty() {
            return;
        }
        assert!(!self.closed, "output after the session closed");
        check_smtp_replies(&self.scratch, &mut self.open_reply);
        if trace() {
            eprint!("{}", String::from_utf8_lossy(&self.scratch));
        }
        let last = self.scratch[..self.scratch.len() - 2]
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        self.last_line_354 = last.starts_with(b"354 ");
        if !self.chaos {
            self.output.extend_from_slice(&self.scratch);
        }
        if self.scratch.capacity() > 64 * 1024 {
            self.scratch = Vec::with_capacity(4096);
        }
    }

    fn record(&mut self, ev: &Event) {
        if self.chaos {
            return;
        }
        match ev {
            Event::Body(b) => self.message.extend_from_slice(b),
            Event::MessageEnd => {
                let m = std::mem::take(&mut self.message);
                self.recs.push(Rec::Message(m));
                self.recs.push(Rec::Event("MessageEnd".into()));
            }
            Event::Reset => {
                self.message.clear();
                self.recs.push(Rec::Event("Reset".into()));
            }
            other => self.recs.push(Rec::Event(format!("{other:?}"))),
        }
    }

    fn on_event(&mut self, ev: Event) {
        if trace() {
            match &ev {
                Event::Body(b) => eprintln!("  [event] Body({} bytes)", b.len()),
                other => eprintln!("  [event] {other:?}"),
            }
        }
        assert!(!self.closed, "event after the session closed: {ev:?}");
        self.record(&ev);
        let kind = match &ev {
            Event::Auth { .. } => {
                if self.chaos {
                    assert!(self.tls_active(), "credentials taken over cleartext");
                }
                Some(Kind::Auth)
            }
            Event::Mail { .. } => {
                if self.chaos && self.config.starttls == StartTls::Required {
                    assert!(self.tls_active(), "MAIL accepted before STARTTLS");
                }
                if self.config.auth == AuthPolicy::Required {
                    assert!(
                        self.s.authenticated().is_some(),
                        "MAIL accepted before AUTH"
                    );
                }
                Some(Kind::Mail)
            }
            Event::Rcpt { .. } => Some(Kind::Rcpt),
            Event::DataStart => {
                self.in_data = self.last_line_354;
                self.body_len = 0;
                self.body_bare = false;
                self.body_tail = [0; 2];
                None
            }
            Event::Body(b) => {
                assert!(!b.is_empty(), "empty body chunk");
                for &c in b {
                    let [_, prev] = self.body_tail;
                    if (prev == b'\r' && c != b'\n') || (c == b'\n' && prev != b'\r') {
                        self.body_bare = true;
                    }
                    self.body_tail = [prev, c];
                }
                self.body_len += b.len() as u64;
                None
            }
            Event::MessageEnd => {
                assert!(
                    self.body_len <= self.config.max_message_size,
                    "message over the size limit accepted"
                );
                if self.in_data {
                    assert!(
                        self.body_len == 0 || self.body_tail == *b"\r\n",
                        "DATA message does not end with CRLF"
                    );
                    if self.config.bare_line_endings == BareLineEndings::Reject {
                        assert!(!self.body_bare, "bare line ending accepted");
                    }
                }
                Some(Kind::MessageEnd)
            }
            Event::Reset => None,
        };
        if let Some(kind) = kind {
            assert!(
                self.s.is_waiting(),
                "{kind:?} event without a pending answer"
            );
            assert!(self.s.poll_timeout().is_none(), "timer runs while waiting");
            self.pending = Some((kind, self.delay));
        }
    }

    fn answer_for(&mut self, kind: Kind) -> Answer {
        let a = if self.answers.is_empty() {
            AppAnswer::Accept
        } else {
            let a = self.answers[self.next_answer % self.answers.len()].clone();
            self.next_answer += 1;
            a
        };
        match a {
            AppAnswer::Accept if kind == Kind::MessageEnd => Answer::Queued("Q1".into()),
            AppAnswer::Accept => Answer::Accept,
            AppAnswer::Queued => Answer::Queued("Q2".into()),
            AppAnswer::Temporary(x) => Answer::Reject(Reply::ext(
                400 + u16::from(x % 100),
                4,
                u16::from(x % 8),
                u16::from(x % 10),
                "try later",
            )),
            AppAnswer::Permanent(x) => Answer::Reject(Reply::ext(
                500 + u16::from(x % 100),
                5,
                u16::from(x % 8),
                u16::from(x % 10),
                "no",
            )),
            AppAnswer::Forge => Answer::Reject(Reply::new(
                550,
                None,
                "no\r\n250 2.0.0 forged\rtoo\n\n354 go ahead",
            )),
        }
    }

    /// The application answers the pending event now.
    fn answer_now(&mut self) {
        if let Some((kind, _)) = self.pending {
            self.pending = Some((kind, 0));
            self.pump();
        }
    }

    /// Polls events and answers those due, until the session needs input or an answer.
    fn pump(&mut self) {
        loop {
            if let Some((kind, hold)) = self.pending {
                if hold == 0 {
                    self.pending = None;
                    let a = self.answer_for(kind);
                    self.s.answer(self.now, a);
                    continue;
                }
                // Nothing happens while the application works, unless the session closed
                // meanwhile (shutdown, peer gone) and abandoned its transaction.
                while let Some(ev) = self.s.poll_event() {
                    assert!(
                        self.s.is_closed() && ev == Event::Reset,
                        "event while an answer is outstanding: {ev:?}"
                    );
                    self.record(&ev);
                }
                self.flush();
                break;
            }
            let Some(ev) = self.s.poll_event() else {
                self.flush();
                break;
            };
            self.flush();
            self.on_event(ev);
        }
        self.after_pump();
    }

    fn after_pump(&mut self) {
        if self.chaos && self.s.take_starttls() {
            assert!(!self.tls_active(), "STARTTLS under TLS");
            self.handshake_pending = true;
            if !self.slow_tls {
                self.tls_handshake_done();
            }
        }
        if self.s.is_closed() {
            self.flush();
            self.closed = true;
        }
        if self.pending.is_none() && !self.closed {
            assert!(
                self.s.buffered_input() < self.config.max_line_length,
                "{} bytes buffered with nothing pending",
                self.s.buffered_input()
            );
        }
        if self.chaos {
            let held = CountingAlloc::live() - self.baseline;
            assert!(held <= MEMORY_BOUND, "session holds {held} bytes");
        }
    }

    fn tls_handshake_done(&mut self) {
        if std::mem::take(&mut self.handshake_pending) {
            self.tls_up = true;
            self.s.tls_established(tls_info());
            self.pump();
        }
    }

    /// One step of the steps between answers.
    fn tick(&mut self) {
        if let Some((kind, hold)) = self.pending {
            self.pending = Some((kind, hold.saturating_sub(1)));
            self.pump();
        }
    }

    fn feed(&mut self, piece: &[u8]) {
        // Back-pressure: a runtime stops reading while the application is busy and much
        // input is buffered already.
        if self.pending.is_some() && self.s.buffered_input() > HIGH_WATER {
            self.answer_now();
        }
        self.s.feed(self.now, piece);
        self.pump();
    }

    fn act(&mut self, action: &Action<'_>) {
        match *action {
            Action::Feed(piece, times) => {
                for _ in 0..times {
                    self.feed(piece);
                    if self.closed {
                        break;
                    }
                }
            }
            Action::Control(step) => self.control(step),
        }
        self.tick();
    }

    fn control(&mut self, step: Step) {
        match step {
            Step::Feed(_) | Step::FeedRepeat { .. } => unreachable!("planned as feeds"),
            Step::Delay(d) => self.delay = d % 4,
            _ if !self.chaos => {}
            Step::Advance(secs) => {
                self.now += Duration::from_secs(u64::from(secs));
                let due = self.s.poll_timeout().is_some_and(|d| d <= self.now);
                self.s.handle_timeout(self.now);
                self.pump();
                if due {
                    assert!(self.closed, "a passed deadline did not close the session");
                }
            }
            Step::Shutdown => {
                self.s.shutdown();
                self.pump();
            }
            Step::PeerClosed => {
                self.s.peer_closed();
                self.pump();
            }
            Step::TlsUp => self.tls_handshake_done(),
            Step::SlowTls => self.slow_tls = true,
        }
    }

    fn finish(&mut self) {
        while self.pending.is_some() {
            self.answer_now();
        }
        if self.chaos {
            self.tls_handshake_done();
        }
        if self.closed {
            // A closed session stays silent whatever happens to it.
            self.s.feed(self.now, b"NOOP\r\nQUIT\r\n");
            assert!(self.s.poll_event().is_none());
            self.s
                .handle_timeout(self.now + Duration::from_secs(1 << 20));
            self.s.shutdown();
            assert!(self.s.poll_event().is_none());
            self.flush();
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let (control, stream) = split_control(input);
    let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(control)) else {
        return;
    };
    let actions = plan(&script.steps, stream);

    // Everything the script can throw at a session.
    let mut chaos = Driver::new(&script.cfg, &script.answers, true);
    for a in &actions {
        a_step(&mut chaos, a);
    }
    chaos.finish();
    drop(chaos);

    let fed: usize = actions
        .iter()
        .map(|a| match a {
            Action::Feed(piece, times) => piece.len() * times,
            Action::Control(_) => 0,
        })
        .sum();
    if fed > COMPARE_LIMIT {
        // Long repeated streams are for the memory bound; comparing them is slow and finds
        // nothing a short stream would not.
        return;
    }

    // The same stream in the script's pieces, answers held back as the script says...
    let mut pieces = Driver::new(&script.cfg, &script.answers, false);
    for a in &actions {
        a_step(&mut pieces, a);
    }
    pieces.finish();

    // ...and all at once with answers given at once.
    let mut whole = Driver::new(&script.cfg, &script.answers, false);
    let mut all = Vec::new();
    for a in &actions {
        if let Action::Feed(piece, times) = *a {
            for _ in 0..times {
                all.extend_from_slice(piece);
            }
        }
    }
    whole.feed(&all);
    whole.finish();

    assert_eq!(pieces.recs, whole.recs, "events depend on how input is cut");
    assert!(
        pieces.output == whole.output,
        "output depends on how input is cut:\npieces: {:?}\nwhole:  {:?}",
        String::from_utf8_lossy(&pieces.output),
        String::from_utf8_lossy(&whole.output)
    );
});

fn a_step(d: &mut Driver<'_>, a: &Action<'_>) {
    if !d.closed {
        d.act(a);
    }
}
