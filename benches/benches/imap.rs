//! IMAP server-side hot paths: command parsing over what real clients send, and FETCH
//! response encoding, with the published `imap-codec` crate measured side by side on the same
//! input in the same run.
//!
//! `cargo bench -p ironpost-benches --bench imap -- --warm-up-time 1 --measurement-time 3`
//!
//! Times are the CPU time of the benchmark's thread (`CLOCK_THREAD_CPUTIME_ID`), not wall
//! time: on a machine shared with other work, time spent descheduled would otherwise land on
//! whichever side happened to be running. `BENCH_WALL_TIME=1` measures wall time instead.
//!
//! Both parsers get the same octets: whole commands, CRLF and literals included, exactly as
//! they arrive from the socket. ironpost's `parse_command` frames the command (finds its end,
//! walks literals) and parses it, borrowing every string; imap-codec's `CommandCodec::decode`
//! does the same in one pass. For APPEND both stop at the message literal's announcement:
//! ironpost returns the command, imap-codec `LiteralFound` (the point where a server sends
//! `+` and streams the message).

mod common;

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::encode::{Encoder, Fragment};
use imap_codec::{CommandCodec, ResponseCodec};
use ironpost_core::imap::encode::{
    Address, BodyExtension, BodyFields, BodyStructure, Disposition, Envelope, FetchWriter,
    SingleKind,
};
use ironpost_core::imap::{parse_command, CommandBody, Flag, IString, Limits};

