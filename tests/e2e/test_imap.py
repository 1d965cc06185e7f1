"""IMAP end to end: Python's imaplib (and a raw client where the order of untagged responses
matters) against ironpost on 143 (STARTTLS) and 993 (implicit TLS), mail delivered over
SMTP, and curl's imaps:// client."""

from __future__ import annotations

import imaplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from e2e_helpers import (
    ACCOUNTS, HOSTNAME, LOOPBACK, RawSmtp, make_message, wait_until,
)

ALICE = "alice@example.test"
BOB = "bob@example.test"
TIMEOUT = 10


# -- clients ------------------------------------------------------------------------------
def client_context(server) -> ssl.SSLContext:
    """Verifies the server's certificate; imaplib connects to 127.0.0.1, so the name is not
    checked here (RawImap checks it)."""
    ctx = server.tls_context()
    ctx.check_hostname = False
    return ctx


def imaps(server, user: str | None = ALICE) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL(LOOPBACK, server.port("imaps"), ssl_context=client_context(server),
                          timeout=TIMEOUT)
    if user:
        typ, _ = m.login(user, ACCOUNTS[user])
        assert typ == "OK"
    return m


def tagged_is(tagged: bytes, start: bytes) -> bool:
    """Whether a tagged response (any tag) begins with `start` (`OK [READ-ONLY]`, `NO`...)."""
    return re.match(rb"^t\d+ " + re.escape(start), tagged) is not None


def ok(result, what: str = ""):
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


