//! State transitions of the POP3 session, driven through its sans-IO API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_core::pop3::{Event, Failure, Message, RespCode, Session, SessionConfig, State};
use ironpost_core::tls::{Protocol, TlsInfo};

fn tls() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        sni: None,
    }
}

/// Message texts of the test maildrop, as stored.
const M1: &[u8] = b"Subject: one\r\nFrom: a@b\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\n.\r\n..\r\nend\r\n";
const M3: &[u8] = b"Subject: three\nX: y\n\nbare\nlf\n.dot\n";

fn maildrop() -> Vec<Message> {
    [M1, M2, M3]
        .iter()
        .enumerate()
        .map(|(i, m)| Message {
            uidl: format!("{:08X}{:08X}", i + 1, 1_700_000_000u32),
            size: m.len() as u64,
        })
        .collect()
}

/// A test application: logins succeed for password "secret"; the maildrop is M1..M3;
/// messages are sent in chunks of `chunk` octets; every event is recorded.
struct H {
    s: Session,
    now: Instant,
    events: Vec<Event>,
    chunk: usize,
    /// Answer OpenMaildrop with this failure instead.
    refuse_maildrop: Option<Failure>,
    /// Answer Update with this failure.
    refuse_update: Option<Failure>,
    /// Leave these events unanswered.
    hold: bool,
}

impl H {
    fn with(cfg: SessionConfig, implicit_tls: bool) -> (H, String) {
        let now = Instant::now();
        let mut h = H {
            s: Session::new(Arc::new(cfg), implicit_tls, now),
            now,
            events: Vec::new(),
            chunk: 1 << 20,
            refuse_maildrop: None,
            refuse_update: None,
            hold: false,
        };
        let greeting = h.out();
        (h, greeting)
    }

    fn new(implicit_tls: bool) -> (H, String) {
        H::with(SessionConfig::default(), implicit_tls)
    }

    /// A session logged in over implicit TLS, output taken.
    fn transaction() -> H {
        let (mut h, _) = H::new(true);
        h.send("USER alice\r\n");
        let out = h.send("PASS secret\r\n");
        assert!(out.starts_with("+OK Logged in"), "{out}");
        assert_eq!(h.s.state(), State::Transaction);
        h.events.clear();
        h
    }

    fn out(&mut self) -> String {
        let mut v = Vec::new();
        self.s.take_output(&mut v);
        String::from_utf8(v).unwrap()
    }

    fn out_bytes(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        self.s.take_output(&mut v);
        v
    }

    fn send(&mut self, input: &str) -> String {
        self.send_bytes(input.as_bytes());
        self.out()
    }

    fn send_bytes(&mut self, input: &[u8]) {
        self.s.feed(self.now, input);
        self.pump();
    }

    fn pump(&mut self) {
        while let Some(ev) = self.s.poll_event() {
            self.events.push(ev.clone());
            if self.hold {
                continue;
            }
            self.answer(ev);
        }
    }

    fn answer(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::Login { pass, .. } => self.s.login_result(now, pass == "secret"),
            Event::OpenMaildrop => {
                let r = match self.refuse_maildrop.clone() {
                    Some(f) => Err(f),
                    None => Ok(maildrop()),
                };
                self.s.maildrop(now, r);
            }
            Event::Retr { msg } => self.stream(msg, [M1, M2, M3][msg as usize - 1]),
            Event::Top { msg, .. } => self.stream(msg, [M1, M2, M3][msg as usize - 1]),
            Event::Update { .. } => {
                let r = match self.refuse_update.clone() {
                    Some(f) => Err(f),
                    None => Ok(()),
                };
                self.s.update_done(now, r);
            }
        }
    }

    fn stream(&mut self, _msg: u32, text: &[u8]) {
        let now = self.now;
        self.s.message_begin(now);
        for c in text.chunks(self.chunk) {
            if !self.s.message_data(now, c) {
                break;
            }
        }
        self.s.message_end(now);
    }
}

/// The lines of a multi-line response after its status line, unstuffed, or panics.
fn multiline(out: &str) -> (String, Vec<String>) {
    let mut lines = out.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let mut body = Vec::new();
    for l in lines {
        if l == "." {
            return (status, body);
        }
        body.push(l.strip_prefix('.').unwrap_or(l).to_string());
    }
    panic!("no terminating dot in {out:?}");
}

#[test]
fn greeting() {
    let (h, greeting) = H::new(false);
    assert_eq!(greeting, "+OK ironpost ready\r\n");
    assert_eq!(h.s.state(), State::Authorization);
}

