//! The POP3 server session (RFC 1939 with CAPA, STLS, AUTH PLAIN and response codes) as a
//! pure state machine.
//!
//! The session answers everything that needs no mail store itself (CAPA, the state rules,
//! STAT, LIST, UIDL, DELE, RSET, NOOP from its snapshot of the maildrop) and asks the
//! application, through [`Event`]s, for what does:
//!
//! | event | the application answers with |
//! |---|---|
//! | [`Event::Login`] | [`Session::login_result`] |
//! | [`Event::OpenMaildrop`] | [`Session::maildrop`]: the messages, or why not ([IN-USE], ...) |
//! | [`Event::Retr`], [`Event::Top`] | [`Session::message_begin`], then [`Session::message_data`] chunks and [`Session::message_end`]; or [`Session::message_failed`] |
//! | [`Event::Update`] | [`Session::update_done`] |
//!
//! One command runs at a time; pipelined commands wait in the input buffer. Message numbers
//! stay fixed for the whole session. DELE only marks: the application removes the marked
//! messages when it gets [`Event::Update`], which is sent at QUIT in the TRANSACTION state
//! and at no other time, so a connection that drops or times out deletes nothing.
//!
//! Multi-line responses are written in bounded steps: message text goes through a
//! byte-stuffing writer ([`Session::message_data`]) that doubles a leading `.`, turns a bare
//! LF into CRLF, counts TOP's body lines, and ends the response with `.`; the application
//! sends the next chunk only while [`Session::pending_output`] is small. LIST and UIDL of a
//! large maildrop are written a batch at a time as the output drains (call
//! [`Session::poll_event`] again after taking output).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::parse::{
    parse_auth_response, parse_command, AuthResponse, Command, Limits, ParseError, Reason,
};
use crate::tls::{Protocol, TlsInfo};

/// Input buffer capacity kept while idle; a larger one is released.
const IDLE_INPUT_CAPACITY: usize = 4 * 1024;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Offer STLS (port 110). Until TLS is up, USER, PASS and AUTH are refused and CAPA
    /// lists neither USER nor SASL: no credentials over cleartext.
    pub starttls: bool,
    pub limits: Limits,
    /// RFC 1939 3: an inactivity autologout timer must be at least 10 minutes.
    pub timeout: Duration,
    /// Failed logins before the connection is closed.
    pub max_auth_failures: u32,
    /// Malformed or unknown commands before the connection is closed.
    pub max_errors: u32,
    /// LIST and UIDL stop writing while this much output waits to be taken.
    pub output_limit: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            starttls: true,
            limits: Limits::DEFAULT,
            timeout: Duration::from_secs(10 * 60),
            max_auth_failures: 3,
            max_errors: 10,
            output_limit: 64 * 1024,
        }
    }
}

/// RFC 1939 3: the session states. `Closed` once the connection is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Authorization,
    Transaction,
    Update,
    Closed,
}

/// One message of the maildrop as the application lists it when it opens the maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The UIDL: 1 to 70 characters from 0x21 to 0x7E (RFC 1939 7), stable across sessions.
    pub uidl: String,
    /// Size in octets as sent (CRLF line ends, before byte-stuffing).
    pub size: u64,
}

/// RFC 2449 8 / RFC 3206 response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// The maildrop is locked by another session.
    InUse,
    /// A temporary failure of the server: trying again later may work.
    SysTemp,
    /// A permanent failure of the server: the user should not try again unaided.
    SysPerm,
    /// The credentials are wrong (or not acceptable here).
    Auth,
}

impl RespCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::InUse => "IN-USE",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::Auth => "AUTH",
        }
    }
}

/// A negative answer from the application: `-ERR [code] text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Option<RespCode>,
    /// One line of printable text (anything else is replaced).
    pub text: String,
}

impl Failure {
    pub fn new(code: Option<RespCode>, text: impl Into<String>) -> Failure {
        Failure {
            code,
            text: text.into(),
        }
    }