class RawImap:
    """A strict, low-level IMAP client: commands go out as given, responses come back as
    lines (a line ending in a literal carries the literal and the rest of the response)."""

    def __init__(self, port: int, tls_context: ssl.SSLContext | None = None,
                 timeout: float = TIMEOUT):
        self.timeout = timeout
        sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=HOSTNAME)
        self.sock = sock
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete response in time; have {self.buf!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise TimeoutError(f"no complete response in time; have {self.buf!r}")
        if not chunk:
            raise EOFError(f"connection closed; have {self.buf!r}")
        self.buf += chunk

    def line(self, timeout: float | None = None) -> bytes:
        """One response: through CRLF, literals included."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill(deadline)
            i = self.buf.index(b"\r\n") + 2
            part, self.buf = self.buf[:i], self.buf[i:]
            out += part
            m = re.search(rb"\{(\d+)\}\r\n$", part)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill(deadline)
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def pending(self, wait: float) -> list[bytes]:
        """Responses that arrive within `wait` seconds."""
        out = []
        deadline = time.monotonic() + wait
        while True:
            try:
                out.append(self.line(max(deadline - time.monotonic(), 0.001)))
            except TimeoutError:
                return out

    def cmd(self, text: str | bytes, timeout: float | None = None) -> tuple[list[bytes], bytes]:
        """Sends a tagged command; returns its untagged responses and its tagged one."""
        self.n += 1
        tag = f"t{self.n}".encode()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag + b" " + text + b"\r\n")
        untagged = []
        while True:
            ln = self.line(timeout)
            if ln.startswith(tag + b" "):
                return untagged, ln
            untagged.append(ln)

    def ok(self, text: str | bytes) -> list[bytes]:
        untagged, tagged = self.cmd(text)
        assert re.match(rb"^t\d+ OK", tagged), f"{text!r}: {tagged!r} after {untagged!r}"
        return untagged

    def login(self, user: str = ALICE) -> None:
        self.ok(f'LOGIN "{user}" "{ACCOUNTS[user]}"')

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw(server, user: str | None = ALICE) -> RawImap:
    c = RawImap(server.port("imaps"), server.tls_context())
    if user:
        c.login(user)
    return c


def deliver(server, message: bytes, to: str = ALICE, sender: str = "sender@remote.test") -> None:
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        r = c.mail_transaction(sender, [to], message)
        assert r.code == 250, str(r)
        c.quit()


def fetch_uids(m: imaplib.IMAP4) -> list[int]:
    data = ok(m.fetch("1:*", "(UID)"), "FETCH UID")
    return [int(re.search(rb"UID (\d+)", d).group(1)) for d in data if d]


def untagged(m: imaplib.IMAP4, name: str) -> list:
    """imaplib keeps untagged responses by name; take them."""
    return m.untagged_responses.pop(name, [])


def mail_tree(server) -> dict[str, bytes]:
    root = server.data_dir / "mail"
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(root.rglob("*"))
            if not p.name.startswith("dovecot-") and p.name not in ("subscriptions",)}


# -- connection, TLS and login ---------------------------------------------------------------
def test_starttls_on_143_login_refused_before_tls(server):
    m = imaplib.IMAP4(LOOPBACK, server.port("imap"), timeout=TIMEOUT)
    try:
        assert "STARTTLS" in m.capabilities and "LOGINDISABLED" in m.capabilities
        assert "AUTH=PLAIN" not in m.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            m.login(ALICE, ACCOUNTS[ALICE])
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            m.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{ACCOUNTS[ALICE]}".encode())
        ok(m.starttls(client_context(server)), "STARTTLS")
        assert "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities
        assert "STARTTLS" not in m.capabilities
        ok(m.login(ALICE, ACCOUNTS[ALICE]), "LOGIN")
        caps = ok(m.capability())[0].decode().split()
        for cap in ["IMAP4rev1", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN",
                    "SPECIAL-USE"]:
            assert cap in caps, caps
        ok(m.select("INBOX"))
    finally:
        m.logout()


def test_starttls_pipelined_login_is_discarded(server):
    """A LOGIN sent in cleartext right behind STARTTLS never runs."""
    c = RawImap(server.port("imap"))
    try:
        c.send(f"a STARTTLS\r\nb LOGIN {ALICE} {ACCOUNTS[ALICE]}\r\n")
        assert c.line().startswith(b"a OK")
        c.sock = server.tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
        assert c.pending(0.5) == [], "the pipelined LOGIN was answered"
        _, tagged = c.cmd("NOOP")
        assert tagged_is(tagged, b"OK")
        untagged, _ = c.cmd("CAPABILITY")
        assert b"AUTH=PLAIN" in untagged[0] and b"NAMESPACE" not in untagged[0]
    finally:
        c.close()


def test_imaps_993_implicit_tls(server):
    c = RawImap(server.port("imaps"), server.tls_context())
    try:
        assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
        assert b"AUTH=PLAIN" in c.greeting and b"STARTTLS" not in c.greeting
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        c.login()
        assert c.ok("NAMESPACE") == [b'* NAMESPACE (("" ".")) NIL NIL\r\n']
        untagged, tagged = c.cmd("LOGOUT")
        assert untagged == [b"* BYE Logging out\r\n"] and tagged_is(tagged, b"OK")
    finally:
        c.close()


def test_authenticate_plain(server):
    m = imaps(server, user=None)
    try:
        ok(m.authenticate("PLAIN", lambda _: f"\0{BOB}\0{ACCOUNTS[BOB]}".encode()))
        ok(m.select("INBOX"))
    finally:
        m.logout()
    c = raw(server, user=None)
    try:
        import base64
        token = base64.b64encode(f"\0{ALICE}\0{ACCOUNTS[ALICE]}".encode()).decode()
        assert tagged_is(c.cmd(f"AUTHENTICATE PLAIN {token}")[1], b"OK [CAPABILITY")
    finally:
        c.close()


def test_wrong_password_then_bye_after_the_limit(server):
    c = raw(server, user=None)
    try:
        for i in range(1, 4):
            _, tagged = c.cmd(f'LOGIN "{ALICE}" "wrong-{i}"')
            assert tagged == f"t{i} NO [AUTHENTICATIONFAILED] Authentication failed\r\n".encode()
        assert c.line().startswith(b"* BYE")
        with pytest.raises(EOFError):
            c.line()
    finally:
        c.close()
    m = imaps(server, user=None)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            m.login("nobody@example.test", "x")
        ok(m.login(ALICE, ACCOUNTS[ALICE]), "a good login after a bad one")
    finally:
        m.logout()


# -- mailboxes ----------------------------------------------------------------------------------
def test_select_and_examine(server):
    deliver(server, make_message("one"))
    deliver(server, make_message("two"))
    server.wait_messages(ALICE, 2)
    c = raw(server)
    try:
        resp = c.ok("SELECT INBOX")
        text = b"".join(resp).decode()
        assert "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)" in text, text
        assert re.search(r"\* OK \[PERMANENTFLAGS \(\\Answered \\Flagged \\Deleted \\Seen "
                         r"\\Draft \\\*\)\]", text), text
        assert "* 2 EXISTS\r\n" in text and "* 2 RECENT\r\n" in text
        assert "* OK [UNSEEN 1]" in text
        assert re.search(r"\* OK \[UIDVALIDITY \d+\]", text)
        assert "* OK [UIDNEXT 3]" in text
        c.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
        _, tagged = c.cmd("EXAMINE INBOX")
        assert tagged_is(tagged, b"OK [READ-ONLY]"), tagged
        # Another look: \Recent was claimed by the SELECT above.
        resp = b"".join(c.ok("EXAMINE INBOX")).decode()
        assert "* 0 RECENT" in resp and "* OK [UNSEEN 2]" in resp
        assert "* OK [PERMANENTFLAGS ()]" in resp
        _, tagged = c.cmd("STORE 1 +FLAGS (\\Flagged)")
        assert tagged_is(tagged, b"NO"), tagged
        _, tagged = c.cmd("SELECT INBOX")
        assert tagged_is(tagged, b"OK [READ-WRITE]"), tagged
        _, tagged = c.cmd("SELECT Nonexistent")
        assert tagged_is(tagged, b"NO [NONEXISTENT]"), tagged
        # A failed SELECT leaves nothing selected.
        _, tagged = c.cmd("FETCH 1 FLAGS")
        assert tagged_is(tagged, b"BAD"), tagged
    finally:
        c.close()


def test_list_lsub_and_special_use(server):
    m = imaps(server)
    try:
        listed = [d.decode() for d in ok(m.list('""', "*"))]
        names = {ln.rsplit(" ", 1)[1]: ln for ln in listed}
        assert set(names) == {"INBOX", "Drafts", "Junk", "Sent", "Trash"}, listed
        assert "\\Sent" in names["Sent"] and "\\Drafts" in names["Drafts"]
        assert "\\Trash" in names["Trash"] and "\\Junk" in names["Junk"]
        assert all(' "." ' in ln for ln in listed)
        ok(m.create("Projects.2025"))
        ok(m.create("Projects.2025.Q1"))
        ok(m.create("Entw&APw-rfe"))  # modified UTF-7 for Entwürfe
        listed = [d.decode() for d in ok(m.list('""', "%"))]
        top = {ln.rsplit(" ", 1)[1]: ln for ln in listed}
        assert "Projects" in top and "Projects.2025" not in top, listed
        assert "\\Noselect" in top["Projects"] and "\\HasChildren" in top["Projects"]
        assert "\\HasNoChildren" in top["INBOX"]
        assert "Entw&APw-rfe" in top
        listed = [d.decode() for d in ok(m.list("Projects.", "%"))]
        assert listed == ['(\\HasChildren) "." Projects.2025'], listed
        listed = [d.decode() for d in ok(m.list('""', "Projects.*"))]
        assert [ln.rsplit(" ", 1)[1] for ln in listed] == ["Projects.2025", "Projects.2025.Q1"]
        assert ok(m.list('""', '""')) == [b'(\\Noselect) "." ""']
        assert ok(m.list('""', "inbox")) == [b'(\\HasNoChildren) "." INBOX']
        # Subscriptions: the special-use folders are subscribed on first login.
        lsub = sorted(d.decode().rsplit(" ", 1)[1] for d in ok(m.lsub('""', "*")))
        assert lsub == ["Drafts", "Junk", "Sent", "Trash"], lsub
        ok(m.subscribe("Projects.2025"))
        ok(m.unsubscribe("Junk"))
        lsub = sorted(d.decode().rsplit(" ", 1)[1] for d in ok(m.lsub('""', "*")))
        assert lsub == ["Drafts", "Projects.2025", "Sent", "Trash"], lsub
        # RFC 3501 6.3.9: `%` gives the unsubscribed parent of a subscribed name, \Noselect.
        top = ok(m.lsub('""', "%"))
        assert b'(\\Noselect) "." Projects' in top, top
        assert not any(b"Projects.2025" in ln for ln in top), top
        assert (server.maildir(ALICE) / ".Entw&APw-rfe" / "cur").is_dir()
    finally:
        m.logout()


def test_create_delete_rename(server):
    m = imaps(server)
    try:
        ok(m.create("Work"))
        typ, data = m.create("Work")
        assert typ == "NO" and b"ALREADYEXISTS" in data[0]
        ok(m.create("Work.Old"))
        ok(m.append("Work.Old", None, None, make_message("kept")))
        ok(m.rename("Work", "Archive"))
        names = [d.decode().rsplit(" ", 1)[1] for d in ok(m.list('""', "*"))]
        assert "Archive" in names and "Archive.Old" in names and "Work" not in names
        ok(m.select("Archive.Old"))
        assert fetch_uids(m) == [1]
        ok(m.close())
        typ, data = m.delete("INBOX")
        assert typ == "NO", data
        typ, data = m.delete("Nonexistent")
        assert typ == "NO" and b"NONEXISTENT" in data[0]
        ok(m.delete("Archive.Old"))
        ok(m.delete("Archive"))
        names = [d.decode().rsplit(" ", 1)[1] for d in ok(m.list('""', "*"))]
        assert "Archive" not in names and "Archive.Old" not in names
        assert not (server.maildir(ALICE) / ".Archive").exists()
        # RENAME INBOX moves its messages into the new folder and leaves INBOX empty.
        ok(m.append("INBOX", None, None, make_message("in inbox")))
        ok(m.rename("INBOX", "Saved"))
        assert int(ok(m.select("INBOX"))[0]) == 0
        assert int(ok(m.select("Saved"))[0]) == 1
    finally:
        m.logout()


def test_status(server):
    deliver(server, make_message("s1"))
    deliver(server, make_message("s2"))
    server.wait_messages(ALICE, 2)
    m = imaps(server)
    try:
        data = ok(m.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"))[0].decode()
        assert re.fullmatch(r"INBOX \(MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY \d+ UNSEEN 2\)",
                            data), data
        ok(m.select("INBOX"))
        ok(m.store("1", "+FLAGS", "\\Seen"))
        data = ok(m.status("INBOX", "(UNSEEN MESSAGES)"))[0].decode()
        assert data == "INBOX (MESSAGES 2 UNSEEN 1)", data
        data = ok(m.status("Sent", "(MESSAGES)"))[0].decode()
        assert data == "Sent (MESSAGES 0)"
        typ, data = m.status("Nope", "(MESSAGES)")
        assert typ == "NO" and b"NONEXISTENT" in data[0]
    finally:
        m.logout()


# -- APPEND and FETCH ---------------------------------------------------------------------------
def test_append_then_fetch_byte_exact(server):
    body = bytes(range(32, 127)) * 20 + b"\r\n" + "caf\u00e9 \u2603\r\n".encode() + b"x" * 5000
    msg = (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
           b"Subject: exact\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           b"\r\n" + body + b"\r\n")
    big = make_message("big", b"".join(b"line %06d %s\r\n" % (i, b"y" * 60) for i in range(40000)))
    m = imaps(server)
    try:
        typ, data = m.append("INBOX", "(\\Flagged $Important)", '"14-Jul-2021 02:44:25 +0200"',
                             msg)
        assert typ == "OK"
        mm = re.match(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
        assert mm and mm.group(2) == b"1", data
        ok(m.append("INBOX", None, None, big))
        ok(m.select("INBOX"))
        data = ok(m.uid("FETCH", "1", "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"))
        meta, content = data[0]
        assert content == msg
        assert b"RFC822.SIZE %d" % len(msg) in meta
        assert b'INTERNALDATE "14-Jul-2021 00:44:25 +0000"' in meta, meta
        assert re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).split() == \
            [b"\\Flagged", b"$Important", b"\\Recent"], meta
        data = ok(m.uid("FETCH", "2", "(BODY.PEEK[] BODY.PEEK[]<100.50>)"))
        assert data[0][1] == big and data[1][1] == big[100:150]
        # The file on disk is the message as appended.
        files = list((server.maildir(ALICE) / "cur").iterdir())
        assert sorted(p.read_bytes() for p in files) == sorted([msg, big])
        typ, data = m.append("NoSuchBox", None, None, msg)
        assert typ == "NO" and b"TRYCREATE" in data[0], data
        with pytest.raises(imaplib.IMAP4.error, match="BAD"):
            m.append("INBOX", "(\\Bogus)", None, msg)
    finally:
        m.logout()
    assert list((server.maildir(ALICE) / "tmp").iterdir()) == []


def test_append_in_pieces_with_literal_plus(server):
    """A synchronising literal APPEND sent slowly, and a LITERAL+ one in the same write as
    the command: both land exactly."""
    msg = make_message("pieces", b"z" * 300000 + b"\r\n")
    c = raw(server)
    try:
        c.send(f"a APPEND INBOX (\\Seen) {{{len(msg)}}}\r\n")
        assert c.line().startswith(b"+ ")
        for i in range(0, len(msg), 7000):
            c.send(msg[i:i + 7000])
        c.send(b"\r\n")
        assert re.match(rb"a OK \[APPENDUID \d+ 1\] ", c.line())
        c.send(f"b APPEND Drafts {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        assert re.match(rb"b OK \[APPENDUID \d+ 1\] ", c.line())
        c.ok("SELECT Drafts")
        resp = c.ok("FETCH 1 BODY.PEEK[]")
        assert resp[0].endswith(b"{%d}\r\n" % len(msg) + msg + b")\r\n")
    finally:
        c.close()



# -- UTF8=ACCEPT (RFC 6855 / RFC 9755) ----------------------------------------------------------
def test_utf8_accept_names_append_and_a_session_without_it(server):
    """A client that enables UTF8=ACCEPT names mailboxes in UTF-8 both ways and APPENDs with
    the UTF8 data extension (literal8, synchronising and LITERAL+); a session that did not
    enable it sees the same mailboxes in modified UTF-7, and the folders on disk are named
    in modified UTF-7 as ever."""
    msg = ("From: J\u00fcrgen <j@remote.test>\r\nTo: alice@example.test\r\n"
           "Subject: Gr\u00fc\u00dfe aus \u65e5\u672c\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n"
           "\u65e5\u672c\u8a9e (a parenthesis, then a CRLF)\r\n").encode()
    drafts, jp = "Entw\u00fcrfe", "\u65e5\u672c\u8a9e"
    m = imaps(server)
    try:
        assert "UTF8=ACCEPT" in m.capabilities and "ENABLE" in m.capabilities
        typ, data = m._simple_command("ENABLE", "UTF8=ACCEPT")
        assert typ == "OK", data
        assert untagged(m, "ENABLED") == [b"UTF8=ACCEPT"]
        # Enabled again: nothing new is enabled.
        typ, data = m._simple_command("ENABLE", "UTF8=ACCEPT")
        assert typ == "OK" and untagged(m, "ENABLED") == [b""], data
        # imaplib sends bytes arguments as they are.
        ok(m._simple_command("CREATE", f'"{drafts}"'.encode()), "CREATE")
        ok(m._simple_command("CREATE", f'"{jp}"'.encode()), "CREATE")
        listed = ok(m.list('""', "*"))
        assert f'(\\HasNoChildren) "." "{drafts}"'.encode() in listed, listed
        assert f'(\\HasNoChildren) "." "{jp}"'.encode() in listed, listed
        assert not any(b"&" in ln for ln in listed), listed
        typ, data = m._simple_command("STATUS", f'"{jp}"'.encode(), "(MESSAGES)")
        assert typ == "OK", data
        assert untagged(m, "STATUS") == [f'"{jp}" (MESSAGES 0)'.encode()]
        ok(m.select(f'"{drafts}"'.encode()), "SELECT")
        # RFC 6855 3 (errata 4029): no CHARSET once UTF-8 is on.
        with pytest.raises(imaplib.IMAP4.error, match="CHARSET is not allowed"):
            m._simple_command("SEARCH", "CHARSET", "UTF-8", "ALL")
        assert ok(m.search(None, "ALL")) == [b""]
    finally:
        m.logout()

    c = raw(server)
    try:
        c.ok("ENABLE UTF8=ACCEPT")
        # Synchronising literal8: the client waits for the continuation.
        c.send(f'a1 APPEND "{drafts}" (\\Seen) UTF8 (~{{{len(msg)}}}\r\n'.encode())
        assert c.line().startswith(b"+ ")
        c.send(msg + b")\r\n")
        assert re.match(rb"a1 OK \[APPENDUID \d+ 1\] ", c.line())
        # LITERAL+ literal8, command, message and end in one write.
        c.send(f'a2 APPEND "{jp}" UTF8 (~{{{len(msg)}+}}\r\n'.encode() + msg + b")\r\n")
        assert re.match(rb"a2 OK \[APPENDUID \d+ 1\] ", c.line())
        # The UTF8 form without its closing parenthesis is BAD, and nothing is stored.
        c.send(f'a3 APPEND "{jp}" UTF8 (~{{{len(msg)}+}}\r\n'.encode() + msg + b"\r\n")
        assert c.line().startswith(b"a3 BAD ")
        # A name that is not UTF-8.
        _, tagged = c.cmd(b'CREATE "Entw\xfcrfe"')
        assert tagged_is(tagged, b"BAD"), tagged
        untagged_, tagged = c.cmd(f'SELECT "{drafts}"'.encode())
        assert tagged_is(tagged, b"OK [READ-WRITE]"), tagged
        assert b"* 1 EXISTS\r\n" in untagged_
        resp = c.ok("FETCH 1 (FLAGS BODY.PEEK[])")
        assert resp[0].endswith(b"{%d}\r\n" % len(msg) + msg + b")\r\n"), resp
        assert b"\\Seen" in resp[0]
        resp = c.ok(f'STATUS "{jp}" (MESSAGES)'.encode())
        assert resp == [f'* STATUS "{jp}" (MESSAGES 1)\r\n'.encode()], resp
    finally:
        c.close()

    # Another session, without ENABLE: modified UTF-7 both ways.
    m = imaps(server)
    try:
        names = [d.decode().rsplit(" ", 1)[1] for d in ok(m.list('""', "*"))]
        assert "Entw&APw-rfe" in names and "&ZeVnLIqe-" in names, names
        data = ok(m.status("&ZeVnLIqe-", "(MESSAGES)"))[0]
        assert data == b"&ZeVnLIqe- (MESSAGES 1)", data
        ok(m.select("Entw&APw-rfe"))
        data = ok(m.fetch("1", "(BODY.PEEK[])"))
        assert data[0][1] == msg
        ok(m.select("&ZeVnLIqe-"))
        data = ok(m.fetch("1", "(BODY.PEEK[])"))
        assert data[0][1] == msg
        ok(m.search("UTF-8", "ALL"))
    finally:
        m.logout()
    # On disk: Maildir++ folders in modified UTF-7, the messages as sent.
    root = server.maildir(ALICE)
    for folder in (".Entw&APw-rfe", ".&ZeVnLIqe-"):
        files = [p for sub in ("cur", "new") for p in (root / folder / sub).iterdir()]
        assert [p.read_bytes() for p in files] == [msg], folder
    assert list((root / ".&ZeVnLIqe-" / "tmp").iterdir()) == []

MULTIPART = (
    b'From: "Sender Name" <sender@remote.test>\r\n'
    b"To: Alice <alice@example.test>, bob@example.test\r\n"
    b"Cc: carol@other.test\r\n"
    b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= multipart\r\n"
    b"Date: Tue, 25 Nov 2025 09:00:00 +0000\r\n"
    b"Message-ID: <multi-1@remote.test>\r\n"
    b"In-Reply-To: <parent@remote.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"This is a multi-part message in MIME format.\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Hello =C3=A9 plain needle\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Hello html</p>\r\n"
    b"--inner--\r\n"
    b"\r\n"
    b"--outer\r\n"
    b'Content-Type: application/pdf; name="doc.pdf"\r\n'
    b'Content-Disposition: attachment; filename="doc.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQKJcOkw7zDtsOfCg==\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@remote.test\r\n"
    b"Subject: inner message\r\n"
    b"\r\n"
    b"Inner body.\r\n"
    b"--outer--\r\n"
)


def test_multipart_bodystructure_and_envelope(server):
    deliver(server, MULTIPART)
    delivered = server.wait_messages(ALICE, 1)[0]
    m = imaps(server)
    try:
        ok(m.select("INBOX"))
        data = ok(m.fetch("1", "(ENVELOPE BODYSTRUCTURE RFC822.SIZE)"))
        resp = data[0] if isinstance(data[0], bytes) else b"".join(
            x if isinstance(x, bytes) else x[0] + x[1] for x in data)
        text = resp.decode()
        env = re.search(r"ENVELOPE (\(.*?\)) BODYSTRUCTURE", text).group(1)
        assert env.startswith('("Tue, 25 Nov 2025 09:00:00 +0000" '
                              '"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= multipart" '
                              '(("Sender Name" NIL "sender" "remote.test")) '
                              '(("Sender Name" NIL "sender" "remote.test")) '
                              '(("Sender Name" NIL "sender" "remote.test")) '
                              '(("Alice" NIL "alice" "example.test")(NIL NIL "bob" "example.test")) '
                              '((NIL NIL "carol" "other.test")) NIL '
                              '"<parent@remote.test>" "<multi-1@remote.test>")'), env
        bs = text[text.index("BODYSTRUCTURE ") + len("BODYSTRUCTURE "):]
        # Outer multipart/mixed: alternative, the PDF, the attached message.
        assert re.search(r'^\(\(\("TEXT" "PLAIN" \("CHARSET" "utf-8"\) NIL NIL '
                         r'"QUOTED-PRINTABLE" 25 1 ', bs, re.I), bs
        assert re.search(r'\("TEXT" "HTML" \("CHARSET" "utf-8"\) NIL NIL "7BIT" 17 1 ', bs,
                         re.I), bs
        assert re.search(r'"ALTERNATIVE" \("BOUNDARY" "inner"\)', bs, re.I), bs
        assert re.search(r'\("APPLICATION" "PDF" \("NAME" "doc.pdf"\) NIL NIL "BASE64" 28 '
                         r'NIL \("ATTACHMENT" \("FILENAME" "doc.pdf"\)\)', bs, re.I), bs
        assert re.search(r'\("MESSAGE" "RFC822" NIL NIL NIL "7BIT" \d+ \(NIL "inner message" '
                         r'\(\(NIL NIL "inner" "remote.test"\)\)', bs, re.I), bs
        assert re.search(r'"MIXED" \("BOUNDARY" "outer"\)', bs, re.I), bs
        assert f"RFC822.SIZE {len(delivered.data)}" in text
    finally:
        m.logout()
    c = raw(server)
    try:
        c.ok("EXAMINE INBOX")
        resp = c.ok("FETCH 1 (BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[2.MIME] BODY.PEEK[3.HEADER] "
                    "BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[2]<0.6>)")
        assert len(resp) == 1, resp
        mime = (b'Content-Type: application/pdf; name="doc.pdf"\r\n'
                b'Content-Disposition: attachment; filename="doc.pdf"\r\n'
                b"Content-Transfer-Encoding: base64\r\n\r\n")
        inner = b"From: inner@remote.test\r\nSubject: inner message\r\n\r\n"
        subject = b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= multipart\r\n\r\n"
        assert resp[0] == (
            b'* 1 FETCH (BODY[1.1] "Hello =C3=A9 plain needle" BODY[1.2] "<p>Hello html</p>" '
            b"BODY[2.MIME] {%d}\r\n%s BODY[3.HEADER] {%d}\r\n%s "
            b"BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n%s BODY[2]<0> \"JVBERi\")\r\n"
            % (len(mime), mime, len(inner), inner, len(subject), subject)), resp[0]
    finally:
        c.close()
    m = imaps(server)
    try:
        ok(m.select("INBOX"))
        # SEARCH looks into the decoded parts and headers.
        assert ok(m.search("UTF-8", "SUBJECT", '"Grüße"'.encode()))[0] == b"1"
        assert ok(m.search(None, "BODY", "needle"))[0] == b"1"
        assert ok(m.search(None, "TEXT", "nowhere-to-be-found"))[0] == b""
    finally:
        m.logout()


def test_fetch_sets_seen_unless_peek(server):
    for i in range(3):
        deliver(server, make_message(f"seen {i}"))
    server.wait_messages(ALICE, 3)
    c = raw(server)
    try:
        c.ok("SELECT INBOX")
        resp = c.ok("FETCH 1 (BODY.PEEK[HEADER] FLAGS)")
        assert b"\\Seen" not in resp[0]
        resp = c.ok("FETCH 1 BODY[TEXT]")
        assert re.search(rb"FLAGS \(\\Seen \\Recent\)", resp[0]), resp
        resp = c.ok("FETCH 1 FLAGS")
        assert resp == [b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n"]
        resp = c.ok("UID FETCH 2:* RFC822")
        assert len(resp) == 2 and all(b"\\Seen" in r and b"UID " in r for r in resp)
        c.ok("EXAMINE INBOX")
    finally:
        c.close()
    m = imaps(server)
    try:
        ok(m.select("INBOX", readonly=True))
        data = ok(m.fetch("1:*", "(FLAGS)"))
        assert all(b"\\Seen" in d for d in data)
    finally:
        m.logout()


def test_fetch_many_messages_in_batches(server):
    """More messages than one batch, and more octets than one batch: every response, in
    order, with the bodies intact."""
    m = imaps(server)
    msgs = []
    try:
        for i in range(150):
            body = (b"%05d " % i) * (2000 if i % 10 == 0 else 10) + b"\r\n"
            msg = make_message(f"batch {i}", body)
            msgs.append(msg)
            ok(m.append("INBOX", None, None, msg))
        ok(m.select("INBOX"))
        data = ok(m.fetch("1:*", "(UID FLAGS RFC822.SIZE)"))
        assert len(data) == 150
        for i, d in enumerate(data):
            assert d.startswith(b"%d (UID %d FLAGS (\\Recent) RFC822.SIZE %d)" %
                                (i + 1, i + 1, len(msgs[i]))), d
        data = ok(m.fetch("1:*", "BODY.PEEK[]"))
        bodies = [x[1] for x in data if isinstance(x, tuple)]
        assert bodies == msgs
    finally:
        m.logout()


# -- STORE, SEARCH, COPY, MOVE, EXPUNGE ----------------------------------------------------------
def test_store_flags_and_keywords(server):
    for i in range(3):
        deliver(server, make_message(f"store {i}"))
    server.wait_messages(ALICE, 3)
    c = raw(server)
    try:
        c.ok("SELECT INBOX")
        resp = c.ok("STORE 1:2 +FLAGS (\\Flagged \\Answered)")
        assert resp == [b"* 1 FETCH (UID 1 FLAGS (\\Answered \\Flagged \\Recent))\r\n",
                        b"* 2 FETCH (UID 2 FLAGS (\\Answered \\Flagged \\Recent))\r\n"], resp
        assert c.ok("STORE 1 -FLAGS (\\Answered)") == [
            b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"]
        assert c.ok("STORE 2 FLAGS.SILENT (\\Draft)") == []
        resp = c.ok("STORE 3 +FLAGS ($Work NonJunk)")
        text = b"".join(resp).decode()
        assert text.startswith("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work "
                               "NonJunk)\r\n"), text
        assert "PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work NonJunk \\*)" \
            in text
        assert "* 3 FETCH (UID 3 FLAGS ($Work NonJunk \\Recent))" in text
        resp = c.ok("UID STORE 3 -FLAGS.SILENT ($Work)")
        assert resp == []
        resp = c.ok("FETCH 1:3 FLAGS")
        assert resp == [b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n",
                        b"* 2 FETCH (FLAGS (\\Draft \\Recent))\r\n",
                        b"* 3 FETCH (FLAGS (NonJunk \\Recent))\r\n"], resp
        _, tagged = c.cmd("STORE 9 +FLAGS (\\Seen)")
        assert tagged_is(tagged, b"BAD"), tagged
        assert c.ok("UID STORE 9 +FLAGS (\\Seen)") == []
    finally:
        c.close()
    # Flags and keywords survive a restart.
    server.stop()
    server.start()
    m = imaps(server)
    try:
        ok(m.select("INBOX"))
        data = ok(m.fetch("1:3", "FLAGS"))
        assert [re.search(rb"FLAGS \(([^)]*)\)", d).group(1) for d in data] == \
            [b"\\Flagged", b"\\Draft", b"NonJunk"], data
    finally:
        m.logout()


def test_search(server):
    m = imaps(server)
    try:
        # APPEND, not SMTP: UIDs follow the order of the commands.
        for msg in [make_message("alpha report", sender="ann@remote.test"),
                    make_message("beta", body=b"the secret word is xyzzy\r\n",
                                 sender="ben@remote.test"),
                    make_message("gamma", sender="ann@remote.test")]:
            ok(m.append("INBOX", None, None, msg))
        ok(m.select("INBOX"))
        ok(m.store("2", "+FLAGS", "\\Seen"))
        assert ok(m.search(None, "ALL"))[0] == b"1 2 3"
        assert ok(m.search(None, "UNSEEN"))[0] == b"1 3"
        assert ok(m.search(None, "FROM", "ann"))[0] == b"1 3"
        assert ok(m.search(None, "SUBJECT", "BETA"))[0] == b"2"
        assert ok(m.search(None, "BODY", "xyzzy"))[0] == b"2"
        assert ok(m.search(None, "OR", "SUBJECT", "alpha", "SEEN"))[0] == b"1 2"
        assert ok(m.search(None, "NOT", "FROM", "ann", "2:*"))[0] == b"2"
        assert ok(m.search(None, "LARGER", "1", "SINCE", "1-Jan-2020"))[0] == b"1 2 3"
        assert ok(m.search("UTF-8", "TEXT", "xyzzy"))[0] == b"2"
        assert ok(m.uid("SEARCH", None, "UID", "2:*", "FROM", "ann"))[0] == b"3"
        typ, data = m.search("KOI8-R", "TEXT", "x")
        assert typ == "NO" and b"BADCHARSET" in data[0], data
    finally:
        m.logout()


def test_copy_and_move_with_copyuid(server):
    msg = make_message("appended")
    for i in range(4):
        deliver(server, make_message(f"cm {i}"))
    server.wait_messages(ALICE, 4)
    c = raw(server)
    try:
        c.ok("SELECT INBOX")
        c.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
        _, tagged = c.cmd("COPY 1:2 Trash")
        mm = re.match(rb"t\d+ OK \[COPYUID (\d+) 1:2 1:2\] ", tagged)
        assert mm, tagged
        _, tagged = c.cmd("COPY 1 Nonexistent")
        assert tagged_is(tagged, b"NO [TRYCREATE]"), tagged
        resp = c.ok("MOVE 2:3 Junk")
        assert re.match(rb"\* OK \[COPYUID \d+ 2:3 1:2\] ", resp[0]), resp
        assert resp[1:] == [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"], resp
        resp = c.ok("UID MOVE 4 Junk")
        assert re.match(rb"\* OK \[COPYUID \d+ 4 3\] ", resp[0]), resp
        assert resp[1:] == [b"* 2 EXPUNGE\r\n"], resp
        assert c.ok("UID SEARCH ALL") == [b"* SEARCH 1\r\n"]
        c.ok("SELECT Trash")
        resp = c.ok("FETCH 1:* (UID FLAGS)")
        assert resp == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n",
                        b"* 2 FETCH (UID 2 FLAGS (\\Recent))\r\n"], resp
        c.ok("SELECT Junk")
        assert c.ok("UID SEARCH ALL") == [b"* SEARCH 1 2 3\r\n"]
        _, tagged = c.cmd("UID COPY 2:3 Trash")
        assert re.match(rb"t\d+ OK \[COPYUID \d+ 2:3 3:4\] ", tagged), tagged
        # An APPEND into the selected mailbox is reported like any new message.
        untagged_, tagged = c.cmd(b"APPEND Junk {%d+}\r\n" % len(msg) + msg)
        assert tagged_is(tagged, b"OK [APPENDUID "), tagged
        assert untagged_ == [b"* 4 EXISTS\r\n", b"* 4 RECENT\r\n"], untagged_
        _, tagged = c.cmd("EXAMINE Junk")
        assert tagged_is(tagged, b"OK [READ-ONLY]"), tagged
        _, tagged = c.cmd("MOVE 1 INBOX")
        assert tagged_is(tagged, b"NO"), tagged
    finally:
        c.close()


def test_expunge_uid_expunge_close_unselect(server):
    for i in range(6):
        deliver(server, make_message(f"ex {i}"))
    server.wait_messages(ALICE, 6)
    c = raw(server)
    try:
        c.ok("SELECT INBOX")
        c.ok("STORE 1:4 +FLAGS.SILENT (\\Deleted)")
        assert c.ok("UID EXPUNGE 2:3") == [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
        assert c.ok("EXPUNGE") == [b"* 2 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
        assert c.ok("UID SEARCH ALL") == [b"* SEARCH 5 6\r\n"]
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        assert c.ok("UNSELECT") == []
        _, tagged = c.cmd("EXPUNGE")
        assert tagged_is(tagged, b"BAD"), "EXPUNGE with nothing selected"
        c.ok("EXAMINE INBOX")
        assert c.ok("CLOSE") == [], "CLOSE of an EXAMINEd mailbox expunges nothing"
        c.ok("SELECT INBOX")
        assert c.ok("UID SEARCH DELETED") == [b"* SEARCH 5\r\n"]
        assert c.ok("CLOSE") == [], "CLOSE expunges silently"
        resp = c.ok("SELECT INBOX")
        assert b"* 1 EXISTS\r\n" in resp
        assert c.ok("UID SEARCH ALL") == [b"* SEARCH 6\r\n"]
        assert c.ok("CHECK") == []
        assert c.ok("NOOP") == []
    finally:
        c.close()
    assert len(server.files(ALICE, "cur")) + len(server.files(ALICE, "new")) == 1


# -- concurrency: other sessions, deliveries, IDLE ----------------------------------------------
def test_two_sessions_see_each_others_flags_and_expunges(server):
    for i in range(3):
        deliver(server, make_message(f"two {i}"))
    server.wait_messages(ALICE, 3)
    a, b = raw(server), raw(server)
    try:
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        a.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
        assert b.ok("NOOP") == [b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n"]
        a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        # During FETCH (by sequence number) no EXPUNGE: the flag change may come.
        resp = b.ok("FETCH 1:3 (UID)")
        assert all(b"EXPUNGE" not in r for r in resp), resp
        assert [r for r in resp if b"FLAGS" not in r] == [
            b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 2)\r\n", b"* 3 FETCH (UID 3)\r\n"]
        # ... nor during SEARCH, which no longer finds the message it knows is gone.
        resp = b.ok("SEARCH ALL")
        assert resp == [b"* SEARCH 2 3\r\n"], resp
        # After NOOP it is reported, then sequence numbers shift.
        resp = b.ok("NOOP")
        assert b"* 1 EXPUNGE\r\n" in resp, resp
        assert b.ok("FETCH 1:* (UID)") == [b"* 1 FETCH (UID 2)\r\n", b"* 2 FETCH (UID 3)\r\n"]
        # A delivery shows up as EXISTS at the end of the next command.
        deliver(server, make_message("two new"))
        resp = wait_until(lambda: [r for r in b.ok("NOOP") if b"EXISTS" in r], 5,
                          what="EXISTS after a delivery")
        assert resp == [b"* 3 EXISTS\r\n"]
        # b's changes reach a too, and a's UID EXPUNGE by way of UID FETCH.
        b.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
        resp = a.ok("UID FETCH 1:* (FLAGS)")
        # The FETCH answers from a's view, then the updates follow: b's \Seen, the new message.
        assert resp[-1] == b"* 1 FETCH (UID 2 FLAGS (\\Seen \\Flagged \\Recent))\r\n", resp
        assert b"* 3 EXISTS\r\n" in resp, resp
    finally:
        a.close()
        b.close()


def test_idle_sees_smtp_delivery_and_other_session(server):
    c = raw(server)
    other = raw(server)
    try:
        c.ok("SELECT INBOX")
        other.ok("SELECT INBOX")
        c.send("i1 IDLE\r\n")
        assert c.line().startswith(b"+ ")
        deliver(server, make_message("idle"))
        got = c.line(timeout=5)
        assert got == b"* 1 EXISTS\r\n", got
        assert c.line(timeout=2) == b"* 1 RECENT\r\n"
        other.ok("NOOP")
        other.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
        got = c.line(timeout=5)
        assert got == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n", got
        other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")
        got = [ln for ln in c.pending(3)]
        assert b"* 1 EXPUNGE\r\n" in got, got
        c.send("DONE\r\n")
        assert c.line() == b"i1 OK IDLE terminated\r\n"
        assert c.ok("NOOP") == []
    finally:
        c.close()
        other.close()


def test_idle_is_answered_promptly_with_nothing_happening(server):
    c = raw(server)
    try:
        c.ok("SELECT INBOX")
        c.send("i IDLE\r\n")
        assert c.line().startswith(b"+ ")
        assert c.pending(1.5) == []
        c.send("DONE\r\n")
        assert c.line() == b"i OK IDLE terminated\r\n"
    finally:
        c.close()


def test_mailbox_deleted_by_another_session(server):
    a, b = raw(server), raw(server)
    try:
        a.ok("CREATE Temp")
        b.ok("SELECT Temp")
        a.ok("DELETE Temp")
        untagged, tagged = b.cmd("NOOP")
        got = untagged + [tagged]
        if not any(ln.startswith(b"* BYE") for ln in got):
            got.append(b.line())
        assert any(ln.startswith(b"* BYE") for ln in got), got
    finally:
        a.close()
        b.close()


def test_deleting_or_renaming_the_selected_mailbox_deselects_it(server):
    """RFC 3501 allows DELETE of the selected mailbox: OK, then the authenticated state (as
    Dovecot does); the session goes on. Another session that had it selected gets BYE."""
    m = imaps(server)
    other = raw(server)
    try:
        ok(m.create("Temp"))
        ok(m.append("Temp", None, None, make_message("in temp")))
        ok(m.select("Temp"))
        other.ok("SELECT Temp")
        ok(m.delete("Temp"))
        with pytest.raises(imaplib.IMAP4.error, match="No mailbox selected"):
            m.fetch("1", "FLAGS")
        ok(m.noop())
        assert not any(b'"Temp"' in ln or ln.endswith(b" Temp") for ln in ok(m.list()))
        lines, tagged = other.cmd("NOOP")
        got = lines + [tagged]
        if not any(ln.startswith(b"* BYE") for ln in got):
            got.append(other.line())
        assert any(ln.startswith(b"* BYE") for ln in got), got
        # RENAME of a parent moves the selected child away: the same.
        ok(m.create("Proj"))
        ok(m.create("Proj.Sub"))
        ok(m.select("Proj.Sub"))
        ok(m.rename("Proj", "Done"))
        with pytest.raises(imaplib.IMAP4.error, match="No mailbox selected"):
            m.fetch("1", "FLAGS")
        ok(m.select("Done.Sub"))
        ok(m.fetch("1:*", "FLAGS"))
        # RENAME INBOX leaves INBOX selected, empty.
        ok(m.append("INBOX", None, None, make_message("in inbox")))
        ok(m.select("INBOX"))
        ok(m.rename("INBOX", "Old"))
        ok(m.noop())
        assert untagged(m, "EXPUNGE") == [b"1"]
        assert ok(m.search(None, "ALL")) == [b""]
    finally:
        m.logout()
        other.close()


def test_uids_stable_across_restart(server):
    for i in range(3):
        deliver(server, make_message(f"restart {i}"))
    server.wait_messages(ALICE, 3)
    m = imaps(server)
    try:
        ok(m.select("INBOX"))
        validity = untagged(m, "UIDVALIDITY")
        assert fetch_uids(m) == [1, 2, 3]
        ok(m.store("2", "+FLAGS", "\\Deleted"))
        ok(m.expunge())
    finally:
        m.logout()
    assert server.stop() == 0
    server.start()
    m = imaps(server)
    try:
        ok(m.select("INBOX"))
        assert untagged(m, "UIDVALIDITY") == validity
        assert untagged(m, "UIDNEXT") == [b"4"]
        assert fetch_uids(m) == [1, 3]
        deliver(server, make_message("after restart"))
        wait_until(lambda: int(ok(m.noop()) and 1) and
                   [d for d in untagged(m, "EXISTS") if d == b"3"], 5, what="EXISTS 3")
        assert fetch_uids(m) == [1, 3, 4]
    finally:
        m.logout()
    server.kill()
    server.start()
    m = imaps(server)
    try:
        ok(m.select("INBOX"))
        assert untagged(m, "UIDVALIDITY") == validity
        assert fetch_uids(m) == [1, 3, 4], "UIDs after SIGKILL"
    finally:
        m.logout()


# -- isolation ------------------------------------------------------------------------------------
TRICKS = ["../bob", "INBOX/../..", "../../example.test/bob", "..", ".", "/etc", "INBOX/..",
          "../bob/INBOX", "Sent/../../bob", ".bob", "bob/", "&AC8-etc", "&AC4ALg-",
          "INBOX.&AC4ALg-", "..%2fbob", "Sent/..", "~bob/INBOX", "*", "%"]


def test_account_isolation(server):
    deliver(server, make_message("for bob only"), to=BOB)
    server.wait_messages(BOB, 1)
    bob_before = {p: p.read_bytes() for p in server.maildir(BOB).rglob("*") if p.is_file()}
    tree_before = set((server.data_dir / "mail").rglob("*"))
    c = raw(server)
    try:
        for name in TRICKS:
            quoted = '"' + name + '"'
            for command in (f"SELECT {quoted}", f"EXAMINE {quoted}", f"STATUS {quoted} (MESSAGES)",
                            f"DELETE {quoted}", f"RENAME {quoted} Stolen",
                            f"RENAME INBOX {quoted}"):
                untagged_, tagged = c.cmd(command)
                assert re.match(rb"t\d+ (NO|BAD)", tagged), f"{command}: {tagged!r}"
                assert not any(b"EXISTS" in u or b"STATUS" in u for u in untagged_), untagged_
            c.send(f"a APPEND {quoted} {{5+}}\r\nhi\r\n\r\n")
            assert re.match(rb"a (NO|BAD)", c.line()), name
        # Names that are harmless inside alice's own mailbox stay there.
        for name in ["~bob", "bob@example.test", "#bob"]:
            c.ok(f'CREATE "{name}"')
        untagged_ = c.ok('LIST "" "*"')
        assert not any(b"for bob only" in u for u in untagged_)
        c.ok("SELECT INBOX")
        assert c.ok("UID SEARCH ALL") == [b"* SEARCH\r\n"]
    finally:
        c.close()
    bob_after = {p: p.read_bytes() for p in server.maildir(BOB).rglob("*") if p.is_file()}
    # Bob's messages are untouched (his index files may appear: none are written by alice).
    assert {p: b for p, b in bob_after.items() if "dovecot" not in p.name} == \
        {p: b for p, b in bob_before.items() if "dovecot" not in p.name}
    alice = server.maildir(ALICE)
    new = set((server.data_dir / "mail").rglob("*")) - tree_before
    outside = [p for p in new if alice not in p.parents and p != alice]
    assert outside == [], outside
    # Bob sees only his own message.
    m = imaps(server, BOB)
    try:
        assert int(ok(m.select("INBOX"))[0]) == 1
        names = [d.decode().rsplit(" ", 1)[1] for d in ok(m.list('""', "*"))]
        assert "~bob" not in names and '"~bob"' not in names
    finally:
        m.logout()


# -- curl ---------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("listener", ["imaps", "imap"])
def test_curl_fetches_a_message(server, listener):
    msg = make_message("for curl", b"Fetched by curl.\r\n")
    deliver(server, msg)
    delivered = server.wait_messages(ALICE, 1)[0]
    port = server.port(listener)
    scheme = "imaps" if listener == "imaps" else "imap"
    args = ["curl", "-sS", "--max-time", "20", "--cacert", str(server.cert_path),
            "--resolve", f"{HOSTNAME}:{port}:{LOOPBACK}",
            "--url", f"{scheme}://{HOSTNAME}:{port}/INBOX;UID=1",
            "--user", f"{ALICE}:{ACCOUNTS[ALICE]}"]
    if listener == "imap":
        args.append("--ssl-reqd")
    p = subprocess.run(args, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == delivered.data
    # And the `-k` form, by address.
    p = subprocess.run(["curl", "-sS", "-k", "--max-time", "20", "--url",
                        f"{scheme}://{LOOPBACK}:{port}/INBOX;UID=1", "--user",
                        f"{ALICE}:{ACCOUNTS[ALICE]}"] + (["--ssl-reqd"] if listener == "imap" else []),
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == delivered.data
    # Without TLS on 143 curl's LOGIN is refused.
    if listener == "imap":
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "--url",
                            f"imap://{LOOPBACK}:{port}/INBOX;UID=1", "--user",
                            f"{ALICE}:{ACCOUNTS[ALICE]}"], capture_output=True, timeout=30)
        assert p.returncode != 0 and p.stdout == b""


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_wrong_password(server):
    p = subprocess.run(["curl", "-sS", "-k", "--max-time", "20", "--url",
                        f"imaps://{LOOPBACK}:{server.port('imaps')}/INBOX;UID=1", "--user",
                        f"{ALICE}:wrong"], capture_output=True, timeout=30)
    assert p.returncode != 0 and p.stdout == b""


def test_imap_listeners_are_named_in_listeners_file(server):
    text = (server.data_dir / "listeners").read_text()
    names = [ln.split()[0] for ln in text.splitlines()]
    assert "imap" in names and "imaps" in names, text


def test_imap_disabled_listeners(make_server):
    s = make_server(config={"imap": {"enabled": False, "listen": ["127.0.0.1:0"]},
                            "imaps": {"enabled": False, "listen": ["127.0.0.1:0"]}})
    assert "imap" not in s.listeners and "imaps" not in s.listeners


def test_sigterm_ends_an_idling_session_with_bye(server):
    c = raw(server)
    try:
        c.ok("SELECT INBOX")
        c.send("i IDLE\r\n")
        assert c.line().startswith(b"+ ")
        server.signal(signal.SIGTERM)
        assert c.line(timeout=5).startswith(b"* BYE")
        server.expect_exit = True
        assert server.proc.wait(10) == 0
    finally:
        c.close()


def test_connection_limit_answered_with_bye(make_server):
    server = make_server(config={"limits": {"max_connections_per_ip": 1}})
    first = RawImap(server.port("imap"))
    try:
        s = socket.create_connection((LOOPBACK, server.port("imap")), timeout=TIMEOUT)
        try:
            s.settimeout(TIMEOUT)
            got = b""
            while not got.endswith(b"\r\n"):
                chunk = s.recv(1024)
                if not chunk:
                    break
                got += chunk
            assert got.startswith(b"* BYE "), got
        finally:
            s.close()
        assert first.ok("NOOP") == []
    finally:
        first.close()


def rss_kib(pid: int) -> int:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1])
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_pipelined_commands_wait_for_a_client_that_does_not_read(make_server):
    """Hundreds of pipelined commands with large answers (FETCH, SEARCH) from a client that
    reads nothing: the server holds back instead of buffering it all, and answers
    everything, in order, once the client reads."""
    # Few worker threads: each thread's malloc arena keeps some freed memory, which would
    # blur the measurement.
    server = make_server(config={"workers": 2})
    # 20,000 small messages dropped into the Maildir by "another program".
    cur = server.maildir(ALICE) / "cur"
    cur.mkdir(parents=True)
    for sub in ("new", "tmp"):
        (server.maildir(ALICE) / sub).mkdir()
    stamp = int(time.time()) - 100
    for i in range(20_000):
        body = b"Subject: dropped %d\r\n\r\nbody\r\n" % i
        (cur / f"{stamp}.M{i:06d}P1Q{i}.other,S={len(body)}:2,").write_bytes(body)
    big = make_message("big", b"x" * 500_000 + b"\r\n")
    c = raw(server)
    try:
        c.send(b"a APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
        assert c.line(timeout=30).startswith(b"a OK")
        c.ok("EXAMINE INBOX")
        base = rss_kib(server.proc.pid)
        # Each SEARCH answer is about 120 KB, each FETCH 500 KB: 60 MB in all.
        commands = [b"s%d UID SEARCH ALL\r\n" % i for i in range(400)]
        commands += [b"s%d UID FETCH * BODY.PEEK[]\r\n" % i for i in range(400, 430)]
        c.send(b"".join(commands))
        time.sleep(3)
        grown = rss_kib(server.proc.pid) - base
        assert grown < 20_000, f"the server buffered {grown} KiB for a client that does not read"
        done = 0
        while done < len(commands):
            ln = c.line(timeout=60)
            if ln.startswith(b"s"):
                assert ln.startswith(b"s%d OK" % done), ln
                done += 1
        assert c.ok("NOOP") == []
    finally:
        c.close()


def status_kib(pid: int, field: str) -> int:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith(field + ":"):
            return int(ln.split()[1])
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_large_message_streams_byte_exact_with_bounded_memory(make_server):
    """A 24 MB message: BODY[], a partial, its parts and RFC822 come back byte for byte, and
    while a client reads its BODY[] slowly the server holds a few hundred KiB for it, not
    the message (the body streams from the file as the output drains)."""
    import base64
    import os
    # Few worker threads: each thread's malloc arena keeps some freed memory.
    server = make_server(config={"workers": 2, "max_message_size": 40_000_000})
    text = b"".join(b"text line %06d %s\r\n" % (i, b"t" * 50) for i in range(3000))
    blob = base64.encodebytes(os.urandom(18_000_000)).replace(b"\n", b"\r\n")
    head = make_message("large", b"", extra_headers=[
        "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b1"'])
    part1 = b"--b1\r\nContent-Type: text/plain\r\n\r\n"
    part2 = (b"\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
             b"Content-Transfer-Encoding: base64\r\n\r\n")
    msg = head + part1 + text + part2 + blob + b"\r\n--b1--\r\n"
    assert len(msg) > 24_000_000
    m = imaps(server)
    try:
        m.sock.settimeout(120)
        ok(m.append("INBOX", None, None, msg))
        ok(m.select("INBOX"))
        data = ok(m.fetch("1", "(BODY.PEEK[])"))
        assert data[0][1] == msg
        data = ok(m.uid("FETCH", "1", "(BODY.PEEK[]<1000.5000000> BODY.PEEK[1] UID)"))
        assert data[0][1] == msg[1000:5_001_000] and data[1][1] == text
        assert data[0][0].startswith(b"1 (UID 1 BODY[]<1000> {5000000}"), data[0][0]
        data = ok(m.fetch("1", "(BODY.PEEK[2] BODY.PEEK[HEADER.FIELDS (Subject)])"))
        assert data[0][1] == blob.removesuffix(b"\r\n") or data[0][1] == blob
        assert data[1][1].startswith(b"Subject: large ")
        assert b"\\Seen" not in ok(m.fetch("1", "FLAGS"))[0]
        data = ok(m.fetch("1", "RFC822"))
        assert data[0][1] == msg
        assert b"\\Seen" in data[0][0] + data[1], data[0][0]
    finally:
        m.logout()

    # A client that reads slowly: the server stops reading the file when the output is full.
    pid = server.proc.pid
    sock = socket.create_connection((LOOPBACK, server.port("imaps")), timeout=TIMEOUT)
    sock = client_context(server).wrap_socket(sock)
    try:
        buf = bytearray()

        def read_until(pattern: bytes) -> None:
            # Looks only at what arrived since the last look: the buffer grows to 24 MB.
            seen = 0
            while buf.find(pattern, max(seen - len(pattern), 0)) < 0:
                seen = len(buf)
                chunk = sock.recv(262144)
                assert chunk, f"closed; have {bytes(buf[-200:])!r}"
                buf.extend(chunk)

        read_until(b"\r\n")
        sock.sendall(b'a LOGIN "%s" "%s"\r\nb EXAMINE INBOX\r\n'
                     % (ALICE.encode(), ACCOUNTS[ALICE].encode()))
        read_until(b"b OK")
        del buf[:]
        base = (status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon"))
        sock.sendall(b"c FETCH 1 BODY.PEEK[]\r\n")
        samples = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            buf.extend(sock.recv(16384))
            time.sleep(0.01)
            samples.append((status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon")))
        got = len(buf)
        assert got < len(msg) // 2, f"the client read {got} octets: not slow enough"
        # RssAnon is the heap: buffered output lives there. VmRSS also counts the file pages
        # mapped for a moment while the message is parsed (page cache, not the session's),
        # so it is checked once the body is streaming.
        anon = max(s[1] for s in samples) - base[1]
        rss = samples[-1][0] - base[0]
        sock.settimeout(120)
        read_until(b"c OK")
        literal = re.match(rb"\* 1 FETCH \(BODY\[\] \{(\d+)\}\r\n", buf)
        assert literal and int(literal.group(1)) == len(msg), bytes(buf[:100])
        start = literal.end()
        assert buf[start:start + len(msg)] == msg
        assert buf[start + len(msg):] == b")\r\nc OK FETCH completed\r\n"
        print(f"read {got} octets slowly; VmRSS {base[0]} KiB, +{rss} KiB at the end, at most "
              f"+{max(s[0] for s in samples) - base[0]} KiB; RssAnon {base[1]} KiB, at most "
              f"+{anon} KiB")
        # Before bodies streamed, the server held the message (24 MB) at least once.
        assert anon < 8_000, f"the server's heap grew by {anon} KiB for one slow FETCH"
        assert rss < 8_000, f"the server's RSS grew by {rss} KiB for one slow FETCH"
    finally:
        sock.close()
