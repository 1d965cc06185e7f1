//! The stack "ciphertext ↔ rustls ↔ protocol session" as one pure value.
//!
//! rustls is itself sans-IO, so the whole of STARTTLS and implicit TLS lives here: wire bytes
//! in, wire bytes out. Plaintext a client pipelined after its STARTTLS command never reaches
//! the protocol once TLS is up: the protocol discards its input buffer when it asks for the
//! upgrade, and from then on every wire byte goes to rustls.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection};

/// What the session layer of a TLS-capable protocol offers the connection layer.
pub trait Protocol {
    /// Plaintext from the peer.
    fn feed(&mut self, now: Instant, data: &[u8]);
    /// Appends plaintext to send to the peer.
    fn take_output(&mut self, out: &mut Vec<u8>);
    /// True, once, when the protocol has queued its go-ahead (`220 Ready to start TLS`) and
    /// discarded its buffered input: the handshake starts right after that output is sent.
    fn take_starttls(&mut self) -> bool;
    /// The handshake finished (STARTTLS or implicit TLS).
    fn tls_established(&mut self, info: TlsInfo);
    /// True when the protocol wants the connection closed once its output is flushed.
    fn wants_close(&self) -> bool;
}

/// What a protocol may record about the TLS session, e.g. in a Received: header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    /// IANA name of the cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    pub sni: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS handshake or record error: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS layer I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// rustls keeps at most 64 KiB of unsent output by default and refuses the rest; the runtime
/// already bounds what it takes from `transmit`, so a large response (an IMAP FETCH) must go
/// into rustls whole.
fn unbounded(mut tls: ServerConnection) -> ServerConnection {
    tls.set_buffer_limit(None);
    tls
}

/// A protocol session behind optional TLS.
pub struct Connection<P> {
    proto: P,
    tls_config: Option<Arc<ServerConfig>>,
    tls: Option<ServerConnection>,
    handshake_reported: bool,
    close_notify_sent: bool,
    failed: Option<TlsError>,
    plain_out: Vec<u8>,
}

impl<P: Protocol> Connection<P> {
    /// A connection in cleartext that may later upgrade with STARTTLS (if `tls_config` is set).
    pub fn plain(proto: P, tls_config: Option<Arc<ServerConfig>>) -> Self {
        Connection {
            proto,
            tls_config,
            tls: None,
            handshake_reported: false,
            close_notify_sent: false,
            failed: None,
            plain_out: Vec::new(),
        }
    }

    /// A connection that is TLS from the first byte (ports 465, 993, 995).
    pub fn implicit_tls(proto: P, tls_config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let tls = unbounded(ServerConnection::new(tls_config.clone())?);
        let mut conn = Connection::plain(proto, Some(tls_config));
        conn.tls = Some(tls);
        Ok(conn)
    }

    pub fn protocol(&self) -> &P {
        &self.proto
    }

    pub fn protocol_mut(&mut self) -> &mut P {
        &mut self.proto
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS error that ended the connection, if one did.
    pub fn error(&self) -> Option<&TlsError> {
        self.failed.as_ref()
    }

    /// Wire bytes from the peer.
    pub fn receive(&mut self, now: Instant, mut wire: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.tls.is_none() {
            // Between STARTTLS and the handshake the protocol itself drops cleartext: it is an
            // injection attempt or a client that did not wait for 220.
            self.proto.feed(now, wire);
            return;
        }
        // On the stack: an idle connection keeps no decryption buffer of its own.
        let mut scratch = [0u8; 8 * 1024];
        while !wire.is_empty() {
            let Some(tls) = self.tls.as_mut() else { return };
            let step = tls
                .read_tls(&mut wire)
                .map_err(TlsError::from)
                .and_then(|_| tls.process_new_packets().map_err(TlsError::from));
            if let Err(e) = step {
                // rustls has queued an alert, so the peer learns why.
                self.failed = Some(e);
                return;
            }
            // Before any plaintext: the client's first command often shares a flight with its
            // Finished message, and the protocol must know TLS is up before reading it.
            self.report_handshake();
            let Some(tls) = self.tls.as_mut() else { return };
            loop {
                match tls.reader().read(&mut scratch) {
                    Ok(0) => break,
                    Ok(n) => self.proto.feed(now, &scratch[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        self.failed = Some(e.into());
                        return;
                    }
                }
            }
        }
    }

    fn report_handshake(&mut self) {
        let Some(tls) = self.tls.as_ref() else { return };
        if self.handshake_reported || tls.is_handshaking() {
            return;
        }
        self.handshake_reported = true;
        let info = TlsInfo {
            version: tls
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS")
                .replace("TLSv1_", "TLSv1.")
                .to_string(),
            cipher: tls
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown")
                .to_string(),
            sni: tls.server_name().map(str::to_string),
        };
        self.proto.tls_established(info);
    }

    /// Appends wire bytes to send.
    pub fn transmit(&mut self, out: &mut Vec<u8>) {
        self.plain_out.clear();
        self.proto.take_output(&mut self.plain_out);
        match self.tls.as_mut() {
            None => {
                out.extend_from_slice(&self.plain_out);
                if self.proto.take_starttls() {
                    self.start_tls();
                }
            }
            Some(tls) => {
                if !self.plain_out.is_empty() {
                    // Cannot fail: the buffer limit is unset, so rustls takes all of it.
                    let _ = tls.writer().write_all(&self.plain_out);
                }
                // A protocol that is done ends TLS cleanly, so the peer can tell our close
                // from a truncation attack.
                if self.proto.wants_close() && !self.close_notify_sent && !tls.is_handshaking() {
                    self.close_notify_sent = true;
                    tls.send_close_notify();
                }
                while tls.wants_write() {
                    if tls.write_tls(out).is_err() {
                        break;
                    }
                }
            }
        }
    }

    fn start_tls(&mut self) {
        let Some(cfg) = self.tls_config.clone() else {
            // A protocol must not offer STARTTLS without a TLS config; close rather than lie.
            self.failed = Some(TlsError::Rustls(rustls::Error::General(
                "STARTTLS without a TLS configuration".into(),
            )));
            return;
        };
        match ServerConnection::new(cfg) {
            Ok(tls) => self.tls = Some(unbounded(tls)),
            Err(e) => self.failed = Some(e.into()),
        }
    }

    /// True once the connection should close after the caller has flushed `transmit`.
    pub fn wants_close(&self) -> bool {
        self.failed.is_some() || self.proto.wants_close()
    }
}
