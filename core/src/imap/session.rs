//! The IMAP server session: protocol state (RFC 3501 3), literals, STARTTLS, authentication
//! and IDLE, as a pure state machine.
//!
//! The session answers what needs no mail store (CAPABILITY, LOGOUT, STARTTLS, ID,
//! NAMESPACE, ENABLE, the state rules) and hands every other command to the application as an
//! [`Event`]. The application writes the untagged responses ([`Session::write`]) and ends the
//! command with [`Session::complete`]; the session then applies the state change that the
//! outcome implies. One command runs at a time; pipelined commands wait in the input buffer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::parse::{
    parse_append_end, parse_append_utf8_end, parse_auth_response, parse_command, parse_idle_done,
    Limits, Needed, ParseError,
};
use super::types::{
    AuthMechanism, AuthResponse, CommandBody, DateTime, Flag, InitialResponse, Mailbox,
};
use crate::tls::{Protocol, TlsInfo};

/// APPEND message octets are handed out in chunks of at most this size.
const APPEND_CHUNK: usize = 64 * 1024;

/// Input buffer capacity kept while idle; a larger one is released.
const IDLE_INPUT_CAPACITY: usize = 4 * 1024;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Offer STARTTLS (port 143). Until TLS is up, LOGIN and AUTHENTICATE are refused and
    /// LOGINDISABLED is advertised: no credentials over cleartext.
    pub starttls: bool,
    pub limits: Limits,
    /// Capabilities of the mail store, advertised once authenticated (`UIDPLUS`, `MOVE`, ...).
    pub store_capabilities: Vec<&'static str>,
    /// RFC 3501 5.4: at least 30 minutes once authenticated.
    pub idle_timeout: Duration,
    /// Before authentication a client gets less time.
    pub login_timeout: Duration,
    pub max_auth_failures: u32,
    /// Malformed commands tolerated before the session ends with BYE.
    pub max_errors: u32,
    /// Largest message APPEND accepts, like SMTP's size limit.
    pub max_append_size: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            starttls: true,
            limits: Limits::DEFAULT,
            store_capabilities: Vec::new(),
            idle_timeout: Duration::from_secs(30 * 60),
            login_timeout: Duration::from_secs(60),
            max_auth_failures: 3,
            max_errors: 20,
            max_append_size: 10_240_000,
        }
    }
}

/// RFC 3501 3: the connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected { read_only: bool },
    Logout,
}

/// What the application is asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Check credentials; answer with [`Session::login_result`].
    Login {
        username: String,
        password: String,
    },
    /// A command for the mail store. Write its untagged responses, then [`Session::complete`].
    Command {
        tag: String,
        command: CommandBody<'static>,
    },
    /// An APPEND begins; its message follows as [`Event::AppendData`] chunks, then
    /// [`Event::AppendEnd`], after which the application completes the command.
    AppendStart {
        tag: String,
        mailbox: Mailbox<'static>,
        flags: Vec<Flag<'static>>,
        date: Option<DateTime>,
        size: u32,
    },
    AppendData(Vec<u8>),
    AppendEnd,
    /// The APPEND in progress will not complete (bad framing, disconnect): drop its message.
    AppendAborted,
    /// IDLE began: untagged updates may be written at any time until [`Event::IdleDone`].
    IdleStart,
    /// The client sent DONE; the session has answered the IDLE command.
    IdleDone,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        }
    }
}

/// What kind of command the application is working on, for the state change on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    Login,
    Select { read_only: bool },
    Deselect,
    Other,
    Append,
}

#[derive(Debug)]
enum Mode {
    Commands,
    /// Discarding an overlong line through its LF.
    DiscardLine,
    /// Waiting for a SASL response line of AUTHENTICATE PLAIN.
    AuthPlain {
        tag: String,
    },
    /// The application is working on the command with this tag.
    Running {
        tag: String,
        kind: Running,
    },
    /// Streaming an APPEND message: `remaining` octets still to come. `utf8`: the message
    /// is RFC 6855's `UTF8 (~{n}`, so a `)` ends it before the CRLF.
    AppendLiteral {
        tag: String,
        remaining: u32,
        utf8: bool,
    },
    /// After the APPEND message: the end of the command line (`)` first if `utf8`).
    AppendEnd {
        tag: String,
        utf8: bool,
    },
    /// The application holds the APPEND message and will complete it.
    AppendRunning {
        tag: String,
    },
    Idle {
        tag: String,
    },
    /// `OK Begin TLS` is queued: input is dropped until the handshake.
    AwaitTls,
    Closed,
}

