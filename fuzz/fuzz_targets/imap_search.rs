//! SEARCH evaluation (`server::imap::search::matches`): arbitrary criteria, parsed by core's
//! IMAP parser, against an arbitrary message and arbitrary index metadata.
//!
//! Input: `[L][control: L bytes][search keys ... CRLF][message]` (see
//! `ironpost_fuzz::split_control`): the control block gives the metadata (flags, keywords,
//! \Recent, size, internal date, sequence number, UID, and what `*` stands for); the target
//! parses `a SEARCH ` + the stream as one command, and what follows the command is the
//! message.
//!
//! Invariants: no panic; deterministic; evaluating lazily (metadata first, the message file
//! read only when a key still depends on it) gives the same answer as with the message at
//! hand, and reads no file when no key needs the message (`needs_message`); the criteria are
//! the AND of their keys; `NOT k` is the negation of `k`; `OR a b` and `(a b)` are `a || b`
//! and `a && b`; `BODY s`, `SUBJECT s`, `FROM s`, `TO s`, `CC s`, `BCC s` and `HEADER f s`
//! imply `TEXT s`; for a date `d`, `ON d` implies `SINCE d`, and `BEFORE d` and `SINCE d`
//! exclude each other (likewise SENTON / SENTSINCE / SENTBEFORE).

#![no_main]

use std::cell::Cell;
use std::fs::File;

use arbitrary::{Arbitrary, Unstructured};
use ironpost::imap::search::{matches, needs_message};
use ironpost::imap::{MessageMeta, ParsedMessage, SearchContext};
use ironpost::mailstore::SystemFlags;
use ironpost_core::imap::{parse_command, CommandBody, Limits, SearchKey};
use ironpost_fuzz::{split_control, trace};
use libfuzzer_sys::fuzz_target;

const KEYWORDS: [&str; 4] = ["$Forwarded", "Work", "$Junk", "x"];

#[derive(Arbitrary, Debug)]
struct Control {
    flags: u8,
    keywords: u8,
    recent: bool,
    size: u32,
    /// Days around 2000-01-01 and seconds into the day.
    day: i16,
    second: u32,
    seq: u16,
    uid: u32,
    max_seq: u16,
    max_uid: u32,
}

fn flags(bits: u8) -> SystemFlags {
    [
        SystemFlags::SEEN,
        SystemFlags::ANSWERED,
        SystemFlags::FLAGGED,
        SystemFlags::DELETED,
        SystemFlags::DRAFT,
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| bits & (1 << i) != 0)
    .fold(SystemFlags::empty(), |a, (_, f)| a.union(f))
}

struct Eval<'a> {
    ctx: SearchContext,
    meta: MessageMeta<'a>,
    message: &'a [u8],
}

impl Eval<'_> {
    /// With the message at hand (parsed afresh).
    fn eager(&self, keys: &[SearchKey<'_>]) -> bool {
        let never = || -> Result<File, std::io::Error> {
            panic!("the message file was opened although it was at hand")
        };
        let mut cache = Some(ParsedMessage::from_bytes(self.message.to_vec()));
        matches(keys, &self.ctx, &self.meta, &never, &mut cache).expect("no file, no error")
    }

    /// As a session does: the file is read only if a key needs it.
    fn lazy(&self, keys: &[SearchKey<'_>]) -> bool {
        let opened = Cell::new(false);
        let path =
            std::env::temp_dir().join(format!("ironpost-fuzz-search-{}", std::process::id()));
        let source = || -> Result<File, std::io::Error> {
            opened.set(true);
            std::fs::write(&path, self.message)?;
            File::open(&path)
        };
        let mut cache = None;
        let r = matches(keys, &self.ctx, &self.meta, &source, &mut cache).expect("reading");
        if opened.get() {
            assert!(
                needs_message(keys),
                "the file was read for keys that need no message: {keys:?}"
            );
        }
        r
    }
}

/// The string of a key that TEXT covers, and the key as TEXT.
fn as_text<'a>(k: &SearchKey<'a>) -> Option<SearchKey<'a>> {
    use SearchKey::*;
    match k {
        Body(s) | Subject(s) | From(s) | To(s) | Cc(s) | Bcc(s) | Header(_, s) => {
            Some(Text(s.clone()))
        }
        _ => None,
    }
}