#[test]
fn capa_before_and_after_tls() {
    let (mut h, _) = H::new(false);
    let (status, caps) = multiline(&h.send("CAPA\r\n"));
    assert!(status.starts_with("+OK"));
    assert_eq!(
        caps,
        [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "STLS",
            "IMPLEMENTATION ironpost"
        ]
    );
    assert_eq!(h.send("STLS\r\n"), "+OK Begin TLS negotiation now\r\n");
    assert!(h.s.take_starttls());
    h.s.tls_established(tls());
    let (_, caps) = multiline(&h.send("CAPA\r\n"));
    assert!(caps.contains(&"USER".to_string()));
    assert!(caps.contains(&"SASL PLAIN".to_string()));
    assert!(!caps.contains(&"STLS".to_string()));
    assert!(h.s.tls().is_some());

    let (mut h, _) = H::new(true);
    let (_, caps) = multiline(&h.send("capa\r\n"));
    assert!(caps.contains(&"USER".to_string()) && !caps.contains(&"STLS".to_string()));
    // In TRANSACTION too.
    let mut h = H::transaction();
    let (_, caps) = multiline(&h.send("CAPA\r\n"));
    assert!(caps.contains(&"USER".to_string()) && caps.contains(&"TOP".to_string()));
}

#[test]
fn no_credentials_before_tls() {
    let (mut h, _) = H::new(false);
    for cmd in [
        "USER alice\r\n",
        "PASS secret\r\n",
        "AUTH PLAIN AGEAYg==\r\n",
        "AUTH\r\n",
    ] {
        assert_eq!(
            h.send(cmd),
            "-ERR [AUTH] Plaintext authentication disallowed before STLS\r\n",
            "{cmd}"
        );
    }
    assert!(h.events.is_empty());
    assert_eq!(h.s.state(), State::Authorization);

    // Without STLS offered (no TLS at all) credentials are never taken.
    let cfg = SessionConfig {
        starttls: false,
        ..SessionConfig::default()
    };
    let (mut h, _) = H::with(cfg, false);
    assert!(h.send("USER a\r\n").starts_with("-ERR [AUTH]"));
    assert_eq!(
        h.send("STLS\r\n"),
        "-ERR TLS is already active or not available\r\n"
    );
    let (_, caps) = multiline(&h.send("CAPA\r\n"));
    assert!(!caps.contains(&"STLS".to_string()) && !caps.contains(&"USER".to_string()));
}

#[test]
fn stls_drops_pipelined_cleartext() {
    let (mut h, _) = H::new(false);
    h.send_bytes(b"STLS\r\nUSER mallory\r\nPASS x\r\n");
    assert_eq!(h.out(), "+OK Begin TLS negotiation now\r\n");
    assert!(h.s.take_starttls());
    assert!(!h.s.take_starttls(), "once");
    // Cleartext arriving before the handshake is dropped too.
    h.send_bytes(b"PASS y\r\n");
    h.s.tls_established(tls());
    assert!(h.events.is_empty());
    assert_eq!(h.send("PASS secret\r\n"), "-ERR Send USER first\r\n");
    assert_eq!(
        h.send("STLS\r\n"),
        "-ERR TLS is already active or not available\r\n"
    );
}

#[test]
fn user_pass_login() {
    let (mut h, _) = H::new(true);
    assert_eq!(h.send("USER alice@example.test\r\n"), "+OK Send PASS\r\n");
    let out = h.send("PASS secret\r\n");
    assert_eq!(
        out,
        format!(
            "+OK Logged in; maildrop has 3 messages ({} octets)\r\n",
            M1.len() + M2.len() + M3.len()
        )
    );
    assert_eq!(
        h.events,
        [
            Event::Login {
                user: "alice@example.test".into(),
                pass: "secret".into()
            },
            Event::OpenMaildrop
        ]
    );
    assert_eq!(h.s.user(), Some("alice@example.test"));
    assert_eq!(h.s.state(), State::Transaction);
    assert_eq!(h.send("USER bob\r\n"), "-ERR Already logged in\r\n");
    assert_eq!(
        h.send("STLS\r\n"),
        "-ERR STLS is only valid before login\r\n"
    );
}

#[test]
fn the_reply_waits_for_both_answers() {
    let (mut h, _) = H::new(true);
    h.hold = true;
    h.send("USER alice\r\n");
    assert_eq!(h.send("PASS secret\r\nSTAT\r\n"), "");
    assert!(h.s.is_waiting());
    assert_eq!(
        h.s.poll_timeout(),
        None,
        "no autologout while the application works"
    );
    h.s.login_result(h.now, true);
    assert_eq!(h.s.poll_event(), Some(Event::OpenMaildrop));
    assert_eq!(h.out(), "", "nothing until the maildrop is open");
    h.s.maildrop(h.now, Ok(maildrop()));
    assert!(h.out().starts_with("+OK Logged in"));
    // The pipelined STAT runs now.
    assert_eq!(h.s.poll_event(), None);
    assert_eq!(
        h.out(),
        format!("+OK 3 {}\r\n", M1.len() + M2.len() + M3.len())
    );
}

