//! ironpost-imap-bench: IMAP latency over loopback, against ironpost or any other server.
//!
//! `populate --dir MAILDIR --count N --size S`: writes N messages of about S octets (CRLF,
//! named `<time>.M<i>P1.bench,S=<size>,W=<size>`) into `MAILDIR/new/`, the same bytes and
//! names every time, so two servers can be given identical mailboxes.
//!
//! `run --target NAME=ADDR,USER,PASSWORD ...`: IMAP over implicit TLS (certificates not
//! checked: loopback test servers) to every target, LOGIN, then per round and target, on one
//! connection: SELECT INBOX, `FETCH 1:* (UID FLAGS RFC822.SIZE)`, `FETCH 1:100 BODY.PEEK[]`
//! and `UID SEARCH SUBJECT`; each timed from sending the command to its tagged OK. Before the
//! rounds, one warm-up round per target (not counted; the first SELECT, which builds the
//! server's index from the files, is reported on its own). The order of the targets rotates
//! every round. Prints the medians, and ratios of the first target to the second, as a
//! Markdown table; the last lines are `RESULT target=... op=... median_ms=...`.
//!
//! `idle --target NAME=ADDR,USER,PASSWORD --conns K [--pid PID [--with-children]]
//! [--sources S]`: opens K connections (implicit TLS), each LOGIN, SELECT INBOX and IDLE, as
//! a mail client left open does; with `--pid`, the server's memory (VmRSS and Pss, of the
//! process or its whole tree) before and with the connections open, and per connection.
//! `--sources` spreads the connections over 127.0.0.1..S, since servers limit connections
//! per user and client address (Dovecot: 10).
//!
//! Everything is bounded: socket timeouts, and a fixed number of rounds or connections.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use ironpost_benches::mem::{raise_fd_limit, tree_memory};
use ironpost_benches::net;

#[derive(Parser, Debug)]
#[command(
    name = "ironpost-imap-bench",
    about = "IMAP latency benchmark (loopback, implicit TLS)"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write identical test messages into a Maildir's new/.
    Populate {
        /// The Maildir (new/, cur/ and tmp/ are created if missing).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Approximate size of each message in octets.
        #[arg(long, default_value_t = 2048)]
        size: usize,
    },
    /// Measure SELECT, FETCH and SEARCH on every target.
    Run {
        /// `NAME=HOST:PORT,USER,PASSWORD`; implicit TLS. Give two for a ratio.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// Counted rounds (the medians are over these).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Messages the mailbox must hold (checked against EXISTS); 0: no check.
        #[arg(long, default_value_t = 10_000)]
        expect: u64,
        /// Messages whose bodies are fetched (`FETCH 1:N BODY.PEEK[]`).
        #[arg(long, default_value_t = 100)]
        bodies: u64,
        /// Socket read/write timeout, seconds.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Hold connections in IDLE and report the server's memory per connection.
    Idle {
        /// `NAME=HOST:PORT,USER,PASSWORD`; implicit TLS.
        #[arg(long)]
        target: String,
        /// Connections to open.
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// The server's process, to read its memory.
        #[arg(long)]
        pid: Option<u32>,
        /// Count the process's descendants too (Dovecot's imap and imap-login processes).
        #[arg(long)]
        with_children: bool,
        /// Spread connections over this many source addresses (127.0.0.1..).
        #[arg(long, default_value_t = 1)]
        sources: u32,
        /// Seconds to let the server settle before measuring.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
        /// Socket timeout, seconds.
        #[arg(long, default_value_t = 20.0)]
        timeout: f64,
    },
}

// ---------------------------------------------------------------------------------------
// Populate

fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "Return-Path: <sender{i}@client.example.org>\r\n\
         From: Sender {i} <sender{i}@client.example.org>\r\n\
         To: Bob <bob@example.test>\r\n\
         Subject: bench message {i}\r\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <bench-{i}@client.example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n"
    )
    .into_bytes();
    let mut line = 0usize;
    while m.len() + 2 < size {
        let text =
            format!("line {line} of message {i}: the quick brown fox jumps over the lazy dog");
        let room = size - m.len() - 2;
        m.extend_from_slice(&text.as_bytes()[..text.len().min(room)]);
        m.extend_from_slice(b"\r\n");
        line += 1;
    }
    m
}

fn populate(dir: &std::path::Path, count: usize, size: usize) -> io::Result<()> {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    for i in 0..count {
        let m = message(i, size);
        let name = format!(
            "{}.M{}P1.bench,S={},W={}",
            1_795_000_000 + i,
            i,
            m.len(),
            m.len()
        );
        std::fs::write(dir.join("new").join(name), &m)?;
    }
    println!("populated {} with {count} messages", dir.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A minimal IMAP client: commands, and responses read to the tagged line (literals skipped)

struct Target {
    name: String,
    addr: String,
    user: String,
    pass: String,
}

fn parse_target(s: &str) -> Result<Target, String> {
    let (name, rest) = s.split_once('=').ok_or("target: NAME=ADDR,USER,PASSWORD")?;
    let mut parts = rest.splitn(3, ',');
    let (Some(addr), Some(user), Some(pass)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("target {s:?}: NAME=ADDR,USER,PASSWORD"));
    };
    Ok(Target {
        name: name.into(),
        addr: addr.into(),
        user: user.into(),
        pass: pass.into(),
    })
}

#[derive(Default, Debug)]
struct Reply {
    status: String,
    fetches: u64,
    exists: Option<u64>,
    search_hits: u64,
    octets: u64,
}

struct Client {
    r: BufReader<StreamOwned<ClientConnection, TcpStream>>,
    n: u64,
}

/// The length of the literal announced at the end of `line` (`{N}` or `{N+}` before CRLF).
fn literal_len(line: &[u8]) -> Option<u64> {
    let l = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&c| c == b'{')?;
    let digits = &l[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Client {
    fn connect(
        t: &Target,
        source: Option<IpAddr>,
        tls: &Arc<ClientConfig>,
        timeout: Duration,
    ) -> Result<Client, String> {
        let addr = t
            .addr
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", t.addr))?
            .next()
            .ok_or("no address")?;
        let tcp: TcpStream = net::connect(addr, source, timeout).map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(tls.clone(), ServerName::try_from("localhost").unwrap())
            .map_err(|e| e.to_string())?;
        let mut c = Client {
            r: BufReader::with_capacity(64 * 1024, StreamOwned::new(conn, tcp)),
            n: 0,
        };
        c.expect_line(b"* OK", "greeting")?;
        Ok(c)
    }

    /// Reads one line, which must start with `start`.
    fn expect_line(&mut self, start: &[u8], what: &str) -> Result<(), String> {
        let mut line = Vec::new();
        self.r
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{what}: {e}"))?;
        if !line.starts_with(start) {
            return Err(format!(
                "{what}: {}",
                String::from_utf8_lossy(&line).trim_end()
            ));
        }
        Ok(())
    }

    /// Sends `cmd` and reads to its tagged reply; the time is from the write to the tag.
    fn cmd(&mut self, cmd: &str) -> Result<(Reply, Duration), String> {
        self.n += 1;
        let tag = format!("b{}", self.n);
        let t0 = Instant::now();
        let s = self.r.get_mut();
        s.write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .and_then(|_| s.flush())
            .map_err(|e| format!("{cmd}: {e}"))?;
        let reply = self.read_reply(&tag).map_err(|e| format!("{cmd}: {e}"))?;
        let elapsed = t0.elapsed();
        if !reply.status.starts_with("OK") {
            return Err(format!("{cmd}: {}", reply.status));
        }
        Ok((reply, elapsed))
    }

    fn read_reply(&mut self, tag: &str) -> io::Result<Reply> {
        let mut reply = Reply::default();
        let mut first = Vec::with_capacity(256);
        let mut cont = Vec::with_capacity(256);
        loop {
            first.clear();
            if self.r.read_until(b'\n', &mut first)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            reply.octets += first.len() as u64;
            // Skip literals and the rest of the response after each.
            let mut last_len = literal_len(&first);
            while let Some(n) = last_len {
                let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())?;
                if copied != n {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "in literal"));
                }
                reply.octets += n;
                cont.clear();
                if self.r.read_until(b'\n', &mut cont)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "after literal",
                    ));
                }
                reply.octets += cont.len() as u64;
                last_len = literal_len(&cont);
            }
            let line = String::from_utf8_lossy(&first);
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                reply.status = rest.trim_end().to_string();
                return Ok(reply);
            }
            if let Some(rest) = line.strip_prefix("* ") {
                let mut words = rest.split_ascii_whitespace();
                let (a, b) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                if b.eq_ignore_ascii_case("FETCH") {
                    reply.fetches += 1;
                } else if b.eq_ignore_ascii_case("EXISTS") {
                    reply.exists = a.parse().ok();
                } else if a.eq_ignore_ascii_case("SEARCH") {
                    reply.search_hits = rest.split_ascii_whitespace().count() as u64 - 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Run

const OPS: [&str; 4] = ["select", "fetch_meta", "fetch_bodies", "search"];

fn op_title(op: &str, bodies: u64) -> String {
    match op {
        "select" => "SELECT INBOX (warm)".into(),
        "fetch_meta" => "FETCH 1:* (UID FLAGS RFC822.SIZE)".into(),
        "fetch_bodies" => format!("FETCH 1:{bodies} BODY.PEEK[]"),
        "search" => "UID SEARCH SUBJECT \"message 4242\"".into(),
        "first_select" => "first SELECT (index built from the files in new/)".into(),
        _ => op.into(),
    }
}

/// One round on one target: a connection, LOGIN, the four operations; times in ms.
fn round(
    t: &Target,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
    expect: u64,
    bodies: u64,
) -> Result<Vec<(&'static str, f64)>, String> {
    let mut c = Client::connect(t, None, tls, timeout)?;
    c.cmd(&format!("LOGIN \"{}\" \"{}\"", t.user, t.pass))?;
    let mut out = Vec::new();
    let (r, d) = c.cmd("SELECT INBOX")?;
    if expect > 0 && r.exists != Some(expect) {
        return Err(format!(
            "{}: SELECT says {:?} messages, expected {expect}",
            t.name, r.exists
        ));
    }
    out.push(("select", d.as_secs_f64() * 1e3));
    let (r, d) = c.cmd("FETCH 1:* (UID FLAGS RFC822.SIZE)")?;
    if expect > 0 && r.fetches != expect {
        return Err(format!(
            "{}: FETCH 1:* gave {} responses, expected {expect}",
            t.name, r.fetches
        ));
    }
    eprintln!("{}: FETCH 1:* {} octets", t.name, r.octets);
    out.push(("fetch_meta", d.as_secs_f64() * 1e3));
    let (r, d) = c.cmd(&format!("FETCH 1:{bodies} BODY.PEEK[]"))?;
    if r.fetches != bodies {
        return Err(format!(
            "{}: FETCH 1:{bodies} BODY.PEEK[] gave {} responses",
            t.name, r.fetches
        ));
    }
    eprintln!("{}: FETCH bodies {} octets", t.name, r.octets);
    out.push(("fetch_bodies", d.as_secs_f64() * 1e3));
    let (r, d) = c.cmd("UID SEARCH SUBJECT \"message 4242\"")?;
    if expect > 4242 && r.search_hits != 1 {
        return Err(format!(
            "{}: SEARCH found {} messages, expected 1",
            t.name, r.search_hits
        ));
    }
    out.push(("search", d.as_secs_f64() * 1e3));
    c.cmd("LOGOUT").ok();
    Ok(out)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run(
    targets: &[Target],
    rounds: usize,
    expect: u64,
    bodies: u64,
    timeout: Duration,
) -> Result<(), String> {
    let tls = ironpost_benches::tls::no_verify_config()?;
    // samples[target][op]
    let mut samples: Vec<std::collections::BTreeMap<&str, Vec<f64>>> =
        targets.iter().map(|_| Default::default()).collect();
    // Warm-up: the first SELECT builds each server's index from the files; then one
    // uncounted round, so caches are filled on every server alike.
    for (i, t) in targets.iter().enumerate() {
        let mut c = Client::connect(t, None, &tls, timeout)?;
        c.cmd(&format!("LOGIN \"{}\" \"{}\"", t.user, t.pass))?;
        let (r, d) = c.cmd("SELECT INBOX")?;
        eprintln!(
            "{}: first SELECT {:.1} ms ({:?} messages)",
            t.name,
            d.as_secs_f64() * 1e3,
            r.exists
        );
        samples[i]
            .entry("first_select")
            .or_default()
            .push(d.as_secs_f64() * 1e3);
        c.cmd("LOGOUT").ok();
        round(t, &tls, timeout, expect, bodies)?;
    }
    for k in 0..rounds {
        for j in 0..targets.len() {
            let i = (j + k) % targets.len();
            let t = &targets[i];
            for (op, ms) in round(t, &tls, timeout, expect, bodies)? {
                eprintln!("round {} {}: {op} {ms:.2} ms", k + 1, t.name);
                samples[i].entry(op).or_default().push(ms);
            }
        }
    }
    let mut med: Vec<std::collections::BTreeMap<&str, (f64, f64, f64)>> = Vec::new();
    for s in &mut samples {
        let mut m = std::collections::BTreeMap::new();
        for (op, v) in s.iter_mut() {
            let mid = median(v);
            let (lo, hi) = (v[0], v[v.len() - 1]);
            m.insert(*op, (mid, lo, hi));
        }
        med.push(m);
    }
    let mut head = vec!["operation".to_string()];
    for t in targets {
        head.push(format!("{} ms (min–max)", t.name));
    }
    if targets.len() >= 2 {
        head.push(format!(
            "{} / {} (time; < 1 is faster)",
            targets[0].name, targets[1].name
        ));
    }
    println!("| {} |", head.join(" | "));
    println!("|{}", "---|".repeat(head.len()));
    for op in OPS.iter().copied().chain(["first_select"]) {
        let mut cells = vec![op_title(op, bodies)];
        for m in &med {
            let (mid, lo, hi) = m.get(op).copied().unwrap_or((f64::NAN, 0.0, 0.0));
            cells.push(if op == "first_select" {
                format!("{mid:.1}")
            } else {
                format!("{mid:.2} ({lo:.2}–{hi:.2})")
            });
        }
        if med.len() >= 2 {
            let a = med[0].get(op).map_or(f64::NAN, |x| x.0);
            let b = med[1].get(op).map_or(f64::NAN, |x| x.0);
            let r = a / b;
            cells.push(if r < 0.1 {
                format!("{r:.4}x ({:.0}x faster)", 1.0 / r)
            } else if r < 1.0 {
                format!("{r:.2}x ({:.1}x faster)", 1.0 / r)
            } else {
                format!("{r:.2}x")
            });
        }
        println!("| {} |", cells.join(" | "));
    }
    for (t, m) in targets.iter().zip(&med) {
        for (op, (mid, lo, hi)) in m {
            println!(
                "RESULT target={} op={op} median_ms={mid:.3} min_ms={lo:.3} max_ms={hi:.3} rounds={}",
                t.name,
                if *op == "first_select" { 1 } else { rounds }
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Idle

struct IdleArgs {
    target: Target,
    conns: usize,
    pid: Option<u32>,
    with_children: bool,
    sources: u32,
    hold: Duration,
    timeout: Duration,
}

/// A connection logged in, with INBOX selected, in IDLE.
fn idle_session(
    t: &Target,
    source: Option<IpAddr>,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Client, String> {
    let mut c = Client::connect(t, source, tls, timeout)?;
    c.cmd(&format!("LOGIN \"{}\" \"{}\"", t.user, t.pass))?;
    c.cmd("SELECT INBOX")?;
    let s = c.r.get_mut();
    s.write_all(b"i IDLE\r\n")
        .and_then(|_| s.flush())
        .map_err(|e| format!("IDLE: {e}"))?;
    c.expect_line(b"+", "IDLE")?;
    Ok(c)
}

fn idle(a: IdleArgs) -> Result<(), String> {
    raise_fd_limit();
    let tls = ironpost_benches::tls::no_verify_config()?;
    let mem = |when: &str| {
        a.pid.map(|p| {
            let (rss, pss, n) = tree_memory(p, a.with_children);
            println!("server memory {when}: VmRSS {rss} KiB, Pss {pss} KiB ({n} processes)");
            (rss, pss)
        })
    };
    let before = mem("before");
    let start = Instant::now();
    // Logins hash a password each: open the connections from a few threads.
    const THREADS: usize = 8;
    let results: Vec<Result<Client, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|w| {
                let (a, tls) = (&a, &tls);
                scope.spawn(move || {
                    (w..a.conns)
                        .step_by(THREADS)
                        .map(|i| {
                            let source = net::source_for(a.sources, i);
                            idle_session(&a.target, source, tls, a.timeout)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let mut open = Vec::new();
    let (mut failed, mut first_error) = (0, None);
    for r in results {
        match r {
            Ok(c) => open.push(c),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    println!(
        "{}: {} of {} connections in IDLE after {:.2} s ({failed} failed{})",
        a.target.name,
        open.len(),
        a.conns,
        start.elapsed().as_secs_f64(),
        first_error
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    );
    // Let the server settle (lazily freed buffers, processes started) before measuring.
    std::thread::sleep(a.hold);
    let after = mem("with connections in IDLE");
    let mut result = format!(
        "RESULT target={} open={} failed={failed}",
        a.target.name,
        open.len()
    );
    if let (Some((r0, p0)), Some((r1, p1))) = (before, after) {
        let n = open.len().max(1) as f64;
        let rss_per = (r1 as f64 - r0 as f64) / n;
        let pss_per = (p1 as f64 - p0 as f64) / n;
        println!("per connection in IDLE: VmRSS {rss_per:.1} KiB, Pss {pss_per:.1} KiB");
        result += &format!(" rss_per_conn_kib={rss_per:.2} pss_per_conn_kib={pss_per:.2}");
    }
    for c in &mut open {
        let s = c.r.get_mut();
        let _ = s.write_all(b"DONE\r\nz LOGOUT\r\n").and_then(|_| s.flush());
    }
    println!("{result}");
    Ok(())
}

fn main() {
    let args = Args::parse();
    let res = match args.cmd {
        Cmd::Populate { dir, count, size } => {
            populate(&dir, count, size).map_err(|e| e.to_string())
        }
        Cmd::Run {
            targets,
            rounds,
            expect,
            bodies,
            timeout,
        } => targets
            .iter()
            .map(|s| parse_target(s))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|ts| {
                run(
                    &ts,
                    rounds.max(1),
                    expect,
                    bodies,
                    Duration::from_secs_f64(timeout),
                )
            }),
        Cmd::Idle {
            target,
            conns,
            pid,
            with_children,
            sources,
            hold,
            timeout,
        } => parse_target(&target).and_then(|target| {
            idle(IdleArgs {
                target,
                conns,
                pid,
                with_children,
                sources,
                hold: Duration::from_secs_f64(hold.max(0.5)),
                timeout: Duration::from_secs_f64(timeout),
            })
        }),
    };
    if let Err(e) = res {
        eprintln!("ironpost-imap-bench: {e}");
        std::process::exit(1);
    }
}
