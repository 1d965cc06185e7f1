//! The SMTP server session: a pure state machine in the shape of DESIGN.md.
//!
//! Bytes in ([`Session::feed`]), events out ([`Session::poll_event`]), decisions back in
//! ([`Session::answer`]), bytes to send ([`Session::take_output`]) and time in
//! ([`Session::poll_timeout`] / [`Session::handle_timeout`]). While an event waits for its
//! answer the session processes nothing more and keeps buffering pipelined input, so replies
//! always leave in command order (RFC 2920).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::command::{
    AuthMechanism, BodyType, Command, ForwardPath, InitialResponse, Mailbox, ParseError,
    ReversePath,
};
use super::data::{BareLineEndings, Decoded, DotDecoder};
use super::parse::parse_command;
use super::reply::Reply;
use crate::tls::{Protocol, TlsInfo};

/// Body chunks are handed out once this many bytes are decoded, or at the end of a message.
const BODY_CHUNK: usize = 64 * 1024;

/// Input buffer capacity kept while idle; a larger one (after a big DATA) is released.
const IDLE_INPUT_CAPACITY: usize = 4 * 1024;

/// Whether a listener offers STARTTLS, and whether it insists on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// Not offered (also the only sensible value on an implicit-TLS port).
    Off,
    /// Offered; mail is accepted in cleartext too (port 25).
    Offer,
    /// Offered, and MAIL and AUTH are refused until TLS is up (port 587).
    Required,
}

/// Whether a listener offers SMTP AUTH. Credentials are never taken over cleartext,
/// whatever this says: AUTH is advertised and accepted only once TLS is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    /// No AUTH (port 25 for inbound mail).
    Off,
    /// AUTH required before MAIL (ports 587 and 465).
    Required,
}

/// Per-listener settings of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_size: u64,
    /// Longest command line accepted, CRLF included (RFC 5321 4.5.3.1.4 sets 512 as a floor).
    pub max_line_length: usize,
    pub max_recipients: usize,
    pub starttls: StartTls,
    pub auth: AuthPolicy,
    pub bare_line_endings: BareLineEndings,
    /// How long to wait for the next command (RFC 5321 4.5.3.2.7: at least 5 minutes).
    pub command_timeout: Duration,
    /// How long to wait for more DATA/BDAT octets (RFC 5321 4.5.3.2.5: 3 minutes).
    pub data_timeout: Duration,
    /// Rejected commands tolerated before the session is closed with 421.
    pub max_errors: u32,
    /// Failed AUTH attempts tolerated before the session is closed with 421.
    pub max_auth_failures: u32,
}

impl SessionConfig {
    /// Settings for a listener: the rest at RFC-conformant defaults.
    pub fn new(hostname: impl Into<String>) -> Self {
        SessionConfig {
            hostname: hostname.into(),
            max_message_size: 10_240_000,
            max_line_length: 2048,
            max_recipients: 100,
            starttls: StartTls::Off,
            auth: AuthPolicy::Off,
            bare_line_endings: BareLineEndings::Reject,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_errors: 10,
            max_auth_failures: 3,
        }
    }
}

/// An envelope address, owned, with quoting removed from the local part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub local: String,
    /// A domain name, or an address literal with its brackets: `[192.0.2.1]`.
    pub domain: String,
}

impl Address {
    fn from_mailbox(m: &Mailbox<'_>) -> Self {
        let domain = match m.domain {
            super::command::Domain::Name(d) => d.to_string(),
            super::command::Domain::Literal(d) => format!("[{d}]"),
        };
        Address {
            local: m.local.unquoted().into_owned(),
            domain,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The SASL mechanism an [`Event::Auth`] came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Login,
}

/// What the session needs the application to know or decide.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Check these credentials; answer with [`Answer::Accept`] or a 535 rejection.
    Auth {
        mechanism: SaslMechanism,
        authzid: String,
        username: String,
        password: String,
    },
    /// A new transaction; answer to accept or reject the sender.
    Mail {
        /// `None` for the null reverse-path `<>`.
        from: Option<Address>,
        size: Option<u64>,
        body: Option<BodyType>,
        smtputf8: bool,
    },
    /// A recipient; answer to accept or reject it.
    Rcpt {
        /// `None` for `<Postmaster>` without a domain.
        to: Option<Address>,
    },
    /// The message body begins (DATA accepted, or the first BDAT chunk). No answer.
    DataStart,
    /// Message octets: dot-unstuffed for DATA, verbatim for BDAT. No answer.
    Body(Vec<u8>),
    /// The whole message has arrived: answer [`Answer::Queued`] once it is durable.
    MessageEnd,
    /// The current transaction is abandoned (RSET, new EHLO, rejected body, timeout):
    /// drop its recipients and any partial message. No answer.
    Reset,
}

/// The application's decision on the event awaiting one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accept,
    /// For [`Event::MessageEnd`]: the message is durable under this queue id.
    Queued(String),
    Reject(Reply),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Auth,
    Mail,
    Rcpt,
    MessageEnd,
}

