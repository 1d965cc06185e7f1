//! The SMTP client session, for relaying mail to other MTAs: a pure state machine in the
//! shape of the server session.
//!
//! Bytes in ([`ClientSession::feed`]), events out ([`ClientSession::poll_event`]), requests
//! in ([`ClientSession::send_message`], [`ClientSession::body`], [`ClientSession::quit`]),
//! bytes to send ([`ClientSession::take_output`]) and time in
//! ([`ClientSession::poll_timeout`] / [`ClientSession::handle_timeout`]).
//!
//! The session knows nothing of TLS beyond the STARTTLS exchange: when the server says 220
//! to STARTTLS it emits [`ClientEvent::StartTls`], drops whatever cleartext followed (a
//! man-in-the-middle may have injected it), and waits for
//! [`ClientSession::tls_established`] from the connection layer below.
//!
//! Every command whose reply is awaited sits in one queue, in the order sent; each reply
//! answers the front of it. With PIPELINING (RFC 2920) MAIL, all RCPTs and DATA leave in
//! one batch and the queue holds them all; without it the queue never holds more than one.
//! Nothing the server says is trusted to be well-formed (see [`super::reply_parse`]).

mod encode;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

pub use self::encode::DotEncoder;
use super::reply::Reply;
pub use super::reply_parse::{AuthMechanisms, Extensions};
use super::reply_parse::{ReplyError, ReplyReader};

/// Message octets held before the server can take them (waiting for 354, or for a BDAT
/// reply without PIPELINING); [`ClientSession::wants_body`] turns false beyond it.
const BODY_BUFFER: usize = 64 * 1024;
/// A BDAT chunk is sent once this much body is buffered (or at the end of the message).
const BDAT_CHUNK: usize = 64 * 1024;
/// Longest envelope address accepted (RFC 5321 4.5.3.1.3: 256 octets of path, with room).
const MAX_ADDRESS: usize = 1000;

/// Whether to use STARTTLS (RFC 3207).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never: mail goes in cleartext even where the server offers TLS.
    Disabled,
    /// When offered; in cleartext otherwise, or if the server refuses the STARTTLS command.
    Opportunistic,
    /// Always: a server that does not offer STARTTLS, or refuses it, gets no mail.
    Required,
}

/// Credentials for SMTP AUTH at a relay host (RFC 4954).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Send them even without TLS. Off by default and meant for a relay on a trusted
    /// link: without TLS anyone on the path reads the password.
    pub allow_cleartext: bool,
}

impl std::fmt::Debug for Credentials {
    /// The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("allow_cleartext", &self.allow_cleartext)
            .finish_non_exhaustive()
    }
}

/// How long to wait for each reply (RFC 5321 4.5.3.2), and for the message source to go
/// on while a body is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// The 220 greeting (4.5.3.2.1: 5 minutes).
    pub greeting: Duration,
    /// EHLO, HELO, STARTTLS, AUTH, RSET and QUIT, for which the RFC names no value; also
    /// the TLS handshake after STARTTLS, so a stalled one cannot hold the session forever.
    pub command: Duration,
    /// MAIL (4.5.3.2.2: 5 minutes).
    pub mail: Duration,
    /// Each RCPT (4.5.3.2.3: 5 minutes).
    pub rcpt: Duration,
    /// The 354 to DATA (4.5.3.2.4: 2 minutes).
    pub data_init: Duration,
    /// Between body blocks, and for the reply to a BDAT chunk that is not the last
    /// (4.5.3.2.5: 3 minutes).
    pub data_block: Duration,
    /// The reply after the end of the message (4.5.3.2.6: 10 minutes): the server may be
    /// scanning or writing it to disk.
    pub data_end: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        ClientTimeouts {
            greeting: min(5),
            command: min(5),
            mail: min(5),
            rcpt: min(5),
            data_init: min(2),
            data_block: min(3),
            data_end: min(10),
        }
    }
}

/// Settings shared by the client sessions of one relay policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The name given in EHLO/HELO: this host's fully qualified name.
    pub helo_name: String,
    pub starttls: TlsMode,
    pub auth: Option<Credentials>,
    pub timeouts: ClientTimeouts,
}

impl ClientConfig {
    /// Opportunistic TLS, no AUTH, RFC timeouts: the settings for delivery to MX hosts.
    pub fn new(helo_name: impl Into<String>) -> Self {
        ClientConfig {
            helo_name: helo_name.into(),
            starttls: TlsMode::Opportunistic,
            auth: None,
            timeouts: ClientTimeouts::default(),
        }
    }
}

