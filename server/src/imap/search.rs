//! SEARCH (RFC 3501 6.4.4): whether one message matches the criteria.
//!
//! Keys over the index metadata (flags, sizes, internal date, sequence numbers and UIDs)
//! are decided first; the message file is read only when the outcome still depends on a
//! key over its header or body, and then parsed once for all of them.
//!
//! String keys match substrings case-insensitively (Unicode lower-casing) on decoded text:
//! header values with RFC 2047 encoded words decoded, bodies transfer-decoded and converted
//! to UTF-8 from their charset. The search strings themselves are US-ASCII or UTF-8
//! ([`charset_supported`]).

use ironpost_core::imap::{Date, IString, SearchKey};

use super::fetch::{load, FetchError, MessageMeta, MessageSource};
use super::mime::ParsedMessage;
use crate::mailstore::SystemFlags;

/// The charsets SEARCH accepts; anything else is answered
/// `NO [BADCHARSET (US-ASCII UTF-8)]`.
pub const SUPPORTED_CHARSETS: [&str; 2] = ["US-ASCII", "UTF-8"];

/// Whether a SEARCH CHARSET is supported (case-insensitive).
pub fn charset_supported(charset: &str) -> bool {
    SUPPORTED_CHARSETS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(charset))
}

/// What `*` stands for in the sequence sets of a SEARCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchContext {
    /// The highest sequence number (the number of messages).
    pub max_seq: u32,
    /// The highest UID in the mailbox.
    pub max_uid: u32,
}

