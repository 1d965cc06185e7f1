//! Message flags as Maildir stores them: system flags as upper-case letters in the `:2,`
//! suffix of the file name, keywords as the letters `a`–`z`, each standing for the keyword
//! on the same line of the mailbox's `dovecot-keywords` file (`0 $Junk` is `a`).
//!
//! At most 26 keywords per mailbox can be stored; a 27th is refused
//! ([`super::MailstoreError::TooManyKeywords`]) rather than kept only in memory, so that
//! everything a client sees survives a restart (PERMANENTFLAGS shows `\*` only while there is
//! room: [`super::MailboxView::can_create_keywords`]).

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

/// IMAP system flags (without `\Recent`, which is per session).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SystemFlags(u8);

/// Maildir's `P` (passed/resent) letter: no IMAP flag, kept as found.
pub(crate) const PASSED: u8 = 1 << 5;

/// Letter ↔ bit, in the ASCII order the letters are written in.
const LETTERS: [(u8, u8); 6] = [
    (b'D', 1 << 4),
    (b'F', 1 << 2),
    (b'P', PASSED),
    (b'R', 1 << 1),
    (b'S', 1),
    (b'T', 1 << 3),
];

impl SystemFlags {
    pub const SEEN: SystemFlags = SystemFlags(1);
    pub const ANSWERED: SystemFlags = SystemFlags(1 << 1);
    pub const FLAGGED: SystemFlags = SystemFlags(1 << 2);
    pub const DELETED: SystemFlags = SystemFlags(1 << 3);
    pub const DRAFT: SystemFlags = SystemFlags(1 << 4);
    const ALL: u8 = 0x1f;

    const NAMES: [(&'static str, SystemFlags); 5] = [
        ("\\Seen", SystemFlags::SEEN),
        ("\\Answered", SystemFlags::ANSWERED),
        ("\\Flagged", SystemFlags::FLAGGED),
        ("\\Deleted", SystemFlags::DELETED),
        ("\\Draft", SystemFlags::DRAFT),
    ];

    pub const fn empty() -> SystemFlags {
        SystemFlags(0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn contains(self, other: SystemFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: SystemFlags) -> SystemFlags {
        SystemFlags(self.0 | other.0)
    }

    pub const fn difference(self, other: SystemFlags) -> SystemFlags {
        SystemFlags(self.0 & !other.0)
    }

    pub fn insert(&mut self, other: SystemFlags) {
        self.0 |= other.0;
    }

    pub fn remove(&mut self, other: SystemFlags) {
        self.0 &= !other.0;
    }

    /// The flag named by an IMAP system flag (`\Seen`, case-insensitive); `None` for anything
    /// else, including `\Recent` (which a client cannot set).
    pub fn from_imap(name: &str) -> Option<SystemFlags> {
        SystemFlags::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
    }

    /// IMAP names of the flags set, in a fixed order.
    pub fn imap_names(self) -> impl Iterator<Item = &'static str> {
        SystemFlags::NAMES
            .into_iter()
            .filter(move |(_, f)| self.contains(*f))
            .map(|(n, _)| n)
    }

    pub(crate) fn from_letters(letters: u8) -> SystemFlags {
        SystemFlags(letters & SystemFlags::ALL)
    }

    pub(crate) fn bits(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for SystemFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.imap_names()).finish()
    }
}

/// A set of keywords of one mailbox, as bits over its keyword table (bit i = letter `a`+i).
pub type KeywordSet = u32;

/// How a STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

impl StoreOp {
    pub(crate) fn apply(
        self,
        letters: u8,
        kw: KeywordSet,
        flags: u8,
        keywords: KeywordSet,
    ) -> (u8, KeywordSet) {
        match self {
            // Replacing keeps Maildir's P, which IMAP cannot see.
            StoreOp::Replace => ((letters & PASSED) | flags, keywords),
            StoreOp::Add => (letters | flags, kw | keywords),
            StoreOp::Remove => (letters & !flags, kw & !keywords),
        }
    }
}

/// A Maildir file name taken apart: `<base>:2,<letters>[,<extra>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileName<'a> {
    pub(crate) base: &'a str,
    pub(crate) letters: u8,
    pub(crate) keywords: KeywordSet,
    /// Anything after a comma in the flags part, kept untouched.
    pub(crate) extra: &'a str,
}

