"""Helpers for the ironpost end-to-end tests: a raw SMTP client over real sockets,
message builders, and readers for what ironpost delivers into Maildir.

Everything here talks to 127.0.0.1 only and every network operation is bounded by a
timeout, so a misbehaving server makes a test fail, never hang.
"""

from __future__ import annotations

import base64
import os
import re
import select
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HOSTNAME = "mx.example.test"
LOOPBACK = "127.0.0.1"

# Accounts every test server gets (address -> password).
ACCOUNTS = {
    "alice@example.test": "alice-secret-1",
    "bob@example.test": "bob-secret-2",
    "carol@other.test": "carol-secret-3",
}

# Aliases every test server gets (alias -> targets), in postfix-virtual.cf form.
ALIASES = {
    "postmaster@example.test": ["alice@example.test"],
    "team@example.test": ["alice@example.test", "bob@example.test"],
    "info@other.test": ["bob@example.test"],
}

IO_TIMEOUT = 10.0


class SmtpClosed(Exception):
    """The server closed the connection while a reply was expected."""


@dataclass
class Reply:
    code: int
    lines: list[str]
    raw: bytes = b""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code of the first line, if any."""
        if not self.lines:
            return None
        m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})(\s|$)", self.lines[0])
        return m.group(1) if m else None

    def __str__(self) -> str:
        return self.raw.decode("utf-8", "replace").rstrip("\r\n").replace("\r\n", " | ")

    def is_(self, code: int, enhanced: str | None = None) -> bool:
        return self.code == code and (enhanced is None or self.enhanced == enhanced)


def assert_reply(reply: Reply, code: int, enhanced: str | None = None, what: str = "") -> None:
    want = f"{code}" + (f" {enhanced}" if enhanced else "")
    assert reply.is_(code, enhanced), f"{what}: expected {want}, got {reply}"


class RawSmtp:
    """A deliberately low-level SMTP client: bytes go out exactly as given, replies are
    parsed strictly (CRLF-terminated lines, `ddd-` continuations, `ddd ` last line)."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout: float = IO_TIMEOUT,
                 tls_context: ssl.SSLContext | None = None,
                 server_hostname: str | None = HOSTNAME, greeting: bool = True):
        self.timeout = timeout
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.tls = False
        if tls_context is not None:
            self.sock = tls_context.wrap_socket(self.sock, server_hostname=server_hostname)
            self.tls = True
        self.greeting = self.read_reply() if greeting else None

    # -- low level --------------------------------------------------------------------
    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _recv(self, timeout: float) -> bytes:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        return chunk

    def _read_line(self, deadline: float) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[: i + 2], self.buf[i + 2:]
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete reply line within timeout; have {self.buf!r}")
            try:
                chunk = self._recv(remaining)
            except (socket.timeout, TimeoutError):
                raise TimeoutError(f"no complete reply line within timeout; have {self.buf!r}")
            except ssl.SSLError as e:
                raise SmtpClosed(f"TLS error while reading: {e}; have {self.buf!r}")
            if not chunk:
                raise SmtpClosed(f"connection closed; unparsed {self.buf!r}")
            self.buf += chunk

    def read_reply(self, timeout: float | None = None) -> Reply:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines: list[str] = []
        raw = b""
        code = None
        while True:
            line = self._read_line(deadline)
            raw += line
            m = re.match(rb"^(\d{3})([ -])(.*)\r\n$", line, re.S)
            if not m and re.match(rb"^\d{3}\r\n$", line):
                m = re.match(rb"^(\d{3})()()\r\n$", line)
            assert m, f"malformed reply line {line!r} (reply so far {raw!r})"
            c = int(m.group(1))
            assert code is None or code == c, f"reply code changed mid-reply: {raw!r}"
            code = c
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) != b"-":
                return Reply(code, lines, raw)

    def cmd(self, line: str | bytes, timeout: float | None = None) -> Reply:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.read_reply(timeout)

    def expect(self, line: str | bytes, code: int, enhanced: str | None = None) -> Reply:
        r = self.cmd(line)
        shown = line if isinstance(line, str) else line.decode("latin-1")
        assert_reply(r, code, enhanced, f"after {shown[:80]!r}")
        return r

    def pending(self, wait: float = 0.5) -> bytes:
        """Whatever arrives within `wait` seconds beyond what was already parsed."""
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                chunk = self._recv(remaining)
            except (socket.timeout, TimeoutError):
                break
            except ssl.SSLError:
                break
            if not chunk:
                break
            self.buf += chunk
        data, self.buf = self.buf, b""
        return data

    def wait_closed(self, timeout: float = IO_TIMEOUT) -> bytes:
        """Reads until the server closes the connection; returns what arrived meanwhile.
        Fails (TimeoutError) if the connection stays open."""
        deadline = time.monotonic() + timeout
        got = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"connection still open after {timeout}s; got {got!r}")
            try:
                chunk = self._recv(remaining)
            except (socket.timeout, TimeoutError):
                continue
            except (ssl.SSLError, OSError):
                return self.buf + got
            if not chunk:
                return self.buf + got
            got += chunk

    # -- SMTP steps -------------------------------------------------------------------
    def ehlo(self, name: str = "client.example.net") -> Reply:
        r = self.cmd(f"EHLO {name}")
        assert_reply(r, 250, None, "EHLO")
        return r

    def starttls(self, context: ssl.SSLContext, server_hostname: str = HOSTNAME) -> None:
        r = self.cmd("STARTTLS")
        assert_reply(r, 220, None, "STARTTLS")
        assert self.buf == b"", f"data after the STARTTLS reply in cleartext: {self.buf!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.tls = True

    def auth_plain(self, user: str, password: str) -> Reply:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")

    def mail_transaction(self, sender: str, rcpts: list[str], message: bytes,
                         mail_params: str = "") -> Reply:
        """MAIL, RCPT..., DATA, body (dot-stuffed here), end of data. Returns the final
        reply; asserts the intermediate ones."""
        self.expect(f"MAIL FROM:<{sender}>{(' ' + mail_params) if mail_params else ''}", 250)
        for r in rcpts:
            self.expect(f"RCPT TO:<{r}>", 250)
        self.expect("DATA", 354)
        self.send(dot_stuff(message) + b".\r\n")
        return self.read_reply()

    def quit(self) -> Reply:
        r = self.cmd("QUIT")
        assert_reply(r, 221, None, "QUIT")
        self.close()
        return r

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ehlo_keywords(reply: Reply) -> dict[str, str]:
    """EHLO extension keywords (upper case) -> their parameters."""
    out = {}
    for line in reply.lines[1:]:
        parts = line.split(None, 1)
        if parts:
            out[parts[0].upper()] = parts[1] if len(parts) > 1 else ""
    return out