/// What the session is reading.
#[derive(Debug)]
enum Mode {
    Commands,
    /// Skipping the rest of an overlong command line.
    DiscardLine,
    /// Between `DATA` and `CRLF.CRLF`.
    Data(DotDecoder),
    /// Inside a BDAT chunk: `remaining` octets still to come.
    Bdat {
        remaining: u64,
        last: bool,
        keep: bool,
    },
    /// Waiting for an AUTH continuation line.
    AuthPlain,
    AuthLoginUser,
    AuthLoginPass {
        username: String,
    },
    /// Waiting for the application.
    Pending(Pending),
    /// `220 Ready to start TLS` is queued: input is discarded until the handshake is done.
    AwaitTls,
    Closed,
}

#[derive(Debug, Default)]
struct Transaction {
    smtputf8: bool,
    recipients: usize,
    /// DATA or BDAT has begun: the application holds a partial message.
    body_started: bool,
    body_size: u64,
    too_big: bool,
    bare_line_ending: bool,
    /// Set by a failed BDAT chunk: later chunks of the same message are answered 503.
    failed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    Helo,
    Ehlo,
}

/// One SMTP server session.
pub struct Session {
    config: Arc<SessionConfig>,
    mode: Mode,
    input: Vec<u8>,
    /// Start of unprocessed input in `input`.
    pos: usize,
    output: Vec<u8>,
    events: std::collections::VecDeque<Event>,
    greeting: Option<Greeting>,
    helo_name: Option<String>,
    txn: Option<Transaction>,
    authenticated: Option<String>,
    tls: Option<TlsInfo>,
    /// TLS from the first byte: STARTTLS is meaningless.
    implicit_tls: bool,
    starttls_requested: bool,
    body: Vec<u8>,
    errors: u32,
    auth_failures: u32,
    deadline: Option<Instant>,
    shutting_down: bool,
    /// Set when buffered input must be dropped (STARTTLS, close) while a line is parsed.
    discard: bool,
    /// The user named in the AUTH event awaiting an answer.
    pending_user: Option<String>,
}

impl Session {
    /// A session whose greeting is queued. `implicit_tls` is set on ports that are TLS from
    /// the first byte; the TLS layer still reports the handshake through `tls_established`.
    pub fn new(config: Arc<SessionConfig>, implicit_tls: bool, now: Instant) -> Self {
        let mut s = Session {
            mode: Mode::Commands,
            input: Vec::new(),
            pos: 0,
            output: Vec::with_capacity(512),
            events: Default::default(),
            greeting: None,
            helo_name: None,
            txn: None,
            authenticated: None,
            tls: None,
            implicit_tls,
            starttls_requested: false,
            body: Vec::new(),
            errors: 0,
            auth_failures: 0,
            deadline: Some(now + config.command_timeout),
            shutting_down: false,
            discard: false,
            pending_user: None,
            config,
        };
        let text = format!("{} ESMTP ironpost", s.config.hostname);
        s.reply(Reply::new(220, None, text));
        s
    }

    /// The name the client gave in EHLO/HELO.
    pub fn helo_name(&self) -> Option<&str> {
        self.helo_name.as_deref()
    }