    pub fn in_use() -> Failure {
        Failure::new(
            Some(RespCode::InUse),
            "Maildrop is locked by another POP3 session",
        )
    }

    pub fn temp(text: impl Into<String>) -> Failure {
        Failure::new(Some(RespCode::SysTemp), text)
    }
}

/// What the application is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Check credentials (USER/PASS or AUTH PLAIN); answer with [`Session::login_result`].
    Login { user: String, pass: String },
    /// The login succeeded: open (and lock) the maildrop; answer with [`Session::maildrop`].
    OpenMaildrop,
    /// Send message `msg` (1-based, as numbered by [`Session::maildrop`]).
    Retr { msg: u32 },
    /// Send the header of message `msg` and the first `lines` lines of its body.
    Top { msg: u32, lines: u32 },
    /// QUIT in the TRANSACTION state: remove `deleted`, record `retrieved` (messages sent
    /// whole by RETR and not deleted) as seen if the store does that, then release the
    /// maildrop; answer with [`Session::update_done`]. Both lists ascending.
    Update {
        deleted: Vec<u32>,
        retrieved: Vec<u32>,
    },
}

/// Which listing LIST or UIDL writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    Sizes,
    Uidls,
}

#[derive(Debug)]
enum Mode {
    Commands,
    /// Discarding an overlong line through its LF.
    DiscardLine,
    /// AUTH PLAIN sent `+ `: waiting for the client's response line.
    AuthPlain,
    /// [`Event::Login`] is with the application.
    Login,
    /// [`Event::OpenMaildrop`] is with the application.
    Opening,
    /// [`Event::Retr`] or [`Event::Top`] is with the application; nothing written yet.
    Fetching {
        msg: u32,
        top: Option<u32>,
    },
    /// The message is being written.
    Streaming {
        msg: u32,
        stuffer: Stuffer,
    },
    /// A multi-line LIST or UIDL: `next` is the index of the next message to write.
    Listing {
        kind: Listing,
        next: usize,
    },
    /// [`Event::Update`] is with the application.
    Updating,
    /// `+OK Begin TLS negotiation` is queued: input is dropped until the handshake.
    AwaitTls,
    Closed,
}

/// The byte-stuffing writer of a multi-line message response (RFC 1939 3).
#[derive(Debug, Clone)]
struct Stuffer {
    /// The next octet starts a line.
    line_start: bool,
    /// The last chunk ended with a CR, not yet written: the line ends there, and an LF at
    /// the start of the next chunk belongs to it.
    pending_cr: bool,
    /// Octets of the current line so far (line ending excluded).
    line_len: usize,
    /// TOP: still in the header section.
    header: bool,
    /// TOP: body lines still to send; `None` for RETR (all of it).
    lines_left: Option<u32>,
    /// TOP has sent all it should: further data is dropped.
    done: bool,
}

impl Stuffer {
    fn new(top: Option<u32>) -> Stuffer {
        Stuffer {
            line_start: true,
            pending_cr: false,
            line_len: 0,
            header: top.is_some(),
            lines_left: top,
            done: false,
        }
    }

    /// Writes `data` stuffed into `out`; false once TOP needs no more.
    ///
    /// Every line goes out ending in CRLF: a bare LF or a bare CR in the file (from a
    /// program other than ironpost, whose SMTP refuses them) ends its line too. Passing a
    /// bare CR on would let a client that splits lines at CR see `.` alone on a line inside
    /// the message, and take what follows for responses.
    fn write(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> bool {
        while !data.is_empty() && !self.done {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                if data[0] == b'\n' {
                    data = &data[1..];
                }
                self.end_line();
                continue;
            }
            if self.line_start {
                if data[0] == b'.' {
                    out.push(b'.');
                }
                self.line_start = false;
            }
            let Some(i) = memchr::memchr2(b'\r', b'\n', data) else {
                out.extend_from_slice(data);
                self.line_len += data.len();
                break;
            };
            out.extend_from_slice(&data[..i]);
            self.line_len += i;
            let ending = match (data[i], data.get(i + 1)) {
                (b'\r', None) => {
                    // Whether an LF follows is for the next chunk to say.
                    self.pending_cr = true;
                    break;
                }
                (b'\r', Some(b'\n')) => 2,
                _ => 1,
            };
            out.extend_from_slice(b"\r\n");
            self.end_line();
            data = &data[i + ending..];
        }
        !self.done
    }

