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
//!
//! Header keys (FROM, TO, CC, BCC, SUBJECT, HEADER, SENTBEFORE, SENTON, SENTSINCE) are
//! answered from the mailbox's header cache when it has the message
//! ([`crate::mailstore::HeaderSummary`]): [`summarize`] makes a summary from the parsed
//! message with the same functions that search the file, lower-casing the values once, so a
//! cached answer is the file's answer. A message without a summary, or whose summary lacks a
//! field name the search needs, is read, and a new summary (with that name) goes into the
//! cache. BODY and TEXT always read the file. FETCH, which reads the header of every message
//! a client lists, caches the same summary ([`header_summary`]), so the first SEARCH after it
//! opens none of those files either.

use std::sync::Arc;

use ironpost_core::imap::{Date, IString, SearchKey};

use super::fetch::{load, FetchError, MessageMeta, MessageSource};
use super::mime::ParsedMessage;
use crate::mailstore::{CachedField, HeaderSummary, MailboxView, MailstoreError, SystemFlags};

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
    matches_cached(criteria, ctx, meta, source, cache, None, &mut None)
}

/// [`matches`] with the message's cached header summary, if it has one: header keys are
/// answered from it when it has their fields. If the file had to be read and the summary was
/// missing or lacked a field name of the criteria, a new summary is left in `fresh` (for
/// [`MailboxView::cache_headers`]).
pub fn matches_cached<S: MessageSource + ?Sized>(
    criteria: &[SearchKey<'_>],
    ctx: &SearchContext,
    meta: &MessageMeta<'_>,
    source: &S,
    cache: &mut Option<ParsedMessage>,
    headers: Option<&HeaderSummary>,
    fresh: &mut Option<HeaderSummary>,
) -> Result<bool, FetchError> {
    let mut ev = Eval {
        ctx,
        meta,
        msg: cache.as_ref(),
        headers,
    };
    if let Some(result) = ev.all(criteria) {
        return Ok(result);
    }
    let msg = match cache.take() {
        Some(m) => m,
        None => load(source)?,
    };
    if let Some(s) = fresh_summary(&msg, headers, criteria) {
        *fresh = Some(s);
    }
    let msg = &*cache.insert(msg);
    let mut ev = Eval {
        ctx,
        meta,
        msg: Some(msg),
        headers: None,
    };
    Ok(ev.all(criteria).unwrap_or(false))
}

/// A new summary of a message that was read, if the cache should have one: when it has none
/// (`old`), or `old` lacks a field name a summary should have (see [`wanted_fields`]).
fn fresh_summary(
    msg: &ParsedMessage,
    old: Option<&HeaderSummary>,
    criteria: &[SearchKey<'_>],
) -> Option<HeaderSummary> {
    let names = wanted_fields(old, criteria);
    old.is_none_or(|h| names.iter().any(|n| h.field(n).is_none()))
        .then(|| summarize(msg, &names))
}

/// The summary to cache for a message read for something other than SEARCH (FETCH of its
/// ENVELOPE or header): what a SEARCH without HEADER keys would have made from the same
/// file, so later searches answer from it exactly as they would have. `None` if the cached
/// summary `old` already has all of that.
pub fn header_summary(msg: &ParsedMessage, old: Option<&HeaderSummary>) -> Option<HeaderSummary> {
    fresh_summary(msg, old, &[])
}

/// The field names every summary has: those of SEARCH's own keys.
const STANDARD_FIELDS: [&[u8]; 5] = [b"subject", b"from", b"to", b"cc", b"bcc"];

/// The field names a new summary should have: the standard ones, those the old summary had,
/// and those of HEADER keys in the criteria (while there is room).
fn wanted_fields(old: Option<&HeaderSummary>, criteria: &[SearchKey<'_>]) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = STANDARD_FIELDS.iter().map(|n| n.to_vec()).collect();
    let mut add = |name: &[u8]| {
        if names.len() < HeaderSummary::MAX_FIELDS
            && name.len() <= CachedField::MAX_NAME
            && !names.iter().any(|n| n.eq_ignore_ascii_case(name))
        {
            names.push(name.to_ascii_lowercase());
        }
    };
    if let Some(old) = old {
        for f in old.fields() {
            add(f.name());
        }
    }
    fn header_names<'k>(keys: &'k [SearchKey<'_>], out: &mut dyn FnMut(&'k [u8])) {
        for k in keys {
            match k {
                SearchKey::Header(name, _) => out(name.as_bytes()),
                SearchKey::Not(k) => header_names(std::slice::from_ref(k), out),
                SearchKey::Or(a, b) => {
                    header_names(std::slice::from_ref(a), out);
                    header_names(std::slice::from_ref(b), out);
                }
                SearchKey::And(keys) => header_names(keys, out),
                _ => {}
            }
        }
    }
    header_names(criteria, &mut add);
    names
}

/// What the header cache keeps of a message: its sent date and, for each of `names`, the
/// decoded values [`ParsedMessage::header_text`] gives (which header keys search).
pub fn summarize(msg: &ParsedMessage, names: &[Vec<u8>]) -> HeaderSummary {
    HeaderSummary::new(
        msg.sent_date(),
        names
            .iter()
            .filter_map(|n| CachedField::new(n, msg.header_text(n)))
            .collect(),
    )
}

/// What a SEARCH over a mailbox found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SearchOutcome {
    /// Sequence numbers, or UIDs for UID SEARCH, ascending.
    pub found: Vec<u32>,
    /// Some message could not be read (answer NO [UNAVAILABLE] with what was found).
    pub failed: bool,
}

/// Evaluates SEARCH criteria over every message of a view, using and filling the mailbox's
/// header cache. Messages whose expunge is pending match nothing.
pub fn search_view(view: &MailboxView, criteria: &[SearchKey<'_>], uid: bool) -> SearchOutcome {
    let ctx = SearchContext {
        max_seq: view.exists(),
        max_uid: view.messages().last().map_or(0, |m| m.uid),
    };
    let headers: Vec<Option<Arc<HeaderSummary>>> = if needs_message(criteria) {
        view.cached_headers().unwrap_or_else(|e| {
            tracing::warn!(mailbox = view.name(), error = %e, "header cache unavailable");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let mut out = SearchOutcome::default();
    let mut fresh_summaries = Vec::new();
    for (i, m) in view.messages().iter().enumerate() {
        let seq = i as u32 + 1;
        if m.expunged {
            // Gone already (its EXPUNGE is pending): it matches nothing.
            continue;
        }
        let names = view.keyword_names(m.keywords);
        let meta = MessageMeta::from_info(seq, m, &names);
        let muid = m.uid;
        let open = || view.open_message(muid);
        let cached = headers.get(i).and_then(Option::as_deref);
        let mut fresh = None;
        match matches_cached(criteria, &ctx, &meta, &open, &mut None, cached, &mut fresh) {
            Ok(true) => out.found.push(if uid { m.uid } else { seq }),
            Ok(false) => {}
            Err(FetchError::Store(MailstoreError::Expunged { .. })) => {}
            Err(e) => {
                tracing::warn!(mailbox = view.name(), uid = m.uid, error = %e, "SEARCH cannot read a message");
                out.failed = true;
            }
        }
        if let Some(s) = fresh {
            fresh_summaries.push((m.uid, s));
        }
    }
    if !fresh_summaries.is_empty() {
        if let Err(e) = view.cache_headers(fresh_summaries) {
            tracing::warn!(mailbox = view.name(), error = %e, "cannot save the header cache");
        }
    }
    out
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
    /// `None` while the message has not been read: keys over it are undecided, unless
    /// `headers` answers them.
    msg: Option<&'a ParsedMessage>,
    /// The cached summary of the message's header, if any.
    headers: Option<&'a HeaderSummary>,
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
            SentBefore(d) => self.sent_date()?.is_some_and(|x| x < *d),
            SentOn(d) => self.sent_date()?.is_some_and(|x| x == *d),
            SentSince(d) => self.sent_date()?.is_some_and(|x| x >= *d),
            From(s) => self.header_contains(b"From", s)?,
            To(s) => self.header_contains(b"To", s)?,
            Cc(s) => self.header_contains(b"Cc", s)?,
            Bcc(s) => self.header_contains(b"Bcc", s)?,
            Subject(s) => self.header_contains(b"Subject", s)?,
            Header(name, s) => {
                if s.is_empty() {
                    // RFC 3501: an empty string matches every message with the field.
                    self.has_header(name.as_bytes())?
                } else {
                    self.header_contains(name.as_bytes(), s)?
                }
            }
            // An empty string matches every message (even one without text parts).
            Body(s) | Text(s) if s.is_empty() => true,
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

    /// `Some(None)`: known to have no (usable) Date field.
    fn sent_date(&self) -> Option<Option<Date>> {
        match (self.msg, self.headers) {
            (Some(msg), _) => Some(msg.sent_date()),
            (None, Some(h)) => Some(h.sent_date),
            (None, None) => None,
        }
    }

    fn has_header(&self, name: &[u8]) -> Option<bool> {
        match self.msg {
            Some(msg) => Some(msg.has_header(name)),
            None => Some(self.headers?.field(name)?.present()),
        }
    }

    fn header_contains(&self, name: &[u8], s: &IString<'_>) -> Option<bool> {
        let needle = needle(s);
        if let Some(msg) = self.msg {
            return Some(msg.header_text(name).iter().any(|v| contains(v, &needle)));
        }
        // Cached values are lower-cased already.
        let mut values = self.headers?.field(name)?.values()?;
        Some(values.any(|v| needle.is_empty() || v.contains(&*needle)))
    }
}

/// A search string, lower-cased (invalid UTF-8 replaced).
fn needle(s: &IString<'_>) -> String {
    String::from_utf8_lossy(s.as_bytes()).to_lowercase()
}

fn contains(haystack: &str, lower_needle: &str) -> bool {
    lower_needle.is_empty() || haystack.to_lowercase().contains(lower_needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::mime::tests::fixture_path;
    use ironpost_core::imap::{parse_command, CommandBody, Limits};
    use std::fs::File;

    const KEYWORDS: &[&str] = &["$Forwarded", "Work"];

    fn meta(flags: SystemFlags) -> MessageMeta<'static> {
        MessageMeta {
            seq: 12,
            uid: 1001,
            flags,
            keywords: KEYWORDS,
            recent: false,
            size: 493,
            // 17-Jul-1996 09:44:25 UTC.
            internal_date: 837_596_665,
        }
    }

    const CTX: SearchContext = SearchContext {
        max_seq: 20,
        max_uid: 2000,
    };

    fn criteria(keys: &str) -> Vec<SearchKey<'static>> {
        let line = format!("a SEARCH {keys}\r\n");
        let (_, cmd) = parse_command(line.as_bytes(), &Limits::default()).unwrap();
        match cmd.body {
            CommandBody::Search { criteria, .. } => {
                criteria.into_iter().map(SearchKey::into_owned).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    fn search_with(name: &str, m: &MessageMeta<'_>, keys: &str) -> bool {
        let mut cache = None;
        matches(
            &criteria(keys),
            &CTX,
            m,
            fixture_path(name).as_path(),
            &mut cache,
        )
        .unwrap()
    }

    fn search(name: &str, keys: &str) -> bool {
        search_with(name, &meta(SystemFlags::SEEN), keys)
    }

    #[test]
    fn flag_keys() {
        let m = meta(SystemFlags::SEEN.union(SystemFlags::ANSWERED));
        let t = |keys: &str| search_with("simple.eml", &m, keys);
        for yes in [
            "ALL",
            "ANSWERED",
            "SEEN",
            "UNDELETED",
            "UNDRAFT",
            "UNFLAGGED",
            "OLD",
        ] {
            assert!(t(yes), "{yes}");
        }
        for no in [
            "DELETED",
            "DRAFT",
            "FLAGGED",
            "UNANSWERED",
            "UNSEEN",
            "RECENT",
            "NEW",
        ] {
            assert!(!t(no), "{no}");
        }
        let m = meta(
            SystemFlags::DELETED
                .union(SystemFlags::DRAFT)
                .union(SystemFlags::FLAGGED),
        );
        let mut recent = m;
        recent.recent = true;
        let t = |keys: &str| search_with("simple.eml", &recent, keys);
        for yes in [
            "DELETED",
            "DRAFT",
            "FLAGGED",
            "UNSEEN",
            "UNANSWERED",
            "RECENT",
            "NEW",
        ] {
            assert!(t(yes), "{yes}");
        }
        assert!(!t("OLD"));
        // NEW is RECENT and UNSEEN.
        let mut seen_recent = meta(SystemFlags::SEEN);
        seen_recent.recent = true;
        assert!(!search_with("simple.eml", &seen_recent, "NEW"));
    }

    #[test]
    fn keyword_keys() {
        assert!(search("simple.eml", "KEYWORD work"));
        assert!(search("simple.eml", "KEYWORD $forwarded"));
        assert!(!search("simple.eml", "KEYWORD $Junk"));
        assert!(search("simple.eml", "UNKEYWORD $Junk"));
        assert!(!search("simple.eml", "UNKEYWORD Work"));
    }

    #[test]
    fn size_keys() {
        assert!(search("simple.eml", "LARGER 492"));
        assert!(!search("simple.eml", "LARGER 493"));
        assert!(search("simple.eml", "SMALLER 494"));
        assert!(!search("simple.eml", "SMALLER 493"));
    }

    #[test]
    fn internal_date_keys_compare_dates_only() {
        for (keys, want) in [
            ("ON 17-Jul-1996", true),
            ("ON 16-Jul-1996", false),
            ("BEFORE 17-Jul-1996", false),
            ("BEFORE 18-Jul-1996", true),
            ("SINCE 17-Jul-1996", true),
            ("SINCE 18-Jul-1996", false),
            ("SINCE 1-Jan-1990 BEFORE 1-Jan-2000", true),
        ] {
            assert_eq!(search("simple.eml", keys), want, "{keys}");
        }
        // The last second of a day is still on that day.
        let mut m = meta(SystemFlags::SEEN);
        m.internal_date = Date::new(1996, 7, 18).unwrap().days_from_epoch() * 86_400 - 1;
        assert!(search_with("simple.eml", &m, "ON 17-Jul-1996"));
        assert!(search_with("simple.eml", &m, "BEFORE 18-Jul-1996"));
    }

    #[test]
    fn sent_date_keys_use_the_date_as_written() {
        // Wed, 17 Jul 1996 02:23:25 -0700.
        assert!(search("simple.eml", "SENTON 17-Jul-1996"));
        assert!(search(
            "simple.eml",
            "SENTSINCE 17-Jul-1996 SENTBEFORE 18-Jul-1996"
        ));
        assert!(!search("simple.eml", "SENTBEFORE 17-Jul-1996"));
        assert!(!search("simple.eml", "SENTSINCE 18-Jul-1996"));
        // Mon, 02 Mar 2026 23:30:00 -0800 is 3 March in UTC, but was sent on 2 March.
        assert!(search("alternative.eml", "SENTON 2-Mar-2026"));
        assert!(!search("alternative.eml", "SENTON 3-Mar-2026"));
        // Thu, 1 Jan 2026 00:30:00 +0200 was 31 December in UTC.
        assert!(search("encoded.eml", "SENTON 1-Jan-2026"));
        // No Date: no sent-date key matches.
        for keys in [
            "SENTON 1-Jan-2026",
            "SENTBEFORE 1-Jan-3000",
            "SENTSINCE 1-Jan-1900",
        ] {
            assert!(!search("nodate.eml", keys), "{keys}");
        }
        assert!(search("nodate.eml", "NOT SENTBEFORE 1-Jan-3000"));
    }

    #[test]
    fn address_and_subject_keys() {
        assert!(search("simple.eml", "FROM terry"));
        assert!(search("simple.eml", "FROM \"GRAY@CAC\""));
        assert!(!search("simple.eml", "FROM klensin"));
        assert!(search("simple.eml", "TO imap@"));
        assert!(search("simple.eml", "CC \"John Klensin\""));
        assert!(search("simple.eml", "CC cnri"));
        assert!(!search("simple.eml", "BCC x"));
        assert!(search("group.eml", "BCC hidden"));
        assert!(search("group.eml", "TO undisclosed"));
        assert!(search("group.eml", "CC \"b. ob\""));
        assert!(search("simple.eml", "SUBJECT \"wg MTG\""));
        assert!(!search("simple.eml", "SUBJECT lunch"));
        assert!(!search("nodate.eml", "SUBJECT \"\""), "no Subject field");
        assert!(search("simple.eml", "SUBJECT \"\""));
    }

    #[test]
    fn header_key() {
        assert!(search("simple.eml", "HEADER Message-ID b27397"));
        assert!(search("simple.eml", "HEADER mime-version \"\""));
        assert!(!search("simple.eml", "HEADER X-Missing \"\""));
        // A folded field is searched unfolded.
        assert!(search("nodate.eml", "HEADER X-Long \"second part\""));
        assert!(!search("nodate.eml", "HEADER X-Other \"second\""));
    }

    #[test]
    fn utf8_substrings_on_decoded_text() {
        // Encoded words are decoded; matching folds case beyond ASCII.
        assert!(search("encoded.eml", "CHARSET UTF-8 SUBJECT {7+}\r\ngrüße"));
        assert!(search("encoded.eml", "CHARSET UTF-8 FROM {7+}\r\nMÜLLER"));
        assert!(search("encoded.eml", "TO {6+}\r\nrenée"));
        assert!(search("encoded.eml", "TO \"smith, john\""));
        // The header of a forwarded message is body text of the message around it.
        assert!(search("mixed.eml", "BODY {5+}\r\ncafé"));
        assert!(search("mixed.eml", "TEXT \"eve@example\""));
        assert!(!search("mixed.eml", "FROM eve"));
        // Base64 and quoted-printable bodies are decoded.
        assert!(search("encoded.eml", "BODY {7+}\r\nSTRAßE"));
        assert!(search("alternative.eml", "BODY {8+}\r\nCafé at"));
        assert!(!search("alternative.eml", "BODY Caf=C3"));
        // HTML is searched as text.
        assert!(search("alternative.eml", "BODY \"at noon\""));
        assert!(!search("alternative.eml", "BODY eacute"));
    }

    #[test]
    fn body_and_text_keys() {
        assert!(search("simple.eml", "BODY \"meet at 3:30\""));
        assert!(!search("simple.eml", "BODY Terry"));
        assert!(search("simple.eml", "TEXT Terry"));
        assert!(search("simple.eml", "TEXT \"3:30 TOMORROW\""));
        assert!(!search("simple.eml", "TEXT nowhere"));
        // Text parts of a forwarded message count; attachments and MIME headers do not.
        assert!(search("mixed.eml", "BODY \"inner text\""));
        assert!(!search("mixed.eml", "BODY JVBER"));
        assert!(!search("mixed.eml", "BODY Quarterly"));
        assert!(search("nodate.eml", "BODY \"no newline\""));
        let image_only =
            ParsedMessage::from_bytes(b"Content-Type: image/png\r\n\r\nxyz\r\n".to_vec());
        let mut cache = Some(image_only);
        let m = meta(SystemFlags::SEEN);
        let never = || -> Result<File, std::io::Error> { panic!("the message was opened") };
        assert!(matches(&criteria("BODY \"\""), &CTX, &m, &never, &mut cache).unwrap());
        assert!(!matches(&criteria("BODY xyz"), &CTX, &m, &never, &mut cache).unwrap());
    }

    #[test]
    fn sequence_and_uid_sets() {
        let t = |keys: &str| search("simple.eml", keys);
        // seq 12 of 20, UID 1001 of at most 2000.
        assert!(t("12"));
        assert!(t("1:5,10:*"));
        assert!(t("*:12"));
        assert!(!t("13:*"));
        assert!(!t("*"));
        assert!(t("UID 1000:*"));
        assert!(t("UID 1001"));
        assert!(!t("UID 1002:*"));
        assert!(!t("UID *"));
        let mut last = meta(SystemFlags::SEEN);
        last.seq = 20;
        last.uid = 2000;
        assert!(search_with("simple.eml", &last, "*"));
        assert!(search_with("simple.eml", &last, "UID *"));
        assert!(
            search_with("simple.eml", &last, "UID 3000:*"),
            "`3000:*` is 2000:3000"
        );
    }

    #[test]
    fn not_or_and_nesting() {
        let t = |keys: &str| search("simple.eml", keys);
        assert!(t("OR FROM nobody SUBJECT minutes"));
        assert!(t("OR SUBJECT minutes FROM nobody"));
        assert!(!t("OR FROM nobody SUBJECT nothing"));
        assert!(t("NOT FROM nobody"));
        assert!(!t("NOT SEEN"));
        assert!(t("NOT NOT SEEN"));
        assert!(t("(SEEN FROM terry)"));
        assert!(!t("(SEEN FROM nobody)"));
        assert!(t("NOT (SEEN FLAGGED)"));
        assert!(t("OR (FROM nobody TO imap) (SUBJECT minutes NOT DELETED)"));
        assert!(!t("OR (FROM nobody TO imap) (SUBJECT minutes DELETED)"));
        assert!(t("OR NOT (OR DELETED DRAFT) FROM nobody 12 UID 1001"));
        assert!(t("SEEN NOT OR DELETED (FLAGGED UNSEEN) OR 1:3 NOT 5:7"));
        assert!(!t("ALL SEEN 12 NOT TEXT terry"));
    }

    #[test]
    fn the_message_is_read_only_when_needed() {
        let never = || -> Result<File, std::io::Error> { panic!("the message was opened") };
        let unseen = meta(SystemFlags::empty());
        let run = |m: &MessageMeta<'_>, keys: &str| {
            let mut cache = None;
            let r = matches(&criteria(keys), &CTX, m, &never, &mut cache).unwrap();
            assert!(cache.is_none());
            r
        };
        assert!(run(
            &unseen,
            "UNSEEN 1:20 UID 1:* LARGER 10 SINCE 1-Jan-1990 KEYWORD Work"
        ));
        // A false key decides an AND, a true one an OR, whatever the others.
        assert!(!run(&unseen, "FROM terry SEEN BODY x"));
        assert!(run(&unseen, "OR BODY x UNSEEN"));
        assert!(!run(&unseen, "NOT OR UNSEEN SUBJECT x"));
        assert!(!needs_message(&criteria("UNSEEN OR 1 NOT (UID 5 DRAFT)")));
        assert!(needs_message(&criteria(
            "UNSEEN OR 1 NOT (UID 5 HEADER X y)"
        )));
        // Otherwise the message is parsed once and kept.
        let mut cache = None;
        let path = fixture_path("simple.eml");
        assert!(matches(
            &criteria("UNSEEN FROM terry"),
            &CTX,
            &unseen,
            path.as_path(),
            &mut cache
        )
        .unwrap());
        assert!(cache.is_some());
        assert!(matches(
            &criteria("BODY tomorrow"),
            &CTX,
            &unseen,
            &never,
            &mut cache
        )
        .unwrap());
        // A message that cannot be read is an error, not a non-match.
        let gone = || -> Result<File, crate::mailstore::MailstoreError> {
            Err(crate::mailstore::MailstoreError::Expunged { uid: 1001 })
        };
        assert!(matches(&criteria("FROM x"), &CTX, &unseen, &gone, &mut None).is_err());
    }

    #[test]
    fn charsets() {
        for ok in ["UTF-8", "utf-8", "US-ASCII", "us-ascii"] {
            assert!(charset_supported(ok), "{ok}");
        }
        for bad in ["ISO-8859-1", "UTF8", "", "KOI8-R"] {
            assert!(!charset_supported(bad), "{bad}");
        }
    }

    // -----------------------------------------------------------------------------------
    // The header cache

    const FIXTURES: [&str; 6] = [
        "simple.eml",
        "encoded.eml",
        "group.eml",
        "mixed.eml",
        "nodate.eml",
        "alternative.eml",
    ];

    /// A search string as a literal (exact octet count, for non-ASCII).
    fn lit(s: &str) -> String {
        format!("{{{}+}}\r\n{s}", s.len())
    }

    /// Criteria over every header key: encoded words, case, empty strings, missing fields,
    /// dates, nesting.
    fn header_criteria() -> Vec<String> {
        let mut v: Vec<String> = [
            "SUBJECT \"\"",
            "SUBJECT wg",
            "SUBJECT \"WG MTG\"",
            "SUBJECT lunch",
            "FROM terry",
            "FROM \"GRAY@CAC\"",
            "FROM \"\"",
            "FROM eve",
            "TO imap@",
            "TO undisclosed",
            "TO \"smith, john\"",
            "CC \"John Klensin\"",
            "CC \"b. ob\"",
            "CC \"\"",
            "BCC hidden",
            "BCC \"\"",
            "HEADER Message-ID b27397",
            "HEADER MESSAGE-ID \"\"",
            "HEADER mime-version \"\"",
            "HEADER X-Missing \"\"",
            "HEADER X-Long \"second part\"",
            "HEADER X-Other second",
            "HEADER Subject MTG",
            "HEADER content-type MULTIPART",
            "HEADER Date 1996",
            "SENTON 17-Jul-1996",
            "SENTBEFORE 18-Jul-1996",
            "SENTBEFORE 17-Jul-1996",
            "SENTSINCE 1-Jan-2026",
            "SENTON 2-Mar-2026",
            "SENTON 3-Mar-2026",
            "SENTON 1-Jan-2026",
            "NOT SENTBEFORE 1-Jan-3000",
            "SENTSINCE 1-Jan-1900",
            "OR FROM nobody SUBJECT minutes",
            "NOT (TO imap SENTSINCE 1-Jan-1990)",
            "OR HEADER X-Other second CC cnri",
            "SEEN NOT OR DELETED (FROM terry UNSEEN) HEADER In-Reply-To \"\"",
        ]
        .map(String::from)
        .to_vec();
        for (key, text) in [
            ("SUBJECT", "grüße"),
            ("SUBJECT", "GRÜSSE"),
            ("SUBJECT", "GRÜßE"),
            ("FROM", "MÜLLER"),
            ("FROM", "müller"),
            ("TO", "renée"),
            ("TO", "RENÉE"),
            ("HEADER Subject", "Grüße"),
        ] {
            v.push(format!("CHARSET UTF-8 {key} {}", lit(text)));
        }
        v
    }

    fn never() -> Result<File, std::io::Error> {
        panic!("the message was opened")
    }

    #[test]
    fn cached_headers_answer_as_the_file_does() {
        let m = meta(SystemFlags::SEEN);
        for name in FIXTURES {
            let path = fixture_path(name);
            let mut standard = None;
            matches_cached(
                &criteria("SUBJECT x"),
                &CTX,
                &m,
                path.as_path(),
                &mut None,
                None,
                &mut standard,
            )
            .unwrap();
            let standard = standard.expect("a summary of a message read");
            for keys in header_criteria() {
                let c = criteria(&keys);
                let cold = matches(&c, &CTX, &m, path.as_path(), &mut None).unwrap();
                // From no summary: the file is read and a summary made.
                let mut fresh = None;
                let r = matches_cached(&c, &CTX, &m, path.as_path(), &mut None, None, &mut fresh);
                assert_eq!(r.unwrap(), cold, "{name}: {keys}");
                let fresh = fresh.expect("a new summary");
                // From that summary: the same answer, the file unopened, nothing new.
                let mut again = None;
                let r = matches_cached(&c, &CTX, &m, &never, &mut None, Some(&fresh), &mut again);
                assert_eq!(r.unwrap(), cold, "{name}: {keys} (cached)");
                assert!(again.is_none(), "{name}: {keys}");
                // From the standard summary: HEADER on another name reads the file and makes
                // a summary with that name too; the rest is answered from the cache.
                let mut more = None;
                let r = matches_cached(
                    &c,
                    &CTX,
                    &m,
                    path.as_path(),
                    &mut None,
                    Some(&standard),
                    &mut more,
                );
                assert_eq!(r.unwrap(), cold, "{name}: {keys} (standard)");
                if let Some(more) = more {
                    assert!(more.fields().count() > standard.fields().count(), "{keys}");
                    let r = matches_cached(&c, &CTX, &m, &never, &mut None, Some(&more), &mut None);
                    assert_eq!(r.unwrap(), cold, "{name}: {keys} (extended)");
                } else {
                    let r =
                        matches_cached(&c, &CTX, &m, &never, &mut None, Some(&standard), &mut None);
                    assert_eq!(r.unwrap(), cold, "{name}: {keys} (standard, cached)");
                }
            }
        }
    }

    #[test]
    fn fields_too_long_to_keep_are_searched_in_the_file() {
        let td = crate::maildir::test_support::TempDir::new();
        let path = td.path().join("long.eml");
        let long = "word ".repeat(2000);
        std::fs::write(
            &path,
            format!("Subject: {long}needle\r\nFrom: a@b\r\nX-Big: {long}\r\n\r\nbody\r\n"),
        )
        .unwrap();
        let m = meta(SystemFlags::SEEN);
        let c = criteria("SUBJECT needle HEADER X-Big word");
        let mut fresh = None;
        let r = matches_cached(&c, &CTX, &m, path.as_path(), &mut None, None, &mut fresh);
        assert!(r.unwrap());
        let s = fresh.unwrap();
        assert!(s.field(b"subject").unwrap().values().is_none());
        assert!(s.field(b"x-big").unwrap().present());
        let from: Vec<&str> = s.field(b"from").unwrap().values().unwrap().collect();
        assert_eq!(from, ["a@b"]);
        // The short field is answered from the cache; the long ones need the file.
        let from = criteria("FROM A@B");
        assert!(matches_cached(&from, &CTX, &m, &never, &mut None, Some(&s), &mut None).unwrap());
        let exists = criteria("HEADER x-big \"\"");
        assert!(matches_cached(&exists, &CTX, &m, &never, &mut None, Some(&s), &mut None).unwrap());
        let mut again = None;
        assert!(matches_cached(
            &c,
            &CTX,
            &m,
            path.as_path(),
            &mut None,
            Some(&s),
            &mut again
        )
        .unwrap());
        assert!(again.is_none(), "nothing better to cache");
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            matches_cached(&c, &CTX, &m, &never, &mut None, Some(&s), &mut None)
        }))
        .is_err());
    }

    mod mailbox {
        use super::*;
        use crate::maildir::test_support::TempDir;
        use crate::mailstore::{MailStore, StoreOp, MESSAGE_OPENS};
        use std::path::PathBuf;

        fn opens() -> u64 {
            MESSAGE_OPENS.with(|c| c.get())
        }

        /// The account's INBOX with the fixtures and `extra` generated messages in new/.
        fn setup(td: &TempDir, extra: usize) -> PathBuf {
            let store = MailStore::open(td.path(), "mx.example.org").unwrap();
            let acct = store.account("example.org", "alice").unwrap();
            let new = acct.root().join("new");
            for (i, name) in FIXTURES.iter().enumerate() {
                let body = std::fs::read(fixture_path(name)).unwrap();
                std::fs::write(
                    new.join(format!("1700000000.M{i}P1Q0.test,S={}", body.len())),
                    body,
                )
                .unwrap();
            }
            for i in 0..extra {
                let body = format!(
                    "From: Sender {i} <s{i}@example.org>\r\nTo: alice@example.org\r\n\
                     Subject: message {i}\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\nhello {i}\r\n"
                );
                std::fs::write(
                    new.join(format!("1700000001.M{}P2Q0.test,S={}", 100 + i, body.len())),
                    body,
                )
                .unwrap();
            }
            acct.root().to_owned()
        }

        fn run(td: &TempDir, keys: &str) -> (Vec<u32>, u64) {
            let store = MailStore::open(td.path(), "mx.example.org").unwrap();
            run_in(&store, keys)
        }

        fn run_in(store: &MailStore, keys: &str) -> (Vec<u32>, u64) {
            let acct = store.account("example.org", "alice").unwrap();
            let view = acct.select("INBOX").unwrap();
            let before = opens();
            let out = search_view(&view, &criteria(keys), true);
            assert!(!out.failed);
            (out.found, opens() - before)
        }

        #[test]
        fn a_warm_search_opens_nothing_and_survives_a_restart() {
            let td = TempDir::new();
            let root = setup(&td, 20);
            let store = MailStore::open(td.path(), "mx.example.org").unwrap();
            for keys in header_criteria() {
                let (cold, _) = run_in(&store, &keys);
                let (warm, m) = run_in(&store, &keys);
                assert_eq!(warm, cold, "{keys}");
                assert_eq!(m, 0, "{keys}: warm search opened files");
                // What a search without any cache finds.
                let acct = store.account("example.org", "alice").unwrap();
                let view = acct.select("INBOX").unwrap();
                let mut plain = Vec::new();
                for (i, msg) in view.messages().iter().enumerate() {
                    let names = view.keyword_names(msg.keywords);
                    let meta = MessageMeta::from_info(i as u32 + 1, msg, &names);
                    let open = || view.open_message(msg.uid);
                    if matches(
                        &criteria(&keys),
                        &SearchContext {
                            max_seq: view.exists(),
                            max_uid: 26,
                        },
                        &meta,
                        &open,
                        &mut None,
                    )
                    .unwrap()
                    {
                        plain.push(msg.uid);
                    }
                }
                assert_eq!(cold, plain, "{keys}");
            }
            assert!(root.join("ironpost.cache").is_file());
            // A new process (store and registry) reads the file: no message is opened.
            let (found, n) = run(&td, "SUBJECT \"message 7\"");
            assert_eq!((found, n), (vec![14], 0));
            let (found, n) = run(&td, "HEADER X-Long \"second part\"");
            assert_eq!((found, n), (vec![5], 0));
            // Flag changes rename files: the cache is keyed by the part that stays.
            {
                let acct = store.account("example.org", "alice").unwrap();
                let mut view = acct.select("INBOX").unwrap();
                view.store(&[14, 15], StoreOp::Add, SystemFlags::SEEN, &["Work"])
                    .unwrap();
            }
            let (found, n) = run(&td, "SUBJECT \"message 7\"");
            assert_eq!((found, n), (vec![14], 0));
            // A new message is read once.
            std::fs::write(
                root.join("new/1700000002.M1P3Q0.test,S=40"),
                "Subject: message 7 again\r\n\r\nbody\r\n",
            )
            .unwrap();
            assert_eq!(run(&td, "SUBJECT \"message 7\""), (vec![14, 27], 1));
            assert_eq!(run(&td, "SUBJECT \"message 7\""), (vec![14, 27], 0));
        }

        #[test]
        fn a_damaged_cache_is_rebuilt() {
            let td = TempDir::new();
            let root = setup(&td, 10);
            let file = root.join("ironpost.cache");
            let (want, n) = run(&td, "FROM \"sender 3\"");
            assert_eq!((want.as_slice(), n), ([10].as_slice(), 16));
            let good = std::fs::read(&file).unwrap();
            let mut flipped = good.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 1;
            for bad in [
                flipped,
                good[..good.len() - 1].to_vec(),
                Vec::new(),
                b"3 V1 N1\n".to_vec(),
            ] {
                std::fs::write(&file, &bad).unwrap();
                // Not trusted: every message is read again, with the same answer, and the
                // file is written anew.
                assert_eq!(run(&td, "FROM \"sender 3\""), (want.clone(), 16));
                assert_eq!(run(&td, "FROM \"sender 3\""), (want.clone(), 0));
            }
            // A missing file is rebuilt too.
            std::fs::remove_file(&file).unwrap();
            assert_eq!(run(&td, "FROM \"sender 3\""), (want.clone(), 16));
            assert!(file.is_file());
        }

        #[test]
        fn entries_of_expunged_messages_are_dropped() {
            let td = TempDir::new();
            let root = setup(&td, 10);
            let file = root.join("ironpost.cache");
            let store = MailStore::open(td.path(), "mx.example.org").unwrap();
            assert_eq!(run_in(&store, "SUBJECT \"message 3\"").0, [10]);
            let base = "1700000001.M103P2Q0.test";
            let holds = |base: &str| {
                let bytes = std::fs::read(&file).unwrap();
                bytes.windows(base.len()).any(|w| w == base.as_bytes())
            };
            assert!(holds(base));
            {
                let acct = store.account("example.org", "alice").unwrap();
                let mut view = acct.select("INBOX").unwrap();
                view.store(&[10], StoreOp::Add, SystemFlags::DELETED, &[])
                    .unwrap();
                assert_eq!(view.expunge(None).unwrap(), [10]);
            }
            // Written again once something new is cached: without the expunged message.
            std::fs::write(
                root.join("new/1700000002.M1P3Q0.test,S=40"),
                "Subject: message 3 again\r\n\r\nbody\r\n",
            )
            .unwrap();
            assert_eq!(run_in(&store, "SUBJECT \"message 3\""), (vec![17], 1));
            assert!(!holds(base));
            assert!(holds("1700000001.M104P2Q0.test"));
            // A file that still lists it (written before the expunge) is not believed for it.
            assert_eq!(run(&td, "SUBJECT \"message 3\""), (vec![17], 0));
        }

        #[test]
        fn two_processes_and_deliveries_share_the_file() {
            // Two stores with registries of their own (two processes) search the same
            // mailbox while messages arrive; each writes the file, merging the other's.
            let td = TempDir::new();
            let root = setup(&td, 30);
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    for i in 0..40 {
                        let body = format!("Subject: late {i}\r\n\r\nx\r\n");
                        let name = format!("1700000003.M{i}P4Q0.test,S={}", body.len());
                        std::fs::write(root.join("tmp").join(&name), &body).unwrap();
                        std::fs::rename(root.join("tmp").join(&name), root.join("new").join(&name))
                            .unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    stop.store(true, std::sync::atomic::Ordering::Release);
                });
                for keys in [
                    "SUBJECT late",
                    "OR SUBJECT \"message 2\" HEADER X-Long part",
                ] {
                    let stop = &stop;
                    let td = &td;
                    scope.spawn(move || {
                        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
                        while !stop.load(std::sync::atomic::Ordering::Acquire) {
                            let acct = store.account("example.org", "alice").unwrap();
                            let view = acct.select("INBOX").unwrap();
                            let c = criteria(keys);
                            let found = search_view(&view, &c, true);
                            assert!(!found.failed);
                            // What reading every file finds, for the same view.
                            let mut plain = Vec::new();
                            for (i, msg) in view.messages().iter().enumerate() {
                                let names = view.keyword_names(msg.keywords);
                                let meta = MessageMeta::from_info(i as u32 + 1, msg, &names);
                                let open = || view.open_message(msg.uid);
                                let ctx = SearchContext {
                                    max_seq: view.exists(),
                                    max_uid: msg.uid.max(1000),
                                };
                                if matches(&c, &ctx, &meta, &open, &mut None).unwrap() {
                                    plain.push(msg.uid);
                                }
                            }
                            assert_eq!(found.found, plain, "{keys}");
                        }
                    });
                }
            });
            // Whatever order the writes came in, they merge into a whole: a process that
            // reads what is still missing and saves it (a search alone writes only when
            // enough summaries are new) leaves nothing for the next to read.
            let store = MailStore::open(td.path(), "mx.example.org").unwrap();
            let (found, n) = run_in(&store, "SUBJECT late");
            assert_eq!(found.len(), 40);
            assert!(n <= 40, "{n} messages read");
            let acct = store.account("example.org", "alice").unwrap();
            acct.select("INBOX").unwrap().save_headers().unwrap();
            assert_eq!(run(&td, "SUBJECT late"), (found, 0));
        }

        #[test]
        fn noted_summaries_are_saved_with_what_another_process_wrote_meanwhile() {
            // FETCH notes summaries in memory and saves at its end; another process may have
            // written the file in between.
            let td = TempDir::new();
            let root = setup(&td, 4);
            let file = root.join("ironpost.cache");
            let store = MailStore::open(td.path(), "mx.example.org").unwrap();
            let acct = store.account("example.org", "alice").unwrap();
            let view = acct.select("INBOX").unwrap();
            let noted: Vec<(u32, HeaderSummary)> = (1..=5)
                .map(|uid| {
                    let msg = load(&|| view.open_message(uid)).unwrap();
                    (uid, header_summary(&msg, None).unwrap())
                })
                .collect();
            view.note_headers(noted).unwrap();
            assert!(!file.exists());
            // In memory, every session of the process has them at once.
            assert_eq!(run_in(&store, "UID 1:5 FROM terry"), (vec![1], 0));
            // Another process searches the other five and writes the file with those.
            let other = MailStore::open(td.path(), "mx.example.org").unwrap();
            assert_eq!(
                run_in(&other, "UID 6:10 SUBJECT message"),
                ((7..=10).collect(), 5)
            );
            // Saving ours keeps theirs: a third process reads no file at all.
            view.save_headers().unwrap();
            assert_eq!(
                run(&td, "OR FROM terry SUBJECT \"message 2\""),
                (vec![1, 9], 0)
            );
        }

        #[test]
        fn a_message_replaced_under_its_name_is_not_answered_from_the_cache() {
            // Same base, other size (a program that rewrites messages): a miss.
            let td = TempDir::new();
            let root = setup(&td, 3);
            assert_eq!(run(&td, "SUBJECT \"message 1\"").0, [8]);
            let cur = root.join("cur");
            let old = std::fs::read_dir(&cur)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_str().unwrap().contains("1700000001.M101P2Q0"))
                .unwrap();
            std::fs::remove_file(&old).unwrap();
            std::fs::write(
                cur.join("1700000001.M101P2Q0.test,S=31:2,"),
                "Subject: something else\r\n\r\nx\r\n",
            )
            .unwrap();
            let (found, n) = run(&td, "SUBJECT \"message 1\"");
            assert!(found.is_empty());
            assert_eq!(n, 1);
        }
    }
}