#[test]
fn failed_logins() {
    let (mut h, _) = H::new(true);
    h.send("USER alice\r\n");
    assert_eq!(
        h.send("PASS wrong\r\n"),
        "-ERR [AUTH] Authentication failed\r\n"
    );
    assert_eq!(h.s.user(), None);
    assert_eq!(h.send("PASS secret\r\n"), "-ERR Send USER first\r\n");
    h.send("USER alice\r\n");
    assert!(h.send("PASS wrong again\r\n").starts_with("-ERR [AUTH]"));
    assert!(!h.s.is_closed());
    h.send("USER alice\r\n");
    assert!(h.send("PASS third\r\n").starts_with("-ERR [AUTH]"));
    assert!(h.s.is_closed(), "three failures close the connection");
    assert!(h.s.wants_close());
    assert_eq!(h.s.state(), State::Closed);
}

#[test]
fn maildrop_in_use() {
    let (mut h, _) = H::new(true);
    h.refuse_maildrop = Some(Failure::in_use());
    h.send("USER alice\r\n");
    assert_eq!(
        h.send("PASS secret\r\n"),
        "-ERR [IN-USE] Maildrop is locked by another POP3 session\r\n"
    );
    assert_eq!(h.s.state(), State::Authorization);
    assert_eq!(h.s.user(), None);
    assert_eq!(h.send("STAT\r\n"), "-ERR Log in first\r\n");
    // The lock went away: the client may try again; it is not a failed login.
    h.refuse_maildrop = None;
    for _ in 0..3 {
        h.send("USER alice\r\n");
        h.refuse_maildrop = Some(Failure::temp("Cannot open the maildrop"));
        assert_eq!(
            h.send("PASS secret\r\n"),
            "-ERR [SYS/TEMP] Cannot open the maildrop\r\n"
        );
    }
    assert!(!h.s.is_closed());
    h.refuse_maildrop = None;
    h.send("USER alice\r\n");
    assert!(h.send("PASS secret\r\n").starts_with("+OK Logged in"));
}

#[test]
fn auth_plain() {
    // Initial response.
    let (mut h, _) = H::new(true);
    let out = h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"); // \0alice\0secret
    assert!(out.starts_with("+OK Logged in"), "{out}");
    assert_eq!(
        h.events[0],
        Event::Login {
            user: "alice".into(),
            pass: "secret".into()
        }
    );

    // Challenge and response; mechanism name in any case.
    let (mut h, _) = H::new(true);
    assert_eq!(h.send("AUTH plain\r\n"), "+ \r\n");
    assert!(h
        .send("AGFsaWNlAHNlY3JldA==\r\n")
        .starts_with("+OK Logged in"));

    // Authorization identity equal to the user is fine; another one fails.
    let (mut h, _) = H::new(true);
    // alice\0alice\0secret
    assert!(h
        .send("AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\n")
        .starts_with("+OK Logged in"));
    let (mut h, _) = H::new(true);
    // bob\0alice\0secret
    assert_eq!(
        h.send("AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n"),
        "-ERR [AUTH] Authentication failed\r\n"
    );
    assert!(h.events.is_empty());

    // Cancel, bad base64, malformed, empty.
    let (mut h, _) = H::new(true);
    h.send("AUTH PLAIN\r\n");
    assert_eq!(h.send("*\r\n"), "-ERR Authentication cancelled\r\n");
    h.send("AUTH PLAIN\r\n");
    assert_eq!(h.send("!!!\r\n"), "-ERR Invalid base64\r\n");
    assert_eq!(h.send("AUTH PLAIN a\r\n"), "-ERR Invalid base64\r\n");
    assert_eq!(
        h.send("AUTH PLAIN YWxpY2U=\r\n"),
        "-ERR Malformed PLAIN response\r\n"
    );
    assert_eq!(
        h.send("AUTH PLAIN =\r\n"),
        "-ERR Malformed PLAIN response\r\n"
    );
    assert_eq!(
        h.send("AUTH CRAM-MD5\r\n"),
        "-ERR Unsupported authentication mechanism\r\n"
    );
    // Wrong password through AUTH.
    assert_eq!(
        h.send("AUTH PLAIN AGFsaWNlAHdyb25n\r\n"),
        "-ERR [AUTH] Authentication failed\r\n"
    );
    assert!(!h.s.is_closed());

    // AUTH alone lists the mechanisms.
    let (mut h, _) = H::new(true);
    let (status, mechs) = multiline(&h.send("AUTH\r\n"));
    assert!(status.starts_with("+OK"));
    assert_eq!(mechs, ["PLAIN"]);
}

