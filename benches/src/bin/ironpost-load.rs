//! ironpost-load: end-to-end SMTP load over loopback, against ironpost or any other server.
//!
//! Send mode (default): N concurrent sessions (blocking threads), each sending messages of a
//! given size (M per connection, then QUIT and reconnect), bounded by a message count and/or
//! a duration. Reports messages/s and the latency of each message, from MAIL FROM to the
//! 250 after its data, as p50/p99/p999. With `--wait-maildir`, then waits (bounded) until the
//! messages are in the Maildir's new/ and reports durable messages/s.
//!
//! Idle mode (`--idle K`): opens K connections, EHLO on each, holds them, and reports the
//! server's memory before and after (VmRSS and Pss of `--pid`, with `--with-children` its
//! whole process tree) divided by K: memory per idle connection.
//!
//! Everything is bounded by time: socket timeouts, `--duration`, `--wait-timeout`.
//! The last line of output is machine-readable: `RESULT key=value ...`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use ironpost_benches::mem::{raise_fd_limit, tree_memory};
use ironpost_benches::net;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ironpost-load",
    about = "End-to-end SMTP load generator (loopback)"
)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:25")]
    server: String,
    /// Concurrent sessions.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Messages to send in all (0: no count bound; then --duration must be set).
    #[arg(long, short = 'n', default_value_t = 100)]
    messages: u64,
    /// Stop starting new messages after this many seconds (0: no time bound).
    #[arg(long, short = 'd', default_value_t = 0.0)]
    duration: f64,
    /// Message size in octets (headers included).
    #[arg(long, short = 's', default_value_t = 1024)]
    size: usize,
    /// Messages per connection before QUIT and reconnect.
    #[arg(long, default_value_t = 1)]
    per_connection: u64,
    #[arg(long, default_value = "load@client.example.org")]
    from: String,
    #[arg(long, default_value = "alice@example.test")]
    to: String,
    #[arg(long, default_value = "client.example.org")]
    ehlo: String,
    /// Upgrade with STARTTLS after EHLO.
    #[arg(long)]
    starttls: bool,
    /// AUTH PLAIN as `user:password` (after STARTTLS).
    #[arg(long)]
    auth: Option<String>,
    /// Accept any server certificate (self-signed test servers).
    #[arg(long)]
    insecure: bool,
    /// PEM file of the CA to trust (a self-signed certificate that is itself marked as a CA
    /// is refused as a server certificate by rustls: use --insecure for those).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Server name for TLS.
    #[arg(long, default_value = "localhost")]
    sni: String,
    /// Spread client connections over this many source addresses 127.0.0.1, .2, ...
    /// (servers limit connections per client address).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Socket read/write timeout, seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// After sending, wait until the messages are in this Maildir's new/.
    #[arg(long)]
    wait_maildir: Option<PathBuf>,
    /// Messages to wait for in --wait-maildir (default: as many as were accepted).
    #[arg(long)]
    expect: Option<u64>,
    /// Longest wait for --wait-maildir, seconds.
    #[arg(long, default_value_t = 120.0)]
    wait_timeout: f64,
    /// Idle mode: hold this many connections open after EHLO.
    #[arg(long)]
    idle: Option<usize>,
    /// Idle mode: seconds to hold the connections once all are open.
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// Server process whose memory idle mode reports.
    #[arg(long)]
    pid: Option<u32>,
    /// Count the server's child processes too (one process per connection servers).
    #[arg(long)]
    with_children: bool,
}

// ---------------------------------------------------------------------------------------
// Connections

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