    fn end_line(&mut self) {
        let empty = self.line_len == 0;
        self.line_start = true;
        self.line_len = 0;
        if self.header {
            if empty {
                self.header = false;
                if self.lines_left == Some(0) {
                    self.done = true;
                }
            }
        } else if let Some(n) = self.lines_left.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.done = true;
            }
        }
    }

    /// Ends the response: the last line's CRLF if it had none, then `.`.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.line_start && !self.done {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// What the session knows of each message of the maildrop.
#[derive(Debug)]
struct Entry {
    msg: Message,
    deleted: bool,
    retrieved: bool,
}

pub struct Session {
    config: Arc<SessionConfig>,
    state: State,
    mode: Mode,
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
    events: VecDeque<Event>,
    tls: Option<TlsInfo>,
    implicit_tls: bool,
    starttls_requested: bool,
    /// Set while a command is handled when the rest of the input must be dropped (STLS).
    discard: bool,
    /// The name given by USER, waiting for PASS.
    pending_user: Option<String>,
    /// The user of the login in progress, then of the session.
    user: Option<String>,
    messages: Vec<Entry>,
    auth_failures: u32,
    errors: u32,
    deadline: Option<Instant>,
    shutting_down: bool,
}

impl Session {
    /// A new session; its greeting is queued. With `implicit_tls` the connection is TLS from
    /// the first byte (port 995).
    pub fn new(config: Arc<SessionConfig>, implicit_tls: bool, now: Instant) -> Self {
        let mut s = Session {
            state: State::Authorization,
            mode: Mode::Commands,
            input: Vec::new(),
            pos: 0,
            output: Vec::with_capacity(256),
            events: VecDeque::new(),
            tls: None,
            implicit_tls,
            starttls_requested: false,
            discard: false,
            pending_user: None,
            user: None,
            messages: Vec::new(),
            auth_failures: 0,
            errors: 0,
            deadline: Some(now + config.timeout),
            shutting_down: false,
            config,
        };
        s.line("+OK ironpost ready");
        s
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The user who logged in (or is logging in).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// True while the application holds an event that the session waits for.
    pub fn is_waiting(&self) -> bool {
        matches!(
            self.mode,
            Mode::Login | Mode::Opening | Mode::Fetching { .. } | Mode::Updating
        )
    }

    /// True while a message is being written (between `message_begin` and `message_end`).
    pub fn is_streaming(&self) -> bool {
        matches!(self.mode, Mode::Streaming { .. })
    }

    pub fn buffered_input(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Output not yet taken: the application sends message chunks only while this is small.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// Messages marked by DELE, ascending.
    pub fn deleted(&self) -> Vec<u32> {
        self.numbers(|e| e.deleted)
    }

    fn numbers(&self, pred: impl Fn(&Entry) -> bool) -> Vec<u32> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(_, e)| pred(e))
            .map(|(i, _)| i as u32 + 1)
            .collect()
    }

    fn tls_active(&self) -> bool {
        self.implicit_tls || self.tls.is_some()
    }

