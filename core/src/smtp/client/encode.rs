//! DATA body encoding for the client: dot-stuffing, canonical line endings and the final
//! `CRLF . CRLF` (RFC 5321 4.5.2).
//!
//! Every bare CR and bare LF becomes CRLF before stuffing. Receivers disagree about bare
//! line endings (some end DATA at `LF . LF`), so relaying them as they are would let a
//! message carry a second, smuggled message past a lenient next hop. After this encoder the
//! only `CRLF . CRLF` on the wire is the one it writes at the end.

/// Where in a line the encoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (and of the body).
    LineStart,
    /// Inside a line.
    Text,
    /// Inside a line, after a CR whose partner is not known yet.
    Cr,
}

/// Streaming encoder for one DATA body: chunks may split lines and CRLF pairs anywhere.
#[derive(Debug, Clone)]
pub struct DotEncoder {
    state: State,
}

impl Default for DotEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DotEncoder {
    pub fn new() -> Self {
        DotEncoder {
            state: State::LineStart,
        }
    }

    /// Appends the wire form of `input` to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::LineStart => {
                    if input[i] == b'.' {
                        out.push(b'.');
                    }
                    self.state = State::Text;
                }
                State::Text => {
                    let rest = &input[i..];
                    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                        None => {
                            out.extend_from_slice(rest);
                            i = input.len();
                        }
                        Some(p) => {
                            out.extend_from_slice(&rest[..p]);
                            i += p + 1;
                            if rest[p] == b'\n' {
                                out.extend_from_slice(b"\r\n");
                                self.state = State::LineStart;
                            } else {
                                self.state = State::Cr;
                            }
                        }
                    }
                }
                State::Cr => {
                    // CRLF, or a bare CR: either way one line break.
                    out.extend_from_slice(b"\r\n");
                    self.state = State::LineStart;
                    if input[i] == b'\n' {
                        i += 1;
                    }
                }
            }
        }
    }

    /// Ends the body: completes a last line left open, then writes the end-of-data marker.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.state != State::LineStart {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.state = State::LineStart;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::data::{BareLineEndings, Decoded, DotDecoder};

    fn encode(chunks: &[&[u8]]) -> Vec<u8> {
        let mut e = DotEncoder::new();
        let mut out = Vec::new();
        for c in chunks {
            e.encode(c, &mut out);
        }
        e.finish(&mut out);
        out
    }

    #[test]
    fn stuffs_leading_dots_only() {
        assert_eq!(
            encode(&[b".a\r\nb.c\r\n..\r\n.\r\n"]),
            b"..a\r\nb.c\r\n...\r\n..\r\n.\r\n"
        );
    }

    #[test]
    fn closes_an_open_last_line() {
        assert_eq!(encode(&[b"no newline"]), b"no newline\r\n.\r\n");
        assert_eq!(encode(&[b"a\r"]), b"a\r\n.\r\n");
        assert_eq!(encode(&[b"."]), b"..\r\n.\r\n");
    }

    #[test]
    fn empty_body() {
        assert_eq!(encode(&[]), b".\r\n");
        assert_eq!(encode(&[b""]), b".\r\n");
    }

    #[test]
    fn bare_line_endings_become_crlf() {
        assert_eq!(encode(&[b"a\nb\rc\r\n"]), b"a\r\nb\r\nc\r\n.\r\n");
        // The smuggling shapes: a dot between bare line endings is stuffed like any other.
        assert_eq!(
            encode(&[b"x\n.\nMAIL FROM:<a@b>\r\n"]),
            b"x\r\n..\r\nMAIL FROM:<a@b>\r\n.\r\n"
        );
        assert_eq!(encode(&[b"x\r.\r\n"]), b"x\r\n..\r\n.\r\n");
        assert_eq!(encode(&[b"\r\r\n"]), b"\r\n\r\n.\r\n");
    }

    #[test]
    fn any_split_gives_the_same_bytes() {
        let body: &[u8] = b".start\r\nmid.dle\r\n.\r\n\n.x\r\r\n.end";
        let whole = encode(&[body]);
        for a in 0..=body.len() {
            for b in a..=body.len() {
                assert_eq!(encode(&[&body[..a], &body[a..b], &body[b..]]), whole);
            }
        }
    }

    #[test]
    fn round_trips_through_the_server_decoder() {
        let body: &[u8] = b".a\r\n..b\r\n.\r\nc\r\n";
        let wire = encode(&[body]);
        let mut d = DotDecoder::new(BareLineEndings::Reject);
        let mut out = Vec::new();
        let (used, outcome) = d.decode(&wire, &mut out);
        assert_eq!(outcome, Decoded::End);
        assert_eq!(used, wire.len());
        assert_eq!(out, body);
        assert!(!d.saw_bare_line_ending());
    }
}
