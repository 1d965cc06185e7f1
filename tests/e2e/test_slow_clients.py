"""Clients that stop reading: `limits.write_timeout` drops a connection whose output has had
no byte taken for that long, whatever the session is doing, and the server goes on serving
everyone else."""

from __future__ import annotations

import imaplib
import os
import re
import socket
import ssl
import time
from pathlib import Path

from e2e_helpers import ACCOUNTS, LOOPBACK, make_message, wait_until

ALICE = "alice@example.test"
TIMEOUT = 10
STALL_LOG = "write timed out"


def client_context(server) -> ssl.SSLContext:
    ctx = server.tls_context()
    ctx.check_hostname = False
    return ctx


def open_files_under(pid: int, root: Path) -> list[str]:
    """The files under `root` the process has open (empty if /proc cannot tell)."""
    out = []
    fds = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fds.iterdir())
    except OSError:
        return out
    prefix = str(root.resolve())
    for fd in entries:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(prefix):
            out.append(target)
    return out


def test_imap_client_that_stops_reading_mid_fetch_is_dropped(make_server):
    """A client pipelines FETCHes of a 2 MB message, far more than the socket buffers hold,
    and reads nothing: the server stops at its output limit, with the message file open.
    After write_timeout (1 s) of no progress it drops the connection (and the file), and a
    second client logs in and reads the message as usual."""
    server = make_server(config={"limits": {"write_timeout": 1}})
    body = b"".join(b"line %06d %s\r\n" % (i, b"b" * 60) for i in range(28_000))
    msg = make_message("stalled fetch", body)
    assert len(msg) > 2_000_000

    raw = socket.create_connection((LOOPBACK, server.port("imaps")), timeout=TIMEOUT)
    sock = client_context(server).wrap_socket(raw)
    try:
        buf = b""

        def read_until(pattern: bytes) -> None:
            nonlocal buf
            deadline = time.monotonic() + TIMEOUT
            while pattern not in buf:
                assert time.monotonic() < deadline, f"no {pattern!r}; have {buf[-200:]!r}"
                chunk = sock.recv(65536)
                assert chunk, f"closed; have {buf[-200:]!r}"
                buf += chunk

        read_until(b"\r\n")
        sock.sendall(b'a LOGIN "%s" "%s"\r\n' % (ALICE.encode(), ACCOUNTS[ALICE].encode())
                     + b"b APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n"
                     + b"c SELECT INBOX\r\n")
        read_until(b"c OK")
        assert re.search(rb"\r\nb OK", buf), buf[-300:]
        fetches = 12
        sock.sendall(b"".join(b"f%d FETCH 1 BODY.PEEK[]\r\n" % i for i in range(fetches)))
        started = time.monotonic()
        # The session is stuck mid-FETCH, holding the message file open. Nothing is read from
        # here on until the server has given up.
        mail = server.data_dir / "mail"
        wait_until(lambda: STALL_LOG in server.log(), timeout=10,
                   what=f"the server logging '{STALL_LOG}'")
        waited = time.monotonic() - started
        assert 0.5 <= waited <= 6, f"dropped after {waited:.1f}s with write_timeout = 1"
        wait_until(lambda: not open_files_under(server.proc.pid, mail), timeout=5,
                   what="the session's files closed")
        # What the kernel had buffered arrives, then the end: far less than was asked for.
        got = 0
        sock.settimeout(TIMEOUT)
        while got <= fetches * len(msg):
            try:
                chunk = sock.recv(262144)
            except (ssl.SSLError, ConnectionResetError, ConnectionAbortedError):
                break
            if not chunk:
                break
            got += len(chunk)
        assert got < fetches * len(msg) // 2, f"read {got} octets after the drop"
        print(f"dropped after {waited:.2f}s; {got} octets were still buffered")
    finally:
        sock.close()

    line = [ln for ln in server.log().splitlines() if STALL_LOG in ln][0]
    assert "127.0.0.1:" in line, f"the log line names no peer: {line}"

    # Everyone else is served as before.
    m = imaplib.IMAP4_SSL(LOOPBACK, server.port("imaps"), ssl_context=client_context(server),
                          timeout=TIMEOUT)
    try:
        typ, _ = m.login(ALICE, ACCOUNTS[ALICE])
        assert typ == "OK"
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"1"], data
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == msg
    finally:
        m.logout()
    assert server.proc.poll() is None
