//! SMTP replies (RFC 5321 4.2) with enhanced status codes (RFC 2034, RFC 3463).

use std::borrow::Cow;
use std::fmt;

/// An enhanced status code `class.subject.detail`, e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One reply, possibly multi-line: each `\n` in `text` starts a new line of the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<Enhanced>,
    pub text: Cow<'static, str>,
}

impl Reply {
    pub fn new(code: u16, enhanced: Option<Enhanced>, text: impl Into<Cow<'static, str>>) -> Self {
        debug_assert!((200..600).contains(&code));
        Reply {
            code,
            enhanced,
            text: text.into(),
        }
    }

    /// A reply with an enhanced code written `"5.1.1"`-style for brevity at call sites.
    pub fn ext(
        code: u16,
        class: u8,
        subject: u16,
        detail: u16,
        text: impl Into<Cow<'static, str>>,
    ) -> Self {
        Reply::new(code, Some(Enhanced(class, subject, detail)), text)
    }

    /// Parses exactly one reply in wire form, as read from a server (see
    /// [`super::reply_parse`] for the grammar and its limits).
    pub fn parse(input: &[u8]) -> Result<Self, super::reply_parse::ReplyError> {
        use super::reply_parse::{parse_reply, ReplyError};
        match parse_reply(input)? {
            None => Err(ReplyError::Incomplete),
            Some((reply, used)) if used == input.len() => Ok(reply),
            Some(_) => Err(ReplyError::TrailingData),
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Appends the reply in wire form. CR and LF inside a line are never emitted: they would
    /// let text chosen by a peer forge extra reply lines.
    pub fn write_to(&self, out: &mut Vec<u8>, with_enhanced: bool) {
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let last = lines.peek().is_none();
            out.extend_from_slice(itoa3(self.code).as_slice());
            out.push(if last { b' ' } else { b'-' });
            if with_enhanced {
                if let Some(e) = self.enhanced {
                    out.extend_from_slice(e.to_string().as_bytes());
                    out.push(b' ');
                }
            }
            out.extend(line.bytes().filter(|&b| b != b'\r' && b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn itoa3(code: u16) -> [u8; 3] {
    [
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::new();
        self.write_to(&mut buf, true);
        f.write_str(String::from_utf8_lossy(&buf).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        let mut v = Vec::new();
        r.write_to(&mut v, true);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let r = Reply::ext(550, 5, 1, 1, "No such user");
        assert_eq!(wire(&r), "550 5.1.1 No such user\r\n");
    }

    #[test]
    fn multi_line_uses_dash_on_all_but_last() {
        let r = Reply::new(250, None, "mx.test\nPIPELINING\nSIZE 10240000");
        assert_eq!(
            wire(&r),
            "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n"
        );
    }

    #[test]
    fn enhanced_code_omitted_when_not_negotiated() {
        let r = Reply::ext(250, 2, 0, 0, "Ok");
        let mut v = Vec::new();
        r.write_to(&mut v, false);
        assert_eq!(v, b"250 Ok\r\n");
    }

    #[test]
    fn cr_in_text_cannot_forge_a_line() {
        let r = Reply::new(250, None, "a\rb");
        assert_eq!(wire(&r), "250 ab\r\n");
    }

    #[test]
    fn empty_text_still_one_line() {
        let r = Reply::new(354, None, "");
        assert_eq!(wire(&r), "354 \r\n");
    }
}
