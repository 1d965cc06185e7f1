#!/usr/bin/env python3
"""Writes the checked-in seed corpora under fuzz/corpus/<target>/seed-*.

Run from anywhere: python3 fuzz/make-seeds.py. Deterministic, so the seeds can be
regenerated and reviewed. The structured targets take `[L][control: L bytes][stream]`
(fuzz/src/lib.rs); the control block is decoded by `arbitrary` 1.x: integers little-endian,
bool = low bit of a byte, enum variant = (u32 LE * variant_count) >> 32, Vec = elements each
preceded by a "keep going" bool byte.
"""

import base64
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    assert len(data) <= 8192, (target, name, len(data))
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def framed(control, stream):
    assert len(control) < 256
    return bytes([len(control)]) + control + stream


def crlf(text):
    """Lines joined with CRLF, ending in CRLF."""
    return "".join(line + "\r\n" for line in text.split("\n")).encode()


# --------------------------------------------------------------------------------------
# smtp_command: single command lines without CRLF

COMMANDS = {
    "ehlo": b"EHLO mail.example.org",
    "ehlo-literal": b"EHLO [IPv6:2001:db8::1]",
    "helo": b"helo client.example.net",
    "mail-params": b"MAIL FROM:<bob@example.org> SIZE=31337 BODY=8BITMIME AUTH=<>",
    "mail-null": b"MAIL FROM:<>",
    "mail-utf8": "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8".encode(),
    "rcpt-route": b"RCPT TO:<@relay1.example,@[192.0.2.7]:alice@example.test>",
    "rcpt-quoted": b'RCPT TO:<"john \\"q\\" smith"@[IPv6:2001:db8::ffff:192.0.2.1]>',
    "rcpt-postmaster": b"rcpt to: <Postmaster>",
    "bdat": b"BDAT 1048576 LAST",
    "auth-plain": b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-secret-1"),
    "auth-login": b"AUTH LOGIN dXNlcg==",
    "misc": b"VRFY <postmaster@example.test>\tx",
    "help": b"HELP MAIL",
    "starttls": b"STARTTLS",
    "junk-utf8": "M\u00c0IL FROM:<a@b>".encode(),
}
for name, line in COMMANDS.items():
    write("smtp_command", name, line)

# --------------------------------------------------------------------------------------
# smtp_data: DATA bodies; control = normalize bool, then piece sizes (u16 each)


def data_control(normalize=False, pieces=()):
    c = bytes([1 if normalize else 0])
    for p in pieces:
        c += b"\x01" + struct.pack("<H", p)
    return c


MESSAGE = crlf(
    "Received: from client.example.org (client.example.org [192.0.2.10])\n"
    "\tby mx.example.test with ESMTP id 4F1C2A\n"
    "From: Bob <bob@example.org>\n"
    "To: Alice <alice@example.test>\n"
    "Subject: quarterly report\n"
    "Message-ID: <20240101120000.4F1C2A@example.org>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "\n"
    "Hello Alice,\n"
    ".leading dot, stuffed by the client:\n"
    "..\n"
    "...three\n"
    "Regards,\n"
    "Bob\n"
    "."
) + b"QUIT\r\n"

DATA = {
    "message": (data_control(), MESSAGE),
    "message-pieces": (data_control(pieces=(1, 2, 3, 5, 8, 13, 64)), MESSAGE),
    "empty": (data_control(), b".\r\n"),
    "smuggle-lf": (data_control(), b"a\r\n\n.\nMAIL FROM:<evil@x>\r\n.\r\n"),
    "smuggle-crlf-lf": (data_control(), b"a\r\n.\nRCPT TO:<x@y>\r\n.\r\n"),
    "smuggle-lf-crlf": (data_control(), b"a\n.\r\nDATA\r\n.\r\n"),
    "smuggle-cr": (data_control(), b"a\r.\rMAIL\r\n.\r\n"),
    "dot-cr": (data_control(), b"x\r\n.\rX\r\n.\r\n"),
    "cr-cr-lf": (data_control(), b"a\r\r\n.\r\n"),
    "binary": (data_control(), bytes(range(256)) + b"\r\n.\r\n"),
    "normalize": (data_control(normalize=True), b"a\nb\rc\n.\nd\r\n..e\r\n.\r\n"),
    "no-end": (data_control(pieces=(7,)), b"line one\r\nline two\r\n.\r"),
}
for name, (control, body) in DATA.items():
    write("smtp_data", name, framed(control, body))