#[test]
fn apop_is_refused() {
    let (mut h, _) = H::new(true);
    assert!(h
        .send("APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n")
        .starts_with("-ERR APOP is not supported"));
    assert!(h.events.is_empty());
}

#[test]
fn commands_need_the_right_state() {
    let (mut h, _) = H::new(true);
    for cmd in [
        "STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL",
    ] {
        assert_eq!(
            h.send(&format!("{cmd}\r\n")),
            "-ERR Log in first\r\n",
            "{cmd}"
        );
    }
    let mut h = H::transaction();
    for cmd in ["USER a", "PASS b", "AUTH PLAIN", "APOP a b"] {
        assert_eq!(
            h.send(&format!("{cmd}\r\n")),
            "-ERR Already logged in\r\n",
            "{cmd}"
        );
    }
}

#[test]
fn stat_list_uidl() {
    let mut h = H::transaction();
    let total = M1.len() + M2.len() + M3.len();
    assert_eq!(h.send("STAT\r\n"), format!("+OK 3 {total}\r\n"));
    let (status, lines) = multiline(&h.send("LIST\r\n"));
    assert_eq!(status, format!("+OK 3 messages ({total} octets)"));
    assert_eq!(
        lines,
        [
            format!("1 {}", M1.len()),
            format!("2 {}", M2.len()),
            format!("3 {}", M3.len())
        ]
    );
    assert_eq!(h.send("LIST 2\r\n"), format!("+OK 2 {}\r\n", M2.len()));
    let (_, lines) = multiline(&h.send("UIDL\r\n"));
    assert_eq!(
        lines,
        [
            "1 000000016553F100",
            "2 000000026553F100",
            "3 000000036553F100"
        ]
    );
    assert_eq!(h.send("UIDL 3\r\n"), "+OK 3 000000036553F100\r\n");
    for cmd in ["LIST 0", "LIST 4", "UIDL 0", "RETR 4", "TOP 9 1", "DELE 0"] {
        assert_eq!(
            h.send(&format!("{cmd}\r\n")),
            "-ERR No such message\r\n",
            "{cmd}"
        );
    }
    assert_eq!(h.send("NOOP\r\n"), "+OK Done\r\n");
}

#[test]
fn dele_and_rset() {
    let mut h = H::transaction();
    assert_eq!(h.send("DELE 2\r\n"), "+OK Message 2 deleted\r\n");
    assert_eq!(h.send("DELE 2\r\n"), "-ERR Message 2 already deleted\r\n");
    for cmd in ["LIST 2", "UIDL 2", "RETR 2", "TOP 2 0"] {
        assert_eq!(
            h.send(&format!("{cmd}\r\n")),
            "-ERR Message 2 already deleted\r\n",
            "{cmd}"
        );
    }
    let left = M1.len() + M3.len();
    assert_eq!(h.send("STAT\r\n"), format!("+OK 2 {left}\r\n"));
    // Numbers stay: message 3 is still 3.
    let (status, lines) = multiline(&h.send("LIST\r\n"));
    assert_eq!(status, format!("+OK 2 messages ({left} octets)"));
    assert_eq!(
        lines,
        [format!("1 {}", M1.len()), format!("3 {}", M3.len())]
    );
    let (_, lines) = multiline(&h.send("UIDL\r\n"));
    assert_eq!(lines, ["1 000000016553F100", "3 000000036553F100"]);
    assert_eq!(h.s.deleted(), [2]);
    let total = M1.len() + M2.len() + M3.len();
    assert_eq!(
        h.send("RSET\r\n"),
        format!("+OK Maildrop has 3 messages ({total} octets)\r\n")
    );
    assert!(h.s.deleted().is_empty());
    assert_eq!(h.send("LIST 2\r\n"), format!("+OK 2 {}\r\n", M2.len()));
    assert!(h.events.is_empty(), "DELE and RSET need no application");
}

#[test]
fn retr_is_byte_stuffed() {
    let mut h = H::transaction();
    let out = h.send("RETR 1\r\n");
    assert_eq!(h.events, [Event::Retr { msg: 1 }]);
    let want = format!(
        "+OK {} octets\r\nSubject: one\r\nFrom: a@b\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n",
        M1.len()
    );
    assert_eq!(out, want);
    let out = h.send("RETR 2\r\n");
    assert_eq!(
        out,
        format!(
            "+OK {} octets\r\nSubject: two\r\n\r\n..\r\n...\r\nend\r\n.\r\n",
            M2.len()
        )
    );
    // Bare LF line ends go out as CRLF.
    let out = h.send("RETR 3\r\n");
    assert_eq!(
        out,
        format!(
            "+OK {} octets\r\nSubject: three\r\nX: y\r\n\r\nbare\r\nlf\r\n..dot\r\n.\r\n",
            M3.len()
        )
    );
}

