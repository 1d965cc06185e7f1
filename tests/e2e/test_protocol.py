"""SMTP at the byte level over raw sockets: pipelining, BDAT, SMTP smuggling, STARTTLS
command injection, mail loops, overlong lines, junk, clients that vanish, and timeouts."""

import random
import socket
import ssl
import struct
import time

import pytest

from e2e_helpers import (
    ALIASES, LOOPBACK, RawSmtp, assert_reply, big_body, bio_starttls, dot_stuff, make_message, port_open,
)

ALICE = "alice@example.test"
BOB = "bob@example.test"


def alive(server) -> None:
    """The server still accepts and delivers."""
    assert server.proc.poll() is None, f"ironpost exited with {server.proc.returncode}"
    msg = make_message("still alive")
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        assert_reply(c.mail_transaction("sender@remote.test", [BOB], msg), 250, None, "end of data")
        c.quit()
    server.wait_messages(BOB, 1)


# -- pipelining --------------------------------------------------------------------------------
def test_pipelined_commands_are_answered_in_order(server):
    m1 = make_message("pipelined one")
    m2 = make_message("pipelined two", b".dot line\r\nend\r\n")
    with RawSmtp(server.smtp_port) as c:
        c.send(b"EHLO client.example.net\r\n"
               b"MAIL FROM:<sender@remote.test>\r\n"
               b"RCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<ghost@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\n"
               b"DATA\r\n")
        r = c.read_reply()
        assert r.code == 250 and len(r.lines) > 1 and r.lines[0].startswith("mx.example.test"), str(r)
        assert_reply(c.read_reply(), 250, None, "MAIL")
        assert_reply(c.read_reply(), 250, None, "RCPT alice")
        assert_reply(c.read_reply(), 550, "5.1.1", "RCPT ghost")
        assert_reply(c.read_reply(), 250, None, "RCPT bob")
        assert_reply(c.read_reply(), 354, None, "DATA")
        # End of data, and the next transaction, in one write.
        c.send(m1 + b".\r\n"
               b"MAIL FROM:<other@remote.test>\r\n"
               b"RCPT TO:<carol@other.test>\r\n"
               b"DATA\r\n")
        assert_reply(c.read_reply(), 250, None, "end of data 1")
        assert_reply(c.read_reply(), 250, None, "MAIL 2")
        assert_reply(c.read_reply(), 250, None, "RCPT 2")
        assert_reply(c.read_reply(), 354, None, "DATA 2")
        c.send(dot_stuff(m2) + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        assert_reply(c.read_reply(), 250, None, "end of data 2")
        assert_reply(c.read_reply(), 250, None, "RSET")
        assert_reply(c.read_reply(), 250, None, "NOOP")
        assert_reply(c.read_reply(), 221, None, "QUIT")
        c.wait_closed()
    server.assert_delivered(ALICE, m1, "sender@remote.test")
    server.assert_delivered(BOB, m1, "sender@remote.test")
    server.assert_delivered("carol@other.test", m2, "other@remote.test")


def test_pipelining_byte_by_byte(server):
    """The same conversation, split into one-byte writes: replies must not depend on how
    the input is cut."""
    msg = make_message("bytewise", b"one byte at a time\r\n")
    with RawSmtp(server.smtp_port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in b"EHLO client.example.net\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n":
            c.send(bytes([b]))
        assert c.read_reply().code == 250
        assert c.read_reply().code == 250
        assert c.read_reply().code == 250
        assert c.read_reply().code == 354
        for b in msg + b".\r\n":
            c.send(bytes([b]))
        assert_reply(c.read_reply(), 250, None, "end of data")
        c.quit()
    server.assert_delivered(ALICE, msg, "s@remote.test")


# -- BDAT (RFC 3030) -------------------------------------------------------------------------
def test_bdat_chunks(server):
    # BDAT content is taken literally: no dot-stuffing, a lone "." line is just data.
    part1 = make_message("bdat", b".not stuffed\r\n.\r\n")
    part2 = b"second chunk\r\n..two dots\r\n"
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        assert_reply(c.read_reply(), 250, None, "BDAT 1")
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        assert_reply(c.read_reply(), 250, None, "BDAT LAST")
        c.quit()
    server.assert_delivered(ALICE, part1 + part2, "sender@remote.test")


def test_bdat_fully_pipelined_with_empty_last_chunk(server):
    body = make_message("bdat pipelined", big_body(200_000, seed=3))
    a, b = body[:123_457], body[123_457:]
    with RawSmtp(server.smtp_port) as c:
        c.send(b"EHLO client.example.net\r\nMAIL FROM:<sender@remote.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\n"
               + b"BDAT %d\r\n" % len(a) + a
               + b"BDAT %d\r\n" % len(b) + b
               + b"BDAT 0 LAST\r\nQUIT\r\n")
        assert c.read_reply().code == 250
        assert_reply(c.read_reply(), 250, None, "MAIL")
        assert_reply(c.read_reply(), 250, None, "RCPT")
        assert_reply(c.read_reply(), 250, None, "BDAT 1")
        assert_reply(c.read_reply(), 250, None, "BDAT 2")
        assert_reply(c.read_reply(), 250, None, "BDAT 0 LAST")
        assert_reply(c.read_reply(), 221, None, "QUIT")
    server.assert_delivered(BOB, body, "sender@remote.test")


def test_bdat_binary_content_is_kept_exactly(server):
    # CHUNKING carries octets as they are; only DATA needs CRLF-clean text.
    body = make_message("bdat binary", b"bare\nLF and bare\rCR and NUL \x00 and \xff\r\n")
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test> BODY=8BITMIME", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        r = c.read_reply()
        c.quit()
    if r.code == 250:
        server.assert_delivered(ALICE, body, "sender@remote.test")
    else:
        # Refusing bare line endings is acceptable; accepting and altering them is not.
        assert r.code == 550 and r.enhanced == "5.6.0", f"BDAT with bare CR/LF: {r}"
        assert server.all_files("new") == []


def test_rejected_bdat_chunk_is_still_consumed(server):
    """A refused BDAT's octets are data, never commands (RFC 3030 section 2)."""
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        payload = b"RSET\r\nNOOP\r\nMAIL FROM:<evil@remote.test>\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(payload) + payload)
        r = c.read_reply()
        assert r.code == 503, f"BDAT without MAIL: {r}"
        extra = c.pending(0.7)
        assert extra == b"", f"the chunk's bytes were run as commands: {extra!r}"
        c.expect("NOOP", 250)
        c.quit()


def test_data_after_bdat_is_refused(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.send(b"BDAT 5\r\nhello")
        assert_reply(c.read_reply(), 250)
        r = c.cmd("DATA")
        assert r.code == 503, f"DATA after BDAT: {r}"


# -- SMTP smuggling -----------------------------------------------------------------------
SMUGGLED = (b"MAIL FROM:<evil@remote.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\n"
            b"DATA\r\n"
            b"From: <ceo@example.test>\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n",
                                      b"\r\n.\r"],
                         ids=["LF.LF", "LF.CRLF", "CRLF.LF", "CR.CR", "CR.CRLF", "CRLF.CR"])
def test_smtp_smuggling_is_refused(server, fake_end):
    head = make_message("smuggling carrier", b"innocent text")
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(head + fake_end + SMUGGLED + b".\r\n")
        r = c.read_reply()
        assert_reply(r, 550, "5.6.0", f"message with {fake_end!r} inside")
        extra = c.pending(0.7)
        assert extra == b"", f"more replies than one (smuggled commands ran?): {extra!r}"
        c.expect("NOOP", 250)
        c.quit()
    assert server.all_files("new") == [], f"delivered: {server.all_files('new')}"
    assert server.all_files("tmp") == []


@pytest.mark.parametrize("body", [b"bare LF\nhere\r\n", b"bare CR\rhere\r\n", b"ends in bare LF\n"],
                         ids=["LF", "CR", "final-LF"])
def test_bare_line_endings_in_data_are_550_560(server, body):
    msg = make_message("bare") + body
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(msg + (b"" if msg.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        assert_reply(c.read_reply(), 550, "5.6.0", "bare line ending")
        # The session is usable afterwards.
        good = make_message("after bare")
        assert_reply(c.mail_transaction("sender@remote.test", [ALICE], good), 250)
        c.quit()
    server.assert_delivered(ALICE, good, "sender@remote.test")


def test_lf_dot_lf_does_not_end_data(server):
    """`\\n.\\n` must not end DATA: the server is still reading the body afterwards."""
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(make_message("lf-dot-lf") + b"x\n.\n")
        assert c.pending(0.7) == b"", "the server answered: it took \\n.\\n as end of data"
        c.send(b"NOOP\r\n")
        assert c.pending(0.5) == b"", "NOOP after \\n.\\n was run as a command"
        c.send(b"\r\n.\r\n")
        assert_reply(c.read_reply(), 550, "5.6.0")
    assert server.all_files("new") == []


# -- mail loops ------------------------------------------------------------------------------
def with_hops(message: bytes, hops: int) -> bytes:
    """`message` with `hops` Received: fields on top, their names in mixed case."""
    names = ("Received", "received", "RECEIVED")
    fields = [f"{names[i % 3]}: from relay{i}.remote.test by relay{i + 1}.remote.test;\r\n"
              f"\tTue, 25 Nov 2025 09:00:00 +0000\r\n" for i in range(hops)]
    return "".join(fields).encode() + message


def test_too_many_hops_is_554_546(make_server):
    """More Received: fields than limits.max_hops (default 50) is a mail loop: refused at the
    end of data, with nothing delivered or queued; a message at the limit is delivered."""
    loop = "loop@example.test"
    server = make_server(aliases={**ALIASES, loop: [BOB, "someone@remote.test"]})
    queue = server.data_dir / "queue"

    def queued() -> list[str]:
        return sorted(str(p.relative_to(queue)) for p in queue.rglob("*")
                      if p.is_file() and p.name != "flush") if queue.is_dir() else []

    looping = with_hops(make_message("looping", to=loop), 51)
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        assert_reply(c.mail_transaction("sender@remote.test", [loop], looping), 554, "5.4.6",
                     "DATA with 51 hops")
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{loop}>", 250)
        c.send(b"BDAT %d LAST\r\n" % len(looping) + looping)
        assert_reply(c.read_reply(), 554, "5.4.6", "BDAT with 51 hops")
        assert server.all_files("new") == [] and server.all_files("tmp") == []
        assert queued() == [], f"a looping message was queued: {queued()}"

        at_limit = with_hops(make_message("fifty hops", to=loop), 50)
        assert_reply(c.mail_transaction("sender@remote.test", [loop], at_limit), 250, None,
                     "DATA with 50 hops")
        c.quit()
    server.assert_delivered(BOB, at_limit, "sender@remote.test")
    assert len([f for f in queued() if f.endswith(".msg")]) == 1, queued()


# -- STARTTLS command injection --------------------------------------------------------------
def starttls_injection(server, port):
    c = RawSmtp(port)
    try:
        c.ehlo()
        c.send(b"STARTTLS\r\nNOOP\r\n")
        r = c.read_reply()
        assert_reply(r, 220, None, "STARTTLS")
        leftover = c.buf + c.pending(0.5)
        assert leftover == b"", f"cleartext after the 220 (injected NOOP answered?): {leftover!r}"
        c.buf = b""
        c.sock = server.tls_context().wrap_socket(c.sock, server_hostname="mx.example.test")
        c.send(b"EHLO client.example.net\r\n")
        r = c.read_reply()
        assert r.code == 250 and len(r.lines) > 1 and r.lines[0].startswith("mx.example.test"), (
            f"first reply inside TLS is not the EHLO reply (injected command answered?): {r}")
        c.send(b"NOOP\r\n")
        assert_reply(c.read_reply(), 250, None, "NOOP inside TLS")
        extra = c.pending(0.5)
        assert extra == b"", f"extra reply inside TLS: {extra!r}"
        c.quit()
    finally:
        c.close()


def test_starttls_injection_on_submission(server):
    starttls_injection(server, server.submission_port)


def test_starttls_injection_on_smtp_port(tls_server):
    starttls_injection(tls_server, tls_server.smtp_port)


def test_starttls_injected_auth_is_not_honoured(server):
    """AUTH pipelined after STARTTLS in cleartext must not authenticate the TLS session."""
    import base64
    token = base64.b64encode(b"\0alice@example.test\0alice-secret-1").decode()
    c = RawSmtp(server.submission_port)
    try:
        c.ehlo()
        c.send(f"STARTTLS\r\nAUTH PLAIN {token}\r\n".encode())
        assert_reply(c.read_reply(), 220)
        assert c.buf + c.pending(0.3) == b""
        c.sock = server.tls_context().wrap_socket(c.sock, server_hostname="mx.example.test")
        c.ehlo()
        c.expect("MAIL FROM:<alice@example.test>", 530, "5.7.0")
    finally:
        c.close()


def test_ehlo_required_again_after_starttls(tls_server):
    with RawSmtp(tls_server.smtp_port) as c:
        c.ehlo()
        c.starttls(tls_server.tls_context())
        c.expect("MAIL FROM:<alice@example.test>", 503, "5.5.1")


# -- overlong lines, junk ---------------------------------------------------------------------
def test_overlong_command_line_is_500_552_and_session_stays_in_sync(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        r = c.cmd(b"NOOP " + b"x" * 5000)
        assert_reply(r, 500, "5.5.2", "overlong line")
        assert c.pending(0.5) == b"", "more than one reply to one overlong line"
        c.send(b"NOOP\r\nNOOP\r\n")
        assert_reply(c.read_reply(), 250)
        assert_reply(c.read_reply(), 250)
        msg = make_message("after overlong")
        assert_reply(c.mail_transaction("sender@remote.test", [ALICE], msg), 250)
        c.quit()
    server.assert_delivered(ALICE, msg, "sender@remote.test")


def test_huge_line_in_pieces(server):
    """1 MiB without a line end, then CRLF: one 500, no memory blow-up, still in sync."""
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        try:
            for _ in range(64):
                c.send(b"A" * 16384)
            c.send(b"\r\n")
        except OSError as e:
            pytest.fail(f"server dropped the connection during the long line: {e}")
        assert_reply(c.read_reply(), 500, "5.5.2", "1 MiB line")
        c.expect("NOOP", 250)
    alive(server)


def test_overlong_rcpt_in_a_pipeline(make_server):
    server = make_server(config={"limits": {"max_line_length": 512}})
    with RawSmtp(server.smtp_port) as c:
        c.send(b"EHLO client.example.net\r\nMAIL FROM:<sender@remote.test>\r\n"
               b"RCPT TO:<" + b"a" * 600 + b"@example.test>\r\n"
               b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert c.read_reply().code == 250
        assert c.read_reply().code == 250
        assert_reply(c.read_reply(), 500, "5.5.2", "overlong RCPT")
        assert_reply(c.read_reply(), 250, None, "RCPT alice")
        assert_reply(c.read_reply(), 354, None, "DATA")
        msg = make_message("pipeline with overlong")
        c.send(msg + b".\r\n")
        assert_reply(c.read_reply(), 250)
        c.quit()
    server.assert_delivered(ALICE, msg, "sender@remote.test")


def test_nul_and_8bit_junk_in_commands(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        for junk in [b"NO\x00OP", b"\xff\xfe\xfd", b"MAIL FROM:<a\x00b@remote.test>", b"\x1b[2J"]:
            r = c.cmd(junk)
            assert 500 <= r.code < 600, f"{junk!r}: {r}"
        c.expect("NOOP", 250)
        c.quit()


def test_binary_junk_does_not_hurt_the_server(server):
    rnd = random.Random(42)
    junk = bytearray()
    while len(junk) < 256 * 1024:
        junk += rnd.randbytes(rnd.randint(1, 300))
        if rnd.random() < 0.5:
            junk += b"\r\n"
    for _ in range(3):
        c = RawSmtp(server.smtp_port)
        try:
            try:
                c.send(bytes(junk))
            except OSError:
                pass  # it is allowed to hang up on us
            try:
                c.wait_closed(15)
            except TimeoutError:
                pass  # or to keep answering errors
        finally:
            c.close()
    alive(server)


def test_tls_client_hello_to_cleartext_port(server):
    raw = socket.create_connection((LOOPBACK, server.smtp_port), timeout=5)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, OSError)):
        s = ctx.wrap_socket(raw, server_hostname="mx.example.test")
        s.close()
    raw.close()
    alive(server)


def test_cleartext_to_implicit_tls_port(make_server):
    server = make_server(config={"submissions": {"enabled": True}})
    s = socket.create_connection((LOOPBACK, server.submissions_port), timeout=5)
    try:
        s.sendall(b"EHLO client.example.net\r\nMAIL FROM:<a@b>\r\n")
        s.settimeout(10)
        got = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert b"250" not in got, f"cleartext SMTP answered on the implicit TLS port: {got!r}"
    finally:
        s.close()
    alive(server)


def test_connect_and_vanish_many_times(server):
    for i in range(30):
        s = socket.create_connection((LOOPBACK, server.smtp_port), timeout=5)
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    alive(server)


# -- clients that go away mid-message -------------------------------------------------------
@pytest.mark.parametrize("how", ["close", "reset"])
def test_disconnect_mid_data_leaves_nothing(server, how):
    c = RawSmtp(server.smtp_port)
    c.ehlo()
    c.expect("MAIL FROM:<sender@remote.test>", 250)
    c.expect(f"RCPT TO:<{ALICE}>", 250)
    c.expect("RCPT TO:<bob@example.test>", 250)
    c.expect("DATA", 354)
    c.send(dot_stuff(make_message("interrupted", big_body(300_000, seed=5))))
    time.sleep(0.3)
    if how == "reset":
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    deadline = time.monotonic() + 10
    while server.all_files("tmp") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.all_files("tmp") == [], f"left in tmp/: {server.all_files('tmp')}"
    assert server.all_files("new") == [], f"partial message delivered: {server.all_files('new')}"
    alive(server)
    assert server.files(ALICE) == []


def test_disconnect_mid_bdat_leaves_nothing(server):
    c = RawSmtp(server.smtp_port)
    c.ehlo()
    c.expect("MAIL FROM:<sender@remote.test>", 250)
    c.expect(f"RCPT TO:<{ALICE}>", 250)
    first = make_message("bdat interrupted", big_body(100_000, seed=9))
    c.send(b"BDAT %d\r\n" % len(first) + first)
    assert_reply(c.read_reply(), 250)
    c.send(b"BDAT 100000 LAST\r\n" + b"z" * 5000)
    time.sleep(0.3)
    c.close()
    deadline = time.monotonic() + 10
    while server.all_files("tmp") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.all_files("tmp") == []
    assert server.all_files("new") == []
    alive(server)


# -- timeouts -----------------------------------------------------------------------------
def test_idle_timeout_is_421_442(make_server):
    server = make_server(config={"limits": {"command_timeout": 1}})
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        t0 = time.monotonic()
        r = c.read_reply(timeout=10)
        waited = time.monotonic() - t0
        assert_reply(r, 421, "4.4.2", "idle client")
        assert 0.5 <= waited <= 6, f"timed out after {waited:.1f}s with command_timeout = 1"
        c.wait_closed(5)


def test_idle_timeout_before_ehlo_and_inside_tls(make_server):
    server = make_server(config={"limits": {"command_timeout": 1}})
    with RawSmtp(server.smtp_port) as c:
        assert_reply(c.read_reply(timeout=10), 421, "4.4.2", "idle after greeting")
    with RawSmtp(server.submission_port) as c:
        c.ehlo()
        c.starttls(server.tls_context())
        assert_reply(c.read_reply(timeout=10), 421, "4.4.2", "idle inside TLS")
        c.wait_closed(5)


def test_activity_keeps_the_session_alive(make_server):
    server = make_server(config={"limits": {"command_timeout": 2}})
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        for _ in range(4):
            time.sleep(1)
            c.expect("NOOP", 250)
        c.quit()


def test_data_timeout_drops_the_message(make_server):
    server = make_server(config={"limits": {"data_timeout": 1, "command_timeout": 30}})
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(make_message("stalled"))
        r = c.read_reply(timeout=10)
        assert r.code == 421, f"stalled DATA: {r}"
        c.wait_closed(5)
    time.sleep(0.2)
    assert server.all_files("new") == []
    assert server.all_files("tmp") == []


def test_server_ports_are_loopback_only(server):
    for name, addrs in server.listeners.items():
        for host, port in addrs:
            assert host == LOOPBACK, f"{name} bound to {host}"
            assert port_open(port)


# -- TLS record boundaries and closing ------------------------------------------------------
@pytest.mark.parametrize("listener", ["submission", "smtp"])
def test_command_in_same_write_as_tls_finished_is_answered(tls_server, listener):
    """A client may send its first command right behind its Finished message, in the same TCP
    segment (openssl s_client with piped input does). That command arrived *after* the
    handshake, inside TLS: it must be answered, not discarded as STARTTLS injection."""
    c = RawSmtp(tls_server.port(listener))
    try:
        c.ehlo()
        bio_starttls(c, tls_server.tls_context(), then=b"EHLO client.example.net\r\n")
        r = c.read_reply(timeout=5)
        assert r.code == 250 and r.lines[0].startswith("mx.example.test"), str(r)
        c.expect("NOOP", 250)
        c.quit()
    finally:
        c.close()


def test_ehlo_in_separate_write_after_tls_finished(server):
    """Control for the test above: the same conversation, Finished and EHLO sent apart."""
    c = RawSmtp(server.submission_port)
    try:
        c.ehlo()
        bio_starttls(c, server.tls_context())
        time.sleep(0.2)
        r = c.ehlo()
        assert r.lines[0].startswith("mx.example.test")
        c.quit()
    finally:
        c.close()


@pytest.mark.parametrize("listener", ["submission", "submissions"])
def test_tls_session_ends_with_close_notify(tls_server, listener):
    """After QUIT's 221 the server closes the TLS session properly (close_notify) before the
    TCP connection; otherwise strict clients report a truncation attack (openssl: 'unexpected
    eof while reading')."""
    c = RawSmtp(tls_server.port(listener), greeting=False)
    try:
        if listener == "submission":
            c.read_reply()
            c.ehlo()
            bio = bio_starttls(c, tls_server.tls_context())
        else:
            bio = bio_starttls(c, tls_server.tls_context(), command=False)
            assert_reply(c.read_reply(), 220, None, "greeting")
        c.ehlo()
        assert_reply(c.cmd("QUIT"), 221)
        c.wait_closed(5)
        assert bio.close_notify, "TCP connection closed without a TLS close_notify alert"
    finally:
        c.close()
