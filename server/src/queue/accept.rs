//! A message being accepted over SMTP: copies for local mailboxes (Maildir) and one copy in
//! the queue for recipients elsewhere, written side by side and made durable together
//! before the 250.

use std::path::PathBuf;

use super::{Meta, Queue, QueueWriter};
use crate::maildir::{MessageWriter, Recipient, Store, StoreError};

/// The envelope of a message being accepted.
pub struct Envelope<'a> {
    pub queue_id: &'a str,
    /// Reverse-path; empty for the null sender.
    pub from: &'a str,
    /// Local mailboxes.
    pub local: Vec<Recipient>,
    /// Addresses elsewhere, with the address the client gave when it was an alias.
    pub relay: &'a [(String, Option<String>)],
    /// The client asked for SMTPUTF8.
    pub smtputf8: bool,
}

/// Both writers (boxed: the value travels between the event loop and worker jobs).
/// Dropping it uncommitted removes every temporary file.
#[derive(Debug)]
pub struct Accepting {
    local: Option<Box<MessageWriter>>,
    queued: Option<Box<QueueWriter>>,
}

impl Accepting {
    /// Starts the copies the envelope needs; `header` (complete lines, e.g. Received:)
    /// starts each. `queue` may be `None` only when nothing is relayed.
    pub fn begin(
        store: &Store,
        queue: Option<&Queue>,
        env: Envelope<'_>,
        header: &[u8],
    ) -> Result<Accepting, StoreError> {
        let local = if env.local.is_empty() {
            None
        } else {
            Some(Box::new(store.begin(env.from, env.local, header)?))
        };
        let queued = match (env.relay.is_empty(), queue) {
            (true, _) => None,
            (false, Some(q)) => Some(Box::new(q.begin(
                env.queue_id,
                env.from,
                env.relay,
                header,
                env.smtputf8,
            )?)),
            (false, None) => return Err(StoreError::NoRecipients),
        };
        if local.is_none() && queued.is_none() {
            return Err(StoreError::NoRecipients);
        }
        Ok(Accepting { local, queued })
    }

    /// Appends body bytes to every copy.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        if let Some(w) = self.local.as_mut() {
            w.write(chunk)?;
        }
        if let Some(q) = self.queued.as_mut() {
            q.write(chunk)?;
        }
        Ok(())
    }

    /// Makes every copy durable: the queued one first, then the local ones. If the local
    /// commit fails the queued copy is taken back out, so the client's retry after the
    /// error cannot make a duplicate (only a crash between the two can). Returns the local
    /// files and the queued message's metadata (to hand to the delivery service).
    pub fn commit(self, queue: Option<&Queue>) -> Result<(Vec<PathBuf>, Option<Meta>), StoreError> {
        let meta = match self.queued {
            Some(q) => Some(q.commit()?),
            None => None,
        };
        let files = match self.local {
            Some(w) => match w.commit() {
                Ok(files) => files,
                Err(e) => {
                    if let (Some(m), Some(q)) = (&meta, queue) {
                        if let Err(undo) = q.remove(&m.id) {
                            tracing::error!(queue_id = %m.id, error = %undo, "cannot take a message back out of the queue");
                        }
                    }
                    return Err(e);
                }
            },
            None => Vec::new(),
        };
        Ok((files, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::test_support::TempDir;

    fn rcpt(local: &str) -> Recipient {
        Recipient {
            domain: "example.test".into(),
            local: local.into(),
            delivered_to: format!("{local}@example.test"),
        }
    }

    #[test]
    fn local_and_queued_copies_hold_the_same_bytes() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "mx.example.test").unwrap();
        let queue = Queue::open(td.path()).unwrap();
        let relay = vec![(
            "bob@remote.test".to_string(),
            Some("team@example.test".to_string()),
        )];
        let mut a = Accepting::begin(
            &store,
            Some(&queue),
            Envelope {
                queue_id: "MIX1",
                from: "carol@remote.test",
                local: vec![rcpt("alice")],
                relay: &relay,
                smtputf8: false,
            },
            b"Received: x\r\n",
        )
        .unwrap();
        a.write(b"Subject: s\r\n\r\nhi\r\n").unwrap();
        let (files, meta) = a.commit(Some(&queue)).unwrap();
        assert_eq!(files.len(), 1);
        let local = std::fs::read(&files[0]).unwrap();
        assert!(local.ends_with(b"Received: x\r\nSubject: s\r\n\r\nhi\r\n"));
        let meta = meta.unwrap();
        assert_eq!(meta.recipients[0].address, "bob@remote.test");
        assert_eq!(
            std::fs::read(queue.message_path("MIX1")).unwrap(),
            b"Received: x\r\nSubject: s\r\n\r\nhi\r\n"
        );
    }

    #[test]
    fn queue_only_and_nothing() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        let queue = Queue::open(td.path()).unwrap();
        let relay = vec![("bob@remote.test".to_string(), None)];
        let env = |relay| Envelope {
            queue_id: "Q1",
            from: "",
            local: Vec::new(),
            relay,
            smtputf8: true,
        };
        let a = Accepting::begin(&store, Some(&queue), env(&relay), b"").unwrap();
        let (files, meta) = a.commit(Some(&queue)).unwrap();
        assert!(files.is_empty());
        assert!(meta.unwrap().smtputf8);
        assert!(matches!(
            Accepting::begin(&store, Some(&queue), env(&[]), b""),
            Err(StoreError::NoRecipients)
        ));
        assert!(matches!(
            Accepting::begin(&store, None, env(&relay), b""),
            Err(StoreError::NoRecipients)
        ));
    }

    #[test]
    fn failed_local_commit_takes_the_queued_copy_back() {
        let td = TempDir::new();
        let store = Store::open(td.path(), "h").unwrap();
        let queue = Queue::open(td.path()).unwrap();
        let relay = vec![("bob@remote.test".to_string(), None)];
        let mut a = Accepting::begin(
            &store,
            Some(&queue),
            Envelope {
                queue_id: "UNDO",
                from: "a@b.test",
                local: vec![rcpt("alice")],
                relay: &relay,
                smtputf8: false,
            },
            b"",
        )
        .unwrap();
        a.write(b"x\r\n").unwrap();
        // The Maildir's new/ disappears: its commit fails.
        std::fs::remove_dir_all(store.maildir_path("example.test", "alice").join("new")).unwrap();
        assert!(a.commit(Some(&queue)).is_err());
        assert!(!queue.contains("UNDO"));
        assert!(queue.list().unwrap().messages.is_empty());
    }
}