# --------------------------------------------------------------------------------------
# smtp_session: dialogues; control = Cfg (13 bytes), answers, steps

STEPS = ["Feed", "FeedRepeat", "Delay", "Advance", "Shutdown", "PeerClosed", "TlsUp", "SlowTls"]
ANSWERS = ["Accept", "Queued", "Temporary", "Permanent", "Forge"]


def variant(names, name):
    i = names.index(name)
    # (v * count) >> 32 == i
    v = (i << 32) // len(names) + 1
    assert (v * len(names)) >> 32 == i
    return struct.pack("<I", v)


def cfg(starttls=0, auth=False, implicit=False, normalize=False, max_message_size=0):
    return (
        bytes([starttls, int(auth), int(implicit), int(normalize)])
        + struct.pack("<H", 0)
        + struct.pack("<I", max_message_size)
        + bytes([0, 0, 0])
    )


def answers(*items):
    out = b""
    for item in items:
        name, arg = (item, None) if isinstance(item, str) else item
        out += b"\x01" + variant(ANSWERS, name)
        if arg is not None:
            out += bytes([arg])
    return out + b"\x00"


def steps(*items):
    out = b""
    for item in items:
        name, arg = (item, b"") if isinstance(item, str) else item
        out += b"\x01" + variant(STEPS, name) + arg
    return out


def feed(n):
    return ("Feed", struct.pack("<H", n))


def session(name, stream, config=None, ans=b"\x00", st=b""):
    control = (config or cfg()) + ans + st
    write("smtp_session", name, framed(control, stream))


def b64(s):
    return base64.b64encode(s).decode()


BODY = (
    "Date: Mon, 1 Jan 2024 12:00:00 +0000\n"
    "From: bob@example.org\n"
    "To: alice@example.test\n"
    "Subject: test\n"
    "\n"
    "Hello.\n"
    "..a stuffed line\n"
    "."
)

# Postfix-like client (smtp(8) delivering to us): EHLO, one envelope, DATA, QUIT.
session(
    "postfix-like",
    crlf(
        "EHLO mail.example.org\n"
        "MAIL FROM:<bob@example.org> SIZE=180 BODY=8BITMIME\n"
        "RCPT TO:<alice@example.test>\n"
        "DATA\n" + BODY + "\nQUIT"
    ),
)

# swaks with its defaults.
session(
    "swaks",
    crlf(
        "EHLO client.example.net\n"
        "MAIL FROM:<root@client.example.net>\n"
        "RCPT TO:<alice@example.test>\n"
        "DATA\n"
        "Date: Mon, 01 Jan 2024 12:00:00 +0000\n"
        "To: alice@example.test\n"
        "From: root@client.example.net\n"
        "Subject: test Mon, 01 Jan 2024 12:00:00 +0000\n"
        "Message-Id: <20240101120000.001234@client.example.net>\n"
        "X-Mailer: swaks v20240103.0 jetmore.org/john/code/swaks/\n"
        "\n"
        "This is a test mailing\n"
        "\n"
        "\n"
        ".\n"
        "QUIT"
    ),
)

# RFC 2920 pipelining: the whole dialogue in one segment, two messages, a rejected recipient.
session(
    "pipelined",
    crlf(
        "EHLO pipe.example.org\n"
        "MAIL FROM:<a@example.org>\n"
        "RCPT TO:<alice@example.test>\n"
        "RCPT TO:<nobody@example.test>\n"
        "DATA\n" + BODY + "\n"
        "RSET\n"
        "MAIL FROM:<>\n"
        "RCPT TO:<bob@example.test>\n"
        "DATA\n" + BODY + "\nQUIT"
    ),
    ans=answers("Accept", "Accept", ("Permanent", 50), "Queued", "Accept", "Accept", "Queued"),
    st=steps(feed(4096)),
)