/// Every way of cutting a message into chunks gives the same response.
#[test]
fn stuffing_across_chunk_boundaries() {
    let text: &[u8] = b".first\r\nX: a\r\n\r\n.\r\n..\r\n.x\r\nbare\n.lf\n\r\n.\nno end.";
    let expected: &[u8] =
        b"..first\r\nX: a\r\n\r\n..\r\n...\r\n..x\r\nbare\r\n..lf\r\n\r\n..\r\nno end.\r\n.\r\n";
    for a in 0..=text.len() {
        for b in a..=text.len() {
            let mut h = H::transaction();
            h.s.feed(h.now, b"RETR 1\r\n");
            assert_eq!(h.s.poll_event(), Some(Event::Retr { msg: 1 }));
            h.s.message_begin(h.now);
            let _ = h.out();
            for part in [&text[..a], &text[a..b], &text[b..]] {
                assert!(h.s.message_data(h.now, part));
            }
            h.s.message_end(h.now);
            assert_eq!(h.out_bytes(), expected, "split at {a}, {b}");
        }
    }
}

#[test]
fn a_message_without_a_final_line_end_gets_one() {
    let mut h = H::transaction();
    h.s.feed(h.now, b"RETR 1\r\n");
    h.s.poll_event();
    h.s.message_begin(h.now);
    h.s.message_data(h.now, b"a\r\nb\r");
    h.s.message_end(h.now);
    assert!(h.out().ends_with("a\r\nb\r\n.\r\n"));
    // An empty message is an empty response.
    h.s.feed(h.now, b"RETR 2\r\n");
    h.s.poll_event();
    h.s.message_begin(h.now);
    h.s.message_end(h.now);
    assert_eq!(h.out(), format!("+OK {} octets\r\n.\r\n", M2.len()));
}

#[test]
fn top_sends_the_header_and_n_body_lines() {
    let mut h = H::transaction();
    let (status, lines) = multiline(&h.send("TOP 1 2\r\n"));
    assert_eq!(status, "+OK Top of message follows");
    assert_eq!(
        lines,
        ["Subject: one", "From: a@b", "", "line 1", ".line 2"]
    );
    assert_eq!(h.events, [Event::Top { msg: 1, lines: 2 }]);
    let (_, lines) = multiline(&h.send("TOP 1 0\r\n"));
    assert_eq!(lines, ["Subject: one", "From: a@b", ""]);
    let (_, lines) = multiline(&h.send("TOP 1 100\r\n"));
    assert_eq!(lines.len(), 6, "the whole message");
    let (_, lines) = multiline(&h.send("TOP 3 1\r\n"));
    assert_eq!(lines, ["Subject: three", "X: y", "", "bare"]);
    // TOP does not count as retrieval.
    h.events.clear();
    h.send("QUIT\r\n");
    assert_eq!(
        h.events,
        [Event::Update {
            deleted: vec![],
            retrieved: vec![]
        }]
    );
}

#[test]
fn top_across_chunk_boundaries_and_its_stop_signal() {
    let text: &[u8] = b"A: 1\r\nB: 2\r\n\r\n.one\r\ntwo\r\nthree\r\n";
    let expected: &[u8] = b"A: 1\r\nB: 2\r\n\r\n..one\r\ntwo\r\n.\r\n";
    for chunk in 1..=text.len() {
        let mut h = H::transaction();
        h.s.feed(h.now, b"TOP 1 2\r\n");
        assert_eq!(h.s.poll_event(), Some(Event::Top { msg: 1, lines: 2 }));
        h.s.message_begin(h.now);
        let status = h.out();
        assert_eq!(status, "+OK Top of message follows\r\n");
        let mut fed = 0;
        for c in text.chunks(chunk) {
            fed += c.len();
            if !h.s.message_data(h.now, c) {
                break;
            }
        }
        // It says "enough" as soon as the second body line is complete.
        let needed = b"A: 1\r\nB: 2\r\n\r\n.one\r\ntwo\r\n".len();
        assert!(
            fed >= needed && fed < needed + chunk,
            "chunk {chunk}: fed {fed}"
        );
        h.s.message_end(h.now);
        assert_eq!(h.out_bytes(), expected, "chunk {chunk}");
    }
}

