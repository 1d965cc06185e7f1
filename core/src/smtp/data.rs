//! DATA body decoding: dot-unstuffing and end-of-data detection (RFC 5321 4.5.2).
//!
//! Only `CRLF . CRLF` ends a message. A dot after a bare LF or bare CR is never at a line
//! start, so no mix of bare line endings can end DATA early: the "SMTP smuggling" family of
//! attacks, where two servers disagree on where a message ends, has nothing to work with.

/// What to do with a CR or LF that is not part of a CRLF pair inside DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEndings {
    /// Reject the whole message with 550 5.6.0 at its end. The default: a peer that sends
    /// bare line endings is broken or probing, and relaying them on lets another server
    /// read a different message boundary.
    Reject,
    /// Turn each bare CR or LF into CRLF and accept the message.
    Normalize,
}

/// Where in a line the decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just after CRLF (or at the start of DATA).
    LineStart,
    /// Inside a line.
    Text,
    /// Inside a line, after a CR.
    Cr,
    /// A line that began with a dot.
    Dot,
    /// A line that began with `.` then CR.
    DotCr,
}

/// Whether the end of the message was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    NeedMore,
    /// `CRLF.CRLF` seen: the bytes after it are commands again.
    End,
}

/// Streaming decoder for one DATA body.
#[derive(Debug, Clone)]
pub struct DotDecoder {
    state: State,
    policy: BareLineEndings,
    bare: bool,
}

impl DotDecoder {
    pub fn new(policy: BareLineEndings) -> Self {
        DotDecoder {
            state: State::LineStart,
            policy,
            bare: false,
        }
    }

    /// True once a bare CR or LF was seen.
    pub fn saw_bare_line_ending(&self) -> bool {
        self.bare
    }

    fn bare_ending(&mut self, byte: u8, out: &mut Vec<u8>) {
        self.bare = true;
        match self.policy {
            BareLineEndings::Reject => out.push(byte),
            BareLineEndings::Normalize => out.extend_from_slice(b"\r\n"),
        }
    }

