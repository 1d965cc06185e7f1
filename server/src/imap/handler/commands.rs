//! The store side of IMAP commands: what each command does to the account and its selected
//! mailbox, and the response bytes it produces. Everything here blocks (disk, fsync) and runs
//! in jobs on worker threads; the connection handler only moves the results to the session.
//!
//! Untagged updates about changes made elsewhere (other sessions, deliveries) are appended at
//! the end of every command that has a mailbox selected, where RFC 3501 7.4.1 allows them:
//! EXPUNGE never during FETCH, STORE or SEARCH (their UID forms may), everything else always.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ironpost_core::imap::encode::{
    self, Code, Data, FetchWriter, ListItem, MailboxAttr, StatusValue,
};
use ironpost_core::imap::session::Status;
use ironpost_core::imap::{
    CommandBody, DateTime, FetchAttr, FetchItems, Flag, IString, ListReturn, ListSelect, Mailbox,
    SearchKey, SequenceSet, StatusItems, StoreAction,
};

use crate::imap::fetch::{
    needs_message, reads_header, will_set_seen, write_fetch_streaming,
    write_fetch_streaming_cached, BodyStream, FetchError, FetchOptions, MessageMeta,
};
use crate::imap::search::{charset_supported, search_view, SearchOutcome};
use crate::mailstore::{
    pattern_matches, Account, Changes, HeaderSummary, MailboxInfo, MailboxView, MailstoreError,
    MessageInfo, SpecialUse, StoreOp, SystemFlags, DELIMITER,
};

/// What a session holds of the store: its account (fixed at login) and the selected
/// mailbox. Moved into each job and handed back with the result.
pub struct Mail {
    pub account: Account,
    pub view: Option<MailboxView>,
    /// The client enabled UTF8=ACCEPT (the session's [`Session::utf8_enabled`], copied
    /// before each command): mailbox names are UTF-8 both ways instead of modified UTF-7,
    /// and SEARCH CHARSET is refused.
    ///
    /// [`Session::utf8_enabled`]: ironpost_core::imap::session::Session::utf8_enabled
    pub utf8: bool,
}

/// How a command ends: untagged response bytes, then the tagged status.
#[derive(Debug)]
pub struct Reply {
    pub out: Vec<u8>,
    pub status: Status,
    /// A response code without its brackets (`APPENDUID 17 4`).
    pub code: Option<String>,
    pub text: String,
    /// The selected mailbox was deleted or renamed elsewhere, or its UIDs were reset: the
    /// session has to end after the tagged response.
    pub gone: bool,
}

impl Reply {
    pub fn ok(out: Vec<u8>, code: Option<String>, text: impl Into<String>) -> Reply {
        Reply {
            out,
            status: Status::Ok,
            code,
            text: text.into(),
            gone: false,
        }
    }

    pub fn no(code: Option<&str>, text: impl Into<String>) -> Reply {
        Reply {
            out: Vec::new(),
            status: Status::No,
            code: code.map(str::to_owned),
            text: text.into(),
            gone: false,
        }
    }

    pub fn bad(text: impl Into<String>) -> Reply {
        Reply {
            out: Vec::new(),
            status: Status::Bad,
            code: None,
            text: text.into(),
            gone: false,
        }
    }

    /// A tagged NO for a store error. I/O errors are logged and not described to the
    /// client (they name server paths).
    pub fn store_error(e: &MailstoreError) -> Reply {
        let text = match e {
            MailstoreError::Io { .. } | MailstoreError::InvalidAccount { .. } => {
                tracing::error!(error = %e, "mail store error");
                "Internal error; try again later".to_string()
            }
            _ => e.to_string(),
        };
        Reply::no(Some(e.response_code()), text)
    }
}

/// The capabilities the store gives the session, advertised once logged in.
pub const STORE_CAPABILITIES: &[&str] = &["UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE"];

/// Charsets SEARCH accepts, for `[BADCHARSET (...)]`.
pub const SEARCH_CHARSETS: &[&str] = &["UTF-8", "US-ASCII"];

// ---------------------------------------------------------------------------------------
// Names, sets and flags

/// A mailbox name from the wire as UTF-8; the store validates it further. Modified UTF-7
/// is decoded, unless the client enabled UTF8=ACCEPT (`utf8`): then the name is UTF-8 as
/// sent (RFC 6855 3), `&` included, and anything else is BAD.
pub fn mailbox_name(mb: &Mailbox<'_>, utf8: bool) -> Result<String, Reply> {
    match mb {
        Mailbox::Inbox => Ok("INBOX".to_owned()),
        Mailbox::Other(_) if utf8 => mb
            .as_utf8()
            .map(str::to_owned)
            .ok_or_else(|| Reply::bad("Mailbox name is not valid UTF-8")),
        Mailbox::Other(_) => mb
            .decode()
            .map(Cow::into_owned)
            .map_err(|_| Reply::no(Some("CANNOT"), "Invalid mailbox name encoding")),
    }
}

/// A LIST or LSUB reference or pattern as UTF-8, decoded as [`mailbox_name`] does.
fn name_arg(s: &IString<'_>, utf8: bool) -> Option<String> {
    if utf8 {
        return s.to_str().map(str::to_owned);
    }
    ironpost_core::imap::utf7::decode_bytes(s.as_bytes())
        .ok()
        .map(Cow::into_owned)
}

/// The sequence numbers (ascending, distinct) a set names: message sequence numbers, or for
/// a UID command the messages whose UIDs are in it (UIDs that do not exist are skipped).
pub fn resolve_set(
    view: &MailboxView,
    set: &SequenceSet<'_>,
    uid: bool,
) -> Result<Vec<u32>, Reply> {
    let messages = view.messages();
    let mut seqs = Vec::new();
    if uid {
        let largest = messages.last().map_or(0, |m| m.uid);
        for r in set.iter() {
            let (lo, hi) = r.bounds(largest);
            let start = messages.partition_point(|m| m.uid < lo);
            let end = messages.partition_point(|m| m.uid <= hi);
            seqs.extend((start..end.max(start)).map(|i| i as u32 + 1));
        }
    } else {
        let exists = view.exists();
        for r in set.iter() {
            if exists == 0 && set.uses_largest() {
                continue;
            }
            let (lo, hi) = r.bounds(exists);
            if lo == 0 || hi > exists {
                return Err(Reply::bad("Invalid message sequence number"));
            }
            seqs.extend(lo..=hi);
        }
    }
    seqs.sort_unstable();
    seqs.dedup();
    Ok(seqs)
}

/// System flags and keywords of a flag list (STORE, APPEND). `\Recent` cannot be set by a
/// client and is ignored; other `\` flags are an error.
pub fn split_flags(flags: &[Flag<'_>]) -> Result<(SystemFlags, Vec<String>), Reply> {
    let mut system = SystemFlags::empty();
    let mut keywords = Vec::new();
    for f in flags {
        match f {
            Flag::Seen => system.insert(SystemFlags::SEEN),
            Flag::Answered => system.insert(SystemFlags::ANSWERED),
            Flag::Flagged => system.insert(SystemFlags::FLAGGED),
            Flag::Deleted => system.insert(SystemFlags::DELETED),
            Flag::Draft => system.insert(SystemFlags::DRAFT),
            Flag::Recent => {}
            Flag::Keyword(k) => {
                if !keywords.iter().any(|x: &String| x.eq_ignore_ascii_case(k)) {
                    keywords.push(k.to_string());
                }
            }
            Flag::Extension(_) => return Err(Reply::bad(format!("Invalid system flag {f}"))),
        }
    }
    Ok((system, keywords))
}

fn system_flags<'a>(f: SystemFlags, out: &mut Vec<Flag<'a>>) {
    for (bit, flag) in [
        (SystemFlags::ANSWERED, Flag::Answered),
        (SystemFlags::FLAGGED, Flag::Flagged),
        (SystemFlags::DELETED, Flag::Deleted),
        (SystemFlags::SEEN, Flag::Seen),
        (SystemFlags::DRAFT, Flag::Draft),
    ] {
        if f.contains(bit) {
            out.push(flag);
        }
    }
}

/// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]`.
fn write_flags(out: &mut Vec<u8>, view: &MailboxView) {
    let mut flags: Vec<Flag<'_>> = Vec::new();
    let mut all = SystemFlags::empty();
    for f in [
        SystemFlags::ANSWERED,
        SystemFlags::FLAGGED,
        SystemFlags::DELETED,
        SystemFlags::SEEN,
        SystemFlags::DRAFT,
    ] {
        all.insert(f);
    }
    let mut sys = Vec::new();
    system_flags(all, &mut sys);
    flags.extend(sys);
    flags.extend(
        view.keywords()
            .into_iter()
            .map(|k| Flag::Keyword(Cow::Borrowed(k))),
    );
    Data::Flags(&flags).write_to(out);
    if view.read_only() {
        encode::status(
            out,
            None,
            encode::Status::Ok,
            Some(&Code::PermanentFlags {
                flags: &[],
                new_keywords: false,
            }),
            "No permanent flags permitted",
        );
    } else {
        encode::status(
            out,
            None,
            encode::Status::Ok,
            Some(&Code::PermanentFlags {
                flags: &flags,
                new_keywords: view.can_create_keywords(),
            }),
            "Flags permitted",
        );
    }
}