/// One message's envelope, as given to [`ClientSession::send_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path without angle brackets; empty for the null sender (bounces).
    pub from: String,
    /// Forward-paths without angle brackets. Results refer to them by index.
    pub recipients: Vec<String>,
    /// The message size in octets, declared with SIZE= when the server offers SIZE.
    pub size: Option<u64>,
    /// The body has octets above 127: declared with BODY=8BITMIME when offered.
    pub eight_bit: bool,
    /// The message needs SMTPUTF8 (UTF-8 headers). Non-ASCII addresses imply it.
    pub smtputf8: bool,
}

/// What the session has to tell the connection layer or the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Greeting, EHLO (and STARTTLS, EHLO again) and AUTH are done: transactions may be
    /// sent. Emitted once per connection.
    Ready { extensions: Extensions, tls: bool },
    /// The server said 220 to STARTTLS: run the TLS handshake now, then call
    /// [`ClientSession::tls_established`].
    StartTls,
    /// The reply to one RCPT, as it arrives. Not final for an accepted recipient: the
    /// [`ClientEvent::TransactionResult`] is.
    RecipientResult { index: usize, reply: Reply },
    /// The server gave a final answer for every recipient of the transaction.
    TransactionResult {
        /// One reply per recipient, by index in [`Envelope::recipients`]: its RCPT failure,
        /// or for an accepted recipient the reply that concluded the message.
        recipients: Vec<Reply>,
        /// The reply that concluded the message (to DATA, to its end, or to a BDAT chunk);
        /// `None` when no recipient was accepted, so no message was sent.
        reply: Option<Reply>,
        /// The body was 8-bit but the server does not offer 8BITMIME: it went as it was,
        /// undeclared (RFC 6152 asks for a downgrade, which ironpost does not do).
        eight_bit_unannounced: bool,
    },
    /// The connection, or the transaction in progress, failed as a whole: every recipient
    /// of that transaction shares this outcome, temporary or permanent by the reply's code
    /// (no reply: temporary). When the connection cannot go on, [`ClientEvent::Closed`]
    /// follows; otherwise the session is ready for the next transaction.
    Failed {
        reply: Option<Reply>,
        reason: FailReason,
    },
    /// The session is over: flush [`ClientSession::take_output`], then close the socket.
    Closed,
}

/// Why a connection or a transaction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailReason {
    #[error("the server refused the session at its greeting")]
    Greeting,
    #[error("the server refused EHLO and HELO")]
    Helo,
    #[error("TLS is required but the server does not offer STARTTLS")]
    StartTlsRequired,
    #[error("the server refused STARTTLS")]
    StartTls,
    #[error("credentials are configured but TLS is not up and cleartext AUTH is not allowed")]
    AuthNeedsTls,
    #[error("credentials are configured but the server offers neither AUTH PLAIN nor LOGIN")]
    AuthNotOffered,
    #[error("authentication failed")]
    Auth,
    #[error("the server refused the sender")]
    Mail,
    /// Refused locally: the message is bigger than the server's declared SIZE limit.
    #[error("the message exceeds the server's size limit")]
    MessageTooBig,
    /// Refused locally: the message needs SMTPUTF8 and the server does not offer it.
    #[error("the message needs SMTPUTF8, which the server does not offer")]
    Smtputf8Unsupported,
    #[error("the server closed the connection at RCPT")]
    Rcpt,
    #[error("the server closed the connection while taking the message")]
    Data,
    #[error("the server refused RSET")]
    Rset,
    /// An unsolicited 421: the server is going away.
    #[error("the server is closing the connection")]
    ServiceClosing,
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("the connection was lost")]
    ConnectionLost,
    #[error("protocol violation by the server: {0}")]
    Protocol(ProtocolError),
}

/// How a server broke the protocol. The connection is closed at once: a client that
/// guesses what a confused server meant may send a message body as commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error("reply {0} when no command was waiting for one")]
    Unsolicited(u16),
    #[error("reply code {0} makes no sense here")]
    UnexpectedCode(u16),
}

/// Why a request to the session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("the session is not ready for a transaction")]
    NotReady,
    #[error("the session is closed or closing")]
    Closed,
    #[error("the envelope has no recipients")]
    NoRecipients,
    /// Control characters or angle brackets would let an address forge commands.
    #[error("invalid envelope address {0:?}")]
    InvalidAddress(String),
}

/// A command whose reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    /// `AUTH PLAIN <initial response>`; `responded` once a 334 was answered again.
    AuthPlain {
        responded: bool,
    },
    AuthLoginUser,
    AuthLoginPass,
    AuthDone,
    Mail,
    Rcpt(usize),
    Data,
    DataEnd,
    Bdat {
        last: bool,
    },
    Rset,
    Quit,
}

