//! The POP3 command grammar: every command, case, spacing, limits, errors, and every split
//! of the input.

use ironpost_core::pop3::{
    parse_auth_response, parse_command, AuthResponse, Command, Limits, ParseError, Reason,
};

fn p(s: &str) -> Result<(usize, Command<'_>), ParseError> {
    parse_command(s.as_bytes(), &Limits::DEFAULT)
}

fn cmd(s: &str) -> Command<'_> {
    match p(s) {
        Ok((n, c)) => {
            assert_eq!(n, s.len(), "{s:?} consumed");
            c
        }
        Err(e) => panic!("{s:?}: {e:?}"),
    }
}

fn bad(s: &str) -> Reason {
    match p(s) {
        Err(ParseError::Bad { consumed, reason }) => {
            assert_eq!(consumed, s.len(), "{s:?} consumed");
            reason
        }
        other => panic!("{s:?}: expected Bad, got {other:?}"),
    }
}

#[test]
fn every_command() {
    assert_eq!(
        cmd("USER alice@example.test\r\n"),
        Command::User("alice@example.test")
    );
    assert_eq!(cmd("PASS secret\r\n"), Command::Pass("secret"));
    assert_eq!(
        cmd("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
        Command::Apop {
            name: "mrose",
            digest: "c4c9334bac560ecc979e58001b3e22fb"
        }
    );
    assert_eq!(
        cmd("AUTH\r\n"),
        Command::Auth {
            mechanism: None,
            initial: None
        }
    );
    assert_eq!(
        cmd("AUTH PLAIN\r\n"),
        Command::Auth {
            mechanism: Some("PLAIN"),
            initial: None
        }
    );
    assert_eq!(
        cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        Command::Auth {
            mechanism: Some("PLAIN"),
            initial: Some("AGFsaWNlAHNlY3JldA==")
        }
    );
    assert_eq!(
        cmd("AUTH PLAIN =\r\n"),
        Command::Auth {
            mechanism: Some("PLAIN"),
            initial: Some("=")
        }
    );
    assert_eq!(cmd("STAT\r\n"), Command::Stat);
    assert_eq!(cmd("LIST\r\n"), Command::List(None));
    assert_eq!(cmd("LIST 2\r\n"), Command::List(Some(2)));
    assert_eq!(cmd("RETR 1\r\n"), Command::Retr(1));
    assert_eq!(cmd("DELE 17\r\n"), Command::Dele(17));
    assert_eq!(cmd("NOOP\r\n"), Command::Noop);
    assert_eq!(cmd("RSET\r\n"), Command::Rset);
    assert_eq!(cmd("QUIT\r\n"), Command::Quit);
    assert_eq!(cmd("TOP 1 10\r\n"), Command::Top { msg: 1, lines: 10 });
    assert_eq!(cmd("TOP 3 0\r\n"), Command::Top { msg: 3, lines: 0 });
    assert_eq!(cmd("UIDL\r\n"), Command::Uidl(None));
    assert_eq!(cmd("UIDL 4\r\n"), Command::Uidl(Some(4)));
    assert_eq!(cmd("CAPA\r\n"), Command::Capa);
    assert_eq!(cmd("STLS\r\n"), Command::Stls);
}

#[test]
fn names() {
    for (line, name) in [
        ("USER a\r\n", "USER"),
        ("PASS a\r\n", "PASS"),
        ("APOP a b\r\n", "APOP"),
        ("AUTH\r\n", "AUTH"),
        ("STAT\r\n", "STAT"),
        ("LIST\r\n", "LIST"),
        ("RETR 1\r\n", "RETR"),
        ("DELE 1\r\n", "DELE"),
        ("NOOP\r\n", "NOOP"),
        ("RSET\r\n", "RSET"),
        ("QUIT\r\n", "QUIT"),
        ("TOP 1 1\r\n", "TOP"),
        ("UIDL\r\n", "UIDL"),
        ("CAPA\r\n", "CAPA"),
        ("STLS\r\n", "STLS"),
    ] {
        assert_eq!(cmd(line).name(), name);
    }
}

#[test]
fn keywords_are_case_insensitive() {
    assert_eq!(cmd("stat\r\n"), Command::Stat);
    assert_eq!(cmd("Stat\r\n"), Command::Stat);
    assert_eq!(cmd("top 1 2\r\n"), Command::Top { msg: 1, lines: 2 });
    assert_eq!(cmd("uIdL 9\r\n"), Command::Uidl(Some(9)));
    assert_eq!(
        cmd("user Bob\r\n"),
        Command::User("Bob"),
        "arguments keep their case"
    );
    assert_eq!(
        cmd("auth plain\r\n"),
        Command::Auth {
            mechanism: Some("plain"),
            initial: None
        }
    );
}

#[test]
fn line_ends_and_spacing() {
    assert_eq!(cmd("STAT\n"), Command::Stat, "bare LF");
    assert_eq!(cmd("STAT  \r\n"), Command::Stat, "trailing spaces");
    assert_eq!(cmd("LIST   3  \r\n"), Command::List(Some(3)));
    assert_eq!(cmd("TOP  1   5 \r\n"), Command::Top { msg: 1, lines: 5 });
    assert_eq!(cmd("USER  alice \r\n"), Command::User("alice"));
    assert_eq!(cmd("LIST 007\r\n"), Command::List(Some(7)), "leading zeros");
}

#[test]
fn pass_takes_the_rest_of_the_line() {
    assert_eq!(cmd("PASS a b c\r\n"), Command::Pass("a b c"));
    assert_eq!(cmd("PASS  lead\r\n"), Command::Pass(" lead"));
    assert_eq!(cmd("PASS trail \r\n"), Command::Pass("trail "));
    assert_eq!(
        cmd("PASS p\u{e4}ss\r\n"),
        Command::Pass("p\u{e4}ss"),
        "UTF-8"
    );
    assert_eq!(cmd("PASS a\tb\r\n"), Command::Pass("a\tb"));
    assert_eq!(bad("PASS\r\n"), Reason::MissingArgument);
    assert_eq!(bad("PASS \r\n"), Reason::MissingArgument);
    assert_eq!(bad("PASS a\0b\r\n"), Reason::InvalidArgument);
    assert_eq!(
        parse_command(b"PASS \xff\xfe\r\n", &Limits::DEFAULT),
        Err(ParseError::Bad {
            consumed: 9,
            reason: Reason::InvalidArgument
        })
    );
}

#[test]
fn errors() {
    assert_eq!(bad("\r\n"), Reason::EmptyLine);
    assert_eq!(bad("   \r\n"), Reason::EmptyLine);
    assert_eq!(bad("XYZZY\r\n"), Reason::UnknownCommand);
    assert_eq!(bad("LAST\r\n"), Reason::UnknownCommand);
    assert_eq!(bad("ST\r\n"), Reason::UnknownCommand);
    assert_eq!(bad("STATS\r\n"), Reason::UnknownCommand);
    assert_eq!(bad("STAT1\r\n"), Reason::UnknownCommand);
    assert_eq!(bad(" STAT\r\n"), Reason::UnknownCommand);
    assert_eq!(bad("STAT x\r\n"), Reason::UnexpectedArgument);
    assert_eq!(bad("QUIT now\r\n"), Reason::UnexpectedArgument);
    assert_eq!(bad("RETR\r\n"), Reason::MissingArgument);
    assert_eq!(bad("RETR \r\n"), Reason::MissingArgument);
    assert_eq!(bad("DELE\r\n"), Reason::MissingArgument);
    assert_eq!(bad("RETR x\r\n"), Reason::InvalidNumber);
    assert_eq!(bad("RETR -1\r\n"), Reason::InvalidNumber);
    assert_eq!(bad("RETR 1x\r\n"), Reason::InvalidNumber);
    assert_eq!(
        bad("RETR 4294967296\r\n"),
        Reason::InvalidNumber,
        "overflow"
    );
    assert_eq!(cmd("RETR 4294967295\r\n"), Command::Retr(u32::MAX));
    assert_eq!(cmd("RETR 0\r\n"), Command::Retr(0), "the session answers 0");
    assert_eq!(bad("RETR 1 2\r\n"), Reason::UnexpectedArgument);
    assert_eq!(bad("LIST 1 2\r\n"), Reason::UnexpectedArgument);
    assert_eq!(bad("LIST a\r\n"), Reason::InvalidNumber);
    assert_eq!(bad("TOP\r\n"), Reason::MissingArgument);
    assert_eq!(bad("TOP 1\r\n"), Reason::MissingArgument);
    assert_eq!(bad("TOP 1 x\r\n"), Reason::InvalidNumber);
    assert_eq!(bad("TOP 1 2 3\r\n"), Reason::UnexpectedArgument);
    assert_eq!(bad("USER\r\n"), Reason::MissingArgument);
    assert_eq!(bad("USER a b\r\n"), Reason::InvalidArgument);
    assert_eq!(bad("APOP a\r\n"), Reason::InvalidArgument);
    assert_eq!(bad("AUTH PLAIN a b\r\n"), Reason::InvalidArgument);
    assert_eq!(bad("RETR\t1\r\n"), Reason::UnknownCommand);
    // Every reason has text for the -ERR line.
    assert_eq!(Reason::LineTooLong.to_string(), "Command line too long");
}

#[test]
fn incomplete_until_the_line_ends() {
    assert_eq!(p(""), Err(ParseError::Incomplete));
    assert_eq!(p("STA"), Err(ParseError::Incomplete));
    assert_eq!(p("STAT\r"), Err(ParseError::Incomplete));
    assert_eq!(p("STAT"), Err(ParseError::Incomplete));
}

#[test]
fn only_the_first_line_is_read() {
    let input = "STAT\r\nLIST 1\r\nQUIT\r\n";
    let (n, c) = p(input).unwrap();
    assert_eq!((n, c), (6, Command::Stat));
    let (m, c) = p(&input[n..]).unwrap();
    assert_eq!((m, c), (8, Command::List(Some(1))));
}

#[test]
fn line_limit_is_255_with_crlf() {
    // 253 octets of text + CRLF = 255: fine.
    let pass = "x".repeat(253 - 5);
    let ok = format!("PASS {pass}\r\n");
    assert_eq!(ok.len(), 255);
    assert_eq!(cmd(&ok), Command::Pass(&pass));
    // One more octet: too long, and consumed whole.
    let long = format!("PASS {pass}y\r\n");
    assert_eq!(bad(&long), Reason::LineTooLong);
    // The same with a bare LF fits one more octet of text.
    let lf = format!("PASS {pass}y\n");
    assert_eq!(cmd(&lf), Command::Pass(&lf[5..lf.len() - 1]));
    // No line end yet: incomplete up to 254 octets, then TooLong.
    let open = format!("PASS {pass}y");
    assert_eq!(open.len(), 254);
    assert_eq!(p(&open), Err(ParseError::Incomplete));
    let open = format!("{open}z");
    assert_eq!(p(&open), Err(ParseError::TooLong));
    assert_eq!(p(&"A".repeat(10_000)), Err(ParseError::TooLong));
}

#[test]
fn limits_are_configurable() {
    let limits = Limits {
        max_line: 1000,
        ..Limits::DEFAULT
    };
    let pass = "p".repeat(900);
    let line = format!("PASS {pass}\r\n");
    assert_eq!(
        parse_command(line.as_bytes(), &limits),
        Ok((line.len(), Command::Pass(&pass)))
    );
    let small = Limits {
        max_line: 6,
        ..Limits::DEFAULT
    };
    assert_eq!(parse_command(b"STAT\r\n", &small), Ok((6, Command::Stat)));
    assert_eq!(
        parse_command(b"NOOP \r\n", &small),
        Err(ParseError::Bad {
            consumed: 7,
            reason: Reason::LineTooLong
        })
    );
}

#[test]
fn arguments_borrow_from_the_input() {
    let input = b"USER alice\r\n".to_vec();
    let (_, c) = parse_command(&input, &Limits::DEFAULT).unwrap();
    let Command::User(name) = c else { panic!() };
    let range = input.as_ptr_range();
    assert!(range.contains(&name.as_ptr()), "not a copy");
}

#[test]
fn every_split_gives_the_same_commands() {
    let script = "USER alice\r\nPASS two words\nSTAT\r\nLIST\r\nLIST 2\r\nRETR 1\r\nTOP 1 3\r\n\
                  UIDL\r\nDELE 2\r\nRSET\r\nNOOP\r\nCAPA\r\nAUTH PLAIN AGEAYg==\r\nQUIT\r\n";
    let whole = parse_all(script.as_bytes());
    assert_eq!(whole.len(), 14);
    for split in 0..script.len() {
        // Feed a prefix, then the rest, as a session buffer would see them.
        let mut buf: Vec<u8> = script.as_bytes()[..split].to_vec();
        let mut got = Vec::new();
        let mut pos = 0;
        for extra in [&script.as_bytes()[split..], &b""[..]] {
            buf.extend_from_slice(extra);
            loop {
                match parse_command(&buf[pos..], &Limits::DEFAULT) {
                    Ok((n, c)) => {
                        got.push(format!("{c:?}"));
                        pos += n;
                    }
                    Err(ParseError::Incomplete) => break,
                    Err(e) => panic!("split {split}: {e:?}"),
                }
            }
        }
        assert_eq!(got, whole, "split at {split}");
    }
}

fn parse_all(mut input: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok((n, c)) = parse_command(input, &Limits::DEFAULT) {
        out.push(format!("{c:?}"));
        input = &input[n..];
    }
    assert!(input.is_empty());
    out
}

#[test]
fn no_panic_on_arbitrary_bytes() {
    // A cheap deterministic generator: every input of short random lines parses to a
    // command or an error, never a panic, and consumption stays within the input.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet =
        b"STATLISTRETRDELETOPUIDLCAPAUSERPASSAUTHPLAINstlsquit 0123456789\r\n\x00\xff.=*+/";
    for _ in 0..20_000 {
        let len = (x % 40) as usize;
        let mut line = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            line.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        match parse_command(&line, &Limits::DEFAULT) {
            Ok((n, _)) | Err(ParseError::Bad { consumed: n, .. }) => assert!(n <= line.len()),
            Err(_) => {}
        }
        let _ = parse_auth_response(&line, &Limits::DEFAULT);
        x = x.wrapping_add(1);
    }
}

#[test]
fn auth_responses() {
    let l = Limits::DEFAULT;
    assert_eq!(
        parse_auth_response(b"*\r\n", &l),
        Ok((3, AuthResponse::Cancel))
    );
    assert_eq!(
        parse_auth_response(b"AGFsaWNlAHNlY3JldA==\r\n", &l),
        Ok((22, AuthResponse::Response("AGFsaWNlAHNlY3JldA==")))
    );
    assert_eq!(
        parse_auth_response(b"\r\n", &l),
        Ok((2, AuthResponse::Response("")))
    );
    assert_eq!(
        parse_auth_response(b"=\r\n", &l),
        Ok((3, AuthResponse::Response("=")))
    );
    assert_eq!(
        parse_auth_response(b"abc\n", &l),
        Ok((4, AuthResponse::Response("abc")))
    );
    assert_eq!(parse_auth_response(b"abc", &l), Err(ParseError::Incomplete));
    assert_eq!(
        parse_auth_response(b"ab c\r\n", &l),
        Err(ParseError::Bad {
            consumed: 6,
            reason: Reason::InvalidArgument
        })
    );
    assert_eq!(
        parse_auth_response(b"a-b\r\n", &l),
        Err(ParseError::Bad {
            consumed: 5,
            reason: Reason::InvalidArgument
        })
    );
    // Longer than a command line may be, within the AUTH limit.
    let long = format!("{}\r\n", "QUJD".repeat(200));
    assert!(parse_auth_response(long.as_bytes(), &l).is_ok());
    assert_eq!(
        parse_auth_response("A".repeat(5000).as_bytes(), &l),
        Err(ParseError::TooLong)
    );
}
