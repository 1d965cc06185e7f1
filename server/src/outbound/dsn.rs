//! Delivery status notifications (RFC 3464): the one message a sender gets when mail to
//! some of its recipients failed for good or expired in the queue.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::queue::{Meta, RecipientState};
use crate::received::rfc5322_date;

/// Longest diagnostic text put in a header field: a server's reply may be long, a header
/// line must stay under 998 octets.
const MAX_DIAGNOSTIC: usize = 900;

/// What a DSN reports, beyond the queued message's metadata.
pub struct DsnInput<'a> {
    /// This server's name (Reporting-MTA, MAILER-DAEMON's domain).
    pub hostname: &'a str,
    /// The DSN's own id: its Message-ID and MIME boundary.
    pub dsn_id: &'a str,
    pub meta: &'a Meta,
    /// Indices into `meta.recipients` of the failed ones to report.
    pub failed: &'a [usize],
    /// The undelivered message's header section (text/rfc822-headers).
    pub headers: &'a [u8],
    pub now: SystemTime,
}

/// The sender of every DSN: ironpost's mailer daemon at `hostname`.
pub fn mailer_daemon(hostname: &str) -> String {
    format!("MAILER-DAEMON@{hostname}")
}

/// Whether a failed recipient was given up because it stayed too long in the queue, rather
/// than refused.
fn expired(r: &RecipientState) -> bool {
    r.status == crate::queue::Status::Failed
        && r.dsn_status.as_deref().is_some_and(|s| s.starts_with('4'))
}

/// Makes the DSN: a multipart/report with a human-readable part, the machine-readable
/// message/delivery-status part and the original headers. Lines end in CRLF.
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let m = input.meta;
    let host = input.hostname;
    let boundary = format!("{}/{}", input.dsn_id, host);
    let now = rfc5322_date(input.now);
    let arrival = rfc5322_date(UNIX_EPOCH + Duration::from_millis(m.arrived_ms));
    let failed: Vec<&RecipientState> = input
        .failed
        .iter()
        .filter_map(|&i| m.recipients.get(i))
        .collect();
    let any_expired = failed.iter().any(|r| expired(r));

    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push_str("\r\n");
    };
    line(&format!(
        "From: Mail Delivery System <{}>",
        mailer_daemon(host)
    ));
    line(&format!("To: <{}>", m.from));
    line(if any_expired {
        "Subject: Undelivered Mail Returned to Sender (delivery time expired)"
    } else {
        "Subject: Undelivered Mail Returned to Sender"
    });
    line(&format!("Date: {now}"));
    line(&format!("Message-ID: <{}@{}>", input.dsn_id, host));
    line("Auto-Submitted: auto-replied");
    line("MIME-Version: 1.0");
    line("Content-Type: multipart/report; report-type=delivery-status;");
    line(&format!("\tboundary=\"{boundary}\""));
    line("");
    line("This is a MIME-encapsulated message.");
    line("");

    // The human-readable part.
    line(&format!("--{boundary}"));
    line("Content-Description: Notification");
    line("Content-Type: text/plain; charset=utf-8");
    line("Content-Transfer-Encoding: 8bit");
    line("");
    line(&format!("This is the mail system at host {host}."));
    line("");
    line("I'm sorry to have to inform you that your message could not");
    line("be delivered to one or more recipients. It's attached below.");
    line("");
    for r in &failed {
        let why = r.last_reply.as_deref().unwrap_or("delivery failed");
        let why = clip(why);
        if expired(r) {
            line(&format!(
                "<{}>: delivery time expired; the last attempt said: {why}",
                r.address
            ));
        } else if let (true, Some(remote)) = (r.from_server, r.remote.as_deref()) {
            line(&format!("<{}>: host {remote} said: {why}", r.address));
        } else {
            line(&format!("<{}>: {why}", r.address));
        }
    }
    line("");

    // The delivery-status part.
    line(&format!("--{boundary}"));
    line("Content-Description: Delivery report");
    line("Content-Type: message/delivery-status");
    line("");
    line(&format!("Reporting-MTA: dns; {host}"));
    line(&format!("X-Ironpost-Queue-ID: {}", m.id));
    if !m.from.is_empty() {
        line(&format!("X-Ironpost-Sender: rfc822; {}", m.from));
    }
    line(&format!("Arrival-Date: {arrival}"));
    for r in &failed {
        line("");
        line(&format!("Final-Recipient: rfc822; {}", r.address));
        if let Some(o) = &r.original {
            line(&format!("Original-Recipient: rfc822; {o}"));
        }
        line("Action: failed");
        line(&format!(
            "Status: {}",
            r.dsn_status
                .as_deref()
                .unwrap_or(if expired(r) { "4.4.7" } else { "5.0.0" })
        ));
        if let Some(remote) = r.remote.as_deref() {
            let name = remote.split('[').next().unwrap_or(remote);
            if !name.is_empty() {
                line(&format!("Remote-MTA: dns; {name}"));
            }
        }
        if let Some(reply) = r.last_reply.as_deref() {
            let kind = if r.from_server { "smtp" } else { "X-Ironpost" };
            line(&format!("Diagnostic-Code: {kind}; {}", clip(reply)));
        }
        line(&format!("Last-Attempt-Date: {now}"));
        if expired(r) {
            line(&format!("Will-Retry-Until: {now}"));
        }
    }
    line("");

    // The original headers.
    line(&format!("--{boundary}"));
    line("Content-Description: Undelivered Message Headers");
    line("Content-Type: text/rfc822-headers");
    line("");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(input.headers);
    if !input.headers.is_empty() && !input.headers.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// One line of at most [`MAX_DIAGNOSTIC`] characters, without control characters.
