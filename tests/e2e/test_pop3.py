"""POP3 end to end: Python's poplib (and a raw client where the exact bytes matter) against
ironpost on 110 (STLS) and 995 (implicit TLS), mail delivered over SMTP first; IMAP on the
same mailbox; fetchmail from Debian's packages; and the default configuration, which serves
no POP3 at all."""

from __future__ import annotations

import base64
import imaplib
import os
import poplib
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from conftest import builtin_config, render_toml
from e2e_helpers import (
    ACCOUNTS, HOSTNAME, LOOPBACK, RawSmtp, big_body, dot_stuff, make_message, port_open,
)

ALICE = "alice@example.test"
BOB = "bob@example.test"
TIMEOUT = 10

POP3_ON = {
    "pop3": {"enabled": True, "listen": ["127.0.0.1:0"]},
    "pop3s": {"enabled": True, "listen": ["127.0.0.1:0"]},
}


def needs_pop3():
    if "pop3" not in builtin_config():
        pytest.skip("this build has no [pop3] section")


@pytest.fixture
def server(make_server):
    """A server with both POP3 listeners switched on (they are off by default)."""
    needs_pop3()
    return make_server(config=POP3_ON)


# -- clients ------------------------------------------------------------------------------
def client_context(server) -> ssl.SSLContext:
    """Verifies the server's certificate; poplib connects to 127.0.0.1, so the name is not
    checked here (RawPop checks it)."""
    ctx = server.tls_context()
    ctx.check_hostname = False
    return ctx


def pop3s(server, user: str | None = ALICE) -> poplib.POP3_SSL:
    p = poplib.POP3_SSL(LOOPBACK, server.port("pop3s"), context=client_context(server),
                        timeout=TIMEOUT)
    if user:
        login(p, user)
    return p


def login(p: poplib.POP3, user: str = ALICE, wait: float = 5.0) -> bytes:
    """USER/PASS; retries while the maildrop is still held by a session the server has not
    yet seen close ([IN-USE])."""
    deadline = time.monotonic() + wait
    while True:
        p.user(user)
        try:
            return p.pass_(ACCOUNTS[user])
        except poplib.error_proto as e:
            if b"[IN-USE]" not in e.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class RawPop:
    """A strict, low-level POP3 client over TLS: commands go out as given, multi-line
    responses come back exactly as sent (still byte-stuffed)."""

    def __init__(self, server, port_name: str = "pop3s", rcvbuf: int | None = None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connecting, so that the advertised window is small too.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(TIMEOUT)
        sock.connect((LOOPBACK, server.port(port_name)))
        self.sock = server.tls_context().wrap_socket(sock, server_hostname=HOSTNAME)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete response in time; have {self.buf[-200:]!r}")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError(f"connection closed; have {self.buf[-200:]!r}")
        self.buf += chunk

    def line(self) -> bytes:
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        i = self.buf.index(b"\r\n") + 2
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def multiline(self) -> bytes:
        """The body of a multi-line response through its terminating `.` line, as sent."""
        deadline = time.monotonic() + TIMEOUT
        scanned = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 3
            else:
                i = self.buf.find(b"\r\n.\r\n", scanned)
                end = i + 5 if i >= 0 else -1
                scanned = max(0, len(self.buf) - 4)
            if end >= 0:
                out, self.buf = self.buf[:end], self.buf[end:]
                return out
            self._fill(deadline)

    def cmd(self, text: str) -> bytes:
        self.send(text + "\r\n")
        return self.line()

    def login(self, user: str = ALICE) -> None:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        r = self.cmd(f"PASS {ACCOUNTS[user]}")
        assert r.startswith(b"+OK Logged in"), r

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def deliver(server, message: bytes, to: str = ALICE, sender: str = "sender@remote.test") -> None:
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        r = c.mail_transaction(sender, [to], message)
        assert r.code == 250, str(r)
        c.quit()


def stored(server, address: str = ALICE) -> list[bytes]:
    """The message files of an INBOX (new/ and cur/), sorted by content: the order POP3
    numbers them in is the store's (UID order), which a test learns from the server."""
    root = server.maildir(address)
    return sorted(p.read_bytes() for sub in ("new", "cur") if (root / sub).is_dir()
                  for p in (root / sub).iterdir() if p.is_file())


def whole(p: poplib.POP3, n: int) -> bytes:
    """Message n as sent, read with TOP (which, unlike RETR, does not count as reading)."""
    _, lines, _ = p.top(n, 1 << 30)
    return b"\r\n".join(lines) + b"\r\n"


def imap_uids(server, user: str = ALICE) -> tuple[int, list[int]]:
    """(UIDVALIDITY, UIDs) of INBOX as IMAP reports them."""
    m = imaplib.IMAP4_SSL(LOOPBACK, server.port("imaps"), ssl_context=client_context(server),
                          timeout=TIMEOUT)
    try:
        m.login(user, ACCOUNTS[user])
        typ, data = m.status("INBOX", "(UIDVALIDITY)")
        assert typ == "OK", data
        validity = int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))
        m.select("INBOX", readonly=True)
        typ, data = m.uid("SEARCH", "ALL")
        assert typ == "OK", data
        return validity, [int(u) for u in data[0].split()]
    finally:
        m.logout()


