//! The IMAP4rev1 command grammar (RFC 3501 section 9, with the extensions ironpost speaks)
//! as borrowed views into the client's input buffer.
//!
//! Every string is a [`Cow`] (or an [`IString`], which wraps one) that borrows from the
//! input; only a quoted string containing backslash escapes is unescaped into an owned
//! buffer. Each type has an `into_owned` that detaches it from the buffer, for a session
//! that must keep a command across calls (a FETCH streamed over many messages).

use std::borrow::Cow;
use std::fmt;

use super::utf7;

// ---------------------------------------------------------------------------------------
// Strings

/// A string argument — an atom, a quoted string or a literal — with its quoting removed.
///
/// IMAP strings are octets: a literal may carry any 8-bit charset (SEARCH CHARSET), so this
/// is bytes; [`IString::to_str`] gives the UTF-8 view when there is one.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IString<'a>(pub Cow<'a, [u8]>);

impl<'a> IString<'a> {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The string as UTF-8, if it is.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the string still points into the input (no escapes had to be removed).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }

    pub fn into_owned(self) -> IString<'static> {
        IString(Cow::Owned(self.0.into_owned()))
    }
}

impl fmt::Debug for IString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

impl<'a> From<&'a [u8]> for IString<'a> {
    fn from(b: &'a [u8]) -> Self {
        IString(Cow::Borrowed(b))
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for IString<'a> {
    fn from(b: &'a [u8; N]) -> Self {
        IString(Cow::Borrowed(b))
    }
}

impl<'a> From<&'a str> for IString<'a> {
    fn from(s: &'a str) -> Self {
        IString(Cow::Borrowed(s.as_bytes()))
    }
}

impl From<Vec<u8>> for IString<'static> {
    fn from(b: Vec<u8>) -> Self {
        IString(Cow::Owned(b))
    }
}

impl From<String> for IString<'static> {
    fn from(s: String) -> Self {
        IString(Cow::Owned(s.into_bytes()))
    }
}

fn owned_str(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

// ---------------------------------------------------------------------------------------
// Commands

/// One complete client command: `tag SP command CRLF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    /// The tag, to be echoed in the tagged completion response. Always ASCII.
    pub tag: Cow<'a, str>,
    pub body: CommandBody<'a>,
}

impl Command<'_> {
    pub fn into_owned(self) -> Command<'static> {
        Command {
            tag: owned_str(self.tag),
            body: self.body.into_owned(),
        }
    }
}

