//! Helpers shared by ironpost's fuzz targets.
//!
//! Input layout of the structured targets: the first byte `L` is the length of a control
//! block, the next `L` bytes are the control block (decoded with `arbitrary` into the target's
//! script: split points, application answers, timeouts...), and everything after it is the
//! peer's byte stream. A seed is therefore `\0` followed by a readable dialogue, and the
//! fuzzer can mutate the dialogue and the script independently.

pub mod imap_value;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// `IRONPOST_FUZZ_TRACE=1` makes targets print what they do to stderr (for reading a seed or
/// a crash by hand).
pub fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("IRONPOST_FUZZ_TRACE").is_some())
}

/// Splits an input into its control block and its byte stream.
pub fn split_control(input: &[u8]) -> (&[u8], &[u8]) {
    match input.split_first() {
        None => (&[], &[]),
        Some((&len, rest)) => rest.split_at((len as usize).min(rest.len())),
    }
}

/// Checks that `out` is a run of whole SMTP reply lines: `^\d{3}[ -]`, text without CR or LF,
/// CRLF-terminated; lines of one multi-line reply share their code. `open` carries an
/// unfinished multi-line reply (its code) from one call to the next.
pub fn check_smtp_replies(out: &[u8], open: &mut Option<[u8; 3]>) {
    if out.is_empty() {
        return;
    }
    assert!(
        out.ends_with(b"\r\n"),
        "output does not end with CRLF: {:?}",
        String::from_utf8_lossy(out)
    );
    for line in out.split_inclusive(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("bare LF in output: {:?}", String::from_utf8_lossy(out)));
        assert!(
            !line.contains(&b'\r'),
            "bare CR in reply line {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            line.len() >= 4
                && line[..3].iter().all(u8::is_ascii_digit)
                && (b'2'..=b'5').contains(&line[0])
                && (line[3] == b' ' || line[3] == b'-'),
            "malformed reply line {:?}",
            String::from_utf8_lossy(line)
        );
        let code = [line[0], line[1], line[2]];
        if let Some(prev) = *open {
            assert_eq!(
                prev,
                code,
                "multi-line reply changes code: {:?}",
                String::from_utf8_lossy(out)
            );
        }
        *open = (line[3] == b'-').then_some(code);
    }
}

/// A global allocator that counts live heap bytes, so a target can bound the memory a
/// session holds.
pub struct CountingAlloc;

static LIVE: AtomicIsize = AtomicIsize::new(0);

impl CountingAlloc {
    /// Heap bytes currently allocated through the Rust allocator.
    pub fn live() -> isize {
        LIVE.load(Ordering::Relaxed)
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_split() {
        assert_eq!(split_control(b""), (&b""[..], &b""[..]));
        assert_eq!(split_control(b"\0EHLO"), (&b""[..], &b"EHLO"[..]));
        assert_eq!(split_control(b"\x02abEHLO"), (&b"ab"[..], &b"EHLO"[..]));
        assert_eq!(split_control(b"\x09ab"), (&b"ab"[..], &b""[..]));
    }

    #[test]
    fn reply_grammar() {
        let mut open = None;
        check_smtp_replies(b"250-a\r\n250 b\r\n", &mut open);
        assert_eq!(open, None);
        check_smtp_replies(b"250-a\r\n", &mut open);
        assert_eq!(open, Some(*b"250"));
        check_smtp_replies(b"250 b\r\n", &mut open);
        assert!(std::panic::catch_unwind(|| check_smtp_replies(b"25 x\r\n", &mut None)).is_err());
        assert!(std::panic::catch_unwind(|| check_smtp_replies(b"250 x\n", &mut None)).is_err());
        assert!(std::panic::catch_unwind(|| check_smtp_replies(b"250 x", &mut None)).is_err());
        assert!(
            std::panic::catch_unwind(|| check_smtp_replies(b"250-x\r\n550 y\r\n", &mut None))
                .is_err()
        );
    }
}