# RFC 3030 CHUNKING: BDAT chunks, one of size 0, then a second message.
chunk1 = b"Subject: bdat\r\n\r\nfirst chunk\r\n"
chunk2 = b"second chunk\n.\r\n"
session(
    "bdat",
    b"EHLO chunky.example.org\r\nMAIL FROM:<c@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
    + b"BDAT %d\r\n" % len(chunk1)
    + chunk1
    + b"BDAT %d\r\n" % len(chunk2)
    + chunk2
    + b"BDAT 0 LAST\r\n"
    + b"MAIL FROM:<c@example.org>\r\nRCPT TO:<alice@example.test>\r\nBDAT 5 LAST\r\nhello"
    + b"QUIT\r\n",
    st=steps(feed(37), feed(3), feed(200)),
)

# Submission on an implicit-TLS port, AUTH PLAIN with an initial response.
session(
    "auth-plain",
    crlf(
        "EHLO laptop\n"
        "AUTH PLAIN " + b64(b"\0alice@example.test\0wrong") + "\n"
        "AUTH PLAIN\n" + b64(b"\0alice@example.test\0alice-secret-1") + "\n"
        "MAIL FROM:<alice@example.test>\n"
        "RCPT TO:<bob@example.test>\n"
        "DATA\n" + BODY + "\nQUIT"
    ),
    config=cfg(auth=True, implicit=True),
    ans=answers(("Permanent", 35), "Accept"),
)

# Port 587: STARTTLS, then AUTH LOGIN.
session(
    "starttls-auth-login",
    crlf(
        "EHLO laptop\n"
        "MAIL FROM:<alice@example.test>\n"
        "STARTTLS\n"
        "EHLO laptop\n"
        "AUTH LOGIN\n"
        + b64(b"alice@example.test") + "\n"
        + b64(b"alice-secret-1") + "\n"
        "MAIL FROM:<alice@example.test>\n"
        "RCPT TO:<bob@example.test>\n"
        "DATA\n" + BODY + "\nQUIT"
    ),
    config=cfg(starttls=2, auth=True),
)

# STARTTLS command injection: commands pipelined after STARTTLS in the same segment.
session(
    "starttls-injection",
    b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
    + crlf("EHLO x\nMAIL FROM:<ok@example.org>\nQUIT"),
    config=cfg(starttls=1),
    st=steps(feed(10), feed(69), "SlowTls", "TlsUp"),
)

# SMTP smuggling attempts: bare-LF and bare-CR variants of the end of data.
session(
    "smuggling",
    b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
    b"Subject: s\r\n\r\nx\n.\nMAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
    b"DATA\r\nforged\r\n.\n\r.\r\r\n.\r\n"
    b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nok\r\n.\r\nQUIT\r\n",
)

# RFC 5321 D.1, a typical SMTP transaction.
session(
    "rfc5321-d1",
    crlf(
        "EHLO bar.com\n"
        "MAIL FROM:<Smith@bar.com>\n"
        "RCPT TO:<Jones@foo.com>\n"
        "RCPT TO:<Green@foo.com>\n"
        "RCPT TO:<Brown@foo.com>\n"
        "DATA\n"
        "Blah blah blah...\n"
        "...etc. etc. etc.\n"
        ".\n"
        "QUIT"
    ),
    ans=answers("Accept", "Accept", ("Permanent", 50), "Accept", "Accept"),
)

# Errors: junk, a sequence error, an overlong line, HELO without ESMTP parameters.
session(
    "errors",
    b"MAIL FROM:<a@b>\r\nHELO old.example\r\nMAIL FROM:<a@b> SIZE=10\r\nXYZZY\r\n"
    + b"NOOP " + b"x" * 2100 + b"\r\n"
    + b"RCPT TO:<alice@example.test>\r\nDATA\r\nVRFY alice\r\nHELP\r\nRSET\r\n"
    + b"MAIL FROM:<a@b>\r\nRCPT TO:<bad address>\r\nQUIT\r\n",
)

