//! Mailbox names: what a client may ask for, and where each name lives on disk.
//!
//! The hierarchy delimiter is `.`, as in docker-mailserver's Dovecot (its `namespace inbox`
//! sets no `separator`, so Maildir++'s own `.` applies). INBOX is the account's root Maildir;
//! every other mailbox is a Maildir++ folder `<root>/.<level>.<level>/`, each level in
//! modified UTF-7. A parent with no directory of its own (`.a.b/` without `.a/`) lists as
//! `\Noselect`.

use super::{utf7, MailstoreError};

/// The hierarchy delimiter presented to clients (and used in the directory names).
pub const DELIMITER: char = '.';

/// Longest accepted mailbox name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 200;

/// Deepest accepted hierarchy.
pub const MAX_DEPTH: usize = 16;

/// A directory name may not be longer than this (NAME_MAX on Linux file systems).
const MAX_DIR_LEN: usize = 255;

/// A validated mailbox name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MailboxName {
    /// The name as clients see it: UTF-8, `INBOX` (and an `INBOX.` prefix) in upper case.
    pub(crate) name: String,
    /// The folder directory inside the account root (`.Sent`), `None` for INBOX.
    pub(crate) dir: Option<String>,
}

impl MailboxName {
    pub(crate) fn is_inbox(&self) -> bool {
        self.dir.is_none()
    }
}

fn invalid(name: &str, reason: &'static str) -> MailstoreError {
    MailstoreError::InvalidName {
        name: name.to_owned(),
        reason,
    }
}

/// Validates a mailbox name from a client (UTF-8, already decoded from the wire) and finds its
/// directory. Rejects anything that could name a path outside the account: `/`, NUL and other
/// control characters, empty levels (which covers a leading `.`, `..` and a trailing `.`),
/// the LIST wildcards `*` and `%`, and over-long or over-deep names.
pub(crate) fn parse(name: &str) -> Result<MailboxName, MailstoreError> {
    if name.is_empty() {
        return Err(invalid(name, "empty name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(name, "name too long"));
    }
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(MailboxName {
            name: "INBOX".into(),
            dir: None,
        });
    }
    for c in name.chars() {
        let reason = match c {
            '/' => "contains '/'",
            '\0' => "contains NUL",
            '*' | '%' => "contains a wildcard",
            c if c.is_control() => "contains a control character",
            _ => continue,
        };
        return Err(invalid(name, reason));
    }
    let mut normal = String::with_capacity(name.len());
    if name.len() > 6
        && name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("INBOX."))
    {
        normal.push_str("INBOX.");
        normal.push_str(&name[6..]);
    } else {
        normal.push_str(name);
    }
    let mut dir = String::with_capacity(normal.len() + 1);
    let mut depth = 0;
    for level in normal.split(DELIMITER) {
        if level.is_empty() {
            return Err(invalid(
                name,
                "empty hierarchy level (leading, trailing or double '.')",
            ));
        }
        depth += 1;
        dir.push('.');
        dir.push_str(&utf7::encode(level));
    }
    if depth > MAX_DEPTH {
        return Err(invalid(name, "hierarchy too deep"));
    }
    if dir.len() > MAX_DIR_LEN {
        return Err(invalid(name, "name too long"));
    }
    debug_assert!(!dir.contains('/') && dir != "." && dir != "..");
    Ok(MailboxName {
        name: normal,
        dir: Some(dir),
    })
}

/// The mailbox name of a folder directory (`.Archive.2024` → `Archive.2024`), `None` for a
/// directory name that is not a well-formed Maildir++ folder.
pub(crate) fn from_dir(dir: &str) -> Option<String> {
    let rest = dir.strip_prefix('.')?;
    let mut name = String::with_capacity(rest.len());
    for (i, level) in rest.split('.').enumerate() {
        if level.is_empty() {
            return None;
        }
        if i > 0 {
            name.push(DELIMITER);
        }
        name.push_str(&utf7::decode(level)?);
    }
    // A folder called INBOX would shadow the real one.
    if name.eq_ignore_ascii_case("INBOX") {
        return None;
    }
    // Re-parse so that whatever lists can also be opened.
    let parsed = parse(&name).ok()?;
    (parsed.dir.as_deref() == Some(dir)).then_some(parsed.name)
}

/// RFC 6154 special-use attributes of the folders every account gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
}

