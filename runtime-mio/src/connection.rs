//! One accepted socket and the handler that drives it: reading under the handler's
//! back-pressure, buffered writing, jobs, timers, an orderly close, and giving up on a peer
//! that stops reading.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_core::service::{ConnectionHandler, Job, JobOutput};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::pool::{Completions, PoolHandle};
use crate::timer::{Deadline, Timers};

/// `transmit` is not called while this much output is still waiting for the socket.
const HIGH_WATER: usize = 64 * 1024;
/// Rounds of read/write work one connection may do before others get a turn.
const BUDGET: usize = 32;
/// How long a closed connection keeps draining its peer's unread input after our FIN, so
/// that a reset does not destroy the last reply in flight.
const LINGER: Duration = Duration::from_secs(2);
/// The most input discarded while lingering.
const LINGER_MAX_BYTES: usize = 256 * 1024;
/// An output buffer larger than this is released once empty.
const KEEP_CAPACITY: usize = 16 * 1024;

/// What the loop should do with a connection after driving it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Waiting for readiness, a job or a timer.
    Idle,
    /// Ran out of budget with work left: drive it again soon.
    Again,
    /// Done: deregister and drop.
    Close,
}

/// What the loop lends a connection while it drives it.
pub(crate) struct Cx<'a> {
    pub now: Instant,
    pub registry: &'a Registry,
    pub read_buf: &'a mut [u8],
    pub timers: &'a mut Timers,
    pub pool: &'a PoolHandle,
    pub completions: &'a Arc<Completions>,
    /// How long pending output may go without a byte written before the peer is dropped.
    pub write_timeout: Duration,
}

