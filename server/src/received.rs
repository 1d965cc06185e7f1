//! Trace headers and queue ids for accepted messages.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ironpost_core::tls::TlsInfo;

/// What a Received: header records about one message's arrival.
pub struct Arrival<'a> {
    pub helo: Option<&'a str>,
    pub client_ip: IpAddr,
    pub hostname: &'a str,
    pub esmtp: bool,
    pub authenticated: bool,
    pub tls: Option<&'a TlsInfo>,
    pub queue_id: &'a str,
    /// Named in `for <...>` only when the message has exactly one recipient (RFC 5321 4.4).
    pub single_recipient: Option<&'a str>,
}

/// The `with` keyword of RFC 3848 (SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA).
fn protocol(a: &Arrival<'_>) -> &'static str {
    match (a.esmtp, a.tls.is_some(), a.authenticated) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    }
}

/// A Received: header (RFC 5321 4.4), folded, ending in CRLF.
pub fn received_header(a: &Arrival<'_>, now: SystemTime) -> String {
    let helo = a.helo.map(sanitize).unwrap_or_else(|| "unknown".into());
    let ip = match a.client_ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
    };
    let mut h = format!(
        "Received: from {helo} ([{ip}])\r\n\tby {} (ironpost) with {} id {}",
        a.hostname,
        protocol(a),
        a.queue_id
    );
    if let Some(tls) = a.tls {
        h.push_str(&format!(
            "\r\n\t(using {} with cipher {})",
            tls.version, tls.cipher
        ));
    }
    if let Some(rcpt) = a.single_recipient {
        h.push_str(&format!("\r\n\tfor <{}>", sanitize(rcpt)));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(now)));
    h
}

/// Keeps header text printable: a peer's EHLO argument must not inject header lines.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '(' && *c != ')')
        .collect()
}

/// `Wed, 25 Nov 2026 09:21:50 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    dt.format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

static QUEUE_SEQ: AtomicU32 = AtomicU32::new(0);

/// A short id naming one accepted message in replies and logs, unique across restarts:
/// microseconds since the epoch and a per-process sequence number, in hex.
pub fn new_queue_id() -> String {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let seq = QUEUE_SEQ.fetch_add(1, Ordering::Relaxed) & 0xfff;
    format!("{:010X}{seq:03X}", us & 0xff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn header_names_tls_and_auth() {
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            sni: None,
        };
        let a = Arrival {
            helo: Some("client.test"),
            client_ip: "127.0.0.1".parse().unwrap(),
            hostname: "mx.example.test",
            esmtp: true,
            authenticated: true,
            tls: Some(&tls),
            queue_id: "ABC",
            single_recipient: Some("bob@example.test"),
        };
        let h = received_header(&a, UNIX_EPOCH + Duration::from_secs(86400));
        assert_eq!(
            h,
            "Received: from client.test ([127.0.0.1])\r\n\tby mx.example.test (ironpost) with ESMTPSA id ABC\r\n\t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\tfor <bob@example.test>;\r\n\tFri, 02 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn helo_cannot_inject_lines() {
        let a = Arrival {
            helo: Some("x\r\nBcc: evil"),
            client_ip: "::1".parse().unwrap(),
            hostname: "h",
            esmtp: false,
            authenticated: false,
            tls: None,
            queue_id: "Q",
            single_recipient: None,
        };
        let h = received_header(&a, UNIX_EPOCH);
        assert!(h.starts_with(
            "Received: from xBcc: evil ([IPv6:::1])\r\n\tby h (ironpost) with SMTP id Q;"
        ));
        assert_eq!(h.matches("\r\n").count(), 3);
    }

    #[test]
    fn queue_ids_differ() {
        let a = new_queue_id();
        let b = new_queue_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 13);
    }
}