impl Expect {
    fn timeout(self, t: &ClientTimeouts) -> Duration {
        match self {
            Expect::Greeting => t.greeting,
            Expect::Mail => t.mail,
            Expect::Rcpt(_) => t.rcpt,
            Expect::Data => t.data_init,
            Expect::DataEnd | Expect::Bdat { last: true } => t.data_end,
            Expect::Bdat { last: false } => t.data_block,
            _ => t.command,
        }
    }

    /// What a 421 in answer to this command ends.
    fn phase(self) -> FailReason {
        match self {
            Expect::Greeting => FailReason::Greeting,
            Expect::Ehlo | Expect::Helo => FailReason::Helo,
            Expect::StartTls => FailReason::StartTls,
            Expect::AuthPlain { .. }
            | Expect::AuthLoginUser
            | Expect::AuthLoginPass
            | Expect::AuthDone => FailReason::Auth,
            Expect::Mail => FailReason::Mail,
            Expect::Rcpt(_) => FailReason::Rcpt,
            Expect::Data | Expect::DataEnd | Expect::Bdat { .. } => FailReason::Data,
            Expect::Rset => FailReason::Rset,
            Expect::Quit => FailReason::ServiceClosing,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Greeting, EHLO/HELO, STARTTLS, AUTH.
    Handshake,
    /// STARTTLS accepted: the connection layer is running the handshake.
    AwaitTls,
    /// Idle, between transactions.
    Ready,
    /// A transaction is in progress (`txn` is set).
    Busy,
    /// QUIT sent.
    Quitting,
    Closed,
}

/// Where the message body stands.
#[derive(Debug)]
enum Body {
    /// The server cannot take it yet: buffer up to [`BODY_BUFFER`].
    Waiting,
    /// 354 received: encode and send as it comes.
    Data(DotEncoder),
    /// Recipients accepted on a CHUNKING server: send BDAT chunks as they fill.
    Bdat,
    /// The end of the message is sent.
    Sent,
    /// The transaction failed: the rest of the body is dropped.
    Discard,
}

/// How a transaction ended, held until every reply of it is in (and RSET done), so that
/// the session is ready again the moment the queue learns the outcome.
#[derive(Debug)]
enum Outcome {
    Result {
        recipients: Vec<Reply>,
        reply: Option<Reply>,
    },
    Failed {
        reply: Reply,
        reason: FailReason,
    },
}

#[derive(Debug)]
struct Txn {
    recipients: Vec<String>,
    /// Next RCPT to send, without PIPELINING.
    next_rcpt: usize,
    rcpt: Vec<Option<Reply>>,
    answered: usize,
    accepted: usize,
    body: Body,
    /// Body octets not yet sent.
    buf: Vec<u8>,
    ended: bool,
    outcome: Option<Outcome>,
    /// The server holds an open transaction: RSET before the next MAIL.
    needs_rset: bool,
    eight_bit_unannounced: bool,
}

impl Txn {
    /// The outcome once every recipient is answered: accepted ones get `reply`.
    fn conclude(&mut self, reply: Option<Reply>) {
        let recipients = self
            .rcpt
            .iter()
            .map(|r| {
                let r = r.as_ref().expect("every recipient answered");
                match &reply {
                    Some(end) if r.is_positive() => end.clone(),
                    _ => r.clone(),
                }
            })
            .collect();
        self.outcome = Some(Outcome::Result { recipients, reply });
        self.body = Body::Discard;
        self.buf = Vec::new();
    }
}

/// How to leave a connection that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Say QUIT and wait for its reply: the server is sane, just unwilling.
    Quit,
    /// Close now: the server is gone, unresponsive or confused.
    Close,
}

/// One SMTP client connection.
pub struct ClientSession {
    config: Arc<ClientConfig>,
    state: State,
    reader: ReplyReader,
    output: Vec<u8>,
    events: VecDeque<ClientEvent>,
    expect: VecDeque<Expect>,
    deadline: Option<Instant>,
    /// What the last EHLO offered; set once EHLO or HELO succeeded.
    extensions: Option<Extensions>,
    tls: bool,
    /// An opportunistic STARTTLS was refused: go on in cleartext.
    starttls_refused: bool,
    ready_announced: bool,
    quit_requested: bool,
    txn: Option<Txn>,
}

impl ClientSession {
    /// A session on a fresh cleartext connection, waiting for the 220 greeting.
    pub fn new(config: Arc<ClientConfig>, now: Instant) -> Self {
        Self::with_tls(config, false, now)
    }

    /// A session on a connection that is TLS from the first byte (port 465).
    pub fn new_implicit_tls(config: Arc<ClientConfig>, now: Instant) -> Self {
        Self::with_tls(config, true, now)
    }