def has_imap(server) -> bool:
    return "imaps" in server.listeners


def uidl_map(p: poplib.POP3) -> dict[int, str]:
    _, lines, _ = p.uidl()
    out = {}
    for ln in lines:
        n, u = ln.decode().split()
        out[int(n)] = u
    return out


DOTTED = (b"first line\r\n"
          b".a line that starts with a dot\r\n"
          b"..two dots\r\n"
          b".\r\n"
          b"after a lone dot\r\n"
          b". dot space\r\n")


# -- the default: no POP3 ------------------------------------------------------------------
def test_default_config_serves_no_pop3(make_server):
    needs_pop3()
    builtin = builtin_config()
    assert builtin["pop3"]["enabled"] is False
    assert builtin["pop3"]["listen"] == ["127.0.0.1:10110"]
    assert builtin["pop3s"]["enabled"] is False
    assert builtin["pop3s"]["listen"] == ["127.0.0.1:10995"]
    # A config file without the sections: the built-in defaults apply.
    s = make_server(start=False)
    s.config.pop("pop3", None)
    s.config.pop("pop3s", None)
    s.config_path.write_text(render_toml(s.config))
    assert "pop3" not in s.config_path.read_text()
    s.start()
    assert not any(name.startswith("pop3") for name in s.listeners), s.listeners
    assert not port_open(10110), "something listens on the default POP3 port"
    assert not port_open(10995), "something listens on the default POP3S port"
    assert not [ln for ln in s.log().splitlines() if "listening" in ln and "pop3" in ln]


def test_switched_on_listeners_are_named_pop3_and_pop3s(server):
    assert set(server.listeners) >= {"pop3", "pop3s"}
    assert (server.data_dir / "listeners").read_text().count("pop3") == 2


# -- TLS and login ---------------------------------------------------------------------------
def test_stls_on_110_user_refused_before_it(server):
    p = poplib.POP3(LOOPBACK, server.port("pop3"), timeout=TIMEOUT)
    try:
        assert p.getwelcome() == b"+OK ironpost ready"
        caps = p.capa()
        assert "STLS" in caps and "TOP" in caps and "UIDL" in caps and "RESP-CODES" in caps
        assert "USER" not in caps and "SASL" not in caps
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p._shortcmd("PASS " + ACCOUNTS[ALICE])
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p._shortcmd("AUTH PLAIN " + base64.b64encode(
                f"\0{ALICE}\0{ACCOUNTS[ALICE]}".encode()).decode())
        p.stls(client_context(server))
        caps = p.capa()
        assert "USER" in caps and caps.get("SASL") == ["PLAIN"] and "STLS" not in caps
        login(p)
        assert p.stat() == (0, 0)
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()


def test_stls_pipelined_plaintext_is_discarded(server):
    s = socket.create_connection((LOOPBACK, server.port("pop3")), timeout=TIMEOUT)
    try:
        f = s.makefile("rb")
        assert f.readline() == b"+OK ironpost ready\r\n"
        s.sendall(b"STLS\r\nUSER " + ALICE.encode() + b"\r\n")
        assert f.readline().startswith(b"+OK")
        tls = server.tls_context().wrap_socket(s, server_hostname=HOSTNAME)
        tls.sendall(b"PASS " + ACCOUNTS[ALICE].encode() + b"\r\n")
        tls.settimeout(TIMEOUT)
        assert tls.recv(4096) == b"-ERR Send USER first\r\n"
        tls.close()
    finally:
        s.close()


