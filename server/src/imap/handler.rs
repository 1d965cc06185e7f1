//! The IMAP listeners' connection handler: it runs a core IMAP [`Session`] behind the TLS
//! layer and answers its events from the directory and the mail store.
//!
//! Every store operation is a job on a worker thread: the session's [`Mail`] (its account
//! and selected mailbox) moves into the job and comes back with the response bytes and the
//! tagged status, which the handler hands to the session. Large FETCHes go in batches, each
//! started only once the previous one's output has mostly left, so a `FETCH 1:* BODY[]` of a
//! big mailbox never sits whole in memory. APPEND streams to disk in batched writes.
//!
//! IDLE: the store can wake a watcher from any thread, but a handler has no way to wake its
//! runtime, so while idling the handler looks at its mailbox's change counter (one atomic
//! load) on a short timer and runs a sync job only when it moved; every
//! [`IDLE_RESCAN`] it also rescans the directory for changes made by other programs.

mod commands;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironpost_core::imap::session::{Event, Session, SessionConfig};
use ironpost_core::imap::{CommandBody, DateTime};
use ironpost_core::service::{ConnInfo, ConnectionHandler, HandlerFactory, Job, JobOutput};
use ironpost_core::tls::Connection;

use crate::app::{App, ConnectionSlot};
use crate::conn::{self, Jobs, Tls};
use crate::mailstore::{Account, AppendWriter, SystemFlags};

pub use commands::STORE_CAPABILITIES;
use commands::{FetchState, Mail, Reply};

/// The answer to a connection over the limits.
const REFUSAL: &[u8] = b"* BYE Too many connections, try again later\r\n";

/// APPEND octets gathered before a write job is sent off.
const WRITE_BATCH: usize = 256 * 1024;

/// The next command (or FETCH batch) starts only while less than this waits in the
/// session's output: a client that pipelines commands without reading the answers stops
/// getting new ones.
const OUTPUT_LIMIT: usize = 256 * 1024;

/// Input buffered beyond this stops reading from the socket until the session catches up.
const MAX_BUFFERED_INPUT: usize = 256 * 1024;

/// How often an idling session looks at its mailbox's change counter.
pub const IDLE_POLL: Duration = Duration::from_millis(500);

/// How often an idling session rescans its mailbox for changes made by other programs.
pub const IDLE_RESCAN: Duration = Duration::from_secs(30);

/// How often mailboxes no session holds are dropped from memory.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Makes the handlers of one IMAP listener: `imap` (port 143, STARTTLS) or `imaps` (993).
pub struct ImapFactory {
    app: Arc<App>,
    implicit_tls: bool,
    session: Arc<SessionConfig>,
    last_purge: Mutex<Instant>,
}

impl ImapFactory {
    pub fn new(app: Arc<App>, implicit_tls: bool) -> Self {
        let c = &app.config;
        let session = SessionConfig {
            starttls: !implicit_tls,
            store_capabilities: STORE_CAPABILITIES.to_vec(),
            max_auth_failures: c.limits.max_auth_failures,
            max_errors: c.limits.max_errors,
            max_append_size: u32::try_from(c.max_message_size).unwrap_or(u32::MAX),
            ..SessionConfig::default()
        };
        ImapFactory {
            app,
            implicit_tls,
            session: Arc::new(session),
            last_purge: Mutex::new(Instant::now()),
        }
    }

    /// The listener's name in logs and in the listeners file.
    pub fn name(&self) -> &'static str {
        if self.implicit_tls {
            "imaps"
        } else {
            "imap"
        }
    }

    fn purge(&self, now: Instant) {
        let mut last = self.last_purge.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(*last) >= PURGE_INTERVAL {
            *last = now;
            let n = self.app.mail.registry().purge_unused();
            if n > 0 {
                tracing::debug!(mailboxes = n, "dropped unused mailboxes from memory");
            }
        }
    }
}

impl HandlerFactory for ImapFactory {
    fn new_handler(&self, now: Instant, info: ConnInfo) -> Box<dyn ConnectionHandler> {
        let listener = self.name();
        let tls = if self.implicit_tls {
            Tls::Implicit
        } else {
            Tls::StartTls
        };
        let session = || Session::new(self.session.clone(), self.implicit_tls, now);
        let (conn, slot) = match conn::open(&self.app, listener, &info, tls, REFUSAL, session) {
            Ok(opened) => opened,
            Err(refused) => return refused,
        };
        self.purge(now);
        Box::new(ImapHandler {
            conn,
            app: self.app.clone(),
            listener,
            info,
            mail: None,
            user: None,
            jobs: Jobs::default(),
            fetch: None,
            append: None,
            idle: None,
            now,
            _slot: slot,
        })
    }
}