#[test]
fn a_message_that_cannot_be_read() {
    let mut h = H::transaction();
    h.hold = true;
    h.send("RETR 1\r\nSTAT\r\n");
    assert_eq!(h.events, [Event::Retr { msg: 1 }]);
    assert!(h.s.is_waiting());
    h.s.message_failed(h.now, Failure::new(None, "Message was removed meanwhile"));
    assert_eq!(h.out(), "-ERR Message was removed meanwhile\r\n");
    h.pump();
    assert!(h.out().starts_with("+OK 3 "), "the pipelined STAT");

    // Failing mid-message cannot be told to the client in-band: the connection closes.
    h.send("RETR 2\r\n");
    h.s.message_begin(h.now);
    h.s.message_data(h.now, b"Subject: two\r\n");
    h.s.message_failed(h.now, Failure::temp("read error"));
    assert!(h.s.is_closed());
    assert!(!h.out().contains("read error"));
}

#[test]
fn quit_enters_update() {
    let mut h = H::transaction();
    h.send("RETR 1\r\nRETR 3\r\nDELE 3\r\nDELE 2\r\n");
    h.events.clear();
    let out = h.send("QUIT\r\n");
    assert_eq!(
        h.events,
        [Event::Update {
            deleted: vec![2, 3],
            retrieved: vec![1]
        }]
    );
    assert_eq!(out, "+OK ironpost signing off (1 messages left)\r\n");
    assert!(h.s.is_closed());
}

#[test]
fn update_waits_for_the_application() {
    let mut h = H::transaction();
    h.hold = true;
    h.send("DELE 1\r\n");
    assert_eq!(h.send("QUIT\r\nNOOP\r\n"), "");
    assert_eq!(h.s.state(), State::Update);
    assert_eq!(h.s.poll_timeout(), None);
    h.s.shutdown();
    assert!(!h.s.is_closed(), "the update in progress finishes");
    h.s.update_done(h.now, Ok(()));
    assert_eq!(h.out(), "+OK ironpost signing off (2 messages left)\r\n");
    assert!(h.s.is_closed());
}

#[test]
fn a_failed_update_is_reported() {
    let mut h = H::transaction();
    h.refuse_update = Some(Failure::temp("disk full"));
    h.send("DELE 1\r\n");
    assert_eq!(
        h.send("QUIT\r\n"),
        "-ERR [SYS/TEMP] Some deleted messages not removed: disk full\r\n"
    );
    assert!(h.s.is_closed());
}

#[test]
fn quit_before_login_deletes_nothing() {
    let (mut h, _) = H::new(false);
    assert_eq!(h.send("QUIT\r\n"), "+OK ironpost signing off\r\n");
    assert!(h.s.is_closed());
    assert!(h.events.is_empty());
}

#[test]
fn a_dropped_connection_deletes_nothing() {
    let mut h = H::transaction();
    h.send("DELE 1\r\nDELE 2\r\n");
    h.s.peer_closed();
    h.pump();
    assert!(h.events.is_empty(), "no Update");
    assert!(h.s.is_closed());
    // Input after the close is ignored.
    h.send("QUIT\r\n");
    assert!(h.events.is_empty());
}

#[test]
fn autologout() {
    let mut h = H::transaction();
    h.send("DELE 1\r\n");
    let deadline = h.s.poll_timeout().unwrap();
    assert!(
        deadline >= h.now + Duration::from_secs(600),
        "RFC 1939: at least 10 minutes"
    );
    h.s.handle_timeout(deadline - Duration::from_secs(1));
    assert!(!h.s.is_closed(), "not yet");
    h.s.handle_timeout(deadline);
    assert_eq!(h.out(), "-ERR Autologout; idle for too long\r\n");
    assert!(h.s.is_closed());
    h.pump();
    assert!(h.events.is_empty(), "no Update: nothing deleted");

    // Input rearms the timer.
    let (mut h, _) = H::new(false);
    let first = h.s.poll_timeout().unwrap();
    h.now += Duration::from_secs(60);
    h.send("CAPA\r\n");
    assert_eq!(h.s.poll_timeout().unwrap(), first + Duration::from_secs(60));
}

#[test]
fn shutdown_between_commands() {
    let mut h = H::transaction();
    h.send("DELE 1\r\n");
    h.s.shutdown();
    assert_eq!(h.out(), "-ERR [SYS/TEMP] Server shutting down\r\n");
    assert!(h.s.is_closed());
    h.pump();
    assert!(h.events.is_empty());
}

