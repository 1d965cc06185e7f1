//! One event loop thread: its own `mio::Poll`, a clone of every listener, the connections
//! it accepted, their timers, and the queue their finished jobs come back through.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_core::service::{ConnInfo, HandlerFactory};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::connection::{Connection, Cx, Outcome};
use crate::pool::{Completion, Completions, PoolHandle};
use crate::slab::Slab;
use crate::timer::Timers;
use crate::Shared;

/// Wakes the loop for finished jobs and for shutdown.
pub(crate) const WAKER: Token = Token(0);
/// Listener `i` is `Token(FIRST_LISTENER + i)`; connections follow the listeners.
const FIRST_LISTENER: usize = 1;
const READ_BUF: usize = 64 * 1024;
const EVENTS: usize = 1024;

pub(crate) struct EventLoop {
    pub id: usize,
    pub poll: Poll,
    pub listeners: Vec<(TcpListener, Arc<dyn HandlerFactory>)>,
    pub completions: Arc<Completions>,
    pub pool: PoolHandle,
    pub shared: Arc<Shared>,
    pub grace: Duration,
    pub write_timeout: Duration,
}

/// The loop's mutable state besides the poll, split out so a connection can borrow it.
struct State {
    conns: Slab<Connection>,
    timers: Timers,
    read_buf: Vec<u8>,
    /// Connections that ran out of budget with work left.
    again: Vec<(usize, u64)>,
    finished: Vec<Completion>,
    /// When shutdown began, the moment remaining connections are dropped.
    grace_deadline: Option<Instant>,
    first_conn: usize,
}

impl EventLoop {
    pub fn run(mut self) -> io::Result<()> {
        let first_conn = FIRST_LISTENER + self.listeners.len();
        for (i, (listener, _)) in self.listeners.iter_mut().enumerate() {
            self.poll.registry().register(
                listener,
                Token(FIRST_LISTENER + i),
                Interest::READABLE,
            )?;
        }
        let mut st = State {
            conns: Slab::default(),
            timers: Timers::default(),
            read_buf: vec![0; READ_BUF],
            again: Vec::new(),
            finished: Vec::new(),
            grace_deadline: None,
            first_conn,
        };
        let mut events = Events::with_capacity(EVENTS);
        let result = self.serve(&mut st, &mut events);
        let left = st.conns.len();
        if left > 0 {
            tracing::warn!(
                event_loop = self.id,
                connections = left,
                "shutdown grace over; dropping connections"
            );
        }
        for mut conn in st.conns.drain() {
            conn.deregister(self.poll.registry());
        }
        drop(self.completions.close());
        tracing::debug!(event_loop = self.id, "event loop exited");
        result
    }

