//! One outbound SMTP connection: a blocking TCP socket (with timeouts), rustls after
//! STARTTLS, and the sans-IO [`ClientSession`] deciding what to say.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_core::smtp::client::{
    ClientConfig, ClientError, ClientEvent, ClientSession, Envelope, FailReason,
};
use ironpost_core::smtp::Reply;
use rustls::{ClientConnection, StreamOwned};

use super::retry::{reply_line, Failure};
use super::route::Candidate;
use super::tls::{TlsPolicy, TlsSummary};

/// Message octets read from the queue file per step.
const READ_CHUNK: usize = 64 * 1024;

/// The socket, in cleartext or inside TLS.
enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.write_all(data),
            Transport::Tls(t) => {
                t.write_all(data)?;
                t.flush()
            }
        }
    }
}

/// Why opening a connection failed.
#[derive(Debug)]
pub enum OpenError {
    /// The TLS handshake failed (not a refused certificate under `encrypt`): with
    /// `tls = "may"` the host is tried again in cleartext.
    Tls(Failure),
    Other(Failure),
}

impl OpenError {
    pub fn failure(self) -> Failure {
        match self {
            OpenError::Tls(f) | OpenError::Other(f) => f,
        }
    }
}

/// One recipient's outcome in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// Accepted: the server's final reply, on one line.
    Sent(String),
    Failed(Failure),
}

/// An open, greeted (and, as configured, encrypted and authenticated) connection.
pub struct SmtpConnection {
    session: ClientSession,
    transport: Transport,
    pub candidate: Candidate,
    pub tls: Option<TlsSummary>,
    /// Transactions sent on this connection.
    pub transactions: u32,
    buf: Vec<u8>,
}

impl SmtpConnection {
    /// Connects to `candidate` and runs the greeting, EHLO, STARTTLS (as `config` says)
    /// and AUTH, until the session is ready for mail.
    pub fn open(
        candidate: &Candidate,
        config: Arc<ClientConfig>,
        tls: &TlsPolicy,
        connect_timeout: Duration,
    ) -> Result<SmtpConnection, OpenError> {
        let tcp = TcpStream::connect_timeout(&candidate.addr, connect_timeout).map_err(|e| {
            OpenError::Other(Failure::temporary(
                "4.4.1",
                format!("connect to {candidate}: {}", io_reason(&e)),
            ))
        })?;
        let _ = tcp.set_nodelay(true);
        let command_timeout = config.timeouts.command;
        tcp.set_write_timeout(Some(command_timeout.max(Duration::from_secs(1))))
            .map_err(|e| OpenError::Other(Failure::temporary("4.4.2", e.to_string())))?;
        let mut c = SmtpConnection {
            session: ClientSession::new(config, Instant::now()),
            transport: Transport::Plain(tcp),
            candidate: candidate.clone(),
            tls: None,
            transactions: 0,
            buf: vec![0; 16 * 1024],
        };
        let mut failure: Option<Failure> = None;
        loop {
            match c.next_event() {
                ClientEvent::Ready { .. } => return Ok(c),
                ClientEvent::StartTls => {
                    if let Err(e) = c.start_tls(tls, command_timeout) {
                        let f = Failure::temporary(
                            "4.7.5",
                            format!("TLS handshake with {candidate} failed: {e}"),
                        );
                        let _ = c.transport.tcp().shutdown(Shutdown::Both);
                        return Err(OpenError::Tls(f));
                    }
                    c.session.tls_established(Instant::now());
                }
                ClientEvent::Failed { reply, reason } => {
                    failure.get_or_insert(connection_failure(candidate, reply.as_ref(), &reason));
                }
                ClientEvent::Closed => {
                    c.flush_quietly();
                    return Err(OpenError::Other(failure.unwrap_or_else(|| {
                        Failure::temporary("4.4.2", format!("lost connection with {candidate}"))
                    })));
                }
                ClientEvent::RecipientResult { .. } | ClientEvent::TransactionResult { .. } => {}
            }
        }
    }

    /// Whether another transaction can be sent on this connection.
    pub fn is_ready(&self) -> bool {
        self.session.is_ready()
    }

