//! A delivery worker: takes a job, connects to the next hop (or reuses its connection),
//! sends, records each recipient's outcome in the queue, and logs one line per recipient
//! in the manner of Postfix's maillog.

use std::io;
use std::sync::Arc;

use ironpost_core::smtp::client::{ClientConfig, Envelope, TlsMode};

use super::connection::{OpenError, RcptOutcome, SmtpConnection};
use super::report::{self, Sent};
use super::retry::Failure;
use super::route::{self, NextHop};
use super::scheduler::{Entry, Job, Task};
use super::Context;
use crate::config::OutboundTls;
use crate::queue::{now_ms, Status};

/// Transactions on one connection before it is closed and a fresh one opened.
const MAX_REUSE: u32 = 100;

/// Retry a DSN that could not be written after this long.
const DSN_RETRY_MS: u64 = 60_000;

pub(super) fn run(ctx: Arc<Context>) {
    while let Some(job) = ctx.scheduler.take() {
        match job {
            Job::Finish(entry) => finish(&ctx, &entry),
            Job::Deliver(task) => deliver(&ctx, task),
        }
        ctx.scheduler.idle();
    }
}

/// Delivers a job, then more jobs for the same next hop over the same connection.
fn deliver(ctx: &Context, first: Task) {
    let hop = first.hop.clone();
    let mut conn: Option<SmtpConnection> = None;
    let mut next = Some(first);
    while let Some(task) = next.take() {
        attempt(ctx, &mut conn, &task);
        if ctx.scheduler.complete(&task.entry) {
            finish(ctx, &task.entry);
        }
        if conn.as_ref().is_some_and(|c| !c.is_ready()) {
            conn = None;
        }
        if conn.as_ref().is_some_and(|c| c.transactions < MAX_REUSE) {
            next = ctx.scheduler.take_for(&hop);
        }
    }
    if let Some(c) = conn {
        c.quit();
    }
    ctx.scheduler.release(&hop);
}

/// One transaction for one job's recipients, and its outcome recorded.
fn attempt(ctx: &Context, conn: &mut Option<SmtpConnection>, task: &Task) {
    let (envelope, id) = {
        let m = task.entry.lock();
        let recipients = task
            .rcpts
            .iter()
            .map(|&i| smtp_path(&m.recipients[i].address))
            .collect();
        (
            Envelope {
                from: smtp_path(&m.from),
                recipients,
                size: Some(m.size),
                eight_bit: m.eight_bit,
                smtputf8: m.smtputf8,
            },
            m.id.clone(),
        )
    };
    let n = task.rcpts.len();
    let mut file = match ctx.queue.open_message(&id) {
        Ok(f) => f,
        // Deleted from the command line: nothing to do, the round's end drops it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            let f = Failure::temporary("4.3.0", format!("cannot open the queued message: {e}"));
            return record(ctx, task, vec![RcptOutcome::Failed(f); n], None);
        }
    };
    if conn.is_none() {
        match open(ctx, &task.hop) {
            Ok(c) => *conn = Some(c),
            Err(f) => return record(ctx, task, vec![RcptOutcome::Failed(f); n], None),
        }
    }
    let c = conn.as_mut().expect("opened above");
    let outcomes = c.send(envelope, &mut file);
    let relay = Relay {
        name: c.candidate.to_string(),
        tls: c
            .tls
            .as_ref()
            .map_or_else(|| "none".into(), |t| t.to_string()),
    };
    record(ctx, task, outcomes, Some(relay));
}

/// The server that answered, for the log and the DSN.
struct Relay {
    name: String,
    tls: String,
}