struct Client {
    stream: Option<Stream>,
    buf: Vec<u8>,
    pos: usize,
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

impl Client {
    fn connect(addr: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> io::Result<Self> {
        let tcp = net::connect(addr, source, timeout)?;
        Ok(Client {
            stream: Some(Stream::Plain(tcp)),
            buf: Vec::with_capacity(4096),
            pos: 0,
        })
    }

    fn stream(&mut self) -> &mut Stream {
        self.stream.as_mut().expect("stream present")
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let s = self.stream();
        s.write_all(data)?;
        s.flush()
    }

    /// Reads one whole reply; returns its code and its last line.
    fn reply(&mut self) -> io::Result<(u16, String)> {
        loop {
            // Complete lines in the buffer?
            while let Some(nl) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[self.pos..self.pos + nl + 1];
                self.pos += nl + 1;
                if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) {
                    return Err(err(format!(
                        "malformed reply line {:?}",
                        String::from_utf8_lossy(line)
                    )));
                }
                if line[3] != b'-' {
                    let code = std::str::from_utf8(&line[..3]).unwrap().parse().unwrap();
                    let text = String::from_utf8_lossy(line).trim_end().to_string();
                    if self.pos == self.buf.len() {
                        self.buf.clear();
                        self.pos = 0;
                    }
                    return Ok((code, text));
                }
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream().read(&mut chunk)?;
            if n == 0 {
                return Err(err("connection closed by server"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn expect(&mut self, want: u16) -> io::Result<String> {
        let (code, text) = self.reply()?;
        if code != want {
            return Err(err(format!("expected {want}, got: {text}")));
        }
        Ok(text)
    }

    fn command(&mut self, line: &str, want: u16) -> io::Result<String> {
        self.send(line.as_bytes())?;
        self.expect(want)
    }

    fn starttls(&mut self, tls: &Arc<ClientConfig>, sni: &str) -> io::Result<()> {
        self.command("STARTTLS\r\n", 220)?;
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(err("STARTTLS twice"));
        };
        let name = ServerName::try_from(sni.to_string()).map_err(|e| err(e.to_string()))?;
        let conn = ClientConnection::new(tls.clone(), name).map_err(|e| err(e.to_string()))?;
        self.stream = Some(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))));
        self.buf.clear();
        self.pos = 0;
        Ok(())
    }
}

/// Greeting, EHLO, optional STARTTLS (and EHLO again) and AUTH PLAIN.
fn open_session(
    a: &Args,
    addr: SocketAddr,
    source: Option<IpAddr>,
    tls: &Option<Arc<ClientConfig>>,
) -> io::Result<Client> {
    let timeout = Duration::from_secs_f64(a.timeout);
    let mut c = Client::connect(addr, source, timeout)?;
    c.expect(220)?;
    let ehlo = format!("EHLO {}\r\n", a.ehlo);
    c.command(&ehlo, 250)?;
    if let Some(tls) = tls {
        c.starttls(tls, &a.sni)?;
        c.command(&ehlo, 250)?;
    }
    if let Some(auth) = &a.auth {
        let (user, pass) = auth
            .split_once(':')
            .ok_or_else(|| err("--auth wants user:password"))?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        c.command(&format!("AUTH PLAIN {token}\r\n"), 235)?;
    }
    Ok(c)
}

/// A message of about `size` octets in wire form, dot-stuffed, with the final `.CRLF`.
fn message(a: &Args) -> Vec<u8> {
    let mut m = format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: ironpost-load\r\nMessage-ID: <load@client.example.org>\r\n\r\n",
        a.from, a.to
    )
    .into_bytes();
    let line =
        b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n";
    while m.len() + line.len() <= a.size {
        m.extend_from_slice(line);
    }
    while m.len() + 2 < a.size {
        m.push(b'x');
    }
    if !m.ends_with(b"\r\n") {
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}

// ---------------------------------------------------------------------------------------
// TLS

fn tls_config(a: &Args) -> Result<Option<Arc<ClientConfig>>, String> {
    if !a.starttls {
        return Ok(None);
    }
    if a.insecure {
        return ironpost_benches::tls::no_verify_config().map(Some);
    }
    let mut roots = rustls::RootCertStore::empty();
    let path =
        a.ca.as_ref()
            .ok_or("--starttls needs --ca FILE or --insecure")?;
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

// ---------------------------------------------------------------------------------------
// Send mode

#[derive(Default)]
struct Totals {
    latencies_us: Vec<u32>,
    errors: u64,
    first_errors: Vec<String>,
}

fn source_for(a: &Args, i: usize) -> Option<IpAddr> {
    net::source_for(u32::from(a.sources), i)
}

struct Shared {
    args: Args,
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    message: Vec<u8>,
    /// Messages claimed so far (a sender claims one before starting it).
    claimed: AtomicU64,
    accepted: AtomicU64,
    deadline: Option<Instant>,
    stop: AtomicBool,
    totals: Mutex<Totals>,
    last_accept: Mutex<Option<Instant>>,
}

impl Shared {
    fn claim(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        let n = self.args.messages;
        n == 0 || self.claimed.fetch_add(1, Ordering::Relaxed) < n
    }
}

fn send_one(c: &mut Client, sh: &Shared) -> io::Result<Duration> {
    let a = &sh.args;
    let t0 = Instant::now();
    c.command(&format!("MAIL FROM:<{}>\r\n", a.from), 250)?;
    c.command(&format!("RCPT TO:<{}>\r\n", a.to), 250)?;
    c.command("DATA\r\n", 354)?;
    c.send(&sh.message)?;
    c.expect(250)?;
    Ok(t0.elapsed())
}

fn sender(sh: Arc<Shared>, index: usize) {
    let a = &sh.args;
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    'outer: while sh.claim() {
        let mut c = match open_session(a, sh.addr, source_for(a, index), &sh.tls) {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("connect/greet: {e}"));
                // The claimed message was not sent: give it back.
                sh.claimed.fetch_sub(1, Ordering::Relaxed);
                if errors.len() > 100 {
                    sh.stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let mut sent = 0;
        loop {
            match send_one(&mut c, &sh) {
                Ok(d) => {
                    lat.push(d.as_micros().min(u32::MAX as u128) as u32);
                    sh.accepted.fetch_add(1, Ordering::Relaxed);
                    *sh.last_accept.lock().unwrap() = Some(Instant::now());
                }
                Err(e) => {
                    errors.push(format!("message: {e}"));
                    continue 'outer;
                }
            }
            sent += 1;
            if sent >= a.per_connection || !sh.claim() {
                break;
            }
        }
        let _ = c.command("QUIT\r\n", 221);
        if sent < a.per_connection {
            break;
        }
    }
    let mut t = sh.totals.lock().unwrap();
    t.latencies_us.extend(lat);
    t.errors += errors.len() as u64;
    for e in errors {
        if t.first_errors.len() < 5 {
            t.first_errors.push(e);
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn count_dir(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| d.filter(|e| e.is_ok()).count() as u64)
}

fn send_mode(a: Args, addr: SocketAddr) -> Result<(), String> {
    if a.messages == 0 && a.duration <= 0.0 {
        return Err("need --messages or --duration".into());
    }
    let tls = tls_config(&a)?;
    let new_dir = a.wait_maildir.as_ref().map(|d| d.join("new"));
    let before = new_dir.as_deref().map_or(0, count_dir);
    let start = Instant::now();
    let sh = Arc::new(Shared {
        message: message(&a),
        deadline: (a.duration > 0.0).then(|| start + Duration::from_secs_f64(a.duration)),
        args: a.clone(),
        addr,
        tls,
        claimed: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        totals: Mutex::new(Totals::default()),
        last_accept: Mutex::new(None),
    });
    let threads: Vec<_> = (0..a.concurrency.max(1))
        .map(|i| {
            let sh = sh.clone();
            std::thread::spawn(move || sender(sh, i))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let accepted = sh.accepted.load(Ordering::Relaxed);
    let end = sh.last_accept.lock().unwrap().unwrap_or(start);
    let secs = end.duration_since(start).as_secs_f64().max(1e-9);
    let mut totals = std::mem::take(&mut *sh.totals.lock().unwrap());
    totals.latencies_us.sort_unstable();
    let l = &totals.latencies_us;
    let (p50, p99, p999) = (
        percentile(l, 50.0),
        percentile(l, 99.0),
        percentile(l, 99.9),
    );
    println!(
        "sent {accepted} messages of {} octets over {} sessions in {secs:.3} s: {:.1} msg/s; \
         latency p50 {p50:.2} ms, p99 {p99:.2} ms, p999 {p999:.2} ms; {} errors",
        a.size,
        a.concurrency,
        accepted as f64 / secs,
        totals.errors
    );
    for e in &totals.first_errors {
        println!("  error: {e}");
    }
    if accepted == 0 && totals.errors > 0 {
        println!("RESULT status=error accepted=0 errors={}", totals.errors);
        return Err("no message was accepted".into());
    }
    let mut durable = String::new();
    if let Some(dir) = &new_dir {
        let want = a.expect.unwrap_or(accepted);
        let limit = Instant::now() + Duration::from_secs_f64(a.wait_timeout);
        let mut n = count_dir(dir).saturating_sub(before);
        while n < want && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(20));
            n = count_dir(dir).saturating_sub(before);
        }
        let dsecs = start.elapsed().as_secs_f64();
        println!(
            "{n} of {want} messages in {} after {dsecs:.3} s: {:.1} durable msg/s",
            dir.display(),
            n as f64 / dsecs
        );
        durable = format!(
            " in_maildir={n} durable_seconds={dsecs:.3} durable_per_s={:.1}",
            n as f64 / dsecs
        );
        if n < want {
            println!("RESULT status=timeout accepted={accepted}{durable}");
            return Err(format!(
                "only {n} of {want} messages reached {}",
                dir.display()
            ));
        }
    }
    println!(
        "RESULT status=ok accepted={accepted} errors={} seconds={secs:.3} per_s={:.1} \
         p50_ms={p50:.3} p99_ms={p99:.3} p999_ms={p999:.3}{durable}",
        totals.errors,
        accepted as f64 / secs
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Idle mode

fn idle_mode(a: Args, addr: SocketAddr, k: usize) -> Result<(), String> {
    raise_fd_limit();
    let tls = tls_config(&a)?;
    let pid = a.pid;
    let mem = |when: &str| {
        pid.map(|p| {
            let (rss, pss, n) = tree_memory(p, a.with_children);
            println!("server memory {when}: VmRSS {rss} KiB, Pss {pss} KiB ({n} processes)");
            (rss, pss)
        })
    };
    let before = mem("before");
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.timeout.max(1.0) * 4.0);
    let mut conns = Vec::with_capacity(k);
    let mut failures = 0;
    let mut first_error = None;
    for i in 0..k {
        if Instant::now() >= deadline {
            break;
        }
        match open_session(&a, addr, source_for(&a, i), &tls) {
            Ok(c) => conns.push(c),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let open = conns.len();
    println!(
        "{open} of {k} connections open after EHLO in {:.2} s ({failures} failed{})",
        start.elapsed().as_secs_f64(),
        first_error
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    );
    // Let the server settle (lazily freed buffers, worker threads) before measuring.
    std::thread::sleep(Duration::from_secs_f64(a.hold.max(0.5)));
    let after = mem("with connections open");
    let mut result = format!("RESULT status=ok open={open} failed={failures}");
    if let (Some((r0, p0)), Some((r1, p1))) = (before, after) {
        let n = open.max(1) as f64;
        let rss_per = (r1 as f64 - r0 as f64) / n;
        let pss_per = (p1 as f64 - p0 as f64) / n;
        println!("per idle connection: VmRSS {rss_per:.1} KiB, Pss {pss_per:.1} KiB");
        result += &format!(
            " rss_before_kib={r0} rss_after_kib={r1} pss_before_kib={p0} pss_after_kib={p1} \
             rss_per_conn_kib={rss_per:.2} pss_per_conn_kib={pss_per:.2}"
        );
    }
    for mut c in conns {
        let _ = c.send(b"QUIT\r\n");
    }
    println!("{result}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let addr = match a.server.to_socket_addrs().map(|mut i| i.next()) {
        Ok(Some(addr)) => addr,
        _ => {
            eprintln!("ironpost-load: cannot resolve {}", a.server);
            return std::process::ExitCode::from(2);
        }
    };
    let r = match a.idle {
        Some(k) => idle_mode(a, addr, k),
        None => send_mode(a, addr),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironpost-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