def test_pop3s_on_995(server):
    deliver(server, make_message("one"))
    deliver(server, make_message("two"))
    p = pop3s(server, user=None)
    try:
        assert p.getwelcome() == b"+OK ironpost ready"
        caps = p.capa()
        assert "USER" in caps and "STLS" not in caps
        assert caps.get("IMPLEMENTATION") == ["ironpost"]
        assert login(p).startswith(b"+OK Logged in")
        files = stored(server)
        assert p.stat() == (2, sum(len(f) for f in files))
        by_number = [whole(p, 1), whole(p, 2)]
        assert sorted(by_number) == files
        _, lines, _ = p.list()
        assert lines == [f"{i} {len(f)}".encode() for i, f in enumerate(by_number, 1)]
        assert p.list(2) == f"+OK 2 {len(by_number[1])}".encode()
        assert p.noop().startswith(b"+OK")
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()


def test_auth_plain(server):
    with RawPop(server) as c:
        token = base64.b64encode(f"\0{ALICE}\0{ACCOUNTS[ALICE]}".encode()).decode()
        assert c.cmd(f"AUTH PLAIN {token}").startswith(b"+OK Logged in")
        assert c.cmd("QUIT").startswith(b"+OK")
    with RawPop(server) as c:
        assert c.cmd("AUTH PLAIN") == b"+ \r\n"
        token = base64.b64encode(f"{ALICE}\0{ALICE}\0{ACCOUNTS[ALICE]}".encode()).decode()
        assert c.cmd(token).startswith(b"+OK Logged in")
    with RawPop(server) as c:
        token = base64.b64encode(f"{BOB}\0{ALICE}\0{ACCOUNTS[ALICE]}".encode()).decode()
        assert c.cmd(f"AUTH PLAIN {token}") == b"-ERR [AUTH] Authentication failed\r\n"


def test_wrong_password(server):
    p = pop3s(server, user=None)
    try:
        p.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] Authentication failed"):
            p.pass_("not-the-password")
        p.user("nobody@example.test")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p.pass_("whatever")
        # Still in AUTHORIZATION: nothing of the maildrop is shown.
        with pytest.raises(poplib.error_proto):
            p.stat()
        p.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p.pass_("third-failure")
        # The limit (3) is reached: the server closes the connection.
        with pytest.raises((poplib.error_proto, OSError, EOFError)):
            p.user(ALICE)
    finally:
        p.close()
    assert "authentication failed" in server.log()


def test_second_session_gets_in_use(server):
    first = pop3s(server)
    second = pop3s(server, user=None)
    try:
        second.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
            second.pass_(ACCOUNTS[ALICE])
        assert first.quit().startswith(b"+OK")
        # The lock is gone with the first session's QUIT; the same connection may retry.
        second.user(ALICE)
        assert second.pass_(ACCOUNTS[ALICE]).startswith(b"+OK Logged in")
        assert second.quit().startswith(b"+OK")
    finally:
        first.close()
        second.close()


# -- RETR and TOP ----------------------------------------------------------------------------
def test_retr_of_a_dot_stuffed_message_is_byte_exact(server):
    small = make_message("dots", body=DOTTED)
    large = make_message("large", body=big_body(400_000, seed=7))
    deliver(server, small)
    deliver(server, large)
    files = stored(server)
    assert len(files) == 2
    assert any(f.endswith(small) for f in files) and any(f.endswith(large) for f in files)

    # On the wire: the file byte-stuffed, then ".".
    sent = []
    with RawPop(server) as c:
        c.login()
        for n in (1, 2):
            size = int(c.cmd(f"LIST {n}").split()[2])
            assert c.cmd(f"RETR {n}") == f"+OK {size} octets\r\n".encode()
            got = c.multiline()
            match = [f for f in files if got == dot_stuff(f) + b".\r\n"]
            assert match, f"message {n}: {got[:300]!r}"
            assert len(match[0]) == size
            sent.append(match[0])
        assert c.cmd("QUIT").startswith(b"+OK")
    assert sorted(sent) == files
    files = sent

    # Through poplib (which undoes the stuffing): the same octets.
    p = pop3s(server)
    try:
        for n, f in enumerate(files, 1):
            resp, lines, octets = p.retr(n)
            assert resp == f"+OK {len(f)} octets".encode()
            assert b"\r\n".join(lines) + b"\r\n" == f
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()


