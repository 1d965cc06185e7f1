//! `ironpost queue list|flush|delete`: the queue as an operator sees it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{now_ms, valid_id, Listing, Queue, Status};

/// The queue under `data_dir`, without creating it when there is none.
fn existing(data_dir: &Path) -> Result<Option<Queue>, String> {
    if !data_dir.join("queue").is_dir() {
        return Ok(None);
    }
    Queue::open(data_dir)
        .map(Some)
        .map_err(|e| format!("{}: {e}", data_dir.join("queue").display()))
}

/// `ironpost queue list`.
pub fn list(data_dir: &Path) -> Result<String, String> {
    let listing = match existing(data_dir)? {
        Some(q) => q.list().map_err(|e| e.to_string())?,
        None => Listing::default(),
    };
    Ok(render(&listing, now_ms()))
}

/// `ironpost queue flush`.
pub fn flush(data_dir: &Path) -> Result<String, String> {
    let Some(q) = existing(data_dir)? else {
        return Ok("Mail queue is empty\n".into());
    };
    q.request_flush().map_err(|e| e.to_string())?;
    Ok("Flush requested: a running server tries every queued message within a second (or at its next start).\n".into())
}

/// `ironpost queue delete <id>`.
pub fn delete(data_dir: &Path, id: &str) -> Result<String, String> {
    if !valid_id(id) {
        return Err(format!("{id:?} is not a queue id"));
    }
    let removed = match existing(data_dir)? {
        Some(q) => q.remove(id).map_err(|e| e.to_string())?,
        None => false,
    };
    if removed {
        Ok(format!("{id}: deleted\n"))
    } else {
        Err(format!("no message {id} in the queue"))
    }
}

/// The listing as text, in the spirit of Postfix's `mailq`.
pub fn render(listing: &Listing, now: u64) -> String {
    if listing.messages.is_empty() && listing.unreadable.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = String::new();
    let mut bytes = 0;
    for m in &listing.messages {
        bytes += m.size;
        let from = if m.from.is_empty() {
            "<>".to_string()
        } else {
            format!("<{}>", m.from)
        };
        out.push_str(&format!(
            "{}  {} bytes  arrived {}  from {from}\n",
            m.id,
            m.size,
            timestamp(m.arrived_ms)
        ));
        for r in &m.recipients {
            let mut line = format!("    <{}>  {}", r.address, r.status.name());
            if r.status == Status::Pending {
                line.push_str(&format!(", {} failed attempt(s)", r.attempts));
                if r.next_attempt_ms > now {
                    line.push_str(&format!(", next {}", timestamp(r.next_attempt_ms)));
                } else {
                    line.push_str(", due now");
                }
            }
            if let Some(o) = &r.original {
                line.push_str(&format!(", via <{o}>"));
            }
            if let Some(reply) = &r.last_reply {
                line.push_str(&format!(": {reply}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    for (id, why) in &listing.unreadable {
        out.push_str(&format!("{id}  UNREADABLE, not delivered: {why}\n"));
    }
    let n = listing.messages.len();
    out.push_str(&format!(
        "-- {n} message{} ({} KiB){}\n",
        if n == 1 { "" } else { "s" },
        bytes.div_ceil(1024),
        match listing.unreadable.len() {
            0 => String::new(),
            k => format!(", {k} unreadable"),
        }
    ));
    out
}

/// `2025-11-25 09:00:00 UTC`.
fn timestamp(ms: u64) -> String {
    let t: SystemTime = UNIX_EPOCH + Duration::from_millis(ms);
    let d = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        d.year(),
        d.month() as u8,
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Meta, RecipientState, META_VERSION};
    use super::*;
    use crate::maildir::test_support::TempDir;

    #[test]
    fn renders_messages_and_unreadable_ones() {
        assert_eq!(render(&Listing::default(), 0), "Mail queue is empty\n");
        let mut deferred = RecipientState::new("bob@remote.test".into(), None, 86_400_000 + 60_000);
        deferred.attempts = 2;
        deferred.last_reply = Some("451 4.3.0 try later".into());
        let mut done = RecipientState::new(
            "carol@remote.test".into(),
            Some("team@example.test".into()),
            0,
        );
        done.status = Status::Delivered;
        let listing = Listing {
            messages: vec![Meta {
                version: META_VERSION,
                id: "ABC".into(),
                from: String::new(),
                arrived_ms: 86_400_000,
                size: 2048,
                eight_bit: false,
                smtputf8: false,
                recipients: vec![deferred, done],
            }],
            unreadable: vec![("BAD".into(), "not valid queue metadata".into())],
        };
        let text = render(&listing, 86_400_000);
        assert_eq!(
            text,
            "ABC  2048 bytes  arrived 1970-01-02 00:00:00 UTC  from <>\n\
             \x20   <bob@remote.test>  pending, 2 failed attempt(s), next 1970-01-02 00:01:00 UTC: 451 4.3.0 try later\n\
             \x20   <carol@remote.test>  delivered, via <team@example.test>\n\
             BAD  UNREADABLE, not delivered: not valid queue metadata\n\
             -- 1 message (2 KiB), 1 unreadable\n"
        );
    }

    #[test]
    fn commands_on_a_data_dir() {
        let td = TempDir::new();
        // No queue yet: nothing is created.
        assert_eq!(list(td.path()).unwrap(), "Mail queue is empty\n");
        assert!(!td.path().join("queue").exists());
        assert!(delete(td.path(), "ABC").is_err());
        assert!(delete(td.path(), "../etc")
            .unwrap_err()
            .contains("not a queue id"));

        let q = Queue::open(td.path()).unwrap();
        q.enqueue(
            "M1",
            "a@b.test",
            &[("x@y.test".into(), None)],
            b"Subject: s\r\n\r\nx\r\n",
        )
        .unwrap();
        let text = list(td.path()).unwrap();
        assert!(text.starts_with("M1  "), "{text}");
        assert!(
            text.contains("<x@y.test>  pending, 0 failed attempt(s), due now"),
            "{text}"
        );
        assert!(flush(td.path()).unwrap().starts_with("Flush requested"));
        assert!(q.take_flush_request());
        assert_eq!(delete(td.path(), "M1").unwrap(), "M1: deleted\n");
        assert_eq!(list(td.path()).unwrap(), "Mail queue is empty\n");
    }
}