fn clip(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DIAGNOSTIC)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{RecipientState, Status, META_VERSION};
    use mail_parser::{MessageParser, MimeHeaders, PartType};

    fn meta() -> Meta {
        let mut bounced = RecipientState::new(
            "bob@remote.test".into(),
            Some("team@example.test".into()),
            0,
        );
        bounced.status = Status::Failed;
        bounced.last_reply = Some("550 5.1.1 <bob@remote.test>: Recipient address rejected".into());
        bounced.dsn_status = Some("5.1.1".into());
        bounced.from_server = true;
        bounced.remote = Some("mx.remote.test[127.0.0.1]:2525".into());
        let mut expired = RecipientState::new("carol@down.test".into(), None, 0);
        expired.status = Status::Failed;
        expired.attempts = 9;
        expired.last_reply = Some("connect to 127.0.0.1[127.0.0.1]:9: Connection refused".into());
        expired.dsn_status = Some("4.4.1".into());
        let delivered = RecipientState {
            status: Status::Delivered,
            ..RecipientState::new("dave@remote.test".into(), None, 0)
        };
        Meta {
            version: META_VERSION,
            id: "ORIG1".into(),
            from: "alice@example.test".into(),
            arrived_ms: 1_700_000_000_000,
            size: 100,
            eight_bit: false,
            smtputf8: false,
            recipients: vec![bounced, delivered, expired],
        }
    }

    const HEADERS: &[u8] = b"Received: by mx.example.test\r\nFrom: <alice@example.test>\r\nSubject: Lunch?\r\nMessage-ID: <lunch@example.test>\r\n";

    fn dsn() -> Vec<u8> {
        build(&DsnInput {
            hostname: "mx.example.test",
            dsn_id: "DSN1",
            meta: &meta(),
            failed: &[0, 2],
            headers: HEADERS,
            now: UNIX_EPOCH + Duration::from_secs(1_700_000_100),
        })
    }

    #[test]
    fn parses_back_as_a_multipart_report() {
        let raw = dsn();
        assert!(
            raw.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r'),
            "bare LF"
        );
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        assert_eq!(
            msg.from().unwrap().first().unwrap().address(),
            Some("MAILER-DAEMON@mx.example.test")
        );
        assert_eq!(
            msg.to().unwrap().first().unwrap().address(),
            Some("alice@example.test")
        );
        assert!(msg
            .subject()
            .unwrap()
            .starts_with("Undelivered Mail Returned to Sender"));
        assert_eq!(msg.message_id(), Some("DSN1@mx.example.test"));
        let ct = msg.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));

        // Three parts under the root: text/plain, message/delivery-status, text/rfc822-headers.
        let kinds: Vec<(String, String)> = msg.parts[1..]
            .iter()
            .map(|p| {
                let ct = p.content_type().unwrap();
                (
                    ct.ctype().to_string(),
                    ct.subtype().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("text".into(), "plain".into()),
                ("message".into(), "delivery-status".into()),
                ("text".into(), "rfc822-headers".into())
            ]
        );
        let text = msg.body_text(0).unwrap();
        assert!(
            text.contains("<bob@remote.test>: host mx.remote.test[127.0.0.1]:2525 said: 550 5.1.1"),
            "{text}"
        );
        assert!(
            text.contains("<carol@down.test>: delivery time expired"),
            "{text}"
        );
        assert!(!text.contains("dave@"), "{text}");

        let status = match &msg.parts[2].body {
            PartType::Text(t) => t.to_string(),
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                String::from_utf8_lossy(b).into_owned()
            }
            other => panic!("delivery-status part is {other:?}"),
        };
        for want in [
            "Reporting-MTA: dns; mx.example.test",
            "Final-Recipient: rfc822; bob@remote.test",
            "Original-Recipient: rfc822; team@example.test",
            "Action: failed",
            "Status: 5.1.1",
            "Remote-MTA: dns; mx.remote.test",
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.test>: Recipient address rejected",
            "Final-Recipient: rfc822; carol@down.test",
            "Status: 4.4.1",
            "Diagnostic-Code: X-Ironpost; connect to",
        ] {
            assert!(status.contains(want), "missing {want:?} in\n{status}");
        }
        assert_eq!(status.matches("Action: failed").count(), 2);

        let headers = match &msg.parts[3].body {
            PartType::Text(t) => t.to_string(),
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                String::from_utf8_lossy(b).into_owned()
            }
            other => panic!("headers part is {other:?}"),
        };
        assert!(headers.contains("Subject: Lunch?"), "{headers}");
        assert!(
            headers.contains("Message-ID: <lunch@example.test>"),
            "{headers}"
        );
    }

    #[test]
    fn long_or_hostile_diagnostics_stay_on_one_line() {
        let mut m = meta();
        m.recipients[0].last_reply = Some(format!("550 {}\r\nBcc: x", "y".repeat(5000)));
        let raw = build(&DsnInput {
            hostname: "h.test",
            dsn_id: "D",
            meta: &m,
            failed: &[0],
            headers: b"Subject: s",
            now: UNIX_EPOCH,
        });
        let text = String::from_utf8(raw).unwrap();
        assert!(text.lines().all(|l| l.len() < 998));
        assert!(!text.contains("\r\nBcc: x"));
        assert!(text.contains("Subject: s\r\n\r\n--D/h.test--\r\n"));
    }
}