    /// Decodes from `input` into `out`; returns how many input bytes were consumed (all of
    /// them unless the end of the message came first) and whether the end was reached. The
    /// terminating `.CRLF` is not written; the CRLF before it belongs to the message.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Decoded) {
        out.reserve(input.len());
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::LineStart | State::Text, b'\r') => State::Cr,
                (State::LineStart | State::Text, b'\n') => {
                    // Not a line start afterwards: a dot here can never end the message.
                    self.bare_ending(b'\n', out);
                    State::Text
                }
                (State::LineStart | State::Text, _) => {
                    // Copy the run of ordinary bytes at once, with the CRLF that usually ends
                    // it: one copy a line.
                    let start = i - 1;
                    i += crate::scan::find_cr_or_lf(&input[i..]).unwrap_or(input.len() - i);
                    let crlf = input.get(i..i + 2) == Some(b"\r\n");
                    if crlf {
                        i += 2;
                    }
                    out.extend_from_slice(&input[start..i]);
                    if crlf {
                        State::LineStart
                    } else {
                        State::Text
                    }
                }
                (State::Cr, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    State::LineStart
                }
                (State::Cr, b'\r') => {
                    self.bare_ending(b'\r', out);
                    State::Cr
                }
                (State::Cr, _) => {
                    self.bare_ending(b'\r', out);
                    i -= 1;
                    State::Text
                }
                // A leading dot is removed (transparency); what follows is ordinary text.
                (State::Dot, b'\r') => State::DotCr,
                (State::Dot, _) => {
                    i -= 1;
                    State::Text
                }
                (State::DotCr, b'\n') => {
                    self.state = State::LineStart;
                    return (i, Decoded::End);
                }
                // `.` CR then not LF: the dot was stuffing, the CR is bare.
                (State::DotCr, _) => {
                    i -= 1;
                    self.bare_ending(b'\r', out);
                    State::Text
                }
            };
        }
        (i, Decoded::NeedMore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(policy: BareLineEndings, input: &[u8]) -> (Vec<u8>, Option<usize>, bool) {
        let mut d = DotDecoder::new(policy);
        let mut out = Vec::new();
        let (n, r) = d.decode(input, &mut out);
        (
            out,
            (r == Decoded::End).then_some(n),
            d.saw_bare_line_ending(),
        )
    }

    /// Feeds one byte at a time: the result must not depend on how input is split.
    fn decode_bytewise(policy: BareLineEndings, input: &[u8]) -> (Vec<u8>, Option<usize>, bool) {
        let mut d = DotDecoder::new(policy);
        let mut out = Vec::new();
        for (i, b) in input.iter().enumerate() {
            let (n, r) = d.decode(std::slice::from_ref(b), &mut out);
            assert_eq!(n, 1);
            if r == Decoded::End {
                return (out, Some(i + 1), d.saw_bare_line_ending());
            }
        }
        (out, None, d.saw_bare_line_ending())
    }

    /// Checks a case under the default policy, whole and split into single bytes.
    fn check(input: &[u8], body: &[u8], end: Option<usize>, bare: bool) {
        let want = (body.to_vec(), end, bare);
        assert_eq!(
            decode_all(BareLineEndings::Reject, input),
            want,
            "whole: {input:?}"
        );
        assert_eq!(
            decode_bytewise(BareLineEndings::Reject, input),
            want,
            "bytewise: {input:?}"
        );
    }

    #[test]
    fn simple_message_ends_at_crlf_dot_crlf() {
        check(
            b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n",
            b"Subject: x\r\n\r\nhello\r\n",
            Some(24),
            false,
        );
    }

    #[test]
    fn empty_message() {
        check(b".\r\n", b"", Some(3), false);
    }

    #[test]
    fn leading_dot_is_unstuffed() {
        check(
            b"..hidden\r\n...\r\n.\r\n",
            b".hidden\r\n..\r\n",
            Some(18),
            false,
        );
    }

    #[test]
    fn dot_inside_line_is_kept() {
        check(b"a.b\r\n x.\r\n.\r\n", b"a.b\r\n x.\r\n", Some(13), false);
    }

    #[test]
    fn lf_dot_lf_does_not_end_data() {
        let (out, end, bare) = decode_all(BareLineEndings::Reject, b"a\n.\nMAIL FROM:<x@y>\r\n");
        assert_eq!(end, None);
        assert!(bare);
        assert_eq!(out, b"a\n.\nMAIL FROM:<x@y>\r\n");
    }

    #[test]
    fn crlf_dot_lf_does_not_end_data() {
        let (_, end, bare) = decode_all(BareLineEndings::Reject, b"a\r\n.\nRCPT TO:<x@y>\r\n");
        assert_eq!(end, None);
        assert!(bare);
    }

    #[test]
    fn lf_dot_crlf_does_not_end_data() {
        let (_, end, bare) = decode_all(BareLineEndings::Reject, b"a\n.\r\nDATA\r\n");
        assert_eq!(end, None);
        assert!(bare);
    }

    #[test]
    fn cr_dot_cr_does_not_end_data() {
        let (_, end, bare) = decode_all(BareLineEndings::Reject, b"a\r.\rMAIL\r\n");
        assert_eq!(end, None);
        assert!(bare);
    }

    #[test]
    fn crlf_dot_cr_then_text_is_bare_cr() {
        let (out, end, bare) = decode_all(BareLineEndings::Reject, b"a\r\n.\rX\r\n");
        assert_eq!(end, None);
        assert!(bare);
        assert_eq!(out, b"a\r\n\rX\r\n");
    }

    #[test]
    fn normalize_turns_bare_endings_into_crlf_without_ending_data() {
        let (out, end, bare) = decode_all(BareLineEndings::Normalize, b"a\nb\rc\n.\nd\r\n.\r\n");
        assert!(bare);
        assert_eq!(out, b"a\r\nb\r\nc\r\n.\r\nd\r\n");
        assert_eq!(end, Some(14));
    }

    #[test]
    fn cr_cr_lf_is_one_bare_cr_then_crlf() {
        check(b"a\r\r\n.\r\n", b"a\r\r\n", Some(7), true);
    }

    #[test]
    fn binary_bytes_pass_through() {
        check(
            b"\x00\xff\xfe\r\n.\r\n",
            b"\x00\xff\xfe\r\n",
            Some(8),
            false,
        );
    }

    #[test]
    fn end_split_across_calls() {
        let mut d = DotDecoder::new(BareLineEndings::Reject);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"x\r", &mut out), (2, Decoded::NeedMore));
        assert_eq!(d.decode(b"\n.", &mut out), (2, Decoded::NeedMore));
        assert_eq!(d.decode(b"\r", &mut out), (1, Decoded::NeedMore));
        assert_eq!(d.decode(b"\nNOOP\r\n", &mut out), (1, Decoded::End));
        assert_eq!(out, b"x\r\n");
    }
}
