//! Shared inputs for ironpost's benchmarks: realistic SMTP command lines and message bodies.
//! The criterion benches live in `benches/`, the end-to-end load tool in `src/bin/`.

pub mod mem;
pub mod net;
pub mod tls;

/// Command lines as real clients send them (Postfix, Exim, swaks, Thunderbird, Outlook,
/// bulk senders), each with its CRLF, in the proportions of a typical inbound session mix.
pub const COMMAND_LINES: &[&str] = &[
    "EHLO mail-wr1-f54.google.com\r\n",
    "EHLO mx1.example.org\r\n",
    "EHLO [192.168.1.20]\r\n",
    "HELO localhost\r\n",
    "MAIL FROM:<bounces+12345-abcd-alice=example.test@em123.mailer.example.com> SIZE=48213 BODY=8BITMIME\r\n",
    "MAIL FROM:<alice.smith@example.org> SIZE=1532\r\n",
    "MAIL FROM:<> BODY=7BIT\r\n",
    "MAIL FROM:<noreply@notifications.example.net> BODY=8BITMIME SMTPUTF8\r\n",
    "MAIL FROM:<bob@example.org>\r\n",
    "RCPT TO:<alice@example.test>\r\n",
    "RCPT TO:<bob.jones@example.test>\r\n",
    "RCPT TO:<postmaster@example.test>\r\n",
    "RCPT TO:<Postmaster>\r\n",
    "RCPT TO:<team-list+tag@lists.example.test>\r\n",
    "rcpt to:<carol@example.test>\r\n",
    "DATA\r\n",
    "BDAT 65536\r\n",
    "BDAT 1432 LAST\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "QUIT\r\n",
    "STARTTLS\r\n",
    "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQtMQ==\r\n",
    "AUTH LOGIN\r\n",
    "VRFY postmaster\r\n",
];

/// A message body of about `size` octets in SMTP wire form for DATA: header, text lines of
/// up to 76 characters, some of them starting with a dot (so dot-stuffed), CRLF line ends,
/// and the terminating `CRLF.CRLF`. Also returns the unstuffed message length.
pub fn data_body(size: usize) -> (Vec<u8>, usize) {
    let mut wire = Vec::with_capacity(size + size / 32 + 64);
    let header = "From: Bob <bob@example.org>\r\nTo: Alice <alice@example.test>\r\n\
                  Subject: benchmark message\r\nMessage-ID: <bench@example.org>\r\n\
                  MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
    wire.extend_from_slice(header.as_bytes());
    let mut unstuffed = header.len();
    let words = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet,",
        "consectetur",
        "adipiscing",
        "elit,",
        "sed",
        "do",
        "eiusmod",
        "tempor",
        "incididunt",
        "ut",
        "labore",
        "et",
        "dolore",
        "magna",
        "aliqua.",
    ];
    let mut n = 0usize;
    while unstuffed < size {
        let mut line = String::new();
        if n.is_multiple_of(23) {
            // A line beginning with a dot: the client doubles it.
            line.push_str("..and so on");
        }
        while line.len() < 70 {
            line.push_str(words[n % words.len()]);
            line.push(' ');
            n += 1;
        }
        n += 1;
        line.push_str("\r\n");
        let stuffed = line.starts_with("..") as usize;
        wire.extend_from_slice(line.as_bytes());
        unstuffed += line.len() - stuffed;
    }
    wire.extend_from_slice(b".\r\n");
    (wire, unstuffed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironpost_core::smtp::data::{BareLineEndings, Decoded, DotDecoder};

    #[test]
    fn corpus_parses() {
        for line in COMMAND_LINES {
            let l = line.strip_suffix("\r\n").unwrap();
            ironpost_core::smtp::parse_command(l.as_bytes())
                .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
    }

    #[test]
    fn body_decodes_to_its_unstuffed_length() {
        for size in [100, 1024, 100 * 1024] {
            let (wire, unstuffed) = data_body(size);
            let mut d = DotDecoder::new(BareLineEndings::Reject);
            let mut out = Vec::new();
            assert_eq!(d.decode(&wire, &mut out), (wire.len(), Decoded::End));
            assert_eq!(out.len(), unstuffed);
            assert!(unstuffed >= size);
            assert!(!d.saw_bare_line_ending());
        }
    }
}