/// The command proper, after its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody<'a> {
    // Any state (RFC 3501 6.1).
    Capability,
    Noop,
    Logout,

    // Not authenticated (RFC 3501 6.2).
    StartTls,
    /// `AUTHENTICATE mechanism [initial-response]` (SASL-IR, RFC 4959).
    Authenticate {
        mechanism: AuthMechanism<'a>,
        initial: Option<InitialResponse<'a>>,
    },
    Login {
        username: IString<'a>,
        password: IString<'a>,
    },

    // Authenticated (RFC 3501 6.3).
    /// `ENABLE cap...` (RFC 5161): the capability names as sent.
    Enable(Vec<Cow<'a, str>>),
    /// `ID (field value ...)` or `ID NIL` (RFC 2971).
    Id(Option<Vec<(IString<'a>, Option<IString<'a>>)>>),
    Namespace,
    Select {
        mailbox: Mailbox<'a>,
    },
    Examine {
        mailbox: Mailbox<'a>,
    },
    Create {
        mailbox: Mailbox<'a>,
    },
    Delete {
        mailbox: Mailbox<'a>,
    },
    Rename {
        from: Mailbox<'a>,
        to: Mailbox<'a>,
    },
    Subscribe {
        mailbox: Mailbox<'a>,
    },
    Unsubscribe {
        mailbox: Mailbox<'a>,
    },
    /// `LIST reference pattern`, or the RFC 5258 extended form
    /// `LIST (select-opts) reference (patterns) RETURN (return-opts)`.
    List {
        /// Still modified-UTF-7 encoded; not normalised (a reference is not a mailbox name).
        reference: IString<'a>,
        /// One pattern for the basic form; one or more for the extended form.
        patterns: Vec<IString<'a>>,
        select: ListSelect,
        ret: ListReturn,
    },
    Lsub {
        reference: IString<'a>,
        pattern: IString<'a>,
    },
    Status {
        mailbox: Mailbox<'a>,
        items: StatusItems,
    },
    /// `APPEND mailbox [flags] [date-time] literal`, or with RFC 6855's UTF8 data extension
    /// `APPEND mailbox [flags] [date-time] UTF8 (literal8)` (`utf8`: the message literal is
    /// `~{n}` or `~{n+}`, and a `)` follows it before the CRLF). Only the part of the command
    /// before the message literal is parsed: see [`crate::imap`] for how the literal is
    /// streamed.
    Append {
        mailbox: Mailbox<'a>,
        flags: Vec<Flag<'a>>,
        date: Option<DateTime>,
        message: LiteralHeader,
        utf8: bool,
    },
    Idle,

    // Selected (RFC 3501 6.4).
    Check,
    Close,
    /// RFC 3691.
    Unselect,
    Expunge,
    /// `UID EXPUNGE set` (RFC 4315).
    UidExpunge(SequenceSet<'a>),
    Search {
        uid: bool,
        charset: Option<IString<'a>>,
        /// The keys of the command line, all of which must match (an implicit AND).
        criteria: Vec<SearchKey<'a>>,
    },
    Fetch {
        uid: bool,
        set: SequenceSet<'a>,
        items: FetchItems<'a>,
    },
    Store {
        uid: bool,
        set: SequenceSet<'a>,
        action: StoreAction,
        silent: bool,
        flags: Vec<Flag<'a>>,
    },
    Copy {
        uid: bool,
        set: SequenceSet<'a>,
        mailbox: Mailbox<'a>,
    },
    /// RFC 6851.
    Move {
        uid: bool,
        set: SequenceSet<'a>,
        mailbox: Mailbox<'a>,
    },
}

impl CommandBody<'_> {
    /// The command name in canonical form, for a completion text such as `FETCH completed`.
    pub fn name(&self) -> &'static str {
        use CommandBody::*;
        match self {
            Capability => "CAPABILITY",
            Noop => "NOOP",
            Logout => "LOGOUT",
            StartTls => "STARTTLS",
            Authenticate { .. } => "AUTHENTICATE",
            Login { .. } => "LOGIN",
            Enable(_) => "ENABLE",
            Id(_) => "ID",
            Namespace => "NAMESPACE",
            Select { .. } => "SELECT",
            Examine { .. } => "EXAMINE",
            Create { .. } => "CREATE",
            Delete { .. } => "DELETE",
            Rename { .. } => "RENAME",
            Subscribe { .. } => "SUBSCRIBE",
            Unsubscribe { .. } => "UNSUBSCRIBE",
            List { .. } => "LIST",
            Lsub { .. } => "LSUB",
            Status { .. } => "STATUS",
            Append { .. } => "APPEND",
            Idle => "IDLE",
            Check => "CHECK",
            Close => "CLOSE",
            Unselect => "UNSELECT",
            Expunge => "EXPUNGE",
            UidExpunge(_) => "UID EXPUNGE",
            Search { uid: false, .. } => "SEARCH",
            Search { uid: true, .. } => "UID SEARCH",
            Fetch { uid: false, .. } => "FETCH",
            Fetch { uid: true, .. } => "UID FETCH",
            Store { uid: false, .. } => "STORE",
            Store { uid: true, .. } => "UID STORE",
            Copy { uid: false, .. } => "COPY",
            Copy { uid: true, .. } => "UID COPY",
            Move { uid: false, .. } => "MOVE",
            Move { uid: true, .. } => "UID MOVE",
        }
    }

    pub fn into_owned(self) -> CommandBody<'static> {
        use CommandBody::*;
        match self {
            Capability => Capability,
            Noop => Noop,
            Logout => Logout,
            StartTls => StartTls,
            Authenticate { mechanism, initial } => Authenticate {
                mechanism: mechanism.into_owned(),
                initial: initial.map(InitialResponse::into_owned),
            },
            Login { username, password } => Login {
                username: username.into_owned(),
                password: password.into_owned(),
            },
            Enable(caps) => Enable(caps.into_iter().map(owned_str).collect()),
            Id(params) => Id(params.map(|p| {
                p.into_iter()
                    .map(|(k, v)| (k.into_owned(), v.map(IString::into_owned)))
                    .collect()
            })),
            Namespace => Namespace,
            Select { mailbox } => Select {
                mailbox: mailbox.into_owned(),
            },
            Examine { mailbox } => Examine {
                mailbox: mailbox.into_owned(),
            },
            Create { mailbox } => Create {
                mailbox: mailbox.into_owned(),
            },
            Delete { mailbox } => Delete {
                mailbox: mailbox.into_owned(),
            },
            Rename { from, to } => Rename {
                from: from.into_owned(),
                to: to.into_owned(),
            },
            Subscribe { mailbox } => Subscribe {
                mailbox: mailbox.into_owned(),
            },
            Unsubscribe { mailbox } => Unsubscribe {
                mailbox: mailbox.into_owned(),
            },
            List {
                reference,
                patterns,
                select,
                ret,
            } => List {
                reference: reference.into_owned(),
                patterns: patterns.into_iter().map(IString::into_owned).collect(),
                select,
                ret,
            },
            Lsub { reference, pattern } => Lsub {
                reference: reference.into_owned(),
                pattern: pattern.into_owned(),
            },
            Status { mailbox, items } => Status {
                mailbox: mailbox.into_owned(),
                items,
            },
            Append {
                mailbox,
                flags,
                date,
                message,
                utf8,
            } => Append {
                mailbox: mailbox.into_owned(),
                flags: flags.into_iter().map(Flag::into_owned).collect(),
                date,
                message,
                utf8,
            },
            Idle => Idle,
            Check => Check,
            Close => Close,
            Unselect => Unselect,
            Expunge => Expunge,
            UidExpunge(set) => UidExpunge(set.into_owned()),
            Search {
                uid,
                charset,
                criteria,
            } => Search {
                uid,
                charset: charset.map(IString::into_owned),
                criteria: criteria.into_iter().map(SearchKey::into_owned).collect(),
            },
            Fetch { uid, set, items } => Fetch {
                uid,
                set: set.into_owned(),
                items: items.into_owned(),
            },
            Store {
                uid,
                set,
                action,
                silent,
                flags,
            } => Store {
                uid,
                set: set.into_owned(),
                action,
                silent,
                flags: flags.into_iter().map(Flag::into_owned).collect(),
            },
            Copy { uid, set, mailbox } => Copy {
                uid,
                set: set.into_owned(),
                mailbox: mailbox.into_owned(),
            },
            Move { uid, set, mailbox } => Move {
                uid,
                set: set.into_owned(),
                mailbox: mailbox.into_owned(),
            },
        }
    }
}

