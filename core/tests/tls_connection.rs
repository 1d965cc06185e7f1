//! The TLS connection layer with a real rustls client on the other side, all in memory.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use ironpost_core::smtp::{Event, Session, SessionConfig, StartTls};
use ironpost_core::tls::Connection;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["mx.test".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
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
    fn pump_events(&mut self) {
        while let Some(e) = self.server.protocol_mut().poll_event() {
            self.events.push(e);
        }
    }

    /// Cleartext exchange: returns what the server sent.
    fn plain(&mut self, input: &[u8]) -> Vec<u8> {
        self.server.receive(self.now, input);
        self.pump_events();
        let mut out = Vec::new();
        self.server.transmit(&mut out);
        out
    }

    /// Moves bytes both ways until neither side has more to say; returns server plaintext.
    fn tls_exchange(&mut self, client: &mut rustls::ClientConnection) -> Vec<u8> {
        let mut plain = Vec::new();
        for _ in 0..20 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            self.server.receive(self.now, &to_server);
            self.pump_events();
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
        plain
    }
}

fn pair(starttls: StartTls) -> (Pair, Arc<rustls::ClientConfig>) {
    let (server_cfg, client_cfg) = configs();
    let mut c = SessionConfig::new("mx.test");
    c.starttls = starttls;
    let now = Instant::now();
    let session = Session::new(Arc::new(c), false, now);
    let server = Connection::plain(session, Some(server_cfg));
    (
        Pair {
            server,
            events: Vec::new(),
            now,
        },
        client_cfg,
    )
}

#[test]
fn starttls_upgrade_then_commands_inside_tls() {
    let (mut p, client_cfg) = pair(StartTls::Offer);
    assert!(String::from_utf8(p.plain(b""))
        .unwrap()
        .starts_with("220 mx.test"));
    p.plain(b"EHLO c\r\n");
    assert_eq!(
        p.plain(b"STARTTLS\r\n"),
        b"220 2.0.0 Ready to start TLS\r\n"
    );
    assert!(p.server.is_tls());
    let mut client =
        rustls::ClientConnection::new(client_cfg, ServerName::try_from("mx.test").unwrap())
            .unwrap();
    client.writer().write_all(b"EHLO c\r\n").unwrap();
    let reply = String::from_utf8(p.tls_exchange(&mut client)).unwrap();
    assert!(reply.starts_with("250-mx.test\r\n"), "{reply}");
    assert!(!reply.contains("STARTTLS"), "{reply}");
    let tls = p
        .server
        .protocol()
        .tls()
        .expect("handshake reported to the session");
    assert!(tls.version.starts_with("TLSv1."), "{tls:?}");
}

#[test]
fn plaintext_pipelined_after_starttls_is_never_executed() {
    let (mut p, client_cfg) = pair(StartTls::Offer);
    p.plain(b"");
    p.plain(b"EHLO c\r\n");
    let out = p.plain(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@mx.test>\r\n");
    assert_eq!(out, b"220 2.0.0 Ready to start TLS\r\n");
    let mut client =
        rustls::ClientConnection::new(client_cfg, ServerName::try_from("mx.test").unwrap())
            .unwrap();
    client.writer().write_all(b"NOOP\r\n").unwrap();
    let reply = String::from_utf8(p.tls_exchange(&mut client)).unwrap();
    // The first reply inside TLS answers the NOOP; nothing answers the injected commands.
    assert_eq!(reply, "250 2.0.0 Ok\r\n");
    assert!(
        p.events.is_empty(),
        "injected commands produced {:?}",
        p.events
    );
}

#[test]
fn cleartext_after_the_go_ahead_breaks_the_handshake_not_the_server() {
    let (mut p, _) = pair(StartTls::Offer);
    p.plain(b"");
    p.plain(b"EHLO c\r\nSTARTTLS\r\n");
    p.server.receive(p.now, b"MAIL FROM:<evil@x.test>\r\n");
    let mut out = Vec::new();
    p.server.transmit(&mut out);
    assert!(
        p.server.wants_close(),
        "garbage instead of a ClientHello ends the connection"
    );
    assert!(p.server.error().is_some());
    p.pump_events();
    assert!(p.events.is_empty());
}

#[test]
fn implicit_tls_greets_after_the_handshake() {
    let (server_cfg, client_cfg) = configs();
    let now = Instant::now();
    let session = Session::new(Arc::new(SessionConfig::new("mx.test")), true, now);
    let server = Connection::implicit_tls(session, server_cfg).unwrap();
    let mut p = Pair {
        server,
        events: Vec::new(),
        now,
    };
    let mut client =
        rustls::ClientConnection::new(client_cfg, ServerName::try_from("mx.test").unwrap())
            .unwrap();
    let greeting = String::from_utf8(p.tls_exchange(&mut client)).unwrap();
    assert_eq!(greeting, "220 mx.test ESMTP ironpost\r\n");
}

#[test]
fn quit_inside_tls_ends_with_close_notify() {
    let (server_cfg, client_cfg) = configs();
    let now = Instant::now();
    let session = Session::new(Arc::new(SessionConfig::new("mx.test")), true, now);
    let mut p = Pair {
        server: Connection::implicit_tls(session, server_cfg).unwrap(),
        events: Vec::new(),
        now,
    };
    let mut client =
        rustls::ClientConnection::new(client_cfg, ServerName::try_from("mx.test").unwrap())
            .unwrap();
    p.tls_exchange(&mut client);
    client.writer().write_all(b"QUIT\r\n").unwrap();
    let reply = String::from_utf8(p.tls_exchange(&mut client)).unwrap();
    assert!(reply.starts_with("221 "), "{reply}");
    assert!(p.server.wants_close());
    // The client saw a clean end of the TLS stream, not a truncation.
    let mut buf = [0u8; 16];
    assert_eq!(client.reader().read(&mut buf).unwrap(), 0);
}

#[test]
fn output_larger_than_rustls_default_buffer_is_sent_whole() {
    use ironpost_core::imap::session::{Session as ImapSession, SessionConfig as ImapConfig};
    let (server_cfg, client_cfg) = configs();
    let now = Instant::now();
    let session = ImapSession::new(Arc::new(ImapConfig::default()), true, now);
    let mut server = Connection::implicit_tls(session, server_cfg).unwrap();
    let mut client =
        rustls::ClientConnection::new(client_cfg, ServerName::try_from("mx.test").unwrap())
            .unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut plain = Vec::new();
    let mut sent_big = false;
    for _ in 0..1000 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        server.receive(now, &to_server);
        if !client.is_handshaking() && !sent_big {
            // One response much larger than rustls's default 64 KiB buffer.
            server.protocol_mut().write(&big);
            sent_big = true;
        }
        let mut to_client = Vec::new();
        server.transmit(&mut to_client);
        if to_server.is_empty() && to_client.is_empty() && sent_big {
            break;
        }
        let mut rd = &to_client[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
            // The client's own plaintext buffer is bounded: read as it goes.
            let mut buf = [0u8; 65536];
            loop {
                match client.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => plain.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    let greeting_end = plain.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    assert_eq!(plain.len() - greeting_end, big.len());
    assert!(plain[greeting_end..] == big[..]);
}
