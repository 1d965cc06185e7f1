//! Finding line ends in protocol input.

/// The position of the first LF in `haystack`.
///
/// Command lines are a few dozen octets, so most searches end in the first vector or two:
/// there `memchr`'s runtime dispatch to AVX2 (a call through a function pointer and its
/// setup) cost more than the search, about a tenth of the time of parsing an SMTP command.
/// SSE2 is part of every x86-64 CPU, so its searcher needs no dispatch and inlines;
/// elsewhere `memchr` chooses.
#[inline]
pub fn find_lf(haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(lf) = memchr::arch::x86_64::sse2::memchr::One::new(b'\n') {
        return lf.find(haystack);
    }
    memchr::memchr(b'\n', haystack)
}

/// The position of the first CR or LF in `haystack`: the end of the run of ordinary octets
/// in a DATA line. Lines average well under a hundred octets, so, as for [`find_lf`], the
/// inlined SSE2 searcher beats a dispatched one.
#[inline]
pub fn find_cr_or_lf(haystack: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(crlf) = memchr::arch::x86_64::sse2::memchr::Two::new(b'\r', b'\n') {
        return crlf.find(haystack);
    }
    memchr::memchr2(b'\r', b'\n', haystack)
}

#[cfg(test)]
mod tests {
    use super::{find_cr_or_lf, find_lf};

    #[test]
    fn finds_the_first_cr_or_lf_at_every_position_and_length() {
        for len in 0..80 {
            for at in 0..=len {
                for end in [b'\r', b'\n'] {
                    let mut hay = vec![b'x'; len];
                    if at < len {
                        hay[at] = end;
                        if at + 1 < len {
                            hay[len - 1] = b'\r';
                        }
                    }
                    let want = (at < len).then_some(at);
                    assert_eq!(find_cr_or_lf(&hay), want, "len {len}, end at {at}");
                }
            }
        }
    }

    #[test]
    fn finds_the_first_lf_at_every_position_and_length() {
        for len in 0..80 {
            for at in 0..=len {
                let mut hay = vec![b'x'; len];
                if at < len {
                    hay[at] = b'\n';
                    // A second LF later must not be reported instead.
                    if at + 1 < len {
                        hay[len - 1] = b'\n';
                    }
                }
                let want = (at < len).then_some(at);
                assert_eq!(find_lf(&hay), want, "len {len}, lf at {at}");
            }
        }
    }
}
