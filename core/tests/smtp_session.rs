//! State transitions of the SMTP server session, driven through its public sans-IO API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_core::smtp::data::BareLineEndings;
use ironpost_core::smtp::session::SaslMechanism;
use ironpost_core::smtp::{
    Address, Answer, AuthPolicy, Event, Reply, Session, SessionConfig, StartTls,
};
use ironpost_core::tls::{Protocol, TlsInfo};

fn config() -> SessionConfig {
    let mut c = SessionConfig::new("mx.test");
    c.max_message_size = 1000;
    c
}

fn submission() -> SessionConfig {
    let mut c = config();
    c.starttls = StartTls::Required;
    c.auth = AuthPolicy::Required;
    c
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        sni: None,
    }
}

/// A session with an application that answers every event the same simple way:
/// recipients whose local part is `nobody` are unknown, the password is `secret`.
struct Harness {
    s: Session,
    now: Instant,
    events: Vec<Event>,
    auto: bool,
}

impl Harness {
    fn new(c: SessionConfig) -> Self {
        Self::with(c, false)
    }

    fn with(c: SessionConfig, implicit_tls: bool) -> Self {
        let now = Instant::now();
        let mut h = Harness {
            s: Session::new(Arc::new(c), implicit_tls, now),
            now,
            events: Vec::new(),
            auto: true,
        };
        let greeting = h.out();
        assert_eq!(greeting, "220 mx.test ESMTP ironpost\r\n");
        h
    }

    fn out(&mut self) -> String {
        let mut v = Vec::new();
        self.s.take_output(&mut v);
        String::from_utf8(v).unwrap()
    }

    fn pump(&mut self) {
        while let Some(ev) = self.s.poll_event() {
            let answer = if !self.auto {
                None
            } else {
                match &ev {
                    Event::Mail { .. } => Some(Answer::Accept),
                    Event::Rcpt { to: Some(a) } if a.local == "nobody" => {
                        Some(Answer::Reject(Reply::ext(550, 5, 1, 1, "User unknown")))
                    }
                    Event::Rcpt { .. } => Some(Answer::Accept),
                    Event::Auth { password, .. } if password == "secret" => Some(Answer::Accept),
                    Event::Auth { .. } => Some(Answer::Reject(Reply::ext(
                        535,
                        5,
                        7,
                        8,
                        "Authentication credentials invalid",
                    ))),
                    Event::MessageEnd => Some(Answer::Queued("Q1".into())),
                    _ => None,
                }
            };
            self.events.push(ev);
            if let Some(a) = answer {
                self.s.answer(self.now, a);
            }
        }
    }

    /// Feeds input, runs the application, returns what the session wrote.
    fn send(&mut self, input: &[u8]) -> String {
        self.s.feed(self.now, input);
        self.pump();
        self.out()
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn body(&self) -> Vec<u8> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Body(b) => Some(b.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    fn ehlo(&mut self) -> String {
        self.send(b"EHLO client.test\r\n")
    }

    fn transaction(&mut self) {
        self.ehlo();
        assert_eq!(self.send(b"MAIL FROM:<a@x.test>\r\n"), "250 2.1.0 Ok\r\n");
        assert_eq!(self.send(b"RCPT TO:<b@mx.test>\r\n"), "250 2.1.5 Ok\r\n");
    }

    fn starttls(&mut self) {
        assert_eq!(
            self.send(b"STARTTLS\r\n"),
            "220 2.0.0 Ready to start TLS\r\n"
        );
        assert!(self.s.take_starttls());
        self.s.tls_established(tls_info());
    }
}

fn addr(local: &str, domain: &str) -> Address {
    Address {
        local: local.into(),
        domain: domain.into(),
    }
}

#[test]
fn ehlo_advertises_extensions_for_port_25() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.ehlo(),
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
    );
}

#[test]
fn starttls_advertised_only_when_offered_and_auth_only_after_tls() {
    let mut h = Harness::new(submission());
    let r = h.ehlo();
    assert!(
        r.contains("250-STARTTLS\r\n") || r.ends_with("250 STARTTLS\r\n"),
        "{r}"
    );
    assert!(!r.contains("AUTH"), "{r}");
    h.starttls();
    let r = h.ehlo();
    assert!(!r.contains("STARTTLS"), "{r}");
    assert!(r.ends_with("250 AUTH PLAIN LOGIN\r\n"), "{r}");
}

