//! The SMTP listeners' connection handler: it runs a core [`Session`] behind the TLS layer
//! and answers its events from the directory and the store. Blocking work (password hashes,
//! message files, fsync) leaves the event loop as jobs.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ironpost_core::service::{ConnInfo, ConnectionHandler, HandlerFactory, Job, JobOutput};
use ironpost_core::smtp::session::{AuthPolicy, StartTls};
use ironpost_core::smtp::{Answer, Event, HopCounter, Reply, Session, SessionConfig};
use ironpost_core::tls::Connection;

use crate::app::{App, ConnectionSlot};
use crate::conn::{self, Jobs, Tls};
use crate::directory::Resolution;
use crate::maildir::{Recipient, StoreError};
use crate::outbound::Delivery;
use crate::queue::{Accepting, Envelope};
use crate::received::{new_queue_id, received_header, Arrival};

/// The answer to a connection over the limits.
const REFUSAL: &[u8] = b"421 4.7.0 Too many connections, try again later\r\n";

/// Body bytes gathered before a write job is sent off: big enough to keep jobs few.
const WRITE_BATCH: usize = 256 * 1024;

/// The three SMTP roles of the docker-mailserver port table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: mail from the internet to our domains.
    Smtp,
    /// Port 587: users sending, after STARTTLS and AUTH.
    Submission,
    /// Port 465: users sending over implicit TLS (RFC 8314).
    Submissions,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Smtp => "smtp",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }
}

pub struct SmtpFactory {
    app: Arc<App>,
    role: Role,
    session: Arc<SessionConfig>,
    delivery: Option<Delivery>,
}

impl SmtpFactory {
    pub fn new(app: Arc<App>, role: Role) -> Self {
        let c = &app.config;
        let mut s = SessionConfig::new(c.hostname.clone());
        s.max_message_size = c.max_message_size;
        s.max_line_length = c.limits.max_line_length;
        s.max_recipients = c.limits.max_recipients;
        s.command_timeout = c.limits.command_timeout;
        s.data_timeout = c.limits.data_timeout;
        s.max_errors = c.limits.max_errors;
        s.max_auth_failures = c.limits.max_auth_failures;
        (s.starttls, s.auth) = match role {
            Role::Smtp if c.smtp.starttls => (StartTls::Offer, AuthPolicy::Off),
            Role::Smtp => (StartTls::Off, AuthPolicy::Off),
            Role::Submission => (StartTls::Required, AuthPolicy::Required),
            Role::Submissions => (StartTls::Off, AuthPolicy::Required),
        };
        SmtpFactory {
            app,
            role,
            session: Arc::new(s),
            delivery: None,
        }
    }

    /// Mail for other domains (authenticated senders, aliases leading elsewhere) goes into
    /// the queue of this delivery service; without one it is deferred with 451.
    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = Some(delivery);
        self
    }
}

impl HandlerFactory for SmtpFactory {
    fn new_handler(&self, now: Instant, info: ConnInfo) -> Box<dyn ConnectionHandler> {
        let tls = match self.role {
            Role::Submissions => Tls::Implicit,
            _ if self.session.starttls != StartTls::Off => Tls::StartTls,
            _ => Tls::Off,
        };
        let implicit = tls == Tls::Implicit;
        let session = || Session::new(self.session.clone(), implicit, now);
        let (conn, slot) =
            match conn::open(&self.app, self.role.name(), &info, tls, REFUSAL, session) {
                Ok(opened) => opened,
                Err(refused) => return refused,
            };
        Box::new(SmtpHandler {
            conn,
            app: self.app.clone(),
            delivery: self.delivery.clone(),
            role: self.role,
            info,
            txn: None,
            jobs: Jobs::default(),
            messages: 0,
            _slot: slot,
        })
    }
}

/// The mail transaction as the application sees it.
struct Txn {
    queue_id: String,
    from: String,
    /// Distinct local mailboxes, in the order first named.
    recipients: Vec<Recipient>,
    /// The addresses as the client gave them, for the log.
    rcpt_log: Vec<String>,
    /// Recipients elsewhere, for the queue: the address, and the one the client gave when
    /// it was an alias.
    relay: Vec<(String, Option<String>)>,
    smtputf8: bool,
    writer: Option<Accepting>,
    pending: Vec<u8>,
    size: u64,
    error: Option<StoreError>,
    /// The `Received:` fields the message came with.
    hops: HopCounter,
}

