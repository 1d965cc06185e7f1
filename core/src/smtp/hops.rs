//! Mail-loop protection: counts the `Received:` fields of a message's header section as the
//! message streams in, chunk by chunk, so a server can refuse a message that has passed
//! through too many hops (Postfix's `hopcount_limit`, RFC 5321 6.3).

/// The field name, lowercase.
const RECEIVED: &[u8] = b"received";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line of the header section.
    LineStart,
    /// A line that began with CR: the empty line that ends the header section if LF follows.
    Cr,
    /// The first `n` bytes of the line match `received`, case-insensitively.
    Name(usize),
    /// `received` followed by blanks: a colon makes it the field (RFC 5322 4.5.3 allows
    /// white space before the colon).
    Blanks,
    /// The rest of the line says nothing about hops.
    Skip,
    /// The header section has ended.
    Body,
}

/// Counts the `Received:` fields in a message's header section, which ends at the first
/// empty line. Chunks may split the message anywhere, a field name included.
#[derive(Debug, Clone)]
pub struct HopCounter {
    state: State,
    count: usize,
}

impl Default for HopCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl HopCounter {
    pub fn new() -> Self {
        HopCounter {
            state: State::LineStart,
            count: 0,
        }
    }

    /// The `Received:` fields seen so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// True once the empty line that ends the header section has been seen.
    pub fn header_done(&self) -> bool {
        self.state == State::Body
    }

    /// The next chunk of the message (as sent: after dot-unstuffing, before any header this
    /// server adds).
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while let Some((&b, rest)) = chunk.split_first() {
            chunk = rest;
            self.state = match self.state {
                State::Body => return,
                State::Skip if skip_line(b, &mut chunk) => State::LineStart,
                State::Skip => State::Skip,
                State::LineStart => match b {
                    b'\n' => State::Body,
                    b'\r' => State::Cr,
                    _ => self.name(0, b),
                },
                State::Cr => match b {
                    b'\n' => State::Body,
                    _ => State::Skip,
                },
                State::Name(n) => self.name(n, b),
                State::Blanks => self.after_name(b),
            };
        }
    }

    /// Byte `b` after `n` matched bytes of the field name.
    fn name(&mut self, n: usize, b: u8) -> State {
        match RECEIVED.get(n) {
            Some(&want) if b.to_ascii_lowercase() == want => State::Name(n + 1),
            Some(_) => Self::skip(b),
            None => self.after_name(b),
        }
    }

    /// Byte `b` after the whole of `received`.
    fn after_name(&mut self, b: u8) -> State {
        match b {
            b':' => {
                self.count = self.count.saturating_add(1);
                State::Skip
            }
            b' ' | b'\t' => State::Blanks,
            _ => Self::skip(b),
        }
    }

    /// The state after a byte that ends any hope of a `Received:` field on this line.
    fn skip(b: u8) -> State {
        if b == b'\n' {
            State::LineStart
        } else {
            State::Skip
        }
    }
}

/// Skips the line that `b` is part of: true when it ends at `b` or within `chunk`, which
/// is then advanced past its LF; false (and `chunk` emptied) when it goes on.
fn skip_line(b: u8, chunk: &mut &[u8]) -> bool {
    if b == b'\n' {
        return true;
    }
    match chunk.iter().position(|&c| c == b'\n') {
        Some(i) => {
            *chunk = &chunk[i + 1..];
            true
        }
        None => {
            *chunk = &[];
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(message: &[u8]) -> (usize, bool) {
        let mut h = HopCounter::new();
        h.feed(message);
        (h.count(), h.header_done())
    }

    /// The same message cut into two chunks at every point, and fed byte by byte, counts
    /// the same as whole.
    fn count_split(message: &[u8]) -> (usize, bool) {
        let whole = count(message);
        for i in 0..=message.len() {
            let mut h = HopCounter::new();
            h.feed(&message[..i]);
            h.feed(&message[i..]);
            assert_eq!(
                (h.count(), h.header_done()),
                whole,
                "split at {i}: {:?} | {:?}",
                String::from_utf8_lossy(&message[..i]),
                String::from_utf8_lossy(&message[i..])
            );
        }
        let mut h = HopCounter::new();
        for b in message {
            h.feed(std::slice::from_ref(b));
        }
        assert_eq!((h.count(), h.header_done()), whole, "byte by byte");
        whole
    }

    #[test]
    fn counts_received_fields_of_the_header_section_only() {
        let m = b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
                  RECEIVED: from c\r\n\t by d\r\n\
                  Subject: Received: not a field\r\n\
                  X-Received: no\r\n\
                  received:x\r\n\
                  Receive: no\r\n\
                  Receivedx: no\r\n\
                  \r\n\
                  Received: in the body\r\n";
        assert_eq!(count_split(m), (3, true));
    }

    #[test]
    fn blanks_before_the_colon() {
        assert_eq!(
            count_split(b"Received :a\r\nReceived\t \t: b\r\n\r\n"),
            (2, true)
        );
        assert_eq!(count_split(b"Received x: a\r\nReceived\r\n\r\n"), (0, true));
    }

    #[test]
    fn continuation_lines_are_not_fields() {
        assert_eq!(
            count_split(b"Subject: a\r\n Received: b\r\n\tReceived: c\r\n\r\n"),
            (0, true)
        );
    }

    #[test]
    fn bare_lf_line_ends() {
        assert_eq!(
            count_split(b"Received: a\nreceived: b\n\nReceived: c\n"),
            (2, true)
        );
    }

    #[test]
    fn header_section_without_end() {
        assert_eq!(count_split(b"Received: a\r\nReceived: b"), (2, false));
        assert_eq!(count_split(b""), (0, false));
        assert_eq!(count_split(b"\r\nReceived: a\r\n"), (0, true));
        // A CR not followed by LF does not end the header section.
        assert_eq!(count_split(b"\rx\r\nReceived: a\r\n"), (1, false));
    }

    #[test]
    fn many_hops() {
        let mut m = Vec::new();
        for i in 0..51 {
            m.extend_from_slice(format!("Received: from h{i} by h{}\r\n", i + 1).as_bytes());
        }
        m.extend_from_slice(b"Subject: loop\r\n\r\nbody\r\n");
        assert_eq!(count_split(&m), (51, true));
    }
}