/// Evaluates the SEARCH criteria (an implicit AND of the keys) for one message. Parses the
/// message lazily: only keys that need its header or body cause the file to be read, and
/// the parsed message is kept in `cache` (pass `&mut None` per message, or keep the slot to
/// answer a FETCH of the same message after).
pub fn matches<S: MessageSource + ?Sized>(
    criteria: &[SearchKey<'_>],
    ctx: &SearchContext,
    meta: &MessageMeta<'_>,
    source: &S,
    cache: &mut Option<ParsedMessage>,
) -> Result<bool, FetchError> {
    let mut ev = Eval {
        ctx,
        meta,
        msg: cache.as_ref(),
    };
    if let Some(result) = ev.all(criteria) {
        return Ok(result);
    }
    *cache = Some(load(source)?);
    let mut ev = Eval {
        ctx,
        meta,
        msg: cache.as_ref(),
    };
    Ok(ev.all(criteria).unwrap_or(false))
}

/// Whether any key needs the message file (a caller can tell whether a search is cheap).
pub fn needs_message(criteria: &[SearchKey<'_>]) -> bool {
    criteria.iter().any(|k| {
        use SearchKey::*;
        match k {
            Bcc(_) | Body(_) | Cc(_) | From(_) | Header(..) | SentBefore(_) | SentOn(_)
            | SentSince(_) | Subject(_) | Text(_) | To(_) => true,
            Not(k) => needs_message(std::slice::from_ref(k)),
            Or(a, b) => {
                needs_message(std::slice::from_ref(a)) || needs_message(std::slice::from_ref(b))
            }
            And(keys) => needs_message(keys),
            _ => false,
        }
    })
}

struct Eval<'a, 'm> {
    ctx: &'a SearchContext,
    meta: &'a MessageMeta<'m>,
    /// `None` while the message has not been read: keys over it are undecided.
    msg: Option<&'a ParsedMessage>,
}

/// Three-valued logic: `None` is "needs the message".
impl Eval<'_, '_> {
    fn all(&mut self, keys: &[SearchKey<'_>]) -> Option<bool> {
        let mut undecided = false;
        for k in keys {
            match self.key(k) {
                Some(false) => return Some(false),
                Some(true) => {}
                None => undecided = true,
            }
        }
        if undecided {
            None
        } else {
            Some(true)
        }
    }

    fn flag(&self, f: SystemFlags) -> bool {
        self.meta.flags.contains(f)
    }

    fn keyword(&self, k: &str) -> bool {
        self.meta.keywords.iter().any(|m| m.eq_ignore_ascii_case(k))
    }

    fn internal_date(&self) -> Option<Date> {
        Date::from_days_from_epoch(self.meta.internal_date.div_euclid(86_400))
    }

    fn key(&mut self, key: &SearchKey<'_>) -> Option<bool> {
        use SearchKey::*;
        let m = self.meta;
        Some(match key {
            All => true,
            Answered => self.flag(SystemFlags::ANSWERED),
            Deleted => self.flag(SystemFlags::DELETED),
            Draft => self.flag(SystemFlags::DRAFT),
            Flagged => self.flag(SystemFlags::FLAGGED),
            Seen => self.flag(SystemFlags::SEEN),
            Unanswered => !self.flag(SystemFlags::ANSWERED),
            Undeleted => !self.flag(SystemFlags::DELETED),
            Undraft => !self.flag(SystemFlags::DRAFT),
            Unflagged => !self.flag(SystemFlags::FLAGGED),
            Unseen => !self.flag(SystemFlags::SEEN),
            Recent => m.recent,
            Old => !m.recent,
            // NEW is RECENT UNSEEN.
            New => m.recent && !self.flag(SystemFlags::SEEN),
            Keyword(k) => self.keyword(k),
            Unkeyword(k) => !self.keyword(k),
            Larger(n) => m.size > u64::from(*n),
            Smaller(n) => m.size < u64::from(*n),
            // Internal date keys compare dates only, ignoring time and zone (INTERNALDATE is
            // shown in UTC, so the date is the UTC one).
            Before(d) => self.internal_date().is_some_and(|x| x < *d),
            On(d) => self.internal_date().is_some_and(|x| x == *d),
            Since(d) => self.internal_date().is_some_and(|x| x >= *d),
            Uid(set) => set.contains(m.uid, self.ctx.max_uid),
            SequenceSet(set) => set.contains(m.seq, self.ctx.max_seq),
            Not(k) => !self.key(k)?,
            Or(a, b) => match (self.key(a), self.key(b)) {
                (Some(true), _) | (_, Some(true)) => true,
                (Some(false), Some(false)) => false,
                _ => return None,
            },
            And(keys) => return self.all(keys),
            // Keys over the message.
            SentBefore(d) => self.msg?.sent_date().is_some_and(|x| x < *d),
            SentOn(d) => self.msg?.sent_date().is_some_and(|x| x == *d),
            SentSince(d) => self.msg?.sent_date().is_some_and(|x| x >= *d),
            From(s) => self.header_contains(b"From", s)?,
            To(s) => self.header_contains(b"To", s)?,
            Cc(s) => self.header_contains(b"Cc", s)?,
            Bcc(s) => self.header_contains(b"Bcc", s)?,
            Subject(s) => self.header_contains(b"Subject", s)?,
            Header(name, s) => {
                let msg = self.msg?;
                if s.is_empty() {
                    // RFC 3501: an empty string matches every message with the field.
                    msg.has_header(name.as_bytes())
                } else {
                    self.header_contains(name.as_bytes(), s)?
                }
            }
            Body(s) => {
                let needle = needle(s);
                self.msg?.body_texts().iter().any(|t| contains(t, &needle))
            }
            Text(s) => {
                let msg = self.msg?;
                let needle = needle(s);
                contains(&msg.all_header_text(), &needle)
                    || msg.body_texts().iter().any(|t| contains(t, &needle))
            }
        })
    }

    fn header_contains(&self, name: &[u8], s: &IString<'_>) -> Option<bool> {
        let needle = needle(s);
        Some(
            self.msg?
                .header_text(name)
                .iter()
                .any(|v| contains(v, &needle)),
        )
    }
}

/// A search string, lower-cased (invalid UTF-8 replaced).
fn needle(s: &IString<'_>) -> String {
    String::from_utf8_lossy(s.as_bytes()).to_lowercase()
}

fn contains(haystack: &str, lower_needle: &str) -> bool {
    lower_needle.is_empty() || haystack.to_lowercase().contains(lower_needle)
}
