//! SMTP server-side hot paths: command parsing, DATA dot-unstuffing and whole sessions,
//! with the published `smtp-proto` crate (Stalwart) measured side by side on the same input.
//!
//! `cargo bench -p ironpost-benches --bench smtp`
//!
//! Times are the CPU time of the benchmark's thread (`BENCH_WALL_TIME=1` for wall time), so
//! other load on a shared machine does not land on one side of a comparison.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::measurement::Measurement;
use criterion::{BatchSize, Criterion, Throughput};
use ironpost_benches::{data_body, COMMAND_LINES};
use ironpost_core::scan::find_lf;
use ironpost_core::smtp::data::{BareLineEndings, Decoded, DotDecoder};
use ironpost_core::smtp::{parse_command, Answer, Event, Session, SessionConfig};
use ironpost_core::tls::Protocol;

/// The command corpus repeated to a few thousand lines, in a fixed shuffled order, as one
/// stream: the way pipelined commands arrive in a session's input buffer.
fn corpus() -> (Vec<u8>, usize) {
    let mut stream = Vec::new();
    let mut x: u32 = 0x2545_f491;
    let lines = 4096;
    for _ in 0..lines {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        stream.extend_from_slice(COMMAND_LINES[x as usize % COMMAND_LINES.len()].as_bytes());
    }
    (stream, lines)
}

fn command_parsing<M: Measurement>(c: &mut Criterion<M>) {
    let (stream, lines) = corpus();
    let mut g = c.benchmark_group("smtp_command");
    g.throughput(Throughput::Elements(lines as u64));
    g.bench_function("ironpost", |b| {
        b.iter(|| {
            let stream = black_box(&stream[..]);
            let (mut ok, mut pos) = (0usize, 0);
            while pos < stream.len() {
                // What the session does per line: find the end, drop the CRLF, parse.
                let end = pos + find_lf(&stream[pos..]).unwrap();
                let line = &stream[pos..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let r = parse_command(line);
                ok += black_box(&r).is_ok() as usize;
                pos = end + 1;
            }
            assert_eq!(ok, lines);
        })
    });
    g.bench_function("smtp-proto", |b| {
        b.iter(|| {
            let mut it = black_box(&stream[..]).iter();
            let mut ok = 0usize;
            while !it.as_slice().is_empty() {
                // Parses one line and moves the iterator past its LF.
                let r = smtp_proto::Request::parse(&mut it);
                ok += black_box(&r).is_ok() as usize;
            }
            assert_eq!(ok, lines);
        })
    });
    g.finish();
}

fn dot_unstuffing<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("smtp_data");
    for (name, size) in [
        ("1KiB", 1024),
        ("100KiB", 100 * 1024),
        ("1MiB", 1024 * 1024),
    ] {
        let (wire, unstuffed) = data_body(size);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        let mut out = Vec::with_capacity(wire.len());
        g.bench_function(format!("ironpost/{name}"), |b| {
            b.iter(|| {
                out.clear();
                let mut d = DotDecoder::new(BareLineEndings::Reject);
                // In 16 KiB reads, as from a socket.
                let mut end = false;
                for chunk in wire.chunks(16 * 1024) {
                    let (_, r) = d.decode(black_box(chunk), &mut out);
                    end = r == Decoded::End;
                }
                assert!(end);
                assert_eq!(out.len(), unstuffed);
            })
        });
        g.bench_function(format!("smtp-proto/{name}"), |b| {
            b.iter(|| {
                out.clear();
                let mut d = smtp_proto::request::receiver::DataReceiver::new();
                let mut end = false;
                for chunk in wire.chunks(16 * 1024) {
                    end = d.ingest(&mut black_box(chunk).iter(), &mut out);
                }
                assert!(end);
                // Same message, give or take how the final line ending is counted.
                assert!(out.len().abs_diff(unstuffed) <= 2);
            })
        });
    }
    g.finish();
}

/// One whole inbound session through `Session`, with an application that accepts everything:
/// greeting, EHLO, MAIL, RCPT, DATA with `body`, QUIT. Returns the octets of the message.
fn run_session(config: &Arc<SessionConfig>, script: &[u8], now: Instant) -> usize {
    let mut s = Session::new(config.clone(), false, now);
    let mut out = Vec::with_capacity(1024);
    let mut body = 0;
    for chunk in script.chunks(16 * 1024) {
        s.feed(now, chunk);
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::Mail { .. } | Event::Rcpt { .. } => s.answer(now, Answer::Accept),
                Event::Body(b) => body += b.len(),
                Event::MessageEnd => s.answer(now, Answer::Queued("Q".into())),
                _ => {}
            }
        }
        s.take_output(&mut out);
        out.clear();
    }
    assert!(s.is_closed());
    body
}

fn whole_session<M: Measurement>(c: &mut Criterion<M>) {
    let config = Arc::new(SessionConfig::new("mx.example.test"));
    let now = Instant::now();
    let mut g = c.benchmark_group("smtp_session");
    for (name, size) in [
        ("1KiB", 1024),
        ("100KiB", 100 * 1024),
        ("1MiB", 1024 * 1024),
    ] {
        let (wire, unstuffed) = data_body(size);
        let mut script = b"EHLO client.example.org\r\nMAIL FROM:<bob@example.org> SIZE=2000000\r\n\
                           RCPT TO:<alice@example.test>\r\nDATA\r\n"
            .to_vec();
        script.extend_from_slice(&wire);
        script.extend_from_slice(b"QUIT\r\n");
        if size == 1024 {
            // Sessions per second, for small messages.
            g.throughput(Throughput::Elements(1));
            g.bench_function("sessions/1KiB", |b| {
                b.iter(|| assert_eq!(run_session(&config, black_box(&script), now), unstuffed))
            });
        }
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("data/{name}"), |b| {
            b.iter(|| assert_eq!(run_session(&config, black_box(&script), now), unstuffed))
        });
    }

    // A pipelined stream of commands through the session: commands per second.
    let mut script = b"EHLO client.example.org\r\n".to_vec();
    let mut commands = 1u64;
    for _ in 0..200 {
        script.extend_from_slice(b"MAIL FROM:<bob@example.org> SIZE=1532\r\n");
        for r in 0..5 {
            script.extend_from_slice(format!("RCPT TO:<user{r}@example.test>\r\n").as_bytes());
        }
        script.extend_from_slice(b"RSET\r\nNOOP\r\n");
        commands += 8;
    }
    script.extend_from_slice(b"QUIT\r\n");
    commands += 1;
    g.throughput(Throughput::Elements(commands));
    g.bench_function("commands/pipelined", |b| {
        b.iter_batched(
            || (),
            |()| run_session(&config, black_box(&script), now),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn run<M: Measurement>(mut c: Criterion<M>) {
    command_parsing(&mut c);
    dot_unstuffing(&mut c);
    whole_session(&mut c);
    c.final_summary();
}

fn main() {
    match common::criterion() {
        common::Clock::Thread(c) => run(c),
        common::Clock::Wall(c) => run(c),
    }
}
