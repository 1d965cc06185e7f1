//! What a runtime drives: one [`ConnectionHandler`] per accepted socket.
//!
//! A runtime moves ciphertext between a socket and a handler, runs the handler's blocking
//! [`Job`]s off its event loop, and keeps the handler's timer. It never learns which
//! protocol, TLS state or storage sits behind the handler.

use core::net::SocketAddr;
use std::any::Any;
use std::time::{Duration, Instant};

/// The result of a [`Job`], handed back to the handler that produced it.
pub type JobOutput = Box<dyn Any + Send>;

/// Blocking work (a disk write, an fsync, a password hash) to run off the event loop.
pub type Job = Box<dyn FnOnce() -> JobOutput + Send>;

/// The addresses of an accepted connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// One connection's protocol stack, driven by a runtime.
///
/// Contract: after any call, the runtime asks for `transmit`, `poll_job`, `poll_timeout` and
/// `is_closed` again. At most one job of a handler runs at a time: `poll_job` is not called
/// again until `job_done` has delivered the previous job's output.
pub trait ConnectionHandler: Send {
    /// Bytes read from the socket.
    fn receive(&mut self, now: Instant, wire: &[u8]);

    /// Appends bytes to write to the socket.
    fn transmit(&mut self, out: &mut Vec<u8>);

    /// Blocking work the handler needs done before it can go on.
    fn poll_job(&mut self) -> Option<Job>;

    /// The output of the job last returned by `poll_job`.
    fn job_done(&mut self, now: Instant, output: JobOutput);

    /// When `handle_timeout` should next be called.
    fn poll_timeout(&self) -> Option<Instant>;

    fn handle_timeout(&mut self, now: Instant);

    /// False while the handler has buffered as much unprocessed input as it will take:
    /// the runtime stops reading the socket (back-pressure) until it turns true again.
    fn wants_read(&self) -> bool;

    /// The peer closed its side, or the socket failed: no more input comes and output is
    /// discarded. Also called (unless it was already) when the peer stopped reading for the
    /// runtime's write timeout; the handler is then dropped without further calls, so this
    /// is where it lets go of what it holds for the peer.
    fn peer_closed(&mut self, now: Instant);

    /// The server is shutting down: finish what is in flight, then close.
    fn shutdown(&mut self, now: Instant);

    /// True once the handler is done: the runtime flushes what `transmit` gave and closes.
    fn is_closed(&self) -> bool;
}

/// Makes the handler for each accepted connection on one listener.
pub trait HandlerFactory: Send + Sync {
    fn new_handler(&self, now: Instant, info: ConnInfo) -> Box<dyn ConnectionHandler>;
}

/// How many threads a runtime runs, how long its graceful shutdown may take and how long a
/// stalled write may last: plain numbers, one definition for every runtime, so the server
/// configures them alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Threads that drive connections (mio: event loops; smol: executor threads). 0 means
    /// one per CPU the process may use, as the runtime counts them.
    pub event_loops: usize,
    /// The most handler jobs that run at once (at least one).
    pub workers: usize,
    /// After shutdown begins, how long connections may take to close before they are dropped.
    pub shutdown_grace: Duration,
    /// How long a connection's output may wait for the socket without a single byte of it
    /// written before the runtime gives up on the peer: it calls the handler's `peer_closed`
    /// (unless it already has), drops the handler and closes the socket. Any byte written
    /// restarts the clock, so a slow reader that keeps reading is never cut off; this bounds
    /// only a peer that stops reading while output is pending (the handler's own deadlines
    /// do not cover that, e.g. an IMAP command in progress, or a session that has said BYE
    /// and waits for its last reply to drain). `Duration::MAX` never gives up.
    pub write_timeout: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            event_loops: 0,
            workers: 32,
            shutdown_grace: Duration::from_secs(30),
            write_timeout: Duration::from_secs(300),
        }
    }
}
