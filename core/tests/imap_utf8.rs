//! IMAP UTF8=ACCEPT (RFC 6855, RFC 9755) in the grammar and the encoder: APPEND's UTF8 data
//! extension with its literal8, the `)` that ends it, and mailbox names written in UTF-8.

use ironpost_core::imap::encode::{self, Data, ListItem, MailboxAttr, NamespaceDesc, StatusValue};
use ironpost_core::imap::{
    parse_append_end, parse_append_utf8_end, parse_command, CommandBody, DateTime, Flag, IString,
    Limits, LiteralHeader, Mailbox, Needed, ParseError, Reason,
};

const L: Limits = Limits::DEFAULT;

/// Parses an APPEND announcement that must be complete exactly at its end, and incomplete
/// (waiting for the line) at every earlier cut.
fn append(line: &str) -> CommandBody<'_> {
    let b = line.as_bytes();
    for cut in 0..b.len() {
        assert_eq!(
            parse_command(&b[..cut], &L),
            Err(ParseError::Incomplete(Needed::Line)),
            "{line:?} cut at {cut}"
        );
    }
    // The message (and whatever follows it) does not change where the command ends.
    let mut more = b.to_vec();
    more.extend_from_slice(b"Hello)\r\nb NOOP\r\n");
    let (n, cmd) = parse_command(&more, &L).unwrap_or_else(|e| panic!("{line:?}: {e:?}"));
    assert_eq!(n, b.len(), "{line:?}");
    assert_eq!(cmd.tag, "a");
    let (n2, cmd2) = parse_command(b, &L).unwrap();
    assert_eq!((n2, &cmd2), (n, &cmd));
    cmd.into_owned().body
}

fn bad(input: &str) -> (Option<&str>, Reason) {
    match parse_command(input.as_bytes(), &L) {
        Err(ParseError::Bad {
            tag,
            consumed,
            reason,
        }) => {
            assert_eq!(consumed, input.len(), "{input:?}");
            (tag, reason)
        }
        other => panic!("{input:?} gave {other:?}"),
    }
}

#[test]
fn append_utf8_with_a_synchronising_literal8() {
    assert_eq!(
        append("a APPEND INBOX UTF8 (~{5}\r\n"),
        CommandBody::Append {
            mailbox: Mailbox::Inbox,
            flags: vec![],
            date: None,
            message: LiteralHeader {
                size: 5,
                sync: true
            },
            utf8: true,
        }
    );
}

#[test]
fn append_utf8_with_a_non_synchronising_literal8() {
    assert_eq!(
        append("a APPEND INBOX UTF8 (~{5+}\r\n"),
        CommandBody::Append {
            mailbox: Mailbox::Inbox,
            flags: vec![],
            date: None,
            message: LiteralHeader {
                size: 5,
                sync: false
            },
            utf8: true,
        }
    );
}

#[test]
fn append_utf8_with_flags_date_a_utf8_name_and_any_case() {
    let line = "a append \"Entw\u{fc}rfe\" (\\Seen $Todo) \"01-Feb-1994 08:00:00 +0100\" utf8 (~{52428800+}\r\n";
    let CommandBody::Append {
        mailbox,
        flags,
        date,
        message,
        utf8,
    } = append(line)
    else {
        panic!("not an APPEND")
    };
    assert_eq!(mailbox.as_utf8(), Some("Entw\u{fc}rfe"));
    assert_eq!(flags, vec![Flag::Seen, Flag::Keyword("$Todo".into())]);
    let d: DateTime = date.unwrap();
    assert_eq!((d.hour, d.offset_minutes), (8, 60));
    // 50 MB: no literal limit applies to the message, UTF8 or not.
    assert_eq!(
        message,
        LiteralHeader {
            size: 52_428_800,
            sync: false
        }
    );
    assert!(utf8);
}

#[test]
fn plain_append_is_not_utf8() {
    let CommandBody::Append { utf8, .. } = append("a APPEND INBOX {5}\r\n") else {
        panic!()
    };
    assert!(!utf8);
}