pub struct Session {
    config: Arc<SessionConfig>,
    state: State,
    mode: Mode,
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
    events: std::collections::VecDeque<Event>,
    tls: Option<TlsInfo>,
    implicit_tls: bool,
    starttls_requested: bool,
    /// Offset (from `pos`) of the synchronising literal last given a `+` continuation.
    continued: Option<usize>,
    pending_user: Option<String>,
    user: Option<String>,
    auth_failures: u32,
    errors: u32,
    deadline: Option<Instant>,
    shutting_down: bool,
    /// Set while a command is parsed when the rest of the input must be dropped (STARTTLS).
    discard: bool,
    /// The client enabled UTF8=ACCEPT (RFC 6855): mailbox names are UTF-8 both ways.
    utf8: bool,
}

impl Session {
    pub fn new(config: Arc<SessionConfig>, implicit_tls: bool, now: Instant) -> Self {
        let mut s = Session {
            state: State::NotAuthenticated,
            mode: Mode::Commands,
            input: Vec::new(),
            pos: 0,
            output: Vec::with_capacity(256),
            events: Default::default(),
            tls: None,
            implicit_tls,
            starttls_requested: false,
            continued: None,
            pending_user: None,
            user: None,
            auth_failures: 0,
            errors: 0,
            deadline: Some(now + config.login_timeout),
            shutting_down: false,
            discard: false,
            utf8: false,
            config,
        };
        let caps = s.capabilities();
        s.line(&format!("* OK [CAPABILITY {caps}] ironpost ready"));
        s
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The user LOGIN or AUTHENTICATE succeeded for.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Whether the client enabled UTF8=ACCEPT (RFC 6855 3, RFC 9755): from then on mailbox
    /// names in commands are UTF-8 (not modified UTF-7) and responses must name mailboxes in
    /// UTF-8, and `SEARCH CHARSET` is refused. It stays on for the rest of the session.
    pub fn utf8_enabled(&self) -> bool {
        self.utf8
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// True while the application may write untagged updates on its own (IDLE).
    pub fn is_idling(&self) -> bool {
        matches!(self.mode, Mode::Idle { .. })
    }

    /// True while a command is with the application.
    pub fn is_running(&self) -> bool {
        matches!(self.mode, Mode::Running { .. } | Mode::AppendRunning { .. })
    }

    pub fn buffered_input(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Output not yet taken: the application streams large responses in bounded steps.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    fn tls_active(&self) -> bool {
        self.implicit_tls || self.tls.is_some()
    }

    /// The CAPABILITY list for the current state.
    pub fn capabilities(&self) -> String {
        let mut caps = vec![
            "IMAP4rev1",
            "SASL-IR",
            "LITERAL+",
            "ID",
            "ENABLE",
            "UTF8=ACCEPT",
            "IDLE",
        ];
        match self.state {
            State::NotAuthenticated => {
                if !self.tls_active() {
                    if self.config.starttls {
                        caps.push("STARTTLS");
                    }
                    caps.push("LOGINDISABLED");
                } else {
                    caps.push("AUTH=PLAIN");
                }
            }
            _ => {
                caps.push("NAMESPACE");
                caps.extend(self.config.store_capabilities.iter().copied());
            }
        }
        caps.join(" ")
    }

    pub fn feed(&mut self, now: Instant, data: &[u8]) {
        if matches!(self.mode, Mode::AwaitTls | Mode::Closed) || data.is_empty() {
            return;
        }
        if self.pos > 0 && self.pos >= self.input.len() / 2 {
            // Offsets in `continued` are relative to `pos`, so they survive the move.
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(data);
        self.arm_timer(now);
    }

    fn arm_timer(&mut self, now: Instant) {
        let t = match self.state {
            State::NotAuthenticated => self.config.login_timeout,
            _ => self.config.idle_timeout,
        };
        self.deadline = Some(now + t);
    }

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

    /// Untagged response bytes from the application (whole responses, CRLF-terminated).
    pub fn write(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// The answer to [`Event::Login`].
    pub fn login_result(&mut self, now: Instant, ok: bool) {
        // An answer for a session that closed meanwhile (peer gone, shutdown) is dropped.
        if !matches!(
            self.mode,
            Mode::Running {
                kind: Running::Login,
                ..
            }
        ) {
            return;
        }
        let Mode::Running { tag, .. } = std::mem::replace(&mut self.mode, Mode::Commands) else {
            unreachable!("checked above")
        };
        if ok {
            self.user = self.pending_user.take();
            self.state = State::Authenticated;
            self.arm_timer(now);
            let caps = self.capabilities();
            self.line(&format!("{tag} OK [CAPABILITY {caps}] Logged in"));
        } else {
            self.pending_user = None;
            self.auth_failures += 1;
            self.line(&format!(
                "{tag} NO [AUTHENTICATIONFAILED] Authentication failed"
            ));
            if self.auth_failures >= self.config.max_auth_failures {
                self.bye("Too many authentication failures");
            }
        }
        self.after_command();
    }

    /// Ends the command with the application. `code` is a response code without brackets.
    pub fn complete(&mut self, now: Instant, status: Status, code: Option<&str>, text: &str) {
        let (tag, kind) = match std::mem::replace(&mut self.mode, Mode::Commands) {
            Mode::Running { tag, kind } => (tag, kind),
            Mode::AppendRunning { tag } => (tag, Running::Append),
            // An answer for a session that closed meanwhile (peer gone, shutdown) is dropped.
            other => {
                self.mode = other;
                return;
            }
        };
        self.arm_timer(now);
        match (kind, status) {
            (Running::Select { read_only }, Status::Ok) => {
                self.state = State::Selected { read_only }
            }
            // RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected.
            (Running::Select { .. }, _) => self.state = State::Authenticated,
            (Running::Deselect, Status::Ok) => self.state = State::Authenticated,
            _ => {}
        }
        let code = code.map(|c| format!("[{c}] ")).unwrap_or_default();
        self.line(&format!("{tag} {} {code}{text}", status.as_str()));
        self.after_command();
    }

    /// The application closed the selected mailbox because this session's own command
    /// removed it (DELETE or RENAME of the selected mailbox, which RFC 3501 6.3.4 allows):
    /// back to the authenticated state, without BYE, as Dovecot does. Commands that need a
    /// selected mailbox are refused from now on. Call it after [`Session::complete`].
    pub fn deselect(&mut self) {
        if matches!(self.state, State::Selected { .. }) {
            self.state = State::Authenticated;
        }
    }

    /// The mailbox the session had selected is gone (deleted or renamed elsewhere): the
    /// session ends with BYE, since the client was not told and may act on stale numbers.
    pub fn mailbox_gone(&mut self) {
        if matches!(self.state, State::Selected { .. }) {
            self.state = State::Authenticated;
            self.line("* BYE Selected mailbox no longer exists");
            self.close();
        }
    }

    fn after_command(&mut self) {
        if self.shutting_down && matches!(self.mode, Mode::Commands) {
            self.bye("Server shutting down");
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.mode {
            Mode::Running { .. } | Mode::AppendRunning { .. } | Mode::Closed | Mode::AwaitTls => {
                None
            }
            _ => self.deadline,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.poll_timeout() {
            Some(d) if now >= d => {}
            _ => return,
        }
        self.abort_append();
        self.bye("Autologout; idle for too long");
    }

    /// The server is stopping: BYE now if between commands, else after the current one.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        match self.mode {
            Mode::Running { .. }
            | Mode::AppendRunning { .. }
            | Mode::AppendLiteral { .. }
            | Mode::AppendEnd { .. } => {}
            Mode::Closed => {}
            _ => self.bye("Server shutting down"),
        }
    }

    /// Ends the session at once, without BYE: the application began a response it cannot
    /// complete (a literal whose octets could not all be read), so nothing more may follow
    /// it. Output already written is still sent.
    pub fn abort(&mut self) {
        self.abort_append();
        self.close();
    }

    pub fn peer_closed(&mut self) {
        self.abort_append();
        self.close();
    }

    fn abort_append(&mut self) {
        if matches!(
            self.mode,
            Mode::AppendLiteral { .. } | Mode::AppendEnd { .. }
        ) {
            self.events.push_back(Event::AppendAborted);
        }
    }

    fn bye(&mut self, text: &str) {
        self.line(&format!("* BYE {text}"));
        self.close();
    }

    fn close(&mut self) {
        self.mode = Mode::Closed;
        self.state = State::Logout;
        self.input = Vec::new();
        self.pos = 0;
    }

    fn line(&mut self, text: &str) {
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn step(&mut self) -> bool {
        if self.pos == self.input.len() && self.pos > 0 {
            if self.input.capacity() > IDLE_INPUT_CAPACITY {
                self.input = Vec::new();
            } else {
                self.input.clear();
            }
            self.pos = 0;
            self.continued = None;
        }
        match self.mode {
            Mode::Running { .. } | Mode::AppendRunning { .. } | Mode::AwaitTls | Mode::Closed => {
                false
            }
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
            Mode::AppendLiteral { .. } => self.step_append_literal(),
            Mode::AppendEnd { .. } => self.step_append_end(),
            Mode::Idle { .. } => self.step_idle(),
            Mode::AuthPlain { .. } => self.step_auth_response(),
            Mode::Commands => self.step_command(),
        }
    }

    fn bad_command(&mut self, tag: Option<&str>, reason: &str) {
        match tag {
            Some(t) => self.line(&format!("{t} BAD {reason}")),
            None => self.line(&format!("* BAD {reason}")),
        }
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.bye("Too many invalid commands");
        }
    }

    fn step_command(&mut self) -> bool {
        if self.pos == self.input.len() {
            return false;
        }
        // Parse in place: the buffer is moved out so the borrowed command and `&mut self`
        // live side by side without copying.
        let buf = std::mem::take(&mut self.input);
        let progressed = self.parse_one(&buf);
        if std::mem::take(&mut self.discard) || self.is_closed() {
            self.pos = 0;
        } else {
            self.input = buf;
        }
        progressed
    }

    fn parse_one(&mut self, buf: &[u8]) -> bool {
        let input = &buf[self.pos..];
        match parse_command(input, &self.config.limits) {
            Ok((consumed, cmd)) => {
                self.pos += consumed;
                self.continued = None;
                let tag = cmd.tag.into_owned();
                self.command(tag, cmd.body);
                true
            }
            Err(ParseError::Incomplete(Needed::Literal {
                sync: true, offset, ..
            })) => {
                if self.continued != Some(offset) {
                    self.continued = Some(offset);
                    self.line("+ Ready for literal data");
                }
                false
            }
            Err(ParseError::Incomplete(_)) => false,
            Err(ParseError::Bad {
                tag,
                consumed,
                reason,
            }) => {
                self.pos += consumed;
                self.continued = None;
                let tag = tag.map(str::to_string);
                self.bad_command(tag.as_deref(), &reason.to_string());
                true
            }
            Err(ParseError::TooLong { tag }) => {
                let tag = tag.map(str::to_string);
                self.pos = buf.len();
                self.continued = None;
                self.bad_command(tag.as_deref(), "Command line too long");
                if !self.is_closed() {
                    self.mode = Mode::DiscardLine;
                }
                true
            }
            Err(ParseError::LiteralTooLarge {
                tag,
                sync,
                consumed,
                ..
            }) => {
                let tag = tag.map(str::to_string);
                self.pos += consumed;
                self.continued = None;
                if sync {
                    // The client waits for our go-ahead, so nothing more of it is coming.
                    self.bad_command(tag.as_deref(), "Literal too large");
                } else {
                    // The octets are on their way and we will not read them (RFC 7888 4).
                    self.line(&format!(
                        "{} BAD Literal too large",
                        tag.as_deref().unwrap_or("*")
                    ));
                    self.bye("Literal too large");
                }
                true
            }
        }
    }

    fn command(&mut self, tag: String, body: CommandBody<'_>) {
        use CommandBody as C;
        let state = self.state;
        let authed = !matches!(state, State::NotAuthenticated | State::Logout);
        let selected = matches!(state, State::Selected { .. });
        match body {
            C::Capability => {
                let caps = self.capabilities();
                self.line(&format!("* CAPABILITY {caps}"));
                self.ok(&tag, "CAPABILITY completed");
            }
            C::Logout => {
                self.line("* BYE Logging out");
                self.ok(&tag, "LOGOUT completed");
                self.close();
            }
            C::Noop | C::Check if selected => self.run(tag, body, Running::Other),
            C::Noop => self.ok(&tag, "NOOP completed"),
            C::Id(_) => {
                self.line("* ID (\"name\" \"ironpost\")");
                self.ok(&tag, "ID completed");
            }
            C::StartTls => {
                if self.tls_active() || !self.config.starttls {
                    return self.bad_command(Some(&tag), "TLS is already active or not available");
                }
                if authed {
                    return self.bad_command(Some(&tag), "STARTTLS is only valid before login");
                }
                self.ok(&tag, "Begin TLS negotiation now");
                // RFC 3501 6.2.1 / RFC 2595 3.1: nothing the client sent after STARTTLS in
                // cleartext is acted on.
                self.discard = true;
                self.mode = Mode::AwaitTls;
                self.starttls_requested = true;
            }
            C::Login { username, password } => {
                if authed {
                    return self.bad_command(Some(&tag), "Already logged in");
                }
                if !self.tls_active() {
                    return self.no(
                        &tag,
                        Some("PRIVACYREQUIRED"),
                        "LOGIN is disabled until STARTTLS",
                    );
                }
                let (Some(user), Some(pass)) = (username.to_str(), password.to_str()) else {
                    return self.no(&tag, Some("AUTHENTICATIONFAILED"), "Authentication failed");
                };
                self.login(tag, user.to_string(), pass.to_string());
            }
            C::Authenticate { mechanism, initial } => {
                if authed {
                    return self.bad_command(Some(&tag), "Already logged in");
                }
                if !self.tls_active() {
                    return self.no(
                        &tag,
                        Some("PRIVACYREQUIRED"),
                        "AUTHENTICATE is disabled until STARTTLS",
                    );
                }
                if mechanism != AuthMechanism::Plain {
                    return self.no(&tag, Some("CANNOT"), "Unsupported authentication mechanism");
                }
                match initial {
                    Some(ir) => self.auth_plain(tag, &ir),
                    None => {
                        self.line("+ ");
                        self.mode = Mode::AuthPlain { tag };
                    }
                }
            }
            _ if !authed => self.bad_command(Some(&tag), "Log in first"),
            // RFC 5161 3.1: only before a mailbox is selected.
            C::Enable(_) if selected => {
                self.bad_command(Some(&tag), "ENABLE is only valid before SELECT or EXAMINE")
            }
            C::Enable(caps) => {
                // UTF8=ACCEPT is the one extension to enable; unknown names are ignored, and
                // ENABLED lists only what this command newly enabled (RFC 5161 3.1, 3.2).
                let utf8 = caps.iter().any(|c| c.eq_ignore_ascii_case("UTF8=ACCEPT"));
                if utf8 && !self.utf8 {
                    self.utf8 = true;
                    self.line("* ENABLED UTF8=ACCEPT");
                } else {
                    self.line("* ENABLED");
                }
                self.ok(&tag, "ENABLE completed");
            }
            C::Namespace => {
                self.line("* NAMESPACE ((\"\" \".\")) NIL NIL");
                self.ok(&tag, "NAMESPACE completed");
            }
            C::Idle => {
                self.line("+ idling");
                self.mode = Mode::Idle { tag };
                self.events.push_back(Event::IdleStart);
            }
            C::Append {
                mailbox,
                flags,
                date,
                message,
                utf8,
            } => {
                if message.size > self.config.max_append_size {
                    if message.sync {
                        // RFC 7889: the client waits for `+`, so it sends nothing more.
                        return self.no(&tag, Some("TOOBIG"), "Message too large");
                    }
                    // Its octets are already on their way and will not be read (RFC 7888 4).
                    self.line(&format!("{tag} NO [TOOBIG] Message too large"));
                    return self.bye("Message too large");
                }
                // A non-synchronising literal's octets are already on their way.
                if message.sync {
                    self.line("+ Ready for literal data");
                }
                self.events.push_back(Event::AppendStart {
                    tag: tag.clone(),
                    mailbox: mailbox.into_owned(),
                    flags: flags.into_iter().map(Flag::into_owned).collect(),
                    date,
                    size: message.size,
                });
                self.mode = Mode::AppendLiteral {
                    tag,
                    remaining: message.size,
                    utf8,
                };
            }
            C::Select { .. } => self.run(tag, body, Running::Select { read_only: false }),
            C::Examine { .. } => self.run(tag, body, Running::Select { read_only: true }),
            C::Create { .. }
            | C::Delete { .. }
            | C::Rename { .. }
            | C::Subscribe { .. }
            | C::Unsubscribe { .. }
            | C::List { .. }
            | C::Lsub { .. }
            | C::Status { .. } => self.run(tag, body, Running::Other),
            _ if !selected => self.bad_command(Some(&tag), "No mailbox selected"),
            C::Close | C::Unselect => self.run(tag, body, Running::Deselect),
            _ => self.run(tag, body, Running::Other),
        }
    }

    fn run(&mut self, tag: String, body: CommandBody<'_>, kind: Running) {
        self.events.push_back(Event::Command {
            tag: tag.clone(),
            command: body.into_owned(),
        });
        self.mode = Mode::Running { tag, kind };
    }

    fn ok(&mut self, tag: &str, text: &str) {
        self.line(&format!("{tag} OK {text}"));
    }

    fn no(&mut self, tag: &str, code: Option<&str>, text: &str) {
        match code {
            Some(c) => self.line(&format!("{tag} NO [{c}] {text}")),
            None => self.line(&format!("{tag} NO {text}")),
        }
    }

    fn login(&mut self, tag: String, username: String, password: String) {
        self.pending_user = Some(username.clone());
        self.events.push_back(Event::Login { username, password });
        self.mode = Mode::Running {
            tag,
            kind: Running::Login,
        };
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`.
    fn auth_plain(&mut self, tag: String, response: &InitialResponse<'_>) {
        let decoded = match response {
            InitialResponse::Empty => Some(Vec::new()),
            InitialResponse::Base64(b) => base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .ok(),
        };
        let creds = decoded.and_then(|d| {
            let mut parts = d.split(|&b| b == 0);
            let (authzid, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || user.is_empty() {
                return None;
            }
            // No user may act as another (RFC 4616 2).
            let acts_as_other = !authzid.is_empty() && !authzid.eq_ignore_ascii_case(user);
            Some((
                acts_as_other,
                String::from_utf8(user.to_vec()).ok()?,
                String::from_utf8(pass.to_vec()).ok()?,
            ))
        });
        match creds {
            Some((false, user, pass)) => self.login(tag, user, pass),
            Some((true, ..)) => {
                self.auth_failures += 1;
                self.no(
                    &tag,
                    Some("AUTHORIZATIONFAILED"),
                    "Cannot act as another user",
                );
                if self.auth_failures >= self.config.max_auth_failures {
                    self.bye("Too many authentication failures");
                }
            }
            None => self.bad_command(Some(&tag), "Malformed PLAIN response"),
        }
    }

    fn step_auth_response(&mut self) -> bool {
        let Mode::AuthPlain { tag } = &self.mode else {
            unreachable!()
        };
        let tag = tag.clone();
        let buf = std::mem::take(&mut self.input);
        let input = &buf[self.pos..];
        let progressed = match parse_auth_response(input, &self.config.limits) {
            Ok((consumed, resp)) => {
                self.pos += consumed;
                self.mode = Mode::Commands;
                match resp {
                    AuthResponse::Cancel => {
                        self.bad_command(Some(&tag), "Authentication cancelled")
                    }
                    AuthResponse::Response(ir) => self.auth_plain(tag, &ir),
                }
                true
            }
            Err(ParseError::Incomplete(_)) => false,
            Err(ParseError::Bad { consumed, .. }) => {
                self.pos += consumed;
                self.mode = Mode::Commands;
                self.bad_command(Some(&tag), "Invalid base64");
                true
            }
            Err(_) => {
                self.mode = Mode::DiscardLine;
                self.bad_command(Some(&tag), "Response too long");
                true
            }
        };
        if self.input.is_empty() && !self.is_closed() {
            self.input = buf;
        }
        progressed
    }

    fn step_append_literal(&mut self) -> bool {
        let Mode::AppendLiteral {
            tag,
            remaining,
            utf8,
        } = &mut self.mode
        else {
            unreachable!()
        };
        let avail = self.input.len() - self.pos;
        if *remaining == 0 {
            let tag = tag.clone();
            let utf8 = *utf8;
            self.mode = Mode::AppendEnd { tag, utf8 };
            return true;
        }
        if avail == 0 {
            return false;
        }
        let n = avail.min(*remaining as usize).min(APPEND_CHUNK);
        *remaining -= n as u32;
        let chunk = self.input[self.pos..self.pos + n].to_vec();
        self.pos += n;
        self.events.push_back(Event::AppendData(chunk));
        true
    }

    fn step_append_end(&mut self) -> bool {
        let Mode::AppendEnd { tag, utf8 } = &self.mode else {
            unreachable!()
        };
        let tag = tag.clone();
        let input = &self.input[self.pos..];
        let (end, why) = if *utf8 {
            (
                parse_append_utf8_end(input, &self.config.limits),
                "Expected \")\" and the end of the line after the APPEND UTF8 message",
            )
        } else {
            (
                parse_append_end(input, &self.config.limits),
                "Unexpected data after the APPEND message",
            )
        };
        match end {
            Ok(consumed) => {
                self.pos += consumed;
                self.events.push_back(Event::AppendEnd);
                self.mode = Mode::AppendRunning { tag };
                true
            }
            Err(ParseError::Incomplete(_)) => false,
            Err(ParseError::Bad { consumed, .. }) => {
                self.pos += consumed;
                self.events.push_back(Event::AppendAborted);
                self.mode = Mode::Commands;
                self.bad_command(Some(&tag), why);
                true
            }
            Err(_) => {
                self.events.push_back(Event::AppendAborted);
                self.mode = Mode::DiscardLine;
                self.bad_command(Some(&tag), why);
                true
            }
        }
    }

    fn step_idle(&mut self) -> bool {
        let Mode::Idle { tag } = &self.mode else {
            unreachable!()
        };
        let tag = tag.clone();
        match parse_idle_done(&self.input[self.pos..], &self.config.limits) {
            Ok(consumed) => {
                self.pos += consumed;
                self.mode = Mode::Commands;
                self.events.push_back(Event::IdleDone);
                self.ok(&tag, "IDLE terminated");
                self.after_command();
                true
            }
            Err(ParseError::Incomplete(_)) => false,
            Err(ParseError::Bad { consumed, .. }) => {
                self.pos += consumed;
                self.mode = Mode::Commands;
                self.events.push_back(Event::IdleDone);
                self.bad_command(Some(&tag), "Expected DONE");
                true
            }
            Err(_) => {
                self.mode = Mode::DiscardLine;
                self.events.push_back(Event::IdleDone);
                self.bad_command(Some(&tag), "Expected DONE");
                true
            }
        }
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
