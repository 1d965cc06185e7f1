//! The task of one accepted socket and the handler that drives it: reading under the
//! handler's back-pressure, buffered writing, jobs on the blocking pool, the timer, shutdown,
//! an orderly close, and giving up on a peer that stops reading.
//!
//! The task alternates between two phases. First it does all the work possible without
//! waiting: takes output from the handler, starts its job, arms its timer, writes and reads
//! with non-blocking calls, and calls the handler again until nothing changes. Then it waits
//! for whichever comes first of the things that can change that: the socket turning
//! writable or readable, the job finishing, the timer, the write-stall deadline, or
//! shutdown.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_core::service::{ConnInfo, ConnectionHandler, HandlerFactory, Job, JobOutput};
use smol::future::{self, FutureExt as _};
use smol::io::AsyncReadExt as _;
use smol::lock::Semaphore;
use smol::{Async, Timer};

use crate::signal::Alive;
use crate::Shared;

/// `transmit` is not called while this much output is still waiting for the socket.
const HIGH_WATER: usize = 64 * 1024;
/// Size of the read buffer, one per executor thread.
const READ_BUF: usize = 64 * 1024;
/// Rounds of work one connection may do before other tasks on its thread get a turn.
const BUDGET: usize = 32;
/// How long a closed connection keeps draining its peer's unread input after our FIN, so
/// that a reset does not destroy the last reply in flight.
const LINGER: Duration = Duration::from_secs(2);
/// The most input discarded while lingering.
const LINGER_MAX_BYTES: usize = 256 * 1024;
/// An output buffer larger than this is released once empty.
const KEEP_CAPACITY: usize = 16 * 1024;

thread_local! {
    /// Input is read here and handed to the handler at once, so an idle connection holds no
    /// read buffer of its own.
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

/// A job on its way through the blocking pool; `None` if it panicked.
type JobFuture = Pin<Box<dyn Future<Output = Option<JobOutput>> + Send>>;

/// Serves one accepted socket until its handler is done, the peer is gone, a handler or job
/// panics, or the shutdown grace period ends. `alive` is held until then.
pub(crate) async fn serve(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    factory: Arc<dyn HandlerFactory>,
    shared: Arc<Shared>,
    alive: Alive,
) {
    let _alive = alive;
    if let Err(e) = stream.get_ref().set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let local = match stream.get_ref().local_addr() {
        Ok(local) => local,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "accepted socket has no local address");
            return;
        }
    };
    tracing::debug!(%peer, "connection accepted");
    let work = async {
        let handler = factory.new_handler(Instant::now(), ConnInfo { peer, local });
        let mut conn = Connection::new(stream, handler, shared.clone(), peer);
        if conn.run().await == End::Linger {
            // The handler is done: release it (and whatever it holds) before lingering.
            linger(conn.into_stream()).await;
        }
    };
    // A panicking handler costs its own connection, not its thread's other tasks.
    let finished = async {
        shared.abort.fired().await;
        tracing::debug!(%peer, "dropped at the end of the shutdown grace period");
        true
    }
    .or(async { AssertUnwindSafe(work).catch_unwind().await.is_ok() })
    .await;
    if !finished {
        tracing::error!(%peer, "connection handler panicked");
    }
    tracing::debug!(%peer, "connection closed");
}

/// How the connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The handler closed with its output written: send our FIN and linger.
    Linger,
    /// Nothing more to say, or no way to say it: drop the socket.
    Drop,
}

/// What ended a wait.
enum Wake {
    Writable(io::Result<()>),
    Job(Option<JobOutput>),
    Timer,
    WriteTimer,
    Shutdown,
    Readable(io::Result<()>),
}

struct Connection {
    stream: Async<TcpStream>,
    handler: Box<dyn ConnectionHandler>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Bytes from `transmit`; `out[out_pos..]` is not yet written.
    out: Vec<u8>,
    out_pos: usize,
    /// How long pending output may go without a byte written before the peer is dropped.
    write_timeout: Duration,
    /// While output is pending: when it was last found pending with nothing written since,
    /// i.e. the start of the current write stall (the last progress, or the first attempt).
    write_since: Option<Instant>,
    /// Fires at the write-stall deadline, `write_armed`. Set only when no earlier deadline
    /// is armed: when progress moves the deadline later, the firing finds it not yet due
    /// and arms the new one, so a steady writer resets no timer per write.
    write_timer: Timer,
    write_armed: Option<Instant>,
    /// The handler's job in flight; at most one.
    job: Option<JobFuture>,
    timer: Timer,
    /// The deadline `timer` is set to, the earliest the handler has asked for since it last
    /// fired. A later deadline is left for the next firing to discover.
    armed: Option<Instant>,
    /// The socket may hold unread input (no read has returned `WouldBlock` since it was last
    /// reported readable). Kept across back-pressure.
    maybe_readable: bool,
    /// EOF or a socket error was seen and `peer_closed` called.
    read_closed: bool,
    /// The socket failed: output is discarded.
    write_failed: bool,
    /// `shutdown` was delivered to the handler.
    told_shutdown: bool,
}