    /// Sends one message and returns each recipient's outcome, in envelope order.
    pub fn send(&mut self, envelope: Envelope, body: &mut dyn Read) -> Vec<RcptOutcome> {
        let n = envelope.recipients.len();
        let all = |f: Failure| vec![RcptOutcome::Failed(f); n];
        self.transactions += 1;
        if let Err(e) = self.session.send_message(Instant::now(), envelope) {
            return all(match e {
                ClientError::InvalidAddress(a) => {
                    Failure::permanent("5.1.3", format!("bad address syntax: {a:?}"))
                }
                other => Failure::temporary("4.3.0", other.to_string()),
            });
        }
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut ended = false;
        loop {
            while !ended && self.session.wants_body() {
                match body.read(&mut chunk) {
                    Ok(0) => {
                        self.session.body_end(Instant::now());
                        ended = true;
                    }
                    Ok(k) => self.session.body(Instant::now(), &chunk[..k]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // The queue file cannot be read: never send a truncated message.
                        let _ = self.transport.tcp().shutdown(Shutdown::Both);
                        self.session.peer_closed(Instant::now());
                        return all(Failure::temporary(
                            "4.3.0",
                            format!("cannot read the queued message: {e}"),
                        ));
                    }
                }
                self.flush();
            }
            self.flush();
            while let Some(ev) = self.session.poll_event() {
                match ev {
                    ClientEvent::TransactionResult {
                        recipients,
                        reply,
                        eight_bit_unannounced,
                    } => {
                        if eight_bit_unannounced {
                            tracing::warn!(relay = %self.candidate, "8-bit message sent to a server without 8BITMIME");
                        }
                        let _ = reply;
                        return recipients
                            .iter()
                            .map(|r| {
                                if r.is_positive() {
                                    RcptOutcome::Sent(reply_line(r))
                                } else {
                                    RcptOutcome::Failed(Failure::from_reply(r))
                                }
                            })
                            .collect();
                    }
                    ClientEvent::Failed { reply, reason } => {
                        return all(transaction_failure(
                            &self.candidate,
                            reply.as_ref(),
                            &reason,
                        ));
                    }
                    ClientEvent::Closed => {
                        return all(Failure::temporary(
                            "4.4.2",
                            format!(
                                "lost connection with {} while sending the message",
                                self.candidate
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            if !ended && self.session.wants_body() {
                continue;
            }
            self.read_once();
        }
    }

    /// Says QUIT (waiting briefly for the reply) and closes.
    pub fn quit(mut self) {
        if !self.session.is_closed() {
            self.session.quit(Instant::now());
            let give_up = Instant::now() + Duration::from_secs(5);
            while !self.session.is_closed() && Instant::now() < give_up {
                self.flush();
                while self.session.poll_event().is_some() {}
                if self.session.is_closed() {
                    break;
                }
                self.read_once();
            }
        }
        let _ = self.transport.tcp().shutdown(Shutdown::Both);
    }

    // ---------------------------------------------------------------------------------

    /// The next event, sending and reading as needed.
    fn next_event(&mut self) -> ClientEvent {
        loop {
            self.flush();
            if let Some(ev) = self.session.poll_event() {
                return ev;
            }
            self.read_once();
        }
    }

    fn flush(&mut self) {
        let mut out = Vec::new();
        self.session.take_output(&mut out);
        if !out.is_empty() {
            if let Err(e) = self.transport.write_all(&out) {
                tracing::debug!(relay = %self.candidate, error = %e, "write failed");
                self.session.peer_closed(Instant::now());
            }
        }
    }

    fn flush_quietly(&mut self) {
        let mut out = Vec::new();
        self.session.take_output(&mut out);
        if !out.is_empty() {
            let _ = self.transport.write_all(&out);
        }
    }

    /// Waits for input until the session's deadline and hands it what arrives (or the
    /// timeout, or the end of the connection).
    fn read_once(&mut self) {
        if self.session.is_closed() {
            return;
        }
        let now = Instant::now();
        let wait = match self.session.poll_timeout() {
            Some(d) if d <= now => {
                self.session.handle_timeout(now);
                return;
            }
            Some(d) => d - now,
            None => Duration::from_secs(300),
        };
        if self
            .transport
            .tcp()
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .is_err()
        {
            self.session.peer_closed(now);
            return;
        }
        match self.transport.read(&mut self.buf) {
            Ok(0) => self.session.peer_closed(Instant::now()),
            Ok(n) => self.session.feed(Instant::now(), &self.buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                self.session.handle_timeout(Instant::now())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(relay = %self.candidate, error = %e, "read failed");
                self.session.peer_closed(Instant::now())
            }
        }
    }

    /// Runs the TLS handshake on the socket after the server's 220 to STARTTLS.
    fn start_tls(&mut self, policy: &TlsPolicy, timeout: Duration) -> Result<(), String> {
        let Transport::Plain(tcp) = &self.transport else {
            return Err("STARTTLS inside TLS".into());
        };
        let mut tcp = tcp.try_clone().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut conn = policy
            .connect(&self.candidate.host)
            .map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        self.tls = Some(policy.summary(&conn, &self.candidate.host));
        self.transport = Transport::Tls(Box::new(StreamOwned::new(conn, tcp)));
        Ok(())
    }
}

/// A failure before the session was ready: always temporary (another MX, or a later
/// attempt, may do better), with the server's reply when there was one.
fn connection_failure(c: &Candidate, reply: Option<&Reply>, reason: &FailReason) -> Failure {
    match reply {
        Some(r) => Failure {
            permanent: false,
            status: format!("4{}", &super::retry::status_of(r)[1..]),
            diagnostic: reply_line(r),
            from_server: true,
        },
        None => Failure::temporary(
            match reason {
                FailReason::StartTlsRequired => "4.7.4",
                FailReason::AuthNeedsTls | FailReason::AuthNotOffered => "4.7.0",
                FailReason::Timeout => "4.4.2",
                _ => "4.4.0",
            },
            format!("{reason} ({c})"),
        ),
    }
}

/// A transaction that failed as a whole: the server's reply decides (5xx permanent), no
/// reply is temporary.
fn transaction_failure(c: &Candidate, reply: Option<&Reply>, reason: &FailReason) -> Failure {
    match reply {
        Some(r) => Failure::from_reply(r),
        None => Failure::temporary(
            if *reason == FailReason::Timeout {
                "4.4.2"
            } else {
                "4.4.0"
            },
            format!("{reason} ({c})"),
        ),
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "Connection timed out".into(),
        _ => e.to_string(),
    }
}
