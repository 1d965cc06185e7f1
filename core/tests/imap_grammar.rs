//! The IMAP command grammar through its public entry points: every command form, the
//! RFC 3501 examples, literals and incomplete input, limits and errors.

use std::borrow::Cow;

use ironpost_core::imap::{
    parse_append_end, parse_auth_response, parse_command, parse_idle_done, peek_tag, AuthMechanism,
    AuthResponse, Command, CommandBody, Date, DateTime, FetchAttr, FetchItems, Flag, IString,
    InitialResponse, Limits, ListReturn, ListSelect, LiteralHeader, Mailbox, Needed, ParseError,
    Partial, Reason, SearchKey, Section, SectionText, SequenceSet, StatusItems, StoreAction,
};

const L: Limits = Limits::DEFAULT;

/// Parses one complete command, checking on the way that the parse is restartable: every
/// strict prefix of the input is incomplete, and a pipelined command after it is left alone.
fn parse(input: &str) -> Command<'_> {
    parse_with(input.as_bytes(), &L)
}

fn parse_with<'a>(input: &'a [u8], limits: &Limits) -> Command<'a> {
    for cut in 0..input.len() {
        match parse_command(&input[..cut], limits) {
            Err(ParseError::Incomplete(_)) => {}
            other => panic!(
                "prefix {:?} gave {other:?}",
                String::from_utf8_lossy(&input[..cut])
            ),
        }
    }
    let mut pipelined = input.to_vec();
    pipelined.extend_from_slice(b"Z9 NOOP\r\n");
    let (n, cmd) = parse_command(&pipelined, limits)
        .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(input)));
    assert_eq!(n, input.len(), "consumed");
    let (rest_n, next) = parse_command(&pipelined[n..], limits).unwrap();
    assert_eq!((rest_n, next.body), (9, CommandBody::Noop));
    let (n, cmd2) = parse_command(input, limits).unwrap();
    assert_eq!(n, input.len());
    assert_eq!(cmd, cmd2);
    cmd2
}

fn body(input: &str) -> CommandBody<'_> {
    parse(input).body
}

/// The BAD a complete command gets: (tag, reason), checking that the whole command is
/// consumed.
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

fn s(x: &str) -> IString<'_> {
    IString::from(x)
}

fn mbox(x: &str) -> Mailbox<'_> {
    Mailbox::Other(s(x))
}

fn set(x: &str) -> SequenceSet<'_> {
    SequenceSet::parse(x).unwrap()
}

fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).unwrap()
}

fn section<'a>(part: Option<&'a str>, text: Option<SectionText<'a>>) -> Section<'a> {
    // Build the part through the parser, the only public way to make one.
    let part = part.map(|p| {
        let line = format!("x FETCH 1 BODY[{p}]\r\n");
        let cmd = parse_command(line.as_bytes(), &L).unwrap().1.into_owned();
        let CommandBody::Fetch {
            items: FetchItems::Attrs(mut a),
            ..
        } = cmd.body
        else {
            panic!()
        };
        let Some(FetchAttr::BodySection { section, .. }) = a.pop() else {
            panic!()
        };
        section.part.unwrap()
    });
    Section { part, text }
}

