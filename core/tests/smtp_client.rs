//! The SMTP client session driven through recorded server dialogues: exact bytes sent,
//! events out. Every dialogue runs three times, with the server's bytes fed whole, one
//! octet at a time, and in 7-octet pieces: the results must not differ.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironpost_core::smtp::client::{
    AuthMechanisms, ClientConfig, ClientError, ClientEvent, ClientSession, Credentials, Envelope,
    Extensions, FailReason, ProtocolError, TlsMode,
};
use ironpost_core::smtp::reply_parse::ReplyError;
use ironpost_core::smtp::{Answer, Event, Reply, Session, SessionConfig};
use ironpost_core::tls::Protocol as _;

#[derive(Debug, Clone, Copy)]
enum Feed {
    Whole,
    Bytewise,
    Chunks(usize),
}

/// Postfix 3 as shipped by Debian, with CHUNKING switched off
/// (`smtpd_discard_ehlo_keywords = chunking`) so that it takes DATA.
const POSTFIX_EHLO: &str = "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n";

/// Exim, which offers CHUNKING.
const EXIM_EHLO: &str = "250-mx.example.org Hello client.test [192.0.2.1]\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 HELP\r\n";

/// An old sendmail-style server: no PIPELINING, no CHUNKING.
const LOCKSTEP_EHLO: &str = "250-relay.example.com Hello client.test [192.0.2.1], pleased to meet you\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250-DSN\r\n250 HELP\r\n";

fn r(wire: &str) -> Reply {
    Reply::parse(wire.as_bytes()).unwrap()
}

fn cfg() -> ClientConfig {
    let mut c = ClientConfig::new("client.test");
    c.starttls = TlsMode::Disabled;
    c
}

fn creds(allow_cleartext: bool) -> Option<Credentials> {
    Some(Credentials {
        username: "alice".into(),
        password: "secret".into(),
        allow_cleartext,
    })
}

fn env(from: &str, to: &[&str]) -> Envelope {
    Envelope {
        from: from.into(),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        size: None,
        eight_bit: false,
        smtputf8: false,
    }
}

struct H {
    s: ClientSession,
    now: Instant,
    feed: Feed,
    events: VecDeque<ClientEvent>,
}

impl H {
    fn new(feed: Feed, c: ClientConfig) -> Self {
        let now = Instant::now();
        H {
            s: ClientSession::new(Arc::new(c), now),
            now,
            feed,
            events: VecDeque::new(),
        }
    }

    fn implicit_tls(feed: Feed, c: ClientConfig) -> Self {
        let mut h = H::new(feed, c.clone());
        h.s = ClientSession::new_implicit_tls(Arc::new(c), h.now);
        h
    }

    fn collect(&mut self) {
        while let Some(e) = self.s.poll_event() {
            self.events.push_back(e);
        }
    }

    /// Bytes from the server.
    fn recv(&mut self, wire: &str) {
        self.recv_bytes(wire.as_bytes());
    }

    fn recv_bytes(&mut self, wire: &[u8]) {
        match self.feed {
            Feed::Whole => self.s.feed(self.now, wire),
            Feed::Bytewise => {
                for b in wire.chunks(1) {
                    self.s.feed(self.now, b);
                }
            }
            Feed::Chunks(n) => {
                for c in wire.chunks(n) {
                    self.s.feed(self.now, c);
                }
            }
        }
        self.collect();
    }