    fn with_tls(config: Arc<ClientConfig>, tls: bool, now: Instant) -> Self {
        ClientSession {
            deadline: Some(now + config.timeouts.greeting),
            config,
            state: State::Handshake,
            reader: ReplyReader::new(),
            output: Vec::with_capacity(512),
            events: VecDeque::new(),
            expect: VecDeque::from([Expect::Greeting]),
            extensions: None,
            tls,
            starttls_refused: false,
            ready_announced: false,
            quit_requested: false,
            txn: None,
        }
    }

    /// Plaintext from the server.
    pub fn feed(&mut self, now: Instant, data: &[u8]) {
        if !self.reading() {
            return;
        }
        self.reader.push(data);
        while self.reading() {
            match self.reader.next_reply() {
                None => break,
                Some(Ok(reply)) => self.on_reply(now, reply),
                Some(Err(e)) => self.fail(now, None, FailReason::Protocol(e.into()), After::Close),
            }
        }
    }

    /// False where input is dropped: after close, and while TLS is being set up (anything
    /// in cleartext after the 220 to STARTTLS may have been injected).
    fn reading(&self) -> bool {
        !matches!(self.state, State::Closed | State::AwaitTls)
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Appends plaintext to send to the server.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    /// The TLS handshake that followed [`ClientEvent::StartTls`] completed: everything
    /// learned in cleartext is forgotten and EHLO is sent again (RFC 3207 4.2).
    pub fn tls_established(&mut self, now: Instant) {
        if self.state != State::AwaitTls {
            debug_assert!(false, "tls_established without StartTls");
            return;
        }
        self.tls = true;
        self.extensions = None;
        self.state = State::Handshake;
        if self.quit_requested {
            self.send_quit(now);
        } else {
            self.send_ehlo(now);
        }
    }

    /// True between [`ClientEvent::Ready`] (or the end of a transaction) and the next
    /// [`ClientSession::send_message`].
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// What the server offered, once EHLO (or HELO) succeeded.
    pub fn extensions(&self) -> Option<&Extensions> {
        self.extensions.as_ref()
    }

    /// Starts a transaction. Its outcome arrives as one [`ClientEvent::TransactionResult`]
    /// or [`ClientEvent::Failed`]; its body goes through [`ClientSession::body`] and
    /// [`ClientSession::body_end`], which may be called right away.
    pub fn send_message(&mut self, now: Instant, envelope: Envelope) -> Result<(), ClientError> {
        match self.state {
            State::Ready => {}
            State::Quitting | State::Closed => return Err(ClientError::Closed),
            _ => return Err(ClientError::NotReady),
        }
        if envelope.recipients.is_empty() {
            return Err(ClientError::NoRecipients);
        }
        if !valid_address(&envelope.from) {
            return Err(ClientError::InvalidAddress(envelope.from));
        }
        if let Some(bad) = envelope
            .recipients
            .iter()
            .find(|r| r.is_empty() || !valid_address(r))
        {
            return Err(ClientError::InvalidAddress(bad.clone()));
        }
        let ext = self.extensions.clone().expect("ready implies a greeting");
        let smtputf8 = envelope.smtputf8
            || !envelope.from.is_ascii()
            || envelope.recipients.iter().any(|r| !r.is_ascii());
        if let (Some(size), Some(limit)) = (envelope.size, ext.size_limit()) {
            if size > limit {
                let text = format!("Message size {size} exceeds the server's limit of {limit}");
                self.events.push_back(ClientEvent::Failed {
                    reply: Some(Reply::ext(552, 5, 3, 4, text)),
                    reason: FailReason::MessageTooBig,
                });
                return Ok(());
            }
        }
        if smtputf8 && !ext.smtputf8 {
            self.events.push_back(ClientEvent::Failed {
                reply: Some(Reply::ext(
                    553,
                    5,
                    6,
                    7,
                    "The message needs SMTPUTF8, which the server does not offer",
                )),
                reason: FailReason::Smtputf8Unsupported,
            });
            return Ok(());
        }

        let mut mail = format!("MAIL FROM:<{}>", envelope.from);
        if let (Some(_), Some(size)) = (ext.size, envelope.size) {
            mail.push_str(&format!(" SIZE={size}"));
        }
        let mut eight_bit_unannounced = false;
        if envelope.eight_bit {
            if ext.eight_bit_mime {
                mail.push_str(" BODY=8BITMIME");
            } else {
                eight_bit_unannounced = true;
            }
        }
        if smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        self.command(&mail);
        self.push_expect(now, Expect::Mail);

        let n = envelope.recipients.len();
        let mut txn = Txn {
            recipients: envelope.recipients,
            next_rcpt: 0,
            rcpt: vec![None; n],
            answered: 0,
            accepted: 0,
            body: Body::Waiting,
            buf: Vec::new(),
            ended: false,
            outcome: None,
            needs_rset: false,
            eight_bit_unannounced,
        };
        if ext.pipelining {
            for (i, r) in txn.recipients.iter().enumerate() {
                write_command(&mut self.output, &format!("RCPT TO:<{r}>"));
                self.expect.push_back(Expect::Rcpt(i));
            }
            txn.next_rcpt = n;
            if !ext.chunking {
                write_command(&mut self.output, "DATA");
                self.expect.push_back(Expect::Data);
            }
        }
        self.txn = Some(txn);
        self.state = State::Busy;
        Ok(())
    }

    /// False while as much body is buffered as the session will hold: stop calling
    /// [`ClientSession::body`] until it turns true (after [`ClientSession::take_output`] or
    /// a reply). Octets given anyway are kept, not lost, so the bound is the caller's to
    /// keep. Also false once the transaction has failed or its body has ended.
    pub fn wants_body(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| {
            !t.ended
                && matches!(t.body, Body::Waiting | Body::Data(_) | Body::Bdat)
                && t.buf.len() + self.output.len() < BODY_BUFFER
        })
    }