impl<'a> FileName<'a> {
    pub(crate) fn parse(name: &'a str) -> FileName<'a> {
        let (base, info) = match name.find(':') {
            Some(i) => (&name[..i], &name[i + 1..]),
            None => (name, ""),
        };
        let mut parsed = FileName {
            base,
            letters: 0,
            keywords: 0,
            extra: "",
        };
        if let Some(flags) = info.strip_prefix("2,") {
            let (letters, extra) = flags.split_once(',').unwrap_or((flags, ""));
            parsed.extra = extra;
            for b in letters.bytes() {
                if let Some((_, bit)) = LETTERS.iter().find(|(l, _)| *l == b) {
                    parsed.letters |= bit;
                } else if b.is_ascii_lowercase() {
                    parsed.keywords |= 1 << (b - b'a');
                }
            }
        }
        parsed
    }

    /// The file name for these flags.
    pub(crate) fn format(base: &str, letters: u8, keywords: KeywordSet, extra: &str) -> String {
        let mut name = String::with_capacity(base.len() + 12 + extra.len());
        name.push_str(base);
        name.push_str(":2,");
        for (l, bit) in LETTERS {
            if letters & bit != 0 {
                name.push(l as char);
            }
        }
        for i in 0..26u8 {
            if keywords & (1 << i) != 0 {
                name.push((b'a' + i) as char);
            }
        }
        if !extra.is_empty() {
            name.push(',');
            name.push_str(extra);
        }
        name
    }

    /// The `,W=` size (RFC822.SIZE, counting CRLF line ends) in the base name.
    pub(crate) fn vsize(&self) -> Option<u64> {
        self.base
            .split(',')
            .skip(1)
            .find_map(|f| f.strip_prefix("W=")?.parse().ok())
    }

    /// The size `,W=` (RFC822.SIZE) or else `,S=` (file size) in the base name says.
    pub(crate) fn size(&self) -> Option<u64> {
        let mut s = None;
        for field in self.base.split(',').skip(1) {
            if let Some(w) = field.strip_prefix("W=") {
                return w.parse().ok();
            }
            if let Some(v) = field.strip_prefix("S=") {
                s = v.parse().ok();
            }
        }
        s
    }
}

/// The 26 keyword slots of a mailbox (`dovecot-keywords`). Holes (unused letters) are empty
/// strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Keywords {
    names: Vec<String>,
}

pub(crate) const MAX_KEYWORDS: usize = 26;

/// Whether a client may use this as a keyword: an IMAP atom not starting with `\`.
pub(crate) fn valid_keyword(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 50
        && !name.starts_with('\\')
        && name
            .bytes()
            .all(|b| b > b' ' && b < 0x7f && !b"(){%*\"\\]".contains(&b))
}

impl Keywords {
    pub(crate) fn parse(text: &str) -> Keywords {
        let mut names = Vec::new();
        for line in text.lines() {
            let Some((idx, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(idx) = idx.parse::<usize>() else {
                continue;
            };
            if idx >= MAX_KEYWORDS || !valid_keyword(name) {
                continue;
            }
            if names.len() <= idx {
                names.resize(idx + 1, String::new());
            }
            names[idx] = name.to_owned();
        }
        Keywords { names }
    }

    pub(crate) fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        for (i, name) in self.names.iter().enumerate() {
            if !name.is_empty() {
                writeln!(out, "{i} {name}")?;
            }
        }
        Ok(())
    }

    /// The slot of a keyword; matching is ASCII case-insensitive, as IMAP flags are.
    pub(crate) fn lookup(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .or_else(|| self.names.iter().position(|n| n.eq_ignore_ascii_case(name)))
    }

    /// The slots of these keywords, adding new ones. Returns the set and whether the table
    /// changed; fails without changing anything if a name is invalid or there is no room.
    pub(crate) fn resolve(
        &mut self,
        names: &[&str],
        add: bool,
    ) -> Result<(KeywordSet, bool), KeywordError> {
        let mut set = 0;
        let mut added = Vec::new();
        for &name in names {
            if !valid_keyword(name) {
                return Err(KeywordError::Invalid(name.to_owned()));
            }
            if let Some(i) = self.lookup(name) {
                set |= 1 << i;
            } else if add && !added.iter().any(|n: &&str| n.eq_ignore_ascii_case(name)) {
                added.push(name);
            }
        }
        if added.is_empty() {
            return Ok((set, false));
        }
        let free =
            self.names.iter().filter(|n| n.is_empty()).count() + MAX_KEYWORDS - self.names.len();
        if added.len() > free {
            return Err(KeywordError::Full);
        }
        for name in added {
            let i = match self.names.iter().position(|n| n.is_empty()) {
                Some(i) => i,
                None => {
                    self.names.push(String::new());
                    self.names.len() - 1
                }
            };
            self.names[i] = name.to_owned();
            set |= 1 << i;
        }
        Ok((set, true))
    }

    /// Names of the keywords in a set (unknown letters are left out).
    pub(crate) fn names(&self, set: KeywordSet) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .enumerate()
            .filter(move |(i, n)| set & (1 << i) != 0 && !n.is_empty())
            .map(|(_, n)| n.as_str())
    }