/// Connects to the first host of the next hop that takes a session.
fn open(ctx: &Context, hop: &NextHop) -> Result<SmtpConnection, Failure> {
    if let Some(f) = ctx.scheduler.dead(hop) {
        return Err(f);
    }
    let candidates = route::candidates(hop, &ctx.resolver)?;
    let auth = ctx.sasl.lookup(hop);
    let out = &ctx.app.config.outbound;
    let mode = match out.tls {
        OutboundTls::May => TlsMode::Opportunistic,
        OutboundTls::Encrypt => TlsMode::Required,
        OutboundTls::None => TlsMode::Disabled,
    };
    let config = |starttls| {
        let mut c = ClientConfig::new(out.helo_name.clone());
        c.starttls = starttls;
        c.auth = auth.clone();
        Arc::new(c)
    };
    let mut last = None;
    for c in &candidates {
        match SmtpConnection::open(c, config(mode), &ctx.tls, out.connect_timeout) {
            Ok(conn) => {
                ctx.scheduler.mark_alive(hop);
                return Ok(conn);
            }
            // Opportunistic TLS that fails in the handshake: this host again, in cleartext.
            Err(OpenError::Tls(f)) if out.tls == OutboundTls::May => {
                tracing::warn!(relay = %c, "{}; trying again without TLS", f.diagnostic);
                match SmtpConnection::open(
                    c,
                    config(TlsMode::Disabled),
                    &ctx.tls,
                    out.connect_timeout,
                ) {
                    Ok(conn) => return Ok(conn),
                    Err(e) => last = Some(e.failure()),
                }
            }
            Err(e) => last = Some(e.failure()),
        }
    }
    let f =
        last.unwrap_or_else(|| Failure::temporary("4.4.0", format!("no host to try for {hop}")));
    ctx.scheduler.mark_dead(hop, &f);
    Err(f)
}

/// Applies one transaction's outcomes to the message's state, saves it, and logs a line
/// per recipient.
fn record(ctx: &Context, task: &Task, outcomes: Vec<RcptOutcome>, relay: Option<Relay>) {
    let now = now_ms();
    let mut m = task.entry.lock();
    let delay = now.saturating_sub(m.arrived_ms) as f64 / 1000.0;
    let (relay_name, tls) = match &relay {
        Some(r) => (r.name.as_str(), r.tls.as_str()),
        None => ("none", "none"),
    };
    let null_sender = m.from.is_empty();
    for (&i, outcome) in task.rcpts.iter().zip(outcomes) {
        let arrived = m.arrived_ms;
        let r = &mut m.recipients[i];
        r.remote = relay.as_ref().map(|r| r.name.clone());
        let (status, dsn, text) = match outcome {
            RcptOutcome::Sent(reply) => {
                r.status = Status::Delivered;
                r.dsn_status = Some("2.0.0".into());
                r.from_server = true;
                r.last_reply = Some(reply.clone());
                ("sent", "2.0.0".to_string(), reply)
            }
            RcptOutcome::Failed(f) => {
                r.dsn_status = Some(f.status.clone());
                r.from_server = f.from_server;
                r.last_reply = Some(f.diagnostic.clone());
                if f.permanent {
                    r.status = Status::Failed;
                    r.reported = null_sender;
                    ("bounced", f.status, f.diagnostic)
                } else {
                    r.attempts += 1;
                    match ctx.retry.next_attempt(r.attempts, arrived, now) {
                        Some(t) => {
                            r.next_attempt_ms = t;
                            ("deferred", f.status, f.diagnostic)
                        }
                        None => {
                            r.status = Status::Failed;
                            r.reported = null_sender;
                            let text = format!("{} (delivery time expired)", f.diagnostic);
                            ("expired", f.status, text)
                        }
                    }
                }
            }
        };
        tracing::info!(
            "{}: to=<{}>, relay={relay_name}, delay={delay:.2}, tls={tls}, dsn={dsn}, status={status} ({text})",
            m.id,
            m.recipients[i].address,
        );
    }
    if null_sender
        && task
            .rcpts
            .iter()
            .any(|&i| m.recipients[i].status == Status::Failed)
    {
        tracing::info!("{}: no DSN for a message from the null sender", m.id);
    }
    // A finished message is removed (or bounced) by the round's end right after this;
    // saving it first would be an fsync for nothing.
    if m.is_done() {
        return;
    }
    if let Err(e) = ctx.queue.save(&m) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::error!(queue_id = %m.id, error = %e, "cannot save queue state; kept in memory");
        }
    }
}

