//! State transitions of the IMAP session, driven through its sans-IO API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_core::imap::session::{Event, Session, SessionConfig, State, Status};
use ironpost_core::imap::CommandBody;
use ironpost_core::tls::{Protocol, TlsInfo};

fn tls() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        sni: None,
    }
}

struct H {
    s: Session,
    now: Instant,
    events: Vec<Event>,
}

impl H {
    fn new(implicit_tls: bool) -> (H, String) {
        let cfg = SessionConfig {
            store_capabilities: vec!["UIDPLUS", "MOVE"],
            ..Default::default()
        };
        let now = Instant::now();
        let mut h = H {
            s: Session::new(Arc::new(cfg), implicit_tls, now),
            now,
            events: Vec::new(),
        };
        let greeting = h.out();
        (h, greeting)
    }

    fn out(&mut self) -> String {
        let mut v = Vec::new();
        self.s.take_output(&mut v);
        String::from_utf8(v).unwrap()
    }

    /// Feeds input; logins succeed for password "secret"; commands are completed OK.
    fn send(&mut self, input: &[u8]) -> String {
        self.s.feed(self.now, input);
        while let Some(ev) = self.s.poll_event() {
            match &ev {
                Event::Login { password, .. } => {
                    let ok = password == "secret";
                    self.events.push(ev);
                    self.s.login_result(self.now, ok);
                    continue;
                }
                Event::Command { command, .. } => {
                    let name = command.name();
                    self.events.push(ev);
                    self.s
                        .complete(self.now, Status::Ok, None, &format!("{name} completed"));
                    continue;
                }
                Event::AppendEnd => {
                    self.events.push(ev);
                    self.s.complete(
                        self.now,
                        Status::Ok,
                        Some("APPENDUID 1 1"),
                        "APPEND completed",
                    );
                    continue;
                }
                _ => self.events.push(ev),
            }
        }
        self.out()
    }

    fn login(&mut self) {
        let r = self.send(b"a LOGIN alice secret\r\n");
        assert!(r.starts_with("a OK [CAPABILITY "), "{r}");
    }
}

#[test]
fn greeting_on_143_offers_starttls_and_disables_login() {
    let (_, g) = H::new(false);
    assert_eq!(
        g,
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID ENABLE UTF8=ACCEPT IDLE STARTTLS LOGINDISABLED] ironpost ready\r\n"
    );
}

#[test]
fn greeting_on_993_offers_auth_plain() {
    let (_, g) = H::new(true);
    assert!(g.contains(" AUTH=PLAIN]"), "{g}");
    assert!(!g.contains("LOGINDISABLED"));
    assert!(!g.contains("STARTTLS"));
}