#[test]
fn helo_gives_a_plain_reply() {
    let mut h = Harness::new(config());
    assert_eq!(h.send(b"HELO client.test\r\n"), "250 mx.test\r\n");
    assert_eq!(
        h.send(b"MAIL FROM:<a@x.test> SIZE=10\r\n"),
        "555 5.5.4 ESMTP parameters need EHLO\r\n"
    );
    assert_eq!(h.send(b"MAIL FROM:<a@x.test>\r\n"), "250 2.1.0 Ok\r\n");
}

#[test]
fn a_whole_transaction_streams_the_unstuffed_body() {
    let mut h = Harness::new(config());
    h.transaction();
    assert_eq!(
        h.send(b"DATA\r\n"),
        "354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert_eq!(
        h.send(b"Subject: hi\r\n\r\n..dot\r\nend\r\n.\r\n"),
        "250 2.0.0 Ok: queued as Q1\r\n"
    );
    assert_eq!(h.body(), b"Subject: hi\r\n\r\n.dot\r\nend\r\n");
    let ev = h.take_events();
    assert_eq!(
        ev[..3],
        [
            Event::Mail {
                from: Some(addr("a", "x.test")),
                size: None,
                body: None,
                smtputf8: false
            },
            Event::Rcpt {
                to: Some(addr("b", "mx.test"))
            },
            Event::DataStart,
        ]
    );
    assert_eq!(ev.last(), Some(&Event::MessageEnd));
    assert_eq!(
        h.send(b"QUIT\r\n"),
        "221 2.0.0 mx.test closing connection\r\n"
    );
    assert!(h.s.is_closed());
}