/// An APPEND in progress.
struct Append {
    mailbox: String,
    flags: SystemFlags,
    keywords: Vec<String>,
    date: Option<DateTime>,
    writer: Option<AppendWriter>,
    pending: Vec<u8>,
    /// The answer, once something failed: the rest of the message is read and dropped.
    error: Option<Reply>,
}

/// While the client idles: when to look next.
struct Idle {
    next_check: Instant,
    next_rescan: Instant,
}

/// What a job hands back.
enum Done {
    Login(Option<Account>),
    Command {
        mail: Mail,
        reply: Reply,
    },
    Fetch {
        mail: Mail,
        state: FetchState,
        out: Vec<u8>,
        reply: Option<Reply>,
    },
    AppendOpened(Result<AppendWriter, Reply>),
    AppendWrote {
        writer: Option<AppendWriter>,
        buf: Vec<u8>,
        error: Option<Reply>,
    },
    /// Untagged updates found while idling.
    Updates {
        mail: Mail,
        out: Vec<u8>,
        gone: bool,
    },
}

struct ImapHandler {
    conn: Connection<Session>,
    app: Arc<App>,
    listener: &'static str,
    info: ConnInfo,
    /// The account and selected mailbox; `None` before login and while a job holds them.
    mail: Option<Mail>,
    user: Option<String>,
    jobs: Jobs,
    /// A FETCH with batches still to answer.
    fetch: Option<FetchState>,
    append: Option<Append>,
    idle: Option<Idle>,
    /// The time of the last call that told it.
    now: Instant,
    _slot: ConnectionSlot,
}

/// Response text goes on the wire as is: keep it to printable ASCII on one line.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

impl ImapHandler {
    fn session(&mut self) -> &mut Session {
        self.conn.protocol_mut()
    }

    fn busy(&self) -> bool {
        self.jobs.busy() || self.fetch.is_some()
    }

    /// Takes events until one needs a job, the session needs more input, or the client
    /// has too much unread output.
    fn drive(&mut self, now: Instant) {
        self.now = now;
        while !self.busy() && self.conn.protocol().pending_output() < OUTPUT_LIMIT {
            let Some(ev) = self.session().poll_event() else {
                break;
            };
            self.event(now, ev);
        }
    }