    fn sent(&mut self) -> String {
        let mut v = Vec::new();
        self.s.take_output(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[track_caller]
    fn expect_sent(&mut self, expected: &str) {
        assert_eq!(self.sent(), expected);
    }

    #[track_caller]
    fn event(&mut self) -> ClientEvent {
        self.collect();
        self.events.pop_front().expect("an event")
    }

    #[track_caller]
    fn no_event(&mut self) {
        self.collect();
        assert_eq!(self.events.pop_front(), None);
    }

    fn send(&mut self, e: Envelope) {
        self.s.send_message(self.now, e).unwrap();
        self.collect();
    }

    fn body(&mut self, b: &str) {
        self.s.body(self.now, b.as_bytes());
    }

    fn body_end(&mut self) {
        self.s.body_end(self.now);
        self.collect();
    }

    fn quit(&mut self) {
        self.s.quit(self.now);
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        self.s.handle_timeout(self.now);
        self.collect();
    }

    /// Greeting and EHLO, up to Ready.
    #[track_caller]
    fn greet(&mut self, ehlo: &str) -> Extensions {
        self.recv("220 mx.example.net ESMTP\r\n");
        self.expect_sent("EHLO client.test\r\n");
        self.recv(ehlo);
        match self.event() {
            ClientEvent::Ready { extensions, tls } => {
                assert_eq!(tls, self.s.is_tls());
                extensions
            }
            e => panic!("expected Ready, got {e:?}"),
        }
    }

    #[track_caller]
    fn expect_failed(&mut self, reply: Option<&str>, reason: FailReason) {
        assert_eq!(
            self.event(),
            ClientEvent::Failed {
                reply: reply.map(r),
                reason
            }
        );
    }

    #[track_caller]
    fn expect_closed(&mut self) {
        assert_eq!(self.event(), ClientEvent::Closed);
        assert!(self.s.is_closed());
        assert_eq!(self.s.poll_timeout(), None);
    }

    #[track_caller]
    fn expect_rcpt(&mut self, index: usize, reply: &str) {
        assert_eq!(
            self.event(),
            ClientEvent::RecipientResult {
                index,
                reply: r(reply)
            }
        );
    }

    #[track_caller]
    fn expect_result(&mut self, recipients: &[&str], reply: Option<&str>) {
        assert_eq!(
            self.event(),
            ClientEvent::TransactionResult {
                recipients: recipients.iter().map(|x| r(x)).collect(),
                reply: reply.map(r),
                eight_bit_unannounced: false,
            }
        );
    }
}

/// One dialogue, run with every way of splitting the server's bytes.
macro_rules! dialogue {
    ($name:ident, $f:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn whole() {
                ($f)(Feed::Whole)
            }
            #[test]
            fn byte_by_byte() {
                ($f)(Feed::Bytewise)
            }
            #[test]
            fn chunks_of_7() {
                ($f)(Feed::Chunks(7))
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Handshake

dialogue!(postfix_pipelined_delivery, |feed| {
    let mut h = H::new(feed, cfg());
    assert!(!h.s.is_ready());
    let ext = h.greet(POSTFIX_EHLO);
    assert!(ext.pipelining && ext.starttls && !ext.chunking);
    assert_eq!(ext.size_limit(), Some(10_240_000));
    assert!(h.s.is_ready());

    let mut e = env(
        "alice@client.test",
        &["bob@example.net", "carol@example.net"],
    );
    e.size = Some(321);
    h.send(e);
    // RFC 2920: MAIL, every RCPT and DATA in one batch.
    h.expect_sent(
        "MAIL FROM:<alice@client.test> SIZE=321\r\nRCPT TO:<bob@example.net>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n",
    );
    h.recv(
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
    );
    h.expect_rcpt(0, "250 2.1.5 Ok\r\n");
    h.expect_rcpt(1, "250 2.1.5 Ok\r\n");
    h.no_event();
    h.body("Subject: hi\r\n\r\nHello\r\n");
    h.body_end();
    h.expect_sent("Subject: hi\r\n\r\nHello\r\n.\r\n");
    h.recv("250 2.0.0 Ok: queued as 4F2B81234\r\n");
    let q = "250 2.0.0 Ok: queued as 4F2B81234\r\n";
    h.expect_result(&[q, q], Some(q));
    assert!(h.s.is_ready());
    h.quit();
    h.expect_sent("QUIT\r\n");
    h.recv("221 2.0.0 Bye\r\n");
    h.expect_closed();
});

dialogue!(lock_step_without_pipelining, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(LOCKSTEP_EHLO);
    h.send(env(
        "alice@client.test",
        &["bob@example.com", "carol@example.com"],
    ));
    h.expect_sent("MAIL FROM:<alice@client.test>\r\n");
    h.recv("250 2.1.0 <alice@client.test>... Sender ok\r\n");
    h.expect_sent("RCPT TO:<bob@example.com>\r\n");
    h.recv("250 2.1.5 <bob@example.com>... Recipient ok\r\n");
    h.expect_rcpt(0, "250 2.1.5 <bob@example.com>... Recipient ok\r\n");
    h.expect_sent("RCPT TO:<carol@example.com>\r\n");
    h.recv("250 2.1.5 <carol@example.com>... Recipient ok\r\n");
    h.expect_rcpt(1, "250 2.1.5 <carol@example.com>... Recipient ok\r\n");
    h.expect_sent("DATA\r\n");
    // The body may come before the server is ready for it: it waits in the session.
    h.body("Hi\r\n");
    h.body_end();
    h.expect_sent("");
    h.recv("354 Enter mail, end with \".\" on a line by itself\r\n");
    h.expect_sent("Hi\r\n.\r\n");
    h.recv("250 2.0.0 x1234 Message accepted for delivery\r\n");
    let ok = "250 2.0.0 x1234 Message accepted for delivery\r\n";
    h.expect_result(&[ok, ok], Some(ok));
});

dialogue!(helo_fallback, |feed| {
    let mut h = H::new(feed, cfg());
    h.recv("220 old.example.com SMTP ready\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv("502 5.5.2 Error: command not recognized\r\n");
    h.expect_sent("HELO client.test\r\n");
    h.recv("250 old.example.com\r\n");
    assert_eq!(
        h.event(),
        ClientEvent::Ready {
            extensions: Extensions::default(),
            tls: false
        }
    );
    // No ESMTP: no parameters, whatever the envelope says; 8-bit goes undeclared.
    let mut e = env("alice@client.test", &["bob@old.example.com"]);
    e.size = Some(10);
    e.eight_bit = true;
    h.send(e);
    h.expect_sent("MAIL FROM:<alice@client.test>\r\n");
    h.recv("250 ok\r\n");
    h.expect_sent("RCPT TO:<bob@old.example.com>\r\n");
    h.recv("250 ok\r\n");
    h.expect_rcpt(0, "250 ok\r\n");
    h.expect_sent("DATA\r\n");
    h.recv("354 go ahead\r\n");
    h.body("caf\u{e9}\r\n");
    h.body_end();
    h.expect_sent("caf\u{e9}\r\n.\r\n");
    h.recv("250 ok 1700000000 qp 123\r\n");
    assert_eq!(
        h.event(),
        ClientEvent::TransactionResult {
            recipients: vec![r("250 ok 1700000000 qp 123\r\n")],
            reply: Some(r("250 ok 1700000000 qp 123\r\n")),
            eight_bit_unannounced: true,
        }
    );
});

dialogue!(helo_fallback_on_500_and_refused_helo, |feed| {
    let mut h = H::new(feed, cfg());
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv("500 Command unrecognized\r\n");
    h.expect_sent("HELO client.test\r\n");
    h.recv("550 Go away\r\n");
    h.expect_failed(Some("550 Go away\r\n"), FailReason::Helo);
    h.expect_sent("QUIT\r\n");
    h.recv("221 Bye\r\n");
    h.expect_closed();
});

dialogue!(ehlo_4xx_fails_without_helo, |feed| {
    let mut h = H::new(feed, cfg());
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv("451 4.3.0 Try later\r\n");
    h.expect_failed(Some("451 4.3.0 Try later\r\n"), FailReason::Helo);
    h.expect_sent("QUIT\r\n");
});

dialogue!(starttls_opportunistic, |feed| {
    let mut c = cfg();
    c.starttls = TlsMode::Opportunistic;
    let mut h = H::new(feed, c);
    h.recv("220 mx.example.net ESMTP Postfix\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv(POSTFIX_EHLO);
    h.expect_sent("STARTTLS\r\n");
    // A man in the middle appends a reply in cleartext: it must never be read.
    h.recv("220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 AUTH PLAIN\r\n");
    assert_eq!(h.event(), ClientEvent::StartTls);
    h.no_event();
    h.recv("250 more cleartext\r\n");
    h.no_event();
    h.expect_sent("");
    assert!(h.s.poll_timeout().is_some());
    h.s.tls_established(h.now);
    assert!(h.s.is_tls());
    h.expect_sent("EHLO client.test\r\n");
    h.recv("250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n");
    match h.event() {
        ClientEvent::Ready { extensions, tls } => {
            assert!(tls);
            // What was learned in cleartext is forgotten.
            assert!(!extensions.starttls && !extensions.smtputf8);
            assert!(extensions.pipelining);
        }
        e => panic!("{e:?}"),
    }
});

dialogue!(starttls_opportunistic_not_offered_or_refused, |feed| {
    let mut c = cfg();
    c.starttls = TlsMode::Opportunistic;
    let mut h = H::new(feed, c.clone());
    let ext = h.greet(LOCKSTEP_EHLO);
    assert!(!ext.starttls);
    assert!(!h.s.is_tls());

    let mut h = H::new(feed, c);
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv(POSTFIX_EHLO);
    h.expect_sent("STARTTLS\r\n");
    h.recv("454 4.7.0 TLS not available due to local problem\r\n");
    match h.event() {
        ClientEvent::Ready { tls, .. } => assert!(!tls),
        e => panic!("{e:?}"),
    }
});

dialogue!(starttls_required_but_missing, |feed| {
    let mut c = cfg();
    c.starttls = TlsMode::Required;
    let mut h = H::new(feed, c);
    h.recv("220 relay.example.com ESMTP\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv(LOCKSTEP_EHLO);
    h.expect_failed(None, FailReason::StartTlsRequired);
    h.expect_sent("QUIT\r\n");
    assert!(!h.s.is_closed());
    h.recv("221 2.0.0 closing connection\r\n");
    h.expect_closed();
});

dialogue!(starttls_required_but_refused, |feed| {
    let mut c = cfg();
    c.starttls = TlsMode::Required;
    let mut h = H::new(feed, c);
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv(POSTFIX_EHLO);
    h.expect_sent("STARTTLS\r\n");
    h.recv("454 4.7.0 TLS not available\r\n");
    h.expect_failed(
        Some("454 4.7.0 TLS not available\r\n"),
        FailReason::StartTls,
    );
    h.expect_sent("QUIT\r\n");
});

const SUBMISSION_EHLO: &str =
    "250-smtp.example.com\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250-AUTH LOGIN PLAIN XOAUTH2\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";

dialogue!(auth_plain_success, |feed| {
    let mut c = cfg();
    c.auth = creds(false);
    let mut h = H::implicit_tls(feed, c);
    h.recv("220 smtp.example.com ESMTP\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv(SUBMISSION_EHLO);
    // base64("\0alice\0secret")
    h.expect_sent("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    h.no_event();
    h.recv("235 2.7.0 Accepted\r\n");
    match h.event() {
        ClientEvent::Ready { extensions, tls } => {
            assert!(tls);
            assert_eq!(
                extensions.auth,
                AuthMechanisms {
                    plain: true,
                    login: true
                }
            );
        }
        e => panic!("{e:?}"),
    }
});

dialogue!(auth_plain_after_empty_challenge, |feed| {
    let mut c = cfg();
    c.auth = creds(false);
    let mut h = H::implicit_tls(feed, c);
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv(SUBMISSION_EHLO);
    h.expect_sent("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    h.recv("334 \r\n");
    h.expect_sent("AGFsaWNlAHNlY3JldA==\r\n");
    h.recv("235 ok\r\n");
    assert!(matches!(h.event(), ClientEvent::Ready { .. }));
});

dialogue!(auth_login_success, |feed| {
    let mut c = cfg();
    c.auth = creds(false);
    let mut h = H::implicit_tls(feed, c);
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv("250-x\r\n250 AUTH LOGIN\r\n");
    h.expect_sent("AUTH LOGIN\r\n");
    h.recv("334 VXNlcm5hbWU6\r\n");
    h.expect_sent("YWxpY2U=\r\n");
    h.recv("334 UGFzc3dvcmQ6\r\n");
    h.expect_sent("c2VjcmV0\r\n");
    h.no_event();
    h.recv("235 2.7.0 Authentication successful\r\n");
    assert!(matches!(h.event(), ClientEvent::Ready { tls: true, .. }));
});

dialogue!(auth_535, |feed| {
    let mut c = cfg();
    c.auth = creds(false);
    let mut h = H::implicit_tls(feed, c);
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv(SUBMISSION_EHLO);
    h.expect_sent("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    h.recv("535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 https://support.example.com\r\n");
    assert_eq!(
        h.event(),
        ClientEvent::Failed {
            reply: Some(Reply::ext(
                535,
                5,
                7,
                8,
                "Username and Password not accepted.\nhttps://support.example.com"
            )),
            reason: FailReason::Auth
        }
    );
    h.expect_sent("QUIT\r\n");
    h.recv("221 2.0.0 closing connection\r\n");
    h.expect_closed();
    assert_eq!(
        h.s.send_message(h.now, env("a@b", &["c@d"])),
        Err(ClientError::Closed)
    );
});

dialogue!(auth_login_refused_at_password, |feed| {
    let mut c = cfg();
    c.auth = creds(false);
    let mut h = H::implicit_tls(feed, c);
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv("250-x\r\n250 AUTH=LOGIN\r\n");
    h.expect_sent("AUTH LOGIN\r\n");
    h.recv("334 VXNlcm5hbWU6\r\n");
    h.expect_sent("YWxpY2U=\r\n");
    h.recv("334 UGFzc3dvcmQ6\r\n");
    h.expect_sent("c2VjcmV0\r\n");
    h.recv("535 5.7.8 Authentication credentials invalid\r\n");
    h.expect_failed(
        Some("535 5.7.8 Authentication credentials invalid\r\n"),
        FailReason::Auth,
    );
});

dialogue!(auth_never_in_cleartext_unless_allowed, |feed| {
    let mut c = cfg();
    c.auth = creds(false);
    let mut h = H::new(feed, c.clone());
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv(SUBMISSION_EHLO);
    h.expect_failed(None, FailReason::AuthNeedsTls);
    h.expect_sent("QUIT\r\n");

    c.auth = creds(true);
    let mut h = H::new(feed, c);
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv(SUBMISSION_EHLO);
    h.expect_sent("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
});

dialogue!(auth_not_offered, |feed| {
    let mut c = cfg();
    c.auth = creds(false);
    let mut h = H::implicit_tls(feed, c);
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    h.recv("250-x\r\n250 AUTH CRAM-MD5\r\n");
    h.expect_failed(None, FailReason::AuthNotOffered);
    h.expect_sent("QUIT\r\n");
});

dialogue!(starttls_then_auth, |feed| {
    let mut c = cfg();
    c.starttls = TlsMode::Required;
    c.auth = creds(false);
    let mut h = H::new(feed, c);
    h.recv("220 x\r\n");
    h.expect_sent("EHLO client.test\r\n");
    // AUTH offered in cleartext is not used: STARTTLS comes first.
    h.recv("250-x\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
    h.expect_sent("STARTTLS\r\n");
    h.recv("220 go\r\n");
    assert_eq!(h.event(), ClientEvent::StartTls);
    h.s.tls_established(h.now);
    h.expect_sent("EHLO client.test\r\n");
    h.recv("250-x\r\n250 AUTH PLAIN\r\n");
    h.expect_sent("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    h.recv("235 ok\r\n");
    assert!(matches!(h.event(), ClientEvent::Ready { tls: true, .. }));
});

// ---------------------------------------------------------------------------------------
// Transactions

dialogue!(multi_recipient_one_rejected, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env(
        "",
        &["a@example.net", "nobody@example.net", "c@example.net"],
    ));
    h.expect_sent("MAIL FROM:<>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<nobody@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n");
    let unknown = "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient table\r\n";
    h.recv("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
    h.recv(unknown);
    h.recv("250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
    h.expect_rcpt(0, "250 2.1.5 Ok\r\n");
    h.expect_rcpt(1, unknown);
    h.expect_rcpt(2, "250 2.1.5 Ok\r\n");
    h.body("x\r\n");
    h.body_end();
    h.expect_sent("x\r\n.\r\n");
    let q = "250 2.0.0 Ok: queued as ABC\r\n";
    h.recv(q);
    h.expect_result(&[q, unknown, q], Some(q));
});

dialogue!(all_recipients_rejected_pipelined, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@client.test", &["x@example.net", "y@example.net"]));
    h.body("never sent\r\n");
    h.body_end();
    h.expect_sent("MAIL FROM:<a@client.test>\r\nRCPT TO:<x@example.net>\r\nRCPT TO:<y@example.net>\r\nDATA\r\n");
    let x = "550 5.1.1 <x@example.net>: User unknown\r\n";
    let y = "450 4.2.0 <y@example.net>: Recipient address rejected: Greylisted\r\n";
    h.recv("250 2.1.0 Ok\r\n");
    h.recv(x);
    h.recv(y);
    // DATA was already sent: the server refuses it, then the client resets.
    h.expect_sent("");
    h.recv("554 5.5.1 Error: no valid recipients\r\n");
    h.expect_sent("RSET\r\n");
    h.expect_rcpt(0, x);
    h.expect_rcpt(1, y);
    h.no_event();
    assert!(!h.s.is_ready());
    h.recv("250 2.0.0 Ok\r\n");
    h.expect_result(&[x, y], None);
    assert!(h.s.is_ready());
    // The connection goes on to the next message.
    h.send(env("a@client.test", &["z@example.net"]));
    h.expect_sent("MAIL FROM:<a@client.test>\r\nRCPT TO:<z@example.net>\r\nDATA\r\n");
});

dialogue!(all_recipients_rejected_lock_step, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(LOCKSTEP_EHLO);
    h.send(env("a@client.test", &["x@example.com"]));
    h.expect_sent("MAIL FROM:<a@client.test>\r\n");
    h.recv("250 2.1.0 Sender ok\r\n");
    h.expect_sent("RCPT TO:<x@example.com>\r\n");
    let x = "550 5.1.1 <x@example.com>... User unknown\r\n";
    h.recv(x);
    h.expect_rcpt(0, x);
    // No DATA: straight to RSET.
    h.expect_sent("RSET\r\n");
    h.recv("250 2.0.0 Reset state\r\n");
    h.expect_result(&[x], None);
});

dialogue!(
    pipelined_data_accepted_with_no_recipients_is_fatal,
    |feed| {
        let mut h = H::new(feed, cfg());
        h.greet(POSTFIX_EHLO);
        h.send(env("a@b", &["x@example.net"]));
        h.sent();
        h.recv("250 Ok\r\n550 no\r\n354 go ahead\r\n");
        h.expect_rcpt(0, "550 no\r\n");
        // The recipients' outcome was known before the server went wrong.
        h.expect_result(&["550 no\r\n"], None);
        h.expect_failed(
            Some("354 go ahead\r\n"),
            FailReason::Protocol(ProtocolError::UnexpectedCode(354)),
        );
        h.expect_closed();
        // Not even QUIT: the server is reading message text now.
        h.expect_sent("");
    }
);

dialogue!(rcpt_452_too_many, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@client.test", &["r1@example.net", "r2@example.net"]));
    h.sent();
    let t = "452 4.5.3 Error: too many recipients\r\n";
    h.recv("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
    h.recv(t);
    h.recv("354 End data\r\n");
    h.expect_rcpt(0, "250 2.1.5 Ok\r\n");
    h.expect_rcpt(1, t);
    h.body("m\r\n");
    h.body_end();
    h.expect_sent("m\r\n.\r\n");
    h.recv("250 2.0.0 Ok: queued as Q\r\n");
    // The second recipient's outcome is temporary: the queue retries it.
    h.expect_result(
        &["250 2.0.0 Ok: queued as Q\r\n", t],
        Some("250 2.0.0 Ok: queued as Q\r\n"),
    );
});

dialogue!(mail_552_size_pipelined, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    let mut e = env("a@client.test", &["r@example.net"]);
    e.size = Some(9_000_000);
    h.send(e);
    h.expect_sent("MAIL FROM:<a@client.test> SIZE=9000000\r\nRCPT TO:<r@example.net>\r\nDATA\r\n");
    h.body("body\r\n");
    h.body_end();
    let big = "552 5.3.4 Message size exceeds fixed limit\r\n";
    h.recv(big);
    h.recv("503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n");
    // No transaction at the server: no RSET; the body never leaves.
    h.expect_sent("");
    h.expect_failed(Some(big), FailReason::Mail);
    h.no_event();
    assert!(h.s.is_ready());
});

dialogue!(mail_refused_lock_step, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(LOCKSTEP_EHLO);
    h.send(env("spam@bad.test", &["r@example.com"]));
    h.expect_sent("MAIL FROM:<spam@bad.test>\r\n");
    h.recv("553 5.1.8 <spam@bad.test>... Domain of sender address does not exist\r\n");
    h.expect_failed(
        Some("553 5.1.8 <spam@bad.test>... Domain of sender address does not exist\r\n"),
        FailReason::Mail,
    );
    h.expect_sent("");
    assert!(h.s.is_ready());
});

dialogue!(size_refused_locally, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(LOCKSTEP_EHLO);
    let mut e = env("a@client.test", &["r@example.com"]);
    e.size = Some(1_000_001);
    h.send(e);
    assert_eq!(
        h.event(),
        ClientEvent::Failed {
            reply: Some(Reply::ext(
                552,
                5,
                3,
                4,
                "Message size 1000001 exceeds the server's limit of 1000000"
            )),
            reason: FailReason::MessageTooBig
        }
    );
    h.expect_sent("");
    assert!(h.s.is_ready());
    // Exactly at the limit is fine.
    let mut e = env("a@client.test", &["r@example.com"]);
    e.size = Some(1_000_000);
    h.send(e);
    h.expect_sent("MAIL FROM:<a@client.test> SIZE=1000000\r\n");
});

dialogue!(smtputf8_and_8bitmime, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    let mut e = env("j\u{f6}rg@client.test", &["r@example.net"]);
    e.eight_bit = true;
    h.send(e);
    h.expect_sent("MAIL FROM:<j\u{f6}rg@client.test> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<r@example.net>\r\nDATA\r\n");

    let mut h = H::new(feed, cfg());
    h.greet(LOCKSTEP_EHLO);
    let mut e = env("a@client.test", &["r@example.com"]);
    e.smtputf8 = true;
    h.send(e);
    h.expect_failed(
        Some("553 5.6.7 The message needs SMTPUTF8, which the server does not offer\r\n"),
        FailReason::Smtputf8Unsupported,
    );
    h.expect_sent("");
    // Non-ASCII addresses imply it.
    h.send(env("a@client.test", &["\u{3b1}@example.com"]));
    assert!(matches!(
        h.event(),
        ClientEvent::Failed {
            reason: FailReason::Smtputf8Unsupported,
            ..
        }
    ));
});

dialogue!(end_of_data_4xx_and_5xx, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    for fin in [
        "451 4.3.0 Error: queue file write error\r\n",
        "554-5.7.1 Message rejected as spam\r\n554 5.7.1 see https://example.net/spam\r\n",
    ] {
        h.send(env("a@client.test", &["r@example.net", "bad@example.net"]));
        h.expect_sent("MAIL FROM:<a@client.test>\r\nRCPT TO:<r@example.net>\r\nRCPT TO:<bad@example.net>\r\nDATA\r\n");
        h.recv("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n354 go\r\n");
        h.expect_rcpt(0, "250 2.1.5 Ok\r\n");
        h.expect_rcpt(1, "550 5.1.1 unknown\r\n");
        h.body("spam\r\n");
        h.body_end();
        h.expect_sent("spam\r\n.\r\n");
        h.recv(fin);
        h.expect_result(&[fin, "550 5.1.1 unknown\r\n"], Some(fin));
        // The end of data ends the transaction at the server: no RSET.
        h.expect_sent("");
        assert!(h.s.is_ready());
    }
});

dialogue!(data_refused, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(LOCKSTEP_EHLO);
    h.send(env("a@client.test", &["r@example.com"]));
    h.expect_sent("MAIL FROM:<a@client.test>\r\n");
    h.recv("250 ok\r\n");
    h.expect_sent("RCPT TO:<r@example.com>\r\n");
    h.recv("250 ok\r\n");
    h.expect_rcpt(0, "250 ok\r\n");
    h.expect_sent("DATA\r\n");
    h.recv("451 4.7.1 Please try again later\r\n");
    // MAIL and RCPT were accepted: the server holds a transaction, so RSET.
    h.expect_sent("RSET\r\n");
    h.recv("250 ok\r\n");
    let t = "451 4.7.1 Please try again later\r\n";
    h.expect_result(&[t], Some(t));
});

dialogue!(greeting_421, |feed| {
    let mut h = H::new(feed, cfg());
    h.recv("421 4.3.2 mx.example.net Service not available, closing transmission channel\r\n");
    h.expect_failed(
        Some("421 4.3.2 mx.example.net Service not available, closing transmission channel\r\n"),
        FailReason::Greeting,
    );
    h.expect_closed();
    h.expect_sent("");
});

dialogue!(greeting_554, |feed| {
    let mut h = H::new(feed, cfg());
    h.recv("554 5.7.1 No SMTP service here\r\n");
    h.expect_failed(
        Some("554 5.7.1 No SMTP service here\r\n"),
        FailReason::Greeting,
    );
    // RFC 5321 3.1: QUIT, and wait for its reply.
    h.expect_sent("QUIT\r\n");
    h.recv("221 bye\r\n");
    h.expect_closed();
});

dialogue!(mid_session_421_at_rcpt, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@client.test", &["r1@example.net", "r2@example.net"]));
    h.sent();
    h.recv("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n421 4.4.2 mx.example.net Error: timeout exceeded\r\n");
    h.expect_rcpt(0, "250 2.1.5 Ok\r\n");
    h.expect_failed(
        Some("421 4.4.2 mx.example.net Error: timeout exceeded\r\n"),
        FailReason::Rcpt,
    );
    h.expect_closed();
    h.expect_sent("");
    // Whatever comes after is ignored.
    h.recv("354 go\r\n");
    h.no_event();
});

dialogue!(mid_session_421_in_data, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@client.test", &["r@example.net"]));
    h.sent();
    h.recv("250 Ok\r\n250 Ok\r\n354 go\r\n");
    h.event();
    h.body("part\r\n");
    h.body_end();
    h.expect_sent("part\r\n.\r\n");
    h.recv("421 4.3.0 Server shutting down\r\n");
    h.expect_failed(Some("421 4.3.0 Server shutting down\r\n"), FailReason::Data);
    h.expect_closed();

    // A server going away while the body streams: nothing is awaited, the 421 is unasked.
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@client.test", &["r@example.net"]));
    h.recv("250 Ok\r\n250 Ok\r\n354 go\r\n");
    h.event();
    h.body("part\r\n");
    h.recv("421 4.3.0 bye\r\n");
    h.expect_failed(Some("421 4.3.0 bye\r\n"), FailReason::ServiceClosing);
    h.expect_closed();
    assert!(!h.s.wants_body());
});

dialogue!(quit_during_handshake, |feed| {
    let mut h = H::new(feed, cfg());
    h.quit();
    h.expect_sent("");
    h.recv("220 x\r\n");
    // No EHLO: straight to QUIT, and no Ready.
    h.expect_sent("QUIT\r\n");
    h.recv("221 bye\r\n");
    h.expect_closed();
});

dialogue!(implicit_tls_skips_starttls, |feed| {
    let mut c = cfg();
    c.starttls = TlsMode::Required;
    let mut h = H::implicit_tls(feed, c);
    let ext = h.greet(POSTFIX_EHLO);
    assert!(ext.starttls);
    assert!(h.s.is_tls());
});

dialogue!(unsolicited_421_when_idle, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.recv("421 4.3.2 Shutting down\r\n");
    h.expect_failed(
        Some("421 4.3.2 Shutting down\r\n"),
        FailReason::ServiceClosing,
    );
    h.expect_closed();
});

dialogue!(dot_stuffing_and_missing_final_crlf, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@client.test", &["r@example.net"]));
    h.sent();
    h.recv("250 Ok\r\n250 Ok\r\n354 go\r\n");
    h.event();
    // Lines starting with a dot, one split across chunks, a lone dot, and no final CRLF.
    h.body(".hidden\r\nnormal.line\r\n");
    h.body("\r\n");
    h.body(".");
    h.body(".two\r\n.\r\nlast line");
    h.body_end();
    h.expect_sent("..hidden\r\nnormal.line\r\n\r\n...two\r\n..\r\nlast line\r\n.\r\n");
    h.recv("250 2.0.0 Ok\r\n");
    h.expect_result(&["250 2.0.0 Ok\r\n"], Some("250 2.0.0 Ok\r\n"));
});

dialogue!(bdat_with_chunking, |feed| {
    let mut h = H::new(feed, cfg());
    let ext = h.greet(EXIM_EHLO);
    assert!(ext.chunking);
    h.send(env("a@client.test", &["r@example.org"]));
    // With CHUNKING, no DATA in the batch.
    h.expect_sent("MAIL FROM:<a@client.test>\r\nRCPT TO:<r@example.org>\r\n");
    h.body(".no stuffing\r\n");
    h.body("in BDAT\r\n");
    h.body_end();
    h.expect_sent("");
    h.recv("250 OK\r\n250 Accepted\r\n");
    h.expect_rcpt(0, "250 Accepted\r\n");
    h.expect_sent("BDAT 23 LAST\r\n.no stuffing\r\nin BDAT\r\n");
    h.recv("250- 23 byte chunk, total 23\r\n250 OK id=1rAbCd-000123-XY\r\n");
    let fin = "250- 23 byte chunk, total 23\r\n250 OK id=1rAbCd-000123-XY\r\n";
    h.expect_result(&[fin], Some(fin));
});

dialogue!(bdat_large_message_in_chunks, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(EXIM_EHLO);
    h.send(env("a@client.test", &["r@example.org"]));
    h.sent();
    h.recv("250 OK\r\n250 Accepted\r\n");
    h.event();
    let line = format!("{}\r\n", "x".repeat(1022));
    let mut total = 0;
    let mut wire = String::new();
    // Stream 200 KiB, honouring back-pressure.
    for _ in 0..200 {
        while !h.s.wants_body() {
            wire.push_str(&h.sent());
        }
        h.body(&line);
        total += line.len();
    }
    h.body_end();
    wire.push_str(&h.sent());
    // 65536-octet chunks (pipelined, no waiting), then the rest with LAST.
    let mut expected = String::new();
    let mut body = line.repeat(200);
    while body.len() >= 65536 {
        let rest = body.split_off(65536);
        expected.push_str(&format!("BDAT 65536\r\n{body}"));
        body = rest;
    }
    expected.push_str(&format!("BDAT {} LAST\r\n{body}", body.len()));
    assert_eq!(total, 204800);
    assert_eq!(wire.len(), expected.len());
    assert!(wire == expected);
    h.recv(
        "250 65536 byte chunk\r\n250 65536 byte chunk\r\n250 65536 byte chunk\r\n250 OK id=1\r\n",
    );
    h.expect_result(&["250 OK id=1\r\n"], Some("250 OK id=1\r\n"));
});

dialogue!(bdat_lock_step_waits_for_each_chunk, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet("250-x\r\n250 CHUNKING\r\n");
    h.send(env("a@b.test", &["r@x.test"]));
    h.expect_sent("MAIL FROM:<a@b.test>\r\n");
    h.recv("250 ok\r\n");
    h.expect_sent("RCPT TO:<r@x.test>\r\n");
    h.recv("250 ok\r\n");
    h.event();
    let big = "y".repeat(65536);
    h.body(&big);
    assert_eq!(h.sent(), format!("BDAT 65536\r\n{big}"));
    h.body("tail");
    h.body_end();
    // The next chunk waits for the reply to the first.
    h.expect_sent("");
    h.recv("250 65536 octets received\r\n");
    h.expect_sent("BDAT 4 LAST\r\ntail");
    h.recv("250 2.0.0 queued\r\n");
    h.expect_result(&["250 2.0.0 queued\r\n"], Some("250 2.0.0 queued\r\n"));
});