/// `* n FETCH (UID u FLAGS (...))` for one message.
pub fn write_flags_fetch(out: &mut Vec<u8>, view: &MailboxView, seq: u32) {
    let Some(m) = view.message(seq) else { return };
    let names = view.keyword_names(m.keywords);
    let meta = MessageMeta::from_info(seq, m, &names);
    let mut w = FetchWriter::begin(out, seq);
    w.uid(out, m.uid);
    w.flags(out, &meta.imap_flags());
    w.finish(out);
}

/// The untagged responses for what changed, in the order [`Changes`] prescribes.
pub fn write_changes(out: &mut Vec<u8>, view: &MailboxView, ch: &Changes) {
    for &seq in &ch.expunged {
        Data::Expunge(seq).write_to(out);
    }
    if let Some(n) = ch.exists {
        Data::Exists(n).write_to(out);
    }
    if let Some(n) = ch.recent {
        Data::Recent(n).write_to(out);
    }
    if ch.keywords {
        write_flags(out, view);
    }
    for &seq in &ch.flags {
        write_flags_fetch(out, view, seq);
    }
}

/// Brings the selected mailbox up to date and writes what changed. Returns false when the
/// mailbox is gone (deleted, renamed, UIDVALIDITY reset): the view is dropped and the
/// session must end.
pub fn sync(mail: &mut Mail, out: &mut Vec<u8>, allow_expunge: bool) -> bool {
    let Some(view) = mail.view.as_mut() else {
        return true;
    };
    match view.refresh(allow_expunge) {
        Ok(ch) => {
            write_changes(out, view, &ch);
            true
        }
        Err(MailstoreError::MailboxGone | MailstoreError::UidValidityChanged) => {
            mail.view = None;
            false
        }
        Err(e) => {
            tracing::warn!(user = mail.account.user(), error = %e, "cannot refresh the selected mailbox");
            true
        }
    }
}

/// Finishes a command that had a mailbox selected: pending updates, then the reply.
fn finish(mail: &mut Mail, mut reply: Reply, allow_expunge: bool) -> Reply {
    let mut updates = Vec::new();
    if !sync(mail, &mut updates, allow_expunge) {
        reply.gone = true;
    }
    reply.out.extend_from_slice(&updates);
    reply
}

fn system_time(date: &DateTime) -> SystemTime {
    let secs = date.to_unix();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    }
}

// ---------------------------------------------------------------------------------------
// Commands

/// Runs one command (anything but FETCH, which goes in batches, and APPEND, which streams).
pub fn execute(mail: &mut Mail, cmd: &CommandBody<'_>) -> Reply {
    use CommandBody as C;
    match cmd {
        C::Select { mailbox } => select(mail, mailbox, false),
        C::Examine { mailbox } => select(mail, mailbox, true),
        C::Create { mailbox } => simple(mail, mailbox, "CREATE", |a, n| a.create(n)),
        C::Delete { mailbox } => {
            let r = match mailbox_name(mailbox, mail.utf8) {
                Ok(n) => {
                    let selected = selected_is(mail, &n, false);
                    match mail.account.delete(&n) {
                        Ok(()) => {
                            close_removed(mail, selected);
                            Reply::ok(Vec::new(), None, "DELETE completed")
                        }
                        Err(e) => Reply::store_error(&e),
                    }
                }
                Err(r) => r,
            };
            with_updates(mail, r)
        }
        C::Rename { from, to } => {
            let (from, to) = match (mailbox_name(from, mail.utf8), mailbox_name(to, mail.utf8)) {
                (Ok(f), Ok(t)) => (f, t),
                (Err(r), _) | (_, Err(r)) => return with_updates(mail, r),
            };
            // Renaming INBOX leaves it (empty) where it is: a session on it stays, and hears
            // of the moved messages as EXPUNGEs. Any other mailbox, and its children, move.
            let selected = !from.eq_ignore_ascii_case("INBOX") && selected_is(mail, &from, true);
            let r = match mail.account.rename(&from, &to) {
                Ok(()) => {
                    close_removed(mail, selected);
                    Reply::ok(Vec::new(), None, "RENAME completed")
                }
                Err(e) => Reply::store_error(&e),
            };
            with_updates(mail, r)
        }
        C::Subscribe { mailbox } => {
            simple(mail, mailbox, "SUBSCRIBE", |a, n| a.subscribe(n).map(drop))
        }
        C::Unsubscribe { mailbox } => simple(mail, mailbox, "UNSUBSCRIBE", |a, n| {
            a.unsubscribe(n).map(drop)
        }),
        C::List {
            reference,
            patterns,
            select,
            ret,
        } => {
            let r = list(mail, reference, patterns, *select, *ret);
            with_updates(mail, r)
        }
        C::Lsub { reference, pattern } => {
            let r = lsub(mail, reference, pattern);
            with_updates(mail, r)
        }
        C::Status { mailbox, items } => {
            let r = status(mail, mailbox, *items);
            with_updates(mail, r)
        }
        C::Noop => finish(mail, Reply::ok(Vec::new(), None, "NOOP completed"), true),
        C::Check => finish(mail, Reply::ok(Vec::new(), None, "CHECK completed"), true),
        C::Close => {
            if let Some(view) = mail.view.as_mut() {
                if !view.read_only() {
                    // RFC 3501 6.4.2: silently, no EXPUNGE responses.
                    if let Err(e) = view.expunge(None) {
                        tracing::warn!(user = mail.account.user(), error = %e, "CLOSE could not expunge");
                    }
                }
            }
            mail.view = None;
            Reply::ok(Vec::new(), None, "CLOSE completed")
        }
        C::Unselect => {
            mail.view = None;
            Reply::ok(Vec::new(), None, "UNSELECT completed")
        }
        C::Expunge => expunge(mail, None),
        C::UidExpunge(set) => expunge(mail, Some(set)),
        C::Store {
            uid,
            set,
            action,
            silent,
            flags,
        } => store(mail, *uid, set, *action, *silent, flags),
        C::Copy { uid, set, mailbox } => copy(mail, *uid, set, mailbox, false),
        C::Move { uid, set, mailbox } => copy(mail, *uid, set, mailbox, true),
        C::Search {
            uid,
            charset,
            criteria,
        } => search(mail, *uid, charset.as_ref(), criteria),
        other => Reply::bad(format!("{} is not available here", other.name())),
    }
}

/// Whether the selected mailbox is `name` (with `children`, or one of its children), by
/// the store's spelling of names (`inbox` is INBOX).
fn selected_is(mail: &Mail, name: &str, children: bool) -> bool {
    let (Some(view), Ok(mb)) = (mail.view.as_ref(), crate::mailstore::names::parse(name)) else {
        return false;
    };
    let selected = view.name();
    selected == mb.name
        || (children
            && selected
                .strip_prefix(mb.name.as_str())
                .is_some_and(|rest| rest.starts_with(DELIMITER)))
}

/// After this session's DELETE or RENAME removed its selected mailbox (`selected`): the view
/// is dropped, so the command answers OK without updates and the session goes back to the
/// authenticated state (RFC 3501 6.3.4 allows deleting the selected mailbox; Dovecot does
/// the same). A mailbox removed by another session still ends the session with BYE.
fn close_removed(mail: &mut Mail, selected: bool) {
    if selected {
        mail.view = None;
    }
}

/// A command that does not depend on the selected mailbox: updates follow if one is.
fn with_updates(mail: &mut Mail, reply: Reply) -> Reply {
    if mail.view.is_some() {
        finish(mail, reply, true)
    } else {
        reply
    }
}

fn simple(
    mail: &mut Mail,
    mailbox: &Mailbox<'_>,
    name: &str,
    op: impl FnOnce(&Account, &str) -> Result<(), MailstoreError>,
) -> Reply {
    let r = match mailbox_name(mailbox, mail.utf8) {
        Ok(n) => match op(&mail.account, &n) {
            Ok(()) => Reply::ok(Vec::new(), None, format!("{name} completed")),
            Err(e) => Reply::store_error(&e),
        },
        Err(r) => r,
    };
    with_updates(mail, r)
}