    fn event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Login { username, password } => {
                let app = self.app.clone();
                self.user = Some(username.clone());
                self.jobs
                    .queue(move || Done::Login(app.login(&username, &password)));
            }
            Event::Command { tag: _, command } => self.command(now, command),
            Event::AppendStart {
                tag: _,
                mailbox,
                flags,
                date,
                size,
            } => self.append_start(&mailbox, &flags, date, size),
            Event::AppendData(chunk) => {
                let Some(a) = self.append.as_mut() else {
                    return;
                };
                if a.error.is_some() {
                    return;
                }
                if a.pending.is_empty() {
                    a.pending = chunk;
                } else {
                    a.pending.extend_from_slice(&chunk);
                }
                if a.pending.len() >= WRITE_BATCH {
                    self.append_write_job();
                }
            }
            Event::AppendEnd => self.append_end(now),
            Event::AppendAborted => {
                // Dropping the writer removes its temporary file.
                self.append = None;
            }
            Event::IdleStart => {
                self.idle = Some(Idle {
                    next_check: now + IDLE_POLL,
                    next_rescan: now + IDLE_RESCAN,
                });
                // Whatever happened since the last command is reported at once.
                self.updates_job();
            }
            Event::IdleDone => self.idle = None,
        }
    }

    fn command(&mut self, now: Instant, command: CommandBody<'static>) {
        let Some(mut mail) = self.mail.take() else {
            self.finish(now, Reply::no(Some("SERVERBUG"), "Not logged in"));
            return;
        };
        if let CommandBody::Fetch { uid, set, items } = command {
            let started = commands::fetch_start(&mail, uid, &set, items);
            self.mail = Some(mail);
            match started {
                Ok(state) => self.fetch = Some(state),
                Err(reply) => self.finish(now, reply),
            }
            return;
        }
        self.jobs.queue(move || {
            let reply = commands::execute(&mut mail, &command);
            Done::Command { mail, reply }
        });
    }

    /// The next FETCH batch, if one is due and the output has room.
    fn fetch_job(&mut self) {
        if self.fetch.is_none()
            || self.jobs.busy()
            || self.conn.protocol().pending_output() >= OUTPUT_LIMIT
        {
            return;
        }
        let (Some(mut state), Some(mut mail)) = (self.fetch.take(), self.mail.take()) else {
            return;
        };
        self.jobs.queue(move || {
            let mut out = Vec::new();
            let reply = commands::fetch_batch(&mut mail, &mut state, &mut out);
            Done::Fetch {
                mail,
                state,
                out,
                reply,
            }
        });
    }

    /// A sync of the selected mailbox while idling.
    fn updates_job(&mut self) {
        if self.jobs.busy() {
            return;
        }
        if self.mail.as_ref().is_none_or(|m| m.view.is_none()) {
            return;
        }
        let Some(mut mail) = self.mail.take() else {
            return;
        };
        self.jobs.queue(move || {
            let mut out = Vec::new();
            let gone = !commands::sync(&mut mail, &mut out, true);
            Done::Updates { mail, out, gone }
        });
    }

    fn append_start(
        &mut self,
        mailbox: &ironpost_core::imap::Mailbox<'_>,
        flags: &[ironpost_core::imap::Flag<'_>],
        date: Option<DateTime>,
        size: u32,
    ) {
        let mut append = Append {
            mailbox: String::new(),
            flags: SystemFlags::empty(),
            keywords: Vec::new(),
            date,
            writer: None,
            pending: Vec::new(),
            error: None,
        };
        match (
            commands::mailbox_name(mailbox),
            commands::split_flags(flags),
        ) {
            (Ok(name), Ok((flags, keywords))) => {
                append.mailbox = name;
                append.flags = flags;
                append.keywords = keywords;
            }
            (Err(r), _) | (_, Err(r)) => append.error = Some(r),
        }
        if size == 0 && append.error.is_none() {
            append.error = Some(Reply::no(Some("CANNOT"), "Cannot append an empty message"));
        }
        let account = self.mail.as_ref().map(|m| m.account.clone());
        if append.error.is_none() {
            match account {
                Some(account) => {
                    let name = append.mailbox.clone();
                    self.jobs
                        .queue(move || Done::AppendOpened(commands::append_open(&account, &name)));
                }
                None => append.error = Some(Reply::no(Some("SERVERBUG"), "Not logged in")),
            }
        }
        self.append = Some(append);
    }

    /// Sends the gathered APPEND octets to a worker.
    fn append_write_job(&mut self) {
        let Some(a) = self.append.as_mut() else {
            return;
        };
        let Some(mut writer) = a.writer.take() else {
            return;
        };
        let mut buf = std::mem::take(&mut a.pending);
        self.jobs.queue(move || {
            let error = writer.write(&buf).err().map(|e| Reply::store_error(&e));
            buf.clear();
            let writer = error.is_none().then_some(writer);
            Done::AppendWrote { writer, buf, error }
        });
    }

    fn append_end(&mut self, now: Instant) {
        let Some(mut a) = self.append.take() else {
            self.finish(now, Reply::no(Some("SERVERBUG"), "No APPEND in progress"));
            return;
        };
        if let Some(r) = a.error.take() {
            self.finish(now, r);
            return;
        }
        let (Some(mut writer), Some(mut mail)) = (a.writer.take(), self.mail.take()) else {
            self.finish(now, Reply::no(Some("SERVERBUG"), "APPEND lost its message"));
            return;
        };
        self.jobs.queue(move || {
            let reply = match writer.write(&a.pending) {
                Ok(()) => commands::append_commit(&mut mail, writer, a.flags, &a.keywords, a.date),
                Err(e) => Reply::store_error(&e),
            };
            Done::Command { mail, reply }
        });
    }

    /// Hands a command's responses to the session and ends the command.
    fn finish(&mut self, now: Instant, reply: Reply) {
        let s = self.session();
        if s.is_closed() {
            return;
        }
        if !reply.out.is_empty() {
            s.write(&reply.out);
        }
        s.complete(
            now,
            reply.status,
            reply.code.as_deref(),
            &sanitize(&reply.text),
        );
        if reply.gone {
            s.mailbox_gone();
        }
    }

    fn logged_in(&mut self, now: Instant, account: Option<Account>) {
        let user = self.user.clone().unwrap_or_default();
        match account {
            Some(account) => {
                tracing::info!(listener = self.listener, client = %self.info.peer, user = %user, "login");
                self.mail = Some(Mail {
                    account,
                    view: None,
                });
            }
            None => {
                tracing::warn!(listener = self.listener, client = %self.info.peer, user = %user, "authentication failed");
                self.user = None;
            }
        }
        let ok = self.mail.is_some();
        if !self.session().is_closed() {
            self.session().login_result(now, ok);
        }
    }
}