impl Connection {
    fn new(
        stream: Async<TcpStream>,
        handler: Box<dyn ConnectionHandler>,
        shared: Arc<Shared>,
        peer: SocketAddr,
    ) -> Connection {
        let write_timeout = shared.write_timeout;
        Connection {
            stream,
            handler,
            shared,
            peer,
            out: Vec::new(),
            out_pos: 0,
            write_timeout,
            write_since: None,
            write_timer: Timer::never(),
            write_armed: None,
            job: None,
            timer: Timer::never(),
            armed: None,
            // Input may have arrived with the connection; one read finds out.
            maybe_readable: true,
            read_closed: false,
            write_failed: false,
            told_shutdown: false,
        }
    }

    fn into_stream(self) -> Async<TcpStream> {
        self.stream
    }

    /// Drives the handler until it is closed and its output written, or it cannot go on.
    async fn run(&mut self) -> End {
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds == BUDGET {
                rounds = 0;
                future::yield_now().await;
                // A connection with work in every round never reaches the wait below: look
                // for a finished job, the timer and shutdown here as well.
                if let Some(wake) = future::poll_once(self.wait()).await {
                    if let Some(end) = self.woken(wake) {
                        return end;
                    }
                }
            }
            let blocked = self.drive();
            let mut progress = self.flush();
            if let Some(end) = self.check_write_stall() {
                return end;
            }
            if blocked && self.pending() < HIGH_WATER {
                // Room again: `transmit` has more to give.
                progress = true;
            }
            let closed = self.handler.is_closed();
            if closed && !blocked && (self.pending() == 0 || self.write_failed) {
                return if self.write_failed || self.read_closed {
                    End::Drop
                } else {
                    End::Linger
                };
            }
            if !closed && self.read_once() {
                progress = true;
            }
            if progress {
                continue;
            }
            if self.out.is_empty() && self.out.capacity() > KEEP_CAPACITY {
                self.out = Vec::new();
            }
            let wake = self.wait().await;
            if let Some(end) = self.woken(wake) {
                return end;
            }
        }
    }

    /// Acts on what ended a wait. Returns the end of the connection if it ended it.
    fn woken(&mut self, wake: Wake) -> Option<End> {
        let now = Instant::now();
        match wake {
            Wake::Writable(Ok(())) => {}
            Wake::Readable(Ok(())) => self.maybe_readable = true,
            Wake::Writable(Err(e)) | Wake::Readable(Err(e)) => {
                self.fail(now, e);
            }
            Wake::Job(output) => {
                self.job = None;
                let Some(output) = output else {
                    // The job panicked: the handler cannot go on without its output.
                    return Some(End::Drop);
                };
                self.handler.job_done(now, output);
            }
            Wake::Timer => {
                self.armed = None;
                if self.handler.poll_timeout().is_some_and(|at| at <= now) {
                    self.handler.handle_timeout(now);
                }
            }
            // The next round flushes, then finds the stall over or the deadline passed.
            Wake::WriteTimer => self.write_armed = None,
            Wake::Shutdown => {
                self.told_shutdown = true;
                self.handler.shutdown(now);
            }
        }
        None
    }

    fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// After a flush: if pending output has had no byte written for the write timeout, tells
    /// the handler its peer is gone and ends the connection (a job in flight finishes on the
    /// pool; its output is discarded). Otherwise arms the deadline if none earlier is.
    fn check_write_stall(&mut self) -> Option<End> {
        let deadline = self.write_since?.checked_add(self.write_timeout)?;
        let now = Instant::now();
        if now < deadline {
            if self.write_armed.is_none_or(|armed| deadline < armed) {
                self.write_armed = Some(deadline);
                self.write_timer.set_at(deadline);
            }
            return None;
        }
        tracing::info!(
            peer = %self.peer,
            pending = self.pending(),
            "peer stopped reading: write timed out, closing the connection"
        );
        if !self.read_closed {
            self.read_closed = true;
            self.handler.peer_closed(now);
        }
        Some(End::Drop)
    }

    /// Re-checks the handler after a call into it: output, job, timer. Returns true when
    /// `transmit` was held back by the output high-water mark.
    fn drive(&mut self) -> bool {
        let mut blocked = self.fill();
        if self.job.is_none() {
            if let Some(job) = self.handler.poll_job() {
                self.job = Some(start_job(&self.shared.jobs, job));
                blocked = self.fill();
            }
        }
        if let Some(at) = self.handler.poll_timeout() {
            if self.armed.is_none_or(|armed| at < armed) {
                self.armed = Some(at);
                self.timer.set_at(at);
            }
        }
        blocked
    }

    /// Takes output from the handler until it has none or the high-water mark is reached.
    fn fill(&mut self) -> bool {
        if self.write_failed {
            self.handler.transmit(&mut self.out);
            self.out.clear();
            self.out_pos = 0;
            return false;
        }
        if self.out_pos > 0 && self.out_pos * 2 >= self.out.len() {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        loop {
            if self.pending() >= HIGH_WATER {
                return true;
            }
            let before = self.out.len();
            self.handler.transmit(&mut self.out);
            if self.out.len() == before {
                return false;
            }
        }
    }

    /// Writes pending output until done or the socket would block. Returns true if a
    /// failure was reported to the handler.
    ///
    /// Keeps the write-stall clock: it starts when output is first found pending, and starts
    /// over whenever a byte is written.
    fn flush(&mut self) -> bool {
        let mut wrote = false;
        while self.out_pos < self.out.len() && !self.write_failed {
            match Write::write(&mut self.stream.get_ref(), &self.out[self.out_pos..]) {
                Ok(0) => return self.fail(Instant::now(), io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(Instant::now(), e),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            self.write_since = None;
        } else if wrote || self.write_since.is_none() {
            self.write_since = Some(Instant::now());
        }
        false
    }

    /// Reads once if the handler wants input and the socket may have some. Returns true if
    /// the handler was called.
    fn read_once(&mut self) -> bool {
        if self.read_closed || !self.maybe_readable || !self.handler.wants_read() {
            return false;
        }
        READ_BUFFER.with(|buf| {
            let mut buf = buf.borrow_mut();
            loop {
                match Read::read(&mut self.stream.get_ref(), &mut buf) {
                    Ok(0) => {
                        self.maybe_readable = false;
                        self.read_closed = true;
                        self.handler.peer_closed(Instant::now());
                        return true;
                    }
                    Ok(n) => {
                        self.handler.receive(Instant::now(), &buf[..n]);
                        return true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.maybe_readable = false;
                        return false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return self.fail(Instant::now(), e),
                }
            }
        })
    }

    /// The socket failed: output is dropped and the handler told, once. Returns true if
    /// the handler was called.
    fn fail(&mut self, now: Instant, e: io::Error) -> bool {
        tracing::debug!(error = %e, "socket failed");
        self.write_failed = true;
        self.maybe_readable = false;
        self.out.clear();
        self.out_pos = 0;
        self.write_since = None;
        if self.read_closed {
            return false;
        }
        self.read_closed = true;
        self.handler.peer_closed(now);
        true
    }

    /// Waits for the first thing that lets the connection go on, in order of preference:
    /// room to write, the job's output, the timer, the write-stall deadline, shutdown, input.
    async fn wait(&mut self) -> Wake {
        let want_write = self.pending() > 0 && !self.write_failed;
        let want_write_timer = want_write && self.write_armed.is_some();
        let want_read = !self.read_closed
            && !self.maybe_readable
            && !self.handler.is_closed()
            && self.handler.wants_read();
        let want_timer = self.armed.is_some();
        let want_shutdown = !self.told_shutdown;
        let Connection {
            stream,
            job,
            timer,
            write_timer,
            shared,
            ..
        } = self;
        let stream = &*stream;
        let writable = async {
            if !want_write {
                return future::pending().await;
            }
            Wake::Writable(stream.writable().await)
        };
        let job_done = async {
            match job {
                Some(job) => Wake::Job(job.await),
                None => future::pending().await,
            }
        };
        let timer_fired = async {
            if !want_timer {
                return future::pending().await;
            }
            timer.await;
            Wake::Timer
        };
        let write_stalled = async {
            if !want_write_timer {
                return future::pending().await;
            }
            write_timer.await;
            Wake::WriteTimer
        };
        let shutdown = async {
            if !want_shutdown {
                return future::pending().await;
            }
            shared.shutdown.fired().await;
            Wake::Shutdown
        };
        let readable = async {
            if !want_read {
                return future::pending().await;
            }
            Wake::Readable(stream.readable().await)
        };
        writable
            .or(job_done)
            .or(timer_fired)
            .or(write_stalled)
            .or(shutdown)
            .or(readable)
            .await
    }
}

/// Starts a job on the blocking pool once one of the `workers` permits is free.
fn start_job(permits: &Arc<Semaphore>, job: Job) -> JobFuture {
    let run = |permit| {
        move || {
            // Held until the job returns, even if its connection has gone meanwhile.
            let _permit = permit;
            let output = panic::catch_unwind(AssertUnwindSafe(job));
            if output.is_err() {
                tracing::error!("handler job panicked");
            }
            output.ok()
        }
    };
    match permits.try_acquire_arc() {
        // The usual case: the job starts now, not when the task next waits.
        Some(permit) => Box::pin(smol::unblock(run(permit))),
        None => {
            let permits = permits.clone();
            Box::pin(async move {
                let permit = permits.acquire_arc().await;
                smol::unblock(run(permit)).await
            })
        }
    }
}

/// After our FIN, reads and discards the peer's input until its FIN, for at most
/// [`LINGER`] and [`LINGER_MAX_BYTES`], so that unread input does not turn the close into
/// a reset that destroys the last reply.
async fn linger(stream: Async<TcpStream>) {
    if stream.get_ref().shutdown(Shutdown::Write).is_err() {
        return;
    }
    let drain = async {
        let mut buf = vec![0; 8 * 1024];
        let mut discarded = 0;
        loop {
            match (&stream).read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    discarded += n;
                    if discarded > LINGER_MAX_BYTES {
                        return;
                    }
                }
            }
        }
    };
    drain
        .or(async {
            Timer::after(LINGER).await;
        })
        .await;
}