# Time passes mid-DATA, then the server shuts down during a transaction.
session(
    "timeout-shutdown",
    crlf("EHLO slow\nMAIL FROM:<a@example.org>\nRCPT TO:<alice@example.test>\nDATA\npart"),
    ans=answers("Accept", "Accept"),
    st=steps(feed(64), ("Delay", b"\x02"), "Shutdown", feed(50), ("Advance", struct.pack("<H", 200))),
)

# Size limit: a small max_message_size, a message just over it.
session(
    "too-big",
    crlf(
        "EHLO x\nMAIL FROM:<a@example.org> SIZE=100\nMAIL FROM:<a@example.org>\n"
        "RCPT TO:<alice@example.test>\nDATA\n" + "0123456789" * 8 + "\n.\n"
        "MAIL FROM:<a@example.org>\nRCPT TO:<alice@example.test>\nBDAT 200 LAST"
    )
    + b"y" * 200
    + b"QUIT\r\n",
    config=cfg(max_message_size=50),
)

# A stream of pipelined NOOPs cut mid-line again and again (the input buffer must not grow).
session(
    "noop-stream",
    b"EHLO x\r\nNOOP\r\nNO" + b"OP " + b"x" * 248 + b"\r\nNO",
    st=steps(feed(16), ("FeedRepeat", bytes([255]) + struct.pack("<H", 5000))),
)

# --------------------------------------------------------------------------------------
# smtp_reply: server replies; control = piece sizes, then an optional reply to round-trip


def reply_control(pieces=(), round_trip=None):
    c = b""
    for p in pieces:
        c += b"\x01" + struct.pack("<H", p)
    c += b"\x00"
    if round_trip is not None:
        code, enhanced, lines = round_trip
        c += b"\x01" + struct.pack("<H", code)
        if enhanced is None:
            c += b"\x00"
        else:
            c += b"\x01" + struct.pack("<HH", *enhanced)
        for line in lines:
            data = line.encode()
            # A String in a Vec: its length comes from the end of the data, so keep it last.
            c += b"\x01" + data
        c += b"\x00"
    return c


REPLIES = {
    "postfix-greeting": b"220 mx.example.org ESMTP Postfix (Debian/GNU)\r\n",
    "postfix-ehlo": crlf(
        "250-mx.example.org\n250-PIPELINING\n250-SIZE 10240000\n250-VRFY\n250-ETRN\n"
        "250-STARTTLS\n250-AUTH PLAIN LOGIN\n250-AUTH=PLAIN LOGIN\n250-ENHANCEDSTATUSCODES\n"
        "250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING"
    ),
    "pipelined-replies": crlf(
        "250 2.1.0 Ok\n250 2.1.5 Ok\n550 5.1.1 <nobody@example.test>: Recipient address rejected\n"
        "354 End data with <CR><LF>.<CR><LF>\n250 2.0.0 Ok: queued as 4F1C2A\n221 2.0.0 Bye"
    ),
    "multiline-error": crlf("550-5.7.1 Message rejected\n550-5.7.1 see https://example.org/why\n550 5.7.1 bye"),
    "bare-lf": b"250-mx\n250 8BITMIME\n",
    "bare-code": b"354\r\n250\r\n",
    "mixed-codes": b"250-a\r\n251 b\r\n",
    "class-mismatch": b"250 5.0.0 text that looks enhanced\r\n",
    "garbage": b"HTTP/1.1 400 Bad Request\r\n\r\n",
    "control-chars": b"550 5.7.1 \x1b[31mred\x07\x00\r\n",
    "split": b"250-first\r\n250 sec",
}
for name, stream in REPLIES.items():
    write("smtp_reply", name, framed(reply_control(), stream))
write(
    "smtp_reply",
    "pieces",
    framed(reply_control(pieces=(1, 3, 7)), REPLIES["postfix-ehlo"]),
)
write(
    "smtp_reply",
    "round-trip",
    framed(reply_control(round_trip=(50, (1, 5), ["Ok: queued as Q1"])), b""),
)