#[test]
fn shutdown_during_retr_finishes_it() {
    let mut h = H::transaction();
    h.hold = true;
    h.send("RETR 1\r\nSTAT\r\n");
    h.s.shutdown();
    assert!(!h.s.is_closed());
    h.s.message_begin(h.now);
    h.s.message_data(h.now, M1);
    h.s.message_end(h.now);
    let out = h.out();
    assert!(out.starts_with("+OK "), "{out}");
    assert!(
        out.ends_with(".\r\n-ERR [SYS/TEMP] Server shutting down\r\n"),
        "{out}"
    );
    assert!(h.s.is_closed());
    h.pump();
    assert_eq!(
        h.events,
        [Event::Retr { msg: 1 }],
        "the pipelined STAT is not run"
    );
}

#[test]
fn shutdown_during_login() {
    let (mut h, _) = H::new(true);
    h.hold = true;
    h.send("USER alice\r\nPASS secret\r\n");
    h.s.shutdown();
    h.s.login_result(h.now, true);
    assert_eq!(h.s.poll_event(), Some(Event::OpenMaildrop));
    h.s.maildrop(h.now, Ok(maildrop()));
    let out = h.out();
    assert!(out.starts_with("+OK Logged in"));
    assert!(out.ends_with("-ERR [SYS/TEMP] Server shutting down\r\n"));
    assert!(h.s.is_closed());
}

#[test]
fn answers_after_close_are_ignored() {
    let (mut h, _) = H::new(true);
    h.hold = true;
    h.send("USER alice\r\nPASS secret\r\n");
    h.s.peer_closed();
    h.s.login_result(h.now, true);
    h.s.maildrop(h.now, Ok(maildrop()));
    h.s.message_begin(h.now);
    assert!(!h.s.message_data(h.now, b"x"));
    h.s.message_end(h.now);
    h.s.update_done(h.now, Ok(()));
    assert_eq!(h.out(), "");
    assert_eq!(h.s.poll_event(), None);
}

#[test]
fn pipelined_commands_run_in_order() {
    let mut h = H::transaction();
    let out = h.send("STAT\r\nRETR 2\r\nLIST 1\r\nDELE 1\r\nUIDL 1\r\nRSET\r\nNOOP\r\n");
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert!(lines[0].starts_with("+OK 3 "));
    assert!(lines[1].starts_with(&format!("+OK {} octets", M2.len())));
    assert_eq!(lines[6], "end");
    assert_eq!(lines[7], ".", "end of RETR 2");
    assert_eq!(lines[8], format!("+OK 1 {}", M1.len()));
    assert_eq!(lines[9], "+OK Message 1 deleted");
    assert_eq!(lines[10], "-ERR Message 1 already deleted");
    assert!(lines[11].starts_with("+OK Maildrop has 3"));
    assert_eq!(lines[12], "+OK Done");
}

#[test]
fn long_listings_are_written_as_output_drains() {
    let cfg = SessionConfig {
        output_limit: 100,
        ..SessionConfig::default()
    };
    let (mut h, _) = H::with(cfg, true);
    h.hold = true;
    h.send("USER a\r\nPASS b\r\n");
    h.s.login_result(h.now, true);
    h.s.poll_event();
    let many: Vec<Message> = (1..=1000)
        .map(|i| Message {
            uidl: format!("{i:08X}6553F100"),
            size: 1000 + i,
        })
        .collect();
    h.s.maildrop(h.now, Ok(many));
    h.out();
    h.s.feed(h.now, b"UIDL\r\nSTAT\r\n");
    assert_eq!(h.s.poll_event(), None);
    let mut all = String::new();
    let mut rounds = 0;
    loop {
        let chunk = h.out();
        assert!(chunk.len() < 200, "bounded: {}", chunk.len());
        if chunk.is_empty() {
            break;
        }
        all += &chunk;
        rounds += 1;
        assert_eq!(h.s.poll_event(), None);
    }
    assert!(rounds > 50, "{rounds}");
    let (status, lines) = multiline(&all);
    assert!(status.starts_with("+OK"));
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[999], "1000 000003E86553F100");
    assert!(all.ends_with(".\r\n+OK 1000 1500500\r\n"), "then the STAT");
}

#[test]
fn overlong_lines_are_refused_and_skipped() {
    let (mut h, _) = H::new(true);
    let mut junk = vec![b'A'; 300];
    junk.extend_from_slice(b"\r\nCAPA\r\n");
    h.send_bytes(&junk);
    let out = h.out();
    assert!(
        out.starts_with("-ERR Command line too long\r\n+OK Capability list"),
        "{out}"
    );

    // The long line arrives in pieces: one -ERR, and the rest of it is skipped.
    let (mut h, _) = H::new(true);
    assert_eq!(h.send(&"B".repeat(200)), "");
    assert_eq!(h.send(&"B".repeat(200)), "-ERR Command line too long\r\n");
    assert_eq!(h.send(&"PASS x".repeat(100)), "");
    assert_eq!(h.send("\r\nNOOP\r\n"), "-ERR Log in first\r\n");
}