/// Commands as Thunderbird, iOS Mail, mutt, K-9 Mail and mbsync send them (case, tags,
/// quoting and item order as seen on the wire). Passwords and names are made up.
const COMMANDS: &[&[u8]] = &[
    // Thunderbird
    b"1 capability\r\n",
    b"2 authenticate PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzM2NyM3QtcGFzcw==\r\n",
    b"3 ID (\"name\" \"Thunderbird\" \"version\" \"128.5.2\")\r\n",
    b"4 enable UTF8=ACCEPT\r\n",
    b"5 namespace\r\n",
    b"6 list \"\" \"INBOX\"\r\n",
    b"7 list \"\" \"*\"\r\n",
    b"8 lsub \"\" \"*\"\r\n",
    b"9 select \"INBOX\"\r\n",
    b"10 UID fetch 1:* (FLAGS)\r\n",
    b"11 UID fetch 4286:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n",
    b"12 UID fetch 4286 (UID RFC822.SIZE BODY.PEEK[]<0.65536>)\r\n",
    b"13 uid store 4286 +Flags (\\Seen)\r\n",
    b"14 uid move 4281:4283,4285 \"Trash\"\r\n",
    b"15 IDLE\r\n",
    b"16 STATUS \"Sent\" (UIDNEXT MESSAGES UNSEEN RECENT)\r\n",
    b"17 append \"Sent\" (\\Seen) \"21-Nov-2024 10:15:30 +0100\" {2841}\r\n",
    b"18 noop\r\n",
    b"19 expunge\r\n",
    b"20 logout\r\n",
    // iOS Mail
    b"1 ID (\"name\" \"iPhone Mail\" \"version\" \"21H216\" \"os\" \"iOS\" \"os-version\" \"17.6.1 (21H216)\")\r\n",
    b"2 LOGIN \"alice@example.test\" \"s3cr3t-pass\"\r\n",
    b"3 NAMESPACE\r\n",
    b"4 LIST \"\" \"*\"\r\n",
    b"5 SELECT INBOX\r\n",
    b"6 UID FETCH 1:* (FLAGS)\r\n",
    b"7 UID FETCH 4200:4286 (UID FLAGS RFC822.SIZE INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (References In-Reply-To Message-ID)])\r\n",
    b"8 UID FETCH 4286 (BODY.PEEK[1]<0.10240>)\r\n",
    b"9 UID SEARCH UID 1:* NOT DELETED\r\n",
    b"10 UID SEARCH HEADER Message-ID \"<CAF3x+8q=PmT4sYz@mail.example.com>\"\r\n",
    b"11 UID STORE 4286 +FLAGS.SILENT (\\Seen)\r\n",
    b"12 UID MOVE 4286 \"Archive\"\r\n",
    b"13 IDLE\r\n",
    // mutt
    b"a0000 CAPABILITY\r\n",
    b"a0001 AUTHENTICATE PLAIN\r\n",
    b"a0002 LIST \"\" \"\"\r\n",
    b"a0003 SELECT \"INBOX\"\r\n",
    b"a0004 FETCH 1:4286 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL X-ORIGINAL-TO)])\r\n",
    b"a0005 UID FETCH 4286 BODY.PEEK[]\r\n",
    b"a0006 UID STORE 4280:4286 +FLAGS.SILENT (\\Seen)\r\n",
    b"a0007 UID COPY 4280,4282:4284 \"Archive\"\r\n",
    b"a0008 UID SEARCH OR FROM \"bob\" SUBJECT \"invoice\"\r\n",
    b"a0009 EXAMINE \"Sent\"\r\n",
    b"a0010 CHECK\r\n",
    b"a0011 LOGOUT\r\n",
    // K-9 Mail
    b"3 LOGIN alice {12}\r\npass\"word(1)\r\n",
    b"4 LIST \"\" \"INBOX\"\r\n",
    b"5 UID SEARCH SINCE 20-Oct-2024 NOT DELETED\r\n",
    b"6 UID FETCH 4280,4281,4282,4283 (UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (date subject from content-type to cc reply-to message-id references in-reply-to X-K9mail-Identity Chat-Version)])\r\n",
    b"7 UID FETCH 4286 (UID BODYSTRUCTURE)\r\n",
    b"8 UID FETCH 4286 (UID BODY.PEEK[TEXT]<0.4096>)\r\n",
    b"9 UID STORE 4286 +FLAGS.SILENT (\\Deleted)\r\n",
    b"10 UID EXPUNGE 4286\r\n",
    // mbsync (isync)
    b"1 AUTHENTICATE PLAIN AGFsaWNlAHMzY3IzdA==\r\n",
    b"2 UID FETCH 1:* (UID FLAGS)\r\n",
    b"3 UID FETCH 4286 (BODY.PEEK[])\r\n",
    b"4 APPEND \"INBOX\" (\\Seen) {3172+}\r\n",
    b"5 UID SEARCH HEADER X-TUID 5bD8xQkVn1ou\r\n",
    b"6 UID SEARCH UNSEEN NOT DELETED SINCE 1-Nov-2024 BEFORE 1-Dec-2024\r\n",
    b"7 UID SEARCH OR (FLAGGED UNSEEN) NOT (ANSWERED OR DRAFT KEYWORD $Junk) LARGER 10240\r\n",
];

/// The command corpus repeated to a few thousand commands, in a fixed shuffled order.
fn corpus() -> Vec<&'static [u8]> {
    let mut lines = Vec::new();
    let mut x: u32 = 0x2545_f491;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        lines.push(COMMANDS[x as usize % COMMANDS.len()]);
    }
    lines
}

/// ironpost: the whole command, or for APPEND the line that announces the message.
fn ironpost_parses(limits: &Limits, cmd: &[u8]) -> bool {
    match parse_command(cmd, limits) {
        Ok((n, c)) => {
            black_box(&c);
            n == cmd.len()
        }
        Err(_) => false,
    }
}

/// imap-codec: the whole command, or for APPEND its `LiteralFound`.
fn imap_codec_parses(codec: &CommandCodec, cmd: &[u8]) -> bool {
    match codec.decode(cmd) {
        Ok((rest, c)) => {
            black_box(&c);
            rest.is_empty()
        }
        Err(CommandDecodeError::LiteralFound { tag, length, .. }) => {
            black_box((&tag, length));
            true
        }
        Err(_) => false,
    }
}

