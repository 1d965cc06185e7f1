//! The POP3 listeners' connection handler: it runs a core POP3 [`Session`] behind the TLS
//! layer and answers its events from the directory and the mail store.
//!
//! * The maildrop is the account's INBOX, opened through the same [`MailStore`] (and
//!   mailbox registry) as IMAP, so both see one index.
//! * UIDL is `%08X%08X` of the IMAP UID and the mailbox's UIDVALIDITY: Dovecot's default
//!   `pop3_uidl_format` (`%08Xu%08Xv`), which docker-mailserver keeps. A mailbox taken over
//!   from docker-mailserver keeps its `dovecot-uidlist`, so POP3 clients see the same UIDLs
//!   and download nothing twice; UIDLs agree with IMAP UIDs by construction.
//! * One POP3 session per maildrop at a time (RFC 1939 8): a second login gets
//!   `-ERR [IN-USE]`. IMAP sessions are not locked out; they share the index.
//! * DELE takes effect at QUIT only: the marked messages get `\Deleted` and are expunged
//!   through a [`MailboxView`], so an IMAP session on the same mailbox sees EXPUNGE. Messages
//!   sent whole by RETR get `\Seen` at the same moment (as Dovecot does; TOP does not count).
//!   A connection that drops or times out changes nothing.
//! * RETR and TOP stream from the message file in chunks, each read as a job only once the
//!   previous chunk has mostly left, so a large message never sits whole in memory.
//!
//! Sizes are the index's RFC822.SIZE (`,W=` or `,S=`), exact for the CRLF files ironpost
//! writes; a file written elsewhere with bare LF line ends is sent with CRLF (so a little
//! longer than listed when it has no `,W=`).
//!
//! [`MailStore`]: crate::mailstore::MailStore

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironpost_core::pop3::{Event, Failure, Message, Session, SessionConfig};
use ironpost_core::service::{ConnInfo, ConnectionHandler, HandlerFactory, Job, JobOutput};
use ironpost_core::tls::Connection;

use crate::app::{App, ConnectionSlot};
use crate::conn::{self, Jobs, Tls};
use crate::mailstore::{Account, MailboxView, StoreOp, SystemFlags};

/// The answer to a connection over the limits.
const REFUSAL: &[u8] = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n";

/// Message octets read per job.
const CHUNK: usize = 64 * 1024;

/// The next chunk is read only while less than this waits in the session's output.
const OUTPUT_LIMIT: usize = 128 * 1024;

/// Input buffered beyond this stops reading from the socket until the session catches up.
const MAX_BUFFERED_INPUT: usize = 64 * 1024;

/// RFC 1939 3: the autologout timer is at least 10 minutes.
const MIN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The UIDL of a message: Dovecot's default format, `%08Xu%08Xv`.
pub fn uidl(uid: u32, uidvalidity: u32) -> String {
    format!("{uid:08X}{uidvalidity:08X}")
}

/// Maildrops held by a POP3 session of this process, by INBOX directory. Both POP3
/// listeners share one.
#[derive(Debug, Default)]
pub struct MaildropLocks {
    held: Mutex<HashSet<PathBuf>>,
}

impl MaildropLocks {
    pub fn new() -> Arc<MaildropLocks> {
        Arc::new(MaildropLocks::default())
    }

    /// The lock on `path`, unless another session holds it.
    pub fn try_lock(self: &Arc<Self>, path: PathBuf) -> Option<MaildropLock> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(path.clone()) {
            return None;
        }
        Some(MaildropLock {
            locks: Arc::clone(self),
            path,
        })
    }

    pub fn is_locked(&self, path: &std::path::Path) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(path)
    }
}

/// A held maildrop; dropping it releases it.
#[derive(Debug)]
pub struct MaildropLock {
    locks: Arc<MaildropLocks>,
    path: PathBuf,
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.locks
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.path);
    }
}

/// An open maildrop: the INBOX view, the UID of each message number, and the lock.
pub struct Maildrop {
    view: MailboxView,
    /// `uids[n - 1]` is the UID of message `n`.
    uids: Vec<u32>,
    _lock: MaildropLock,
}