    fn serve(&mut self, st: &mut State, events: &mut Events) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if st.grace_deadline.is_none() && self.shared.shutdown.load(Ordering::Acquire) {
                self.begin_shutdown(st, now);
            }
            if let Some(deadline) = st.grace_deadline {
                if st.conns.is_empty() || now >= deadline {
                    return Ok(());
                }
            }
            let timeout = if st.again.is_empty() {
                [st.timers.next(), st.grace_deadline]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|at| at.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                let token = event.token().0;
                if token == WAKER.0 {
                    continue;
                }
                if token < st.first_conn {
                    self.accept(st, token - FIRST_LISTENER);
                    continue;
                }
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                let index = token - st.first_conn;
                self.with_conn(st, index, None, |conn, cx| conn.ready(readable, cx));
            }
            self.run_completions(st);
            self.run_again(st);
            self.run_timers(st);
        }
    }

    /// Drives one connection with a closure, then applies the outcome. `generation` of
    /// `None` accepts whatever connection holds the slot (socket events carry no generation).
    fn with_conn(
        &mut self,
        st: &mut State,
        index: usize,
        generation: Option<u64>,
        f: impl FnOnce(&mut Connection, &mut Cx<'_>) -> Outcome,
    ) {
        let conn = match generation {
            Some(g) => st.conns.get_current(index, g),
            None => st.conns.get_mut(index),
        };
        let Some(conn) = conn else { return };
        let mut cx = Cx {
            now: Instant::now(),
            registry: self.poll.registry(),
            read_buf: &mut st.read_buf,
            timers: &mut st.timers,
            pool: &self.pool,
            completions: &self.completions,
            write_timeout: self.write_timeout,
        };
        // A panicking handler costs its own connection, not the loop's others.
        let outcome =
            panic::catch_unwind(AssertUnwindSafe(|| f(conn, &mut cx))).unwrap_or_else(|_| {
                tracing::error!(event_loop = self.id, index, "connection handler panicked");
                Outcome::Close
            });
        match outcome {
            Outcome::Idle => {}
            Outcome::Again => {
                if let Some(generation) = st.conns.generation(index) {
                    st.again.push((index, generation));
                }
            }
            Outcome::Close => {
                if let Some(mut conn) = st.conns.remove(index) {
                    conn.deregister(self.poll.registry());
                    tracing::debug!(event_loop = self.id, index, "connection closed");
                }
            }
        }
    }

    fn accept(&mut self, st: &mut State, listener: usize) {
        loop {
            let Some((socket, factory)) = self.listeners.get(listener) else {
                return;
            };
            match socket.accept() {
                Ok((stream, peer)) => {
                    let factory = factory.clone();
                    self.add_conn(st, stream, peer, &*factory);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of descriptors or memory: the next connection retries.
                    tracing::warn!(event_loop = self.id, error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn add_conn(
        &mut self,
        st: &mut State,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        factory: &dyn HandlerFactory,
    ) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(e) => {
                tracing::debug!(error = %e, "accepted socket has no local address");
                return;
            }
        };
        let now = Instant::now();
        let handler = factory.new_handler(now, ConnInfo { peer, local });
        let (index, generation) = st.conns.vacant();
        let token = Token(st.first_conn + index);
        let mut conn = Connection::new(stream, handler, token, index, generation, peer);
        if let Err(e) = conn.register(self.poll.registry()) {
            tracing::warn!(error = %e, "cannot register connection");
            return;
        }
        st.conns.insert(conn);
        tracing::debug!(event_loop = self.id, %peer, index, "connection accepted");
        self.with_conn(st, index, Some(generation), |conn, cx| conn.pump(cx));
    }

    fn run_completions(&mut self, st: &mut State) {
        let mut finished = std::mem::take(&mut st.finished);
        self.completions.take(&mut finished);
        for done in finished.drain(..) {
            let Completion {
                index,
                generation,
                output,
            } = done;
            if st.conns.get_current(index, generation).is_none() {
                // The connection is gone: the output is dropped here.
                continue;
            }
            self.with_conn(st, index, Some(generation), |conn, cx| {
                conn.job_done(output, cx)
            });
        }
        st.finished = finished;
    }

    fn run_again(&mut self, st: &mut State) {
        for (index, generation) in std::mem::take(&mut st.again) {
            self.with_conn(st, index, Some(generation), |conn, cx| conn.pump(cx));
        }
    }

    fn run_timers(&mut self, st: &mut State) {
        let now = Instant::now();
        while let Some(due) = st.timers.pop_due(now) {
            self.with_conn(st, due.index, Some(due.generation), |conn, cx| {
                conn.timer(due.at, cx)
            });
        }
    }

    /// Stops accepting and tells every handler the server is going down.
    fn begin_shutdown(&mut self, st: &mut State, now: Instant) {
        tracing::debug!(
            event_loop = self.id,
            connections = st.conns.len(),
            "shutting down"
        );
        for (mut listener, _) in self.listeners.drain(..) {
            if let Err(e) = self.poll.registry().deregister(&mut listener) {
                tracing::debug!(error = %e, "cannot deregister listener");
            }
        }
        st.grace_deadline = Some(now + self.grace);
        for index in st.conns.indices() {
            self.with_conn(st, index, None, |conn, cx| conn.shutdown(cx));
        }
    }
}