fn select(mail: &mut Mail, mailbox: &Mailbox<'_>, read_only: bool) -> Reply {
    // RFC 3501 6.3.1: the old mailbox is deselected whether or not the new one opens.
    mail.view = None;
    let name = match mailbox_name(mailbox, mail.utf8) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let opened = if read_only {
        mail.account.examine(&name)
    } else {
        mail.account.select(&name)
    };
    let view = match opened {
        Ok(v) => v,
        Err(e) => return Reply::store_error(&e),
    };
    let mut out = Vec::with_capacity(512);
    write_flags(&mut out, &view);
    Data::Exists(view.exists()).write_to(&mut out);
    Data::Recent(view.recent()).write_to(&mut out);
    if let Some(n) = view.first_unseen() {
        encode::status(
            &mut out,
            None,
            encode::Status::Ok,
            Some(&Code::Unseen(n)),
            &format!("Message {n} is first unseen"),
        );
    }
    encode::status(
        &mut out,
        None,
        encode::Status::Ok,
        Some(&Code::UidValidity(view.uidvalidity())),
        "UIDs valid",
    );
    encode::status(
        &mut out,
        None,
        encode::Status::Ok,
        Some(&Code::UidNext(view.uidnext())),
        "Predicted next UID",
    );
    let (code, text) = if read_only {
        ("READ-ONLY", "EXAMINE completed")
    } else {
        ("READ-WRITE", "SELECT completed")
    };
    mail.view = Some(view);
    Reply::ok(out, Some(code.to_owned()), text)
}

/// RFC 3501 6.3.8: the reference and the pattern together make the name pattern.
fn full_pattern(reference: &str, pattern: &str) -> String {
    if reference.is_empty() {
        return pattern.to_owned();
    }
    if reference.ends_with(DELIMITER) && pattern.starts_with(DELIMITER) {
        return format!("{reference}{}", &pattern[1..]);
    }
    format!("{reference}{pattern}")
}

fn attributes(info: &MailboxInfo, lsub: bool, subscribed: bool) -> Vec<MailboxAttr<'static>> {
    let mut a = Vec::with_capacity(4);
    if info.nonexistent && !lsub {
        a.push(MailboxAttr::NonExistent);
    } else if info.noselect || info.nonexistent {
        a.push(MailboxAttr::NoSelect);
    }
    if !info.nonexistent {
        a.push(if info.has_children {
            MailboxAttr::HasChildren
        } else {
            MailboxAttr::HasNoChildren
        });
    }
    if subscribed && info.subscribed {
        a.push(MailboxAttr::Subscribed);
    }
    if let Some(u) = info.special_use {
        a.push(match u {
            SpecialUse::Sent => MailboxAttr::Sent,
            SpecialUse::Drafts => MailboxAttr::Drafts,
            SpecialUse::Trash => MailboxAttr::Trash,
            SpecialUse::Junk => MailboxAttr::Junk,
        });
    }
    a
}

fn list(
    mail: &mut Mail,
    reference: &IString<'_>,
    patterns: &[IString<'_>],
    select: ListSelect,
    ret: ListReturn,
) -> Reply {
    let utf8 = mail.utf8;
    let Some(reference) = name_arg(reference, utf8) else {
        return Reply::bad("Invalid reference name encoding");
    };
    let mut pats = Vec::with_capacity(patterns.len());
    for p in patterns {
        match name_arg(p, utf8) {
            Some(p) => pats.push(p),
            None => return Reply::bad("Invalid mailbox pattern encoding"),
        }
    }
    let mut out = Vec::new();
    // RFC 3501 6.3.8: an empty pattern asks for the delimiter and the root.
    if pats.len() == 1 && pats[0].is_empty() {
        Data::List(ListItem {
            attributes: &[MailboxAttr::NoSelect],
            delimiter: Some(DELIMITER),
            name: "",
        })
        .write_with(&mut out, utf8);
        return Reply::ok(out, None, "LIST completed");
    }
    let listed = if select.subscribed {
        mail.account.list_subscribed()
    } else {
        mail.account.list()
    };
    let listed = match listed {
        Ok(l) => l,
        Err(e) => return Reply::store_error(&e),
    };
    let full: Vec<String> = pats
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| full_pattern(&reference, p))
        .collect();
    for info in &listed {
        if !full.iter().any(|p| pattern_matches(p, &info.name)) {
            continue;
        }
        if select.special_use && info.special_use.is_none() {
            continue;
        }
        let attrs = attributes(info, false, ret.subscribed || select.subscribed);
        Data::List(ListItem {
            attributes: &attrs,
            delimiter: Some(DELIMITER),
            name: &info.name,
        })
        .write_with(&mut out, utf8);
        if let Some(items) = ret.status {
            if !info.noselect && !info.nonexistent {
                if let Ok(st) = mail.account.status(&info.name) {
                    write_status(&mut out, &info.name, &st, items, utf8);
                }
            }
        }
    }
    Reply::ok(out, None, "LIST completed")
}

fn lsub(mail: &mut Mail, reference: &IString<'_>, pattern: &IString<'_>) -> Reply {
    let utf8 = mail.utf8;
    let (Some(reference), Some(pattern)) = (name_arg(reference, utf8), name_arg(pattern, utf8))
    else {
        return Reply::bad("Invalid mailbox name encoding");
    };
    let mut out = Vec::new();
    if pattern.is_empty() {
        return Reply::ok(out, None, "LSUB completed");
    }
    let full = full_pattern(&reference, &pattern);
    let subs = match mail.account.list_subscribed() {
        Ok(s) => s,
        Err(e) => return Reply::store_error(&e),
    };
    for info in subs.iter().filter(|i| pattern_matches(&full, &i.name)) {
        let attrs = attributes(info, true, false);
        Data::Lsub(ListItem {
            attributes: &attrs,
            delimiter: Some(DELIMITER),
            name: &info.name,
        })
        .write_with(&mut out, utf8);
    }
    // RFC 3501 6.3.9: with `%`, a subscribed `foo.bar` whose parent `foo` is not subscribed
    // makes `%` return `foo`, flagged \Noselect, so a client can walk down to it.
    if full.contains('%') {
        let mut parents: Vec<&str> = Vec::new();
        for info in &subs {
            let mut name = info.name.as_str();
            while let Some(at) = name.rfind(DELIMITER) {
                name = &name[..at];
                if pattern_matches(&full, name)
                    && !parents.contains(&name)
                    && !subs.iter().any(|s| s.name == name)
                {
                    parents.push(name);
                }
            }
        }
        for name in parents {
            Data::Lsub(ListItem {
                attributes: &[MailboxAttr::NoSelect],
                delimiter: Some(DELIMITER),
                name,
            })
            .write_with(&mut out, utf8);
        }
    }
    Reply::ok(out, None, "LSUB completed")
}

fn write_status(
    out: &mut Vec<u8>,
    name: &str,
    st: &crate::mailstore::MailboxStatus,
    items: StatusItems,
    utf8: bool,
) {
    let mut values = Vec::with_capacity(5);
    if items.messages {
        values.push(StatusValue::Messages(st.messages));
    }
    if items.recent {
        values.push(StatusValue::Recent(st.recent));
    }
    if items.uid_next {
        values.push(StatusValue::UidNext(st.uidnext));
    }
    if items.uid_validity {
        values.push(StatusValue::UidValidity(st.uidvalidity));
    }
    if items.unseen {
        values.push(StatusValue::Unseen(st.unseen));
    }
    Data::Status {
        mailbox: name,
        items: &values,
    }
    .write_with(out, utf8);
}

fn status(mail: &mut Mail, mailbox: &Mailbox<'_>, items: StatusItems) -> Reply {
    let name = match mailbox_name(mailbox, mail.utf8) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if items.size {
        return Reply::bad("STATUS SIZE is not supported");
    }
    match mail.account.status(&name) {
        Ok(st) => {
            let mut out = Vec::new();
            let shown = mail
                .account
                .list()
                .ok()
                .and_then(|l| l.into_iter().find(|i| i.name.eq_ignore_ascii_case(&name)))
                .map_or(name, |i| i.name);
            write_status(&mut out, &shown, &st, items, mail.utf8);
            Reply::ok(out, None, "STATUS completed")
        }
        Err(e) => Reply::store_error(&e),
    }
}

fn expunge(mail: &mut Mail, set: Option<&SequenceSet<'_>>) -> Reply {
    let Some(view) = mail.view.as_mut() else {
        return Reply::bad("No mailbox selected");
    };
    let uids = match set {
        None => None,
        Some(set) => match resolve_set(view, set, true) {
            Ok(seqs) => Some(
                seqs.iter()
                    .filter_map(|&s| view.message(s).map(|m| m.uid))
                    .collect::<Vec<u32>>(),
            ),
            Err(r) => return r,
        },
    };
    let r = match view.expunge(uids.as_deref()) {
        Ok(_) => Reply::ok(Vec::new(), None, "EXPUNGE completed"),
        Err(MailstoreError::ReadOnly) => Reply::no(None, "Mailbox is read-only"),
        Err(e) => Reply::store_error(&e),
    };
    finish(mail, r, true)
}

