//! The IMAP listeners' connection handler: it runs a core IMAP [`Session`] behind the TLS
//! layer and answers its events from the directory and the mail store.
//!
//! Every store operation is a job on a worker thread: the session's [`Mail`] (its account
//! and selected mailbox) moves into the job and comes back with the response bytes and the
//! tagged status, which the handler hands to the session. Large FETCHes go in batches, each
//! started only once the previous one's output has mostly left, so a `FETCH 1:* BODY[]` of a
//! big mailbox never sits whole in memory. A body section longer than
//! [`STREAM_CHUNK`](crate::imap::fetch::STREAM_CHUNK) is not even read whole: the batch ends
//! with its literal header, and later jobs copy it from the file, each only as much as fits
//! under `OUTPUT_LIMIT`, so a session FETCHing a 40 MB message holds a few hundred KiB. A
//! file that ends before its literal does (truncated in place by another program) closes
//! the connection after what could be read, as Dovecot does: the announced length cannot be
//! taken back. APPEND streams to disk in batched writes.
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
use crate::imap::fetch::STREAM_CHUNK;
use crate::mailstore::{Account, AppendWriter, SystemFlags};

pub use commands::STORE_CAPABILITIES;
use commands::{Batch, FetchState, Mail, Reply};

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
        batch: Batch,
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
        // The session knows whether the client enabled UTF8=ACCEPT; the store side follows.
        mail.utf8 = self.conn.protocol().utf8_enabled();
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

    /// The next FETCH batch, if one is due and the output has room. A body streaming from
    /// its file gets as many octets as fill the output up to [`OUTPUT_LIMIT`], at least
    /// [`STREAM_CHUNK`]: what waits in the session never passes `OUTPUT_LIMIT + STREAM_CHUNK`
    /// (and the built items of one response) however large the message.
    fn fetch_job(&mut self) {
        let pending = self.conn.protocol().pending_output();
        if self.fetch.is_none() || self.jobs.busy() || pending >= OUTPUT_LIMIT {
            return;
        }
        let (Some(mut state), Some(mut mail)) = (self.fetch.take(), self.mail.take()) else {
            return;
        };
        let budget = (OUTPUT_LIMIT - pending).max(STREAM_CHUNK);
        self.jobs.queue(move || {
            let mut out = Vec::new();
            let batch = commands::fetch_batch(&mut mail, &mut state, &mut out, budget);
            Done::Fetch {
                mail,
                state,
                out,
                batch,
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
        let utf8 = self.conn.protocol().utf8_enabled();
        match (
            commands::mailbox_name(mailbox, utf8),
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

    /// Hands a command's responses to the session and ends the command. The session
    /// follows the store: a selected mailbox gone elsewhere (`reply.gone`) ends it with BYE;
    /// one this session's command closed (DELETE or RENAME of the selected mailbox) takes it
    /// back to the authenticated state.
    fn finish(&mut self, now: Instant, reply: Reply) {
        let closed = self.mail.as_ref().is_some_and(|m| m.view.is_none());
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
        } else if closed {
            s.deselect();
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
                    utf8: false,
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
                batch,
            } => {
                self.mail = Some(mail);
                if !out.is_empty() && !self.session().is_closed() {
                    self.session().write(&out);
                }
                match batch {
                    Batch::Done(reply) => self.finish(now, reply),
                    // The literal on the wire cannot be completed: what was read goes out,
                    // then the connection closes without another word (as Dovecot does).
                    Batch::Broken => self.session().abort(),
                    Batch::More if self.session().is_closed() => {}
                    Batch::More => self.fetch = Some(state),
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
    use crate::maildir::test_support::TempDir;
    use std::net::SocketAddr;

    #[test]
    fn text_is_one_printable_line() {
        assert_eq!(sanitize("a\r\nb\0c\u{e9}"), "a??b?c?");
    }

    /// An IMAP handler on a fresh store, driven by hand: jobs run on the test's thread, and
    /// the client reads only when told to.
    struct Harness {
        td: TempDir,
        handler: ImapHandler,
        now: Instant,
        /// What the client has read.
        wire: Vec<u8>,
        /// The most output seen waiting in the session.
        most_pending: usize,
        jobs_run: usize,
    }

    impl Harness {
        fn new() -> Harness {
            let td = TempDir::new();
            let data = td.path().join("data");
            std::fs::create_dir_all(&data).unwrap();
            let accounts = data.join("postfix-accounts.cf");
            crate::directory::add_account(&accounts, "alice@example.org", "pw").unwrap();
            std::fs::write(data.join("postfix-virtual.cf"), "").unwrap();
            let text = format!(
                "data_dir = {data:?}\nhostname = \"mx.example.org\"\ndomains = [\"example.org\"]\n"
            );
            let config = crate::config::Config::from_toml(&text, td.path(), "test.toml").unwrap();
            let tls = crate::tls::server_config(&config).unwrap();
            let directory = crate::directory::DirectoryHandle::from_config(&config).unwrap();
            let store = crate::maildir::Store::open(&data, "mx.example.org").unwrap();
            let mail = crate::mailstore::MailStore::open(&data, "mx.example.org").unwrap();
            let app = Arc::new(App::new(config, directory, store, mail, tls));
            let now = Instant::now();
            let info = ConnInfo {
                peer: "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
                local: "127.0.0.1:993".parse::<SocketAddr>().unwrap(),
            };
            let cfg = Arc::new(SessionConfig {
                store_capabilities: STORE_CAPABILITIES.to_vec(),
                ..SessionConfig::default()
            });
            // As if behind implicit TLS (LOGIN allowed), without encrypting anything.
            let conn = Connection::plain(Session::new(cfg, true, now), None);
            let slot = app.admit(info.peer.ip()).unwrap();
            let handler = ImapHandler {
                conn,
                app,
                listener: "imaps",
                info,
                mail: None,
                user: None,
                jobs: Jobs::default(),
                fetch: None,
                append: None,
                idle: None,
                now,
                _slot: slot,
            };
            let mut h = Harness {
                td,
                handler,
                now,
                wire: Vec::new(),
                most_pending: 0,
                jobs_run: 0,
            };
            h.read();
            h
        }

        fn mailbox(&self) -> std::path::PathBuf {
            self.td.path().join("data/mail/example.org/alice")
        }

        fn pending(&self) -> usize {
            self.handler.conn.protocol().pending_output()
        }

        /// Runs the jobs the handler has, as a runtime would, without reading the output.
        fn run_jobs(&mut self) {
            while let Some(job) = self.handler.poll_job() {
                let out = job();
                self.handler.job_done(self.now, out);
                self.jobs_run += 1;
                self.most_pending = self.most_pending.max(self.pending());
            }
        }

        /// The client reads everything waiting.
        fn read(&mut self) {
            self.handler.transmit(&mut self.wire);
        }

        /// Sends a command and reads until its tagged answer; returns what was read.
        fn cmd(&mut self, line: &str) -> Vec<u8> {
            let tag = format!("{} ", line.split(' ').next().unwrap());
            let start = self.wire.len();
            self.handler
                .receive(self.now, format!("{line}\r\n").as_bytes());
            for _ in 0..100_000 {
                self.run_jobs();
                self.read();
                let got = &self.wire[start..];
                if got.starts_with(tag.as_bytes())
                    || got
                        .windows(tag.len() + 2)
                        .any(|w| w.starts_with(b"\r\n") && w[2..] == *tag.as_bytes())
                        && got.ends_with(b"\r\n")
                {
                    break;
                }
                if self.handler.is_closed() {
                    break;
                }
            }
            self.wire[start..].to_vec()
        }

        fn login_and_select(&mut self) {
            let r = self.cmd("a LOGIN alice@example.org pw");
            assert!(r.starts_with(b"a OK"), "{}", String::from_utf8_lossy(&r));
            let r = self.cmd("b SELECT INBOX");
            assert!(
                String::from_utf8_lossy(&r).contains("b OK [READ-WRITE]"),
                "{}",
                String::from_utf8_lossy(&r)
            );
        }
    }

    /// A message of about `size` octets, CRLF lines.
    fn message(size: usize) -> Vec<u8> {
        let mut m = b"From: a@example.org\r\nSubject: large\r\n\r\n".to_vec();
        let mut i = 0u32;
        while m.len() < size {
            m.extend_from_slice(format!("{i:08} {}\r\n", "z".repeat(60)).as_bytes());
            i += 1;
        }
        m
    }

    fn deliver(h: &Harness, msg: &[u8]) {
        let account = h.handler.app.mail.account("example.org", "alice").unwrap();
        account
            .append_from("INBOX", &mut &msg[..], SystemFlags::empty(), &[], None)
            .unwrap();
    }

    /// The bound on what waits in the session while a body streams.
    const BOUND: usize = OUTPUT_LIMIT + STREAM_CHUNK + 4096;

    #[test]
    fn a_large_body_streams_as_the_client_reads() {
        let mut h = Harness::new();
        let msg = message(3 << 20);
        deliver(&h, b"Subject: small\r\n\r\nhello\r\n");
        deliver(&h, &msg);
        h.login_and_select();
        let base_jobs = h.jobs_run;
        h.most_pending = 0;
        h.handler.receive(
            h.now,
            b"f UID FETCH 1:2 (BODY.PEEK[] RFC822.SIZE BODY.PEEK[TEXT]<100.2000000>)\r\n",
        );
        let start = h.wire.len();
        // A slow client: it reads only when the handler has nothing more to do.
        let mut reads = 0;
        while !h.wire[start..].ends_with(b"f OK FETCH completed\r\n") {
            h.run_jobs();
            assert!(h.pending() <= BOUND, "{} octets wait", h.pending());
            h.read();
            reads += 1;
            assert!(reads < 10_000, "the FETCH never ended");
        }
        assert!(h.most_pending <= BOUND, "{}", h.most_pending);
        assert!(
            reads > msg.len() * 3 / 2 / BOUND,
            "{reads} reads: the output was not held back"
        );
        assert!(h.jobs_run - base_jobs > 10);
        let text = msg.len() - msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4;
        let mut want = b"* 1 FETCH (UID 1 BODY[] {25}\r\nSubject: small\r\n\r\nhello\r\n \
            RFC822.SIZE 25 BODY[TEXT]<100> \"\")\r\n"
            .to_vec();
        want.extend_from_slice(format!("* 2 FETCH (UID 2 BODY[] {{{}}}\r\n", msg.len()).as_bytes());
        want.extend_from_slice(&msg);
        want.extend_from_slice(
            format!(
                " RFC822.SIZE {} BODY[TEXT]<100> {{{}}}\r\n",
                msg.len(),
                2_000_000.min(text - 100)
            )
            .as_bytes(),
        );
        let body = msg.len() - text;
        want.extend_from_slice(&msg[body + 100..body + 100 + 2_000_000.min(text - 100)]);
        want.extend_from_slice(b")\r\nf OK FETCH completed\r\n");
        assert!(h.wire[start..] == want[..], "the answer differs");
        // PEEK: nothing was marked \Seen. A plain RFC822 is, and says so.
        let r = h.cmd("g FETCH 2 FLAGS");
        assert_eq!(
            r,
            b"* 2 FETCH (FLAGS (\\Recent))\r\ng OK FETCH completed\r\n"
        );
        h.most_pending = 0;
        let r = h.cmd("h FETCH 2 RFC822");
        let head = format!("* 2 FETCH (RFC822 {{{}}}\r\n", msg.len());
        assert!(r.starts_with(head.as_bytes()));
        assert!(r[head.len()..].starts_with(&msg));
        assert_eq!(
            &r[head.len() + msg.len()..],
            b" FLAGS (\\Seen \\Recent))\r\nh OK FETCH completed\r\n"
        );
        assert!(h.most_pending <= BOUND, "{}", h.most_pending);
    }

    #[test]
    fn utf8_accept_reaches_the_store_side() {
        let mut h = Harness::new();
        let r = h.cmd("a LOGIN alice@example.org pw");
        assert!(r.starts_with(b"a OK"), "{}", String::from_utf8_lossy(&r));
        // Before ENABLE: modified UTF-7 both ways.
        assert_eq!(h.cmd("b CREATE Entw&APw-rfe"), b"b OK CREATE completed\r\n");
        assert_eq!(
            h.cmd("c LIST \"\" Entw*"),
            b"* LIST (\\HasNoChildren) \".\" Entw&APw-rfe\r\nc OK LIST completed\r\n"
        );
        assert_eq!(
            h.cmd("d ENABLE UTF8=ACCEPT"),
            b"* ENABLED UTF8=ACCEPT\r\nd OK ENABLE completed\r\n"
        );
        assert_eq!(
            h.cmd("e LIST \"\" Entw*"),
            "* LIST (\\HasNoChildren) \".\" \"Entw\u{fc}rfe\"\r\ne OK LIST completed\r\n"
                .as_bytes()
        );
        // APPEND with the UTF8 data extension, to a mailbox named in UTF-8.
        let msg = "Subject: Gr\u{fc}\u{df}e\r\n\r\n(\u{65e5}\u{672c})\r\n".as_bytes();
        let mut line = "f APPEND \"Entw\u{fc}rfe\" UTF8 (~{".as_bytes().to_vec();
        line.extend_from_slice(format!("{}+}}\r\n", msg.len()).as_bytes());
        line.extend_from_slice(msg);
        line.extend_from_slice(b")\r\n");
        let start = h.wire.len();
        h.handler.receive(h.now, &line);
        for _ in 0..100 {
            h.run_jobs();
            h.read();
        }
        let got = String::from_utf8_lossy(&h.wire[start..]).into_owned();
        assert!(got.starts_with("f OK [APPENDUID "), "{got}");
        let r = h.cmd("g SELECT \"Entw\u{fc}rfe\"");
        assert!(String::from_utf8_lossy(&r).contains("g OK [READ-WRITE]"));
        let r = h.cmd("h FETCH 1 BODY.PEEK[]");
        let mut want = format!("* 1 FETCH (BODY[] {{{}}}\r\n", msg.len()).into_bytes();
        want.extend_from_slice(msg);
        want.extend_from_slice(b")\r\nh OK FETCH completed\r\n");
        assert_eq!(r, want);
        assert_eq!(
            h.cmd("i SEARCH CHARSET UTF-8 ALL"),
            b"i BAD SEARCH CHARSET is not allowed once UTF8=ACCEPT is enabled\r\n"
        );
        let dir = h.mailbox().join(".Entw&APw-rfe");
        assert!(dir.join("cur").is_dir() || dir.join("new").is_dir());
    }

    #[test]
    fn a_literal_that_cannot_be_completed_closes_the_connection() {
        let mut h = Harness::new();
        let msg = message(1 << 20);
        deliver(&h, &msg);
        h.login_and_select();
        let start = h.wire.len();
        h.handler
            .receive(h.now, b"f FETCH 1 (BODY.PEEK[] UID)\r\nn NOOP\r\n");
        // The first batch: the literal header and the first octets.
        h.run_jobs();
        h.read();
        assert!(!h.handler.is_closed());
        // Truncated in place (the store never does that; another program might).
        let cur = h.mailbox().join("cur");
        let new = h.mailbox().join("new");
        let file = std::fs::read_dir(&cur)
            .unwrap()
            .chain(std::fs::read_dir(&new).unwrap())
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(300_000)
            .unwrap();
        for _ in 0..100 {
            h.run_jobs();
            h.read();
        }
        assert!(h.handler.is_closed());
        let got = &h.wire[start..];
        let head = format!("* 1 FETCH (BODY[] {{{}}}\r\n", msg.len());
        assert!(got.starts_with(head.as_bytes()));
        // Whatever could be read went out, and nothing after it: no BYE, no tagged answer.
        assert_eq!(got[head.len()..], msg[..300_000]);
    }
}
