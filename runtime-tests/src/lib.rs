//! The test suite every ironpost runtime runs over loopback TCP, with a small line handler:
//! it greets, upper-cases every line in a worker job, closes idle connections, says "bye" on
//! shutdown, answers `flood <n>` with `n` more octets of output (for clients that stop
//! reading), and checks the runtime keeps the handler contract (no input while it refuses
//! reads, one job at a time).
//!
//! The tests are functions generic over [`TestRuntime`]; a runtime's `tests/lines.rs` runs
//! them all with one line, `ironpost_runtime_tests::line_tests!(<runtime crate>);`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use ironpost_core::service::{
    ConnInfo, ConnectionHandler, HandlerFactory, Job, JobOutput, RuntimeOptions,
};

#[doc(hidden)]
pub use ironpost_core;

/// What the suite needs of a runtime. [`line_tests!`] implements it on a wrapper of the
/// runtime crate's `Runtime`.
pub trait TestRuntime: Sized + Send + 'static {
    /// The runtime's shutdown handle.
    type Handle: Send + 'static;
    /// Starts the runtime on one listener.
    fn start(
        listener: TcpListener,
        factory: Arc<dyn HandlerFactory>,
        opts: RuntimeOptions,
    ) -> io::Result<Self>;
    fn handle(&self) -> Self::Handle;
    /// Begins graceful shutdown.
    fn shutdown(handle: &Self::Handle);
    fn is_shutting_down(handle: &Self::Handle) -> bool;
    /// Returns once every connection and thread of the runtime is gone.
    fn wait(self) -> io::Result<()>;
}

/// Runs every test of the suite on a runtime crate whose `Runtime`, `Listener` and
/// `ShutdownHandle` have the shape of `ironpost-runtime-mio`'s, e.g.
/// `ironpost_runtime_tests::line_tests!(ironpost_runtime_mio);` in its `tests/lines.rs`.
/// A new test goes into the list at the end of this macro.
#[macro_export]
macro_rules! line_tests {
    ($rt:ident) => {
        /// The runtime under test.
        struct Rt($rt::Runtime);

        impl $crate::TestRuntime for Rt {
            type Handle = $rt::ShutdownHandle;
            fn start(
                listener: ::std::net::TcpListener,
                factory: ::std::sync::Arc<dyn $crate::ironpost_core::service::HandlerFactory>,
                opts: $crate::ironpost_core::service::RuntimeOptions,
            ) -> ::std::io::Result<Self> {
                $rt::Runtime::start(vec![$rt::Listener { listener, factory }], opts).map(Rt)
            }
            fn handle(&self) -> Self::Handle {
                self.0.handle()
            }
            fn shutdown(handle: &Self::Handle) {
                handle.shutdown()
            }
            fn is_shutting_down(handle: &Self::Handle) -> bool {
                handle.is_shutting_down()
            }
            fn wait(self) -> ::std::io::Result<()> {
                self.0.wait()
            }
        }

        $crate::line_tests!(@run Rt:
            round_trip_with_pipelining,
            many_concurrent_clients,
            jobs_run_on_the_pool_within_the_worker_limit,
            large_payload_through_back_pressure_is_byte_exact,
            slow_reader_gets_everything,
            idle_connection_times_out,
            peer_close_drops_the_connection,
            graceful_shutdown_says_bye,
            shutdown_grace_drops_stubborn_connections,
            panics_cost_only_their_own_connection,
            dropping_the_runtime_shuts_it_down,
            close_with_unread_input_still_delivers_the_last_reply,
            write_stall_drops_a_client_that_stopped_reading,
            write_stall_drops_a_closed_handler_whose_last_words_cannot_be_written,
            slow_but_steady_reader_is_not_cut_off,
            slow_reader_of_last_words_is_not_cut_off,
        );
    };
    (@run $r:ident: $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::$test::<$r>();
            }
        )*
    };
}

/// The handler stops reading with this much unprocessed input.
const IN_LIMIT: usize = 4096;
/// The handler stops reading and starting jobs with this much output not yet transmitted.
const OUT_LIMIT: usize = 32 * 1024;
/// The most the handler gives per `transmit` call.
const CHUNK: usize = 8 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

struct Config {
    idle: Duration,
    /// Ignore `shutdown` (to test the grace period).
    stubborn: bool,
    live: AtomicUsize,
    accepted: AtomicUsize,
    /// How long each job sleeps, to make jobs overlap.
    job_sleep: Duration,
    jobs_running: AtomicUsize,
    most_jobs_running: AtomicUsize,
}