impl Maildrop {
    /// Locks and opens an account's INBOX as a maildrop, with its message list.
    pub fn open(
        account: &Account,
        locks: &Arc<MaildropLocks>,
    ) -> Result<(Maildrop, Vec<Message>), Failure> {
        let lock = locks
            .try_lock(account.root().to_path_buf())
            .ok_or_else(Failure::in_use)?;
        let view = account.select("INBOX").map_err(|e| {
            tracing::error!(user = %account.user(), error = %e, "cannot open the maildrop");
            Failure::temp("Cannot open the maildrop")
        })?;
        let uidvalidity = view.uidvalidity();
        let (uids, messages) = view
            .messages()
            .iter()
            .filter(|m| !m.expunged)
            .map(|m| {
                (
                    m.uid,
                    Message {
                        uidl: uidl(m.uid, uidvalidity),
                        size: m.size,
                    },
                )
            })
            .unzip();
        Ok((
            Maildrop {
                view,
                uids,
                _lock: lock,
            },
            messages,
        ))
    }

    fn uid(&self, msg: u32) -> Option<u32> {
        self.uids.get((msg as usize).checked_sub(1)?).copied()
    }

    fn uids_of(&self, msgs: &[u32]) -> Vec<u32> {
        msgs.iter().filter_map(|&m| self.uid(m)).collect()
    }

    /// Opens message `msg` for reading.
    pub fn open_message(&self, msg: u32) -> Result<File, Failure> {
        let uid = self
            .uid(msg)
            .ok_or_else(|| Failure::new(None, "No such message"))?;
        self.view.open_message(uid).map_err(|e| match e {
            crate::mailstore::MailstoreError::Expunged { .. } => {
                Failure::new(None, "Message was removed by another session")
            }
            e => {
                tracing::error!(uid, error = %e, "cannot read a message");
                Failure::temp("Cannot read the message")
            }
        })
    }

    /// The UPDATE state (RFC 1939 6): `retrieved` get `\Seen`, `deleted` are removed.
    /// Messages another session removed meanwhile are skipped. Releases the maildrop.
    pub fn update(mut self, deleted: &[u32], retrieved: &[u32]) -> Result<usize, Failure> {
        let fail = |e: crate::mailstore::MailstoreError| {
            tracing::error!(error = %e, "POP3 update failed");
            Failure::temp("Cannot update the maildrop")
        };
        let seen = self.uids_of(retrieved);
        if !seen.is_empty() {
            self.view
                .store(&seen, StoreOp::Add, SystemFlags::SEEN, &[])
                .map_err(fail)?;
        }
        let gone = self.uids_of(deleted);
        if gone.is_empty() {
            return Ok(0);
        }
        self.view
            .store(&gone, StoreOp::Add, SystemFlags::DELETED, &[])
            .map_err(fail)?;
        let removed = self.view.expunge(Some(&gone)).map_err(fail)?;
        Ok(removed.len())
    }
}

/// Reads up to [`CHUNK`] octets; `eof` once the file has no more.
fn read_chunk(file: &mut File) -> Result<(Vec<u8>, bool), Failure> {
    let mut buf = Vec::with_capacity(CHUNK);
    match file.take(CHUNK as u64).read_to_end(&mut buf) {
        Ok(n) => Ok((buf, n < CHUNK)),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a message file");
            Err(Failure::temp("Cannot read the message"))
        }
    }
}

/// Makes the handlers of one POP3 listener: `pop3` (port 110, STLS) or `pop3s` (995).
pub struct Pop3Factory {
    app: Arc<App>,
    implicit_tls: bool,
    session: Arc<SessionConfig>,
    locks: Arc<MaildropLocks>,
}

impl Pop3Factory {
    /// `locks` must be shared by both POP3 listeners of the process.
    pub fn new(app: Arc<App>, implicit_tls: bool, locks: Arc<MaildropLocks>) -> Self {
        let c = &app.config;
        let session = SessionConfig {
            starttls: !implicit_tls,
            timeout: c.limits.command_timeout.max(MIN_TIMEOUT),
            max_auth_failures: c.limits.max_auth_failures.max(1),
            max_errors: c.limits.max_errors.max(1),
            ..SessionConfig::default()
        };
        Pop3Factory {
            app,
            implicit_tls,
            session: Arc::new(session),
            locks,
        }
    }

    /// The listener's name in logs and in the listeners file.
    pub fn name(&self) -> &'static str {
        if self.implicit_tls {
            "pop3s"
        } else {
            "pop3"
        }
    }
}

impl HandlerFactory for Pop3Factory {
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
        Box::new(Pop3Handler {
            conn,
            app: self.app.clone(),
            locks: self.locks.clone(),
            listener,
            info,
            now,
            account: None,
            maildrop: None,
            stream: None,
            jobs: Jobs::default(),
            sending_retr: false,
            retrieved: 0,
            deleted: 0,
            _slot: slot,
        })
    }
}