/// What a job hands back.
enum Done {
    Auth(bool),
    Wrote {
        writer: Option<Accepting>,
        buf: Vec<u8>,
        error: Option<StoreError>,
    },
    Committed(Result<(), StoreError>),
}

struct SmtpHandler {
    conn: Connection<Session>,
    app: Arc<App>,
    delivery: Option<Delivery>,
    role: Role,
    info: ConnInfo,
    txn: Option<Txn>,
    jobs: Jobs,
    messages: u32,
    _slot: ConnectionSlot,
}

impl SmtpHandler {
    fn session(&mut self) -> &mut Session {
        self.conn.protocol_mut()
    }

    /// Takes events until one needs a job or the session needs more input.
    fn drive(&mut self, now: Instant) {
        while !self.jobs.busy() {
            let Some(ev) = self.session().poll_event() else {
                break;
            };
            self.event(now, ev);
        }
    }

    fn event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Auth {
                username, password, ..
            } => {
                let app = self.app.clone();
                self.jobs.queue(move || {
                    Done::Auth(app.directory.get().verify_password(&username, &password))
                });
            }
            Event::Mail { from, smtputf8, .. } => {
                let from = from.map(|a| a.to_string()).unwrap_or_default();
                if let Some(user) = self.conn.protocol().authenticated() {
                    // A user sends only as an address of their own: their account or an
                    // alias leading to it (the null sender is nobody's).
                    if !self.app.directory.get().owns_address(user, &from) {
                        let user = user.to_string();
                        tracing::warn!(listener = self.role.name(), client = %self.info.peer, user = %user, from = %from, "sender address rejected: not owned by the user");
                        let reply = Reply::ext(
                            553,
                            5,
                            7,
                            1,
                            format!("Sender address rejected: not owned by user {user}"),
                        );
                        self.session().answer(now, Answer::Reject(reply));
                        return;
                    }
                }
                self.txn = Some(Txn {
                    queue_id: new_queue_id(),
                    from,
                    recipients: Vec::new(),
                    rcpt_log: Vec::new(),
                    relay: Vec::new(),
                    smtputf8,
                    writer: None,
                    pending: Vec::new(),
                    size: 0,
                    error: None,
                    hops: HopCounter::new(),
                });
                self.session().answer(now, Answer::Accept);
            }
            Event::Rcpt { to } => {
                let answer = self.rcpt(to.map(|a| a.to_string()));
                self.session().answer(now, answer);
            }
            Event::DataStart => {}
            Event::Body(chunk) => {
                let max_hops = self.app.config.limits.max_hops;
                let Some(txn) = self.txn.as_mut() else { return };
                txn.size += chunk.len() as u64;
                txn.hops.feed(&chunk);
                // A looping message is refused at the end of data: nothing more is written.
                if txn.error.is_some() || txn.hops.count() > max_hops {
                    return;
                }
                if txn.pending.is_empty() {
                    txn.pending = chunk;
                } else {
                    txn.pending.extend_from_slice(&chunk);
                }
                if txn.pending.len() >= WRITE_BATCH {
                    self.write_job(false);
                }
            }
            Event::MessageEnd => {
                let max_hops = self.app.config.limits.max_hops;
                if self.txn.as_ref().is_some_and(|t| t.hops.count() > max_hops) {
                    self.looping(now);
                } else {
                    self.write_job(true);
                }
            }
            Event::Reset => {
                // Dropping the writer removes its temporary file.
                self.txn = None;
            }
        }
    }

    fn rcpt(&mut self, to: Option<String>) -> Answer {
        let address = to.unwrap_or_else(|| "postmaster".to_string());
        let authenticated = self.conn.protocol().authenticated().is_some();
        let Some(txn) = self.txn.as_mut() else {
            return Answer::Reject(Reply::ext(503, 5, 5, 1, "Need MAIL command"));
        };
        match self.app.directory.get().resolve(&address) {
            Resolution::Local { mailboxes, forward } => {
                if !forward.is_empty() && self.delivery.is_none() {
                    tracing::warn!(queue_id = %txn.queue_id, to = %address, "deferred: forwarding to {:?} needs outbound delivery", forward);
                    return Answer::Reject(Reply::ext(
                        451,
                        4,
                        3,
                        0,
                        "Forwarding to remote addresses is not available yet; try again later",
                    ));
                }
                for mb in mailboxes {
                    if !txn
                        .recipients
                        .iter()
                        .any(|r| r.domain == mb.domain && r.local == mb.local)
                    {
                        // Delivered-To names the final mailbox, as a local delivery agent does.
                        txn.recipients.push(Recipient {
                            delivered_to: mb.to_string(),
                            domain: mb.domain,
                            local: mb.local,
                        });
                    }
                }
                // Alias targets elsewhere are forwarded through the queue, with the
                // envelope sender unchanged (no SRS).
                for target in forward {
                    add_relay(&mut txn.relay, target, Some(&address));
                }
                txn.rcpt_log.push(address);
                Answer::Accept
            }
            Resolution::Unknown => Answer::Reject(Reply::ext(
                550,
                5,
                1,
                1,
                format!("<{address}>: Recipient address rejected: User unknown"),
            )),
            Resolution::Foreign if authenticated && self.delivery.is_some() => {
                add_relay(&mut txn.relay, address.clone(), None);
                txn.rcpt_log.push(address);
                Answer::Accept
            }
            Resolution::Foreign if authenticated => {
                tracing::warn!(queue_id = %txn.queue_id, to = %address, "deferred: outbound delivery is not available");
                Answer::Reject(Reply::ext(
                    451,
                    4,
                    3,
                    0,
                    "Outbound delivery is not available yet; try again later",
                ))
            }
            Resolution::Foreign => Answer::Reject(Reply::ext(
                554,
                5,
                7,
                1,
                format!("<{address}>: Relay access denied"),
            )),
        }
    }

    /// Sends the gathered body (and, at the end, the commit) to a worker.
    fn write_job(&mut self, finish: bool) {
        let header = self
            .txn
            .as_ref()
            .filter(|t| t.writer.is_none())
            .map(|t| self.received(t));
        let app = self.app.clone();
        let delivery = self.delivery.clone();
        let Some(txn) = self.txn.as_mut() else { return };
        let buf = std::mem::take(&mut txn.pending);
        let writer = txn.writer.take();
        let mut error = txn.error.take();
        let from = txn.from.clone();
        let queue_id = txn.queue_id.clone();
        let smtputf8 = txn.smtputf8;
        let (recipients, relay) = if writer.is_none() && error.is_none() {
            (txn.recipients.clone(), txn.relay.clone())
        } else {
            (Vec::new(), Vec::new())
        };
        self.jobs.queue(move || {
            let queue = delivery.as_ref().map(|d| d.queue());
            let mut writer = writer;
            if error.is_none() {
                if writer.is_none() {
                    let env = Envelope {
                        queue_id: &queue_id,
                        from: &from,
                        local: recipients,
                        relay: &relay,
                        smtputf8,
                    };
                    let header = header.unwrap_or_default();
                    match Accepting::begin(&app.store, queue, env, header.as_bytes()) {
                        Ok(w) => writer = Some(w),
                        Err(e) => error = Some(e),
                    }
                }
                if let (Some(w), false) = (writer.as_mut(), buf.is_empty()) {
                    if let Err(e) = w.write(&buf) {
                        error = Some(e);
                        writer = None;
                    }
                }
            }
            if finish {
                let result = match (writer, error) {
                    (_, Some(e)) => Err(e),
                    (Some(w), None) => w.commit(queue).map(|(files, queued)| {
                        // IMAP sessions watching these mailboxes look again.
                        files
                            .iter()
                            .for_each(|f| app.mail.registry().notify_delivered(f));
                        if let (Some(meta), Some(d)) = (queued, &delivery) {
                            d.enqueued(meta);
                        }
                    }),
                    (None, None) => Ok(()),
                };
                return Done::Committed(result);
            }
            let mut buf = buf;
            buf.clear();
            Done::Wrote { writer, buf, error }
        });
    }

    fn received(&self, txn: &Txn) -> String {
        let s = self.conn.protocol();
        let single = match txn.rcpt_log.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        };
        received_header(
            &Arrival {
                helo: s.helo_name(),
                client_ip: self.info.peer.ip(),
                hostname: &self.app.config.hostname,
                esmtp: s.is_esmtp(),
                authenticated: s.authenticated().is_some(),
                tls: s.tls(),
                queue_id: &txn.queue_id,
                single_recipient: single,
            },
            SystemTime::now(),
        )
    }

    /// Refuses a message that has passed through too many hops (a mail loop); dropping
    /// the transaction's writer removes whatever of it was written.
    fn looping(&mut self, now: Instant) {
        let Some(txn) = self.txn.take() else { return };
        tracing::warn!(
            queue_id = %txn.queue_id, client = %self.info.peer, from = %txn.from,
            to = %txn.rcpt_log.join(","), size = txn.size, hops = txn.hops.count(),
            "rejected: too many hops (mail loop)"
        );
        drop(txn);
        let reply = Reply::ext(554, 5, 4, 6, "Too many hops");
        self.session().answer(now, Answer::Reject(reply));
    }

    fn finished(&mut self, now: Instant, result: Result<(), StoreError>) {
        let Some(txn) = self.txn.take() else { return };
        let tls = conn::tls_name(self.conn.protocol().tls());
        let user = self
            .conn
            .protocol()
            .authenticated()
            .unwrap_or("-")
            .to_string();
        let answer = match result {
            Ok(()) => {
                self.messages += 1;
                tracing::info!(
                    queue_id = %txn.queue_id, client = %self.info.peer, from = %txn.from,
                    to = %txn.rcpt_log.join(","), size = txn.size, tls = %tls, user = %user,
                    local = txn.recipients.len(), queued = txn.relay.len(),
                    "delivered"
                );
                Answer::Queued(txn.queue_id)
            }
            Err(e) => {
                tracing::error!(
                    queue_id = %txn.queue_id, client = %self.info.peer, from = %txn.from,
                    to = %txn.rcpt_log.join(","), size = txn.size, error = %e,
                    "delivery failed"
                );
                Answer::Reject(Reply::ext(
                    451,
                    4,
                    3,
                    0,
                    "Local error in processing; try again later",
                ))
            }
        };
        self.session().answer(now, answer);
    }
}