fuzz_target!(|input: &[u8]| {
    let (control, stream) = split_control(input);
    let Ok(c) = Control::arbitrary_take_rest(Unstructured::new(control)) else {
        return;
    };
    let mut line = b"a SEARCH ".to_vec();
    line.extend_from_slice(stream);
    let (n, criteria) = match parse_command(&line, &Limits::default()) {
        Ok((n, cmd)) => match cmd.body {
            CommandBody::Search { criteria, .. } => (n, criteria),
            _ => return,
        },
        Err(_) => return,
    };
    let message = &line[n..];
    let keywords: Vec<&str> = KEYWORDS
        .iter()
        .enumerate()
        .filter(|(i, _)| c.keywords & (1 << i) != 0)
        .map(|(_, k)| *k)
        .collect();
    let ev = Eval {
        ctx: SearchContext {
            max_seq: u32::from(c.max_seq),
            max_uid: c.max_uid,
        },
        meta: MessageMeta {
            seq: u32::from(c.seq),
            uid: c.uid,
            flags: flags(c.flags),
            keywords: &keywords,
            recent: c.recent,
            size: u64::from(c.size),
            internal_date: 946_684_800 + i64::from(c.day) * 86_400 + i64::from(c.second % 86_400),
        },
        message,
    };
    if trace() {
        eprintln!(
            "{c:?}\n{criteria:?}\n{:?}",
            String::from_utf8_lossy(message)
        );
    }

    let all = ev.eager(&criteria);
    assert_eq!(all, ev.eager(&criteria), "not deterministic");
    assert_eq!(all, ev.lazy(&criteria), "lazy and eager evaluation differ");

    let keys: Vec<&SearchKey<'_>> = criteria.iter().take(6).collect();
    let each: Vec<bool> = keys
        .iter()
        .map(|k| ev.eager(std::slice::from_ref(*k)))
        .collect();
    if criteria.len() == keys.len() {
        assert_eq!(
            all,
            each.iter().all(|&b| b),
            "criteria are not the AND of their keys"
        );
    }
    for (i, k) in keys.iter().enumerate() {
        let not = SearchKey::Not(Box::new((*k).clone()));
        assert_eq!(ev.eager(&[not]), !each[i], "NOT {k:?}");
        if let Some(next) = keys.get(i + 1) {
            let or = SearchKey::Or(Box::new((*k).clone()), Box::new((*next).clone()));
            assert_eq!(ev.eager(&[or]), each[i] || each[i + 1], "OR {k:?} {next:?}");
            let and = SearchKey::And(vec![(*k).clone(), (*next).clone()]);
            assert_eq!(ev.eager(&[and]), each[i] && each[i + 1], "({k:?} {next:?})");
        }
        if each[i] {
            if let Some(text) = as_text(k) {
                assert!(ev.eager(&[text]), "{k:?} matches but TEXT does not");
            }
        }
        use SearchKey::*;
        let dates = match k {
            Before(d) | On(d) | Since(d) => Some([Before(*d), On(*d), Since(*d)]),
            SentBefore(d) | SentOn(d) | SentSince(d) => {
                Some([SentBefore(*d), SentOn(*d), SentSince(*d)])
            }
            _ => None,
        };
        if let Some(d) = dates {
            let [before, on, since] = d.map(|k| ev.eager(&[k]));
            assert!(!(before && since), "BEFORE and SINCE the same date: {k:?}");
            assert!(!on || since, "ON but not SINCE: {k:?}");
            assert!(!(on && before), "ON and BEFORE: {k:?}");
        }
    }
});