dialogue!(bdat_chunk_refused, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(EXIM_EHLO);
    h.send(env("a@client.test", &["r@example.org"]));
    h.sent();
    h.recv("250 OK\r\n250 Accepted\r\n");
    h.event();
    h.body(&"z".repeat(70000));
    h.expect_sent(&format!("BDAT 70000\r\n{}", "z".repeat(70000)));
    let no = "552 5.3.4 Message too big\r\n";
    h.recv(no);
    h.expect_sent("RSET\r\n");
    // RFC 3030 2: no chunk after a failed one, not even the LAST.
    assert!(!h.s.wants_body());
    h.body("more");
    h.body_end();
    h.expect_sent("");
    h.recv("250 Reset OK\r\n");
    h.expect_result(&[no], Some(no));
});

dialogue!(bdat_pipelined_failure_drains_later_chunks, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(EXIM_EHLO);
    h.send(env("a@client.test", &["r@example.org"]));
    h.sent();
    h.recv("250 OK\r\n250 Accepted\r\n");
    h.event();
    h.body(&"a".repeat(65536));
    h.sent();
    h.body("end");
    h.body_end();
    h.expect_sent("BDAT 3 LAST\r\nend");
    h.recv("452 4.3.1 Insufficient system storage\r\n");
    h.expect_sent("");
    h.no_event();
    h.recv("503 5.5.1 Previous BDAT failed\r\n");
    h.expect_sent("RSET\r\n");
    h.recv("250 OK\r\n");
    let no = "452 4.3.1 Insufficient system storage\r\n";
    h.expect_result(&[no], Some(no));
});