impl SpecialUse {
    /// The folders created (and subscribed) on an account's first open, with their names;
    /// the same set as docker-mailserver's `15-mailboxes.conf`.
    pub const ALL: [(SpecialUse, &'static str); 4] = [
        (SpecialUse::Drafts, "Drafts"),
        (SpecialUse::Junk, "Junk"),
        (SpecialUse::Trash, "Trash"),
        (SpecialUse::Sent, "Sent"),
    ];

    /// The LIST attribute, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
        }
    }

    /// The special use of a mailbox name, if it is one of [`SpecialUse::ALL`].
    pub fn of(name: &str) -> Option<SpecialUse> {
        SpecialUse::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(u, _)| *u)
    }
}

/// IMAP LIST matching: `*` matches anything, `%` anything but the delimiter; a leading `INBOX`
/// in the pattern matches case-insensitively (mailbox names here are already normalised).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let pattern = if pattern.len() >= 5
        && pattern.is_char_boundary(5)
        && pattern[..5].eq_ignore_ascii_case("INBOX")
        && (pattern.len() == 5 || pattern[5..].starts_with(DELIMITER))
    {
        format!("INBOX{}", &pattern[5..])
    } else {
        pattern.to_owned()
    };
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // reach[j]: the first i pattern characters can match the first j name characters.
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                for j in 0..=n.len() {
                    next[j] =
                        reach[j] || (j > 0 && next[j - 1] && (pc == '*' || n[j - 1] != DELIMITER));
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = reach[j - 1] && n[j - 1] == c;
                }
            }
        }
        reach = next;
    }
    reach[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_maildir_plus_plus_directories() {
        let p = parse("inbox").unwrap();
        assert!(p.is_inbox());
        assert_eq!(p.name, "INBOX");
        assert_eq!(parse("Sent").unwrap().dir.as_deref(), Some(".Sent"));
        assert_eq!(
            parse("Archive.2024").unwrap().dir.as_deref(),
            Some(".Archive.2024")
        );
        let p = parse("inbox.Sub").unwrap();
        assert_eq!(p.name, "INBOX.Sub");
        assert_eq!(p.dir.as_deref(), Some(".INBOX.Sub"));
        let p = parse("Entw\u{fc}rfe.a&b").unwrap();
        assert_eq!(p.dir.as_deref(), Some(".Entw&APw-rfe.a&-b"));
        assert_eq!(
            from_dir(".Entw&APw-rfe.a&-b").as_deref(),
            Some("Entw\u{fc}rfe.a&b")
        );
        assert_eq!(from_dir(".Archive.2024").as_deref(), Some("Archive.2024"));
        assert_eq!(from_dir(".INBOX.x").as_deref(), Some("INBOX.x"));
        for bad_dir in [
            "Sent", ".", "..", ".a..b", ".a.", ".&Jjo!-", ".INBOX", ".inbox", ".a*",
        ] {
            assert_eq!(from_dir(bad_dir), None, "{bad_dir:?}");
        }
    }

    #[test]
    fn escapes_and_junk_are_rejected() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let deep = vec!["a"; MAX_DEPTH + 1].join(".");
        let wide = "a\u{e9}".repeat(66); // short enough in UTF-8, too long in UTF-7
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../../b",
            "/etc/passwd",
            ".hidden",
            "a..b",
            "a.",
            "a\0b",
            "a\nb",
            "a\u{7f}b",
            "a\u{85}b",
            "a*",
            "%",
            long.as_str(),
            deep.as_str(),
            wide.as_str(),
        ] {
            assert!(
                matches!(parse(bad), Err(MailstoreError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_patterns() {
        assert!(pattern_matches("*", "INBOX"));
        assert!(pattern_matches("*", "a.b.c"));
        assert!(pattern_matches("%", "a"));
        assert!(!pattern_matches("%", "a.b"));
        assert!(pattern_matches("a.%", "a.b"));
        assert!(!pattern_matches("a.%", "a.b.c"));
        assert!(pattern_matches("a.*", "a.b.c"));
        assert!(pattern_matches("inbox", "INBOX"));
        assert!(pattern_matches("Inbox.%", "INBOX.x"));
        assert!(!pattern_matches("inboxes", "INBOX"));
        assert!(pattern_matches("S%t", "Sent"));
        assert!(!pattern_matches("sent", "Sent"));
        assert!(pattern_matches("%.%", "a.b"));
        assert!(pattern_matches("", "") && !pattern_matches("", "a"));
    }
}