fn check_corpus(limits: &Limits, codec: &CommandCodec) {
    for cmd in COMMANDS {
        let shown = String::from_utf8_lossy(cmd);
        assert!(ironpost_parses(limits, cmd), "ironpost: {shown:?}");
        assert!(imap_codec_parses(codec, cmd), "imap-codec: {shown:?}");
        if let Ok((_, c)) = parse_command(cmd, limits) {
            if let CommandBody::Append { message, .. } = c.body {
                let Err(CommandDecodeError::LiteralFound { length, .. }) = codec.decode(cmd) else {
                    panic!("imap-codec: {shown:?}");
                };
                assert_eq!(length, message.size);
            }
        }
    }
}

fn command_parsing<M: Measurement>(c: &mut Criterion<M>) {
    let limits = Limits::DEFAULT;
    let codec = CommandCodec::default();
    check_corpus(&limits, &codec);

    let lines = corpus();
    let octets: usize = lines.iter().map(|l| l.len()).sum();
    let mut g = c.benchmark_group("imap_command");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("ironpost", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for line in &lines {
                ok += ironpost_parses(&limits, black_box(line)) as usize;
            }
            assert_eq!(ok, lines.len());
        })
    });
    g.bench_function("imap-codec", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for line in &lines {
                ok += imap_codec_parses(&codec, black_box(line)) as usize;
            }
            assert_eq!(ok, lines.len());
        })
    });
    g.finish();
    eprintln!(
        "imap_command corpus: {} commands, {} octets ({} distinct)",
        lines.len(),
        octets,
        COMMANDS.len()
    );

    // A few single commands that dominate a session's parsing, each on its own.
    let singles: [(&str, &[u8]); 4] = [
        ("select", b"9 select \"INBOX\"\r\n"),
        ("uid_fetch_header_fields", COMMANDS[10]),
        ("uid_store", b"11 UID STORE 4286 +FLAGS.SILENT (\\Seen)\r\n"),
        (
            "uid_search",
            b"7 UID SEARCH OR (FLAGGED UNSEEN) NOT (ANSWERED OR DRAFT KEYWORD $Junk) LARGER 10240\r\n",
        ),
    ];
    for (name, cmd) in singles {
        let mut g = c.benchmark_group(format!("imap_command_{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("ironpost", |b| {
            b.iter(|| assert!(ironpost_parses(&limits, black_box(cmd))))
        });
        g.bench_function("imap-codec", |b| {
            b.iter(|| assert!(imap_codec_parses(&codec, black_box(cmd))))
        });
        g.finish();
    }
}

// ---------------------------------------------------------------------------------------
// FETCH responses

/// What a mailbox of `n` messages gives `FETCH 1:* (UID FLAGS RFC822.SIZE)`: the same
/// (uid, flags, size) for both encoders.
struct Message {
    uid: u32,
    flags: Vec<Flag<'static>>,
    size: u32,
}

fn mailbox(n: u32) -> Vec<Message> {
    let mut x: u32 = 0x9e37_79b9;
    (1..=n)
        .map(|seq| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let flags = match x % 8 {
                0 => vec![],
                1 => vec![Flag::Seen, Flag::Answered],
                2 => vec![Flag::Seen, Flag::Flagged],
                3 => vec![Flag::Seen, Flag::Keyword("$Forwarded".into())],
                4 => vec![Flag::Seen, Flag::Keyword("$NotJunk".into())],
                _ => vec![Flag::Seen],
            };
            Message {
                uid: seq + 1000,
                flags,
                size: 1_000 + x % 200_000,
            }
        })
        .collect()
}

mod codec {
    //! The same data as imap-codec's types.

    use super::*;
    use imap_codec::imap_types::body::{
        BasicFields, Body, BodyStructure as CBody, Disposition as CDisposition, Language, Location,
        MultiPartExtensionData, SinglePartExtensionData, SpecificFields,
    };
    use imap_codec::imap_types::core::{IString as CIString, NString, Vec1};
    use imap_codec::imap_types::envelope::{Address as CAddress, Envelope as CEnvelope};
    use imap_codec::imap_types::fetch::MessageDataItem;
    use imap_codec::imap_types::flag::{Flag as CFlag, FlagFetch};
    use imap_codec::imap_types::response::{Data, Response};