dialogue!(connection_reuse_for_two_messages, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    for (i, q) in [
        "250 2.0.0 Ok: queued as A\r\n",
        "250 2.0.0 Ok: queued as B\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        let to = format!("r{i}@example.net");
        h.send(env("a@client.test", &[&to]));
        assert!(!h.s.is_ready());
        assert_eq!(
            h.s.send_message(h.now, env("a@client.test", &["x@y"])),
            Err(ClientError::NotReady)
        );
        h.body(&format!("message {i}\r\n"));
        h.body_end();
        h.expect_sent(&format!(
            "MAIL FROM:<a@client.test>\r\nRCPT TO:<{to}>\r\nDATA\r\n"
        ));
        h.recv("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n");
        h.event();
        h.expect_sent(&format!("message {i}\r\n.\r\n"));
        h.recv(q);
        h.expect_result(&[q], Some(q));
    }
    h.quit();
    h.expect_sent("QUIT\r\n");
});

dialogue!(quit_requested_during_transaction, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@client.test", &["r@example.net"]));
    h.body("m\r\n");
    h.body_end();
    h.quit();
    h.expect_sent("MAIL FROM:<a@client.test>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n");
    h.recv("250 Ok\r\n250 Ok\r\n354 go\r\n");
    h.expect_sent("m\r\n.\r\n");
    h.recv("250 Ok: queued\r\n");
    h.expect_sent("QUIT\r\n");
    h.event();
    h.expect_result(&["250 Ok: queued\r\n"], Some("250 Ok: queued\r\n"));
    h.recv("221 Bye\r\n");
    h.expect_closed();
});