/// A SASL mechanism name as sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMechanism<'a> {
    Plain,
    Login,
    /// Any other syntactically valid mechanism name (answered `NO` if not implemented).
    Other(Cow<'a, str>),
}

impl AuthMechanism<'_> {
    pub fn into_owned(self) -> AuthMechanism<'static> {
        match self {
            AuthMechanism::Plain => AuthMechanism::Plain,
            AuthMechanism::Login => AuthMechanism::Login,
            AuthMechanism::Other(s) => AuthMechanism::Other(owned_str(s)),
        }
    }
}

/// A SASL response: the initial response of `AUTHENTICATE` (RFC 4959), or a continuation
/// line (see [`crate::imap::parse_auth_response`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialResponse<'a> {
    /// `=` (initial response) or an empty line (continuation): an empty response.
    Empty,
    /// Still base64-encoded; the alphabet and padding have been checked.
    Base64(Cow<'a, str>),
}

impl InitialResponse<'_> {
    pub fn into_owned(self) -> InitialResponse<'static> {
        match self {
            InitialResponse::Empty => InitialResponse::Empty,
            InitialResponse::Base64(s) => InitialResponse::Base64(owned_str(s)),
        }
    }
}

/// A client's answer to an `AUTHENTICATE` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResponse<'a> {
    /// `*`: the client cancels the exchange (answer `BAD`).
    Cancel,
    Response(InitialResponse<'a>),
}

/// A mailbox name argument. `INBOX` in any case is [`Mailbox::Inbox`]; every other name is
/// kept as sent (modified UTF-7, unless the client enabled UTF8=ACCEPT).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mailbox<'a> {
    Inbox,
    Other(IString<'a>),
}

