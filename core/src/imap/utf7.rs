//! Modified UTF-7 for mailbox names (RFC 3501 5.1.3).
//!
//! Printable US-ASCII (0x20 to 0x7E) stands for itself, except `&`, written `&-`. Every
//! other character is written as UTF-16 in a modified base64 (`,` instead of `/`, no
//! padding) between `&` and `-`. The decoder accepts only the canonical form, so that a
//! name has exactly one spelling: no printable ASCII inside a shifted run, no two runs side
//! by side, no stray padding bits.

use std::borrow::Cow;

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Utf7Error {
    #[error("mailbox name contains an octet outside printable US-ASCII")]
    NotPrintableAscii,
    #[error("modified base64 run not terminated by '-'")]
    Unterminated,
    #[error("invalid character in modified base64 run")]
    BadBase64,
    #[error("modified base64 run has trailing bits")]
    BadPadding,
    #[error("modified base64 run is not valid UTF-16")]
    BadUtf16,
    #[error("modified base64 used where it is not needed")]
    NotCanonical,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn printable(c: u32) -> bool {
    (0x20..=0x7e).contains(&c)
}

/// Encodes a UTF-8 name. Borrowed when the name is printable ASCII without `&`.
pub fn encode(name: &str) -> Cow<'_, str> {
    if name.bytes().all(|b| printable(b.into()) && b != b'&') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if printable(c.into()) {
            flush(&mut out, &mut run);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut run);
    Cow::Owned(out)
}

/// Writes a pending run of UTF-16 units as `&base64-`.
fn flush(out: &mut String, run: &mut Vec<u16>) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits = 0;
    for unit in run.drain(..) {
        acc = (acc << 16) | u32::from(unit);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 0x3f) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize] as char);
    }
    out.push('-');
}

fn sextet(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    } as u32)
}

/// Decodes a name given as text.
pub fn decode(name: &str) -> Result<Cow<'_, str>, Utf7Error> {
    decode_bytes(name.as_bytes())
}

/// Decodes a name given as octets (as parsed from a command). Borrowed when there is
/// nothing to decode.
pub fn decode_bytes(name: &[u8]) -> Result<Cow<'_, str>, Utf7Error> {
    if !name.iter().all(|&b| printable(b.into())) {
        return Err(Utf7Error::NotPrintableAscii);
    }
    if !name.contains(&b'&') {
        // Printable ASCII is UTF-8.
        return Ok(Cow::Borrowed(
            std::str::from_utf8(name).map_err(|_| Utf7Error::NotPrintableAscii)?,
        ));
    }
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    // Whether the previous character closed a base64 run (`-`): a new run may not follow.
    let mut after_run = false;
    while i < name.len() {
        let b = name[i];
        if b != b'&' {
            out.push(b as char);
            i += 1;
            after_run = false;
            continue;
        }
        if name.get(i + 1) == Some(&b'-') {
            out.push('&');
            i += 2;
            after_run = false;
            continue;
        }
        if after_run {
            return Err(Utf7Error::NotCanonical);
        }
        let start = i + 1;
        let len = name[start..]
            .iter()
            .position(|&c| c == b'-')
            .ok_or(Utf7Error::Unterminated)?;
        decode_run(&name[start..start + len], &mut out)?;
        i = start + len + 1;
        after_run = true;
    }
    Ok(Cow::Owned(out))
}

/// Decodes the base64 between `&` and `-` (non-empty) into `out`.
fn decode_run(run: &[u8], out: &mut String) -> Result<(), Utf7Error> {
    let mut units: Vec<u16> = Vec::with_capacity(run.len() * 6 / 16);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in run {
        acc = (acc << 6) | sextet(c).ok_or(Utf7Error::BadBase64)?;
        bits += 6;
        if bits >= 16 {
            bits -= 16;
            units.push((acc >> bits) as u16);
            acc &= (1 << bits) - 1;
        }
    }
    // A canonical run has fewer than 6 bits left over, all zero.
    if bits >= 6 || acc != 0 || units.is_empty() {
        return Err(Utf7Error::BadPadding);
    }
    for c in char::decode_utf16(units) {
        let c = c.map_err(|_| Utf7Error::BadUtf16)?;
        if printable(c.into()) {
            return Err(Utf7Error::NotCanonical);
        }
        out.push(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        let enc = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        let dec = "~peter/mail/台北/日本語";
        assert_eq!(decode(enc).unwrap(), dec);
        assert_eq!(encode(dec), enc);
    }

    #[test]
    fn ascii_is_borrowed_both_ways() {
        assert!(matches!(encode("INBOX.Sent"), Cow::Borrowed(_)));
        assert!(matches!(decode("INBOX.Sent").unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn ampersand_is_escaped() {
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(decode("Tom &- Jerry").unwrap(), "Tom & Jerry");
        assert_eq!(encode("&&"), "&-&-");
        assert_eq!(decode("&-&-").unwrap(), "&&");
    }

    #[test]
    fn vectors() {
        for (dec, enc) in [
            ("Entwürfe", "Entw&APw-rfe"),
            ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
            ("Éléments envoyés", "&AMk-l&AOk-ments envoy&AOk-s"),
            ("Корзина", "&BBoEPgRABDcEOAQ9BDA-"),
            ("😀", "&2D3eAA-"),
            ("é&", "&AOk-&-"),
            ("\u{7f}", "&AH8-"),
            ("tab\there", "tab&AAk-here"),
        ] {
            assert_eq!(encode(dec), enc, "encode {dec}");
            assert_eq!(decode(enc).unwrap(), dec, "decode {enc}");
        }
    }

    #[test]
    fn round_trips() {
        for s in [
            "",
            "a",
            "日本語",
            "mixed 日本 and ascii & more",
            "€uro",
            "𝄞 clef",
            "ü",
        ] {
            assert_eq!(decode(&encode(s)).unwrap(), s);
        }
    }

    #[test]
    fn rejects_malformed() {
        use Utf7Error::*;
        for (bad, why) in [
            ("caf\u{e9}", NotPrintableAscii),
            ("a\tb", NotPrintableAscii),
            ("&U,BTFw", Unterminated),
            ("&", Unterminated),
            ("&U/BTFw-", BadBase64),
            ("&U=-", BadBase64),
            // `&AGE-` encodes "a", which must stand for itself.
            ("&AGE-", NotCanonical),
            // Two runs side by side must be one run.
            ("&U,A-&U,A-", NotCanonical),
            // One sextet is not a UTF-16 unit.
            ("&A-", BadPadding),
            // Non-zero trailing bits.
            ("&AOl-", BadPadding),
            // A run with a whole extra sextet.
            ("&AOkA-", BadPadding),
            // An unpaired high surrogate.
            ("&2D0-", BadUtf16),
            // A lone low surrogate.
            ("&3gA-", BadUtf16),
        ] {
            assert_eq!(decode(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn bytes_with_high_bit_are_rejected() {
        assert_eq!(
            decode_bytes(b"\xe9t\xe9"),
            Err(Utf7Error::NotPrintableAscii)
        );
    }
}