// ---------------------------------------------------------------------------------------
// Hostile or broken servers

dialogue!(garbage_instead_of_greeting, |feed| {
    let mut h = H::new(feed, cfg());
    h.recv("HTTP/1.1 400 Bad Request\r\n");
    h.expect_failed(
        None,
        FailReason::Protocol(ProtocolError::Reply(ReplyError::Malformed)),
    );
    h.expect_closed();
    h.expect_sent("");
});

dialogue!(overlong_reply_line, |feed| {
    let mut h = H::new(feed, cfg());
    h.recv("220 ");
    h.recv(&"a".repeat(5000));
    h.expect_failed(
        None,
        FailReason::Protocol(ProtocolError::Reply(ReplyError::LineTooLong)),
    );
    h.expect_closed();
});

dialogue!(endless_multi_line_reply, |feed| {
    let mut h = H::new(feed, cfg());
    h.recv("220 x\r\n");
    h.sent();
    let line = format!("250-{}\r\n", "k".repeat(500));
    for _ in 0..200 {
        h.recv(&line);
        if h.s.is_closed() {
            break;
        }
    }
    h.expect_failed(
        None,
        FailReason::Protocol(ProtocolError::Reply(ReplyError::TooLong)),
    );
    h.expect_closed();
});

dialogue!(mixed_codes_in_one_reply, |feed| {
    let mut h = H::new(feed, cfg());
    h.recv("220-x\r\n250 y\r\n");
    h.expect_failed(
        None,
        FailReason::Protocol(ProtocolError::Reply(ReplyError::MixedCodes)),
    );
    h.expect_closed();
});