#[test]
fn pipelined_commands_are_answered_in_order_in_one_batch() {
    let mut h = Harness::new(config());
    h.ehlo();
    let r = h.send(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<nobody@mx.test>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n");
    assert_eq!(
        r,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 User unknown\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 mx.test closing connection\r\n"
    );
}

#[test]
fn session_waits_for_the_application_and_keeps_input() {
    let mut h = Harness::new(config());
    h.auto = false;
    h.ehlo();
    h.s.feed(h.now, b"MAIL FROM:<a@x.test>\r\nNOOP\r\n");
    assert!(matches!(h.s.poll_event(), Some(Event::Mail { .. })));
    assert!(h.s.is_waiting());
    assert_eq!(h.s.poll_event(), None);
    assert_eq!(
        h.out(),
        "",
        "nothing may be answered before the MAIL decision"
    );
    assert_eq!(
        h.s.poll_timeout(),
        None,
        "no timeout while the application decides"
    );
    h.s.answer(h.now, Answer::Reject(Reply::ext(451, 4, 3, 0, "try later")));
    assert_eq!(h.s.poll_event(), None);
    assert_eq!(h.out(), "451 4.3.0 try later\r\n250 2.0.0 Ok\r\n");
    // The rejected MAIL left no transaction behind.
    assert_eq!(
        h.send(b"RCPT TO:<b@mx.test>\r\n"),
        "503 5.5.1 Need MAIL command\r\n"
    );
}

#[test]
fn commands_are_case_insensitive_and_bare_lf_terminated_commands_work() {
    let mut h = Harness::new(config());
    assert!(h.send(b"ehlo client.test\n").starts_with("250-mx.test"));
    assert_eq!(h.send(b"noop\r\n"), "250 2.0.0 Ok\r\n");
}

#[test]
fn sequence_errors() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.send(b"MAIL FROM:<a@x.test>\r\n"),
        "503 5.5.1 Send EHLO/HELO first\r\n"
    );
    h.ehlo();
    assert_eq!(
        h.send(b"RCPT TO:<b@mx.test>\r\n"),
        "503 5.5.1 Need MAIL command\r\n"
    );
    assert_eq!(h.send(b"DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
    assert_eq!(h.send(b"MAIL FROM:<a@x.test>\r\n"), "250 2.1.0 Ok\r\n");
    assert_eq!(
        h.send(b"MAIL FROM:<a@x.test>\r\n"),
        "503 5.5.1 Nested MAIL command\r\n"
    );
    assert_eq!(h.send(b"DATA\r\n"), "554 5.5.1 No valid recipients\r\n");
    assert_eq!(
        h.send(b"RCPT TO:<nobody@mx.test>\r\n"),
        "550 5.1.1 User unknown\r\n"
    );
    assert_eq!(h.send(b"DATA\r\n"), "554 5.5.1 No valid recipients\r\n");
}

#[test]
fn rset_abandons_the_transaction() {
    let mut h = Harness::new(config());
    h.transaction();
    h.take_events();
    assert_eq!(h.send(b"RSET\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(h.take_events(), vec![Event::Reset]);
    assert_eq!(h.send(b"DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
}

#[test]
fn null_sender_and_postmaster() {
    let mut h = Harness::new(config());
    h.ehlo();
    h.send(b"MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\n");
    let ev = h.take_events();
    assert!(matches!(&ev[0], Event::Mail { from: None, .. }));
    assert_eq!(ev[1], Event::Rcpt { to: None });
}

#[test]
fn vrfy_does_not_enumerate_and_help_answers() {
    let mut h = Harness::new(config());
    assert!(h.send(b"VRFY root\r\n").starts_with("252 2.5.2 "));
    assert!(h.send(b"HELP\r\n").starts_with("214 2.0.0 "));
}

#[test]
fn unknown_and_malformed_commands() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.send(b"FOO bar\r\n"),
        "500 5.5.1 Command not recognized\r\n"
    );
    h.ehlo();
    assert_eq!(
        h.send(b"MAIL FROM:<a@@x>\r\n"),
        "501 5.1.3 Bad address syntax\r\n"
    );
    assert_eq!(
        h.send(b"MAIL FROM:<a@x.test> FOO=1\r\n"),
        "555 5.5.4 Unsupported or malformed parameter\r\n"
    );
}

#[test]
fn binary_junk_gets_errors_then_the_session_closes() {
    let mut c = config();
    c.max_errors = 3;
    let mut h = Harness::new(c);
    let r = h.send(b"\x00\xff\xfe\r\n\x80\x81\r\n\x16\x03\x01\x02\x00\r\n");
    let lines: Vec<&str> = r.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "{r}");
    assert!(lines[..3].iter().all(|l| l.starts_with("500 5.5.")), "{r}");
    assert_eq!(lines[3], "421 4.7.0 Too many errors, closing connection");
    assert!(h.s.is_closed());
}

#[test]
fn overlong_line_is_answered_once_and_sync_is_kept() {
    let mut c = config();
    c.max_line_length = 512;
    let mut h = Harness::new(c);
    let mut long = b"NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 2000));
    // Sent in two pieces: the first already exceeds the limit without a line end.
    assert_eq!(h.send(&long[..1000]), "500 5.5.2 Line too long\r\n");
    let mut rest = long[1000..].to_vec();
    rest.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(h.send(&rest), "250 2.0.0 Ok\r\n");
    // A long line arriving whole is answered the same way.
    let mut whole = long.clone();
    whole.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(
        h.send(&whole),
        "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n"
    );
}

/// Found by the smtp_session fuzz target: the error that hit `max_errors` was a line too
/// long arriving without its end, and the session went on discarding it instead of
/// closing, so more commands were answered after the 421.
#[test]
fn an_overlong_line_that_is_the_last_error_closes_the_session() {
    let mut c = config();
    c.max_line_length = 512;
    c.max_errors = 2;
    let mut h = Harness::new(c);
    assert!(h.send(b"FOO\r\n").starts_with("500 "));
    let long = vec![b'x'; 600];
    assert_eq!(
        h.send(&long),
        "500 5.5.2 Line too long\r\n421 4.7.0 Too many errors, closing connection\r\n"
    );
    assert!(h.s.is_closed());
    assert_eq!(h.send(b"\r\nDATA\r\n"), "");
}

#[test]
fn line_at_the_limit_is_accepted() {
    let mut c = config();
    c.max_line_length = 512;
    let mut h = Harness::new(c);
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 512 - 7));
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), 512);
    assert_eq!(h.send(&line), "250 2.0.0 Ok\r\n");
}

#[test]
fn size_parameter_over_the_limit_is_refused_at_mail() {
    let mut h = Harness::new(config());
    h.ehlo();
    assert_eq!(
        h.send(b"MAIL FROM:<a@x.test> SIZE=1001\r\n"),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        h.send(b"MAIL FROM:<a@x.test> SIZE=1000\r\n"),
        "250 2.1.0 Ok\r\n"
    );
}

#[test]
fn body_over_the_limit_is_refused_at_the_end_and_reset() {
    let mut h = Harness::new(config());
    h.transaction();
    h.send(b"DATA\r\n");
    h.take_events();
    let mut body = vec![b'a'; 1500];
    body.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    assert_eq!(
        h.send(&body),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 Ok\r\n"
    );
    let ev = h.take_events();
    assert!(ev.contains(&Event::Reset));
    assert!(!ev.contains(&Event::MessageEnd));
}

