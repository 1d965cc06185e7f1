//! Telling senders about failures: builds the DSN and hands it to the sender's mailbox (a
//! local sender) or to the queue (anyone else).

use std::time::SystemTime;

use super::dsn::{self, DsnInput};
use super::Context;
use crate::directory::Resolution;
use crate::maildir::Recipient;
use crate::queue::Meta;
use crate::received::{new_queue_id, rfc5322_date};

/// Where a DSN went.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Into local mailboxes (and queued for any forward targets), under this id.
    Local(String),
    /// Queued for delivery elsewhere, under this id.
    Queued(String),
    /// The sender's address is in one of our domains but leads nowhere.
    Nobody,
}

/// Sends one DSN for the failed recipients `failed` of `meta` (whose sender is not null).
/// Returns the new messages the caller must schedule.
pub(super) fn send_dsn(
    ctx: &Context,
    meta: &Meta,
    failed: &[usize],
) -> Result<(Sent, Vec<Meta>), String> {
    debug_assert!(!meta.from.is_empty(), "never a DSN for a DSN");
    let host = &ctx.app.config.hostname;
    let headers = ctx.queue.headers(&meta.id).unwrap_or_default();
    let id = new_queue_id();
    let now = SystemTime::now();
    let body = dsn::build(&DsnInput {
        hostname: host,
        dsn_id: &id,
        meta,
        failed,
        headers: &headers,
        now,
    });
    let received = format!(
        "Received: by {host} (ironpost)\r\n\tid {id}; {}\r\n",
        rfc5322_date(now)
    );
    let mut queued = Vec::new();
    let mut forward: Vec<(String, Option<String>)> = Vec::new();
    let sent = match ctx.app.directory.get().resolve(&meta.from) {
        Resolution::Local {
            mailboxes,
            forward: f,
        } => {
            if !mailboxes.is_empty() {
                let recipients = mailboxes
                    .into_iter()
                    .map(|m| Recipient {
                        delivered_to: m.to_string(),
                        domain: m.domain,
                        local: m.local,
                    })
                    .collect();
                let mut w = ctx
                    .app
                    .store
                    .begin("", recipients, received.as_bytes())
                    .map_err(|e| e.to_string())?;
                w.write(&body).map_err(|e| e.to_string())?;
                let files = w.commit().map_err(|e| e.to_string())?;
                // IMAP sessions watching the sender's mailbox look again.
                for f in &files {
                    ctx.app.mail.registry().notify_delivered(f);
                }
            }
            forward.extend(f.into_iter().map(|a| (a, Some(meta.from.clone()))));
            Sent::Local(id.clone())
        }
        Resolution::Foreign => {
            forward.push((meta.from.clone(), None));
            Sent::Queued(id.clone())
        }
        Resolution::Unknown => Sent::Nobody,
    };
    if !forward.is_empty() {
        let message = [received.as_bytes(), &body].concat();
        let m = ctx
            .queue
            .enqueue(&id, "", &forward, &message)
            .map_err(|e| e.to_string())?;
        queued.push(m);
    }
    Ok((sent, queued))
}
