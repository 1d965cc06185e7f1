//! Modified UTF-7 (RFC 3501 section 5.1.3), the encoding of folder names on disk.
//!
//! Folder directories are named the way Dovecot names them with its default settings (no
//! UTF-8 storage names): each hierarchy level of the UTF-8 mailbox name is encoded here, so a
//! folder made by either server reads the same in the other.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a UTF-8 name: printable ASCII stands for itself (`&` as `&-`), runs of anything
/// else become `&<base64 of UTF-16BE>-`.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

fn flush(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for unit in run.drain(..) {
        for byte in unit.to_be_bytes() {
            bits = (bits << 8) | u32::from(byte);
            nbits += 8;
            while nbits >= 6 {
                nbits -= 6;
                out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
            }
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out.push('-');
}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    } as u32)
}

/// Decodes a modified UTF-7 name; `None` if it is not well formed (bytes outside printable
/// ASCII, a bad base64 run, non-zero padding bits, a broken surrogate pair, or an encoded
/// run that only holds printable ASCII).
pub(crate) fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(0x20..=0x7e).contains(&b) {
            return None;
        }
        if b != b'&' {
            out.push(b as char);
            i += 1;
            continue;
        }
        i += 1;
        let end = i + bytes[i..].iter().position(|&c| c == b'-')?;
        if end == i {
            out.push('&');
            i = end + 1;
            continue;
        }
        let mut units = Vec::new();
        let mut bits: u32 = 0;
        let mut nbits = 0;
        for &c in &bytes[i..end] {
            bits = (bits << 6) | value(c)?;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push((bits >> nbits) as u16);
                bits &= (1 << nbits) - 1;
            }
        }
        if nbits >= 6 || bits != 0 || units.is_empty() {
            return None;
        }
        for c in char::decode_utf16(units) {
            let c = c.ok()?;
            if (' '..='~').contains(&c) {
                return None;
            }
            out.push(c);
        }
        i = end + 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example_and_round_trips() {
        // The RFC's example: "~peter/mail/台北/日本語".
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        let enc = encode(name);
        assert_eq!(enc, "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(decode(&enc).as_deref(), Some(name));
        for s in [
            "",
            "INBOX",
            "a&b",
            "&",
            "Entw\u{fc}rfe",
            "Gel\u{f6}schte Elemente",
            "\u{1f4e7} mail",
            "caf\u{e9}\u{e9}\u{e9}",
            "\u{e9}&\u{e9}",
        ] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s), "{s:?}");
        }
        assert_eq!(encode("Entw\u{fc}rfe"), "Entw&APw-rfe");
        assert_eq!(encode("a&b"), "a&-b");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "&",         // no terminator
            "&U,BTFw",   // no terminator
            "&Jjo!-",    // bad base64
            "&AGE-",     // encodes printable ASCII "a"
            "&2D3-",     // lone surrogate, and padding bits
            "&AP-",      // non-zero padding bits
            "caf\u{e9}", // raw 8-bit
            "a\tb",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