pub(crate) struct Connection {
    stream: TcpStream,
    handler: Box<dyn ConnectionHandler>,
    token: Token,
    index: usize,
    generation: u64,
    peer: SocketAddr,
    /// Bytes from `transmit`; `out[out_pos..]` is not yet written.
    out: Vec<u8>,
    out_pos: usize,
    /// While output is pending: when it was last found pending with nothing written since,
    /// i.e. the start of the current write stall (the last progress, or the first attempt).
    write_since: Option<Instant>,
    job_in_flight: bool,
    /// The socket may hold unread input (a readable edge was seen and no read has since
    /// returned `WouldBlock`). Kept across back-pressure, since no new edge will come.
    maybe_readable: bool,
    /// EOF or a socket error was seen and `peer_closed` called.
    read_closed: bool,
    /// The socket failed: output is discarded.
    write_failed: bool,
    /// The earliest deadline this connection has in the loop's timers.
    armed: Option<Instant>,
    /// Set once the handler is closed and our FIN is sent: drain input until then.
    linger_until: Option<Instant>,
    linger_bytes: usize,
    interest: Interest,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        handler: Box<dyn ConnectionHandler>,
        token: Token,
        index: usize,
        generation: u64,
        peer: SocketAddr,
    ) -> Connection {
        Connection {
            stream,
            handler,
            token,
            index,
            generation,
            peer,
            out: Vec::new(),
            out_pos: 0,
            write_since: None,
            job_in_flight: false,
            // An edge may have come before registration; one read finds out.
            maybe_readable: true,
            read_closed: false,
            write_failed: false,
            armed: None,
            linger_until: None,
            linger_bytes: 0,
            interest: Interest::READABLE,
        }
    }

    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.stream, self.token, self.interest)
    }

    pub fn deregister(&mut self, registry: &Registry) {
        if let Err(e) = registry.deregister(&mut self.stream) {
            tracing::debug!(error = %e, "deregister failed");
        }
    }

    /// The socket reported readiness.
    pub fn ready(&mut self, readable: bool, cx: &mut Cx<'_>) -> Outcome {
        if readable {
            self.maybe_readable = true;
        }
        self.pump(cx)
    }

    /// The job last submitted finished.
    pub fn job_done(&mut self, output: Option<JobOutput>, cx: &mut Cx<'_>) -> Outcome {
        self.job_in_flight = false;
        let Some(output) = output else {
            return Outcome::Close;
        };
        if self.linger_until.is_some() {
            return Outcome::Idle;
        }
        self.handler.job_done(cx.now, output);
        self.pump(cx)
    }

    /// A deadline this connection armed is due.
    pub fn timer(&mut self, at: Instant, cx: &mut Cx<'_>) -> Outcome {
        if self.armed == Some(at) {
            self.armed = None;
        }
        if let Some(until) = self.linger_until {
            return if cx.now >= until {
                Outcome::Close
            } else {
                Outcome::Idle
            };
        }
        if self.handler.poll_timeout().is_some_and(|t| t <= cx.now) {
            self.handler.handle_timeout(cx.now);
        }
        self.pump(cx)
    }

    /// The server is shutting down.
    pub fn shutdown(&mut self, cx: &mut Cx<'_>) -> Outcome {
        if self.linger_until.is_some() {
            return Outcome::Idle;
        }
        self.handler.shutdown(cx.now);
        self.pump(cx)
    }

    /// Does all the work that is possible now: moves bytes both ways and feeds the handler,
    /// until nothing changes or the budget is spent.
    pub fn pump(&mut self, cx: &mut Cx<'_>) -> Outcome {
        if self.linger_until.is_some() {
            return self.drain_lingering(cx);
        }
        for _ in 0..BUDGET {
            let blocked = self.drive(cx);
            let mut progress = self.flush(cx.now);
            if self.write_stalled(cx) {
                return self.write_timed_out(cx.now);
            }
            if blocked && self.pending() < HIGH_WATER {
                // Room again: `transmit` has more to give.
                progress = true;
            }
            let closed = self.handler.is_closed();
            if closed && !blocked && (self.pending() == 0 || self.write_failed) {
                return self.finish(cx);
            }
            if !closed && self.read_once(cx) {
                progress = true;
            }
            if !progress {
                return self.settle(cx.registry);
            }
        }
        match self.settle(cx.registry) {
            Outcome::Idle => Outcome::Again,
            other => other,
        }
    }

    fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Re-checks the handler after a call into it: output, job, timer. Returns true when
    /// `transmit` was held back by the output high-water mark.
    fn drive(&mut self, cx: &mut Cx<'_>) -> bool {
        let mut blocked = self.fill();
        if !self.job_in_flight {
            if let Some(job) = self.handler.poll_job() {
                self.job_in_flight = true;
                cx.pool
                    .submit(job, cx.completions.clone(), self.index, self.generation);
                blocked = self.fill();
            }
        }
        if let Some(at) = self.handler.poll_timeout() {
            self.arm(at, cx.timers);
        }
        blocked
    }

    /// Makes sure the loop's timers call back by `at`. Only an earlier deadline is pushed: a
    /// later one is armed when the earlier fires, which costs a deadline that moves later
    /// (each write, each input) nothing.
    fn arm(&mut self, at: Instant, timers: &mut Timers) {
        if self.armed.is_none_or(|armed| at < armed) {
            self.armed = Some(at);
            timers.push(Deadline {
                at,
                index: self.index,
                generation: self.generation,
            });
        }
    }

    /// After a flush: true if pending output has had no byte written for the write timeout;
    /// otherwise arms the timer for when that would be.
    fn write_stalled(&mut self, cx: &mut Cx<'_>) -> bool {
        let Some(since) = self.write_since else {
            return false;
        };
        let Some(deadline) = since.checked_add(cx.write_timeout) else {
            return false;
        };
        if cx.now >= deadline {
            return true;
        }
        self.arm(deadline, cx.timers);
        false
    }

    /// The peer has not taken a byte of pending output for the write timeout: it is told to
    /// the handler as a dead peer, and the connection is dropped with whatever it holds (a
    /// job in flight finishes on the pool; its output is discarded).
    fn write_timed_out(&mut self, now: Instant) -> Outcome {
        tracing::info!(
            peer = %self.peer,
            pending = self.pending(),
            "peer stopped reading: write timed out, closing the connection"
        );
        if !self.read_closed {
            self.read_closed = true;
            self.handler.peer_closed(now);
        }
        Outcome::Close
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
    fn flush(&mut self, now: Instant) -> bool {
        let mut wrote = false;
        while self.out_pos < self.out.len() && !self.write_failed {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return self.fail(now, io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(now, e),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            self.write_since = None;
        } else if wrote || self.write_since.is_none() {
            self.write_since = Some(now);
        }
        false
    }

    /// Reads once if the handler wants input and the socket may have some. Returns true if
    /// the handler was called.
    fn read_once(&mut self, cx: &mut Cx<'_>) -> bool {
        if self.read_closed || !self.maybe_readable || !self.handler.wants_read() {
            return false;
        }
        loop {
            match self.stream.read(cx.read_buf) {
                Ok(0) => {
                    tracing::debug!(token = self.token.0, "peer closed");
                    self.maybe_readable = false;
                    self.read_closed = true;
                    self.handler.peer_closed(cx.now);
                    return true;
                }
                Ok(n) => {
                    self.handler.receive(cx.now, &cx.read_buf[..n]);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_readable = false;
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(cx.now, e),
            }
        }
    }

    /// The socket failed: output is dropped and the handler told, once.
    fn fail(&mut self, now: Instant, e: io::Error) -> bool {
        tracing::debug!(token = self.token.0, error = %e, "socket failed");
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

    /// Registers the interests the connection now needs, and releases a large idle buffer.
    fn settle(&mut self, registry: &Registry) -> Outcome {
        let wanted = if self.pending() > 0 && !self.write_failed {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if self.out.is_empty() && self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        if wanted != self.interest {
            if let Err(e) = registry.reregister(&mut self.stream, self.token, wanted) {
                tracing::warn!(error = %e, "reregister failed; dropping connection");
                return Outcome::Close;
            }
            self.interest = wanted;
        }
        Outcome::Idle
    }

    /// The handler is closed and its output written: send our FIN, then linger until the
    /// peer's FIN so that unread input does not turn the close into a reset.
    fn finish(&mut self, cx: &mut Cx<'_>) -> Outcome {
        if self.write_failed || self.read_closed {
            return Outcome::Close;
        }
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return Outcome::Close;
        }
        // The handler is done: release it (and whatever it holds) now, not after lingering.
        self.handler = Box::new(Finished);
        let until = cx.now + LINGER;
        self.linger_until = Some(until);
        cx.timers.push(Deadline {
            at: until,
            index: self.index,
            generation: self.generation,
        });
        self.maybe_readable = true;
        self.drain_lingering(cx)
    }

    fn drain_lingering(&mut self, cx: &mut Cx<'_>) -> Outcome {
        if !self.maybe_readable {
            return self.settle(cx.registry);
        }
        loop {
            match self.stream.read(cx.read_buf) {
                Ok(0) => return Outcome::Close,
                Ok(n) => {
                    self.linger_bytes += n;
                    if self.linger_bytes > LINGER_MAX_BYTES {
                        return Outcome::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_readable = false;
                    return self.settle(cx.registry);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Outcome::Close,
            }
        }
    }
}

/// Stands in for a handler that has closed while its socket lingers.
struct Finished;

impl ConnectionHandler for Finished {
    fn receive(&mut self, _now: Instant, _wire: &[u8]) {}
    fn transmit(&mut self, _out: &mut Vec<u8>) {}
    fn poll_job(&mut self) -> Option<Job> {
        None
    }
    fn job_done(&mut self, _now: Instant, _output: JobOutput) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn wants_read(&self) -> bool {
        false
    }
    fn peer_closed(&mut self, _now: Instant) {}
    fn shutdown(&mut self, _now: Instant) {}
    fn is_closed(&self) -> bool {
        true
    }
}