impl<'a> Mailbox<'a> {
    /// The mailbox named by an already unquoted string.
    pub fn from_name(name: IString<'a>) -> Self {
        if name.as_bytes().eq_ignore_ascii_case(b"INBOX") {
            Mailbox::Inbox
        } else {
            Mailbox::Other(name)
        }
    }

    /// The name as sent (`INBOX` for the inbox).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Mailbox::Inbox => b"INBOX",
            Mailbox::Other(s) => s.as_bytes(),
        }
    }

    /// The name decoded from modified UTF-7 (RFC 3501 5.1.3).
    pub fn decode(&self) -> Result<Cow<'_, str>, utf7::Utf7Error> {
        utf7::decode_bytes(self.as_bytes())
    }

    /// The name as UTF-8 text, as sent once the client enabled UTF8=ACCEPT (RFC 6855 3: no
    /// modified UTF-7 decoding, so `&` is just `&`). `None` if it is not valid UTF-8.
    pub fn as_utf8(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    pub fn into_owned(self) -> Mailbox<'static> {
        match self {
            Mailbox::Inbox => Mailbox::Inbox,
            Mailbox::Other(s) => Mailbox::Other(s.into_owned()),
        }
    }
}

/// RFC 5258 selection options of an extended LIST (plus RFC 6154's SPECIAL-USE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListSelect {
    pub subscribed: bool,
    pub remote: bool,
    /// Only ever set together with another selection option, as RFC 5258 requires.
    pub recursive_match: bool,
    pub special_use: bool,
}

/// RFC 5258 return options of an extended LIST: `RETURN (SUBSCRIBED CHILDREN SPECIAL-USE
/// STATUS (...))` (STATUS from RFC 5819).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListReturn {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
    pub status: Option<StatusItems>,
}

/// The data items of a STATUS command (RFC 3501 6.3.10; SIZE from RFC 8438).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusItems {
    pub messages: bool,
    pub recent: bool,
    pub uid_next: bool,
    pub uid_validity: bool,
    pub unseen: bool,
    pub size: bool,
}

/// A literal announcement: `{size}` (synchronising: the client waits for a `+`
/// continuation before sending the octets) or `{size+}` (LITERAL+, RFC 7888: it doesn't).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralHeader {
    pub size: u32,
    pub sync: bool,
}

/// STORE's `FLAGS` / `+FLAGS` / `-FLAGS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAction {
    Replace,
    Add,
    Remove,
}

// ---------------------------------------------------------------------------------------
// Flags

/// A message flag. The parser yields [`Flag::Recent`] only where RFC 3501 allows it, which
/// is nowhere in a command: `\Recent` in STORE or APPEND is refused with BAD. The encoder
/// writes it in FETCH FLAGS responses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flag<'a> {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    Recent,
    /// A keyword (`$Forwarded`, `Junk`, ...), as sent: keywords compare case-insensitively.
    Keyword(Cow<'a, str>),
    /// An unknown `\Name` (RFC 3501 flag-extension), without its backslash.
    Extension(Cow<'a, str>),
}

impl Flag<'_> {
    pub fn into_owned(self) -> Flag<'static> {
        match self {
            Flag::Seen => Flag::Seen,
            Flag::Answered => Flag::Answered,
            Flag::Flagged => Flag::Flagged,
            Flag::Deleted => Flag::Deleted,
            Flag::Draft => Flag::Draft,
            Flag::Recent => Flag::Recent,
            Flag::Keyword(k) => Flag::Keyword(owned_str(k)),
            Flag::Extension(k) => Flag::Extension(owned_str(k)),
        }
    }
}

impl fmt::Display for Flag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flag::Seen => f.write_str("\\Seen"),
            Flag::Answered => f.write_str("\\Answered"),
            Flag::Flagged => f.write_str("\\Flagged"),
            Flag::Deleted => f.write_str("\\Deleted"),
            Flag::Draft => f.write_str("\\Draft"),
            Flag::Recent => f.write_str("\\Recent"),
            Flag::Keyword(k) => f.write_str(k),
            Flag::Extension(k) => write!(f, "\\{k}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sequence sets

/// One end of a range in a sequence set: a number, or `*` for the largest number in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNo {
    Value(u32),
    Largest,
}