/// Ends a round: one DSN for the failures not yet reported, then the message leaves the
/// queue if nothing is pending, or gets its next due time.
fn finish(ctx: &Context, entry: &Entry) {
    let next = finish_round(ctx, entry);
    ctx.scheduler.finished(entry, next);
}

fn finish_round(ctx: &Context, entry: &Entry) -> Option<u64> {
    let mut m = entry.lock();
    if !ctx.queue.contains(&m.id) {
        tracing::info!(queue_id = %m.id, "removed from the queue (deleted)");
        return None;
    }
    let failed: Vec<usize> = m.unreported().map(|(i, _)| i).collect();
    let mut dsn_pending = false;
    if !failed.is_empty() {
        if m.from.is_empty() {
            tracing::info!(queue_id = %m.id, "no DSN for a message from the null sender");
            for &i in &failed {
                m.recipients[i].reported = true;
            }
        } else {
            match report::send_dsn(ctx, &m, &failed) {
                Ok((sent, queued)) => {
                    match sent {
                        Sent::Local(id) | Sent::Queued(id) => {
                            tracing::info!("{}: sender non-delivery notification: {id}", m.id)
                        }
                        Sent::Nobody => tracing::warn!(
                            queue_id = %m.id, from = %m.from,
                            "no DSN: the sender's address leads to no mailbox"
                        ),
                    }
                    for q in queued {
                        ctx.scheduler.add(q);
                    }
                    for &i in &failed {
                        m.recipients[i].reported = true;
                    }
                }
                Err(e) => {
                    tracing::error!(queue_id = %m.id, error = %e, "cannot send the DSN; will try again");
                    dsn_pending = true;
                }
            }
        }
    }
    if m.is_done() && !dsn_pending {
        return match ctx.queue.remove(&m.id) {
            Ok(_) => {
                tracing::info!("{}: removed", m.id);
                None
            }
            Err(e) => {
                tracing::error!(queue_id = %m.id, error = %e, "cannot remove from the queue");
                Some(now_ms() + DSN_RETRY_MS)
            }
        };
    }
    if let Err(e) = ctx.queue.save(&m) {
        if e.kind() == io::ErrorKind::NotFound {
            return None;
        }
        tracing::error!(queue_id = %m.id, error = %e, "cannot save queue state; kept in memory");
    }
    match m.next_due_ms() {
        Some(t) if !dsn_pending => Some(t),
        Some(t) => Some(t.min(now_ms() + DSN_RETRY_MS)),
        None => Some(now_ms() + DSN_RETRY_MS),
    }
}

/// An address as an SMTP path: the local part quoted (RFC 5321 4.1.2) when it is not a
/// dot-atom, e.g. `"john doe"@example.com`.
pub(super) fn smtp_path(address: &str) -> String {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return address.to_string();
    };
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let dot_atom = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c == '.' || atext(c));
    if dot_atom {
        return address.to_string();
    }
    let mut q = String::from("\"");
    for c in local.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    format!("{q}@{domain}")
}

#[cfg(test)]
mod tests {
    use super::smtp_path;

    #[test]
    fn paths_are_quoted_when_needed() {
        assert_eq!(smtp_path("bob@example.net"), "bob@example.net");
        assert_eq!(smtp_path("a.b+tag@example.net"), "a.b+tag@example.net");
        assert_eq!(
            smtp_path("john doe@example.net"),
            "\"john doe\"@example.net"
        );
        assert_eq!(smtp_path("a\"b@example.net"), "\"a\\\"b\"@example.net");
        assert_eq!(smtp_path(".x@example.net"), "\".x\"@example.net");
        assert_eq!(smtp_path("pelé@example.net"), "pelé@example.net");
        assert_eq!(smtp_path(""), "");
    }
}