fn store(
    mail: &mut Mail,
    uid: bool,
    set: &SequenceSet<'_>,
    action: StoreAction,
    silent: bool,
    flags: &[Flag<'_>],
) -> Reply {
    let Some(view) = mail.view.as_mut() else {
        return Reply::bad("No mailbox selected");
    };
    let seqs = match resolve_set(view, set, uid) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (system, keywords) = match split_flags(flags) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let kw: Vec<&str> = keywords.iter().map(String::as_str).collect();
    let op = match action {
        StoreAction::Replace => StoreOp::Replace,
        StoreAction::Add => StoreOp::Add,
        StoreAction::Remove => StoreOp::Remove,
    };
    let mut expunged = false;
    let uids: Vec<u32> = seqs
        .iter()
        .filter_map(|&s| view.message(s))
        .filter(|m| {
            expunged |= m.expunged;
            !m.expunged
        })
        .map(|m| m.uid)
        .collect();
    let mut out = Vec::new();
    let r = match view.store(&uids, op, system, &kw) {
        Ok(outcome) => {
            if outcome.keywords {
                write_flags(&mut out, view);
            }
            if !silent {
                for &seq in &outcome.messages {
                    write_flags_fetch(&mut out, view, seq);
                }
            }
            if expunged {
                Reply {
                    out,
                    status: Status::No,
                    code: Some("EXPUNGEISSUED".into()),
                    text: "Some of the messages no longer exist".into(),
                    gone: false,
                }
            } else {
                Reply::ok(out, None, "STORE completed")
            }
        }
        Err(MailstoreError::ReadOnly) => Reply::no(None, "Mailbox is read-only"),
        Err(e) => Reply::store_error(&e),
    };
    finish(mail, r, uid)
}

/// COPY or MOVE (RFC 6851) with COPYUID (RFC 4315).
fn copy(
    mail: &mut Mail,
    uid: bool,
    set: &SequenceSet<'_>,
    mailbox: &Mailbox<'_>,
    moving: bool,
) -> Reply {
    let verb = if moving { "MOVE" } else { "COPY" };
    let Some(view) = mail.view.as_mut() else {
        return Reply::bad("No mailbox selected");
    };
    let dest = match mailbox_name(mailbox, mail.utf8) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let seqs = match resolve_set(view, set, uid) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let uids: Vec<u32> = seqs
        .iter()
        .filter_map(|&s| view.message(s))
        .filter(|m| !m.expunged)
        .map(|m| m.uid)
        .collect();
    if moving && view.read_only() {
        return finish(mail, Reply::no(None, "Mailbox is read-only"), uid);
    }
    let result = if uids.is_empty() {
        // Still tell a client that named a mailbox that does not exist.
        match mail.account.status(&dest) {
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    } else if moving {
        Some(view.move_to(&uids, &dest))
    } else {
        Some(view.copy(&uids, &dest))
    };
    let mut out = Vec::new();
    let r = match result {
        None => Reply::ok(Vec::new(), None, format!("{verb} completed")),
        Some(Ok(res)) => {
            let src: Vec<u32> = res.uids.iter().map(|p| p.0).collect();
            let dst: Vec<u32> = res.uids.iter().map(|p| p.1).collect();
            let code = (!src.is_empty()).then(|| {
                let mut c = format!("COPYUID {} ", res.uidvalidity).into_bytes();
                encode::write_uid_set(&mut c, &src);
                c.push(b' ');
                encode::write_uid_set(&mut c, &dst);
                String::from_utf8(c).expect("digits and punctuation")
            });
            if moving {
                // RFC 6851 4.3: the COPYUID goes in an untagged OK before the EXPUNGEs.
                if let Some(c) = &code {
                    out.extend_from_slice(format!("* OK [{c}] Moved\r\n").as_bytes());
                }
                Reply::ok(out, None, "MOVE completed")
            } else {
                Reply::ok(out, code, "COPY completed")
            }
        }
        Some(Err(MailstoreError::NoSuchMailbox(_))) => Reply::no(
            Some("TRYCREATE"),
            format!("Mailbox {dest:?} does not exist"),
        ),
        Some(Err(MailstoreError::ReadOnly)) => Reply::no(None, "Mailbox is read-only"),
        Some(Err(e)) => Reply::store_error(&e),
    };
    // MOVE reports its own expunges (RFC 6851 allows EXPUNGE for UID MOVE and MOVE alike).
    finish(mail, r, uid || moving)
}

/// SEARCH and UID SEARCH over the selected mailbox.
fn search(
    mail: &mut Mail,
    uid: bool,
    charset: Option<&IString<'_>>,
    criteria: &[SearchKey<'_>],
) -> Reply {
    let Some(view) = mail.view.as_ref() else {
        return Reply::bad("No mailbox selected");
    };
    if let Some(cs) = charset {
        // RFC 6855 3 (errata 4029): once UTF8=ACCEPT is enabled, strings are UTF-8 and a
        // CHARSET is an error.
        if mail.utf8 {
            return Reply::bad("SEARCH CHARSET is not allowed once UTF8=ACCEPT is enabled");
        }
        if !cs.to_str().is_some_and(charset_supported) {
            let mut r = Reply::no(None, "Unsupported charset");
            let mut code = b"BADCHARSET ".to_vec();
            code.push(b'(');
            code.extend_from_slice(SEARCH_CHARSETS.join(" ").as_bytes());
            code.push(b')');
            r.code = Some(String::from_utf8(code).expect("ASCII"));
            return r;
        }
    }
    // Header keys are answered from the mailbox's header cache where it can (search.rs).
    let SearchOutcome { found, failed } = search_view(view, criteria, uid);
    let mut out = Vec::with_capacity(16 + found.len() * 6);
    Data::Search(&found).write_to(&mut out);
    let r = if failed {
        Reply {
            out,
            status: Status::No,
            code: Some("UNAVAILABLE".into()),
            text: "Some messages could not be read".into(),
            gone: false,
        }
    } else {
        Reply::ok(out, None, "SEARCH completed")
    };
    finish(mail, r, uid)
}

/// Messages answered by one FETCH job at most when their files are read; a job also stops
/// once their sizes pass [`FETCH_BATCH_BYTES`], so a large FETCH never sits whole in memory.
pub const FETCH_BATCH_MESSAGES: usize = 64;
/// Messages answered by one FETCH job from the index alone (a few dozen octets each).
pub const FETCH_BATCH_METADATA: usize = 2048;
pub const FETCH_BATCH_BYTES: usize = 512 * 1024;

/// A FETCH in progress, answered in batches.
pub struct FetchState {
    pub uid: bool,
    pub items: FetchItems<'static>,
    /// Sequence numbers still to answer, in ascending order; `next` indexes into it.
    pub seqs: Vec<u32>,
    pub next: usize,
    /// Messages of the current batch not answered yet (their `\Seen` is already stored),
    /// with their index entries as they were before.
    held: VecDeque<Held>,
    /// The FETCH reads headers, and the header cache could be asked about this batch: make
    /// summaries for the messages it lacks.
    summarize: bool,
    /// Summaries made in the current batch, noted in the cache when it ends.
    fresh: Vec<(u32, HeaderSummary)>,
    /// Summaries were noted: write the cache file when the FETCH ends.
    noted: bool,
    /// Storing `\Seen` for the current batch failed: it is answered as read-only.
    seen_failed: bool,
    /// The rest of a response whose body streams from its file: it goes first.
    stream: Option<Box<BodyStream>>,
    /// Some messages had gone (expunged elsewhere) and could not be answered.
    pub expunged: bool,
    /// Some messages could not be read.
    pub failed: bool,
}

/// A message of the current batch, not answered yet.
struct Held {
    seq: u32,
    /// Its index entry as it was before the batch stored `\Seen`.
    info: MessageInfo,
    /// Its summary in the header cache, if it has one (asked only if the FETCH reads
    /// headers).
    headers: Option<Arc<HeaderSummary>>,
}

/// What a [`fetch_batch`] call left to do.
#[derive(Debug)]
pub enum Batch {
    /// More output to come: call again once it has drained.
    More,
    /// The FETCH is answered: its final reply.
    Done(Reply),
    /// A literal already announced could not be completed (its file ended early or could
    /// not be read): the connection must close after the output written so far.
    Broken,
}

/// Starts a FETCH: resolves the set. `Err` is the command's final reply.
pub fn fetch_start(
    mail: &Mail,
    uid: bool,
    set: &SequenceSet<'_>,
    items: FetchItems<'static>,
) -> Result<FetchState, Reply> {
    let Some(view) = mail.view.as_ref() else {
        return Err(Reply::bad("No mailbox selected"));
    };
    let seqs = resolve_set(view, set, uid)?;
    Ok(FetchState {
        uid,
        items,
        seqs,
        next: 0,
        held: VecDeque::new(),
        summarize: false,
        fresh: Vec::new(),
        noted: false,
        seen_failed: false,
        stream: None,
        expunged: false,
        failed: false,
    })
}

/// Answers the next part of a FETCH into `out`: up to `budget` octets of a body being
/// streamed from its file, or else the next batch of messages, which ends early at a body
/// that streams (its literal header is the end of `out`). Returns [`Batch::Done`] with the
/// final reply (and the pending updates) once the last message is answered.
pub fn fetch_batch(
    mail: &mut Mail,
    st: &mut FetchState,
    out: &mut Vec<u8>,
    budget: usize,
) -> Batch {
    if let Some(stream) = st.stream.as_mut() {
        match stream.copy(out, budget) {
            Ok(true) => st.stream = None,
            Ok(false) => return Batch::More,
            Err(e) => {
                tracing::error!(user = mail.account.user(), error = %e, "FETCH cannot complete a literal; closing the connection");
                st.stream = None;
                return Batch::Broken;
            }
        }
        if !st.held.is_empty() || st.next < st.seqs.len() {
            return Batch::More;
        }
    }
    let Some(view) = mail.view.as_mut() else {
        return Batch::Done(Reply::bad("No mailbox selected"));
    };
    let mut attrs: Vec<FetchAttr<'_>> = st.items.attrs().into_owned();
    // RFC 3501 6.4.8: UID FETCH always answers UID (fetch.rs puts it first).
    attrs.retain(|a| !(st.uid && *a == FetchAttr::Uid));
    let opts = FetchOptions {
        uid_command: st.uid,
        read_only: view.read_only(),
    };
    let needs_file = attrs.iter().any(needs_message);
    if st.held.is_empty() && st.next < st.seqs.len() {
        // The batch: up to `most` messages, fewer if their sizes (from the index) add up to
        // more than FETCH_BATCH_BYTES; always at least one.
        let most = if needs_file {
            FETCH_BATCH_MESSAGES
        } else {
            FETCH_BATCH_METADATA
        };
        let mut end = st.next;
        let mut bytes = 0u64;
        while end < st.seqs.len() && end - st.next < most {
            if end > st.next && bytes >= FETCH_BATCH_BYTES as u64 {
                break;
            }
            if needs_file {
                bytes += view.message(st.seqs[end]).map_or(0, |m| m.size);
            }
            end += 1;
        }
        // Set \Seen first, so the answer never shows a flag the store failed to keep; the
        // responses are written from the flags as they were, which makes them show \Seen.
        st.held = st.seqs[st.next..end]
            .iter()
            .filter_map(|&seq| {
                view.message(seq).map(|m| Held {
                    seq,
                    info: *m,
                    headers: None,
                })
            })
            .collect();
        st.next = end;
        st.summarize = attrs.iter().any(reads_header) && look_up_headers(view, &mut st.held);
        let to_see: Vec<u32> = st
            .held
            .iter()
            .map(|h| &h.info)
            .filter(|m| !m.expunged && will_set_seen(m.flags, &attrs, opts.read_only))
            .map(|m| m.uid)
            .collect();
        st.seen_failed = false;
        if !to_see.is_empty() {
            if let Err(e) = view.store(&to_see, StoreOp::Add, SystemFlags::SEEN, &[]) {
                tracing::warn!(user = mail.account.user(), error = %e, "FETCH could not set \\Seen");
                st.seen_failed = true;
            }
        }
    }
    while let Some(Held {
        seq,
        info: m,
        headers,
    }) = st.held.pop_front()
    {
        if m.expunged && needs_file {
            st.expunged = true;
            continue;
        }
        let names = view.keyword_names(m.keywords);
        let meta = MessageMeta::from_info(seq, &m, &names);
        let muid = m.uid;
        let open = || view.open_message(muid);
        // If storing \Seen failed, answer as a read-only mailbox would: flags as they are.
        let opts = FetchOptions {
            read_only: opts.read_only || st.seen_failed,
            ..opts
        };
        // The header cache's summary comes from the parse the answer needs anyway.
        let mut fresh = None;
        let written = if st.summarize {
            let cached = headers.as_deref();
            write_fetch_streaming_cached(out, &meta, &open, &attrs, opts, cached, &mut fresh)
        } else {
            write_fetch_streaming(out, &meta, &open, &attrs, opts)
        };
        if let Some(summary) = fresh {
            st.fresh.push((m.uid, summary));
        }
        match written {
            Ok((_, None)) => {}
            Ok((_, Some(stream))) => {
                st.stream = Some(Box::new(stream));
                return Batch::More;
            }
            Err(FetchError::Store(MailstoreError::Expunged { .. })) => st.expunged = true,
            Err(e) => {
                tracing::warn!(user = mail.account.user(), uid = m.uid, error = %e, "FETCH cannot read a message");
                st.failed = true;
            }
        }
    }
    note_headers(view, st);
    if st.next < st.seqs.len() {
        return Batch::More;
    }
    if st.noted {
        if let Err(e) = view.save_headers_if_worth_it() {
            tracing::warn!(mailbox = view.name(), error = %e, "cannot save the header cache");
        }
    }
    let r = if st.expunged {
        Reply::no(
            Some("EXPUNGEISSUED"),
            "Some of the requested messages no longer exist",
        )
    } else if st.failed {
        Reply::no(Some("UNAVAILABLE"), "Some messages could not be read")
    } else {
        Reply::ok(Vec::new(), None, "FETCH completed")
    };
    Batch::Done(finish(mail, r, st.uid))
}

/// Fills in the header cache's summaries of a batch's messages. False if the cache cannot
/// be asked: then the batch makes none (it could not keep them either).
fn look_up_headers(view: &MailboxView, held: &mut VecDeque<Held>) -> bool {
    let uids: Vec<u32> = held.iter().map(|h| h.info.uid).collect();
    match view.cached_headers_of(&uids) {
        Ok(found) => {
            for (h, summary) in held.iter_mut().zip(found) {
                h.headers = summary;
            }
            true
        }
        Err(e) => {
            tracing::warn!(mailbox = view.name(), error = %e, "header cache unavailable");
            false
        }
    }
}

/// Hands the summaries a batch made to the header cache, in memory: the file is written,
/// if enough are new, when the FETCH ends ([`MailboxView::save_headers_if_worth_it`]).
fn note_headers(view: &MailboxView, st: &mut FetchState) {
    if st.fresh.is_empty() {
        return;
    }
    match view.note_headers(std::mem::take(&mut st.fresh)) {
        Ok(()) => st.noted = true,
        Err(e) => tracing::warn!(mailbox = view.name(), error = %e, "header cache unavailable"),
    }
}

/// APPEND's end: commit the streamed message, then report.
pub fn append_commit(
    mail: &mut Mail,
    writer: crate::mailstore::AppendWriter,
    flags: SystemFlags,
    keywords: &[String],
    date: Option<DateTime>,
) -> Reply {
    let kw: Vec<&str> = keywords.iter().map(String::as_str).collect();
    let r = match writer.commit(flags, &kw, date.as_ref().map(system_time)) {
        Ok(a) => Reply::ok(
            Vec::new(),
            Some(format!("APPENDUID {} {}", a.uidvalidity, a.uid)),
            "APPEND completed",
        ),
        Err(e) => Reply::store_error(&e),
    };
    with_updates(mail, r)
}

/// Opens a mailbox for APPEND; a missing one is answered `[TRYCREATE]` (RFC 3501 6.3.11).
pub fn append_open(
    account: &Account,
    mailbox: &str,
) -> Result<crate::mailstore::AppendWriter, Reply> {
    account.append(mailbox).map_err(|e| match e {
        MailstoreError::NoSuchMailbox(_) => Reply::no(
            Some("TRYCREATE"),
            format!("Mailbox {mailbox:?} does not exist"),
        ),
        e => Reply::store_error(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::fetch::STREAM_CHUNK;
    use crate::maildir::test_support::TempDir;
    use crate::mailstore::MailStore;
    use ironpost_core::imap::{parse_command, Limits};

    fn login(store: &MailStore) -> Mail {
        Mail {
            account: store.account("example.org", "alice").unwrap(),
            view: None,
            utf8: false,
        }
    }

    fn append(mail: &Mail, n: usize) {
        append_made(mail, n, |i| format!("Subject: m{i}\r\n\r\nbody {i}\r\n"));
    }

    /// Appends `n` messages to INBOX, the `i`th made by `make(i)`.
    fn append_made(mail: &Mail, n: usize, make: impl Fn(usize) -> String) {
        for i in 0..n {
            let msg = make(i);
            mail.account
                .append_from(
                    "INBOX",
                    &mut msg.as_bytes(),
                    SystemFlags::empty(),
                    &[],
                    None,
                )
                .unwrap();
        }
    }

    /// Runs one command line; returns the untagged output and the tagged status line.
    fn run(mail: &mut Mail, line: &str) -> (String, String) {
        let input = format!("t {line}\r\n");
        let (_, cmd) = parse_command(input.as_bytes(), &Limits::DEFAULT).unwrap();
        let r = match cmd.body {
            CommandBody::Fetch { uid, set, items } => {
                let mut st = fetch_start(mail, uid, &set, items.into_owned()).unwrap();
                let mut out = Vec::new();
                loop {
                    match fetch_batch(mail, &mut st, &mut out, STREAM_CHUNK) {
                        Batch::More => {}
                        Batch::Done(mut r) => {
                            out.extend_from_slice(&r.out);
                            r.out = out;
                            break r;
                        }
                        Batch::Broken => panic!("a literal could not be completed"),
                    }
                }
            }
            body => execute(mail, &body),
        };
        let status = format!(
            "{:?}{}",
            r.status,
            r.code.map(|c| format!(" [{c}]")).unwrap_or_default()
        );
        (String::from_utf8(r.out).unwrap(), status)
    }

    #[test]
    fn expunges_wait_for_a_command_that_may_report_them() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut a = login(&store);
        let mut b = login(&store);
        append(&a, 3);
        run(&mut a, "SELECT INBOX");
        run(&mut b, "SELECT INBOX");
        run(&mut a, "STORE 1 +FLAGS.SILENT (\\Deleted)");
        assert_eq!(run(&mut a, "EXPUNGE").0, "* 1 EXPUNGE\r\n");
        // FETCH, STORE and SEARCH by sequence number: no EXPUNGE, numbers unchanged.
        let (out, _) = run(&mut b, "FETCH 1:3 UID");
        assert_eq!(
            out,
            "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\n"
        );
        // Now b knows message 1 is gone, but keeps its number; its file cannot be read.
        let (out, status) = run(&mut b, "FETCH 1 BODY.PEEK[]");
        assert_eq!((out.as_str(), status.as_str()), ("", "No [EXPUNGEISSUED]"));
        assert_eq!(run(&mut b, "SEARCH ALL").0, "* SEARCH 2 3\r\n");
        let (out, status) = run(&mut b, "STORE 1:2 +FLAGS (\\Seen)");
        assert_eq!(out, "* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n");
        assert_eq!(status, "No [EXPUNGEISSUED]");
        // The UID form may report it; then the numbers move.
        let (out, _) = run(&mut b, "UID SEARCH ALL");
        assert_eq!(out, "* SEARCH 2 3\r\n* 1 EXPUNGE\r\n");
        assert_eq!(run(&mut b, "FETCH 1 UID").0, "* 1 FETCH (UID 2)\r\n");
        // a sees b's \Seen at its next command.
        assert_eq!(
            run(&mut a, "NOOP").0,
            "* 1 FETCH (UID 2 FLAGS (\\Seen \\Recent))\r\n"
        );
    }

    #[test]
    fn fetch_goes_in_bounded_batches_and_sets_seen_first() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut mail = login(&store);
        append(&mail, FETCH_BATCH_MESSAGES + 10);
        run(&mut mail, "SELECT INBOX");
        let set = SequenceSet::parse("1:*").unwrap();
        let items = FetchItems::Attrs(vec![FetchAttr::BodySection {
            peek: false,
            section: Default::default(),
            partial: None,
        }]);
        let mut st = fetch_start(&mail, false, &set, items).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            fetch_batch(&mut mail, &mut st, &mut out, STREAM_CHUNK),
            Batch::More
        ));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches(" FETCH (").count(), FETCH_BATCH_MESSAGES);
        assert!(text.starts_with("* 1 FETCH (BODY[] {"), "{text}");
        assert!(text.contains("FLAGS (\\Seen \\Recent)"), "{text}");
        let mut out = Vec::new();
        let Batch::Done(r) = fetch_batch(&mut mail, &mut st, &mut out, STREAM_CHUNK) else {
            panic!("the last batch");
        };
        assert_eq!(r.status, Status::Ok);
        assert_eq!(
            String::from_utf8(out).unwrap().matches(" FETCH (").count(),
            10
        );
        let view = mail.view.as_ref().unwrap();
        assert!(view
            .messages()
            .iter()
            .all(|m| m.flags.contains(SystemFlags::SEEN)));
        // From the index alone: one batch however many.
        let items = FetchItems::Attrs(vec![FetchAttr::Uid, FetchAttr::Flags]);
        let mut st = fetch_start(&mail, true, &set, items).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            fetch_batch(&mut mail, &mut st, &mut out, STREAM_CHUNK),
            Batch::Done(_)
        ));
    }

    // -----------------------------------------------------------------------------------
    // FETCH and the header cache

    fn opens() -> u64 {
        crate::mailstore::MESSAGE_OPENS.with(|c| c.get())
    }

    /// Runs a command line; returns its output and how many message files it opened.
    fn run_counted(mail: &mut Mail, line: &str) -> (String, u64) {
        let before = opens();
        let (out, status) = run(mail, line);
        assert_eq!(status, "Ok", "{line}: {out}");
        (out, opens() - before)
    }

    /// `n` messages with the subjects `cache <i> end` (each a substring of no other).
    fn append_subjects(mail: &Mail, n: usize) {
        append_made(mail, n, |i| {
            format!("From: s{i}@example.net\r\nSubject: cache {i} end\r\n\r\nbody\r\n")
        });
    }

    /// Whether the cache file holds this text (a subject as the cache keeps it).
    fn cache_holds(mail: &Mail, text: &str) -> bool {
        let bytes = std::fs::read(mail.account.root().join("ironpost.cache")).unwrap();
        bytes.windows(text.len()).any(|w| w == text.as_bytes())
    }

    #[test]
    fn fetching_envelopes_fills_the_header_cache_for_search() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut a = login(&store);
        let n = FETCH_BATCH_MESSAGES + 6;
        append_subjects(&a, n);
        run(&mut a, "SELECT INBOX");
        let file = a.account.root().join("ironpost.cache");
        // Neither the index alone nor a body without the header makes summaries.
        assert_eq!(run_counted(&mut a, "FETCH 1:* (UID FLAGS)").1, 0);
        assert_eq!(run_counted(&mut a, "FETCH 1:* BODY.PEEK[TEXT]").1, n as u64);
        assert!(!file.exists());
        assert!(a
            .view
            .as_ref()
            .unwrap()
            .cached_headers()
            .unwrap()
            .iter()
            .all(Option::is_none));

        // ENVELOPE reads each file once; the summaries go into memory a batch at a time and
        // into the file when the FETCH ends.
        let set = SequenceSet::parse("1:*").unwrap();
        let items = FetchItems::Attrs(vec![FetchAttr::Envelope]);
        let before = opens();
        let mut st = fetch_start(&a, false, &set, items).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            fetch_batch(&mut a, &mut st, &mut out, STREAM_CHUNK),
            Batch::More
        ));
        assert!(!file.exists(), "written once, at the end");
        let cached = a.view.as_ref().unwrap().cached_headers().unwrap();
        assert!(cached[..FETCH_BATCH_MESSAGES].iter().all(Option::is_some));
        assert!(cached[FETCH_BATCH_MESSAGES..].iter().all(Option::is_none));
        let Batch::Done(r) = fetch_batch(&mut a, &mut st, &mut out, STREAM_CHUNK) else {
            panic!("the last batch");
        };
        assert_eq!(r.status, Status::Ok);
        assert_eq!(opens() - before, n as u64);
        assert!(file.is_file());
        let view = a.view.as_ref().unwrap();
        let cached = view.cached_headers().unwrap();
        assert!(cached.iter().all(Option::is_some));
        // The summary is what SEARCH itself would have made.
        let subject: Vec<&str> = cached[3]
            .as_ref()
            .unwrap()
            .field(b"subject")
            .unwrap()
            .values()
            .unwrap()
            .collect();
        assert_eq!(subject, ["cache 3 end"]);

        // SEARCH on header keys opens nothing, in this session, in another, and after a
        // restart (a new store reads the file).
        assert_eq!(
            run_counted(&mut a, "SEARCH SUBJECT \"CACHE 7 END\""),
            ("* SEARCH 8\r\n".into(), 0)
        );
        let mut b = login(&store);
        run(&mut b, "SELECT INBOX");
        assert_eq!(
            run_counted(&mut b, "UID SEARCH OR FROM s69@ SENTBEFORE 1-Jan-2000"),
            ("* SEARCH 70\r\n".into(), 0)
        );
        let restarted = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut c = login(&restarted);
        run(&mut c, "SELECT INBOX");
        assert_eq!(
            run_counted(&mut c, "SEARCH SUBJECT \"cache 69 end\""),
            ("* SEARCH 70\r\n".into(), 0)
        );
        // Fetched again: nothing new to keep, the file is left as it is.
        let stamp = std::fs::metadata(&file).unwrap().modified().unwrap();
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(run_counted(&mut c, "FETCH 1:* ENVELOPE").1, n as u64);
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), stamp);
    }

    #[test]
    fn a_large_mailbox_cache_is_rewritten_once_per_many_new_summaries() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut a = login(&store);
        append_subjects(&a, 200);
        run(&mut a, "SELECT INBOX");
        run_counted(&mut a, "FETCH 1:* ENVELOPE");
        let file = a.account.root().join("ironpost.cache");
        let bytes = std::fs::read(&file).unwrap();
        let new =
            |from: usize| move |i: usize| format!("Subject: new {} end\r\n\r\nbody\r\n", from + i);
        // One new message, its ENVELOPE fetched as a client does when it arrives: the
        // summary is kept in memory and used, the file (200 entries) is not rewritten.
        append_made(&a, 1, new(0));
        run(&mut a, "NOOP");
        assert_eq!(run_counted(&mut a, "FETCH 201 ENVELOPE").1, 1);
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
        assert_eq!(
            run_counted(&mut a, "SEARCH SUBJECT \"new 0 end\""),
            ("* SEARCH 201\r\n".into(), 0)
        );
        // The same for a SEARCH that had to read a new message.
        append_made(&a, 1, new(1));
        run(&mut a, "NOOP");
        assert_eq!(
            run_counted(&mut a, "SEARCH SUBJECT \"new 1 end\""),
            ("* SEARCH 202\r\n".into(), 1)
        );
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
        // Enough new ones (one in sixteen of the entries): written, all of them.
        append_made(&a, 11, new(2));
        run(&mut a, "NOOP");
        assert_eq!(run_counted(&mut a, "FETCH 203:* ENVELOPE").1, 11);
        assert_ne!(std::fs::read(&file).unwrap(), bytes);
        assert!(cache_holds(&a, "new 0 end") && cache_holds(&a, "new 12 end"));
    }

    #[test]
    fn header_fields_and_whole_messages_fill_the_cache_too() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut a = login(&store);
        append_subjects(&a, 6);
        run(&mut a, "SELECT INBOX");
        // What Thunderbird asks for, on some; the whole message on others; a part of one.
        run_counted(
            &mut a,
            "UID FETCH 1:2 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc \
             Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To \
             Content-Type Reply-To)])",
        );
        run_counted(&mut a, "FETCH 3 BODY.PEEK[]");
        run_counted(&mut a, "FETCH 4 RFC822.HEADER");
        run_counted(&mut a, "FETCH 5 BODY.PEEK[1]");
        let cached = a.view.as_ref().unwrap().cached_headers().unwrap();
        let have: Vec<bool> = cached.iter().map(Option::is_some).collect();
        assert_eq!(have, [true, true, true, true, false, false]);
        // Only the two without a summary are read.
        assert_eq!(
            run_counted(&mut a, "SEARCH FROM example.net SUBJECT \"cache 2\""),
            ("* SEARCH 3\r\n".into(), 2)
        );
        assert_eq!(
            run_counted(&mut a, "SEARCH SUBJECT \"cache 5\""),
            ("* SEARCH 6\r\n".into(), 0)
        );
    }

    #[test]
    fn messages_changed_after_the_fetch_are_answered_as_they_are_now() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut a = login(&store);
        let mut b = login(&store);
        let n = FETCH_BATCH_MESSAGES + 6;
        append_subjects(&a, n);
        run(&mut a, "SELECT INBOX");
        run(&mut b, "SELECT INBOX");

        // b expunges a message a has fetched (and noted) and one a has yet to fetch, while
        // a's FETCH is between batches.
        let set = SequenceSet::parse("1:*").unwrap();
        let items = FetchItems::Attrs(vec![FetchAttr::Envelope]);
        let mut st = fetch_start(&a, false, &set, items).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            fetch_batch(&mut a, &mut st, &mut out, STREAM_CHUNK),
            Batch::More
        ));
        run(&mut b, "STORE 1,70 +FLAGS.SILENT (\\Deleted)");
        run(&mut b, "EXPUNGE");
        let Batch::Done(r) = fetch_batch(&mut a, &mut st, &mut out, STREAM_CHUNK) else {
            panic!("the last batch");
        };
        assert_eq!(r.code.as_deref(), Some("EXPUNGEISSUED"));
        // The file holds every message still there, and neither expunged one.
        assert!(cache_holds(&a, "cache 1 end") && cache_holds(&a, "cache 68 end"));
        assert!(!cache_holds(&a, "cache 0 end") && !cache_holds(&a, "cache 69 end"));

        // Flag changes rename files (UIDs 3 to 5): their entries stay good. Another expunge
        // after the fetch (UID 6): the message is found no more.
        run(&mut b, "UID STORE 3:5 +FLAGS.SILENT (\\Seen $Work)");
        run(&mut b, "UID STORE 6 +FLAGS.SILENT (\\Deleted)");
        run(&mut b, "EXPUNGE");
        assert_eq!(
            run_counted(
                &mut b,
                "UID SEARCH OR SUBJECT \"cache 2 end\" SUBJECT \"cache 5 end\""
            ),
            ("* SEARCH 3\r\n".into(), 0)
        );
        // a still has the old numbers (UIDs 1, 6 and 70 wait to be reported expunged): it
        // finds what is there, not the expunged ones, and reads no file.
        let (out, read) = run_counted(
            &mut a,
            "UID SEARCH OR OR SUBJECT \"cache 0 end\" SUBJECT \"cache 3 end\" \
             OR SUBJECT \"cache 5 end\" SUBJECT \"cache 69 end\"",
        );
        assert_eq!((out.lines().next(), read), (Some("* SEARCH 4"), 0), "{out}");
        let restarted = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut c = login(&restarted);
        run(&mut c, "SELECT INBOX");
        assert_eq!(
            run_counted(&mut c, "UID SEARCH SUBJECT cache"),
            (
                format!(
                    "* SEARCH {}\r\n",
                    (2..70)
                        .filter(|u| *u != 6)
                        .map(|u| u.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                0
            )
        );
    }

    #[test]
    fn lsub_percent_returns_unsubscribed_parents_as_noselect() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut a = login(&store);
        for line in [
            "CREATE Work.Projects.Alpha",
            "SUBSCRIBE Work.Projects.Alpha",
            "CREATE Lists",
            "SUBSCRIBE Lists",
            "SUBSCRIBE Lists.Rust",
        ] {
            assert_eq!(run(&mut a, line).1, "Ok", "{line}");
        }
        let (out, status) = run(&mut a, "LSUB \"\" %");
        assert_eq!(status, "Ok");
        assert!(out.contains("* LSUB (\\Noselect) \".\" Work\r\n"), "{out}");
        assert!(out.contains(" Lists\r\n"), "{out}");
        // A subscribed parent is listed once, as itself; deeper names are not.
        assert_eq!(out.matches(" Lists\r\n").count(), 1, "{out}");
        assert!(
            !out.contains("Alpha") && !out.contains("Lists.Rust"),
            "{out}"
        );
        let (out, _) = run(&mut a, "LSUB Work. %");
        assert_eq!(out, "* LSUB (\\Noselect) \".\" Work.Projects\r\n");
        // `*` matches the subscribed names themselves, and nothing is invented.
        let (out, _) = run(&mut a, "LSUB \"\" *");
        assert!(!out.contains("\\Noselect) \".\" Work\r\n"), "{out}");
        assert!(out.contains(" Work.Projects.Alpha\r\n"), "{out}");
    }

    #[test]
    fn removing_the_selected_mailbox_deselects_it() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut a = login(&store);
        let mut b = login(&store);
        let cmd = |mail: &mut Mail, line: &str| {
            let input = format!("t {line}\r\n");
            let (_, cmd) = parse_command(input.as_bytes(), &Limits::DEFAULT).unwrap();
            execute(mail, &cmd.body)
        };
        run(&mut a, "CREATE Temp");
        run(&mut a, "SELECT Temp");
        // Another mailbox: nothing changes.
        run(&mut a, "CREATE Other");
        let r = cmd(&mut a, "DELETE Other");
        assert_eq!((r.status, r.gone), (Status::Ok, false));
        assert!(a.view.is_some());
        // The selected one: OK, no updates, nothing selected, not `gone` (no BYE).
        let r = cmd(&mut a, "DELETE Temp");
        assert_eq!((r.status, r.gone, r.out.len()), (Status::Ok, false, 0));
        assert!(a.view.is_none());
        // A failed DELETE of the selected mailbox leaves it selected.
        run(&mut a, "CREATE P");
        run(&mut a, "CREATE P.Q");
        run(&mut a, "SELECT P");
        let r = cmd(&mut a, "DELETE INBOX");
        assert_eq!(r.status, Status::No);
        assert!(a.view.is_some());
        // RENAME of the selected mailbox's parent moves it too.
        run(&mut a, "SELECT P.Q");
        let r = cmd(&mut a, "RENAME P R");
        assert_eq!((r.status, r.gone), (Status::Ok, false));
        assert!(a.view.is_none());
        // RENAME INBOX leaves INBOX (empty) selected: its messages are reported expunged.
        append(&a, 2);
        run(&mut a, "SELECT inbox");
        let r = cmd(&mut a, "RENAME INBOX Old");
        assert_eq!((r.status, r.gone), (Status::Ok, false));
        assert_eq!(
            String::from_utf8(r.out).unwrap(),
            "* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n"
        );
        assert!(a.view.is_some());
        // Removed by another session: `gone`, which ends the session with BYE.
        run(&mut b, "SELECT Old");
        run(&mut a, "DELETE Old");
        let r = cmd(&mut b, "NOOP");
        assert!(r.gone);
        assert!(b.view.is_none());
    }

    #[test]
    fn list_and_select_responses() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut mail = login(&store);
        assert_eq!(
            run(&mut mail, "LIST \"\" \"\"").0,
            "* LIST (\\Noselect) \".\" \"\"\r\n"
        );
        run(&mut mail, "CREATE a.b");
        let (out, _) = run(&mut mail, "LIST \"\" %");
        assert!(
            out.contains("* LIST (\\Noselect \\HasChildren) \".\" a\r\n"),
            "{out}"
        );
        assert!(
            out.contains("* LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n"),
            "{out}"
        );
        assert!(!out.contains("a.b"), "{out}");
        append(&mail, 2);
        let (out, status) = run(&mut mail, "SELECT INBOX");
        assert_eq!(status, "Ok [READ-WRITE]");
        assert!(out.starts_with(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
             * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n\
             * 2 EXISTS\r\n* 2 RECENT\r\n* OK [UNSEEN 1] Message 1 is first unseen\r\n"
        ), "{out}");
        assert!(
            out.ends_with("* OK [UIDNEXT 3] Predicted next UID\r\n"),
            "{out}"
        );
        let (_, status) = run(&mut mail, "SELECT ../bob");
        assert!(status.starts_with("No [CANNOT]"), "{status}");
        assert!(
            mail.view.is_none(),
            "a failed SELECT leaves nothing selected"
        );
        let (_, status) = run(&mut mail, "COPY 1 Nowhere");
        assert_eq!(status, "Bad", "nothing selected");
        run(&mut mail, "SELECT INBOX");
        let (_, status) = run(&mut mail, "COPY 1 Nowhere");
        assert_eq!(status, "No [TRYCREATE]");
        let (_, status) = run(&mut mail, "COPY 1:2 Sent");
        assert!(status.starts_with("Ok [COPYUID "), "{status}");
        assert!(status.ends_with(" 1:2 1:2]"), "{status}");
    }

    #[test]
    fn mailbox_names_are_utf8_in_utf8_mode_and_modified_utf7_otherwise() {
        let td = TempDir::new();
        let store = MailStore::open(td.path(), "mx.example.org").unwrap();
        let mut mail = login(&store);
        mail.utf8 = true;
        for create in [
            "CREATE \"Entw\u{fc}rfe\"",
            "CREATE \"\u{65e5}\u{672c}\u{8a9e}\"",
            "CREATE A&B",
            "SUBSCRIBE \"\u{65e5}\u{672c}\u{8a9e}\"",
        ] {
            assert_eq!(run(&mut mail, create).1, "Ok", "{create}");
        }
        let (out, _) = run(&mut mail, "LIST \"\" *");
        for line in [
            "* LIST (\\HasNoChildren) \".\" \"Entw\u{fc}rfe\"\r\n",
            "* LIST (\\HasNoChildren) \".\" \"\u{65e5}\u{672c}\u{8a9e}\"\r\n",
            "* LIST (\\HasNoChildren) \".\" A&B\r\n",
        ] {
            assert!(out.contains(line), "{line} not in {out}");
        }
        // Patterns and references are UTF-8 too.
        let (out, _) = run(&mut mail, "LIST \"Entw\u{fc}\" %");
        assert_eq!(out, "* LIST (\\HasNoChildren) \".\" \"Entw\u{fc}rfe\"\r\n");
        let (out, _) = run(&mut mail, "LSUB \"\" *");
        let line = "* LSUB (\\HasNoChildren) \".\" \"\u{65e5}\u{672c}\u{8a9e}\"\r\n";
        assert!(out.contains(line), "{out}");
        let (out, _) = run(&mut mail, "STATUS \"Entw\u{fc}rfe\" (MESSAGES)");
        assert_eq!(out, "* STATUS \"Entw\u{fc}rfe\" (MESSAGES 0)\r\n");
        let (out, _) = run(&mut mail, "LIST \"\" A* RETURN (STATUS (UIDNEXT))");
        assert_eq!(
            out,
            "* LIST (\\HasNoChildren) \".\" A&B\r\n* STATUS A&B (UIDNEXT 1)\r\n"
        );
        // `&` is just `&`: the modified UTF-7 spelling names another mailbox.
        let (_, status) = run(&mut mail, "SELECT Entw&APw-rfe");
        assert!(status.starts_with("No"), "{status}");
        assert_eq!(
            run(&mut mail, "SELECT \"Entw\u{fc}rfe\"").1,
            "Ok [READ-WRITE]"
        );
        assert_eq!(run(&mut mail, "SEARCH ALL").1, "Ok");
        let (_, status) = run(&mut mail, "SEARCH CHARSET UTF-8 ALL");
        assert_eq!(status, "Bad", "RFC 6855 errata 4029");
        assert_eq!(
            run(&mut mail, "UID COPY 1 \"\u{65e5}\u{672c}\u{8a9e}\"").1,
            "Ok"
        );
        assert_eq!(run(&mut mail, "UID COPY 1 &ZeVnLIqe-").1, "No [TRYCREATE]");
        // A name that is not UTF-8 is refused with a clear text.
        let bad = CommandBody::Create {
            mailbox: Mailbox::Other(IString::from(&b"Entw\xfcrfe"[..])),
        };
        let r = execute(&mut mail, &bad);
        assert_eq!(
            (r.status, r.text.as_str()),
            (Status::Bad, "Mailbox name is not valid UTF-8")
        );

        // Without UTF8=ACCEPT: the same mailboxes in modified UTF-7, both ways.
        mail.utf8 = false;
        mail.view = None;
        let (out, _) = run(&mut mail, "LIST \"\" *");
        for line in [
            "* LIST (\\HasNoChildren) \".\" Entw&APw-rfe\r\n",
            "* LIST (\\HasNoChildren) \".\" &ZeVnLIqe-\r\n",
            "* LIST (\\HasNoChildren) \".\" A&-B\r\n",
        ] {
            assert!(out.contains(line), "{line} not in {out}");
        }
        let (out, _) = run(&mut mail, "STATUS Entw&APw-rfe (MESSAGES)");
        assert_eq!(out, "* STATUS Entw&APw-rfe (MESSAGES 0)\r\n");
        let (out, _) = run(&mut mail, "LSUB \"\" *");
        assert!(
            out.contains("* LSUB (\\HasNoChildren) \".\" &ZeVnLIqe-\r\n"),
            "{out}"
        );
        assert_eq!(run(&mut mail, "SELECT Entw&APw-rfe").1, "Ok [READ-WRITE]");
        assert_eq!(run(&mut mail, "SEARCH CHARSET UTF-8 ALL").1, "Ok");
        // 8-bit octets are not modified UTF-7.
        let (_, status) = run(&mut mail, "SELECT \"Entw\u{fc}rfe\"");
        assert_eq!(status, "No [CANNOT]");
        // On disk: Maildir++ folders in modified UTF-7, whichever mode created them.
        let root = mail.account.root().to_path_buf();
        for dir in [".Entw&APw-rfe", ".&ZeVnLIqe-", ".A&-B"] {
            assert!(root.join(dir).join("cur").is_dir(), "{dir}");
        }
    }

    #[test]
    fn patterns_join_reference() {
        assert_eq!(full_pattern("", "*"), "*");
        assert_eq!(full_pattern("Archive.", "%"), "Archive.%");
        assert_eq!(full_pattern("Archive.", ".x"), "Archive.x");
        assert_eq!(full_pattern("Arch", "ive"), "Archive");
    }

    #[test]
    fn flags_split_into_system_and_keywords() {
        let (s, k) = split_flags(&[
            Flag::Seen,
            Flag::Keyword("$Junk".into()),
            Flag::Recent,
            Flag::Keyword("$junk".into()),
        ])
        .unwrap();
        assert_eq!(s, SystemFlags::SEEN);
        assert_eq!(k, vec!["$Junk".to_string()]);
        assert!(split_flags(&[Flag::Extension("Foo".into())]).is_err());
    }
}