impl SeqNo {
    /// The number, with `*` standing for `largest` (the highest sequence number or UID).
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNo::Value(n) => n,
            SeqNo::Largest => largest,
        }
    }
}

/// One element of a sequence set, as written: `4`, `2:4`, `4:2` and `*:7` are all ranges
/// (a single number has `start == end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqNo,
    pub end: SeqNo,
}

impl SeqRange {
    /// The range as `(low, high)`, `*` resolved to `largest`; RFC 3501 allows either order.
    pub fn bounds(&self, largest: u32) -> (u32, u32) {
        let a = self.start.resolve(largest);
        let b = self.end.resolve(largest);
        (a.min(b), a.max(b))
    }
}

/// A validated sequence set (`1,3:5,7:*`), kept as text and decoded on iteration, so a set
/// of any length costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceSet<'a>(Cow<'a, str>);

impl<'a> SequenceSet<'a> {
    /// Checks `s` against the RFC 3501 `sequence-set` grammar.
    pub fn parse(s: &'a str) -> Option<Self> {
        super::parse::valid_sequence_set(s.as_bytes()).then_some(SequenceSet(Cow::Borrowed(s)))
    }

    /// Wraps text the parser has already validated.
    pub(crate) fn from_validated(s: &'a str) -> Self {
        SequenceSet(Cow::Borrowed(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = SeqRange> + '_ {
        self.0.split(',').map(|elem| {
            let mut ends = elem.splitn(2, ':').map(|n| match n {
                "*" => SeqNo::Largest,
                n => SeqNo::Value(n.parse().unwrap_or(0)),
            });
            let start = ends.next().unwrap_or(SeqNo::Largest);
            let end = ends.next().unwrap_or(start);
            SeqRange { start, end }
        })
    }

    /// Whether `n` is in the set, `*` standing for `largest`.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        self.iter().any(|r| {
            let (lo, hi) = r.bounds(largest);
            (lo..=hi).contains(&n)
        })
    }

    /// Whether any element mentions `*`.
    pub fn uses_largest(&self) -> bool {
        self.0.contains('*')
    }

    pub fn into_owned(self) -> SequenceSet<'static> {
        SequenceSet(owned_str(self.0))
    }
}

impl fmt::Display for SequenceSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------
// Dates

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A calendar date (SEARCH's `date`: `1-Feb-1994`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    /// 1 to 12.
    pub month: u8,
    /// 1 to the length of the month.
    pub day: u8,
}

impl Date {
    /// A valid date, or `None`.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        let valid = (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
        valid.then_some(Date { year, month, day })
    }

    /// The English three-letter month name used by IMAP (`Feb`).
    pub fn month_name(&self) -> &'static str {
        MONTHS[usize::from(self.month.clamp(1, 12) - 1)]
    }

    /// Days since 1970-01-01 (negative before it).
    pub fn days_from_epoch(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let m = i64::from(self.month);
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01, if its year fits in 0..=9999.
    pub fn from_days_from_epoch(days: i64) -> Option<Self> {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let year = u16::try_from(year).ok().filter(|y| *y <= 9999)?;
        Date::new(year, month as u8, day as u8)
    }
}

impl fmt::Display for Date {
    /// `1-Feb-1994`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{:04}", self.day, self.month_name(), self.year)
    }
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A date and time with its zone (APPEND's and INTERNALDATE's `date-time`:
/// `"17-Jul-1996 02:44:25 -0700"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    /// 0 to 60 (a leap second).
    pub second: u8,
    /// The zone's offset from UTC in minutes: `-0700` is -420.
    pub offset_minutes: i16,
}

impl DateTime {
    /// Seconds since the Unix epoch.
    pub fn to_unix(&self) -> i64 {
        self.date.days_from_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60
    }

    /// The local time at `offset_minutes` east of UTC for a Unix time (a file's mtime, for
    /// INTERNALDATE). `None` outside the years 0..=9999.
    pub fn from_unix(secs: i64, offset_minutes: i16) -> Option<Self> {
        let local = secs.checked_add(i64::from(offset_minutes) * 60)?;
        let date = Date::from_days_from_epoch(local.div_euclid(86_400))?;
        let tod = local.rem_euclid(86_400);
        Some(DateTime {
            date,
            hour: (tod / 3600) as u8,
            minute: (tod / 60 % 60) as u8,
            second: (tod % 60) as u8,
            offset_minutes,
        })
    }
}