impl ConnectionHandler for ImapHandler {
    fn receive(&mut self, now: Instant, wire: &[u8]) {
        self.conn.receive(now, wire);
        self.drive(now);
    }

    fn transmit(&mut self, out: &mut Vec<u8>) {
        self.conn.transmit(out);
        if !self.busy() && self.conn.protocol().buffered_input() > 0 {
            // The output has drained: commands held back by the output limit may go on.
            let now = self.now;
            self.drive(now);
            self.conn.transmit(out);
        }
    }

    fn poll_job(&mut self) -> Option<Job> {
        if self.jobs.running() {
            return None;
        }
        self.fetch_job();
        self.jobs.poll()
    }

    fn job_done(&mut self, now: Instant, output: JobOutput) {
        self.jobs.done();
        let Ok(done) = output.downcast::<Done>() else {
            return;
        };
        match *done {
            Done::Login(account) => self.logged_in(now, account),
            Done::Command { mail, reply } => {
                self.mail = Some(mail);
                self.finish(now, reply);
            }
            Done::Fetch {
                mail,
                state,
                out,
                reply,
            } => {
                self.mail = Some(mail);
                if !out.is_empty() && !self.session().is_closed() {
                    self.session().write(&out);
                }
                match reply {
                    Some(reply) => self.finish(now, reply),
                    None if self.session().is_closed() => {}
                    None => self.fetch = Some(state),
                }
            }
            Done::AppendOpened(result) => {
                if let Some(a) = self.append.as_mut() {
                    match result {
                        Ok(w) => a.writer = Some(w),
                        Err(r) => a.error = Some(r),
                    }
                }
            }
            Done::AppendWrote { writer, buf, error } => {
                if let Some(a) = self.append.as_mut() {
                    a.writer = writer;
                    if error.is_some() {
                        a.error = error;
                        a.pending = Vec::new();
                    } else if a.pending.is_empty() {
                        a.pending = buf;
                    }
                }
            }
            Done::Updates { mail, out, gone } => {
                self.mail = Some(mail);
                let s = self.conn.protocol_mut();
                if !s.is_closed() {
                    s.write(&out);
                    if gone {
                        s.mailbox_gone();
                    }
                }
            }
        }
        self.drive(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let session = self.conn.protocol().poll_timeout();
        let idle = match &self.idle {
            Some(i) if !self.jobs.busy() => Some(i.next_check),
            _ => None,
        };
        match (session, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.session().handle_timeout(now);
        let due = match self.idle.as_mut() {
            Some(i) if now >= i.next_check && !self.jobs.busy() => {
                i.next_check = now + IDLE_POLL;
                let rescan = now >= i.next_rescan;
                if rescan {
                    i.next_rescan = now + IDLE_RESCAN;
                }
                rescan
                    || self
                        .mail
                        .as_ref()
                        .and_then(|m| m.view.as_ref())
                        .is_some_and(|v| v.has_changes())
            }
            _ => false,
        };
        if due && self.conn.protocol().is_idling() {
            self.updates_job();
        }
        self.drive(now);
    }

    fn wants_read(&self) -> bool {
        !self.conn.wants_close() && self.conn.protocol().buffered_input() < MAX_BUFFERED_INPUT
    }

    fn peer_closed(&mut self, _now: Instant) {
        self.session().peer_closed();
        self.fetch = None;
        self.append = None;
        self.idle = None;
    }

    fn shutdown(&mut self, now: Instant) {
        self.session().shutdown();
        self.drive(now);
    }

    fn is_closed(&self) -> bool {
        self.conn.wants_close() && !self.jobs.running()
    }
}

impl Drop for ImapHandler {
    fn drop(&mut self) {
        let tls = conn::tls_name(self.conn.protocol().tls());
        let user = self.user.as_deref().unwrap_or("-");
        let error = self.conn.error().map(tracing::field::display);
        tracing::info!(listener = self.listener, client = %self.info.peer, user = %user, tls = %tls, error, "disconnect");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_one_printable_line() {
        assert_eq!(sanitize("a\r\nb\0c\u{e9}"), "a??b?c?");
    }
}