def test_retr_of_a_file_with_bare_line_endings_sends_crlf_lines(server):
    """A message file put in the Maildir by another program, with bare CR and bare LF:
    every line goes out ending in CRLF, and a dot after a bare CR is stuffed, so no client
    can read `.` alone on a line before the real end."""
    deliver(server, make_message("first"))  # makes the mailbox and its index
    new = server.maildir(ALICE) / "new"
    (new / "1700000000.M1P1.elsewhere").write_bytes(
        b"Subject: bare\r\n\r\nline one\r.\rQUIT\nlast\r")
    with RawPop(server) as c:
        c.login()
        listed = c.cmd("LIST")
        assert listed.startswith(b"+OK"), listed
        rest = c.multiline()
        assert len(rest.splitlines()) == 3, rest  # two messages, then "."
        got = []
        for n in (1, 2):
            assert c.cmd(f"RETR {n}").startswith(b"+OK")
            got.append(c.multiline())
        want = b"Subject: bare\r\n\r\nline one\r\n..\r\nQUIT\r\nlast\r\n.\r\n"
        assert want in got, got
        assert c.cmd("NOOP").startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")


def test_large_retr_to_a_slow_reader(server):
    """A 4 MB message to a client that reads slowly at first: the server streams it under
    back-pressure, and pipelined commands after it still run in order."""
    msg = make_message("huge", body=big_body(4_000_000, seed=11))
    deliver(server, msg)
    f = stored(server)[0]
    with RawPop(server, rcvbuf=8192) as c:
        c.login()
        c.send("RETR 1\r\nRETR 1\r\nSTAT\r\n")
        assert c.line() == f"+OK {len(f)} octets\r\n".encode()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            c.buf += c.sock.recv(1024)
            time.sleep(0.02)
        want = dot_stuff(f) + b".\r\n"
        assert c.multiline() == want
        assert c.line() == f"+OK {len(f)} octets\r\n".encode()
        assert c.multiline() == want
        assert c.line() == f"+OK 1 {len(f)}\r\n".encode()
        assert c.cmd("QUIT").startswith(b"+OK")


def test_pipelined_commands(server):
    deliver(server, make_message("a", body=DOTTED))
    deliver(server, make_message("b"))
    files = stored(server)
    with RawPop(server) as c:
        c.login()
        c.send("STAT\r\nRETR 1\r\nUIDL 2\r\nDELE 2\r\nLIST\r\nRSET\r\nNOOP\r\n")
        assert c.line() == f"+OK 2 {sum(map(len, files))}\r\n".encode()
        assert c.line().startswith(b"+OK")
        one = c.multiline()
        first = [f for f in files if one == dot_stuff(f) + b".\r\n"]
        assert first, one[:300]
        first = first[0]
        assert re.match(rb"^\+OK 2 [0-9A-F]{16}\r\n$", c.line())
        assert c.line() == b"+OK Message 2 deleted\r\n"
        assert c.line() == f"+OK 1 messages ({len(first)} octets)\r\n".encode()
        assert c.multiline() == f"1 {len(first)}\r\n.\r\n".encode()
        assert c.line().startswith(b"+OK Maildrop has 2 messages")
        assert c.line() == b"+OK Done\r\n"
        assert c.cmd("QUIT").startswith(b"+OK")
    assert len(stored(server)) == 2, "RSET undid the DELE"