    fn flag(f: &Flag<'static>) -> FlagFetch<'static> {
        FlagFetch::Flag(match f {
            Flag::Seen => CFlag::Seen,
            Flag::Answered => CFlag::Answered,
            Flag::Flagged => CFlag::Flagged,
            Flag::Deleted => CFlag::Deleted,
            Flag::Draft => CFlag::Draft,
            Flag::Keyword(k) => CFlag::Keyword(k.to_string().try_into().unwrap()),
            Flag::Recent | Flag::Extension(_) => unreachable!(),
        })
    }

    pub fn fetch_flags(seq: u32, m: &Message) -> Response<'static> {
        let items = vec![
            MessageDataItem::Uid(NonZeroU32::new(m.uid).unwrap()),
            MessageDataItem::Flags(m.flags.iter().map(flag).collect()),
            MessageDataItem::Rfc822Size(m.size),
        ];
        Response::Data(Data::Fetch {
            seq: NonZeroU32::new(seq).unwrap(),
            items: Vec1::try_from(items).unwrap(),
        })
    }

    fn istr(s: &IString<'_>) -> CIString<'static> {
        CIString::try_from(s.as_bytes().to_vec()).unwrap()
    }

    fn nstr(s: &Option<IString<'_>>) -> NString<'static> {
        NString(s.as_ref().map(istr))
    }

    fn params(p: &[(IString<'_>, IString<'_>)]) -> Vec<(CIString<'static>, CIString<'static>)> {
        p.iter().map(|(k, v)| (istr(k), istr(v))).collect()
    }

    fn addresses(a: &[Address<'_>]) -> Vec<CAddress<'static>> {
        a.iter()
            .map(|a| CAddress {
                name: nstr(&a.name),
                adl: nstr(&a.adl),
                mailbox: nstr(&a.mailbox),
                host: nstr(&a.host),
            })
            .collect()
    }

    pub fn envelope(e: &Envelope<'_>) -> CEnvelope<'static> {
        CEnvelope {
            date: nstr(&e.date),
            subject: nstr(&e.subject),
            from: addresses(&e.from),
            sender: addresses(&e.sender),
            reply_to: addresses(&e.reply_to),
            to: addresses(&e.to),
            cc: addresses(&e.cc),
            bcc: addresses(&e.bcc),
            in_reply_to: nstr(&e.in_reply_to),
            message_id: nstr(&e.message_id),
        }
    }

    fn disposition(x: &BodyExtension<'_>) -> Option<CDisposition<'static>> {
        Some(CDisposition {
            disposition: x
                .disposition
                .as_ref()
                .map(|d| (istr(&d.kind), params(&d.params))),
            tail: Some(Language {
                language: x.language.iter().map(istr).collect(),
                tail: Some(Location {
                    location: nstr(&x.location),
                    extensions: vec![],
                }),
            }),
        })
    }

    pub fn body(b: &BodyStructure<'_>) -> CBody<'static> {
        match b {
            BodyStructure::Single { kind, fields, ext } => {
                let basic = BasicFields {
                    parameter_list: params(&fields.params),
                    id: nstr(&fields.id),
                    description: nstr(&fields.description),
                    content_transfer_encoding: istr(&fields.encoding),
                    size: fields.size,
                };
                let specific = match kind {
                    SingleKind::Basic {
                        media_type,
                        subtype,
                    } => SpecificFields::Basic {
                        r#type: istr(media_type),
                        subtype: istr(subtype),
                    },
                    SingleKind::Text { subtype, lines } => SpecificFields::Text {
                        subtype: istr(subtype),
                        number_of_lines: *lines,
                    },
                    SingleKind::Message { .. } => unreachable!(),
                };
                CBody::Single {
                    body: Body { basic, specific },
                    extension_data: Some(SinglePartExtensionData {
                        md5: nstr(&ext.md5),
                        tail: disposition(ext),
                    }),
                }
            }
            BodyStructure::Multipart {
                parts,
                subtype,
                params: p,
                ext,
            } => CBody::Multi {
                bodies: Vec1::try_from(parts.iter().map(body).collect::<Vec<_>>()).unwrap(),
                subtype: istr(subtype),
                extension_data: Some(MultiPartExtensionData {
                    parameter_list: params(p),
                    tail: disposition(ext),
                }),
            },
        }
    }

    pub fn fetch_envelope(
        seq: u32,
        uid: u32,
        e: &Envelope<'_>,
        b: &BodyStructure<'_>,
    ) -> Response<'static> {
        let items = vec![
            MessageDataItem::Uid(NonZeroU32::new(uid).unwrap()),
            MessageDataItem::Envelope(envelope(e)),
            MessageDataItem::BodyStructure(body(b)),
        ];
        Response::Data(Data::Fetch {
            seq: NonZeroU32::new(seq).unwrap(),
            items: Vec1::try_from(items).unwrap(),
        })
    }
}

/// imap-codec's encoder, the way a server sends its output: fragment by fragment into the
/// connection's buffer.
fn codec_encode(
    codec: &ResponseCodec,
    r: &imap_codec::imap_types::response::Response,
    out: &mut Vec<u8>,
) {
    for f in codec.encode(r) {
        match f {
            Fragment::Line { data } | Fragment::Literal { data, .. } => {
                out.extend_from_slice(&data)
            }
        }
    }
}

fn addr<'a>(name: Option<&'a str>, mailbox: &'a str, host: &'a str) -> Address<'a> {
    Address {
        name: name.map(IString::from),
        adl: None,
        mailbox: Some(mailbox.into()),
        host: Some(host.into()),
    }
}

/// A reply in a thread: From with a display name, To, two Cc, an encoded-word subject.
fn sample_envelope() -> Envelope<'static> {
    let from = vec![addr(Some("Bob Example"), "bob", "example.org")];
    Envelope {
        date: Some("Thu, 21 Nov 2024 10:15:30 +0100".into()),
        subject: Some("Re: =?UTF-8?Q?Q4_budget_=E2=80=93_draft?=".into()),
        sender: from.clone(),
        reply_to: from.clone(),
        from,
        to: vec![addr(Some("Alice"), "alice", "example.test")],
        cc: vec![
            addr(None, "carol", "example.net"),
            addr(Some("Dave \"the builder\""), "dave", "example.com"),
        ],
        bcc: vec![],
        in_reply_to: Some("<CAF3x+8q=PmT4sYz@mail.example.com>".into()),
        message_id: Some("<20241121091530.GA4242@example.org>".into()),
    }
}

/// multipart/mixed: multipart/alternative (text/plain, text/html) and a PDF attachment.
fn sample_body() -> BodyStructure<'static> {
    let text = |subtype: &'static str, size, lines| BodyStructure::Single {
        kind: SingleKind::Text {
            subtype: subtype.into(),
            lines,
        },
        fields: BodyFields {
            params: vec![("CHARSET".into(), "utf-8".into())],
            id: None,
            description: None,
            encoding: "QUOTED-PRINTABLE".into(),
            size,
        },
        ext: BodyExtension::default(),
    };
    let alternative = BodyStructure::Multipart {
        parts: vec![text("PLAIN", 1843, 41), text("HTML", 6120, 120)],
        subtype: "ALTERNATIVE".into(),
        params: vec![("BOUNDARY".into(), "000000000000a1b2c3d4e5f6".into())],
        ext: BodyExtension::default(),
    };
    let pdf = BodyStructure::Single {
        kind: SingleKind::Basic {
            media_type: "APPLICATION".into(),
            subtype: "PDF".into(),
        },
        fields: BodyFields {
            params: vec![("NAME".into(), "Q4 budget.pdf".into())],
            id: Some("<f_m3q1x2y0>".into()),
            description: None,
            encoding: "BASE64".into(),
            size: 84_310,
        },
        ext: BodyExtension {
            md5: None,
            disposition: Some(Disposition {
                kind: "ATTACHMENT".into(),
                params: vec![("FILENAME".into(), "Q4 budget.pdf".into())],
            }),
            language: vec![],
            location: None,
        },
    };
    BodyStructure::Multipart {
        parts: vec![alternative, pdf],
        subtype: "MIXED".into(),
        params: vec![("BOUNDARY".into(), "000000000000f6e5d4c3b2a1".into())],
        ext: BodyExtension::default(),
    }
}

fn fetch_encoding<M: Measurement>(c: &mut Criterion<M>) {
    let rcodec = ResponseCodec::default();

    // `* n FETCH (UID u FLAGS (...) RFC822.SIZE s)` for a 10,000-message mailbox.
    let msgs = mailbox(10_000);
    let responses: Vec<_> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| codec::fetch_flags(i as u32 + 1, m))
        .collect();
    let ironpost_flags = |out: &mut Vec<u8>| {
        for (i, m) in msgs.iter().enumerate() {
            let mut f = FetchWriter::begin(out, i as u32 + 1);
            f.uid(out, m.uid);
            f.flags(out, &m.flags);
            f.rfc822_size(out, u64::from(m.size));
            f.finish(out);
        }
    };
    let codec_flags = |out: &mut Vec<u8>| {
        for r in &responses {
            codec_encode(&rcodec, r, out);
        }
    };
    // Both write the same octets.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    ironpost_flags(&mut a);
    codec_flags(&mut b);
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    let wire = a.len();