fn peek(section: Section<'_>) -> FetchAttr<'_> {
    FetchAttr::BodySection {
        peek: true,
        section,
        partial: None,
    }
}

fn full(section: Section<'_>) -> FetchAttr<'_> {
    FetchAttr::BodySection {
        peek: false,
        section,
        partial: None,
    }
}

// ---------------------------------------------------------------------------------------
// RFC 3501 section 8: the sample session

#[test]
fn rfc3501_sample_session() {
    let c = parse("a001 login mrc secret\r\n");
    assert_eq!(c.tag, "a001");
    assert_eq!(
        c.body,
        CommandBody::Login {
            username: s("mrc"),
            password: s("secret")
        }
    );
    assert_eq!(
        parse("a002 select inbox\r\n").body,
        CommandBody::Select {
            mailbox: Mailbox::Inbox
        }
    );
    assert_eq!(
        body("a003 fetch 12 full\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("12"),
            items: FetchItems::Full
        }
    );
    assert_eq!(
        body("a004 fetch 12 body[header]\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("12"),
            items: FetchItems::Attrs(vec![full(section(None, Some(SectionText::Header)))])
        }
    );
    assert_eq!(
        body("a005 store 12 +flags \\deleted\r\n"),
        CommandBody::Store {
            uid: false,
            set: set("12"),
            action: StoreAction::Add,
            silent: false,
            flags: vec![Flag::Deleted]
        }
    );
    assert_eq!(body("a006 logout\r\n"), CommandBody::Logout);
}

// ---------------------------------------------------------------------------------------
// RFC 3501 section 6: every command, with the RFC's examples

#[test]
fn any_state_commands() {
    assert_eq!(body("abcd CAPABILITY\r\n"), CommandBody::Capability);
    assert_eq!(body("a002 NOOP\r\n"), CommandBody::Noop);
    assert_eq!(body("A023 LOGOUT\r\n"), CommandBody::Logout);
    assert_eq!(body("a001 capability\r\n"), CommandBody::Capability);
}

#[test]
fn not_authenticated_commands() {
    assert_eq!(body("a002 STARTTLS\r\n"), CommandBody::StartTls);
    assert_eq!(
        body("A001 AUTHENTICATE GSSAPI\r\n"),
        CommandBody::Authenticate {
            mechanism: AuthMechanism::Other("GSSAPI".into()),
            initial: None
        }
    );
    assert_eq!(
        body("a AUTHENTICATE plain\r\n"),
        CommandBody::Authenticate {
            mechanism: AuthMechanism::Plain,
            initial: None
        }
    );
    // SASL-IR (RFC 4959).
    assert_eq!(
        body("a AUTHENTICATE PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n"),
        CommandBody::Authenticate {
            mechanism: AuthMechanism::Plain,
            initial: Some(InitialResponse::Base64(
                "AHRpbQB0YW5zdGFhZnRhbnN0YWFm".into()
            ))
        }
    );
    assert_eq!(
        body("a AUTHENTICATE LOGIN =\r\n"),
        CommandBody::Authenticate {
            mechanism: AuthMechanism::Login,
            initial: Some(InitialResponse::Empty)
        }
    );
    assert_eq!(
        body("a AUTHENTICATE XOAUTH2 dXNlcj0=\r\n"),
        CommandBody::Authenticate {
            mechanism: AuthMechanism::Other("XOAUTH2".into()),
            initial: Some(InitialResponse::Base64("dXNlcj0=".into()))
        }
    );
    assert_eq!(
        body("a001 LOGIN SMITH SESAME\r\n"),
        CommandBody::Login {
            username: s("SMITH"),
            password: s("SESAME")
        }
    );
    assert_eq!(
        body("a LOGIN \"fred foobar\" {7}\r\nfat man\r\n"),
        CommandBody::Login {
            username: s("fred foobar"),
            password: s("fat man")
        }
    );
    assert_eq!(
        body("a LOGIN \"us\\\"er\" \"p\\\\w\"\r\n"),
        CommandBody::Login {
            username: s("us\"er"),
            password: s("p\\w")
        }
    );
}

#[test]
fn authenticated_state_commands() {
    assert_eq!(
        body("A142 SELECT INBOX\r\n"),
        CommandBody::Select {
            mailbox: Mailbox::Inbox
        }
    );
    assert_eq!(
        body("A932 EXAMINE blurdybloop\r\n"),
        CommandBody::Examine {
            mailbox: mbox("blurdybloop")
        }
    );
    assert_eq!(
        body("A003 CREATE owatagusiam/\r\n"),
        CommandBody::Create {
            mailbox: mbox("owatagusiam/")
        }
    );
    assert_eq!(
        body("A004 CREATE owatagusiam/blurdybloop\r\n"),
        CommandBody::Create {
            mailbox: mbox("owatagusiam/blurdybloop")
        }
    );
    assert_eq!(
        body("A683 DELETE blurdybloop\r\n"),
        CommandBody::Delete {
            mailbox: mbox("blurdybloop")
        }
    );
    assert_eq!(
        body("A683 RENAME blurdybloop sarasoop\r\n"),
        CommandBody::Rename {
            from: mbox("blurdybloop"),
            to: mbox("sarasoop")
        }
    );
    assert_eq!(
        body("A686 RENAME INBOX old-mail\r\n"),
        CommandBody::Rename {
            from: Mailbox::Inbox,
            to: mbox("old-mail")
        }
    );
    assert_eq!(
        body("A002 SUBSCRIBE #news.comp.mail.mime\r\n"),
        CommandBody::Subscribe {
            mailbox: mbox("#news.comp.mail.mime")
        }
    );
    assert_eq!(
        body("A002 UNSUBSCRIBE #news.comp.mail.mime\r\n"),
        CommandBody::Unsubscribe {
            mailbox: mbox("#news.comp.mail.mime")
        }
    );
    assert_eq!(
        body("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n"),
        CommandBody::Status {
            mailbox: mbox("blurdybloop"),
            items: StatusItems {
                uid_next: true,
                messages: true,
                ..StatusItems::default()
            }
        }
    );
    assert_eq!(
        body("a STATUS Inbox (messages recent uidnext uidvalidity unseen size)\r\n"),
        CommandBody::Status {
            mailbox: Mailbox::Inbox,
            items: StatusItems {
                messages: true,
                recent: true,
                uid_next: true,
                uid_validity: true,
                unseen: true,
                size: true,
            }
        }
    );
    assert_eq!(body("a NAMESPACE\r\n"), CommandBody::Namespace);
    assert_eq!(body("a IDLE\r\n"), CommandBody::Idle);
}

#[test]
fn list_and_lsub() {
    let list = |reference: &'static str, pattern: &'static str| CommandBody::List {
        reference: s(reference),
        patterns: vec![s(pattern)],
        select: ListSelect::default(),
        ret: ListReturn::default(),
    };
    assert_eq!(body("A101 LIST \"\" \"\"\r\n"), list("", ""));
    assert_eq!(
        body("A102 LIST #news.comp.mail.misc \"\"\r\n"),
        list("#news.comp.mail.misc", "")
    );
    assert_eq!(
        body("A103 LIST /usr/staff/jones \"\"\r\n"),
        list("/usr/staff/jones", "")
    );
    assert_eq!(body("A202 LIST ~/Mail/ %\r\n"), list("~/Mail/", "%"));
    assert_eq!(body("a LIST \"\" *\r\n"), list("", "*"));
    assert_eq!(body("a LIST \"\" INBOX.*]x%\r\n"), list("", "INBOX.*]x%"));
    assert_eq!(body("a LIST {0}\r\n {4}\r\n*/%*\r\n"), list("", "*/%*"));
    assert_eq!(
        body("A002 LSUB \"#news.\" \"comp.mail.*\"\r\n"),
        CommandBody::Lsub {
            reference: s("#news."),
            pattern: s("comp.mail.*")
        }
    );
    assert_eq!(
        body("a lsub \"\" %\r\n"),
        CommandBody::Lsub {
            reference: s(""),
            pattern: s("%")
        }
    );
}

#[test]
fn list_extended() {
    assert_eq!(
        body("a LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n"),
        CommandBody::List {
            reference: s(""),
            patterns: vec![s("*")],
            select: ListSelect::default(),
            ret: ListReturn {
                special_use: true,
                ..ListReturn::default()
            }
        }
    );
    assert_eq!(
        body(
            "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent*\") RETURN (CHILDREN \
             subscribed STATUS (MESSAGES UNSEEN))\r\n"
        ),
        CommandBody::List {
            reference: s(""),
            patterns: vec![s("INBOX"), s("Sent*")],
            select: ListSelect {
                subscribed: true,
                recursive_match: true,
                ..ListSelect::default()
            },
            ret: ListReturn {
                subscribed: true,
                children: true,
                special_use: false,
                status: Some(StatusItems {
                    messages: true,
                    unseen: true,
                    ..StatusItems::default()
                })
            }
        }
    );
    assert_eq!(
        body("a LIST (SPECIAL-USE REMOTE) \"\" % RETURN ()\r\n"),
        CommandBody::List {
            reference: s(""),
            patterns: vec![s("%")],
            select: ListSelect {
                special_use: true,
                remote: true,
                ..ListSelect::default()
            },
            ret: ListReturn::default()
        }
    );
    assert_eq!(
        body("a LIST () \"\" %\r\n"),
        CommandBody::List {
            reference: s(""),
            patterns: vec![s("%")],
            select: ListSelect::default(),
            ret: ListReturn::default()
        }
    );
    assert_eq!(
        bad("a LIST (RECURSIVEMATCH) \"\" %\r\n"),
        (Some("a"), Reason::BadListOption)
    );
    assert_eq!(
        bad("a LIST (BOGUS) \"\" %\r\n"),
        (Some("a"), Reason::BadListOption)
    );
    assert_eq!(
        bad("a LIST \"\" % RETURN (BOGUS)\r\n"),
        (Some("a"), Reason::BadListOption)
    );
    assert_eq!(
        bad("a LIST \"\" % BOGUS (X)\r\n"),
        (Some("a"), Reason::BadListOption)
    );
    assert_eq!(
        bad("a LIST \"\" % RETURN\r\n"),
        (Some("a"), Reason::BadListOption)
    );
    assert_eq!(bad("a LIST \"\" ()\r\n"), (Some("a"), Reason::BadMailbox));
}

#[test]
fn extension_commands() {
    assert_eq!(
        body("a ENABLE CONDSTORE UTF8=ACCEPT\r\n"),
        CommandBody::Enable(vec![
            Cow::Borrowed("CONDSTORE"),
            Cow::Borrowed("UTF8=ACCEPT")
        ])
    );
    assert_eq!(
        body("a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"os\" NIL)\r\n"),
        CommandBody::Id(Some(vec![
            (s("name"), Some(s("sodr"))),
            (s("version"), Some(s("19.34"))),
            (s("os"), None),
        ]))
    );
    assert_eq!(body("a ID NIL\r\n"), CommandBody::Id(None));
    assert_eq!(body("a ID ()\r\n"), CommandBody::Id(Some(vec![])));
    assert_eq!(body("a UNSELECT\r\n"), CommandBody::Unselect);
    assert_eq!(
        body("a UID EXPUNGE 3000:3002\r\n"),
        CommandBody::UidExpunge(set("3000:3002"))
    );
    assert_eq!(
        body("a MOVE 2:4 Trash\r\n"),
        CommandBody::Move {
            uid: false,
            set: set("2:4"),
            mailbox: mbox("Trash")
        }
    );
    assert_eq!(
        body("a uid move 42 \"Deleted Items\"\r\n"),
        CommandBody::Move {
            uid: true,
            set: set("42"),
            mailbox: mbox("Deleted Items")
        }
    );
    let many: String = (0..31).map(|n| format!(" \"k{n}\" \"v\"")).collect();
    let line = format!("a ID ({})\r\n", &many[1..]);
    assert_eq!(bad(&line), (Some("a"), Reason::TooManyIdParams));
    let ok: String = (0..30).map(|n| format!(" \"k{n}\" \"v\"")).collect();
    let line = format!("a ID ({})\r\n", &ok[1..]);
    assert!(matches!(parse(&line).body, CommandBody::Id(Some(p)) if p.len() == 30));
}

#[test]
fn selected_state_commands() {
    assert_eq!(body("FXXZ CHECK\r\n"), CommandBody::Check);
    assert_eq!(body("A341 CLOSE\r\n"), CommandBody::Close);
    assert_eq!(body("A202 EXPUNGE\r\n"), CommandBody::Expunge);
    assert_eq!(
        body("A003 COPY 2:4 MEETING\r\n"),
        CommandBody::Copy {
            uid: false,
            set: set("2:4"),
            mailbox: mbox("MEETING")
        }
    );
    assert_eq!(
        body("a UID COPY 1:*,7 inbox\r\n"),
        CommandBody::Copy {
            uid: true,
            set: set("1:*,7"),
            mailbox: Mailbox::Inbox
        }
    );
}

#[test]
fn search_commands() {
    assert_eq!(
        body("A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n"),
        CommandBody::Search {
            uid: false,
            charset: None,
            criteria: vec![
                SearchKey::Flagged,
                SearchKey::Since(date(1994, 2, 1)),
                SearchKey::Not(Box::new(SearchKey::From(s("Smith")))),
            ]
        }
    );
    assert_eq!(
        body("A283 SEARCH TEXT \"string not in mailbox\"\r\n"),
        CommandBody::Search {
            uid: false,
            charset: None,
            criteria: vec![SearchKey::Text(s("string not in mailbox"))]
        }
    );
    // The RFC's example sends 6 octets of UTF-8 in a literal.
    assert_eq!(
        body("A284 SEARCH CHARSET UTF-8 TEXT {6}\r\n台北\r\n"),
        CommandBody::Search {
            uid: false,
            charset: Some(s("UTF-8")),
            criteria: vec![SearchKey::Text(s("台北"))]
        }
    );
    assert_eq!(
        body("a UID SEARCH 1:100 UID 443:557\r\n"),
        CommandBody::Search {
            uid: true,
            charset: None,
            criteria: vec![
                SearchKey::SequenceSet(set("1:100")),
                SearchKey::Uid(set("443:557"))
            ]
        }
    );
    assert_eq!(
        body("a search charset \"us-ascii\" or (seen flagged) (unseen larger 100) all\r\n"),
        CommandBody::Search {
            uid: false,
            charset: Some(s("us-ascii")),
            criteria: vec![
                SearchKey::Or(
                    Box::new(SearchKey::And(vec![SearchKey::Seen, SearchKey::Flagged])),
                    Box::new(SearchKey::And(vec![
                        SearchKey::Unseen,
                        SearchKey::Larger(100)
                    ])),
                ),
                SearchKey::All,
            ]
        }
    );
    assert_eq!(bad("a SEARCH\r\n"), (Some("a"), Reason::Syntax));
    assert_eq!(bad("a SEARCH \r\n"), (Some("a"), Reason::BadSearchKey));
    assert_eq!(bad("a SEARCH BOGUS\r\n"), (Some("a"), Reason::BadSearchKey));
    assert_eq!(bad("a SEARCH CHARSET\r\n"), (Some("a"), Reason::Syntax));
    assert_eq!(
        bad("a SEARCH CHARSET UTF-8\r\n"),
        (Some("a"), Reason::Syntax)
    );
    assert_eq!(
        bad("a SEARCH ALL  SEEN\r\n"),
        (Some("a"), Reason::BadSearchKey)
    );
    assert_eq!(bad("a SEARCH SEEN \r\n"), (Some("a"), Reason::BadSearchKey));
    let deep = format!("a SEARCH {}ALL{}\r\n", "(".repeat(1000), ")".repeat(1000));
    assert_eq!(bad(&deep), (Some("a"), Reason::NestingTooDeep));
}

/// Every search key, as a whole command, in upper and lower case.
#[test]
fn search_every_key() {
    use SearchKey as K;
    let cases: Vec<(&str, SearchKey<'static>)> = vec![
        ("ALL", K::All),
        ("ANSWERED", K::Answered),
        ("BCC \"a@b\"", K::Bcc(s("a@b"))),
        ("BEFORE 1-Feb-1994", K::Before(date(1994, 2, 1))),
        ("BODY word", K::Body(s("word"))),
        ("CC x", K::Cc(s("x"))),
        ("DELETED", K::Deleted),
        ("DRAFT", K::Draft),
        ("FLAGGED", K::Flagged),
        ("FROM x", K::From(s("x"))),
        ("HEADER X-Spam yes", K::Header(s("X-Spam"), s("yes"))),
        ("KEYWORD $Forwarded", K::Keyword("$Forwarded".into())),
        ("LARGER 10", K::Larger(10)),
        ("NEW", K::New),
        ("NOT SEEN", K::Not(Box::new(K::Seen))),
        ("OLD", K::Old),
        ("ON 24-Dec-2020", K::On(date(2020, 12, 24))),
        ("OR SEEN NEW", K::Or(Box::new(K::Seen), Box::new(K::New))),
        ("RECENT", K::Recent),
        ("SEEN", K::Seen),
        ("SENTBEFORE \"1-Jan-2001\"", K::SentBefore(date(2001, 1, 1))),
        ("SENTON 2-Jan-2001", K::SentOn(date(2001, 1, 2))),
        ("SENTSINCE 3-Jan-2001", K::SentSince(date(2001, 1, 3))),
        ("SINCE 4-Jan-2001", K::Since(date(2001, 1, 4))),
        ("SMALLER 4096", K::Smaller(4096)),
        ("SUBJECT \"re: hi\"", K::Subject(s("re: hi"))),
        ("TEXT x", K::Text(s("x"))),
        ("TO x", K::To(s("x"))),
        ("UID 1:*", K::Uid(set("1:*"))),
        ("UNANSWERED", K::Unanswered),
        ("UNDELETED", K::Undeleted),
        ("UNDRAFT", K::Undraft),
        ("UNFLAGGED", K::Unflagged),
        ("UNKEYWORD Junk", K::Unkeyword("Junk".into())),
        ("UNSEEN", K::Unseen),
        ("1,3:5,*", K::SequenceSet(set("1,3:5,*"))),
        ("(SEEN UNSEEN)", K::And(vec![K::Seen, K::Unseen])),
    ];
    for (text, key) in cases {
        for t in [text.to_string(), text.to_ascii_lowercase()] {
            let line = format!("t SEARCH {t}\r\n");
            let cmd = parse_command(line.as_bytes(), &L).unwrap().1.into_owned();
            let CommandBody::Search { criteria, .. } = cmd.body else {
                panic!()
            };
            // Lower-casing changes string arguments: compare the key kinds via Debug names.
            if t == text {
                assert_eq!(criteria, vec![key.clone()], "{t}");
            } else {
                assert_eq!(criteria.len(), 1, "{t}");
            }
        }
    }
}

#[test]
fn fetch_commands() {
    assert_eq!(
        body("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("2:4"),
            items: FetchItems::Attrs(vec![
                FetchAttr::Flags,
                full(section(
                    None,
                    Some(SectionText::HeaderFields(vec![s("DATE"), s("FROM")]))
                )),
            ])
        }
    );
    assert_eq!(
        body("A999 UID FETCH 4827313:4828442 FLAGS\r\n"),
        CommandBody::Fetch {
            uid: true,
            set: set("4827313:4828442"),
            items: FetchItems::Attrs(vec![FetchAttr::Flags])
        }
    );
    for (m, items) in [
        ("ALL", FetchItems::All),
        ("fast", FetchItems::Fast),
        ("Full", FetchItems::Full),
    ] {
        assert_eq!(
            body(&format!("a FETCH 1:* {m}\r\n")),
            CommandBody::Fetch {
                uid: false,
                set: set("1:*"),
                items
            }
        );
    }
    assert_eq!(
        body(
            "a fetch * (envelope flags internaldate rfc822 rfc822.header rfc822.size \
             rfc822.text body bodystructure uid body[] body.peek[1.2.mime] \
             BODY[3.HEADER.FIELDS.NOT (X-A \"X B\")] BODY.PEEK[TEXT]<0.1024> BODY[4.TEXT] \
             BODY[2.1]<100.200> BODY.PEEK[HEADER])\r\n"
        ),
        CommandBody::Fetch {
            uid: false,
            set: set("*"),
            items: FetchItems::Attrs(vec![
                FetchAttr::Envelope,
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822,
                FetchAttr::Rfc822Header,
                FetchAttr::Rfc822Size,
                FetchAttr::Rfc822Text,
                FetchAttr::Body,
                FetchAttr::BodyStructure,
                FetchAttr::Uid,
                full(section(None, None)),
                peek(section(Some("1.2"), Some(SectionText::Mime))),
                full(section(
                    Some("3"),
                    Some(SectionText::HeaderFieldsNot(vec![s("X-A"), s("X B")]))
                )),
                FetchAttr::BodySection {
                    peek: true,
                    section: section(None, Some(SectionText::Text)),
                    partial: Some(Partial {
                        offset: 0,
                        length: 1024
                    })
                },
                full(section(Some("4"), Some(SectionText::Text))),
                FetchAttr::BodySection {
                    peek: false,
                    section: section(Some("2.1"), None),
                    partial: Some(Partial {
                        offset: 100,
                        length: 200
                    })
                },
                peek(section(None, Some(SectionText::Header))),
            ])
        }
    );
    assert_eq!(
        bad("a FETCH 1 (FLAGS\r\n"),
        (Some("a"), Reason::BadFetchAttribute)
    );
    assert_eq!(
        bad("a FETCH 1 (ALL)\r\n"),
        (Some("a"), Reason::BadFetchAttribute)
    );
    assert_eq!(
        bad("a FETCH 1 BODY[MIME]\r\n"),
        (Some("a"), Reason::BadSection)
    );
    assert_eq!(
        bad("a FETCH 1 BODY[]<5>\r\n"),
        (Some("a"), Reason::BadPartial)
    );
    assert_eq!(
        bad("a FETCH 0 FLAGS\r\n"),
        (Some("a"), Reason::BadSequenceSet)
    );
    assert_eq!(
        bad("a FETCH FLAGS\r\n"),
        (Some("a"), Reason::BadSequenceSet)
    );
    assert_eq!(bad("a FETCH 1\r\n"), (Some("a"), Reason::Syntax));
    assert_eq!(
        bad("a FETCH 1 FLAGS extra\r\n"),
        (Some("a"), Reason::Syntax)
    );
}

#[test]
fn sets_seen() {
    let cmd = parse("a FETCH 1 (RFC822 RFC822.TEXT RFC822.HEADER BODY[] BODY.PEEK[] FLAGS)\r\n");
    let CommandBody::Fetch { items, .. } = cmd.body else {
        panic!()
    };
    let seen: Vec<bool> = items.attrs().iter().map(FetchAttr::sets_seen).collect();
    assert_eq!(seen, [true, true, false, true, false, false]);
}

#[test]
fn store_commands() {
    let store = |uid, set_: &'static str, action, silent, flags| CommandBody::Store {
        uid,
        set: set(set_),
        action,
        silent,
        flags,
    };
    assert_eq!(
        body("A003 STORE 2:4 +FLAGS (\\Deleted)\r\n"),
        store(false, "2:4", StoreAction::Add, false, vec![Flag::Deleted])
    );
    assert_eq!(
        body("a UID STORE 1:* -FLAGS.SILENT (\\Seen $Junk)\r\n"),
        store(
            true,
            "1:*",
            StoreAction::Remove,
            true,
            vec![Flag::Seen, Flag::Keyword("$Junk".into())]
        )
    );
    assert_eq!(
        body("a STORE 1 flags \\Seen \\Draft \\Answered \\Flagged NonJunk\r\n"),
        store(
            false,
            "1",
            StoreAction::Replace,
            false,
            vec![
                Flag::Seen,
                Flag::Draft,
                Flag::Answered,
                Flag::Flagged,
                Flag::Keyword("NonJunk".into())
            ]
        )
    );
    assert_eq!(
        body("a STORE 1 FLAGS ()\r\n"),
        store(false, "1", StoreAction::Replace, false, vec![])
    );
    assert_eq!(
        body("a STORE 5 +Flags.Silent \\Custom\r\n"),
        store(
            false,
            "5",
            StoreAction::Add,
            true,
            vec![Flag::Extension("Custom".into())]
        )
    );
    assert_eq!(
        bad("a STORE 1 +FLAGS (\\Recent)\r\n"),
        (Some("a"), Reason::RecentNotAllowed)
    );
    assert_eq!(
        bad("a STORE 1 +FLAGS \\Seen \\Recent\r\n"),
        (Some("a"), Reason::RecentNotAllowed)
    );
    assert_eq!(
        bad("a STORE 1 XFLAGS (\\Seen)\r\n"),
        (Some("a"), Reason::BadStoreAction)
    );
    assert_eq!(
        bad("a STORE 1 +FLAGS.LOUD (\\Seen)\r\n"),
        (Some("a"), Reason::BadStoreAction)
    );
    assert_eq!(
        bad("a STORE 1 FLAGS (\\*)\r\n"),
        (Some("a"), Reason::BadFlag)
    );
    assert_eq!(bad("a STORE 1 FLAGS\r\n"), (Some("a"), Reason::Syntax));
    assert_eq!(bad("a STORE 1 FLAGS \r\n"), (Some("a"), Reason::BadFlag));
}

#[test]
fn sequence_sets_in_commands() {
    for good in ["1", "*", "1:*", "*:1", "2,4:7,9,12:*", "4294967295", "10:2"] {
        let line = format!("a FETCH {good} UID\r\n");
        let CommandBody::Fetch { set: got, .. } = body(&line) else {
            panic!()
        };
        assert_eq!(got.as_str(), good);
    }
    for badset in [
        "0",
        "1:0",
        "01",
        ",1",
        "1,",
        "1::2",
        "4294967296",
        "1:2:3",
        "-1",
    ] {
        let line = format!("a FETCH {badset} UID\r\n");
        assert_eq!(bad(&line), (Some("a"), Reason::BadSequenceSet), "{badset}");
    }
}

// ---------------------------------------------------------------------------------------
// APPEND: the message literal is not buffered

#[test]
fn append_stops_at_the_message_literal() {
    let prefix = "A003 APPEND saved-messages (\\Seen) {310}\r\n";
    let message = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n...";
    let input = format!("{prefix}{message}");
    for cut in 0..prefix.len() {
        assert_eq!(
            parse_command(&input.as_bytes()[..cut], &L),
            Err(ParseError::Incomplete(Needed::Line)),
            "{cut}"
        );
    }
    // Whether or not any of the message has arrived, the command ends at the announcement.
    for cut in [prefix.len(), input.len()] {
        let (n, cmd) = parse_command(&input.as_bytes()[..cut], &L).unwrap();
        assert_eq!(n, prefix.len());
        assert_eq!(cmd.tag, "A003");
        assert_eq!(
            cmd.body,
            CommandBody::Append {
                mailbox: mbox("saved-messages"),
                flags: vec![Flag::Seen],
                date: None,
                message: LiteralHeader {
                    size: 310,
                    sync: true
                },
                utf8: false,
            }
        );
    }
}

#[test]
fn append_forms() {
    let dt = DateTime {
        date: date(1994, 2, 1),
        hour: 8,
        minute: 0,
        second: 0,
        offset_minutes: 0,
    };
    for (line, flags, date_) in [
        ("a APPEND INBOX {5}\r\n", vec![], None),
        ("a APPEND INBOX () {5}\r\n", vec![], None),
        (
            "a APPEND INBOX (\\Seen \\Draft $MDNSent) {5}\r\n",
            vec![Flag::Seen, Flag::Draft, Flag::Keyword("$MDNSent".into())],
            None,
        ),
        (
            "a APPEND INBOX \"01-Feb-1994 08:00:00 +0000\" {5}\r\n",
            vec![],
            Some(dt),
        ),
        (
            "a APPEND INBOX \" 1-Feb-1994 08:00:00 +0000\" {5}\r\n",
            vec![],
            Some(dt),
        ),
        (
            "a append inbox (\\Flagged) \"1-Feb-1994 08:00:00 +0000\" {5}\r\n",
            vec![Flag::Flagged],
            Some(dt),
        ),
    ] {
        let (n, cmd) = parse_command(line.as_bytes(), &L).unwrap();
        assert_eq!(n, line.len(), "{line}");
        assert_eq!(
            cmd.body,
            CommandBody::Append {
                mailbox: Mailbox::Inbox,
                flags,
                date: date_,
                message: LiteralHeader {
                    size: 5,
                    sync: true
                },
                utf8: false,
            },
            "{line}"
        );
    }
}

#[test]
fn append_of_a_huge_message_with_literal_plus() {
    // 50 MB: far beyond max_literal and max_command, which do not apply to the message.
    let line = "a APPEND Sent {52428800+}\r\n";
    let (n, cmd) = parse_command(line.as_bytes(), &L).unwrap();
    assert_eq!(n, line.len());
    let CommandBody::Append { message, .. } = cmd.body else {
        panic!()
    };
    assert_eq!(
        message,
        LiteralHeader {
            size: 52_428_800,
            sync: false
        }
    );
}

#[test]
fn append_with_a_literal_mailbox_name() {
    let input = b"a APPEND {5}\r\nDraft {3}\r\nabc\r\n";
    assert_eq!(
        parse_command(&input[..14], &L),
        Err(ParseError::Incomplete(Needed::Literal {
            size: 5,
            sync: true,
            offset: 14
        }))
    );
    assert_eq!(
        parse_command(&input[..19], &L),
        Err(ParseError::Incomplete(Needed::Line))
    );
    let (n, cmd) = parse_command(input, &L).unwrap();
    assert_eq!(n, 25);
    assert_eq!(
        cmd.body,
        CommandBody::Append {
            mailbox: mbox("Draft"),
            flags: vec![],
            date: None,
            message: LiteralHeader {
                size: 3,
                sync: true
            },
            utf8: false,
        }
    );
    // The session reads the 3 octets, then the end of the line.
    assert_eq!(parse_append_end(&input[28..], &L), Ok(2));
}

#[test]
fn append_end() {
    assert_eq!(
        parse_append_end(b"", &L),
        Err(ParseError::Incomplete(Needed::Line))
    );
    assert_eq!(
        parse_append_end(b"\r", &L),
        Err(ParseError::Incomplete(Needed::Line))
    );
    assert_eq!(parse_append_end(b"\r\nA2 NOOP\r\n", &L), Ok(2));
    assert_eq!(parse_append_end(b"\n", &L), Ok(1));
    assert_eq!(
        parse_append_end(b" (\\Seen) {3}\r\n", &L),
        Err(ParseError::Bad {
            tag: None,
            consumed: 14,
            reason: Reason::Syntax
        })
    );
}

#[test]
fn malformed_append() {
    // A bad date-time: the literal is taken for an ordinary one, then the command is BAD.
    let line = "a APPEND INBOX \"31-Feb-1994 08:00:00 +0000\" {3}\r\n";
    assert_eq!(
        parse_command(line.as_bytes(), &L),
        Err(ParseError::Incomplete(Needed::Literal {
            size: 3,
            sync: true,
            offset: line.len()
        }))
    );
    assert_eq!(
        bad(&format!("{line}abc\r\n")),
        (Some("a"), Reason::BadDateTime)
    );
    assert_eq!(
        bad("a APPEND INBOX (\\Recent) {3}\r\nabc\r\n"),
        (Some("a"), Reason::RecentNotAllowed)
    );
    assert_eq!(
        bad("a APPEND INBOX \"message\"\r\n"),
        (Some("a"), Reason::BadDateTime)
    );
    assert_eq!(bad("a APPEND INBOX\r\n"), (Some("a"), Reason::Syntax));
    // With a malformed prefix, a huge literal is just too large.
    assert!(matches!(
        parse_command(b"a APPEND INBOX (\\Seen {52428800}\r\n", &L),
        Err(ParseError::LiteralTooLarge {
            tag: Some("a"),
            size: 52_428_800,
            sync: true,
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------
// Literals and incomplete input

#[test]
fn synchronising_literals_report_their_offsets() {
    let input = b"a LOGIN {4}\r\nfred {6}\r\nsecret\r\n";
    assert_eq!(
        parse_command(&input[..11], &L),
        Err(ParseError::Incomplete(Needed::Line))
    );
    for cut in 13..17 {
        assert_eq!(
            parse_command(&input[..cut], &L),
            Err(ParseError::Incomplete(Needed::Literal {
                size: 4,
                sync: true,
                offset: 13
            })),
            "{cut}"
        );
    }
    for cut in 17..23 {
        assert_eq!(
            parse_command(&input[..cut], &L),
            Err(ParseError::Incomplete(Needed::Line)),
            "{cut}"
        );
    }
    for cut in 23..29 {
        assert_eq!(
            parse_command(&input[..cut], &L),
            Err(ParseError::Incomplete(Needed::Literal {
                size: 6,
                sync: true,
                offset: 23
            })),
            "{cut}"
        );
    }
    assert_eq!(
        parse_with(input, &L).body,
        CommandBody::Login {
            username: s("fred"),
            password: s("secret")
        }
    );
}

#[test]
fn non_synchronising_literals() {
    let input = b"a LOGIN {4+}\r\nfred {6+}\r\nsecret\r\n";
    assert_eq!(
        parse_command(&input[..14], &L),
        Err(ParseError::Incomplete(Needed::Literal {
            size: 4,
            sync: false,
            offset: 14
        }))
    );
    assert_eq!(
        parse_with(input, &L).body,
        CommandBody::Login {
            username: s("fred"),
            password: s("secret")
        }
    );
}

#[test]
fn literal_octets_are_opaque() {
    // CRLF, a literal announcement and non-UTF-8 octets inside a literal are just data.
    let input = b"a LOGIN {10}\r\nx\r\n{3}\r\n\xff\xfe {0}\r\n\r\n";
    let cmd = parse_with(input, &L);
    assert_eq!(
        cmd.body,
        CommandBody::Login {
            username: IString::from(&b"x\r\n{3}\r\n\xff\xfe"[..]),
            password: s("")
        }
    );
}

#[test]
fn strings_borrow_from_the_input() {
    let cmd = parse("a LOGIN {4}\r\nfred \"plain\"\r\n");
    let CommandBody::Login { username, password } = &cmd.body else {
        panic!()
    };
    assert!(username.is_borrowed() && password.is_borrowed());
    let cmd = parse("a LOGIN \"a\\\"b\" c\r\n");
    let CommandBody::Login { username, .. } = &cmd.body else {
        panic!()
    };
    assert!(!username.is_borrowed());
    assert!(matches!(cmd.tag, Cow::Borrowed(_)));
}

#[test]
fn commands_outlive_their_buffer_once_owned() {
    let buf = b"t1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)])\r\n".to_vec();
    let owned: Command<'static> = parse_command(&buf, &L).unwrap().1.into_owned();
    drop(buf);
    assert_eq!(owned.tag, "t1");
    assert_eq!(owned.body.name(), "UID FETCH");
}

#[test]
fn bare_lf_ends_a_line() {
    assert_eq!(body("a NOOP\n"), CommandBody::Noop);
    assert_eq!(
        body("a LOGIN {3}\nabc x\n"),
        CommandBody::Login {
            username: s("abc"),
            password: s("x")
        }
    );
}

#[test]
fn case_insensitivity() {
    assert_eq!(
        body("a1 uid fetch 1:* (flags body.peek[header.fields (subject)])\r\n"),
        CommandBody::Fetch {
            uid: true,
            set: set("1:*"),
            items: FetchItems::Attrs(vec![
                FetchAttr::Flags,
                peek(section(
                    None,
                    Some(SectionText::HeaderFields(vec![s("subject")]))
                ))
            ])
        }
    );
    for inbox in ["INBOX", "inbox", "InBoX", "\"inbox\"", "{5}\r\niNbOx"] {
        assert_eq!(
            body(&format!("a SELECT {inbox}\r\n")),
            CommandBody::Select {
                mailbox: Mailbox::Inbox
            }
        );
    }
    assert_eq!(
        body("a SELECT INBOX.Sent\r\n"),
        CommandBody::Select {
            mailbox: mbox("INBOX.Sent")
        }
    );
    assert_eq!(
        body("a STORE 1 -flags.silent (\\sEEN)\r\n"),
        CommandBody::Store {
            uid: false,
            set: set("1"),
            action: StoreAction::Remove,
            silent: true,
            flags: vec![Flag::Seen]
        }
    );
}

#[test]
fn mailbox_names_decode_from_modified_utf7() {
    let CommandBody::Select { mailbox } = body("a SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n")
    else {
        panic!()
    };
    assert_eq!(mailbox.decode().unwrap(), "~peter/mail/台北/日本語");
    let CommandBody::Select { mailbox } = body("a SELECT &Jjo-!\r\n") else {
        panic!()
    };
    assert_eq!(mailbox.decode().unwrap(), "☺!");
    let CommandBody::Select { mailbox } = body("a SELECT \"&bad\"\r\n") else {
        panic!()
    };
    assert!(mailbox.decode().is_err());
}

#[test]
fn tags() {
    for tag in ["a", "A001", "*x", "]", "tag.with-odd!chars#~", "1"] {
        // `*x` is not a tag: `*` is not an ASTRING-CHAR.
        let line = format!("{tag} NOOP\r\n");
        let r = parse_command(line.as_bytes(), &L);
        if tag.starts_with('*') {
            assert!(matches!(r, Err(ParseError::Bad { tag: None, .. })));
        } else {
            assert_eq!(r.unwrap().1.tag, tag);
        }
    }
    assert_eq!(peek_tag(b"A1 NOOP"), Some("A1"));
    assert_eq!(peek_tag(b"A1\r\n"), Some("A1"));
    assert_eq!(peek_tag(b"A1"), None);
    assert_eq!(peek_tag(b"+A1 x"), None);
    assert_eq!(peek_tag(b"A+1 x"), None);
    assert_eq!(peek_tag(b"a{1 x"), None);
    assert_eq!(peek_tag(b""), None);
}

// ---------------------------------------------------------------------------------------
// Errors

#[test]
fn errors_carry_the_tag_when_there_is_one() {
    assert_eq!(bad("\r\n"), (None, Reason::EmptyLine));
    assert_eq!(bad("\n"), (None, Reason::EmptyLine));
    assert_eq!(bad("A1\r\n"), (Some("A1"), Reason::MissingCommand));
    assert_eq!(bad("A1 \r\n"), (Some("A1"), Reason::MissingCommand));
    assert_eq!(bad("A1  NOOP\r\n"), (Some("A1"), Reason::MissingCommand));
    assert_eq!(bad("+A1 NOOP\r\n"), (None, Reason::BadTag));
    assert_eq!(bad("* NOOP\r\n"), (None, Reason::BadTag));
    assert_eq!(bad(" NOOP\r\n"), (None, Reason::BadTag));
    assert_eq!(bad("A1 FOO\r\n"), (Some("A1"), Reason::UnknownCommand));
    assert_eq!(bad("A1 NOOPX\r\n"), (Some("A1"), Reason::UnknownCommand));
    assert_eq!(
        bad("A1 AVERYVERYLONGCOMMANDNAME\r\n"),
        (Some("A1"), Reason::UnknownCommand)
    );
    assert_eq!(
        bad("A1 UID FOO 1\r\n"),
        (Some("A1"), Reason::UnknownCommand)
    );
    assert_eq!(bad("A1 UID NOOP\r\n"), (Some("A1"), Reason::UnknownCommand));
    assert_eq!(bad("A1 UID\r\n"), (Some("A1"), Reason::MissingCommand));
    assert_eq!(bad("A1 NOOP extra\r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(bad("A1 NOOP \r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(bad("A1 SELECT\r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(bad("A1 SELECT (x)\r\n"), (Some("A1"), Reason::BadMailbox));
    assert_eq!(bad("A1 SELECT a b\r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(
        bad("A1 LOGIN \"unterminated\r\n"),
        (Some("A1"), Reason::BadString)
    );
    assert_eq!(
        bad("A1 LOGIN \"a\\x\" b\r\n"),
        (Some("A1"), Reason::BadString)
    );
    assert_eq!(
        bad("A1 LOGIN {3}\r\na\0b c\r\n"),
        (Some("A1"), Reason::BadLiteral)
    );
    assert_eq!(
        bad("A1 LOGIN {99999999999}\r\n"),
        (Some("A1"), Reason::BadLiteral)
    );
    assert_eq!(
        bad("A1 COPY 0 INBOX\r\n"),
        (Some("A1"), Reason::BadSequenceSet)
    );
    assert_eq!(
        bad("A1 STATUS INBOX (FOO)\r\n"),
        (Some("A1"), Reason::BadStatusItem)
    );
    assert_eq!(
        bad("A1 STATUS INBOX ()\r\n"),
        (Some("A1"), Reason::BadStatusItem)
    );
    assert_eq!(
        bad("A1 STATUS INBOX MESSAGES\r\n"),
        (Some("A1"), Reason::BadStatusItem)
    );
    assert_eq!(bad("A1 ENABLE\r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(bad("A1 ID\r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(bad("A1 ID (\"a\")\r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(bad("A1 AUTHENTICATE\r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(
        bad("A1 AUTHENTICATE PLAIN abc\r\n"),
        (Some("A1"), Reason::BadBase64)
    );
    assert_eq!(
        bad("A1 AUTHENTICATE PLAIN ab=c\r\n"),
        (Some("A1"), Reason::BadBase64)
    );
    assert_eq!(
        bad("A1 AUTHENTICATE PLAIN a===\r\n"),
        (Some("A1"), Reason::BadBase64)
    );
    assert_eq!(bad("A1 UID EXPUNGE\r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(bad("A1 NOOP\rX\r\n"), (Some("A1"), Reason::Syntax));
    assert_eq!(
        bad("A1 N\u{f6}OP\r\n"),
        (Some("A1"), Reason::UnknownCommand)
    );
    assert_eq!(
        bad("A1 SEARCH \u{e9}\r\n"),
        (Some("A1"), Reason::BadSearchKey)
    );
    // Binary garbage (a TLS ClientHello on a cleartext port).
    assert!(matches!(
        parse_command(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", &L),
        Err(ParseError::Bad {
            tag: None,
            consumed: 12,
            ..
        })
    ));
}

#[test]
fn a_bad_command_is_consumed_whole_literals_included() {
    let input = b"A1 FOO {3}\r\nabc bar\r\nA2 NOOP\r\n";
    let Err(ParseError::Bad {
        tag,
        consumed,
        reason,
    }) = parse_command(input, &L)
    else {
        panic!()
    };
    assert_eq!(
        (tag, consumed, reason),
        (Some("A1"), 21, Reason::UnknownCommand)
    );
    let (n, cmd) = parse_command(&input[consumed..], &L).unwrap();
    assert_eq!((n, cmd.body), (9, CommandBody::Noop));
}

// ---------------------------------------------------------------------------------------
// Limits

const SMALL: Limits = Limits {
    max_line: 20,
    max_literal: 10,
    max_command: 30,
};

#[test]
fn a_line_may_be_exactly_max_line() {
    let line = b"A1 LOGIN 1234 567890\r\n"; // 20 octets before CRLF
    assert!(parse_command(line, &SMALL).is_ok());
    let line = b"A1 LOGIN 1234 567890\n";
    assert!(parse_command(line, &SMALL).is_ok());
    // Still waiting: the CR may be followed by LF.
    assert_eq!(
        parse_command(b"A1 LOGIN 1234 567890\r", &SMALL),
        Err(ParseError::Incomplete(Needed::Line))
    );
}

#[test]
fn overlong_lines() {
    // No LF yet and already too long: discard up to the next LF.
    assert_eq!(
        parse_command(b"A1 LOGIN 1234 5678901\r", &SMALL),
        Err(ParseError::TooLong { tag: Some("A1") })
    );
    assert_eq!(
        parse_command(&[b'x'; 100], &SMALL),
        Err(ParseError::TooLong { tag: None })
    );
    // The LF is there: drop the line.
    assert_eq!(
        parse_command(b"A1 LOGIN 1234 5678901\r\n", &SMALL),
        Err(ParseError::Bad {
            tag: Some("A1"),
            consumed: 23,
            reason: Reason::LineTooLong
        })
    );
    // The same for a line after a literal.
    assert_eq!(
        parse_command(b"A1 LOGIN {1}\r\nx 12345678901234567890\r\n", &SMALL),
        Err(ParseError::Bad {
            tag: Some("A1"),
            consumed: 38,
            reason: Reason::LineTooLong
        })
    );
    assert_eq!(
        parse_command(b"A1 LOGIN {1}\r\nx 123456789012345678901", &SMALL),
        Err(ParseError::TooLong { tag: Some("A1") })
    );
}

#[test]
fn oversized_literals() {
    assert_eq!(
        parse_command(b"A1 LOGIN {11}\r\n", &SMALL),
        Err(ParseError::LiteralTooLarge {
            tag: Some("A1"),
            size: 11,
            sync: true,
            consumed: 15
        })
    );
    assert_eq!(
        parse_command(b"A1 LOGIN {11+}\r\n01234567890 x\r\n", &SMALL),
        Err(ParseError::LiteralTooLarge {
            tag: Some("A1"),
            size: 11,
            sync: false,
            consumed: 16
        })
    );
    // Each literal fits, but not the command.
    assert_eq!(
        parse_command(b"A1 LOGIN {10}\r\n0123456789 {6}\r\n", &SMALL),
        Err(ParseError::LiteralTooLarge {
            tag: Some("A1"),
            size: 6,
            sync: true,
            consumed: 31
        })
    );
    // A literal of exactly max_literal is fine.
    assert!(parse_command(b"A1 LOGIN {10}\r\n0123456789 x\r\n", &SMALL).is_ok());
}

#[test]
fn overlong_commands() {
    assert_eq!(
        parse_command(b"A1 LOGIN {4}\r\nabcd 0123456789012345\r\n", &SMALL),
        Err(ParseError::Bad {
            tag: Some("A1"),
            consumed: 37,
            reason: Reason::CommandTooLong
        })
    );
}

#[test]
fn default_limits_take_long_uid_sets() {
    let uids: Vec<String> = (1..5000).map(|n| (n * 2).to_string()).collect();
    let line = format!("a UID FETCH {} (FLAGS)\r\n", uids.join(","));
    assert!(line.len() > 8192);
    let (n, cmd) = parse_command(line.as_bytes(), &L).unwrap();
    assert_eq!(n, line.len());
    let CommandBody::Fetch { set, .. } = cmd.body else {
        panic!()
    };
    assert_eq!(set.iter().count(), 4999);
    assert!(set.contains(9998, 0));
    assert!(!set.contains(9999, 0));
}

// ---------------------------------------------------------------------------------------
// Continuation lines: IDLE's DONE, AUTHENTICATE responses

#[test]
fn idle_done() {
    assert_eq!(
        parse_idle_done(b"", &L),
        Err(ParseError::Incomplete(Needed::Line))
    );
    assert_eq!(
        parse_idle_done(b"DON", &L),
        Err(ParseError::Incomplete(Needed::Line))
    );
    assert_eq!(parse_idle_done(b"DONE\r\n", &L), Ok(6));
    assert_eq!(parse_idle_done(b"done\nA2 NOOP\r\n", &L), Ok(5));
    assert_eq!(
        parse_idle_done(b"A2 NOOP\r\n", &L),
        Err(ParseError::Bad {
            tag: None,
            consumed: 9,
            reason: Reason::ExpectedDone
        })
    );
    assert_eq!(
        parse_idle_done(b"DONE \r\n", &L),
        Err(ParseError::Bad {
            tag: None,
            consumed: 7,
            reason: Reason::ExpectedDone
        })
    );
    assert_eq!(
        parse_idle_done(&[b'x'; 100], &SMALL),
        Err(ParseError::TooLong { tag: None })
    );
}

#[test]
fn auth_responses() {
    assert_eq!(
        parse_auth_response(b"dGVz", &L),
        Err(ParseError::Incomplete(Needed::Line))
    );
    assert_eq!(
        parse_auth_response(b"dGVzdA==\r\n", &L),
        Ok((
            10,
            AuthResponse::Response(InitialResponse::Base64("dGVzdA==".into()))
        ))
    );
    assert_eq!(
        parse_auth_response(b"\r\n", &L),
        Ok((2, AuthResponse::Response(InitialResponse::Empty)))
    );
    assert_eq!(
        parse_auth_response(b"*\r\n", &L),
        Ok((3, AuthResponse::Cancel))
    );
    assert_eq!(
        parse_auth_response(b"not base64!\r\n", &L),
        Err(ParseError::Bad {
            tag: None,
            consumed: 13,
            reason: Reason::BadBase64
        })
    );
    assert_eq!(
        parse_auth_response(b"abc\r\n", &L),
        Err(ParseError::Bad {
            tag: None,
            consumed: 5,
            reason: Reason::BadBase64
        })
    );
}

#[test]
fn reasons_read_as_bad_texts() {
    assert_eq!(Reason::UnknownCommand.to_string(), "Unknown command");
    assert_eq!(
        Reason::RecentNotAllowed.to_string(),
        "\\Recent cannot be set by a client"
    );
    let e = parse_command(b"x1 FOO\r\n", &L).unwrap_err();
    assert_eq!(e.tag(), Some("x1"));
}

// ---------------------------------------------------------------------------------------
// Random inputs

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// The same input cut anywhere gives "incomplete" before the command's end and the same
/// answer from there on.
fn check_prefix_consistency(input: &[u8]) {
    let full = parse_command(input, &L);
    let end = match &full {
        Ok((n, _)) => Some(*n),
        Err(ParseError::Bad { consumed, .. } | ParseError::LiteralTooLarge { consumed, .. }) => {
            Some(*consumed)
        }
        Err(ParseError::Incomplete(_)) => None,
        Err(ParseError::TooLong { .. }) => panic!("too long: {input:?}"),
    };
    if let Some(e) = end {
        assert!(e > 0 && e <= input.len());
    }
    for cut in 0..=input.len() {
        let r = parse_command(&input[..cut], &L);
        match end {
            Some(e) if cut >= e => assert_eq!(r, full, "{input:?} cut at {cut}"),
            _ => assert!(
                matches!(r, Err(ParseError::Incomplete(_))),
                "{input:?} cut at {cut}: {r:?}"
            ),
        }
    }
}

#[test]
fn random_token_soup_is_prefix_consistent() {
    const TOKENS: &[&[u8]] = &[
        b"a1",
        b" ",
        b" ",
        b" ",
        b"\r\n",
        b"\n",
        b"\r",
        b"{3}\r\n",
        b"{0+}\r\n",
        b"{2}",
        b"{1}",
        b"FETCH",
        b"UID",
        b"SEARCH",
        b"APPEND",
        b"STORE",
        b"LOGIN",
        b"LIST",
        b"ID",
        b"SELECT",
        b"(",
        b")",
        b"[",
        b"]",
        b"<0.5>",
        b"BODY",
        b".PEEK",
        b"HEADER.FIELDS",
        b"\"",
        b"\\",
        b"1:*",
        b",",
        b"7",
        b"INBOX",
        b"NOT",
        b"OR",
        b"ALL",
        b"1-Feb-1994",
        b"\"01-Feb-1994 08:00:00 +0000\"",
        b"\\Seen",
        b"+FLAGS",
        b"RETURN",
        b"NIL",
        b"abc",
        b"\xff",
        b"\0",
        b"*",
        b"%",
        b"=",
        b"AUTHENTICATE",
        b"PLAIN",
        b"dGVzdA==",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..4000 {
        let mut input = Vec::new();
        // Mostly commands that start like commands.
        if !rng.next().is_multiple_of(4) {
            input.extend_from_slice(b"a1 ");
        }
        for _ in 0..rng.next() % 12 + 1 {
            input.extend_from_slice(rng.pick(TOKENS));
        }
        if rng.next().is_multiple_of(2) {
            input.extend_from_slice(b"\r\n");
        }
        check_prefix_consistency(&input);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        let input: Vec<u8> = (0..len)
            .map(|_| rng.pick(b"a1 {}+()[]<>.:,*%\"\\\r\n0123456789ABCDEFGHIJ\xff\0"))
            .collect();
        let _ = parse_command(&input, &L);
        let _ = parse_command(&input, &SMALL);
        let _ = parse_append_end(&input, &SMALL);
        let _ = parse_idle_done(&input, &SMALL);
        let _ = parse_auth_response(&input, &SMALL);
    }
}