dialogue!(unexpected_codes, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@b.test", &["c@d.test"]));
    h.sent();
    h.recv("354 what\r\n");
    h.expect_failed(
        Some("354 what\r\n"),
        FailReason::Protocol(ProtocolError::UnexpectedCode(354)),
    );
    h.expect_closed();

    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.recv("250 nobody asked\r\n");
    h.expect_failed(
        Some("250 nobody asked\r\n"),
        FailReason::Protocol(ProtocolError::Unsolicited(250)),
    );
    h.expect_closed();
});

dialogue!(peer_closed_mid_transaction, |feed| {
    let mut h = H::new(feed, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@b.test", &["c@d.test"]));
    h.recv("250 Ok\r\n");
    h.s.peer_closed(h.now);
    h.expect_failed(None, FailReason::ConnectionLost);
    h.expect_closed();
});

#[test]
fn envelope_checks() {
    let mut h = H::new(Feed::Whole, cfg());
    assert_eq!(
        h.s.send_message(h.now, env("a@b", &["c@d"])),
        Err(ClientError::NotReady)
    );
    h.greet(POSTFIX_EHLO);
    assert_eq!(
        h.s.send_message(h.now, env("a@b", &[])),
        Err(ClientError::NoRecipients)
    );
    for bad in ["x@y>\r\nRCPT TO:<z@w", "x@y> SIZE=1", "x\n@y", ""] {
        assert_eq!(
            h.s.send_message(h.now, env("a@b", &[bad])),
            Err(ClientError::InvalidAddress(bad.into()))
        );
    }
    assert_eq!(
        h.s.send_message(h.now, env("a>@b", &["c@d"])),
        Err(ClientError::InvalidAddress("a>@b".into()))
    );
    h.expect_sent("");
    assert!(h.s.is_ready());
}

#[test]
fn credentials_debug_hides_the_password() {
    let c = creds(false).unwrap();
    let s = format!("{c:?}");
    assert!(s.contains("alice") && !s.contains("secret"));
}

// ---------------------------------------------------------------------------------------
// Timeouts (RFC 5321 4.5.3.2)

#[test]
fn greeting_timeout_is_five_minutes() {
    let mut h = H::new(Feed::Whole, cfg());
    h.advance(299);
    h.no_event();
    h.advance(1);
    h.expect_failed(None, FailReason::Timeout);
    h.expect_closed();
    h.expect_sent("");
}

#[test]
fn mail_and_rcpt_timeouts_are_five_minutes() {
    let mut h = H::new(Feed::Whole, cfg());
    h.greet(LOCKSTEP_EHLO);
    assert_eq!(h.s.poll_timeout(), None, "no timer while idle");
    h.send(env("a@b.test", &["c@d.test"]));
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(300)));
    h.advance(200);
    h.recv("250 ok\r\n");
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(300)));
    h.advance(299);
    h.no_event();
    h.advance(1);
    h.expect_failed(None, FailReason::Timeout);
    h.expect_closed();
}