impl ConnectionHandler for SmtpHandler {
    fn receive(&mut self, now: Instant, wire: &[u8]) {
        self.conn.receive(now, wire);
        self.drive(now);
    }

    fn transmit(&mut self, out: &mut Vec<u8>) {
        self.conn.transmit(out);
    }

    fn poll_job(&mut self) -> Option<Job> {
        self.jobs.poll()
    }

    fn job_done(&mut self, now: Instant, output: JobOutput) {
        self.jobs.done();
        let Ok(done) = output.downcast::<Done>() else {
            return;
        };
        match *done {
            Done::Auth(ok) => {
                let answer = if ok {
                    Answer::Accept
                } else {
                    tracing::warn!(listener = self.role.name(), client = %self.info.peer, "authentication failed");
                    Answer::Reject(Reply::ext(
                        535,
                        5,
                        7,
                        8,
                        "Authentication credentials invalid",
                    ))
                };
                self.session().answer(now, answer);
            }
            Done::Wrote { writer, buf, error } => match self.txn.as_mut() {
                Some(txn) => {
                    txn.writer = writer;
                    txn.error = error;
                    if txn.pending.is_empty() {
                        txn.pending = buf;
                    }
                }
                None => drop(writer),
            },
            Done::Committed(result) => self.finished(now, result),
        }
        self.drive(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.conn.protocol().poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.session().handle_timeout(now);
        self.drive(now);
    }

    fn wants_read(&self) -> bool {
        !self.conn.wants_close() && self.conn.protocol().buffered_input() < 256 * 1024
    }

    fn peer_closed(&mut self, _now: Instant) {
        self.session().peer_closed();
        self.txn = None;
    }

    fn shutdown(&mut self, now: Instant) {
        self.session().shutdown();
        self.drive(now);
    }

    fn is_closed(&self) -> bool {
        self.conn.wants_close() && !self.jobs.running()
    }
}

impl Drop for SmtpHandler {
    fn drop(&mut self) {
        let tls = conn::tls_name(self.conn.protocol().tls());
        let error = self.conn.error().map(tracing::field::display);
        tracing::info!(listener = self.role.name(), client = %self.info.peer, messages = self.messages, tls = %tls, error, "disconnect");
    }
}

/// Adds a recipient elsewhere unless it is there already (addresses compare without case).
fn add_relay(relay: &mut Vec<(String, Option<String>)>, address: String, original: Option<&str>) {
    if !relay.iter().any(|(a, _)| a.eq_ignore_ascii_case(&address)) {
        relay.push((address, original.map(str::to_string)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_a_421_reply() {
        let mut v = Vec::new();
        Reply::ext(421, 4, 7, 0, "Too many connections, try again later").write_to(&mut v, true);
        assert_eq!(v, REFUSAL);
    }
}