    let mut g = c.benchmark_group("imap_fetch_flags_10k");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    let mut out = Vec::with_capacity(wire);
    g.bench_function("ironpost", |bch| {
        bch.iter(|| {
            out.clear();
            ironpost_flags(&mut out);
            assert_eq!(black_box(&out).len(), wire);
        })
    });
    g.bench_function("imap-codec", |bch| {
        bch.iter(|| {
            out.clear();
            codec_flags(&mut out);
            assert_eq!(black_box(&out).len(), wire);
        })
    });
    g.finish();

    // `* n FETCH (UID u ENVELOPE (...) BODYSTRUCTURE (...))` for 1,000 messages.
    let n = 1_000u32;
    let env = sample_envelope();
    let body = sample_body();
    let responses: Vec<_> = (1..=n)
        .map(|seq| codec::fetch_envelope(seq, seq + 1000, &env, &body))
        .collect();
    let ironpost_env = |out: &mut Vec<u8>| {
        for seq in 1..=n {
            let mut f = FetchWriter::begin(out, seq);
            f.uid(out, seq + 1000);
            f.envelope(out, &env);
            f.body_structure(out, &body);
            f.finish(out);
        }
    };
    let codec_env = |out: &mut Vec<u8>| {
        for r in &responses {
            codec_encode(&rcodec, r, out);
        }
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    ironpost_env(&mut a);
    codec_env(&mut b);
    // Both write the same octets.
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    let wire_a = a.len();
    let wire_b = b.len();

    let mut g = c.benchmark_group("imap_fetch_envelope_bodystructure_1k");
    g.throughput(Throughput::Elements(u64::from(n)));
    let mut out = Vec::with_capacity(wire_a.max(wire_b));
    g.bench_function("ironpost", |bch| {
        bch.iter(|| {
            out.clear();
            ironpost_env(&mut out);
            assert_eq!(black_box(&out).len(), wire_a);
        })
    });
    g.bench_function("imap-codec", |bch| {
        bch.iter(|| {
            out.clear();
            codec_env(&mut out);
            assert_eq!(black_box(&out).len(), wire_b);
        })
    });
    g.finish();
}

fn run<M: Measurement>(mut c: Criterion<M>) {
    command_parsing(&mut c);
    fetch_encoding(&mut c);
    c.final_summary();
}

fn main() {
    match common::criterion() {
        common::Clock::Thread(c) => run(c),
        common::Clock::Wall(c) => run(c),
    }
}