# --------------------------------------------------------------------------------------
# imap_command: client command streams; control = limits (zeros: defaults), cuts


def imap_control(cuts=()):
    c = struct.pack("<HHI", 0, 0, 0)
    for k in cuts:
        c += b"\x01" + struct.pack("<H", k)
    return c


IMAP = {
    "thunderbird": crlf(
        "1 capability\n"
        "2 authenticate PLAIN\n"
        + b64(b"\0alice@example.test\0alice-secret-1") + "\n"
        "3 ID (\"name\" \"Thunderbird\" \"version\" \"115.6.0\")\n"
        "4 list (subscribed) \"\" \"*\" return (special-use)\n"
        "5 select \"INBOX\" (CONDSTORE)\n"
        "6 UID fetch 1:* (FLAGS) (CHANGEDSINCE 1)\n"
        "7 UID fetch 1:4 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\n"
        "8 IDLE\n"
        "DONE\n"
        "9 logout"
    ),
    "ios-mail": crlf(
        "1.1 ID (\"name\" \"iPhone Mail\" \"version\" \"21B101\" \"os\" \"iOS\" \"os-version\" \"17.1.2\")\n"
        "2.1 LOGIN \"alice@example.test\" {14}\nalice-secret-1\n"
        "3.1 ENABLE QRESYNC\n"
        "4.1 SELECT INBOX\n"
        "5.1 UID SEARCH 1:* NOT DELETED\n"
        "6.1 UID FETCH 1:10 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]<0.2048>)\n"
        "7.1 NOOP"
    ),
    "mutt": crlf(
        "a0000 CAPABILITY\n"
        "a0001 LOGIN alice@example.test alice-secret-1\n"
        "a0002 LIST \"\" \"\"\n"
        "a0003 STATUS \"INBOX\" (MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)\n"
        "a0004 SELECT \"INBOX\"\n"
        "a0005 FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL X-ORIGINAL-TO)])\n"
        "a0006 UID STORE 3 +FLAGS.SILENT (\\Seen \\Flagged)\n"
        "a0007 UID COPY 3 \"Archive\"\n"
        "a0008 EXPUNGE\n"
        "a0009 LOGOUT"
    ),
    "append": b"A003 APPEND saved-messages (\\Seen) \"07-Feb-1994 21:52:25 -0800\" {21}\r\n"
    + b"Subject: x\r\n\r\nhello\r\n\r\n"
    + b"A004 APPEND Drafts {5+}\r\nhello\r\nA005 NOOP\r\n",
    "search": crlf(
        "s1 SEARCH CHARSET UTF-8 OR (FROM \"bob\" SINCE 1-Feb-1994) NOT (SUBJECT {3}\nfoo LARGER 1000) UID 1:5,7,9:*\n"
        "s2 UID SEARCH RETURN (MIN MAX COUNT) UNKEYWORD $Junk HEADER \"List-Id\" \"x\""
    ),
    "literals": b"L1 LOGIN {5}\r\nalice {14+}\r\nalice-secret-1\r\nL2 RENAME \"a\" {1}\r\nb\r\n",
    "errors": crlf(
        "\n* NOOP\nx UNKNOWN\nx FETCH\nx FETCH 0 FLAGS\nx STORE 1 +FLAGS (\\Recent)\nx SELECT \"unterminated"
    )
    + b"x LOGIN {99999999999}\r\n",
    "rfc3501-examples": crlf(
        "a002 select inbox\n"
        "a003 fetch 12 full\n"
        "a004 fetch 12 body[header]\n"
        "A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\n"
        "A003 STORE 2:4 +FLAGS (\\Deleted)\n"
        "A202 EXPUNGE\n"
        "A682 LIST \"\" *\n"
        "A142 SELECT INBOX\n"
        "A003 CREATE owatagusiam/\n"
        "A042 STATUS blurdybloop (UIDNEXT MESSAGES)\n"
        "A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\n"
        "A999 UID FETCH 4827313:4828442 FLAGS\n"
        "A341 CLOSE"
    ),
    "utf7-mailboxes": crlf(
        "m1 CREATE \"&ZeVnLIqe-\"\nm2 SELECT \"Entw&APw-rfe\"\nm3 DELETE \"&Jjo-!\"\nm4 SUBSCRIBE ~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    ),
}
for name, stream in IMAP.items():
    write("imap_command", name, framed(imap_control(cuts=(5, 40)), stream))

# Found by hand (fuzz/README.md, crash 1): an answer held back, then shutdown; and the peer
# going away during a password check.
session(
    "shutdown-while-pending",
    b"EHLO x\r\nMAIL FROM:<a@example.org>\r\n",
    st=steps(("Delay", b"\x03"), feed(40), "Shutdown"),
)
session(
    "peer-closed-during-auth",
    crlf("EHLO laptop\nAUTH PLAIN " + b64(b"\0alice@example.test\0alice-secret-1")),
    config=cfg(auth=True, implicit=True),
    st=steps(("Delay", b"\x03"), feed(60), "PeerClosed"),
)


# POP3 commands and sessions, IMAP sessions, and an outbound SMTP client's view of real
# servers (Postfix, Exim with CHUNKING, sendmail with STARTTLS and AUTH, refusals). The
# control blocks are left empty (default script: config off, stream fed line by line at the
# end) except pop3_command's, whose first byte picks small line limits.
NEW_SEEDS = {
    'pop3_command': {
        'apop-errors': b'\x00APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\nuser x\nretr 99999999999\r\nTOP 1\r\nLIST a\r\n\r\nXYZZY\r\n',
        'capa-stls-auth': b'\x00CAPA\r\nSTLS\r\nAUTH\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN =\r\n*\r\n',
        'too-long': b'\x10USER aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nNOOP\r\nSTAT',
        'user-pass': b'\x00USER alice\r\nPASS secret words\r\nSTAT\r\nLIST\r\nLIST 2\r\nRETR 1\r\nTOP 1 10\r\nUIDL\r\nDELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n',
    },
    'pop3_session': {
        'auth-plain': b'\x00AUTH\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nSTAT\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n',
        'failures': b'\x00USER alice\r\nPASS wrong\r\nUSER alice\r\nPASS wrong\r\nAPOP mrose c4c9334bac560ecc979e58001b3e22fb\r\nXYZZY\r\n\r\nRETR x\r\nQUIT\r\n',
        'pipelined': b'\x00AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nLIST\r\nUIDL\r\nRETR 1\r\nRETR 2\r\nTOP 1 3\r\nQUIT\r\n',
        'stls-injection': b'\x00STLS\r\nUSER injected\r\n',
        'stls-user-pass': b'\x00CAPA\r\nSTLS\r\nCAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nLIST 1\r\nRSET\r\nNOOP\r\nQUIT\r\n',
        'transaction-errors': b'\x00USER alice\r\nPASS secret\r\nRETR 1\r\nRETR 99\r\nTOP 1\r\nDELE 1\r\nDELE 1\r\nRETR 1\r\nLIST 1\r\nUIDL 2\r\nUSER bob\r\nSTLS\r\nQUIT\r\n',
    },
    'imap_session': {
        'append': b'\x00a LOGIN alice secret\r\nb APPEND INBOX (\\Seen) {11}\r\nHello world\r\nc APPEND Drafts {5+}\r\nhello\r\nd LOGOUT\r\n',
        'auth-idle': b'\x00A1 AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nA2 SELECT INBOX\r\nA3 IDLE\r\nDONE\r\nA4 NOOP\r\nA5 LOGOUT\r\n',
        'literals': b'\x00a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\na2 ID ("name" "mutt")\r\na3 ENABLE CONDSTORE\r\na4 LOGOUT\r\n',
        'search-errors': b'\x00a LOGIN alice secret\r\nb SELECT INBOX\r\nc UID SEARCH UNSEEN SINCE 1-Feb-1994\r\nd EXAMINE "&ZeVnLIqe-"\r\ne UID MOVE 1:3 Trash\r\nf BOGUS\r\n* NOOP\r\n+ x\r\ng LOGOUT\r\n',
        'starttls-injection': b'\x00a STARTTLS\r\nb LOGIN injected secret\r\n',
        'thunderbird': b'\x00a001 CAPABILITY\r\na002 STARTTLS\r\na003 CAPABILITY\r\na004 LOGIN alice secret\r\na005 LIST "" "*"\r\na006 SELECT INBOX\r\na007 FETCH 1:* (FLAGS UID RFC822.SIZE)\r\na008 UID STORE 1 +FLAGS (\\Seen)\r\na009 CLOSE\r\na010 LOGOUT\r\n',
    },
    'smtp_client': {
        '421': b'\x120 mx ok\r\n250-mx\r\n250-SIZE\r\n250 8BITMIME\r\n421 4.3.2 Service shutting down\r\n',
        '554-greeting': b'-4 5.7.1 mx.example.net: no SMTP service here\r\n',
        'exim-chunking': b'\x120 mx.example.org ESMTP Exim 4.96 Mon, 24 Nov 2026 10:00:00 +0000\r\n250-mx.example.org Hello client.test [192.0.2.1]\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 HELP\r\n250 OK\r\n250 Accepted\r\n550 5.1.1 <r1@example.net>: Recipient address rejected: User unknown\r\n250- 1234 byte chunk, total 1234\r\n250 OK id=1vABCD-000123-XY\r\n',
        'multiline-451': b'\x120-mx.example.net first\r\n220-second\r\n220 third\r\n250 mx.example.net\r\n451 4.3.0 Error: queue file write error\r\n',
        'postfix': b'\x120 mx.example.net ESMTP Postfix (Debian/GNU)\r\n250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 4F2D81234\r\n221 2.0.0 Bye\r\n',
        'starttls-auth': b'\x120 relay.example.com ESMTP Sendmail 8.17.1; Mon, 24 Nov 2026\r\n250-relay.example.com Hello client.test [192.0.2.1], pleased to meet you\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 HELP\r\n220 2.0.0 Ready to start TLS\r\n250-relay.example.com\r\n250 AUTH PLAIN LOGIN\r\n235 2.7.0 Authentication successful\r\n',
        'starttls-injection': b'\x120 mx\r\n250-mx\r\n250-STARTTLS\r\n250 PIPELINING\r\n220 go ahead\r\n250 injected after STARTTLS\r\n',
    },
}
for target, seeds in NEW_SEEDS.items():
    for name, data in seeds.items():
        write(target, name, data)


# ---------------------------------------------------------------------------------------
# imap_mime, imap_search, imap_response
#
# imap_mime: `\0` + a message (no sections asked for in the control block: the target walks
# every part of the tree anyway); the test fixtures of server/tests/fixtures/imap plus the
# messages below. imap_search: a control block (metadata) + a SEARCH key line + a message.
# imap_response: bytes for `arbitrary` (any bytes decode to some responses).

FIXTURES = os.path.join(HERE, "..", "server", "tests", "fixtures", "imap")

MESSAGES = {
    "nested-rfc822": crlf(
        "From: a@example.com\nTo: b@example.com\nSubject: fwd\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"A\"\n\npreamble\n--A\n"
        "Content-Type: text/plain\n\nsee below\n--A\nContent-Type: message/rfc822\n\n"
        "From: c@example.com\nSubject: inner\nContent-Type: multipart/alternative; boundary=B\n\n"
        "--B\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
        "caf=C3=A9\n--B\nContent-Type: text/html\n\n<p>caf&eacute;</p>\n--B--\n"
        "--A\nContent-Type: message/rfc822\n\nSubject: bare\n\nbody only\n--A--\nepilogue\n"
    ),
    "encoded-words": crlf(
        "From: =?UTF-8?B?SsO2cmc=?= <j@example.de>, \"Doe, John\" <john@example.com>\n"
        "To: undisclosed-recipients:;\nCc: team: a@x.org, (comment) b@y.org;\n"
        "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= and =?UTF-8?Q?=E2=82=AC?=\n"
        "Date: Mon, 24 Nov 2025 10:00:00 +0100\nMessage-ID: <m1@example.de>\n"
        "Content-Type: text/plain; charset*0*=utf-8''a%20; charset*1=b\n"
        "Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC.txt\n"
        "Content-Language: de, en\nContent-Location: http://example.com/\n a/b\n\n"
        "Gr\xfc\xdfe\n"
    ),
    "digest": crlf(
        "Subject: digest\nContent-Type: multipart/digest; boundary=d\n\n--d\n\n"
        "Subject: one\n\nfirst\n--d\nContent-Type: text/plain\n\nsecond\n--d--\n"
    ),
    "broken-mime": crlf(
        "Subject: broken\nContent-Type: multipart/mixed; boundary=\"x\"\n"
        "Content-Transfer-Encoding: base64\n\n--x \n\n--x\nContent-Type: message/rfc822\n"
        "Content-Transfer-Encoding: base64\n\nU3ViamVjdDogeAo=\n--xy\n--x--junk\n"
        "--x\nContent-Type: multipart/related\n\n--x--\n"
    ),
    "no-boundary": b"Subject: m\r\nContent-Type: multipart/mixed\r\n\r\nno parts here\r\n",
    "bare-lf-nul": b"Subject: a\x00b\nFrom: <@route,@r2:u@h>\n\nline\x00\n.\n",
    "header-only": b"Subject: no body\r\nX-A: folded\r\n  line\r\n",
    "empty-line-first": b"\r\nbody without header\r\n",
}


def imap_seeds():
    msgs = dict(MESSAGES)
    for f in sorted(os.listdir(FIXTURES)):
        if f.endswith(".eml"):
            with open(os.path.join(FIXTURES, f), "rb") as fh:
                msgs["fixture-" + f[:-4]] = fh.read()
    for name, m in msgs.items():
        write("imap_mime", name, framed(b"", m))
    # Metadata: flags (\Seen \Flagged), keywords, \Recent, size, day, second, seq, uid,
    # max_seq, max_uid (arbitrary's encoding: little-endian integers).
    meta = (bytes([0x05, 0x03, 0x01]) + (493).to_bytes(4, "little")
            + (9000).to_bytes(2, "little") + (3600).to_bytes(4, "little")
            + (12).to_bytes(2, "little") + (1001).to_bytes(4, "little")
            + (20).to_bytes(2, "little") + (2000).to_bytes(4, "little"))
    searches = {
        "flags": ("SEEN UNANSWERED NOT DELETED KEYWORD Work UNKEYWORD $Junk", "fixture-simple"),
        "or-not": ("OR (FLAGGED NEW) NOT (SMALLER 100 LARGER 10) 1:5,12,*", "fixture-simple"),
        "dates": ("SENTSINCE 1-Jul-1996 SENTBEFORE 1-Aug-1996 SINCE 1-Jan-2020 ON 24-Jul-2024", "fixture-simple"),
        "headers": ("FROM carol SUBJECT report HEADER Content-Language en TO \"\"", "fixture-mixed"),
        "text-body": ("TEXT caf\xc3\xa9 BODY report", "nested-rfc822"),
        "charset": ("CHARSET UTF-8 SUBJECT {4}\r\n\xe2\x82\xac!", "encoded-words"),
        "uid": ("UID 1000:1002 NOT UID 5:* OR SENTON 24-Nov-2025 CC team", "encoded-words"),
    }
    for name, (keys, msg) in searches.items():
        key_bytes = keys.encode("latin-1")
        write("imap_search", name, framed(meta, key_bytes + b"\r\n" + msgs[msg]))
    # imap_response: any bytes are some responses; a few shapes to start from.
    write("imap_response", "zeros", bytes(64))
    write("imap_response", "ones", bytes([1]) * 64)
    write("imap_response", "ramp", bytes(range(256)))
    write("imap_response", "text", b"* OK [CAPABILITY IMAP4rev1 IDLE] ironpost ready" * 4)


imap_seeds()