    /// The CAPA list for the current state (RFC 2449 5: what the AUTHORIZATION state offers
    /// is listed in both states).
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut caps = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        if self.tls_active() {
            caps.push("USER");
            caps.push("SASL PLAIN");
        } else if self.config.starttls && self.state == State::Authorization {
            caps.push("STLS");
        }
        caps.push("IMPLEMENTATION ironpost");
        caps
    }

    /// Plaintext from the client.
    pub fn feed(&mut self, now: Instant, data: &[u8]) {
        if matches!(self.mode, Mode::AwaitTls | Mode::Closed) || data.is_empty() {
            return;
        }
        if self.pos > 0 && self.pos >= self.input.len() / 2 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(data);
        self.arm_timer(now);
    }

    fn arm_timer(&mut self, now: Instant) {
        self.deadline = Some(now + self.config.timeout);
    }

    /// The next thing the application must do, if any. Call again after taking output: a
    /// long LIST or UIDL continues as the output drains.
    pub fn poll_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if !self.step() {
                return None;
            }
        }
    }

    /// The answer to [`Event::Login`]. On success the session asks for the maildrop next
    /// ([`Event::OpenMaildrop`]); the client hears nothing until that is answered too.
    pub fn login_result(&mut self, now: Instant, ok: bool) {
        if !matches!(self.mode, Mode::Login) {
            // The session closed meanwhile (shutdown, peer gone): nothing to answer.
            return;
        }
        self.arm_timer(now);
        if ok {
            self.mode = Mode::Opening;
            self.events.push_back(Event::OpenMaildrop);
            return;
        }
        self.mode = Mode::Commands;
        self.user = None;
        self.auth_failures += 1;
        self.err(Some(RespCode::Auth), "Authentication failed");
        if self.auth_failures >= self.config.max_auth_failures {
            self.close();
        } else {
            self.after_command();
        }
    }

    /// The answer to [`Event::OpenMaildrop`]: the messages (numbered from 1 in this order),
    /// or why the maildrop cannot be opened (the session stays in AUTHORIZATION).
    pub fn maildrop(&mut self, now: Instant, result: Result<Vec<Message>, Failure>) {
        if !matches!(self.mode, Mode::Opening) {
            return;
        }
        self.arm_timer(now);
        self.mode = Mode::Commands;
        match result {
            Ok(messages) => {
                self.messages = messages
                    .into_iter()
                    .map(|msg| Entry {
                        msg,
                        deleted: false,
                        retrieved: false,
                    })
                    .collect();
                self.state = State::Transaction;
                let (n, size) = self.totals();
                self.line(&format!(
                    "+OK Logged in; maildrop has {n} messages ({size} octets)"
                ));
            }
            Err(f) => {
                self.user = None;
                self.failure(&f);
            }
        }
        self.after_command();
    }

    /// The message asked for by [`Event::Retr`] / [`Event::Top`] is there: its response
    /// begins. Send its octets (as stored, CRLF or LF line ends) with
    /// [`Session::message_data`], then call [`Session::message_end`].
    pub fn message_begin(&mut self, now: Instant) {
        let Mode::Fetching { msg, top } = self.mode else {
            return;
        };
        self.arm_timer(now);
        match top {
            None => {
                let size = self.entry(msg).map_or(0, |e| e.msg.size);
                self.line(&format!("+OK {size} octets"));
            }
            Some(_) => self.line("+OK Top of message follows"),
        }
        self.mode = Mode::Streaming {
            msg,
            stuffer: Stuffer::new(top),
        };
    }

    /// Octets of the message, byte-stuffed into the output. Returns false once no more are
    /// wanted (TOP has its lines, or the session closed): call [`Session::message_end`].
    pub fn message_data(&mut self, now: Instant, data: &[u8]) -> bool {
        let Mode::Streaming { stuffer, .. } = &mut self.mode else {
            return false;
        };
        let more = stuffer.write(data, &mut self.output);
        self.deadline = Some(now + self.config.timeout);
        more
    }

    /// The whole message (or all TOP wanted) has been given: the response ends with `.`.
    pub fn message_end(&mut self, now: Instant) {
        let Mode::Streaming { msg, stuffer } = &mut self.mode else {
            return;
        };
        let msg = *msg;
        let retr = stuffer.lines_left.is_none();
        stuffer.finish(&mut self.output);
        self.mode = Mode::Commands;
        if retr {
            if let Some(e) = self.entry_mut(msg) {
                e.retrieved = true;
            }
        }
        self.arm_timer(now);
        self.after_command();
    }

    /// The message cannot be sent. Before [`Session::message_begin`] the client gets
    /// `-ERR`; after it, the response cannot be ended honestly, so the connection closes.
    pub fn message_failed(&mut self, now: Instant, failure: Failure) {
        match self.mode {
            Mode::Fetching { .. } => {
                self.mode = Mode::Commands;
                self.arm_timer(now);
                self.failure(&failure);
                self.after_command();
            }
            Mode::Streaming { .. } => self.close(),
            _ => {}
        }
    }

    /// The answer to [`Event::Update`]; the session then ends.
    pub fn update_done(&mut self, _now: Instant, result: Result<(), Failure>) {
        if !matches!(self.mode, Mode::Updating) {
            return;
        }
        match result {
            Ok(()) => {
                let left = self.messages.iter().filter(|e| !e.deleted).count();
                self.line(&format!("+OK ironpost signing off ({left} messages left)"));
            }
            Err(f) => {
                // RFC 1939 6: "-ERR some deleted messages not removed".
                let text = format!("Some deleted messages not removed: {}", f.text);
                self.failure(&Failure::new(f.code, text));
            }
        }
        self.close();
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_waiting() || matches!(self.mode, Mode::Closed | Mode::AwaitTls) {
            return None;
        }
        self.deadline
    }

    /// The autologout timer (RFC 1939 3): the session closes without entering UPDATE, so
    /// nothing is deleted.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.poll_timeout() {
            Some(d) if now >= d => {}
            _ => return,
        }
        if !matches!(self.mode, Mode::Streaming { .. } | Mode::Listing { .. }) {
            self.err(None, "Autologout; idle for too long");
        }
        self.close();
    }

    /// The server is stopping: close now if between commands, else once the command with
    /// the application is done. Nothing is deleted unless the client already sent QUIT.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        match self.mode {
            Mode::Commands | Mode::DiscardLine | Mode::AuthPlain => {
                self.err(Some(RespCode::SysTemp), "Server shutting down");
                self.close();
            }
            Mode::AwaitTls => self.close(),
            _ => {}
        }
    }

    /// The client closed the connection (or it failed): no UPDATE state, nothing deleted.
    pub fn peer_closed(&mut self) {
        self.close();
    }

    fn after_command(&mut self) {
        if self.shutting_down && matches!(self.mode, Mode::Commands) {
            self.err(Some(RespCode::SysTemp), "Server shutting down");
            self.close();
        }
    }

    fn close(&mut self) {
        self.mode = Mode::Closed;
        self.state = State::Closed;
        self.input = Vec::new();
        self.pos = 0;
        self.events.clear();
    }

    fn line(&mut self, text: &str) {
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn ok(&mut self, text: &str) {
        self.line(&format!("+OK {text}"));
    }

    fn err(&mut self, code: Option<RespCode>, text: &str) {
        match code {
            Some(c) => self.line(&format!("-ERR [{}] {text}", c.as_str())),
            None => self.line(&format!("-ERR {text}")),
        }
    }

    fn failure(&mut self, f: &Failure) {
        let text: String = f
            .text
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
            .collect();
        self.err(f.code, &text);
    }

    fn bad(&mut self, reason: &str) {
        self.err(None, reason);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.err(None, "Too many invalid commands");
            self.close();
        }
    }

    fn entry(&self, msg: u32) -> Option<&Entry> {
        self.messages.get((msg as usize).checked_sub(1)?)
    }

    fn entry_mut(&mut self, msg: u32) -> Option<&mut Entry> {
        self.messages.get_mut((msg as usize).checked_sub(1)?)
    }

    /// Count and size of the messages not marked deleted.
    fn totals(&self) -> (usize, u64) {
        self.messages
            .iter()
            .filter(|e| !e.deleted)
            .fold((0, 0), |(n, s), e| (n + 1, s + e.msg.size))
    }

    /// The message a command names, or the -ERR for it.
    fn live(&mut self, msg: u32) -> Option<&Entry> {
        match self.entry(msg) {
            None => {
                self.err(None, "No such message");
                None
            }
            Some(e) if e.deleted => {
                self.err(None, &format!("Message {msg} already deleted"));
                None
            }
            Some(_) => self.entry(msg),
        }
    }

    fn step(&mut self) -> bool {
        if self.pos == self.input.len() && self.pos > 0 {
            if self.input.capacity() > IDLE_INPUT_CAPACITY {
                self.input = Vec::new();
            } else {
                self.input.clear();
            }
            self.pos = 0;
        }
        match self.mode {
            Mode::Commands => self.step_command(),
            Mode::AuthPlain => self.step_auth_response(),
            Mode::DiscardLine => {
                let rest = &self.input[self.pos..];
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.pos += i + 1;
                        self.mode = Mode::Commands;
                        true
                    }
                    None => {
                        self.pos = self.input.len();
                        false
                    }
                }
            }
            Mode::Listing { .. } => self.step_listing(),
            _ => false,
        }
    }

    fn step_command(&mut self) -> bool {
        if self.pos == self.input.len() {
            return false;
        }
        // Parse in place: the buffer is moved out so the borrowed command and `&mut self`
        // live side by side without copying.
        let buf = std::mem::take(&mut self.input);
        let progressed = match parse_command(&buf[self.pos..], &self.config.limits) {
            Ok((consumed, cmd)) => {
                self.pos += consumed;
                self.command(cmd);
                true
            }
            Err(ParseError::Incomplete) => false,
            Err(ParseError::Bad { consumed, reason }) => {
                self.pos += consumed;
                self.bad(&reason.to_string());
                true
            }
            Err(ParseError::TooLong) => {
                self.pos = buf.len();
                self.bad(&Reason::LineTooLong.to_string());
                if !self.is_closed() {
                    self.mode = Mode::DiscardLine;
                }
                true
            }
        };
        if std::mem::take(&mut self.discard) || self.is_closed() {
            self.pos = 0;
        } else {
            self.input = buf;
        }
        progressed
    }

    fn command(&mut self, cmd: Command<'_>) {
        use Command as C;
        let authorization = self.state == State::Authorization;
        match cmd {
            C::Capa => {
                self.ok("Capability list follows");
                for cap in self.capabilities() {
                    self.line(cap);
                }
                self.line(".");
            }
            C::Quit if authorization => {
                self.ok("ironpost signing off");
                self.close();
            }
            C::Quit => {
                self.state = State::Update;
                self.mode = Mode::Updating;
                let deleted = self.deleted();
                let retrieved = self.numbers(|e| e.retrieved && !e.deleted);
                self.events.push_back(Event::Update { deleted, retrieved });
            }
            C::Stls => {
                if !authorization {
                    return self.err(None, "STLS is only valid before login");
                }
                if self.tls_active() || !self.config.starttls {
                    return self.err(None, "TLS is already active or not available");
                }
                self.ok("Begin TLS negotiation now");
                // RFC 2595 4: whatever the client pipelined after STLS in cleartext is
                // dropped, and so is any USER given before it.
                self.pending_user = None;
                self.discard = true;
                self.mode = Mode::AwaitTls;
                self.starttls_requested = true;
            }
            C::User(_) | C::Pass(_) | C::Auth { .. } | C::Apop { .. } if !authorization => {
                self.err(None, "Already logged in")
            }
            C::Apop { .. } => self.err(None, "APOP is not supported; use USER/PASS or AUTH"),
            C::User(_) | C::Pass(_) | C::Auth { .. } if !self.tls_active() => self.err(
                Some(RespCode::Auth),
                "Plaintext authentication disallowed before STLS",
            ),
            C::User(name) => {
                self.pending_user = Some(name.to_string());
                self.ok("Send PASS");
            }
            C::Pass(pass) => match self.pending_user.take() {
                Some(user) => self.login(user, pass.to_string()),
                None => self.err(None, "Send USER first"),
            },
            C::Auth {
                mechanism: None, ..
            } => {
                self.ok("Mechanisms follow");
                self.line("PLAIN");
                self.line(".");
            }
            C::Auth {
                mechanism: Some(m),
                initial,
            } => {
                if !m.eq_ignore_ascii_case("PLAIN") {
                    return self.err(None, "Unsupported authentication mechanism");
                }
                match initial {
                    Some(ir) => self.auth_plain(ir),
                    None => {
                        self.line("+ ");
                        self.mode = Mode::AuthPlain;
                    }
                }
            }
            _ if authorization => self.err(None, "Log in first"),
            C::Stat => {
                let (n, size) = self.totals();
                self.ok(&format!("{n} {size}"));
            }
            C::List(Some(msg)) => {
                if let Some(e) = self.live(msg) {
                    let size = e.msg.size;
                    self.ok(&format!("{msg} {size}"));
                }
            }
            C::Uidl(Some(msg)) => {
                if let Some(e) = self.live(msg) {
                    let uidl = e.msg.uidl.clone();
                    self.ok(&format!("{msg} {uidl}"));
                }
            }
            C::List(None) => {
                let (n, size) = self.totals();
                self.ok(&format!("{n} messages ({size} octets)"));
                self.mode = Mode::Listing {
                    kind: Listing::Sizes,
                    next: 0,
                };
            }
            C::Uidl(None) => {
                self.ok("Unique-ID listing follows");
                self.mode = Mode::Listing {
                    kind: Listing::Uidls,
                    next: 0,
                };
            }
            C::Retr(msg) => {
                if self.live(msg).is_some() {
                    self.mode = Mode::Fetching { msg, top: None };
                    self.events.push_back(Event::Retr { msg });
                }
            }
            C::Top { msg, lines } => {
                if self.live(msg).is_some() {
                    self.mode = Mode::Fetching {
                        msg,
                        top: Some(lines),
                    };
                    self.events.push_back(Event::Top { msg, lines });
                }
            }
            C::Dele(msg) => {
                if self.live(msg).is_some() {
                    if let Some(e) = self.entry_mut(msg) {
                        e.deleted = true;
                    }
                    self.ok(&format!("Message {msg} deleted"));
                }
            }
            C::Rset => {
                self.messages.iter_mut().for_each(|e| e.deleted = false);
                let (n, size) = self.totals();
                self.ok(&format!("Maildrop has {n} messages ({size} octets)"));
            }
            C::Noop => self.ok("Done"),
        }
    }

    fn step_listing(&mut self) -> bool {
        let Mode::Listing { kind, next } = &mut self.mode else {
            return false;
        };
        let kind = *kind;
        let mut i = *next;
        if self.output.len() >= self.config.output_limit {
            return false;
        }
        while i < self.messages.len() && self.output.len() < self.config.output_limit {
            let e = &self.messages[i];
            i += 1;
            if e.deleted {
                continue;
            }
            let line = match kind {
                Listing::Sizes => format!("{i} {}\r\n", e.msg.size),
                Listing::Uidls => format!("{i} {}\r\n", e.msg.uidl),
            };
            self.output.extend_from_slice(line.as_bytes());
        }
        if i < self.messages.len() {
            self.mode = Mode::Listing { kind, next: i };
            return false;
        }
        self.line(".");
        self.mode = Mode::Commands;
        self.after_command();
        true
    }

    fn login(&mut self, user: String, pass: String) {
        self.user = Some(user.clone());
        self.mode = Mode::Login;
        self.events.push_back(Event::Login { user, pass });
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`, base64 (`=` or nothing for empty).
    fn auth_plain(&mut self, response: &str) {
        let response = if response == "=" { "" } else { response };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(response) else {
            return self.bad("Invalid base64");
        };
        let mut parts = decoded.split(|&b| b == 0);
        let fields = (parts.next(), parts.next(), parts.next(), parts.next());
        let (Some(authzid), Some(user), Some(pass), None) = fields else {
            return self.bad("Malformed PLAIN response");
        };
        let (Ok(authzid), Ok(user), Ok(pass)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(user),
            std::str::from_utf8(pass),
        ) else {
            return self.bad("Malformed PLAIN response");
        };
        if user.is_empty() {
            return self.bad("Malformed PLAIN response");
        }
        if !authzid.is_empty() && authzid != user {
            // Acting as another user is not supported: a failed login (RFC 4616 2).
            self.auth_failures += 1;
            self.err(Some(RespCode::Auth), "Authentication failed");
            if self.auth_failures >= self.config.max_auth_failures {
                self.close();
            }
            return;
        }
        self.login(user.to_string(), pass.to_string());
    }

    fn step_auth_response(&mut self) -> bool {
        let buf = std::mem::take(&mut self.input);
        let progressed = match parse_auth_response(&buf[self.pos..], &self.config.limits) {
            Ok((consumed, resp)) => {
                self.pos += consumed;
                self.mode = Mode::Commands;
                match resp {
                    AuthResponse::Cancel => self.err(None, "Authentication cancelled"),
                    AuthResponse::Response(r) => self.auth_plain(r),
                }
                true
            }
            Err(ParseError::Incomplete) => false,
            Err(ParseError::Bad { consumed, .. }) => {
                self.pos += consumed;
                self.mode = Mode::Commands;
                self.bad("Invalid base64");
                true
            }
            Err(ParseError::TooLong) => {
                self.pos = buf.len();
                self.mode = Mode::DiscardLine;
                self.bad("Response too long");
                true
            }
        };
        if !self.is_closed() {
            self.input = buf;
        }
        progressed
    }
}

impl Protocol for Session {
    fn feed(&mut self, now: Instant, data: &[u8]) {
        Session::feed(self, now, data);
    }

    fn take_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    fn take_starttls(&mut self) -> bool {
        std::mem::take(&mut self.starttls_requested)
    }

    fn tls_established(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        if matches!(self.mode, Mode::AwaitTls) {
            self.mode = Mode::Commands;
        }
    }

    fn wants_close(&self) -> bool {
        self.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(top: Option<u32>, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = Stuffer::new(top);
        let mut out = Vec::new();
        for c in chunks {
            if !s.write(c, &mut out) {
                break;
            }
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn stuffing_in_one_piece() {
        assert_eq!(stuff(None, &[b"a\r\n.b\r\n"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff(None, &[b"a\n.\nb"]), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(stuff(None, &[]), b".\r\n");
    }

    /// Whole and cut at every point, the same octets.
    fn stuff_any_split(top: Option<u32>, data: &[u8]) -> Vec<u8> {
        let whole = stuff(top, &[data]);
        for cut in 0..=data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(stuff(top, &[a, b]), whole, "cut at {cut} of {data:?}");
        }
        whole
    }

    #[test]
    fn bare_cr_and_lf_end_their_lines() {
        // A bare CR ends the line as a bare LF does, so a `.` after it is stuffed: no
        // client can find the response's end inside the message.
        assert_eq!(
            stuff_any_split(None, b"a\r.\rb\r\n.\nc\r"),
            b"a\r\n..\r\nb\r\n..\r\nc\r\n.\r\n"
        );
        assert_eq!(stuff_any_split(None, b"\r\r\n\n"), b"\r\n\r\n\r\n.\r\n");
        // TOP counts lines ended any way: header, empty line, then one body line.
        assert_eq!(
            stuff_any_split(Some(1), b"S: x\r\rone\rtwo\r\n"),
            b"S: x\r\n\r\none\r\n.\r\n"
        );
    }

    #[test]
    fn fuzz_regression_bare_cr_inside_a_line() {
        // pop3_session: a message line with a CR in it went out as one line with a bare CR.
        let out = stuff(None, &[b"\0E\rT-\r\n"]);
        assert_eq!(out, b"\0E\r\nT-\r\n.\r\n");
    }
}