#[test]
fn login_refused_before_tls_and_no_event() {
    let (mut h, _) = H::new(false);
    assert_eq!(
        h.send(b"a LOGIN alice secret\r\n"),
        "a NO [PRIVACYREQUIRED] LOGIN is disabled until STARTTLS\r\n"
    );
    assert_eq!(
        h.send(b"b AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        "b NO [PRIVACYREQUIRED] AUTHENTICATE is disabled until STARTTLS\r\n"
    );
    assert!(h.events.is_empty());
}

#[test]
fn starttls_discards_pipelined_commands_then_login_works() {
    let (mut h, _) = H::new(false);
    let r = h.send(b"a STARTTLS\r\nb LOGIN alice secret\r\n");
    assert_eq!(r, "a OK Begin TLS negotiation now\r\n");
    assert!(h.s.take_starttls());
    assert_eq!(
        h.send(b"c NOOP\r\n"),
        "",
        "cleartext before the handshake is dropped"
    );
    h.s.tls_established(tls());
    assert!(h.events.is_empty());
    let caps = h.send(b"d CAPABILITY\r\n");
    assert!(
        caps.contains("AUTH=PLAIN") && !caps.contains("STARTTLS"),
        "{caps}"
    );
    h.login();
    assert_eq!(h.s.state(), State::Authenticated);
    assert_eq!(h.s.user(), Some("alice"));
}

#[test]
fn authenticate_plain_with_and_without_sasl_ir() {
    let (mut h, _) = H::new(true);
    let r = h.send(b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert!(r.starts_with("a OK [CAPABILITY "), "{r}");
    let (mut h, _) = H::new(true);
    assert_eq!(h.send(b"a AUTHENTICATE PLAIN\r\n"), "+ \r\n");
    let r = h.send(b"AGFsaWNlAHNlY3JldA==\r\n");
    assert!(r.starts_with("a OK "), "{r}");
    let (mut h, _) = H::new(true);
    h.send(b"a AUTHENTICATE PLAIN\r\n");
    assert_eq!(h.send(b"*\r\n"), "a BAD Authentication cancelled\r\n");
}

#[test]
fn wrong_passwords_end_the_session() {
    let (mut h, _) = H::new(true);
    for _ in 0..2 {
        assert_eq!(
            h.send(b"a LOGIN alice wrong\r\n"),
            "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
        );
    }
    assert_eq!(
        h.send(b"a LOGIN alice wrong\r\n"),
        "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n* BYE Too many authentication failures\r\n"
    );
    assert!(h.s.is_closed());
}

#[test]
fn state_rules() {
    let (mut h, _) = H::new(true);
    assert_eq!(h.send(b"a SELECT INBOX\r\n"), "a BAD Log in first\r\n");
    h.login();
    assert_eq!(
        h.send(b"b FETCH 1 FLAGS\r\n"),
        "b BAD No mailbox selected\r\n"
    );
    assert_eq!(h.send(b"c SELECT INBOX\r\n"), "c OK SELECT completed\r\n");
    assert_eq!(h.s.state(), State::Selected { read_only: false });
    assert_eq!(h.send(b"d FETCH 1 FLAGS\r\n"), "d OK FETCH completed\r\n");
    assert_eq!(h.send(b"e CLOSE\r\n"), "e OK CLOSE completed\r\n");
    assert_eq!(h.s.state(), State::Authenticated);
    assert_eq!(h.send(b"f EXAMINE INBOX\r\n"), "f OK EXAMINE completed\r\n");
    assert_eq!(h.s.state(), State::Selected { read_only: true });
    assert_eq!(h.send(b"g LOGIN x y\r\n"), "g BAD Already logged in\r\n");
}

#[test]
fn failed_select_deselects() {
    let (mut h, _) = H::new(true);
    h.login();
    h.send(b"a SELECT INBOX\r\n");
    h.s.feed(h.now, b"b SELECT Nope\r\n");
    assert!(matches!(h.s.poll_event(), Some(Event::Command { .. })));
    h.s.complete(h.now, Status::No, Some("NONEXISTENT"), "No such mailbox");
    assert_eq!(h.out(), "b NO [NONEXISTENT] No such mailbox\r\n");
    assert_eq!(h.s.state(), State::Authenticated);
}

#[test]
fn deleting_the_selected_mailbox_deselects_and_gone_elsewhere_ends_with_bye() {
    let (mut h, _) = H::new(true);
    h.login();
    h.send(b"a SELECT Temp\r\n");
    // This session's own DELETE: OK, then the authenticated state, no BYE.
    h.s.feed(h.now, b"b DELETE Temp\r\nc FETCH 1 FLAGS\r\nd NOOP\r\n");
    assert!(matches!(
        h.s.poll_event(),
        Some(Event::Command {
            command: CommandBody::Delete { .. },
            ..
        })
    ));
    h.s.complete(h.now, Status::Ok, None, "DELETE completed");
    h.s.deselect();
    assert_eq!(h.s.state(), State::Authenticated);
    // The pipelined commands are judged in the new state.
    assert_eq!(h.s.poll_event(), None);
    assert_eq!(
        h.out(),
        "b OK DELETE completed\r\nc BAD No mailbox selected\r\nd OK NOOP completed\r\n"
    );
    assert!(!h.s.is_closed());
    h.s.deselect();
    assert_eq!(h.s.state(), State::Authenticated, "nothing to deselect");
    assert_eq!(h.send(b"e SELECT INBOX\r\n"), "e OK SELECT completed\r\n");
    // Removed by someone else: BYE after the command's answer.
    h.s.feed(h.now, b"f NOOP\r\n");
    assert!(h.s.poll_event().is_some());
    h.s.complete(h.now, Status::Ok, None, "NOOP completed");
    h.s.mailbox_gone();
    assert_eq!(
        h.out(),
        "f OK NOOP completed\r\n* BYE Selected mailbox no longer exists\r\n"
    );
    assert!(h.s.is_closed());
}

#[test]
fn abort_closes_without_a_word_after_the_output_written() {
    let (mut h, _) = H::new(true);
    h.login();
    h.send(b"a SELECT INBOX\r\n");
    h.s.feed(h.now, b"b FETCH 1 BODY[]\r\nc NOOP\r\n");
    assert!(h.s.poll_event().is_some());
    h.s.write(b"* 1 FETCH (BODY[] {10}\r\nabc");
    h.s.abort();
    assert!(h.s.is_closed());
    assert_eq!(h.s.poll_event(), None, "nothing after the broken literal");
    h.s.complete(h.now, Status::Ok, None, "FETCH completed");
    assert_eq!(h.out(), "* 1 FETCH (BODY[] {10}\r\nabc");
}

#[test]
fn commands_wait_for_the_one_running() {
    let (mut h, _) = H::new(true);
    h.login();
    h.s.feed(h.now, b"a LIST \"\" *\r\nb NOOP\r\n");
    let ev = h.s.poll_event();
    assert!(
        matches!(ev, Some(Event::Command { ref tag, command: CommandBody::List { .. } }) if tag == "a")
    );
    assert_eq!(h.s.poll_event(), None);
    h.s.write(b"* LIST () \".\" INBOX\r\n");
    h.s.complete(h.now, Status::Ok, None, "LIST completed");
    assert_eq!(h.s.poll_event(), None);
    assert_eq!(
        h.out(),
        "* LIST () \".\" INBOX\r\na OK LIST completed\r\nb NOOP completed\r\n"
            .replace("b NOOP", "b OK NOOP")
    );
}

#[test]
fn synchronising_literal_gets_one_continuation() {
    let (mut h, _) = H::new(true);
    assert_eq!(h.send(b"a LOGIN {5}\r\n"), "+ Ready for literal data\r\n");
    assert_eq!(h.send(b"al"), "");
    assert_eq!(h.send(b"ice {6}\r\n"), "+ Ready for literal data\r\n");
    let r = h.send(b"secret\r\n");
    assert!(r.starts_with("a OK "), "{r}");
}

#[test]
fn non_synchronising_literal_needs_no_continuation() {
    let (mut h, _) = H::new(true);
    let r = h.send(b"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n");
    assert!(r.starts_with("a OK "), "{r}");
}

#[test]
fn append_streams_the_message() {
    let (mut h, _) = H::new(true);
    h.login();
    assert_eq!(
        h.send(b"a APPEND INBOX (\\Seen) {11}\r\n"),
        "+ Ready for literal data\r\n"
    );
    h.send(b"Hello");
    let r = h.send(b" world\r\nb NOOP\r\n");
    assert_eq!(
        r,
        "a OK [APPENDUID 1 1] APPEND completed\r\nb OK NOOP completed\r\n"
    );
    let data: Vec<u8> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::AppendData(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(data, b"Hello world");
    assert!(matches!(
        h.events
            .iter()
            .find(|e| matches!(e, Event::AppendStart { .. })),
        Some(Event::AppendStart { size: 11, .. })
    ));
}

#[test]
fn idle_until_done() {
    let (mut h, _) = H::new(true);
    h.login();
    h.send(b"s SELECT INBOX\r\n");
    assert_eq!(h.send(b"i IDLE\r\n"), "+ idling\r\n");
    assert!(h.s.is_idling());
    h.s.write(b"* 3 EXISTS\r\n");
    assert_eq!(
        h.send(b"DONE\r\n"),
        "* 3 EXISTS\r\ni OK IDLE terminated\r\n"
    );
    assert!(h.events.contains(&Event::IdleStart) && h.events.contains(&Event::IdleDone));
}

#[test]
fn malformed_commands_get_bad_and_too_many_end_the_session() {
    let (mut h, _) = H::new(true);
    assert_eq!(h.send(b"a FROB\r\n"), "a BAD Unknown command\r\n");
    assert_eq!(h.send(b"\r\n"), "* BAD Empty command line\r\n");
    let mut r = String::new();
    for _ in 0..30 {
        r = h.send(b"\x00\xff junk\r\n");
        if h.s.is_closed() {
            break;
        }
    }
    assert!(r.ends_with("* BYE Too many invalid commands\r\n"), "{r}");
}

#[test]
fn overlong_line_is_answered_and_skipped() {
    let (mut h, _) = H::new(true);
    let mut long = b"a NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 70 * 1024));
    let r = h.send(&long);
    assert!(r.contains("BAD"), "{r}");
    assert_eq!(h.send(b"xxxx\r\nb NOOP\r\n"), "b OK NOOP completed\r\n");
}

#[test]
fn logout() {
    let (mut h, _) = H::new(true);
    assert_eq!(
        h.send(b"a LOGOUT\r\n"),
        "* BYE Logging out\r\na OK LOGOUT completed\r\n"
    );
    assert!(h.s.is_closed());
}

#[test]
fn autologout_after_idle_timeout() {
    let (mut h, _) = H::new(true);
    h.login();
    let d = h.s.poll_timeout().unwrap();
    assert!(d >= h.now + Duration::from_secs(30 * 60));
    h.s.handle_timeout(d);
    assert_eq!(h.out(), "* BYE Autologout; idle for too long\r\n");
    assert!(h.s.is_closed());
}

#[test]
fn shutdown_waits_for_the_running_command() {
    let (mut h, _) = H::new(true);
    h.login();
    h.s.feed(h.now, b"a LIST \"\" *\r\n");
    h.s.poll_event();
    h.s.shutdown();
    assert!(!h.s.is_closed());
    h.s.complete(h.now, Status::Ok, None, "LIST completed");
    assert_eq!(
        h.out(),
        "a OK LIST completed\r\n* BYE Server shutting down\r\n"
    );
    assert!(h.s.is_closed());
}

#[test]
fn append_over_the_size_limit_is_refused_before_the_data() {
    let (mut h, _) = H::new(true);
    h.login();
    assert_eq!(
        h.send(b"a APPEND INBOX {20000000}\r\n"),
        "a NO [TOOBIG] Message too large\r\n"
    );
    assert!(!h.s.is_closed());
    assert_eq!(
        h.send(b"b APPEND INBOX {20000000+}\r\n"),
        "b NO [TOOBIG] Message too large\r\n* BYE Message too large\r\n"
    );
    assert!(h.s.is_closed());
}

#[test]
fn authenticate_plain_cannot_act_as_another_user() {
    let (mut h, _) = H::new(true);
    let r = h.send(b"a AUTHENTICATE PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n");
    assert_eq!(
        r,
        "a NO [AUTHORIZATIONFAILED] Cannot act as another user\r\n"
    );
    assert!(h.events.is_empty());
}

#[test]
fn answers_after_the_peer_left_are_ignored() {
    let (mut h, _) = H::new(true);
    h.s.feed(h.now, b"a LOGIN alice secret\r\n");
    assert!(matches!(h.s.poll_event(), Some(Event::Login { .. })));
    h.s.peer_closed();
    h.s.login_result(h.now, true);
    assert!(h.s.is_closed());
    assert_eq!(h.s.user(), None);
    h.s.complete(h.now, Status::Ok, None, "late");
    assert!(h.s.is_closed());
}

// ---------------------------------------------------------------------------------------
// UTF8=ACCEPT (RFC 6855, RFC 9755)

fn appended(h: &H) -> Vec<u8> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::AppendData(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn utf8_accept_is_advertised_next_to_enable() {
    let (mut h, g) = H::new(true);
    assert!(g.contains(" ENABLE UTF8=ACCEPT "), "{g}");
    h.login();
    let r = h.send(b"c CAPABILITY\r\n");
    assert!(r.contains(" ENABLE UTF8=ACCEPT "), "{r}");
    assert!(r.contains(" UIDPLUS MOVE\r\n"), "{r}");
}

#[test]
fn enable_utf8_accept_turns_utf8_mode_on_once() {
    let (mut h, _) = H::new(true);
    assert_eq!(
        h.send(b"a ENABLE UTF8=ACCEPT\r\n"),
        "a BAD Log in first\r\n"
    );
    assert!(!h.s.utf8_enabled());
    h.login();
    assert!(!h.s.utf8_enabled());
    // Unknown names are ignored; ENABLED lists what was enabled, in any case sent.
    assert_eq!(
        h.send(b"b ENABLE CONDSTORE utf8=Accept X-FOO\r\n"),
        "* ENABLED UTF8=ACCEPT\r\nb OK ENABLE completed\r\n"
    );
    assert!(h.s.utf8_enabled());
    // Already enabled: nothing newly enabled, and the mode stays.
    assert_eq!(
        h.send(b"c ENABLE UTF8=ACCEPT\r\n"),
        "* ENABLED\r\nc OK ENABLE completed\r\n"
    );
    assert_eq!(h.send(b"d SELECT INBOX\r\n"), "d OK SELECT completed\r\n");
    assert!(h.s.utf8_enabled());
    assert_eq!(h.send(b"e CLOSE\r\n"), "e OK CLOSE completed\r\n");
    assert!(h.s.utf8_enabled());
    // No ENABLE-able extension other than this one.
    assert!(h.events.iter().all(|e| !matches!(
        e,
        Event::Command {
            command: CommandBody::Enable(_),
            ..
        }
    )));
}

#[test]
fn enable_of_nothing_known_enables_nothing() {
    let (mut h, _) = H::new(true);
    h.login();
    assert_eq!(
        h.send(b"a ENABLE CONDSTORE UTF8=ONLY UTF8\r\n"),
        "* ENABLED\r\na OK ENABLE completed\r\n"
    );
    assert!(!h.s.utf8_enabled());
    assert_eq!(
        h.send(b"b ENABLE\r\n"),
        "b BAD Syntax error in arguments\r\n"
    );
}

#[test]
fn enable_is_refused_once_a_mailbox_is_selected() {
    let (mut h, _) = H::new(true);
    h.login();
    h.send(b"s EXAMINE INBOX\r\n");
    assert_eq!(
        h.send(b"a ENABLE UTF8=ACCEPT\r\n"),
        "a BAD ENABLE is only valid before SELECT or EXAMINE\r\n"
    );
    assert!(!h.s.utf8_enabled());
}

#[test]
fn append_utf8_streams_the_message_and_ends_with_a_parenthesis() {
    let (mut h, _) = H::new(true);
    h.login();
    h.send(b"e ENABLE UTF8=ACCEPT\r\n");
    // A synchronising literal8 gets its `+`, once.
    assert_eq!(
        h.send("a APPEND \"Entw\u{fc}rfe\" (\\Seen) UTF8 (~{13}\r\n".as_bytes()),
        "+ Ready for literal data\r\n"
    );
    assert_eq!(h.send("Gr\u{fc}\u{df}".as_bytes()), "");
    // The octets of the message are taken as they are, a `)` among them included.
    assert_eq!(h.send(b" (e)\r\n"), "");
    assert!(!h.events.iter().any(|e| matches!(e, Event::AppendEnd)));
    let r = h.send(b"x)\r\nb NOOP\r\n");
    assert_eq!(
        r,
        "a OK [APPENDUID 1 1] APPEND completed\r\nb OK NOOP completed\r\n"
    );
    assert_eq!(appended(&h), "Gr\u{fc}\u{df} (e)\r\nx".as_bytes());
    let Some(Event::AppendStart { mailbox, size, .. }) = h
        .events
        .iter()
        .find(|e| matches!(e, Event::AppendStart { .. }))
    else {
        panic!("no AppendStart")
    };
    assert_eq!((mailbox.as_utf8(), *size), (Some("Entw\u{fc}rfe"), 13));
}

#[test]
fn append_utf8_with_literal_plus_needs_no_continuation() {
    let (mut h, _) = H::new(true);
    h.login();
    let r = h.send(b"a APPEND INBOX UTF8 (~{5+}\r\nHello)\r\nb NOOP\r\n");
    assert_eq!(
        r,
        "a OK [APPENDUID 1 1] APPEND completed\r\nb OK NOOP completed\r\n"
    );
    assert_eq!(appended(&h), b"Hello");
}

#[test]
fn append_utf8_without_its_parenthesis_is_bad_and_aborted() {
    let (mut h, _) = H::new(true);
    h.login();
    let r = h.send(b"a APPEND INBOX UTF8 (~{5+}\r\nHello\r\nb NOOP\r\n");
    assert_eq!(
        r,
        "a BAD Expected \")\" and the end of the line after the APPEND UTF8 message\r\n\
         b OK NOOP completed\r\n"
    );
    assert!(h.events.iter().any(|e| matches!(e, Event::AppendAborted)));
    assert!(!h.events.iter().any(|e| matches!(e, Event::AppendEnd)));
    // The plain form still wants the CRLF alone.
    h.events.clear();
    let r = h.send(b"c APPEND INBOX {5+}\r\nHello)\r\n");
    assert_eq!(r, "c BAD Unexpected data after the APPEND message\r\n");
    assert!(h.events.iter().any(|e| matches!(e, Event::AppendAborted)));
}

#[test]
fn append_utf8_over_the_size_limit_is_refused_before_the_data() {
    let (mut h, _) = H::new(true);
    h.login();
    assert_eq!(
        h.send(b"a APPEND INBOX UTF8 (~{20000000}\r\n"),
        "a NO [TOOBIG] Message too large\r\n"
    );
    assert!(!h.s.is_closed());
}