#[test]
fn body_exactly_at_the_limit_is_accepted() {
    let mut h = Harness::new(config());
    h.transaction();
    h.send(b"DATA\r\n");
    let mut body = vec![b'a'; 998];
    body.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(h.send(&body), "250 2.0.0 Ok: queued as Q1\r\n");
    assert_eq!(h.body().len(), 1000);
}

#[test]
fn smuggling_with_bare_lf_does_not_end_data_and_is_rejected() {
    let mut h = Harness::new(config());
    h.transaction();
    h.send(b"DATA\r\n");
    h.take_events();
    let r = h.send(b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\nforged\r\n.\r\n");
    assert_eq!(
        r,
        "550 5.6.0 Message contains bare CR or LF; lines must end with CRLF\r\n"
    );
    let ev = h.take_events();
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Mail { .. })),
        "smuggled MAIL was executed"
    );
    assert!(ev.contains(&Event::Reset));
}

#[test]
fn smuggling_with_bare_cr_does_not_end_data() {
    let mut h = Harness::new(config());
    h.transaction();
    h.send(b"DATA\r\n");
    let r = h.send(b"hi\r.\rMAIL FROM:<evil@x.test>\r\n");
    assert_eq!(r, "", "bare CR must not end DATA");
    let r = h.send(b".\r\n");
    assert!(r.starts_with("550 5.6.0"), "{r}");
}

#[test]
fn bare_line_endings_can_be_normalized() {
    let mut c = config();
    c.bare_line_endings = BareLineEndings::Normalize;
    let mut h = Harness::new(c);
    h.transaction();
    h.send(b"DATA\r\n");
    assert_eq!(h.send(b"a\nb\r\n.\r\n"), "250 2.0.0 Ok: queued as Q1\r\n");
    assert_eq!(h.body(), b"a\r\nb\r\n");
}

#[test]
fn bdat_chunks_are_taken_verbatim() {
    let mut h = Harness::new(config());
    h.transaction();
    assert_eq!(
        h.send(b"BDAT 5\r\nab\r\n."),
        "250 2.0.0 5 octets received\r\n"
    );
    assert_eq!(
        h.send(b"BDAT 3 LAST\r\n\r\n."),
        "250 2.0.0 Ok: queued as Q1\r\n"
    );
    assert_eq!(h.body(), b"ab\r\n.\r\n.");
    assert_eq!(h.send(b"DATA\r\n"), "503 5.5.1 Need MAIL command\r\n");
}

#[test]
fn bdat_split_across_reads_and_pipelined_with_commands() {
    let mut h = Harness::new(config());
    h.ehlo();
    let all = b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nBDAT 10 LAST\r\n0123456789QUIT\r\n";
    let mut out = String::new();
    for b in all.iter() {
        out.push_str(&h.send(std::slice::from_ref(b)));
    }
    assert_eq!(
        out,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 mx.test closing connection\r\n"
    );
    assert_eq!(h.body(), b"0123456789");
}