    /// The next octets of the message. Lines should end with CRLF; bare CR and LF are
    /// turned into CRLF for DATA. Ignored once the transaction has failed.
    pub fn body(&mut self, now: Instant, chunk: &[u8]) {
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        if t.ended || matches!(t.body, Body::Sent | Body::Discard) {
            return;
        }
        t.buf.extend_from_slice(chunk);
        self.pump_body(now);
        if self.expect.is_empty() {
            // 4.5.3.2.5: the data block timer runs while the body streams.
            self.rearm(now);
        }
    }

    /// The message is complete.
    pub fn body_end(&mut self, now: Instant) {
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        if t.ended {
            return;
        }
        t.ended = true;
        self.pump_body(now);
        if self.expect.is_empty() {
            self.rearm(now);
        }
    }

    /// Ends the session politely: QUIT now if idle, else once the transaction in progress
    /// (or the handshake) is done.
    pub fn quit(&mut self, now: Instant) {
        match self.state {
            State::Ready => self.send_quit(now),
            State::Handshake | State::AwaitTls | State::Busy => self.quit_requested = true,
            State::Quitting | State::Closed => {}
        }
    }

    /// The server closed the connection (or the socket failed).
    pub fn peer_closed(&mut self, now: Instant) {
        match self.state {
            State::Closed => {}
            // Nothing was in flight: a server may drop an idle connection.
            State::Quitting | State::Ready => self.close(),
            _ => self.fail(now, None, FailReason::ConnectionLost, After::Close),
        }
    }