/// What a job hands back.
enum Done {
    Login(Option<Account>),
    Opened(Result<(Maildrop, Vec<Message>), Failure>),
    /// The first chunk of a RETR/TOP (with the maildrop the job borrowed), or a later one.
    Read {
        maildrop: Option<Maildrop>,
        first: bool,
        file: Option<File>,
        data: Result<(Vec<u8>, bool), Failure>,
    },
    Updated(Result<usize, Failure>),
}

struct Pop3Handler {
    conn: Connection<Session>,
    app: Arc<App>,
    locks: Arc<MaildropLocks>,
    listener: &'static str,
    info: ConnInfo,
    /// The latest time the runtime told us, for work started from `transmit`.
    now: Instant,
    /// After a successful password check, until the maildrop is open.
    account: Option<Account>,
    /// The open maildrop; `None` before login and while a job holds it.
    maildrop: Option<Maildrop>,
    /// The rest of the message RETR/TOP is sending.
    stream: Option<File>,
    jobs: Jobs,
    /// The message being sent answers RETR (not TOP).
    sending_retr: bool,
    /// Messages sent whole by RETR, and removed at QUIT: for the disconnect log line.
    retrieved: u32,
    deleted: usize,
    _slot: ConnectionSlot,
}

impl Pop3Handler {
    fn session(&mut self) -> &mut Session {
        self.conn.protocol_mut()
    }

    /// The user name as the client gave it, safe for a log line (AUTH PLAIN may carry any
    /// octet but NUL).
    fn log_user(&self) -> String {
        let user = self.conn.protocol().user().unwrap_or("-");
        user.escape_debug().to_string()
    }

    fn busy(&self) -> bool {
        self.jobs.busy() || self.stream.is_some()
    }

    /// Takes events until one needs a job or the session needs more input (or room to
    /// write a long listing).
    fn drive(&mut self, now: Instant) {
        while !self.busy() {
            let Some(ev) = self.session().poll_event() else {
                break;
            };
            self.event(now, ev);
        }
    }

    fn event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Login { user, pass } => {
                let app = self.app.clone();
                self.jobs
                    .queue(move || Done::Login(app.login(&user, &pass)));
            }
            Event::OpenMaildrop => {
                let Some(account) = self.account.take() else {
                    self.session()
                        .maildrop(now, Err(Failure::temp("No account")));
                    return;
                };
                let locks = self.locks.clone();
                self.jobs
                    .queue(move || Done::Opened(Maildrop::open(&account, &locks)));
            }
            Event::Retr { msg } | Event::Top { msg, .. } => {
                self.sending_retr = matches!(ev, Event::Retr { .. });
                let Some(maildrop) = self.maildrop.take() else {
                    self.session()
                        .message_failed(now, Failure::temp("No maildrop"));
                    return;
                };
                self.jobs.queue(move || {
                    let (file, data) = match maildrop.open_message(msg) {
                        Ok(mut f) => {
                            let data = read_chunk(&mut f);
                            (Some(f), data)
                        }
                        Err(e) => (None, Err(e)),
                    };
                    Done::Read {
                        maildrop: Some(maildrop),
                        first: true,
                        file,
                        data,
                    }
                });
            }
            Event::Update { deleted, retrieved } => {
                let Some(maildrop) = self.maildrop.take() else {
                    self.session().update_done(now, Ok(()));
                    return;
                };
                self.jobs
                    .queue(move || Done::Updated(maildrop.update(&deleted, &retrieved)));
            }
        }
    }

    /// The next chunk of the message being sent, once the output has room.
    fn read_job(&mut self) {
        if self.jobs.busy() || self.conn.protocol().pending_output() >= OUTPUT_LIMIT {
            return;
        }
        let Some(mut file) = self.stream.take() else {
            return;
        };
        self.jobs.queue(move || {
            let data = read_chunk(&mut file);
            Done::Read {
                maildrop: None,
                first: false,
                file: Some(file),
                data,
            }
        });
    }

    fn read_done(
        &mut self,
        now: Instant,
        first: bool,
        file: Option<File>,
        data: Result<(Vec<u8>, bool), Failure>,
    ) {
        let s = self.conn.protocol_mut();
        if s.is_closed() {
            return;
        }
        match data {
            Err(f) => s.message_failed(now, f),
            Ok((buf, eof)) => {
                if first {
                    s.message_begin(now);
                }
                let more = s.message_data(now, &buf);
                if eof || !more {
                    s.message_end(now);
                    if self.sending_retr {
                        self.retrieved += 1;
                    }
                } else {
                    self.stream = file;
                }
            }
        }
    }
}