def test_top(server):
    body = b"".join(f"body line {i}\r\n".encode() for i in range(1, 11))
    msg = make_message("top", body=b".dotted first line\r\n" + body)
    deliver(server, msg)
    deliver(server, make_message("big", body=big_body(300_000, seed=3)))
    p = pop3s(server)
    try:
        # The small message's number: LIST tells them apart.
        _, lines, _ = p.list()
        sizes = {int(n): int(size) for n, size in (ln.split() for ln in lines)}
        small, large = sorted(sizes, key=sizes.get)
        f = [m for m in stored(server) if m.endswith(msg)][0]
        assert sizes[small] == len(f)
        head, _, rest = f.partition(b"\r\n\r\n")
        head_lines = head.split(b"\r\n")
        body_lines = rest.split(b"\r\n")
        resp, lines, _ = p.top(small, 0)
        assert resp.startswith(b"+OK")
        assert lines == head_lines + [b""]
        _, lines, _ = p.top(small, 3)
        assert lines == head_lines + [b""] + body_lines[:3]
        assert lines[len(head_lines) + 1] == b".dotted first line"
        _, lines, _ = p.top(small, 1000)
        assert b"\r\n".join(lines) + b"\r\n" == f
        _, lines, _ = p.top(large, 2)
        assert len(lines) < 40, "TOP of a large message stops after its lines"
        # TOP does not count as reading: no \Seen afterwards.
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()
    with RawPop(server) as c:
        c.login()
        assert c.cmd(f"TOP {small} 2").startswith(b"+OK")
        raw = c.multiline()
        assert b"\r\n..dotted first line\r\nbody line 1\r\n.\r\n" in raw
        assert c.cmd("TOP 9 1") == b"-ERR No such message\r\n"
    if has_imap(server):
        m = imaplib.IMAP4_SSL(LOOPBACK, server.port("imaps"),
                              ssl_context=client_context(server), timeout=TIMEOUT)
        try:
            m.login(ALICE, ACCOUNTS[ALICE])
            m.select("INBOX", readonly=True)
            typ, data = m.fetch("1:2", "(FLAGS)")
            assert typ == "OK" and all(b"\\Seen" not in d for d in data), data
        finally:
            m.logout()


# -- DELE, QUIT and dropped connections --------------------------------------------------------
def test_dele_then_quit_removes_and_imap_sees_it(server):
    for i in range(3):
        deliver(server, make_message(f"m{i}"))
    files = stored(server)
    watcher = None
    if has_imap(server):
        watcher = imaplib.IMAP4_SSL(LOOPBACK, server.port("imaps"),
                                    ssl_context=client_context(server), timeout=TIMEOUT)
        watcher.login(ALICE, ACCOUNTS[ALICE])
        typ, data = watcher.select("INBOX")
        assert typ == "OK" and data == [b"3"], data
    try:
        p = pop3s(server)
        try:
            before = uidl_map(p)
            by_number = {n: whole(p, n) for n in (1, 2, 3)}
            assert sorted(by_number.values()) == files
            _, lines, _ = p.retr(1)
            assert b"\r\n".join(lines) + b"\r\n" == by_number[1]
            assert p.dele(2) == b"+OK Message 2 deleted"
            with pytest.raises(poplib.error_proto, match="already deleted"):
                p.retr(2)
            with pytest.raises(poplib.error_proto, match="already deleted"):
                p.list(2)
            assert p.stat() == (2, len(by_number[1]) + len(by_number[3]))
            assert p.quit() == b"+OK ironpost signing off (2 messages left)"
        finally:
            p.close()
        assert stored(server) == sorted([by_number[1], by_number[3]])
        p = pop3s(server)
        try:
            assert p.stat()[0] == 2
            assert uidl_map(p) == {1: before[1], 2: before[3]}, "UIDLs follow the messages"
            p.quit()
        finally:
            p.close()
        if watcher is not None:
            typ, _ = watcher.noop()
            assert typ == "OK"
            assert watcher.untagged_responses.pop("EXPUNGE", []) == [b"2"]
            typ, data = watcher.fetch("1", "(FLAGS)")
            assert typ == "OK" and b"\\Seen" in data[0], f"RETR marks \\Seen: {data}"
            typ, data = watcher.fetch("2", "(FLAGS)")
            assert typ == "OK" and b"\\Seen" not in data[0], data
    finally:
        if watcher is not None:
            watcher.logout()


def test_dele_then_dropped_connection_deletes_nothing(server):
    for i in range(2):
        deliver(server, make_message(f"keep{i}"))
    files = stored(server)
    p = pop3s(server)
    uids = uidl_map(p)
    p.dele(1)
    p.dele(2)
    assert p.stat() == (0, 0)
    # Gone without QUIT.
    p.sock.close()
    p.file.close()
    p = pop3s(server)  # retries while the server has not yet noticed the close
    try:
        assert p.stat() == (2, sum(map(len, files)))
        assert uidl_map(p) == uids
        p.quit()
    finally:
        p.close()
    assert stored(server) == files