#[test]
fn bdat_without_transaction_still_consumes_its_octets() {
    let mut h = Harness::new(config());
    h.ehlo();
    assert_eq!(
        h.send(b"BDAT 6\r\nNOOP\r\nNOOP\r\n"),
        "503 5.5.1 Need MAIL command\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn bdat_zero_last_ends_the_message() {
    let mut h = Harness::new(config());
    h.transaction();
    h.send(b"BDAT 2\r\nhi");
    assert_eq!(h.send(b"BDAT 0 LAST\r\n"), "250 2.0.0 Ok: queued as Q1\r\n");
    assert_eq!(h.body(), b"hi");
}

#[test]
fn bdat_over_the_limit_fails_the_transaction_until_rset() {
    let mut h = Harness::new(config());
    h.transaction();
    let mut chunk = b"BDAT 1200\r\n".to_vec();
    chunk.extend(std::iter::repeat_n(b'x', 1200));
    assert_eq!(
        h.send(&chunk),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        h.send(b"BDAT 1 LAST\r\nx"),
        "503 5.5.1 Transaction failed, send RSET\r\n"
    );
    assert_eq!(h.send(b"RSET\r\n"), "250 2.0.0 Ok\r\n");
    assert!(!h.take_events().contains(&Event::MessageEnd));
}

#[test]
fn data_after_bdat_is_refused() {
    let mut h = Harness::new(config());
    h.transaction();
    h.send(b"BDAT 2\r\nhi");
    assert_eq!(h.send(b"DATA\r\n"), "503 5.5.1 DATA cannot follow BDAT\r\n");
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut c = config();
    c.starttls = StartTls::Offer;
    let mut h = Harness::new(c);
    h.ehlo();
    let r = h.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<b@mx.test>\r\n");
    assert_eq!(r, "220 2.0.0 Ready to start TLS\r\n");
    assert!(h.s.take_starttls());
    // More cleartext before the handshake is dropped too.
    assert_eq!(h.send(b"NOOP\r\n"), "");
    h.s.tls_established(tls_info());
    assert!(
        h.take_events().is_empty(),
        "injected commands must never run"
    );
    // The client must greet again; nothing of the cleartext session survives.
    assert_eq!(
        h.send(b"MAIL FROM:<a@x.test>\r\n"),
        "503 5.5.1 Send EHLO/HELO first\r\n"
    );
    assert!(h.ehlo().starts_with("250-mx.test"));
    assert_eq!(h.send(b"STARTTLS\r\n"), "503 5.5.1 TLS already active\r\n");
}

#[test]
fn starttls_refused_when_not_offered() {
    let mut h = Harness::new(config());
    h.ehlo();
    assert_eq!(
        h.send(b"STARTTLS\r\n"),
        "502 5.5.1 STARTTLS not available\r\n"
    );
}

#[test]
fn submission_requires_tls_then_auth_before_mail() {
    let mut h = Harness::new(submission());
    h.ehlo();
    assert_eq!(
        h.send(b"MAIL FROM:<a@x.test>\r\n"),
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
    assert_eq!(
        h.send(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    assert!(
        h.take_events().is_empty(),
        "no credentials may be taken over cleartext"
    );
    h.starttls();
    h.ehlo();
    assert_eq!(
        h.send(b"MAIL FROM:<a@x.test>\r\n"),
        "530 5.7.0 Authentication required\r\n"
    );
    assert_eq!(
        h.send(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        "235 2.7.0 Authentication successful\r\n"
    );
    assert_eq!(h.s.authenticated(), Some("alice"));
    assert_eq!(h.send(b"MAIL FROM:<a@x.test>\r\n"), "250 2.1.0 Ok\r\n");
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    let mut h = Harness::with(submission(), true);
    h.s.tls_established(tls_info());
    h.ehlo();
    assert_eq!(h.send(b"AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(
        h.send(b"AGFsaWNlAHNlY3JldA==\r\n"),
        "235 2.7.0 Authentication successful\r\n"
    );
    let ev = h.take_events();
    assert_eq!(
        ev.last(),
        Some(&Event::Auth {
            mechanism: SaslMechanism::Plain,
            authzid: String::new(),
            username: "alice".into(),
            password: "secret".into()
        })
    );
    assert_eq!(
        h.send(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        "503 5.5.1 Already authenticated\r\n"
    );
}

#[test]
fn auth_login_both_forms() {
    let mut h = Harness::with(submission(), true);
    h.ehlo();
    assert_eq!(h.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.send(b"YWxpY2U=\r\n"), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(
        h.send(b"c2VjcmV0\r\n"),
        "235 2.7.0 Authentication successful\r\n"
    );
    let mut h = Harness::with(submission(), true);
    h.ehlo();
    assert_eq!(h.send(b"AUTH LOGIN YWxpY2U=\r\n"), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(
        h.send(b"c2VjcmV0\r\n"),
        "235 2.7.0 Authentication successful\r\n"
    );
}

#[test]
fn auth_cancel_bad_base64_and_unknown_mechanism() {
    let mut h = Harness::with(submission(), true);
    h.ehlo();
    assert_eq!(h.send(b"AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(h.send(b"*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
    assert_eq!(h.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.send(b"!!!\r\n"), "501 5.5.2 Invalid base64 data\r\n");
    assert_eq!(
        h.send(b"AUTH CRAM-MD5\r\n"),
        "504 5.5.4 Unrecognized authentication type\r\n"
    );
    // Still in sync: a good AUTH works.
    assert_eq!(
        h.send(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        "235 2.7.0 Authentication successful\r\n"
    );
}

#[test]
fn wrong_passwords_close_the_session_after_the_limit() {
    let mut h = Harness::with(submission(), true);
    h.ehlo();
    let bad = b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n";
    assert_eq!(
        h.send(bad),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    assert_eq!(
        h.send(bad),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    assert_eq!(
        h.send(bad),
        "535 5.7.8 Authentication credentials invalid\r\n421 4.7.0 Too many failed authentications\r\n"
    );
    assert!(h.s.is_closed());
    assert_eq!(h.s.authenticated(), None);
}

#[test]
fn auth_not_offered_on_port_25() {
    let mut h = Harness::with(config(), true);
    h.ehlo();
    assert_eq!(
        h.send(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        "502 5.5.1 AUTH not available\r\n"
    );
}

#[test]
fn smtputf8_addresses_need_the_parameter() {
    let mut h = Harness::new(config());
    h.ehlo();
    assert_eq!(
        h.send("MAIL FROM:<jörg@x.test>\r\n".as_bytes()),
        "553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n"
    );
    assert_eq!(
        h.send("MAIL FROM:<jörg@x.test> SMTPUTF8\r\n".as_bytes()),
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(
        h.send("RCPT TO:<bücher@mx.test>\r\n".as_bytes()),
        "250 2.1.5 Ok\r\n"
    );
    let ev = h.take_events();
    assert_eq!(
        ev.last(),
        Some(&Event::Rcpt {
            to: Some(addr("bücher", "mx.test"))
        })
    );
}

#[test]
fn quoted_local_part_is_unquoted_in_the_event() {
    let mut h = Harness::new(config());
    h.ehlo();
    h.send(b"MAIL FROM:<\"john smith\"@x.test>\r\n");
    let ev = h.take_events();
    assert!(matches!(&ev[0], Event::Mail { from: Some(a), .. } if a.local == "john smith"));
}

#[test]
fn too_many_recipients() {
    let mut c = config();
    c.max_recipients = 2;
    let mut h = Harness::new(c);
    h.transaction();
    assert_eq!(h.send(b"RCPT TO:<c@mx.test>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(
        h.send(b"RCPT TO:<d@mx.test>\r\n"),
        "452 4.5.3 Too many recipients\r\n"
    );
}

#[test]
fn idle_timeout_closes_with_421() {
    let mut h = Harness::new(config());
    h.transaction();
    h.take_events();
    let deadline = h.s.poll_timeout().expect("a timer is armed");
    assert!(deadline > h.now);
    h.s.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!h.s.is_closed());
    h.s.handle_timeout(deadline);
    assert_eq!(h.out(), "421 4.4.2 mx.test Error: timeout exceeded\r\n");
    assert!(h.s.is_closed());
    h.pump();
    assert_eq!(h.take_events(), vec![Event::Reset]);
}

#[test]
fn shutdown_waits_for_the_message_in_flight() {
    let mut h = Harness::new(config());
    h.transaction();
    h.send(b"DATA\r\npart one\r\n");
    h.s.shutdown();
    assert!(!h.s.is_closed());
    let r = h.send(b"part two\r\n.\r\n");
    assert_eq!(
        r,
        "250 2.0.0 Ok: queued as Q1\r\n421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n"
    );
    assert!(h.s.is_closed());
}

#[test]
fn shutdown_when_idle_closes_at_once() {
    let mut h = Harness::new(config());
    h.ehlo();
    h.s.shutdown();
    assert!(h.out().starts_with("421 4.3.2"));
    assert!(h.s.is_closed());
}

#[test]
fn large_body_streams_in_bounded_chunks() {
    let mut c = config();
    c.max_message_size = 10 << 20;
    let mut h = Harness::new(c);
    h.transaction();
    h.send(b"DATA\r\n");
    let line = [b'y'; 998];
    let mut largest = 0;
    for _ in 0..5000 {
        h.s.feed(h.now, &line);
        h.s.feed(h.now, b"\r\n");
        while let Some(ev) = h.s.poll_event() {
            if let Event::Body(b) = &ev {
                largest = largest.max(b.len());
            }
        }
    }
    assert!(
        largest > 0 && largest <= 2 * 64 * 1024,
        "chunk of {largest} bytes"
    );
    assert!(h.s.buffered_input() < 64 * 1024);
}

#[test]
fn auth_plain_cannot_act_as_another_user() {
    let mut h = Harness::with(submission(), true);
    h.ehlo();
    // authzid "bob", authcid "alice": refused without asking the application.
    assert_eq!(
        h.send(b"AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n"),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    assert!(!h
        .take_events()
        .iter()
        .any(|e| matches!(e, Event::Auth { .. })));
    // The same identity twice is fine.
    assert_eq!(
        h.send(b"AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\n"),
        "235 2.7.0 Authentication successful\r\n"
    );
}