impl fmt::Display for DateTime {
    /// The `date-time` form without its quotes: `17-Jul-1996 02:44:25 -0700` (the day
    /// padded with a space to two characters).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.unsigned_abs();
        write!(
            f,
            "{:>2}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}",
            self.date.day,
            self.date.month_name(),
            self.date.year,
            self.hour,
            self.minute,
            self.second,
            sign,
            off / 60,
            off % 60
        )
    }
}

// ---------------------------------------------------------------------------------------
// SEARCH

/// One search key (RFC 3501 6.4.4). String arguments are matched as substrings, in the
/// command's CHARSET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey<'a> {
    All,
    Answered,
    Bcc(IString<'a>),
    Before(Date),
    Body(IString<'a>),
    Cc(IString<'a>),
    Deleted,
    Draft,
    Flagged,
    From(IString<'a>),
    /// `HEADER field-name string`.
    Header(IString<'a>, IString<'a>),
    Keyword(Cow<'a, str>),
    Larger(u32),
    New,
    Not(Box<SearchKey<'a>>),
    Old,
    On(Date),
    Or(Box<SearchKey<'a>>, Box<SearchKey<'a>>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u32),
    Subject(IString<'a>),
    Text(IString<'a>),
    To(IString<'a>),
    Uid(SequenceSet<'a>),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(Cow<'a, str>),
    Unseen,
    /// A bare sequence set: messages by sequence number.
    SequenceSet(SequenceSet<'a>),
    /// A parenthesised list: all keys must match.
    And(Vec<SearchKey<'a>>),
}

impl SearchKey<'_> {
    pub fn into_owned(self) -> SearchKey<'static> {
        use SearchKey::*;
        match self {
            All => All,
            Answered => Answered,
            Bcc(s) => Bcc(s.into_owned()),
            Before(d) => Before(d),
            Body(s) => Body(s.into_owned()),
            Cc(s) => Cc(s.into_owned()),
            Deleted => Deleted,
            Draft => Draft,
            Flagged => Flagged,
            From(s) => From(s.into_owned()),
            Header(h, s) => Header(h.into_owned(), s.into_owned()),
            Keyword(k) => Keyword(owned_str(k)),
            Larger(n) => Larger(n),
            New => New,
            Not(k) => Not(Box::new(k.into_owned())),
            Old => Old,
            On(d) => On(d),
            Or(a, b) => Or(Box::new(a.into_owned()), Box::new(b.into_owned())),
            Recent => Recent,
            Seen => Seen,
            SentBefore(d) => SentBefore(d),
            SentOn(d) => SentOn(d),
            SentSince(d) => SentSince(d),
            Since(d) => Since(d),
            Smaller(n) => Smaller(n),
            Subject(s) => Subject(s.into_owned()),
            Text(s) => Text(s.into_owned()),
            To(s) => To(s.into_owned()),
            Uid(set) => Uid(set.into_owned()),
            Unanswered => Unanswered,
            Undeleted => Undeleted,
            Undraft => Undraft,
            Unflagged => Unflagged,
            Unkeyword(k) => Unkeyword(owned_str(k)),
            Unseen => Unseen,
            SequenceSet(set) => SequenceSet(set.into_owned()),
            And(keys) => And(keys.into_iter().map(SearchKey::into_owned).collect()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// FETCH

/// What a FETCH asks for: one of the three macros, or a list of attributes (a single
/// unparenthesised attribute is a list of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItems<'a> {
    /// `(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)`.
    All,
    /// `(FLAGS INTERNALDATE RFC822.SIZE)`.
    Fast,
    /// `(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY)`.
    Full,
    Attrs(Vec<FetchAttr<'a>>),
}

impl<'a> FetchItems<'a> {
    /// The attributes, with a macro expanded.
    pub fn attrs(&self) -> Cow<'_, [FetchAttr<'a>]> {
        use FetchAttr::*;
        match self {
            FetchItems::All => Cow::Owned(vec![Flags, InternalDate, Rfc822Size, Envelope]),
            FetchItems::Fast => Cow::Owned(vec![Flags, InternalDate, Rfc822Size]),
            FetchItems::Full => Cow::Owned(vec![Flags, InternalDate, Rfc822Size, Envelope, Body]),
            FetchItems::Attrs(a) => Cow::Borrowed(a),
        }
    }

    pub fn into_owned(self) -> FetchItems<'static> {
        match self {
            FetchItems::All => FetchItems::All,
            FetchItems::Fast => FetchItems::Fast,
            FetchItems::Full => FetchItems::Full,
            FetchItems::Attrs(a) => {
                FetchItems::Attrs(a.into_iter().map(FetchAttr::into_owned).collect())
            }
        }
    }
}

/// One FETCH attribute (RFC 3501 6.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr<'a> {
    Envelope,
    Flags,
    InternalDate,
    /// `RFC822`: the whole message; sets `\Seen` (like `BODY[]`).
    Rfc822,
    /// `RFC822.HEADER`: like `BODY.PEEK[HEADER]`.
    Rfc822Header,
    Rfc822Size,
    /// `RFC822.TEXT`: like `BODY[TEXT]`; sets `\Seen`.
    Rfc822Text,
    /// `BODY`: the body structure without extension data.
    Body,
    BodyStructure,
    Uid,
    /// `BODY[section]<partial>` or `BODY.PEEK[section]<partial>`.
    BodySection {
        /// `BODY.PEEK`: `\Seen` is not set.
        peek: bool,
        section: Section<'a>,
        partial: Option<Partial>,
    },
}

impl FetchAttr<'_> {
    pub fn into_owned(self) -> FetchAttr<'static> {
        use FetchAttr::*;
        match self {
            Envelope => Envelope,
            Flags => Flags,
            InternalDate => InternalDate,
            Rfc822 => Rfc822,
            Rfc822Header => Rfc822Header,
            Rfc822Size => Rfc822Size,
            Rfc822Text => Rfc822Text,
            Body => Body,
            BodyStructure => BodyStructure,
            Uid => Uid,
            BodySection {
                peek,
                section,
                partial,
            } => BodySection {
                peek,
                section: section.into_owned(),
                partial,
            },
        }
    }

    /// Whether fetching this attribute sets `\Seen` (RFC 3501 6.4.5).
    pub fn sets_seen(&self) -> bool {
        matches!(
            self,
            FetchAttr::Rfc822 | FetchAttr::Rfc822Text | FetchAttr::BodySection { peek: false, .. }
        )
    }
}

/// `<offset.length>`: `length` octets from `offset` of the section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub offset: u32,
    /// Never zero.
    pub length: u32,
}

/// A body section: `[]`, `[HEADER]`, `[1.2]`, `[1.2.MIME]`, `[HEADER.FIELDS (From To)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section<'a> {
    /// The MIME part path, `None` for the top-level message.
    pub part: Option<SectionPart<'a>>,
    /// What of the part: `None` for all of it.
    pub text: Option<SectionText<'a>>,
}

impl Section<'_> {
    pub fn into_owned(self) -> Section<'static> {
        Section {
            part: self.part.map(SectionPart::into_owned),
            text: self.text.map(SectionText::into_owned),
        }
    }
}

/// A validated part path `1.2.3` (non-zero numbers separated by dots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionPart<'a>(Cow<'a, str>);

impl<'a> SectionPart<'a> {
    pub(crate) fn from_validated(s: &'a str) -> Self {
        SectionPart(Cow::Borrowed(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part numbers, outermost first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.split('.').map(|n| n.parse().unwrap_or(0))
    }

    pub fn into_owned(self) -> SectionPart<'static> {
        SectionPart(owned_str(self.0))
    }
}

/// The part of a section after its part path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText<'a> {
    Header,
    /// `HEADER.FIELDS (names)`: header field names compare case-insensitively.
    HeaderFields(Vec<IString<'a>>),
    HeaderFieldsNot(Vec<IString<'a>>),
    Text,
    /// Only after a part path: the part's MIME header.
    Mime,
}

impl SectionText<'_> {
    pub fn into_owned(self) -> SectionText<'static> {
        match self {
            SectionText::Header => SectionText::Header,
            SectionText::HeaderFields(f) => {
                SectionText::HeaderFields(f.into_iter().map(IString::into_owned).collect())
            }
            SectionText::HeaderFieldsNot(f) => {
                SectionText::HeaderFieldsNot(f.into_iter().map(IString::into_owned).collect())
            }
            SectionText::Text => SectionText::Text,
            SectionText::Mime => SectionText::Mime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_validate_month_lengths() {
        assert!(Date::new(1994, 2, 28).is_some());
        assert!(Date::new(1994, 2, 29).is_none());
        assert!(Date::new(1996, 2, 29).is_some());
        assert!(Date::new(1900, 2, 29).is_none());
        assert!(Date::new(2000, 2, 29).is_some());
        assert!(Date::new(2000, 4, 31).is_none());
        assert!(Date::new(2000, 13, 1).is_none());
        assert!(Date::new(2000, 0, 1).is_none());
        assert!(Date::new(2000, 1, 0).is_none());
    }

    #[test]
    fn epoch_days_round_trip() {
        assert_eq!(Date::new(1970, 1, 1).unwrap().days_from_epoch(), 0);
        assert_eq!(Date::new(2000, 3, 1).unwrap().days_from_epoch(), 11_017);
        assert_eq!(Date::new(1969, 12, 31).unwrap().days_from_epoch(), -1);
        for days in [-719_468, -1, 0, 59, 60, 11_016, 20_000, 2_932_896] {
            let d = Date::from_days_from_epoch(days).unwrap();
            assert_eq!(d.days_from_epoch(), days, "{d}");
        }
        assert!(Date::from_days_from_epoch(2_932_897).is_none()); // 10000-01-01
    }

    #[test]
    fn date_time_unix_conversions() {
        // RFC 3501's INTERNALDATE example: 17-Jul-1996 02:44:25 -0700 = 09:44:25 UTC.
        let dt = DateTime::from_unix(837_596_665, -420).unwrap();
        assert_eq!(dt.to_string(), "17-Jul-1996 02:44:25 -0700");
        assert_eq!(dt.to_unix(), 837_596_665);
        let dt = DateTime::from_unix(0, 0).unwrap();
        assert_eq!(dt.to_string(), " 1-Jan-1970 00:00:00 +0000");
        let dt = DateTime::from_unix(0, 330).unwrap();
        assert_eq!(dt.to_string(), " 1-Jan-1970 05:30:00 +0530");
        assert_eq!(dt.to_unix(), 0);
    }

    #[test]
    fn date_display() {
        assert_eq!(Date::new(1994, 2, 1).unwrap().to_string(), "1-Feb-1994");
    }

    #[test]
    fn sequence_set_iteration_and_membership() {
        let s = SequenceSet::parse("1,3:5,9:7,12:*").unwrap();
        let ranges: Vec<_> = s.iter().map(|r| r.bounds(20)).collect();
        assert_eq!(ranges, [(1, 1), (3, 5), (7, 9), (12, 20)]);
        assert!(s.contains(8, 20));
        assert!(!s.contains(6, 20));
        assert!(s.contains(20, 20));
        assert!(!s.contains(21, 20));
        assert!(s.uses_largest());
        // `*:4` with 2 messages is 2:4.
        let s = SequenceSet::parse("*:4").unwrap();
        assert_eq!(s.iter().next().unwrap().bounds(2), (2, 4));
        assert!(SequenceSet::parse("0").is_none());
        assert!(SequenceSet::parse("1,").is_none());
    }

    #[test]
    fn mailbox_inbox_is_case_insensitive() {
        assert_eq!(Mailbox::from_name("iNbOx".into()), Mailbox::Inbox);
        assert_eq!(
            Mailbox::from_name("INBOX.Sent".into()),
            Mailbox::Other("INBOX.Sent".into())
        );
    }

    #[test]
    fn into_owned_detaches_from_the_buffer() {
        let buf = String::from("Sent");
        let cmd = Command {
            tag: Cow::Borrowed("a1"),
            body: CommandBody::Select {
                mailbox: Mailbox::from_name(IString::from(buf.as_str())),
            },
        };
        let owned: Command<'static> = cmd.into_owned();
        drop(buf);
        assert_eq!(owned.body.name(), "SELECT");
    }

    #[test]
    fn fetch_macros_expand() {
        assert_eq!(FetchItems::Fast.attrs().len(), 3);
        assert_eq!(FetchItems::All.attrs().len(), 4);
        assert_eq!(FetchItems::Full.attrs()[4], FetchAttr::Body);
    }
}