impl ConnectionHandler for Pop3Handler {
    fn receive(&mut self, now: Instant, wire: &[u8]) {
        self.now = now;
        self.conn.receive(now, wire);
        self.drive(now);
    }

    fn transmit(&mut self, out: &mut Vec<u8>) {
        // A long LIST/UIDL goes on, and pipelined commands run, as output leaves.
        self.drive(self.now);
        self.conn.transmit(out);
    }

    fn poll_job(&mut self) -> Option<Job> {
        if self.jobs.running() {
            return None;
        }
        self.read_job();
        self.jobs.poll()
    }

    fn job_done(&mut self, now: Instant, output: JobOutput) {
        self.now = now;
        self.jobs.done();
        let Ok(done) = output.downcast::<Done>() else {
            return;
        };
        match *done {
            Done::Login(account) => {
                let ok = account.is_some();
                let user = self.log_user();
                if ok {
                    tracing::info!(listener = self.listener, client = %self.info.peer, user = %user, "login");
                } else {
                    tracing::warn!(listener = self.listener, client = %self.info.peer, user = %user, "authentication failed");
                }
                self.account = account;
                self.session().login_result(now, ok);
            }
            Done::Opened(result) => {
                let result = match result {
                    Ok((maildrop, messages)) => {
                        if self.session().is_closed() {
                            return self.drive(now);
                        }
                        self.maildrop = Some(maildrop);
                        Ok(messages)
                    }
                    Err(f) => {
                        tracing::warn!(listener = self.listener, client = %self.info.peer, reason = %f.text, "maildrop not opened");
                        Err(f)
                    }
                };
                self.session().maildrop(now, result);
            }
            Done::Read {
                maildrop,
                first,
                file,
                data,
            } => {
                if maildrop.is_some() {
                    self.maildrop = maildrop;
                }
                self.read_done(now, first, file, data);
            }
            Done::Updated(result) => {
                if let Ok(n) = result {
                    self.deleted = n;
                }
                self.session().update_done(now, result.map(|_| ()));
            }
        }
        self.drive(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.conn.protocol().poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.session().handle_timeout(now);
        self.drive(now);
    }

    fn wants_read(&self) -> bool {
        !self.conn.wants_close() && self.conn.protocol().buffered_input() < MAX_BUFFERED_INPUT
    }

    fn peer_closed(&mut self, now: Instant) {
        self.now = now;
        self.session().peer_closed();
        // Nothing is deleted; the maildrop is free at once for the client's next session.
        self.stream = None;
        self.maildrop = None;
    }

    fn shutdown(&mut self, now: Instant) {
        self.now = now;
        self.session().shutdown();
        self.drive(now);
    }

    fn is_closed(&self) -> bool {
        self.conn.wants_close() && !self.jobs.running()
    }
}

impl Drop for Pop3Handler {
    fn drop(&mut self) {
        let tls = conn::tls_name(self.conn.protocol().tls());
        let user = self.log_user();
        let error = self.conn.error().map(tracing::field::display);
        tracing::info!(listener = self.listener, client = %self.info.peer, user = %user, tls = %tls, retrieved = self.retrieved, deleted = self.deleted, error, "disconnect");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidl_is_dovecots_default_format() {
        assert_eq!(uidl(1, 1_700_000_000), "000000016553F100");
        assert_eq!(uidl(0x1234_abcd, 5), "1234ABCD00000005");
    }

    use crate::maildir::test_support::TempDir;
    use crate::maildir::{Recipient, Store};
    use crate::mailstore::MailStore;

    fn deliver(td: &TempDir, body: &str) {
        let smtp = Store::open(td.path(), "mx.example.org").unwrap();
        let mut w = smtp
            .begin(
                "sender@example.com",
                vec![Recipient {
                    domain: "example.org".into(),
                    local: "pat".into(),
                    delivered_to: "pat@example.org".into(),
                }],
                b"",
            )
            .unwrap();
        w.write(body.as_bytes()).unwrap();
        w.commit().unwrap();
    }

    fn read(mut f: File) -> String {
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn maildrop_over_the_store() {
        let td = TempDir::new();
        for i in 1..=3 {
            deliver(&td, &format!("Subject: {i}\r\n\r\nbody {i}\r\n"));
        }
        let mail = MailStore::open(td.path(), "mx.example.org").unwrap();
        let account = mail.account("example.org", "pat").unwrap();
        let locks = MaildropLocks::new();
        let (drop1, msgs) = Maildrop::open(&account, &locks).unwrap();
        assert_eq!(msgs.len(), 3);
        let imap = account.select("INBOX").unwrap();
        let v = imap.uidvalidity();
        for (m, info) in msgs.iter().zip(imap.messages()) {
            assert_eq!(m.uidl, uidl(info.uid, v), "UIDL agrees with the IMAP UID");
            assert_eq!(m.size, info.size);
        }
        // Numbered in UID order, which need not be the order of delivery.
        let mut bodies = Vec::new();
        for (n, m) in (1..=3).zip(&msgs) {
            let text = read(drop1.open_message(n).unwrap());
            assert_eq!(text.len() as u64, m.size);
            bodies.push(text.rsplit("Subject: ").next().unwrap().to_string());
        }
        bodies.sort();
        assert_eq!(
            bodies,
            [
                "1\r\n\r\nbody 1\r\n",
                "2\r\n\r\nbody 2\r\n",
                "3\r\n\r\nbody 3\r\n"
            ]
        );
        assert!(drop1.open_message(4).is_err());

        // A second POP3 session is refused; IMAP is not.
        let err = Maildrop::open(&account, &locks).err().unwrap();
        assert_eq!(err, Failure::in_use());

        // UPDATE: 1 seen, 2 removed; an IMAP view on the mailbox hears of it.
        let mut imap = imap;
        assert_eq!(drop1.update(&[2], &[1, 3]).unwrap(), 1);
        let changes = imap.refresh(true).unwrap();
        assert_eq!(changes.expunged, vec![2]);
        assert!(imap.message(1).unwrap().flags.contains(SystemFlags::SEEN));
        assert!(imap.message(2).unwrap().flags.contains(SystemFlags::SEEN));
        assert!(!imap
            .message(2)
            .unwrap()
            .flags
            .contains(SystemFlags::DELETED));

        // The lock went with the update; the UIDLs of what is left stay the same.
        let (drop2, again) = Maildrop::open(&account, &locks).unwrap();
        assert_eq!(again, vec![msgs[0].clone(), msgs[2].clone()]);
        // A message IMAP expunges meanwhile cannot be read, and is skipped at QUIT.
        imap.store(
            &[imap.message(2).unwrap().uid],
            StoreOp::Add,
            SystemFlags::DELETED,
            &[],
        )
        .unwrap();
        imap.expunge(None).unwrap();
        assert!(drop2.open_message(2).is_err());
        assert_eq!(drop2.update(&[2], &[]).unwrap(), 0);
        let (_drop3, last) = Maildrop::open(&account, &locks).unwrap();
        assert_eq!(last, vec![msgs[0].clone()]);
    }

    #[test]
    fn a_dropped_maildrop_deletes_nothing() {
        let td = TempDir::new();
        deliver(&td, "Subject: x\r\n\r\nx\r\n");
        let mail = MailStore::open(td.path(), "mx.example.org").unwrap();
        let account = mail.account("example.org", "pat").unwrap();
        let locks = MaildropLocks::new();
        let (d, msgs) = Maildrop::open(&account, &locks).unwrap();
        drop(d);
        let (_d, again) = Maildrop::open(&account, &locks).unwrap();
        assert_eq!(again, msgs);
    }

    #[test]
    fn chunks() {
        let td = TempDir::new();
        let path = td.path().join("f");
        std::fs::write(&path, vec![b'x'; CHUNK + 10]).unwrap();
        let mut f = File::open(&path).unwrap();
        let (a, eof) = read_chunk(&mut f).unwrap();
        assert_eq!((a.len(), eof), (CHUNK, false));
        let (b, eof) = read_chunk(&mut f).unwrap();
        assert_eq!((b.len(), eof), (10, true));
    }

    #[test]
    fn one_session_per_maildrop() {
        let locks = MaildropLocks::new();
        let a = locks.try_lock("/m/a".into()).unwrap();
        assert!(locks.try_lock("/m/a".into()).is_none());
        let b = locks.try_lock("/m/b".into()).unwrap();
        assert!(locks.is_locked(std::path::Path::new("/m/a")));
        drop(a);
        assert!(!locks.is_locked(std::path::Path::new("/m/a")));
        assert!(locks.try_lock("/m/a".into()).is_some());
        drop(b);
    }
}