struct Factory(Arc<Config>);

impl HandlerFactory for Factory {
    fn new_handler(&self, now: Instant, info: ConnInfo) -> Box<dyn ConnectionHandler> {
        assert!(info.peer.ip().is_loopback());
        assert!(info.local.ip().is_loopback());
        self.0.live.fetch_add(1, Ordering::SeqCst);
        self.0.accepted.fetch_add(1, Ordering::SeqCst);
        Box::new(Lines {
            cfg: self.0.clone(),
            input: Vec::new(),
            output: b"hi\r\n".to_vec(),
            out_pos: 0,
            job_running: false,
            eof: false,
            bye_pending: false,
            closing: false,
            deadline: now + self.0.idle,
            flood_left: 0,
        })
    }
}

struct Lines {
    cfg: Arc<Config>,
    input: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    job_running: bool,
    eof: bool,
    bye_pending: bool,
    closing: bool,
    deadline: Instant,
    /// Octets of `x` still to transmit after `output`, asked for with `flood <n>`.
    flood_left: usize,
}

impl Lines {
    fn unsent(&self) -> usize {
        self.output.len() - self.out_pos + self.flood_left
    }

    fn has_line(&self) -> bool {
        self.input.contains(&b'\n')
    }

    fn advance(&mut self) {
        if self.bye_pending && !self.job_running {
            self.bye_pending = false;
            self.output.extend_from_slice(b"bye\r\n");
            self.closing = true;
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.cfg.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ConnectionHandler for Lines {
    fn receive(&mut self, now: Instant, wire: &[u8]) {
        assert!(self.wants_read(), "receive while refusing input");
        if wire.windows(4).any(|w| w == b"BOOM") {
            panic!("handler panics in receive");
        }
        self.input.extend_from_slice(wire);
        self.deadline = now + self.cfg.idle;
    }

    fn transmit(&mut self, out: &mut Vec<u8>) {
        // Once closing, the rest goes in one piece: the runtime holds the last words.
        let limit = if self.closing { usize::MAX } else { CHUNK };
        if self.out_pos < self.output.len() {
            let n = (self.output.len() - self.out_pos).min(limit);
            out.extend_from_slice(&self.output[self.out_pos..self.out_pos + n]);
            self.out_pos += n;
            if self.out_pos == self.output.len() {
                self.output.clear();
                self.out_pos = 0;
            }
            return;
        }
        let n = self.flood_left.min(limit);
        out.resize(out.len() + n, b'x');
        self.flood_left -= n;
    }

    fn poll_job(&mut self) -> Option<Job> {
        assert!(!self.job_running, "poll_job with a job in flight");
        if self.closing || self.bye_pending || self.unsent() >= OUT_LIMIT {
            return None;
        }
        let end = self.input.iter().rposition(|&b| b == b'\n')? + 1;
        let lines: Vec<u8> = self.input.drain(..end).collect();
        self.job_running = true;
        let cfg = self.cfg.clone();
        Some(Box::new(move || {
            let running = cfg.jobs_running.fetch_add(1, Ordering::SeqCst) + 1;
            cfg.most_jobs_running.fetch_max(running, Ordering::SeqCst);
            thread::sleep(cfg.job_sleep);
            cfg.jobs_running.fetch_sub(1, Ordering::SeqCst);
            if lines.windows(5).any(|w| w == b"PANIC") {
                panic!("job panics on a worker");
            }
            Box::new(lines.to_ascii_uppercase()) as JobOutput
        }))
    }

    fn job_done(&mut self, now: Instant, output: JobOutput) {
        assert!(self.job_running, "job_done without a job");
        self.job_running = false;
        let bytes = output.downcast::<Vec<u8>>().expect("job output type");
        self.output.extend_from_slice(&bytes);
        if bytes.windows(5).any(|w| w == b"QUIT\n") {
            self.closing = true;
        }
        for line in bytes.split(|&b| b == b'\n') {
            let mut words = line.split(|&b| b == b' ');
            if words.next() == Some(b"FLOOD") {
                let n = words
                    .next()
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
                self.flood_left += n.expect("flood <octets>");
            }
        }
        self.deadline = now + self.cfg.idle;
        self.advance();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (!self.closing).then_some(self.deadline)
    }

    fn handle_timeout(&mut self, now: Instant) {
        assert!(now >= self.deadline, "timeout before the deadline");
        if !self.closing {
            self.output.extend_from_slice(b"timeout\r\n");
            self.closing = true;
        }
    }

    fn wants_read(&self) -> bool {
        !self.closing && !self.eof && self.input.len() < IN_LIMIT && self.unsent() < OUT_LIMIT
    }

    fn peer_closed(&mut self, _now: Instant) {
        self.eof = true;
    }

    fn shutdown(&mut self, _now: Instant) {
        if !self.cfg.stubborn {
            self.bye_pending = true;
            self.advance();
        }
    }

    fn is_closed(&self) -> bool {
        let done = self.closing || (self.eof && !self.has_line());
        done && !self.job_running && self.unsent() == 0
    }
}

struct Server<R> {
    addr: SocketAddr,
    cfg: Arc<Config>,
    runtime: R,
}

fn start<R: TestRuntime>(idle: Duration, stubborn: bool, opts: RuntimeOptions) -> Server<R> {
    start_with(idle, stubborn, Duration::ZERO, opts)
}

fn start_with<R: TestRuntime>(
    idle: Duration,
    stubborn: bool,
    job_sleep: Duration,
    opts: RuntimeOptions,
) -> Server<R> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = Arc::new(Config {
        idle,
        stubborn,
        live: AtomicUsize::new(0),
        accepted: AtomicUsize::new(0),
        job_sleep,
        jobs_running: AtomicUsize::new(0),
        most_jobs_running: AtomicUsize::new(0),
    });
    let runtime = R::start(listener, Arc::new(Factory(cfg.clone())), opts).unwrap();
    Server { addr, cfg, runtime }
}

fn opts(event_loops: usize) -> RuntimeOptions {
    RuntimeOptions {
        event_loops,
        workers: 4,
        shutdown_grace: Duration::from_secs(5),
        ..RuntimeOptions::default()
    }
}

/// The write timeout of the write-stall tests.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

fn stall_opts() -> RuntimeOptions {
    RuntimeOptions {
        write_timeout: WRITE_TIMEOUT,
        ..opts(1)
    }
}

fn start_default<R: TestRuntime>() -> Server<R> {
    start(Duration::from_secs(30), false, opts(2))
}

struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let mut client = Client {
            reader: BufReader::new(stream),
        };
        assert_eq!(client.line(), "hi\r\n");
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// Reads what is left until EOF (a reset also counts as the end).
    fn rest(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("reading to EOF: {e}"),
        }
        rest
    }
}