    /// When [`ClientSession::handle_timeout`] should be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        if self.state == State::Quitting {
            return self.close();
        }
        self.fail(now, None, FailReason::Timeout, After::Close);
    }

    // -----------------------------------------------------------------------------------
    // Replies

    fn on_reply(&mut self, now: Instant, reply: Reply) {
        let Some(exp) = self.expect.pop_front() else {
            let reason = if reply.code == 421 {
                FailReason::ServiceClosing
            } else {
                FailReason::Protocol(ProtocolError::Unsolicited(reply.code))
            };
            return self.fail(now, Some(reply), reason, After::Close);
        };
        if exp == Expect::Quit {
            return self.close();
        }
        if reply.code == 421 {
            // RFC 5321 3.8: the server is closing the channel, whatever was asked.
            return self.fail(now, Some(reply), exp.phase(), After::Close);
        }
        let class = reply.code / 100;
        if class == 3 && !expects_intermediate(exp) {
            return self.protocol_error(now, reply);
        }
        match exp {
            Expect::Greeting => {
                if class != 2 {
                    // RFC 5321 3.1: after a 554 greeting the client says QUIT.
                    return self.fail(now, Some(reply), FailReason::Greeting, After::Quit);
                }
                if self.quit_requested {
                    self.send_quit(now);
                } else {
                    self.send_ehlo(now);
                }
            }
            Expect::Ehlo => match class {
                2 => {
                    self.extensions = Some(Extensions::from_ehlo(&reply));
                    self.after_hello(now);
                }
                // RFC 5321 3.2: a server that does not know EHLO answers 5xx; try HELO.
                5 => {
                    let helo = format!("HELO {}", self.config.helo_name);
                    self.command(&helo);
                    self.push_expect(now, Expect::Helo);
                }
                _ => self.fail(now, Some(reply), FailReason::Helo, After::Quit),
            },
            Expect::Helo => {
                if class != 2 {
                    return self.fail(now, Some(reply), FailReason::Helo, After::Quit);
                }
                self.extensions = Some(Extensions::default());
                self.after_hello(now);
            }
            Expect::StartTls => {
                if class == 2 {
                    // Anything buffered after the 220 came in cleartext: drop it (a
                    // pipelined injection must not be read as if it came over TLS).
                    self.reader.clear();
                    self.state = State::AwaitTls;
                    self.events.push_back(ClientEvent::StartTls);
                } else if self.config.starttls == TlsMode::Required {
                    return self.fail(now, Some(reply), FailReason::StartTls, After::Quit);
                } else {
                    self.starttls_refused = true;
                    self.after_hello(now);
                }
            }
            Expect::AuthPlain { responded } => match class {
                2 => self.become_ready(now),
                // A server that ignored the initial response asks for it.
                3 if !responded => {
                    let line = self.plain_response();
                    self.command(&line);
                    self.push_expect(now, Expect::AuthPlain { responded: true });
                }
                3 => self.protocol_error(now, reply),
                _ => self.fail(now, Some(reply), FailReason::Auth, After::Quit),
            },
            Expect::AuthLoginUser | Expect::AuthLoginPass => match class {
                3 => {
                    let creds = self.config.auth.as_ref().expect("AUTH implies credentials");
                    let (secret, next) = if exp == Expect::AuthLoginUser {
                        (&creds.username, Expect::AuthLoginPass)
                    } else {
                        (&creds.password, Expect::AuthDone)
                    };
                    let line = b64(secret.as_bytes());
                    self.command(&line);
                    self.push_expect(now, next);
                }
                2 => self.protocol_error(now, reply),
                _ => self.fail(now, Some(reply), FailReason::Auth, After::Quit),
            },
            Expect::AuthDone => {
                if class != 2 {
                    return self.fail(now, Some(reply), FailReason::Auth, After::Quit);
                }
                self.become_ready(now);
            }
            Expect::Mail => self.on_mail(now, reply),
            Expect::Rcpt(i) => self.on_rcpt(now, i, reply),
            Expect::Data => self.on_data(now, reply),
            Expect::DataEnd => {
                let t = self.txn.as_mut().expect("DATA inside a transaction");
                t.needs_rset = false;
                t.conclude(Some(reply));
                self.try_finish(now);
            }
            Expect::Bdat { last } => self.on_bdat(now, last, reply),
            Expect::Rset => {
                if class != 2 {
                    return self.fail(now, Some(reply), FailReason::Rset, After::Close);
                }
                self.try_finish(now);
            }
            Expect::Quit => unreachable!("handled above"),
        }
        self.rearm(now);
    }

    fn protocol_error(&mut self, now: Instant, reply: Reply) {
        let reason = FailReason::Protocol(ProtocolError::UnexpectedCode(reply.code));
        self.fail(now, Some(reply), reason, After::Close);
    }

    /// EHLO or HELO succeeded: STARTTLS, AUTH or ready, as configured and offered.
    fn after_hello(&mut self, now: Instant) {
        if self.quit_requested {
            return self.send_quit(now);
        }
        let ext = self.extensions.as_ref().expect("after a greeting");
        if !self.tls && self.config.starttls != TlsMode::Disabled && !self.starttls_refused {
            if ext.starttls {
                self.command("STARTTLS");
                return self.push_expect(now, Expect::StartTls);
            }
            if self.config.starttls == TlsMode::Required {
                return self.fail(now, None, FailReason::StartTlsRequired, After::Quit);
            }
        }
        let Some(creds) = self.config.auth.as_ref() else {
            return self.become_ready(now);
        };
        if !self.tls && !creds.allow_cleartext {
            return self.fail(now, None, FailReason::AuthNeedsTls, After::Quit);
        }
        if ext.auth.plain {
            let line = format!("AUTH PLAIN {}", self.plain_response());
            self.command(&line);
            self.push_expect(now, Expect::AuthPlain { responded: false });
        } else if ext.auth.login {
            self.command("AUTH LOGIN");
            self.push_expect(now, Expect::AuthLoginUser);
        } else {
            self.fail(now, None, FailReason::AuthNotOffered, After::Quit);
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`, with an empty authzid.
    fn plain_response(&self) -> String {
        let c = self.config.auth.as_ref().expect("AUTH implies credentials");
        let mut raw = Vec::with_capacity(c.username.len() + c.password.len() + 2);
        raw.push(0);
        raw.extend_from_slice(c.username.as_bytes());
        raw.push(0);
        raw.extend_from_slice(c.password.as_bytes());
        b64(&raw)
    }

    fn become_ready(&mut self, now: Instant) {
        if self.quit_requested {
            return self.send_quit(now);
        }
        self.state = State::Ready;
        if !self.ready_announced {
            self.ready_announced = true;
            self.events.push_back(ClientEvent::Ready {
                extensions: self.extensions.clone().unwrap_or_default(),
                tls: self.tls,
            });
        }
    }

    fn on_mail(&mut self, now: Instant, reply: Reply) {
        let pipelining = self.pipelining();
        let t = self.txn.as_mut().expect("MAIL inside a transaction");
        if reply.is_positive() {
            t.needs_rset = true;
            if !pipelining {
                self.send_next_rcpt(now);
            }
        } else {
            // Pipelined RCPTs and DATA still get their (negative) replies: drained below.
            t.outcome = Some(Outcome::Failed {
                reply,
                reason: FailReason::Mail,
            });
            t.body = Body::Discard;
            t.buf = Vec::new();
            self.try_finish(now);
        }
    }

    fn send_next_rcpt(&mut self, now: Instant) {
        let t = self.txn.as_mut().expect("RCPT inside a transaction");
        let i = t.next_rcpt;
        t.next_rcpt += 1;
        write_command(&mut self.output, &format!("RCPT TO:<{}>", t.recipients[i]));
        self.push_expect(now, Expect::Rcpt(i));
    }

    fn on_rcpt(&mut self, now: Instant, index: usize, reply: Reply) {
        let pipelining = self.pipelining();
        let chunking = self.extensions.as_ref().is_some_and(|e| e.chunking);
        let t = self.txn.as_mut().expect("RCPT inside a transaction");
        if t.outcome.is_some() {
            // MAIL failed: these replies only drain the pipeline.
            return self.try_finish(now);
        }
        if reply.is_positive() {
            t.accepted += 1;
        }
        t.rcpt[index] = Some(reply.clone());
        t.answered += 1;
        self.events
            .push_back(ClientEvent::RecipientResult { index, reply });
        if t.answered < t.rcpt.len() {
            if !pipelining {
                self.send_next_rcpt(now);
            }
            return;
        }
        if t.accepted == 0 {
            // RSET follows; a pipelined DATA is still answered (554 or 503) first.
            t.conclude(None);
        } else if chunking {
            t.body = Body::Bdat;
            self.pump_body(now);
        } else if !pipelining {
            self.command("DATA");
            self.push_expect(now, Expect::Data);
        }
        self.try_finish(now);
    }

    fn on_data(&mut self, now: Instant, reply: Reply) {
        let t = self.txn.as_mut().expect("DATA inside a transaction");
        if t.outcome.is_some() {
            if reply.code / 100 == 3 {
                // 354 with no recipient accepted (or after a refused MAIL): the server
                // now reads the connection as message text. Nothing sent from here on
                // would be read as commands, so the connection is beyond saving.
                return self.protocol_error(now, reply);
            }
            return self.try_finish(now);
        }
        if reply.code / 100 == 3 {
            t.body = Body::Data(DotEncoder::new());
            self.pump_body(now);
        } else if reply.is_positive() {
            self.protocol_error(now, reply);
        } else {
            t.conclude(Some(reply));
            self.try_finish(now);
        }
    }

    fn on_bdat(&mut self, now: Instant, last: bool, reply: Reply) {
        let t = self.txn.as_mut().expect("BDAT inside a transaction");
        if t.outcome.is_some() {
            // An earlier chunk failed: the rest only drain the pipeline.
            return self.try_finish(now);
        }
        if reply.is_positive() {
            if last {
                t.needs_rset = false;
                t.conclude(Some(reply));
                self.try_finish(now);
            } else {
                self.pump_body(now);
            }
        } else {
            // RFC 3030 2: no more chunks after a failed one; RSET clears what is left.
            t.conclude(Some(reply));
            self.try_finish(now);
        }
    }

    /// Moves buffered body octets to the output as far as the server can take them.
    fn pump_body(&mut self, now: Instant) {
        let pipelining = self.pipelining();
        let Some(mut t) = self.txn.take() else {
            return;
        };
        match &mut t.body {
            Body::Waiting | Body::Sent => {}
            Body::Discard => t.buf.clear(),
            Body::Data(enc) => {
                enc.encode(&t.buf, &mut self.output);
                t.buf.clear();
                if t.ended {
                    enc.finish(&mut self.output);
                    t.body = Body::Sent;
                    self.push_expect(now, Expect::DataEnd);
                }
            }
            Body::Bdat => {
                // Without PIPELINING each chunk waits for the reply to the one before.
                if pipelining || self.expect.is_empty() {
                    if t.ended {
                        write_bdat(&mut self.output, &t.buf, true);
                        t.buf.clear();
                        t.body = Body::Sent;
                        self.push_expect(now, Expect::Bdat { last: true });
                    } else if t.buf.len() >= BDAT_CHUNK {
                        write_bdat(&mut self.output, &t.buf, false);
                        t.buf.clear();
                        self.push_expect(now, Expect::Bdat { last: false });
                    }
                }
            }
        }
        self.txn = Some(t);
    }

    /// Ends the transaction once its outcome is known and the pipeline has drained: RSET
    /// if the server still holds it open, then the outcome goes out and the session is
    /// ready for the next one.
    fn try_finish(&mut self, now: Instant) {
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        if t.outcome.is_none() || !self.expect.is_empty() {
            return;
        }
        if t.needs_rset {
            t.needs_rset = false;
            self.command("RSET");
            return self.push_expect(now, Expect::Rset);
        }
        let t = self.txn.take().expect("checked above");
        self.emit_outcome(t);
        self.become_ready(now);
    }

    fn emit_outcome(&mut self, t: Txn) {
        let ev = match t.outcome {
            None => return,
            Some(Outcome::Result { recipients, reply }) => ClientEvent::TransactionResult {
                recipients,
                reply,
                eight_bit_unannounced: t.eight_bit_unannounced,
            },
            Some(Outcome::Failed { reply, reason }) => ClientEvent::Failed {
                reply: Some(reply),
                reason,
            },
        };
        self.events.push_back(ev);
    }

    // -----------------------------------------------------------------------------------
    // Plumbing

    fn pipelining(&self) -> bool {
        self.extensions.as_ref().is_some_and(|e| e.pipelining)
    }

    fn send_ehlo(&mut self, now: Instant) {
        let ehlo = format!("EHLO {}", self.config.helo_name);
        self.command(&ehlo);
        self.push_expect(now, Expect::Ehlo);
    }

    fn send_quit(&mut self, now: Instant) {
        self.command("QUIT");
        self.state = State::Quitting;
        self.push_expect(now, Expect::Quit);
    }

    /// Ends the connection (or, for `After::Quit`, starts ending it). A transaction whose
    /// outcome was already known is reported as such first; one still open is covered by
    /// this failure.
    fn fail(&mut self, now: Instant, reply: Option<Reply>, reason: FailReason, after: After) {
        match self.state {
            State::Closed => return,
            State::Quitting => return self.close(),
            _ => {}
        }
        if let Some(t) = self.txn.take() {
            self.emit_outcome(t);
        }
        self.events.push_back(ClientEvent::Failed { reply, reason });
        if after == After::Quit && self.expect.is_empty() {
            self.send_quit(now);
        } else {
            self.close();
        }
    }

    fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.expect.clear();
        self.txn = None;
        self.deadline = None;
        self.reader.clear();
        self.events.push_back(ClientEvent::Closed);
    }

    fn command(&mut self, line: &str) {
        write_command(&mut self.output, line);
    }

    /// Queues an awaited reply; its timer starts if nothing else was awaited.
    fn push_expect(&mut self, now: Instant, e: Expect) {
        if self.expect.is_empty() {
            self.deadline = Some(now + e.timeout(&self.config.timeouts));
        }
        self.expect.push_back(e);
    }

    /// Restarts the timer for whatever the session now waits on.
    fn rearm(&mut self, now: Instant) {
        let t = &self.config.timeouts;
        self.deadline = match (self.expect.front(), self.state) {
            (_, State::Closed) => None,
            (Some(e), _) => Some(now + e.timeout(t)),
            (None, State::AwaitTls) => Some(now + t.command),
            (None, State::Busy) => match self.txn.as_ref().map(|t| &t.body) {
                Some(Body::Data(_) | Body::Bdat | Body::Waiting) => Some(now + t.data_block),
                _ => None,
            },
            (None, _) => None,
        };
    }
}

/// Whether a 3xx is a proper answer to the command.
fn expects_intermediate(e: Expect) -> bool {
    matches!(
        e,
        Expect::Data | Expect::AuthPlain { .. } | Expect::AuthLoginUser | Expect::AuthLoginPass
    )
}

/// Appends a command line; CR and LF never leave inside one, whatever the caller gave.
fn write_command(out: &mut Vec<u8>, line: &str) {
    out.extend(line.bytes().filter(|&b| b != b'\r' && b != b'\n'));
    out.extend_from_slice(b"\r\n");
}

/// RFC 3030 2: `BDAT size [LAST]`, then exactly `size` octets.
fn write_bdat(out: &mut Vec<u8>, chunk: &[u8], last: bool) {
    let cmd = if last {
        format!("BDAT {} LAST", chunk.len())
    } else {
        format!("BDAT {}", chunk.len())
    };
    write_command(out, &cmd);
    out.extend_from_slice(chunk);
}

/// An address that cannot break out of `<...>` or its command line.
fn valid_address(a: &str) -> bool {
    a.len() <= MAX_ADDRESS && !a.chars().any(|c| c.is_control() || c == '<' || c == '>')
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}