    /// The user an AUTH succeeded for.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Whether the client greeted with EHLO (ESMTP) rather than HELO.
    pub fn is_esmtp(&self) -> bool {
        self.greeting == Some(Greeting::Ehlo)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// Unprocessed input held, for back-pressure.
    pub fn buffered_input(&self) -> usize {
        self.input.len() - self.pos
    }

    /// True while an event waits for [`Session::answer`].
    pub fn is_waiting(&self) -> bool {
        matches!(self.mode, Mode::Pending(_))
    }

    /// Plaintext from the client.
    pub fn feed(&mut self, now: Instant, data: &[u8]) {
        if matches!(self.mode, Mode::AwaitTls | Mode::Closed) || data.is_empty() {
            return;
        }
        if self.pos > 0 && self.pos >= self.input.len() / 2 {
            // Keep consumed input from piling up in front of a stream of pipelined commands.
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(data);
        if !self.is_waiting() {
            self.arm_timer(now);
        }
    }

    fn arm_timer(&mut self, now: Instant) {
        let t = match self.mode {
            Mode::Data(_) | Mode::Bdat { .. } => self.config.data_timeout,
            _ => self.config.command_timeout,
        };
        self.deadline = Some(now + t);
    }

    /// Processes buffered input as far as it can and returns the next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            if !self.step() {
                return None;
            }
        }
    }

    /// The application's answer to the event awaiting one.
    pub fn answer(&mut self, now: Instant, answer: Answer) {
        let Mode::Pending(p) = self.mode else {
            // The session may have closed while the application worked on its answer (the
            // peer went away, or the server is shutting down): nothing is left to answer.
            debug_assert!(self.is_closed(), "answer without a pending event");
            return;
        };
        self.mode = Mode::Commands;
        self.arm_timer(now);
        match (p, answer) {
            (Pending::Auth, Answer::Accept | Answer::Queued(_)) => {
                self.authenticated = self.pending_user.take();
                self.reply(Reply::ext(235, 2, 7, 0, "Authentication successful"));
            }
            (Pending::Auth, Answer::Reject(r)) => {
                self.pending_user = None;
                self.auth_failures += 1;
                self.reply(r);
                if self.auth_failures >= self.config.max_auth_failures {
                    self.close_with(Reply::ext(421, 4, 7, 0, "Too many failed authentications"));
                }
            }
            (Pending::Mail, Answer::Accept | Answer::Queued(_)) => {
                self.reply(Reply::ext(250, 2, 1, 0, "Ok"));
            }
            (Pending::Mail, Answer::Reject(r)) => {
                self.txn = None;
                self.reply(r);
            }
            (Pending::Rcpt, Answer::Accept | Answer::Queued(_)) => {
                if let Some(t) = self.txn.as_mut() {
                    t.recipients += 1;
                }
                self.reply(Reply::ext(250, 2, 1, 5, "Ok"));
            }
            (Pending::Rcpt, Answer::Reject(r)) => self.reply(r),
            (Pending::MessageEnd, a) => {
                self.txn = None;
                match a {
                    Answer::Queued(id) => {
                        self.reply(Reply::ext(250, 2, 0, 0, format!("Ok: queued as {id}")))
                    }
                    Answer::Accept => self.reply(Reply::ext(250, 2, 0, 0, "Ok: queued")),
                    Answer::Reject(r) => self.reply(r),
                }
                if self.shutting_down {
                    self.close_shutdown();
                }
            }
        }
    }

    /// When [`Session::handle_timeout`] should be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.mode {
            Mode::Pending(_) | Mode::Closed | Mode::AwaitTls => None,
            _ => self.deadline,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.poll_timeout() {
            Some(d) if now >= d => {}
            _ => return,
        }
        self.abandon_transaction();
        let text = format!("{} Error: timeout exceeded", self.config.hostname);
        self.close_with(Reply::ext(421, 4, 4, 2, text));
    }

    /// The server is stopping: close now if idle, else after the message in flight.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        match self.mode {
            Mode::Data(_) | Mode::Bdat { .. } | Mode::Pending(Pending::MessageEnd) => {}
            Mode::Closed => {}
            _ => {
                if self.txn.as_ref().is_some_and(|t| t.body_started) {
                    return;
                }
                self.close_shutdown();
            }
        }
    }

    fn close_shutdown(&mut self) {
        self.abandon_transaction();
        let text = format!(
            "{} Service shutting down, closing transmission channel",
            self.config.hostname
        );
        self.close_with(Reply::ext(421, 4, 3, 2, text));
    }

    /// The peer went away: whatever was in flight is abandoned.
    pub fn peer_closed(&mut self) {
        self.abandon_transaction();
        self.mode = Mode::Closed;
    }

    fn abandon_transaction(&mut self) {
        if self.txn.take().is_some() {
            self.body.clear();
            self.events.push_back(Event::Reset);
        }
    }

    fn close_with(&mut self, r: Reply) {
        self.reply(r);
        self.mode = Mode::Closed;
        self.discard_input();
    }

    fn discard_input(&mut self) {
        self.input.clear();
        self.pos = 0;
        self.discard = true;
    }

    fn reply(&mut self, r: Reply) {
        r.write_to(&mut self.output, true);
    }

    /// One unit of progress; false when nothing more can be done without input or an answer.
    fn step(&mut self) -> bool {
        if self.pos == self.input.len() && self.pos > 0 {
            // All input handled: an idle session should not keep a large buffer around.
            if self.input.capacity() > IDLE_INPUT_CAPACITY {
                self.input = Vec::new();
            } else {
                self.input.clear();
            }
            self.pos = 0;
        }
        match self.mode {
            Mode::Pending(_) | Mode::AwaitTls | Mode::Closed => false,
            Mode::Data(_) => self.step_data(),
            Mode::Bdat { .. } => self.step_bdat(),
            Mode::DiscardLine => {
                let rest = &self.input[self.pos..];
                match crate::scan::find_lf(rest) {
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
            Mode::Commands | Mode::AuthPlain | Mode::AuthLoginUser | Mode::AuthLoginPass { .. } => {
                self.step_line()
            }
        }
    }

    fn step_line(&mut self) -> bool {
        let rest = &self.input[self.pos..];
        let max = self.config.max_line_length;
        let Some(nl) = crate::scan::find_lf(rest) else {
            if rest.len() >= max {
                self.pos = self.input.len();
                self.line_too_long();
                // Unless that was one error too many and the session is closed.
                if !self.is_closed() {
                    self.mode = Mode::DiscardLine;
                }
                return true;
            }
            return false;
        };
        let start = self.pos;
        self.pos += nl + 1;
        if nl + 1 > max {
            self.line_too_long();
            return true;
        }
        let mut end = start + nl;
        if end > start && self.input[end - 1] == b'\r' {
            end -= 1;
        }
        // Parse in place: the buffer is moved out so the borrowed command and `&mut self`
        // can live side by side without copying the line.
        let mut buf = std::mem::take(&mut self.input);
        self.discard = false;
        let line = &buf[start..end];
        match std::mem::replace(&mut self.mode, Mode::Commands) {
            Mode::AuthPlain => self.auth_plain_response(line),
            Mode::AuthLoginUser => self.auth_login_user(line),
            Mode::AuthLoginPass { username } => self.auth_login_pass(line, username),
            _ => match parse_command(line) {
                Ok(cmd) => self.command(cmd),
                Err(e) => self.parse_error(e),
            },
        }
        if std::mem::take(&mut self.discard) {
            buf.clear();
            self.pos = 0;
        }
        self.input = buf;
        true
    }

    fn line_too_long(&mut self) {
        if matches!(
            self.mode,
            Mode::AuthPlain | Mode::AuthLoginUser | Mode::AuthLoginPass { .. }
        ) {
            self.mode = Mode::Commands;
        }
        self.error(Reply::ext(500, 5, 5, 2, "Line too long"));
    }

    /// A rejected command; enough of them and the session ends.
    fn error(&mut self, r: Reply) {
        self.reply(r);
        self.errors += 1;
        if self.errors >= self.config.max_errors && !self.is_closed() {
            self.abandon_transaction();
            self.close_with(Reply::ext(
                421,
                4,
                7,
                0,
                "Too many errors, closing connection",
            ));
        }
    }

    fn parse_error(&mut self, e: ParseError) {
        let r = match e {
            ParseError::UnknownCommand => Reply::ext(500, 5, 5, 1, "Command not recognized"),
            ParseError::Syntax => {
                Reply::ext(501, 5, 5, 4, "Syntax error in parameters or arguments")
            }
            ParseError::BadAddress => Reply::ext(501, 5, 1, 3, "Bad address syntax"),
            ParseError::BadParameter => {
                Reply::ext(555, 5, 5, 4, "Unsupported or malformed parameter")
            }
            ParseError::BadEncoding => Reply::ext(500, 5, 5, 2, "Invalid characters in command"),
        };
        self.error(r);
    }

    fn tls_active(&self) -> bool {
        self.tls.is_some() || self.implicit_tls
    }

    fn starttls_offered(&self) -> bool {
        !self.tls_active() && self.config.starttls != StartTls::Off
    }

    fn auth_offered(&self) -> bool {
        self.tls_active() && self.config.auth != AuthPolicy::Off
    }

    fn command(&mut self, cmd: Command<'_>) {
        match cmd {
            Command::Ehlo(name) => self.hello(Greeting::Ehlo, name),
            Command::Helo(name) => self.hello(Greeting::Helo, name),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to } => self.rcpt(to),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.abandon_transaction();
                self.reply(Reply::ext(250, 2, 0, 0, "Ok"));
            }
            Command::Noop => self.reply(Reply::ext(250, 2, 0, 0, "Ok")),
            Command::Quit => {
                self.abandon_transaction();
                let text = format!("{} closing connection", self.config.hostname);
                self.close_with(Reply::ext(221, 2, 0, 0, text));
            }
            Command::Vrfy(_) => self.reply(Reply::ext(
                252,
                2,
                5,
                2,
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Help(_) => self.reply(Reply::ext(
                214,
                2,
                0,
                0,
                "ironpost: commands are EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            )),
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
        }
    }

    fn hello(&mut self, kind: Greeting, name: &str) {
        self.abandon_transaction();
        self.greeting = Some(kind);
        self.helo_name = Some(name.to_string());
        let host = &self.config.hostname;
        if kind == Greeting::Helo {
            let text = host.clone();
            self.reply(Reply::new(250, None, text));
            return;
        }
        let mut text = format!(
            "{host}\nPIPELINING\nSIZE {}\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nCHUNKING",
            self.config.max_message_size
        );
        if self.starttls_offered() {
            text.push_str("\nSTARTTLS");
        }
        if self.auth_offered() {
            text.push_str("\nAUTH PLAIN LOGIN");
        }
        self.reply(Reply::new(250, None, text));
    }

    fn require_greeting(&mut self) -> bool {
        if self.greeting.is_none() {
            self.error(Reply::ext(503, 5, 5, 1, "Send EHLO/HELO first"));
            return false;
        }
        true
    }

    fn mail(&mut self, from: ReversePath<'_>, params: super::command::MailParams<'_>) {
        if !self.require_greeting() {
            return;
        }
        if self.config.starttls == StartTls::Required && !self.tls_active() {
            return self.error(Reply::ext(
                530,
                5,
                7,
                0,
                "Must issue a STARTTLS command first",
            ));
        }
        if self.config.auth == AuthPolicy::Required && self.authenticated.is_none() {
            return self.error(Reply::ext(530, 5, 7, 0, "Authentication required"));
        }
        if self.txn.is_some() {
            return self.error(Reply::ext(503, 5, 5, 1, "Nested MAIL command"));
        }
        let has_params = params.size.is_some()
            || params.body.is_some()
            || params.smtputf8
            || params.auth.is_some();
        if self.greeting == Some(Greeting::Helo) && has_params {
            return self.error(Reply::ext(555, 5, 5, 4, "ESMTP parameters need EHLO"));
        }
        if params
            .size
            .is_some_and(|s| s > self.config.max_message_size)
        {
            return self.reply(Reply::ext(
                552,
                5,
                3,
                4,
                "Message size exceeds fixed maximum message size",
            ));
        }
        let from = match from {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => {
                if !params.smtputf8 && !m.is_ascii() {
                    return self.reply(Reply::ext(
                        553,
                        5,
                        6,
                        7,
                        "Non-ASCII address needs SMTPUTF8",
                    ));
                }
                Some(Address::from_mailbox(&m))
            }
        };
        self.txn = Some(Transaction {
            smtputf8: params.smtputf8,
            ..Default::default()
        });
        self.mode = Mode::Pending(Pending::Mail);
        self.events.push_back(Event::Mail {
            from,
            size: params.size,
            body: params.body,
            smtputf8: params.smtputf8,
        });
    }

    fn rcpt(&mut self, to: ForwardPath<'_>) {
        let Some(txn) = self.txn.as_ref() else {
            return self.error(Reply::ext(503, 5, 5, 1, "Need MAIL command"));
        };
        if txn.body_started {
            return self.error(Reply::ext(503, 5, 5, 1, "Bad sequence of commands"));
        }
        if txn.recipients >= self.config.max_recipients {
            return self.reply(Reply::ext(452, 4, 5, 3, "Too many recipients"));
        }
        let to = match to {
            ForwardPath::Postmaster => None,
            ForwardPath::Mailbox(m) => {
                if !txn.smtputf8 && !m.is_ascii() {
                    return self.reply(Reply::ext(
                        553,
                        5,
                        6,
                        7,
                        "Non-ASCII address needs SMTPUTF8",
                    ));
                }
                Some(Address::from_mailbox(&m))
            }
        };
        self.mode = Mode::Pending(Pending::Rcpt);
        self.events.push_back(Event::Rcpt { to });
    }

    /// Checks shared by DATA and BDAT; `Err` carries the reply to send.
    fn body_allowed(&self) -> Result<(), Reply> {
        match self.txn.as_ref() {
            None => Err(Reply::ext(503, 5, 5, 1, "Need MAIL command")),
            Some(t) if t.failed => Err(Reply::ext(503, 5, 5, 1, "Transaction failed, send RSET")),
            Some(t) if t.recipients == 0 => Err(Reply::ext(554, 5, 5, 1, "No valid recipients")),
            Some(_) => Ok(()),
        }
    }

    fn data(&mut self) {
        if let Err(r) = self.body_allowed() {
            return self.error(r);
        }
        let txn = self.txn.as_mut().expect("checked");
        if txn.body_started {
            return self.error(Reply::ext(503, 5, 5, 1, "DATA cannot follow BDAT"));
        }
        txn.body_started = true;
        self.reply(Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"));
        self.mode = Mode::Data(DotDecoder::new(self.config.bare_line_endings));
        self.events.push_back(Event::DataStart);
    }

    fn bdat(&mut self, size: u64, last: bool) {
        // The chunk's octets follow whatever we answer, so they are always read (RFC 3030 2).
        let keep = match self.body_allowed() {
            Ok(()) => true,
            Err(r) => {
                self.error(r);
                if self.is_closed() {
                    return;
                }
                false
            }
        };
        if keep {
            let txn = self.txn.as_mut().expect("checked");
            if !txn.body_started {
                txn.body_started = true;
                self.events.push_back(Event::DataStart);
            }
        }
        self.mode = Mode::Bdat {
            remaining: size,
            last,
            keep,
        };
        if size == 0 {
            self.end_bdat_chunk();
        }
    }

    fn step_data(&mut self) -> bool {
        let Mode::Data(dec) = &mut self.mode else {
            unreachable!()
        };
        let start = self.pos;
        if start == self.input.len() {
            return false;
        }
        let txn = self.txn.as_mut().expect("DATA runs inside a transaction");
        let before = self.body.len();
        // A bounded slice per step keeps the decoded body within one chunk of the input.
        let end = self.input.len().min(start + BODY_CHUNK);
        let (consumed, outcome) = dec.decode(&self.input[start..end], &mut self.body);
        self.pos += consumed;
        let produced = (self.body.len() - before) as u64;
        txn.body_size += produced;
        if txn.body_size > self.config.max_message_size {
            txn.too_big = true;
            self.body.clear();
        }
        if dec.saw_bare_line_ending() && self.config.bare_line_endings == BareLineEndings::Reject {
            txn.bare_line_ending = true;
        }
        match outcome {
            Decoded::NeedMore => {
                if self.body.len() >= BODY_CHUNK && !txn.too_big {
                    self.events
                        .push_back(Event::Body(std::mem::take(&mut self.body)));
                }
                true
            }
            Decoded::End => {
                self.mode = Mode::Commands;
                self.finish_message();
                true
            }
        }
    }

    fn step_bdat(&mut self) -> bool {
        let Mode::Bdat {
            remaining, keep, ..
        } = &mut self.mode
        else {
            unreachable!()
        };
        let avail = (self.input.len() - self.pos) as u64;
        if avail == 0 {
            return false;
        }
        let n = avail.min(*remaining) as usize;
        *remaining -= n as u64;
        let (keep, done) = (*keep, *remaining == 0);
        let chunk = &self.input[self.pos..self.pos + n];
        self.pos += n;
        if keep {
            let txn = self
                .txn
                .as_mut()
                .expect("kept BDAT runs inside a transaction");
            txn.body_size += n as u64;
            if txn.body_size > self.config.max_message_size {
                txn.too_big = true;
                self.body.clear();
            } else {
                self.body.extend_from_slice(chunk);
            }
        }
        if done {
            self.end_bdat_chunk();
            return true;
        }
        if self.body.len() >= BODY_CHUNK {
            self.events
                .push_back(Event::Body(std::mem::take(&mut self.body)));
            return true;
        }
        false
    }

    fn end_bdat_chunk(&mut self) {
        let Mode::Bdat { last, keep, .. } = self.mode else {
            unreachable!()
        };
        self.mode = Mode::Commands;
        if !keep {
            return;
        }
        let txn = self
            .txn
            .as_mut()
            .expect("kept BDAT runs inside a transaction");
        if txn.too_big {
            txn.failed = true;
            self.body.clear();
            self.events.push_back(Event::Reset);
            // The transaction stays, marked failed, so later chunks get 503 until RSET.
            self.reply(Reply::ext(
                552,
                5,
                3,
                4,
                "Message size exceeds fixed maximum message size",
            ));
            return;
        }
        if last {
            self.finish_message();
        } else {
            let size = txn.body_size;
            self.reply(Reply::ext(250, 2, 0, 0, format!("{size} octets received")));
            if self.body.len() >= BODY_CHUNK {
                self.events
                    .push_back(Event::Body(std::mem::take(&mut self.body)));
            }
        }
    }

    fn finish_message(&mut self) {
        let txn = self
            .txn
            .as_ref()
            .expect("a message ends inside a transaction");
        if txn.too_big {
            self.abandon_transaction();
            return self.reply(Reply::ext(
                552,
                5,
                3,
                4,
                "Message size exceeds fixed maximum message size",
            ));
        }
        if txn.bare_line_ending {
            self.abandon_transaction();
            return self.reply(Reply::ext(
                550,
                5,
                6,
                0,
                "Message contains bare CR or LF; lines must end with CRLF",
            ));
        }
        if !self.body.is_empty() {
            self.events
                .push_back(Event::Body(std::mem::take(&mut self.body)));
        }
        self.mode = Mode::Pending(Pending::MessageEnd);
        self.events.push_back(Event::MessageEnd);
    }

    fn starttls(&mut self) {
        if self.tls_active() {
            return self.error(Reply::ext(503, 5, 5, 1, "TLS already active"));
        }
        if self.config.starttls == StartTls::Off {
            return self.error(Reply::ext(502, 5, 5, 1, "STARTTLS not available"));
        }
        self.abandon_transaction();
        self.reply(Reply::ext(220, 2, 0, 0, "Ready to start TLS"));
        // RFC 3207 4.2: everything learned in cleartext is forgotten, and nothing the client
        // pipelined after STARTTLS may be acted on.
        self.greeting = None;
        self.helo_name = None;
        self.discard_input();
        self.mode = Mode::AwaitTls;
        self.starttls_requested = true;
    }

    fn auth(&mut self, mechanism: AuthMechanism<'_>, initial: Option<InitialResponse<'_>>) {
        if self.config.auth == AuthPolicy::Off {
            return self.error(Reply::ext(502, 5, 5, 1, "AUTH not available"));
        }
        if !self.tls_active() {
            return self.error(Reply::ext(
                538,
                5,
                7,
                11,
                "Encryption required for requested authentication mechanism",
            ));
        }
        if !self.require_greeting() {
            return;
        }
        if self.greeting != Some(Greeting::Ehlo) {
            return self.error(Reply::ext(503, 5, 5, 1, "AUTH needs EHLO"));
        }
        if self.authenticated.is_some() {
            return self.error(Reply::ext(503, 5, 5, 1, "Already authenticated"));
        }
        if self.txn.is_some() {
            return self.error(Reply::ext(
                503,
                5,
                5,
                1,
                "AUTH not permitted during a mail transaction",
            ));
        }
        match (mechanism, initial) {
            (AuthMechanism::Plain, None) => {
                self.reply(Reply::new(334, None, ""));
                self.mode = Mode::AuthPlain;
            }
            (AuthMechanism::Plain, Some(ir)) => {
                let data = match ir {
                    InitialResponse::Empty => Vec::new(),
                    InitialResponse::Base64(b) => match decode64(b.as_bytes()) {
                        Some(d) => d,
                        None => return self.bad_base64(),
                    },
                };
                self.auth_plain_decoded(&data);
            }
            (AuthMechanism::Login, None) => {
                self.reply(Reply::new(334, None, "VXNlcm5hbWU6"));
                self.mode = Mode::AuthLoginUser;
            }
            (AuthMechanism::Login, Some(ir)) => {
                let user = match ir {
                    InitialResponse::Empty => Vec::new(),
                    InitialResponse::Base64(b) => match decode64(b.as_bytes()) {
                        Some(d) => d,
                        None => return self.bad_base64(),
                    },
                };
                self.login_have_user(user);
            }
            (AuthMechanism::Other(_), _) => {
                self.error(Reply::ext(504, 5, 5, 4, "Unrecognized authentication type"));
            }
        }
    }

    fn bad_base64(&mut self) {
        self.mode = Mode::Commands;
        self.error(Reply::ext(501, 5, 5, 2, "Invalid base64 data"));
    }

    fn cancelled(&mut self, line: &[u8]) -> bool {
        if line == b"*" {
            self.mode = Mode::Commands;
            self.error(Reply::ext(501, 5, 0, 0, "Authentication cancelled"));
            return true;
        }
        false
    }

    fn auth_plain_response(&mut self, line: &[u8]) {
        if self.cancelled(line) {
            return;
        }
        match decode64(line) {
            Some(d) => self.auth_plain_decoded(&d),
            None => self.bad_base64(),
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`.
    fn auth_plain_decoded(&mut self, data: &[u8]) {
        let mut parts = data.split(|&b| b == 0);
        let (Some(authzid), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.bad_credentials_syntax();
        };
        let (Ok(authzid), Ok(user), Ok(pass)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(user),
            std::str::from_utf8(pass),
        ) else {
            return self.bad_credentials_syntax();
        };
        if user.is_empty() {
            return self.bad_credentials_syntax();
        }
        // No user may act as another (RFC 4616 2): an authorization identity is only
        // accepted when it names the authenticating user.
        if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(user) {
            self.mode = Mode::Commands;
            self.auth_failures += 1;
            self.reply(Reply::ext(
                535,
                5,
                7,
                8,
                "Authentication credentials invalid",
            ));
            if self.auth_failures >= self.config.max_auth_failures {
                self.close_with(Reply::ext(421, 4, 7, 0, "Too many failed authentications"));
            }
            return;
        }
        self.mode = Mode::Pending(Pending::Auth);
        self.pending_user = Some(user.to_string());
        self.events.push_back(Event::Auth {
            mechanism: SaslMechanism::Plain,
            authzid: authzid.to_string(),
            username: user.to_string(),
            password: pass.to_string(),
        });
    }

    fn bad_credentials_syntax(&mut self) {
        self.mode = Mode::Commands;
        self.error(Reply::ext(501, 5, 5, 2, "Malformed authentication data"));
    }

    fn auth_login_user(&mut self, line: &[u8]) {
        if self.cancelled(line) {
            return;
        }
        match decode64(line) {
            Some(user) => self.login_have_user(user),
            None => self.bad_base64(),
        }
    }

    fn login_have_user(&mut self, user: Vec<u8>) {
        match String::from_utf8(user) {
            Ok(username) if !username.is_empty() => {
                self.reply(Reply::new(334, None, "UGFzc3dvcmQ6"));
                self.mode = Mode::AuthLoginPass { username };
            }
            _ => self.bad_credentials_syntax(),
        }
    }

    fn auth_login_pass(&mut self, line: &[u8], username: String) {
        if self.cancelled(line) {
            return;
        }
        let Some(pass) = decode64(line) else {
            return self.bad_base64();
        };
        let Ok(password) = String::from_utf8(pass) else {
            return self.bad_credentials_syntax();
        };
        self.mode = Mode::Pending(Pending::Auth);
        self.pending_user = Some(username.clone());
        self.events.push_back(Event::Auth {
            mechanism: SaslMechanism::Login,
            authzid: String::new(),
            username,
            password,
        });
    }
}

fn decode64(data: &[u8]) -> Option<Vec<u8>> {
    if data == b"=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(data).ok()
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