# -- TLS contexts ------------------------------------------------------------------------
def verifying_context(cafile: Path, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """Trusts exactly the server's self-signed certificate and checks the host name."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- messages ----------------------------------------------------------------------------
def dot_stuff(message: bytes) -> bytes:
    """Transparency for DATA (RFC 5321 4.5.2); `message` must end in CRLF."""
    assert message.endswith(b"\r\n")
    lines = message.split(b"\r\n")
    return b"\r\n".join((b"." + ln) if ln.startswith(b".") else ln for ln in lines)


def make_message(subject: str = "test", body: bytes | str = b"Hello.\r\n",
                 sender: str = "sender@remote.test", to: str = "alice@example.test",
                 extra_headers: list[str] | None = None) -> bytes:
    """An RFC 5322 message with CRLF line endings and a unique Message-ID."""
    if isinstance(body, str):
        body = body.encode()
    token = uuid.uuid4().hex
    headers = [
        f"From: <{sender}>",
        f"To: <{to}>",
        f"Subject: {subject} {token}",
        "Date: Tue, 25 Nov 2025 09:00:00 +0000",
        f"Message-ID: <{token}@remote.test>",
    ] + (extra_headers or [])
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def big_body(size: int, seed: int = 1) -> bytes:
    """About `size` bytes of CRLF lines of printable text, some starting with a dot."""
    import random
    rnd = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-"
    table = bytes(alphabet[i % len(alphabet)] for i in range(256))
    out = bytearray()
    n = 0
    while len(out) < size:
        ln = rnd.randbytes(rnd.randint(0, 76)).translate(table)
        if n % 37 == 0:
            ln = b"." + ln
        if n % 101 == 0:
            ln = b"."
        out += ln + b"\r\n"
        n += 1
    return bytes(out)


# -- Maildir -----------------------------------------------------------------------------
@dataclass
class Delivered:
    path: Path
    data: bytes
    return_path: str
    delivered_to: str
    received: bytes           # the whole Received: field, continuation lines included
    body: bytes               # the message as the client sent it (after dot-unstuffing)
    extra: dict = field(default_factory=dict)


_RP = re.compile(rb"^Return-Path: <([^<>\r\n]*)>\r\n")
_DT = re.compile(rb"^Delivered-To: <?([^<>\r\n]*)>?\r\n")


def split_delivered(path: Path, data: bytes) -> Delivered:
    """Splits ironpost's prefix (Return-Path, Delivered-To, Received with its continuation
    lines) off a delivered file; fails if the prefix is not exactly that."""
    m = _RP.match(data)
    assert m, f"{path.name}: does not start with a Return-Path line: {data[:200]!r}"
    rp = m.group(1).decode("utf-8", "replace")
    rest = data[m.end():]
    m = _DT.match(rest)
    assert m, f"{path.name}: second line is not Delivered-To: {rest[:200]!r}"
    dt = m.group(1).decode("utf-8", "replace")
    rest = rest[m.end():]
    assert rest.startswith(b"Received: "), f"{path.name}: third field is not Received: {rest[:200]!r}"
    i = rest.find(b"\r\n")
    assert i > 0, f"{path.name}: unterminated Received line"
    end = i + 2
    while rest[end:end + 1] in (b" ", b"\t"):
        j = rest.find(b"\r\n", end)
        assert j > 0, f"{path.name}: unterminated Received continuation line"
        end = j + 2
    received = rest[:end]
    assert b"\n" not in received.replace(b"\r\n", b""), f"bare LF in Received: {received!r}"
    return Delivered(path, data, rp, dt, received, rest[end:])


_NAME = re.compile(r"^[^/]+,S=(\d+)(:2,[A-Za-z]*)?$")


def check_maildir_name(path: Path) -> None:
    m = _NAME.match(path.name)
    assert m, f"Maildir file name without ,S=<size>: {path.name}"
    size = path.stat().st_size
    assert int(m.group(1)) == size, f"{path.name}: S={m.group(1)} but the file has {size} bytes"


def unfold(header: bytes) -> str:
    return re.sub(r"\r\n[ \t]+", " ", header.decode("utf-8", "replace")).strip()


def wait_until(pred, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sock_readable(sock: socket.socket, timeout: float) -> bool:
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


def port_open(port: int, host: str = LOOPBACK, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


class BioSocket:
    """TLS over ssl.MemoryBIO on a plain socket, with the socket methods RawSmtp uses.

    Unlike SSLSocket it lets a test decide which TLS records share one TCP write (e.g. the
    client's Finished and its first command), and it tells whether the server ended the TLS
    session with close_notify or just dropped the TCP connection."""

    def __init__(self, raw: socket.socket, context: ssl.SSLContext, server_hostname: str | None):
        self.raw = raw
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.timeout = IO_TIMEOUT
        self.close_notify = False
        self.eof = False

    def settimeout(self, t):
        self.timeout = t

    def setsockopt(self, *a):
        self.raw.setsockopt(*a)

    def _flush(self) -> None:
        data = self.out.read()
        if data:
            self.raw.sendall(data)

    def _fill(self) -> None:
        self.raw.settimeout(self.timeout)
        data = self.raw.recv(65536)
        if not data:
            self.eof = True
            self.inc.write_eof()
        else:
            self.inc.write(data)

    def handshake(self, then: bytes = b"") -> None:
        """Completes the handshake; `then` (application data) goes out in the same TCP write
        as the client's last handshake flight."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if self.eof:
                    raise SmtpClosed("connection closed during the TLS handshake")
                self._fill()
        if then:
            self.obj.write(then)
        self._flush()

    def version(self):
        return self.obj.version()

    def sendall(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    def recv(self, n: int) -> bytes:
        while True:
            try:
                data = self.obj.read(n)
                self._flush()
                if not data:
                    # SSLObject.read gives b"" only for a clean close (close_notify); no data
                    # yet raises SSLWantReadError, and a bare TCP close raises SSLEOFError.
                    self.close_notify = True
                return data
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                return b""
            except ssl.SSLEOFError:
                return b""
            if self.eof:
                return b""
            self._fill()

    def close(self) -> None:
        self.raw.close()


def bio_starttls(c: "RawSmtp", context: ssl.SSLContext, then: bytes = b"",
                 server_hostname: str = HOSTNAME, command: bool = True) -> BioSocket:
    """STARTTLS (unless `command` is False: implicit TLS) with a BioSocket; `then` is sent in
    the same TCP write as the client's Finished."""
    if command:
        r = c.cmd("STARTTLS")
        assert_reply(r, 220, None, "STARTTLS")
        assert c.buf == b""
    bio = BioSocket(c.sock, context, server_hostname)
    c.sock = bio
    c.tls = True
    bio.handshake(then)
    return bio