    /// Every defined keyword.
    pub(crate) fn all(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .filter(|n| !n.is_empty())
            .map(String::as_str)
    }

    pub(crate) fn len(&self) -> usize {
        self.all().count()
    }
}

#[derive(Debug)]
pub(crate) enum KeywordError {
    Invalid(String),
    Full,
}

/// Reads a `dovecot-keywords` file; a missing file is an empty table.
pub(crate) fn read_keywords(path: &Path) -> io::Result<Keywords> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Keywords::parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Keywords::default()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let n = FileName::parse("1700000000.M1P2Q3.host,S=120,W=124:2,STab,xyz");
        assert_eq!(n.base, "1700000000.M1P2Q3.host,S=120,W=124");
        assert_eq!(
            SystemFlags::from_letters(n.letters),
            SystemFlags::SEEN.union(SystemFlags::DELETED)
        );
        assert_eq!(n.keywords, 0b11);
        assert_eq!(n.extra, "xyz");
        assert_eq!(n.size(), Some(124));
        assert_eq!(
            FileName::format(n.base, n.letters, n.keywords, n.extra),
            "1700000000.M1P2Q3.host,S=120,W=124:2,STab,xyz"
        );
        // Letters come out in ASCII order whatever order they came in.
        let n = FileName::parse("x,S=5:2,zTSRPFDa");
        assert_eq!(n.size(), Some(5));
        assert_eq!(
            FileName::format(n.base, n.letters, n.keywords, ""),
            "x,S=5:2,DFPRSTaz"
        );
        let n = FileName::parse("plain");
        assert_eq!(
            (n.base, n.letters, n.keywords, n.size()),
            ("plain", 0, 0, None)
        );
        assert_eq!(FileName::format("plain", 0, 0, ""), "plain:2,");
        // Replace keeps P.
        let (l, k) = StoreOp::Replace.apply(PASSED | 1, 0b1, SystemFlags::DRAFT.bits(), 0b10);
        assert_eq!((l, k), (PASSED | SystemFlags::DRAFT.bits(), 0b10));
    }

    #[test]
    fn imap_names() {
        assert_eq!(SystemFlags::from_imap("\\SEEN"), Some(SystemFlags::SEEN));
        assert_eq!(SystemFlags::from_imap("\\Recent"), None);
        let f = SystemFlags::ANSWERED.union(SystemFlags::DRAFT);
        assert_eq!(
            f.imap_names().collect::<Vec<_>>(),
            ["\\Answered", "\\Draft"]
        );
    }

    #[test]
    fn keyword_table() {
        let mut k = Keywords::parse("0 $Junk\n2 $Label1\nbad line\n30 tooFar\n1 \\Bad\n");
        assert_eq!(k.all().collect::<Vec<_>>(), ["$Junk", "$Label1"]);
        assert_eq!(k.lookup("$junk"), Some(0));
        let (set, changed) = k.resolve(&["$label1", "New", "new"], true).unwrap();
        assert!(changed);
        assert_eq!(set, 0b110);
        assert_eq!(k.names(set).collect::<Vec<_>>(), ["New", "$Label1"]);
        let mut out = Vec::new();
        k.write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0 $Junk\n1 New\n2 $Label1\n"
        );
        assert!(matches!(
            k.resolve(&["a b"], true),
            Err(KeywordError::Invalid(_))
        ));
        let many: Vec<String> = (0..23).map(|i| format!("k{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(k.resolve(&many[..23], true).is_ok());
        assert_eq!(k.len(), 26);
        assert!(matches!(
            k.resolve(&["one-more"], true),
            Err(KeywordError::Full)
        ));
        assert_eq!(
            k.resolve(&["k0", "unknown"], false).unwrap(),
            (1 << 3, false)
        );
    }
}