#[test]
fn data_phase_timeouts() {
    let mut h = H::new(Feed::Whole, cfg());
    h.greet(LOCKSTEP_EHLO);
    h.send(env("a@b.test", &["c@d.test"]));
    h.recv("250 ok\r\n");
    h.recv("250 ok\r\n");
    h.event();
    // DATA initiation: 2 minutes.
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(120)));
    h.recv("354 go\r\n");
    // Data block: 3 minutes between body blocks.
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(180)));
    h.advance(170);
    h.body("line\r\n");
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(180)));
    h.body_end();
    // DATA termination: 10 minutes.
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(600)));
    h.advance(599);
    h.no_event();
    h.advance(1);
    h.expect_failed(None, FailReason::Timeout);
    h.expect_closed();
}

#[test]
fn stalled_body_source_times_out() {
    let mut h = H::new(Feed::Whole, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@b.test", &["c@d.test"]));
    h.recv("250 ok\r\n250 ok\r\n354 go\r\n");
    h.event();
    h.advance(180);
    h.expect_failed(None, FailReason::Timeout);
    h.expect_closed();
}

#[test]
fn pipelined_timer_follows_the_oldest_reply() {
    let mut h = H::new(Feed::Whole, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@b.test", &["c@d.test"]));
    // MAIL first: 5 minutes; then RCPT: 5 minutes; then DATA: 2 minutes.
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(300)));
    h.recv("250 ok\r\n250 ok\r\n");
    h.event();
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(120)));
}

#[test]
fn bdat_last_waits_ten_minutes() {
    let mut h = H::new(Feed::Whole, cfg());
    h.greet(EXIM_EHLO);
    h.send(env("a@b.test", &["c@d.test"]));
    h.recv("250 ok\r\n250 ok\r\n");
    h.event();
    h.body("x");
    h.body_end();
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_secs(600)));
}

#[test]
fn timeouts_before_the_deadline_do_nothing() {
    let mut h = H::new(Feed::Whole, cfg());
    h.recv("220 x\r\n");
    let d = h.s.poll_timeout().unwrap();
    h.s.handle_timeout(d - Duration::from_millis(1));
    h.no_event();
    assert!(!h.s.is_closed());
}

#[test]
fn quit_timeout_closes_quietly() {
    let mut h = H::new(Feed::Whole, cfg());
    h.greet(POSTFIX_EHLO);
    h.quit();
    h.expect_sent("QUIT\r\n");
    h.advance(300);
    h.expect_closed();
}

#[test]
fn starttls_handshake_is_timed() {
    let mut c = cfg();
    c.starttls = TlsMode::Opportunistic;
    let mut h = H::new(Feed::Whole, c);
    h.recv("220 x\r\n");
    h.recv("250-x\r\n250 STARTTLS\r\n");
    h.recv("220 go\r\n");
    assert_eq!(h.event(), ClientEvent::StartTls);
    h.advance(300);
    h.expect_failed(None, FailReason::Timeout);
    h.expect_closed();
}

#[test]
fn custom_timeouts_apply() {
    let mut c = cfg();
    c.timeouts.greeting = Duration::from_secs(30);
    let mut h = H::new(Feed::Whole, c);
    h.advance(30);
    h.expect_failed(None, FailReason::Timeout);
}

