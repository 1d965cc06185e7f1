//! What the SMTP, IMAP and POP3 connection handlers share: admitting a connection and
//! putting its session behind TLS, the handler that refuses a connection over the limits,
//! the slot for a handler's blocking job, and the TLS field of the log lines.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use ironpost_core::service::{ConnInfo, ConnectionHandler, Job, JobOutput};
use ironpost_core::tls::{Connection, Protocol, TlsInfo};

use crate::app::{App, ConnectionSlot};

/// How a listener's connections use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Cleartext only.
    Off,
    /// Cleartext that may upgrade with STARTTLS (or STLS).
    StartTls,
    /// TLS from the first byte (ports 465, 993, 995).
    Implicit,
}

/// Counts a new connection against the limits and puts its session (made by `session`,
/// only once admitted) behind TLS as `tls` says, logging `connect`. A connection over the
/// limits, or one whose TLS cannot start, gets a [`Refused`] handler instead, which answers
/// with `refusal` (one whole protocol line) where the port is cleartext.
pub fn open<P: Protocol>(
    app: &Arc<App>,
    listener: &'static str,
    info: &ConnInfo,
    tls: Tls,
    refusal: &'static [u8],
    session: impl FnOnce() -> P,
) -> Result<(Connection<P>, ConnectionSlot), Box<dyn ConnectionHandler>> {
    let implicit = tls == Tls::Implicit;
    let Some(slot) = app.admit(info.peer.ip()) else {
        tracing::warn!(listener, client = %info.peer, "connection refused: too many connections");
        return Err(Box::new(Refused::new(refusal, implicit)));
    };
    let session = session();
    let conn = match tls {
        Tls::Implicit => match Connection::implicit_tls(session, app.tls.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start TLS");
                return Err(Box::new(Refused::new(refusal, true)));
            }
        },
        Tls::StartTls => Connection::plain(session, Some(app.tls.clone())),
        Tls::Off => Connection::plain(session, None),
    };
    tracing::info!(listener, client = %info.peer, "connect");
    Ok((conn, slot))
}

/// Answers a connection over the limits with one line and closes it.
pub struct Refused {
    reply: Option<&'static [u8]>,
}

impl Refused {
    /// `line` is the protocol's refusal, CRLF included.
    pub fn new(line: &'static [u8], implicit_tls: bool) -> Self {
        // On an implicit-TLS port a cleartext reply would be noise: just close.
        Refused {
            reply: (!implicit_tls).then_some(line),
        }
    }
}

impl ConnectionHandler for Refused {
    fn receive(&mut self, _: Instant, _: &[u8]) {}
    fn transmit(&mut self, out: &mut Vec<u8>) {
        if let Some(r) = self.reply.take() {
            out.extend_from_slice(r);
        }
    }
    fn poll_job(&mut self) -> Option<Job> {
        None
    }
    fn job_done(&mut self, _: Instant, _: JobOutput) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn wants_read(&self) -> bool {
        false
    }
    fn peer_closed(&mut self, _: Instant) {}
    fn shutdown(&mut self, _: Instant) {}
    fn is_closed(&self) -> bool {
        true
    }
}

/// A handler's blocking work: the job it wants run next, and whether one is running (a
/// runtime runs at most one job of a handler at a time).
#[derive(Default)]
pub struct Jobs {
    next: Option<Job>,
    running: bool,
}

impl Jobs {
    /// Sets the job to run next; its result comes back to `job_done` as a `T`.
    pub fn queue<T: Any + Send>(&mut self, work: impl FnOnce() -> T + Send + 'static) {
        self.next = Some(Box::new(move || Box::new(work()) as JobOutput));
    }

    /// For `ConnectionHandler::poll_job`: the queued job, now running.
    pub fn poll(&mut self) -> Option<Job> {
        if self.running {
            return None;
        }
        let job = self.next.take()?;
        self.running = true;
        Some(job)
    }

    /// For `ConnectionHandler::job_done`: the running job has finished.
    pub fn done(&mut self) {
        self.running = false;
    }

    pub fn running(&self) -> bool {
        self.running
    }

    /// A job is queued or running.
    pub fn busy(&self) -> bool {
        self.running || self.next.is_some()
    }
}

/// The TLS version for a log line, or `none`.
pub fn tls_name(tls: Option<&TlsInfo>) -> &str {
    tls.map_or("none", |t| t.version.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_says_its_line_once_in_cleartext_only() {
        let mut r = Refused::new(b"-ERR no\r\n", false);
        let mut out = Vec::new();
        r.transmit(&mut out);
        r.transmit(&mut out);
        assert_eq!(out, b"-ERR no\r\n");
        assert!(r.is_closed() && !r.wants_read());

        let mut r = Refused::new(b"-ERR no\r\n", true);
        let mut out = Vec::new();
        r.transmit(&mut out);
        assert!(out.is_empty());
        assert!(r.is_closed());
    }

    #[test]
    fn one_job_at_a_time() {
        let mut jobs = Jobs::default();
        assert!(!jobs.busy() && jobs.poll().is_none());
        jobs.queue(|| 7u32);
        assert!(jobs.busy() && !jobs.running());
        let job = jobs.poll().unwrap();
        assert!(jobs.running());
        jobs.queue(|| 8u32);
        assert!(jobs.poll().is_none(), "not while one runs");
        assert_eq!(*job().downcast::<u32>().unwrap(), 7);
        jobs.done();
        assert_eq!(*jobs.poll().unwrap()().downcast::<u32>().unwrap(), 8);
    }
}