#[test]
fn the_utf8_append_ends_with_a_parenthesis_then_crlf() {
    assert_eq!(parse_append_utf8_end(b")\r\nb NOOP\r\n", &L), Ok(3));
    assert_eq!(parse_append_utf8_end(b")\n", &L), Ok(2));
    for partial in [&b""[..], b")", b")\r"] {
        assert_eq!(
            parse_append_utf8_end(partial, &L),
            Err(ParseError::Incomplete(Needed::Line)),
            "{partial:?}"
        );
    }
    for (input, consumed) in [
        (&b"\r\n"[..], 2),
        (b") \r\n", 4),
        (b"))\r\n", 4),
        (b" )\r\n", 4),
        (b") UTF8 (~{3}\r\n", 14),
    ] {
        assert_eq!(
            parse_append_utf8_end(input, &L),
            Err(ParseError::Bad {
                tag: None,
                consumed,
                reason: Reason::Syntax
            }),
            "{input:?}"
        );
    }
    // The plain form's end does not take the parenthesis.
    assert!(matches!(
        parse_append_end(b")\r\n", &L),
        Err(ParseError::Bad { consumed: 3, .. })
    ));
}

#[test]
fn malformed_utf8_appends_are_bad() {
    // A plain literal where RFC 6855 wants literal8: read as an ordinary literal, then BAD.
    assert_eq!(
        bad("a APPEND INBOX UTF8 ({5}\r\nHello)\r\n"),
        (Some("a"), Reason::BadLiteral)
    );
    assert_eq!(
        bad("a APPEND INBOX UTF8 ({5+}\r\nHello)\r\n"),
        (Some("a"), Reason::BadLiteral)
    );
    // No parenthesis, or no space before it.
    assert_eq!(
        bad("a APPEND INBOX UTF8 ~{5}\r\nHello\r\n"),
        (Some("a"), Reason::BadLiteral)
    );
    assert_eq!(
        bad("a APPEND INBOX UTF8(~{5}\r\nHello)\r\n"),
        (Some("a"), Reason::BadLiteral)
    );
    // Another data extension, or a literal8 without UTF8 (BINARY, not offered).
    assert_eq!(
        bad("a APPEND INBOX UTF9 (~{5}\r\nHello)\r\n"),
        (Some("a"), Reason::Syntax)
    );
    assert_eq!(
        bad("a APPEND INBOX ~{5}\r\nHello\r\n"),
        (Some("a"), Reason::Syntax)
    );
    // UTF8 and nothing after it, a broken literal8, a size that overflows.
    assert_eq!(
        bad("a APPEND INBOX UTF8\r\n"),
        (Some("a"), Reason::BadLiteral)
    );
    assert_eq!(
        bad("a APPEND INBOX UTF8 (~{5)\r\n"),
        (Some("a"), Reason::BadLiteral)
    );
    assert_eq!(
        bad("a APPEND INBOX UTF8 (~{x}\r\n"),
        (Some("a"), Reason::BadLiteral)
    );
    assert_eq!(
        bad("a APPEND INBOX UTF8 (~{99999999999}\r\n"),
        (Some("a"), Reason::BadLiteral)
    );
    // The flags go before UTF8, not after.
    assert_eq!(
        bad("a APPEND INBOX UTF8 (\\Seen) (~{5}\r\nHello)\r\n"),
        (Some("a"), Reason::BadLiteral)
    );
    // A malformed prefix: the huge literal is then just too large, and never streamed.
    assert!(matches!(
        parse_command(b"a APPEND INBOX UTF9 (~{52428800}\r\n", &L),
        Err(ParseError::LiteralTooLarge {
            tag: Some("a"),
            size: 52_428_800,
            sync: true,
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------
// Mailbox names in responses

fn wire(data: &Data<'_>, utf8: bool) -> String {
    let mut out = Vec::new();
    data.write_with(&mut out, utf8);
    String::from_utf8(out).unwrap()
}

fn list(name: &str) -> Data<'_> {
    Data::List(ListItem {
        attributes: &[MailboxAttr::HasNoChildren],
        delimiter: Some('.'),
        name,
    })
}

#[test]
fn list_names_in_utf8_mode_and_in_modified_utf7() {
    for (name, utf8, utf7) in [
        ("INBOX", "INBOX", "INBOX"),
        ("Entw\u{fc}rfe", "\"Entw\u{fc}rfe\"", "Entw&APw-rfe"),
        (
            "\u{65e5}\u{672c}\u{8a9e}",
            "\"\u{65e5}\u{672c}\u{8a9e}\"",
            "&ZeVnLIqe-",
        ),
        ("A&B", "A&B", "A&-B"),
        ("a b", "\"a b\"", "\"a b\""),
        ("NIL", "\"NIL\"", "\"NIL\""),
        ("\"\u{fc}\"", "\"\\\"\u{fc}\\\"\"", "\"\\\"&APw-\\\"\""),
        (
            "Gr\u{fc}\u{df}e.\u{1f600}",
            "\"Gr\u{fc}\u{df}e.\u{1f600}\"",
            "Gr&APwA3w-e.&2D3eAA-",
        ),
    ] {
        let want = format!("* LIST (\\HasNoChildren) \".\" {utf8}\r\n");
        assert_eq!(wire(&list(name), true), want, "{name}");
        let want = format!("* LIST (\\HasNoChildren) \".\" {utf7}\r\n");
        assert_eq!(wire(&list(name), false), want, "{name}");
        let mut out = Vec::new();
        list(name).write_to(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), want, "{name}");
    }
}

#[test]
fn a_long_utf8_name_is_a_literal() {
    let name = "\u{fc}".repeat(600);
    let got = wire(&list(&name), true);
    assert_eq!(
        got,
        format!("* LIST (\\HasNoChildren) \".\" {{1200}}\r\n{name}\r\n")
    );
}

#[test]
fn lsub_status_and_namespace_in_utf8_mode() {
    let lsub = Data::Lsub(ListItem {
        attributes: &[],
        delimiter: Some('.'),
        name: "Entw\u{fc}rfe",
    });
    assert_eq!(wire(&lsub, true), "* LSUB () \".\" \"Entw\u{fc}rfe\"\r\n");
    assert_eq!(wire(&lsub, false), "* LSUB () \".\" Entw&APw-rfe\r\n");
    let status = Data::Status {
        mailbox: "\u{65e5}\u{672c}\u{8a9e}",
        items: &[StatusValue::Messages(1)],
    };
    assert_eq!(
        wire(&status, true),
        "* STATUS \"\u{65e5}\u{672c}\u{8a9e}\" (MESSAGES 1)\r\n"
    );
    assert_eq!(wire(&status, false), "* STATUS &ZeVnLIqe- (MESSAGES 1)\r\n");
    let ns = [NamespaceDesc {
        prefix: "\u{fc}.",
        delimiter: Some('.'),
    }];
    let namespace = Data::Namespace {
        personal: &ns,
        other: &[],
        shared: &[],
    };
    assert_eq!(
        wire(&namespace, true),
        "* NAMESPACE ((\"\u{fc}.\" \".\")) NIL NIL\r\n"
    );
    assert_eq!(
        wire(&namespace, false),
        "* NAMESPACE ((\"&APw-.\" \".\")) NIL NIL\r\n"
    );
    // Data without a mailbox name is the same in both modes.
    assert_eq!(wire(&Data::Exists(3), true), wire(&Data::Exists(3), false));
}

#[test]
fn utf8_names_written_parse_back_as_sent() {
    for name in [
        "Entw\u{fc}rfe",
        "\u{65e5}\u{672c}\u{8a9e}",
        "a\"b\\\u{fc}",
        "A&B",
    ] {
        let mut line = b"a SELECT ".to_vec();
        encode::write_mailbox_utf8(&mut line, name);
        line.extend_from_slice(b"\r\n");
        let (_, cmd) = parse_command(&line, &L).unwrap();
        let CommandBody::Select { mailbox } = cmd.body else {
            panic!()
        };
        assert_eq!(mailbox, Mailbox::Other(IString::from(name)), "{name}");
        assert_eq!(mailbox.as_utf8(), Some(name));
    }
    let bad = Mailbox::Other(IString::from(&b"\xff\xfe"[..]));
    assert_eq!(bad.as_utf8(), None);
}