// ---------------------------------------------------------------------------------------
// Back-pressure

#[test]
fn body_buffering_is_bounded_before_354() {
    let mut h = H::new(Feed::Whole, cfg());
    h.greet(POSTFIX_EHLO);
    h.send(env("a@b.test", &["c@d.test"]));
    h.sent();
    assert!(h.s.wants_body());
    let block = "b".repeat(1000) + "\r\n";
    let mut given = 0;
    while h.s.wants_body() {
        h.body(&block);
        given += 1;
    }
    assert_eq!(given, 66, "about 64 KiB held while waiting for 354");
    h.recv("250 ok\r\n250 ok\r\n354 go\r\n");
    h.event();
    assert!(!h.s.wants_body(), "the output is not taken yet");
    assert_eq!(h.sent().len(), 66 * 1002);
    assert!(h.s.wants_body());
    h.body_end();
    assert!(!h.s.wants_body());
    h.expect_sent(".\r\n");
}

#[test]
fn no_body_wanted_after_failure_or_outside_a_transaction() {
    let mut h = H::new(Feed::Whole, cfg());
    h.greet(LOCKSTEP_EHLO);
    assert!(!h.s.wants_body());
    h.send(env("a@b.test", &["c@d.test"]));
    h.recv("550 no\r\n");
    assert!(!h.s.wants_body());
    // A caller that still streams is ignored.
    h.body("late");
    h.body_end();
    h.expect_sent("MAIL FROM:<a@b.test>\r\n");
}

// ---------------------------------------------------------------------------------------
// Against ironpost's own server session

/// Shuttles bytes between the two sessions until neither moves, answering the server's
/// events: recipients named `nobody` are unknown, messages are queued as `Q1`.
fn shuttle(client: &mut ClientSession, server: &mut Session, now: Instant, received: &mut Vec<u8>) {
    loop {
        let mut moved = false;
        let mut buf = Vec::new();
        server.take_output(&mut buf);
        if !buf.is_empty() {
            moved = true;
            client.feed(now, &buf);
        }
        buf.clear();
        client.take_output(&mut buf);
        if !buf.is_empty() {
            moved = true;
            server.feed(now, &buf);
        }
        while let Some(ev) = server.poll_event() {
            moved = true;
            let answer = match ev {
                Event::Rcpt { to: Some(a) } if a.local == "nobody" => {
                    Some(Answer::Reject(Reply::ext(550, 5, 1, 1, "User unknown")))
                }
                Event::Mail { .. } | Event::Rcpt { .. } => Some(Answer::Accept),
                Event::Body(b) => {
                    received.extend_from_slice(&b);
                    None
                }
                Event::MessageEnd => Some(Answer::Queued("Q1".into())),
                _ => None,
            };
            if let Some(a) = answer {
                server.answer(now, a);
            }
        }
        if !moved {
            break;
        }
    }
}

#[test]
fn delivers_to_ironpost_server_with_bdat_and_pipelining() {
    let now = Instant::now();
    let mut server = Session::new(Arc::new(SessionConfig::new("mx.test")), false, now);
    let mut client = ClientSession::new(Arc::new(cfg()), now);
    let mut received = Vec::new();
    shuttle(&mut client, &mut server, now, &mut received);
    match client.poll_event() {
        Some(ClientEvent::Ready { extensions, .. }) => {
            assert!(extensions.pipelining && extensions.chunking && extensions.smtputf8);
        }
        e => panic!("{e:?}"),
    }
    let body = b".leading dot\r\nline two\r\n";
    let mut e = env("a@client.test", &["u@mx.test", "nobody@mx.test"]);
    e.size = Some(body.len() as u64);
    client.send_message(now, e).unwrap();
    client.body(now, body);
    client.body_end(now);
    shuttle(&mut client, &mut server, now, &mut received);
    let mut events = Vec::new();
    while let Some(ev) = client.poll_event() {
        events.push(ev);
    }
    let q = Reply::ext(250, 2, 0, 0, "Ok: queued as Q1");
    let unknown = Reply::ext(550, 5, 1, 1, "User unknown");
    assert_eq!(
        events,
        vec![
            ClientEvent::RecipientResult {
                index: 0,
                reply: Reply::ext(250, 2, 1, 5, "Ok")
            },
            ClientEvent::RecipientResult {
                index: 1,
                reply: unknown.clone()
            },
            ClientEvent::TransactionResult {
                recipients: vec![q.clone(), unknown],
                reply: Some(q),
                eight_bit_unannounced: false
            },
        ]
    );
    assert_eq!(received, body);
    client.quit(now);
    shuttle(&mut client, &mut server, now, &mut received);
    assert_eq!(client.poll_event(), Some(ClientEvent::Closed));
    assert!(server.is_closed());
}

#[test]
fn delivers_to_ironpost_server_with_data() {
    let now = Instant::now();
    let mut server = Session::new(Arc::new(SessionConfig::new("mx.test")), false, now);
    let mut client = ClientSession::new(Arc::new(cfg()), now);
    let mut received = Vec::new();
    // The server's EHLO, minus CHUNKING, as a proxy might rewrite it.
    let mut buf = Vec::new();
    server.take_output(&mut buf);
    client.feed(now, &buf);
    buf.clear();
    client.take_output(&mut buf);
    server.feed(now, &buf);
    assert_eq!(server.poll_event(), None);
    buf.clear();
    server.take_output(&mut buf);
    let ehlo = String::from_utf8(buf)
        .unwrap()
        .replace("250-CHUNKING\r\n", "")
        .replace("250 CHUNKING\r\n", "");
    let ehlo = ehlo.trim_end_matches("\r\n").to_string();
    // Make sure the last line of the edited reply ends it.
    let mut lines: Vec<String> = ehlo.split("\r\n").map(str::to_string).collect();
    let last = lines.len() - 1;
    lines[last].replace_range(3..4, " ");
    let ehlo = lines.join("\r\n") + "\r\n";
    assert!(!ehlo.contains("CHUNKING"));
    client.feed(now, ehlo.as_bytes());
    assert!(matches!(
        client.poll_event(),
        Some(ClientEvent::Ready { .. })
    ));
    let body = b"..two dots\r\n.\r\nno final newline";
    client.send_message(now, env("", &["u@mx.test"])).unwrap();
    client.body(now, body);
    client.body_end(now);
    shuttle(&mut client, &mut server, now, &mut received);
    assert_eq!(received, b"..two dots\r\n.\r\nno final newline\r\n");
    while let Some(ev) = client.poll_event() {
        if let ClientEvent::TransactionResult { reply, .. } = ev {
            assert_eq!(reply.unwrap().code, 250);
            return;
        }
    }
    panic!("no result");
}