def test_rset_then_quit_deletes_nothing(server):
    deliver(server, make_message("x"))
    p = pop3s(server)
    try:
        p.dele(1)
        assert p.rset().startswith(b"+OK")
        assert p.quit() == b"+OK ironpost signing off (1 messages left)"
    finally:
        p.close()
    assert len(stored(server)) == 1


# -- UIDL ------------------------------------------------------------------------------------
def test_uidl_stable_across_reconnects_and_restart_and_agrees_with_imap(server):
    for i in range(3):
        deliver(server, make_message(f"u{i}"))

    def uidls():
        p = pop3s(server)
        try:
            u = uidl_map(p)
            assert p.uidl(2) == f"+OK 2 {u[2]}".encode()
            p.quit()
            return u
        finally:
            p.close()

    first = uidls()
    assert len(set(first.values())) == 3
    for u in first.values():
        assert re.fullmatch(r"[0-9A-F]{16}", u), u
    assert uidls() == first, "across reconnects"
    if has_imap(server):
        validity, uids = imap_uids(server)
        assert first == {n: f"{uid:08X}{validity:08X}" for n, uid in enumerate(uids, 1)}
    server.stop()
    server.start()
    assert uidls() == first, "across a restart"
    deliver(server, make_message("u3"))
    after = uidls()
    assert {k: after[k] for k in first} == first
    assert after[4] not in first.values()


# -- a real client ---------------------------------------------------------------------------
def run_fetchmail(server, tmp_path, name: str, port_name: str, options: str,
                  server_options: str = "") -> tuple[int, str]:
    out_dir = tmp_path / f"{name}-out"
    out_dir.mkdir(exist_ok=True)
    home = tmp_path / "fetchmail-home"
    home.mkdir(exist_ok=True)
    rc = tmp_path / f"{name}.rc"
    rc.write_text(
        "set no syslog\n"
        f"poll {LOOPBACK} service {server.port(port_name)} protocol POP3 timeout 20"
        f" {server_options}\n"
        f'  user "{ALICE}" there with password "{ACCOUNTS[ALICE]}"\n'
        f"  {options}\n"
        f"  mda \"/bin/sh -c 'cat > {out_dir}/msg.$$'\"\n")
    rc.chmod(0o600)
    env = dict(os.environ, FETCHMAILHOME=str(home), HOME=str(home))
    p = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "-v",
                        "--pidfile", str(home / "fetchmail.pid"), "--idfile", str(home / "ids")],
                       capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def fetched(tmp_path, name: str) -> list[bytes]:
    d = tmp_path / f"{name}-out"
    return [p.read_bytes() for p in sorted(d.iterdir())] if d.is_dir() else []


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")
def test_fetchmail_pulls_the_mailbox(server, tmp_path):
    sent = [make_message("fm1", body=DOTTED), make_message("fm2", body=big_body(100_000)),
            make_message("fm3")]
    for m in sent:
        deliver(server, m)
    assert len(stored(server)) == 3
    # fetchmail adds a Received: field of its own after Return-Path and Delivered-To, and
    # hands the MDA LF line ends: the messages as sent must come through whole.
    lf = [m.replace(b"\r\n", b"\n") for m in sent]

    # `keep` with UIDL bookkeeping: the second run finds nothing new.
    code, log = run_fetchmail(server, tmp_path, "keep1", "pop3s", "ssl no sslcertck keep",
                              server_options="uidl")
    assert code == 0, log
    got = fetched(tmp_path, "keep1")
    assert len(got) == 3, log
    for f in lf:
        assert any(f in g.replace(b"\r\n", b"\n") for g in got), (f[:200], log)
    assert len(stored(server)) == 3, "keep leaves the messages"
    code, log = run_fetchmail(server, tmp_path, "keep2", "pop3s", "ssl no sslcertck keep",
                              server_options="uidl")
    assert code == 1, f"expected 'no mail': {log}"
    assert fetched(tmp_path, "keep2") == []

    # Over port 110 with STLS, deleting: the mailbox ends up empty.
    code, log = run_fetchmail(server, tmp_path, "take", "pop3",
                              "sslproto TLS1.2+ no sslcertck fetchall")
    assert code == 0, log
    assert "STLS" in log, log
    got = fetched(tmp_path, "take")
    assert len(got) == 3, log
    for f in lf:
        assert any(f in g.replace(b"\r\n", b"\n") for g in got), (f[:200], log)
    assert stored(server) == []
