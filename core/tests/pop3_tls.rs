//! The POP3 session behind the TLS layer, with a real rustls client, all in memory: STLS on
//! port 110 and implicit TLS on port 995.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use ironpost_core::pop3::{Event, Session, SessionConfig};
use ironpost_core::tls::Connection;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["mx.test".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

struct Pair {
    server: Connection<Session>,
    events: Vec<Event>,
    now: Instant,
}

impl Pair {
    fn pump(&mut self) {
        while let Some(e) = self.server.protocol_mut().poll_event() {
            if let Event::Login { .. } = e {
                self.server.protocol_mut().login_result(self.now, false);
            }
            self.events.push(e);
        }
    }

    fn plain(&mut self, input: &[u8]) -> String {
        self.server.receive(self.now, input);
        self.pump();
        let mut out = Vec::new();
        self.server.transmit(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Sends `input` inside TLS and moves bytes both ways until both sides are quiet.
    fn tls(&mut self, client: &mut rustls::ClientConnection, input: &[u8]) -> String {
        client.writer().write_all(input).unwrap();
        let mut plain = Vec::new();
        for _ in 0..20 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            self.server.receive(self.now, &to_server);
            self.pump();
            let mut to_client = Vec::new();
            self.server.transmit(&mut to_client);
            if to_server.is_empty() && to_client.is_empty() {
                break;
            }
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
            }
            let mut buf = [0u8; 4096];
            loop {
                match client.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => plain.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        String::from_utf8(plain).unwrap()
    }
}

#[test]
fn stls_then_login_inside_tls() {
    let (server_cfg, client_cfg) = configs();
    let now = Instant::now();
    let session = Session::new(Arc::new(SessionConfig::default()), false, now);
    let mut p = Pair {
        server: Connection::plain(session, Some(server_cfg)),
        events: Vec::new(),
        now,
    };
    assert_eq!(p.plain(b""), "+OK ironpost ready\r\n");
    assert!(p.plain(b"USER alice\r\n").starts_with("-ERR [AUTH]"));
    // The USER pipelined after STLS never reaches the session.
    assert_eq!(
        p.plain(b"STLS\r\nUSER mallory\r\n"),
        "+OK Begin TLS negotiation now\r\n"
    );
    assert!(p.server.is_tls());
    let mut client =
        rustls::ClientConnection::new(client_cfg, ServerName::try_from("mx.test").unwrap())
            .unwrap();
    assert_eq!(
        p.tls(&mut client, b"PASS x\r\n"),
        "-ERR Send USER first\r\n"
    );
    assert_eq!(p.tls(&mut client, b"USER alice\r\n"), "+OK Send PASS\r\n");
    assert_eq!(
        p.tls(&mut client, b"PASS wrong\r\n"),
        "-ERR [AUTH] Authentication failed\r\n"
    );
    assert_eq!(
        p.events,
        [Event::Login {
            user: "alice".into(),
            pass: "wrong".into()
        }]
    );
    assert!(p.server.protocol().tls().is_some());
    assert_eq!(
        p.tls(&mut client, b"QUIT\r\n"),
        "+OK ironpost signing off\r\n"
    );
    assert!(p.server.wants_close());
}

#[test]
fn implicit_tls_offers_user_at_once() {
    let (server_cfg, client_cfg) = configs();
    let now = Instant::now();
    let session = Session::new(Arc::new(SessionConfig::default()), true, now);
    let mut p = Pair {
        server: Connection::implicit_tls(session, server_cfg).unwrap(),
        events: Vec::new(),
        now,
    };
    let mut client =
        rustls::ClientConnection::new(client_cfg, ServerName::try_from("mx.test").unwrap())
            .unwrap();
    let out = p.tls(&mut client, b"CAPA\r\n");
    assert!(out.starts_with("+OK ironpost ready\r\n+OK Capability list follows\r\n"));
    assert!(out.contains("\r\nUSER\r\n") && out.contains("\r\nSASL PLAIN\r\n"));
    assert!(!out.contains("STLS"));
    assert_eq!(
        p.tls(&mut client, b"STLS\r\n"),
        "-ERR TLS is already active or not available\r\n"
    );
}