/// Runs `Runtime::wait` with a bound on how long it may take.
fn wait_within<R: TestRuntime>(runtime: R, limit: Duration) -> Duration {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(runtime.wait()).unwrap());
    rx.recv_timeout(limit)
        .expect("Runtime::wait did not return in time")
        .unwrap();
    started.elapsed()
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

pub fn round_trip_with_pipelining<R: TestRuntime>() {
    let server = start_default::<R>();
    let mut c = Client::connect(server.addr);
    c.send(b"hello\r\n");
    assert_eq!(c.line(), "HELLO\r\n");
    c.send(b"one\r\ntwo\r\nthr");
    assert_eq!(c.line(), "ONE\r\n");
    assert_eq!(c.line(), "TWO\r\n");
    c.send(b"ee\r\n");
    assert_eq!(c.line(), "THREE\r\n");
    drop(c);
    wait_within_drop(server);
}

/// Shuts the server down (clients are gone) and checks it stops promptly.
fn wait_within_drop<R: TestRuntime>(server: Server<R>) {
    R::shutdown(&server.runtime.handle());
    wait_within(server.runtime, Duration::from_secs(10));
}

pub fn many_concurrent_clients<R: TestRuntime>() {
    let server = start_default::<R>();
    let addr = server.addr;
    let clients: Vec<_> = (0..50)
        .map(|n| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..20 {
                    c.send(format!("client {n} line {i}\n").as_bytes());
                    assert_eq!(c.line(), format!("CLIENT {n} LINE {i}\n"));
                }
                c.reader.get_ref().shutdown(Shutdown::Write).unwrap();
                assert!(c.rest().is_empty());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(server.cfg.accepted.load(Ordering::SeqCst), 50);
    let cfg = server.cfg.clone();
    eventually("all handlers dropped", || {
        cfg.live.load(Ordering::SeqCst) == 0
    });
    wait_within_drop(server);
}

pub fn jobs_run_on_the_pool_within_the_worker_limit<R: TestRuntime>() {
    let server = start_with::<R>(
        Duration::from_secs(30),
        false,
        Duration::from_millis(20),
        RuntimeOptions {
            event_loops: 2,
            workers: 2,
            shutdown_grace: Duration::from_secs(5),
            ..RuntimeOptions::default()
        },
    );
    let addr = server.addr;
    let clients: Vec<_> = (0..12)
        .map(|n| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..5 {
                    c.send(format!("job {n}.{i}\n").as_bytes());
                    assert_eq!(c.line(), format!("JOB {n}.{i}\n"));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let most = server.cfg.most_jobs_running.load(Ordering::SeqCst);
    assert!(most <= 2, "{most} jobs ran at once with 2 workers");
    assert_eq!(most, 2, "jobs of different connections never overlapped");
    wait_within_drop(server);
}

/// Deterministic lines of 1..200 lower-case letters.
fn payload(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 256);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    while out.len() < len {
        let n = 1 + (next() % 200) as usize;
        for _ in 0..n {
            out.push(b'a' + (next() % 26) as u8);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub fn large_payload_through_back_pressure_is_byte_exact<R: TestRuntime>() {
    let server = start::<R>(Duration::from_secs(30), false, opts(1));
    let data = payload(4 * 1024 * 1024);
    let expected = data.to_ascii_uppercase();
    let mut c = Client::connect(server.addr);
    let mut writer = c.reader.get_ref().try_clone().unwrap();
    let sender = thread::spawn(move || {
        // Uneven writes, so lines arrive split across reads.
        for piece in data.chunks(7919) {
            writer.write_all(piece).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = c.rest();
    sender.join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "echoed bytes differ");
    drop(c);
    wait_within_drop(server);
}

pub fn slow_reader_gets_everything<R: TestRuntime>() {
    // The client reads nothing until it has sent everything: output backs up in the
    // handler and the socket, the handler refuses input, and the client's writes stall
    // until it starts reading.
    let server = start::<R>(Duration::from_secs(30), false, opts(1));
    let data = payload(2 * 1024 * 1024);
    let expected = data.to_ascii_uppercase();
    let mut c = Client::connect(server.addr);
    let mut writer = c.reader.get_ref().try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    thread::sleep(Duration::from_millis(300));
    let got = c.rest();
    sender.join().unwrap();
    assert!(got == expected, "echoed bytes differ");
    drop(c);
    wait_within_drop(server);
}

pub fn idle_connection_times_out<R: TestRuntime>() {
    let server = start::<R>(Duration::from_millis(200), false, opts(2));
    let started = Instant::now();
    let mut c = Client::connect(server.addr);
    c.send(b"ping\n");
    assert_eq!(c.line(), "PING\n");
    assert_eq!(c.line(), "timeout\r\n");
    assert!(c.rest().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(190));
    // The handler is released at once, though the socket lingers until the client closes.
    let cfg = server.cfg.clone();
    eventually("the handler dropped", || {
        cfg.live.load(Ordering::SeqCst) == 0
    });
    drop(c);
    wait_within_drop(server);
}

pub fn peer_close_drops_the_connection<R: TestRuntime>() {
    let server = start_default::<R>();
    let clients: Vec<_> = (0..5).map(|_| Client::connect(server.addr)).collect();
    let cfg = server.cfg.clone();
    assert_eq!(cfg.live.load(Ordering::SeqCst), 5);
    drop(clients);
    eventually("handlers dropped after peer close", || {
        cfg.live.load(Ordering::SeqCst) == 0
    });

    // A half-close still gets the answer to what was sent before it.
    let mut c = Client::connect(server.addr);
    c.send(b"last words\n");
    c.reader.get_ref().shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.rest(), b"LAST WORDS\n");
    eventually("half-closed handler dropped", || {
        cfg.live.load(Ordering::SeqCst) == 0
    });
    wait_within_drop(server);
}

pub fn graceful_shutdown_says_bye<R: TestRuntime>() {
    let server = start_default::<R>();
    let mut clients: Vec<_> = (0..3).map(|_| Client::connect(server.addr)).collect();
    for (n, c) in clients.iter_mut().enumerate() {
        c.send(format!("before {n}\n").as_bytes());
        assert_eq!(c.line(), format!("BEFORE {n}\n"));
    }
    let handle = server.runtime.handle();
    assert!(!R::is_shutting_down(&handle));
    thread::spawn(move || R::shutdown(&handle));
    for c in &mut clients {
        assert_eq!(c.line(), "bye\r\n");
        assert!(c.rest().is_empty());
    }
    let addr = server.addr;
    let cfg = server.cfg.clone();
    drop(clients);
    let took = wait_within(server.runtime, Duration::from_secs(10));
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    assert_eq!(cfg.live.load(Ordering::SeqCst), 0);
    // The listener is closed.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}

pub fn shutdown_grace_drops_stubborn_connections<R: TestRuntime>() {
    let server = start::<R>(
        Duration::from_secs(30),
        true,
        RuntimeOptions {
            event_loops: 2,
            workers: 2,
            shutdown_grace: Duration::from_millis(300),
            ..RuntimeOptions::default()
        },
    );
    let mut c = Client::connect(server.addr);
    c.send(b"x\n");
    assert_eq!(c.line(), "X\n");
    let cfg = server.cfg.clone();
    R::shutdown(&server.runtime.handle());
    let took = wait_within(server.runtime, Duration::from_secs(10));
    assert!(
        took >= Duration::from_millis(250),
        "grace cut short: {took:?}"
    );
    assert!(c.rest().is_empty());
    assert_eq!(cfg.live.load(Ordering::SeqCst), 0);
}

pub fn panics_cost_only_their_own_connection<R: TestRuntime>() {
    // One event loop (or executor thread), shared by the survivors and the panicking
    // connections.
    let server = start::<R>(Duration::from_secs(30), false, opts(1));
    let mut survivor = Client::connect(server.addr);

    let mut in_job = Client::connect(server.addr);
    in_job.send(b"PANIC\n");
    assert!(in_job.rest().is_empty());

    let mut in_handler = Client::connect(server.addr);
    in_handler.send(b"BOOM\n");
    assert!(in_handler.rest().is_empty());

    survivor.send(b"still here\n");
    assert_eq!(survivor.line(), "STILL HERE\n");
    drop((survivor, in_job, in_handler));
    let cfg = server.cfg.clone();
    eventually("handlers dropped", || cfg.live.load(Ordering::SeqCst) == 0);
    wait_within_drop(server);
}

pub fn dropping_the_runtime_shuts_it_down<R: TestRuntime>() {
    let server = start_default::<R>();
    let mut c = Client::connect(server.addr);
    let cfg = server.cfg.clone();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        drop(server.runtime);
        tx.send(()).unwrap();
    });
    assert_eq!(c.line(), "bye\r\n");
    assert!(c.rest().is_empty());
    drop(c);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("drop did not return");
    assert_eq!(cfg.live.load(Ordering::SeqCst), 0);
}

pub fn close_with_unread_input_still_delivers_the_last_reply<R: TestRuntime>() {
    let server = start_default::<R>();
    let mut c = Client::connect(server.addr);
    let mut writer = c.reader.get_ref().try_clone().unwrap();
    let sender = thread::spawn(move || {
        // More input after "quit" than the handler will ever read; the server's close must
        // not turn into a reset that destroys the reply. Errors are expected once it closes.
        let mut junk = b"quit\n".to_vec();
        junk.extend(std::iter::repeat_n(b"junk junk junk\n".as_slice(), 8000).flatten());
        let _ = writer.write_all(&junk);
    });
    let mut rest = Vec::new();
    c.reader
        .read_to_end(&mut rest)
        .expect("the close reset the connection");
    assert!(rest.starts_with(b"QUIT\n"));
    sender.join().unwrap();
    let cfg = server.cfg.clone();
    drop(c);
    eventually("handler dropped", || cfg.live.load(Ordering::SeqCst) == 0);
    wait_within_drop(server);
}

/// Reads until EOF or a reset, at most `limit` octets; returns how many came.
fn drain(reader: &mut impl Read, limit: usize) -> usize {
    let mut buf = vec![0; 256 * 1024];
    let mut total = 0;
    while total <= limit {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading to EOF: {e}"),
        }
    }
    total
}

/// Sends `command`, which makes the handler write `flood` octets, then reads nothing: the
/// connection must be dropped after the write timeout, not before and not much after, and
/// the client then finds the end of the stream short of `flood`.
fn flood_unread<R: TestRuntime>(command: &str, flood: usize) -> (Server<R>, Client) {
    let server = start::<R>(Duration::from_secs(30), false, stall_opts());
    let mut c = Client::connect(server.addr);
    let started = Instant::now();
    c.send(command.as_bytes());
    let cfg = server.cfg.clone();
    eventually("the stalled connection dropped", || {
        cfg.live.load(Ordering::SeqCst) == 0
    });
    let took = started.elapsed();
    assert!(took >= WRITE_TIMEOUT, "dropped after {took:?}");
    assert!(took < WRITE_TIMEOUT * 4, "dropped only after {took:?}");
    let got = drain(&mut c.reader, flood);
    assert!(got < flood, "all {got} octets arrived: nothing stalled");
    (server, c)
}

/// A client asks for far more output than the socket buffers hold and never reads: the
/// handler, stuck at its output limit, is dropped once nothing could be written for the
/// write timeout, and the client then finds the end of the stream after what was buffered.
pub fn write_stall_drops_a_client_that_stopped_reading<R: TestRuntime>() {
    let (server, c) = flood_unread::<R>("flood 268435456\n", 256 * 1024 * 1024);

    // The server serves others as before.
    let mut other = Client::connect(server.addr);
    other.send(b"still here\n");
    assert_eq!(other.line(), "STILL HERE\n");
    drop((c, other));
    wait_within_drop(server);
}

/// The handler closes with its last words (more than the socket buffers hold) handed to the
/// runtime, and the client never reads them: the runtime gives up on writing them after the
/// write timeout instead of waiting for them to drain forever.
pub fn write_stall_drops_a_closed_handler_whose_last_words_cannot_be_written<R: TestRuntime>() {
    let (server, c) = flood_unread::<R>("flood 67108864 quit\n", 64 * 1024 * 1024);
    drop(c);
    wait_within_drop(server);
}

/// A client that reads a little every 200 ms, for well over the write timeout, keeps its
/// connection: every octet written starts the clock over. It then reads the rest and goes on.
pub fn slow_but_steady_reader_is_not_cut_off<R: TestRuntime>() {
    slow_reader::<R>(false);
}

/// As [`slow_but_steady_reader_is_not_cut_off`], with the handler closed and all of its
/// output in the runtime's hands, so that the output pending never runs out while the
/// client reads: only progress keeps the clock from running out.
pub fn slow_reader_of_last_words_is_not_cut_off<R: TestRuntime>() {
    slow_reader::<R>(true);
}

fn slow_reader<R: TestRuntime>(quit: bool) {
    const FLOOD: usize = 8 * 1024 * 1024;
    const SIP: usize = 128 * 1024;
    let server = start::<R>(Duration::from_secs(30), false, stall_opts());
    let mut c = Client::connect(server.addr);
    let quit = if quit { " quit" } else { "" };
    c.send(format!("flood {FLOOD}{quit}\n").as_bytes());
    assert_eq!(c.line(), format!("FLOOD {FLOOD}{}\n", quit.to_uppercase()));
    let mut buf = vec![0; SIP];
    let mut got = 0;
    let started = Instant::now();
    while started.elapsed() < WRITE_TIMEOUT * 5 / 2 {
        thread::sleep(Duration::from_millis(200));
        let mut sip = 0;
        while sip < SIP {
            let n = c.reader.read(&mut buf[..SIP - sip]).unwrap();
            assert!(
                n > 0,
                "the server closed on a slow reader after {got} octets"
            );
            assert!(buf[..n].iter().all(|&b| b == b'x'));
            sip += n;
        }
        got += sip;
    }
    assert!(got < FLOOD / 2, "read {got} octets: not slow");
    if quit.is_empty() {
        assert_eq!(server.cfg.live.load(Ordering::SeqCst), 1);
    }
    while got < FLOOD {
        let want = (FLOOD - got).min(buf.len());
        let n = c.reader.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "the server closed after {got} octets");
        assert!(buf[..n].iter().all(|&b| b == b'x'));
        got += n;
    }
    if quit.is_empty() {
        c.send(b"ping\n");
        assert_eq!(c.line(), "PING\n");
    } else {
        assert!(c.rest().is_empty());
    }
    drop(c);
    let cfg = server.cfg.clone();
    eventually("handler dropped", || cfg.live.load(Ordering::SeqCst) == 0);
    wait_within_drop(server);
}