#[test]
fn too_many_errors_close() {
    let (mut h, _) = H::new(true);
    for _ in 0..9 {
        assert_eq!(h.send("BOGUS\r\n"), "-ERR Unknown command\r\n");
    }
    assert_eq!(
        h.send("BOGUS\r\n"),
        "-ERR Unknown command\r\n-ERR Too many invalid commands\r\n"
    );
    assert!(h.s.is_closed());
}

#[test]
fn resp_codes() {
    assert_eq!(RespCode::InUse.as_str(), "IN-USE");
    assert_eq!(RespCode::SysTemp.as_str(), "SYS/TEMP");
    assert_eq!(RespCode::SysPerm.as_str(), "SYS/PERM");
    assert_eq!(RespCode::Auth.as_str(), "AUTH");
    let mut h = H::transaction();
    h.hold = true;
    h.send("RETR 1\r\n");
    h.s.message_failed(
        h.now,
        Failure::new(Some(RespCode::SysPerm), "bad\r\nline\u{e9}"),
    );
    assert_eq!(
        h.out(),
        "-ERR [SYS/PERM] bad??line?\r\n",
        "one printable line"
    );
}

/// Random command streams in random pieces, with every event answered in some random way:
/// no panic, and the output is always whole CRLF lines.
#[test]
fn random_dialogues_never_panic() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let words = [
        "USER alice\r\n",
        "PASS secret\r\n",
        "PASS wrong\r\n",
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        "AUTH PLAIN\r\n",
        "*\r\n",
        "STAT\r\n",
        "LIST\r\n",
        "LIST 2\r\n",
        "UIDL\r\n",
        "RETR 1\r\n",
        "RETR 3\r\n",
        "TOP 2 1\r\n",
        "DELE 1\r\n",
        "RSET\r\n",
        "NOOP\r\n",
        "CAPA\r\n",
        "QUIT\r\n",
        "STLS\r\n",
        "BOGUS\r\n",
        "RETR 99\r\n",
        "\r\n",
        "\n",
        ".\r\n",
    ];
    let mut reached_transaction = 0;
    for round in 0..300 {
        let implicit = round % 2 == 0;
        let (mut h, _) = H::new(implicit);
        h.hold = true;
        let mut script = Vec::new();
        for _ in 0..rnd(30) {
            if rnd(10) == 0 {
                script.extend((0..rnd(300)).map(|_| rnd(256) as u8));
            } else {
                script.extend_from_slice(words[rnd(words.len() as u64) as usize].as_bytes());
            }
        }
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < script.len() && !h.s.is_closed() {
            let n = 1 + rnd(40) as usize;
            let end = (pos + n).min(script.len());
            h.s.feed(h.now, &script[pos..end]);
            pos = end;
            while let Some(ev) = h.s.poll_event() {
                let now = h.now;
                match (ev, rnd(4)) {
                    (Event::Login { pass, .. }, _) => h.s.login_result(now, pass == "secret"),
                    (Event::OpenMaildrop, 0) => h.s.maildrop(now, Err(Failure::in_use())),
                    (Event::OpenMaildrop, _) => h.s.maildrop(now, Ok(maildrop())),
                    (Event::Retr { .. } | Event::Top { .. }, 0) => {
                        h.s.message_failed(now, Failure::temp("gone"))
                    }
                    (Event::Retr { msg } | Event::Top { msg, .. }, k) => {
                        h.s.message_begin(now);
                        let text = [M1, M2, M3][msg as usize - 1];
                        for c in text.chunks(1 + k as usize * 7) {
                            if !h.s.message_data(now, c) {
                                break;
                            }
                        }
                        if rnd(20) == 0 {
                            h.s.message_failed(now, Failure::temp("read error"));
                        } else {
                            h.s.message_end(now);
                        }
                    }
                    (Event::Update { .. }, 0) => h.s.update_done(now, Err(Failure::temp("x"))),
                    (Event::Update { .. }, _) => h.s.update_done(now, Ok(())),
                }
            }
            if h.s.take_starttls() {
                h.s.tls_established(tls());
            }
            h.s.take_output(&mut out);
            if h.s.state() == State::Transaction {
                reached_transaction += 1;
            }
            match rnd(50) {
                0 => h.s.shutdown(),
                1 => h.s.peer_closed(),
                2 => h.s.handle_timeout(h.now + Duration::from_secs(3600)),
                _ => {}
            }
        }
        h.s.take_output(&mut out);
        if !out.is_empty() {
            assert!(out.ends_with(b"\r\n"), "round {round}: {out:?}");
        }
    }
    assert!(reached_transaction > 100, "{reached_transaction}");
}
