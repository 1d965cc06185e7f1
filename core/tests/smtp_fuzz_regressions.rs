//! Cases found by the `smtp_session` fuzz target (fuzz/), kept as regular tests.

use std::sync::Arc;
use std::time::Instant;

use ironpost_core::smtp::{Answer, AuthPolicy, Event, Session, SessionConfig};
use ironpost_core::tls::{Protocol, TlsInfo};

fn output(s: &mut Session) -> String {
    let mut v = Vec::new();
    s.take_output(&mut v);
    String::from_utf8(v).unwrap()
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Shutdown while the application is still deciding on MAIL FROM: the session closes at
/// once, and the answer that arrives afterwards is ignored instead of tripping an assertion.
#[test]
fn answer_after_shutdown_closed_the_session_is_ignored() {
    let now = Instant::now();
    let mut s = Session::new(Arc::new(SessionConfig::new("mx.test")), false, now);
    s.feed(now, b"EHLO x\r\nMAIL FROM:<a@example.org>\r\n");
    assert!(matches!(events(&mut s)[..], [Event::Mail { .. }]));
    assert!(s.is_waiting());
    output(&mut s);

    s.shutdown();
    assert!(s.is_closed());
    assert_eq!(events(&mut s), vec![Event::Reset]);
    assert!(output(&mut s).starts_with("421 4.3.2 "));

    s.answer(now, Answer::Accept);
    assert_eq!(output(&mut s), "");
    assert_eq!(events(&mut s), vec![]);
}

/// The client disconnects while its password is being checked; the check's result comes
/// back to a closed session.
#[test]
fn answer_after_peer_closed_during_auth_is_ignored() {
    let now = Instant::now();
    let mut c = SessionConfig::new("mx.test");
    c.auth = AuthPolicy::Required;
    let mut s = Session::new(Arc::new(c), true, now);
    s.tls_established(TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        sni: None,
    });
    s.feed(now, b"EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert!(matches!(events(&mut s)[..], [Event::Auth { .. }]));
    output(&mut s);

    s.peer_closed();
    assert!(s.is_closed());
    s.answer(now, Answer::Accept);
    assert_eq!(output(&mut s), "");
    assert_eq!(s.authenticated(), None);
}
