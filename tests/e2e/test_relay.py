"""Outbound relay: the durable queue, delivery to other servers, retries, DSNs and the
sender-ownership rule.

Everything stays on 127.0.0.1: the "other servers" are a second ironpost, a small SMTP sink
written here, or Postfix's smtp-sink, reached through `relay.routes` (never DNS).
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import ironpost_bin
from e2e_helpers import (
    ACCOUNTS, RawSmtp, assert_reply, big_body, dot_stuff, make_message, split_delivered,
    wait_until,
)

ALICE = "alice@example.test"
ALICE_PW = ACCOUNTS[ALICE]
BOB = "bob@example.test"
DAVE = "dave@remote.test"
DAVE_PW = "dave-secret-4"

# Every server here asks a resolver on loopback where nothing answers (fast failure), so that
# nothing a test does can send a DNS query off this machine; tests route by `relay.routes`
# or run their own DNS responder on 127.0.0.1.
NO_DNS = {"dns": {"servers": ["127.0.0.1:9"], "timeout": 1}}
# Fast retries so that deferral, retry and expiry fit in a test.
FAST_QUEUE = {"queue": {"retry_intervals": [1], "max_age": 600}}


# -- helpers ------------------------------------------------------------------------------
def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_routes(make_server, routes: dict[str, str], extra_toml: str = "", **kw):
    """A server whose config gets a `[relay]` table with `routes` (an inline TOML table,
    which the shared config renderer does not write) and `extra_toml` appended."""
    start = kw.pop("start", True)
    kw["config"] = {**NO_DNS, **kw.get("config", {})}
    s = make_server(start=False, **kw)
    table = ", ".join(f'"{d}" = "{t}"' for d, t in routes.items())
    text = s.config_path.read_text() + f"\n[relay]\nroutes = {{ {table} }}\n" + extra_toml
    s.config_path.write_text(text)
    if start:
        s.start()
    return s


def remote_server(make_server, **config):
    """Instance B: receives for remote.test; dave is its user."""
    cfg = {"hostname": "mx.remote.test", "domains": ["remote.test"], **NO_DNS}
    cfg.update(config)
    return make_server(config=cfg, accounts={DAVE: DAVE_PW}, aliases={}, name="b")


def submit(server, sender: str, rcpts: list[str], msg: bytes, user: str = ALICE,
           password: str = ALICE_PW):
    """STARTTLS, AUTH and one transaction on the submission port; returns the final reply."""
    with RawSmtp(server.submission_port) as c:
        c.ehlo()
        c.starttls(server.tls_context())
        c.ehlo()
        assert_reply(c.auth_plain(user, password), 235, "2.7.0", "AUTH")
        r = c.mail_transaction(sender, rcpts, msg)
        c.quit()
        return r


def split_received(body: bytes) -> tuple[bytes, bytes]:
    """Splits the first header field (a Received: with its continuation lines) off."""
    assert body.startswith(b"Received: "), body[:200]
    end = body.index(b"\r\n") + 2
    while body[end:end + 1] in (b" ", b"\t"):
        end = body.index(b"\r\n", end) + 2
    return body[:end], body[end:]


def queue_files(server) -> list[str]:
    d = server.data_dir / "queue"
    return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def wait_queue_empty(server, timeout: float = 15.0) -> None:
    wait_until(lambda: not [f for f in queue_files(server) if f != "flush"], timeout,
               what=f"an empty queue in {server.data_dir / 'queue'}")


def log_lines(server, pattern: str) -> list[str]:
    return [ln for ln in server.log().splitlines() if re.search(pattern, ln)]


def queue_cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ironpost_bin()), "queue", *args, "--config", str(server.config_path)],
                          capture_output=True, text=True, timeout=30)


def dsn_parts(data: bytes):
    """Parses a DSN as delivered into Maildir; returns (message, [parts])."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    return msg, msg.get_payload()


class Sink:
    """A minimal SMTP server for one test: lockstep (no PIPELINING), a reply chosen per
    transaction for each RCPT, messages recorded. Bounded in connections and time."""

    def __init__(self, port: int = 0, rcpt_reply=None, max_connections: int = 50,
                 lifetime: float = 120.0):
        self.rcpt_reply = rcpt_reply or (lambda txn, rcpt: "250 2.1.5 Ok")
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.transactions = 0
        self.connections = 0
        self.max_connections = max_connections
        self.deadline = time.monotonic() + lifetime
        self.stop_flag = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop_flag = True
        self.thread.join(10)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _run(self) -> None:
        while not self.stop_flag and time.monotonic() < self.deadline \
                and self.connections < self.max_connections:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                try:
                    self._session(conn)
                except (OSError, ValueError):
                    pass

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = b""

        def line() -> bytes:
            nonlocal buf
            while b"\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    raise ValueError("closed")
                buf += chunk
            ln, buf = buf.split(b"\r\n", 1)
            return ln

        conn.sendall(b"220 sink.test ESMTP\r\n")
        sender, rcpts, accepted = None, [], 0
        while True:
            cmd = line().decode("utf-8", "replace")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                conn.sendall(b"250-sink.test\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif verb == "MAIL":
                sender, rcpts, accepted = cmd[10:].split(">")[0].lstrip("<"), [], 0
                with self.lock:
                    self.transactions += 1
                conn.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                rcpt = cmd[8:].split(">")[0].lstrip("<")
                reply = self.rcpt_reply(self.transactions, rcpt)
                if reply.startswith("2"):
                    rcpts.append(rcpt)
                    accepted += 1
                conn.sendall(reply.encode() + b"\r\n")
            elif verb == "DATA":
                if not accepted:
                    conn.sendall(b"554 5.5.1 Error: no valid recipients\r\n")
                    continue
                conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                lines = []
                while True:
                    ln = line()
                    if ln == b".":
                        break
                    lines.append(ln[1:] if ln.startswith(b".") else ln)
                data = b"".join(ln + b"\r\n" for ln in lines)
                with self.lock:
                    self.messages.append((sender, rcpts, data))
                conn.sendall(b"250 2.0.0 Ok: queued\r\n")
            elif verb == "RSET":
                conn.sendall(b"250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

    def wait_messages(self, count: int, timeout: float = 15.0):
        wait_until(lambda: len(self.messages) >= count, timeout,
                   what=f"{count} message(s) at the sink")
        return self.messages


class FakeDns:
    """A DNS responder on 127.0.0.1 (UDP) answering from a table:
    {(name, "MX"): [(pref, host)], (name, "A"): ["127.0.0.1"], (name, "MX"): "NXDOMAIN"};
    anything else gets an empty NOERROR answer. Bounded in time."""

    TYPES = {"A": 1, "MX": 15, "AAAA": 28}

    def __init__(self, table: dict, lifetime: float = 120.0):
        self.table = {(n.lower(), self.TYPES[t]): v for (n, t), v in table.items()}
        self.queries: list[tuple[str, int]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.deadline = time.monotonic() + lifetime
        self.stop_flag = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop_flag = True
        self.thread.join(5)
        self.sock.close()

    @staticmethod
    def _name(labels: str) -> bytes:
        out = b""
        for label in labels.rstrip(".").split("."):
            if label:
                out += bytes([len(label)]) + label.encode()
        return out + b"\0"

    def _run(self) -> None:
        while not self.stop_flag and time.monotonic() < self.deadline:
            try:
                q, peer = self.sock.recvfrom(4096)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(q), peer)
            except (IndexError, ValueError, OSError):
                continue

    def _answer(self, q: bytes) -> bytes:
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        qend = i + 5
        qtype = int.from_bytes(q[i + 1:i + 3], "big")
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        entry = self.table.get((name, qtype), [])
        rcode = 3 if entry == "NXDOMAIN" else 0
        answers = b""
        count = 0
        for rec in ([] if rcode else entry):
            if qtype == 15:
                rdata = rec[0].to_bytes(2, "big") + self._name(rec[1])
            else:
                rdata = socket.inet_pton(socket.AF_INET if qtype == 1 else socket.AF_INET6, rec)
            answers += (b"\xc0\x0c" + qtype.to_bytes(2, "big") + b"\x00\x01"
                        + (60).to_bytes(4, "big") + len(rdata).to_bytes(2, "big") + rdata)
            count += 1
        flags = 0x8000 | (int.from_bytes(q[2:4], "big") & 0x0100) | 0x0080 | rcode
        header = q[:2] + flags.to_bytes(2, "big") + (1).to_bytes(2, "big") \
            + count.to_bytes(2, "big") + b"\x00\x00\x00\x00"
        return header + q[12:qend] + answers


# -- two ironpost instances ---------------------------------------------------------------
def test_submission_relays_to_second_instance(make_server):
    b = remote_server(make_server)
    a = with_routes(make_server, {"remote.test": f"127.0.0.1:{b.smtp_port}"}, name="a")
    msg = make_message("relayed", b"Line one.\r\n.leading dot\r\n\xc3\xa9 8-bit\r\n",
                       sender=ALICE, to=DAVE)
    r = submit(a, ALICE, [DAVE], msg)
    assert_reply(r, 250, "2.0.0", "end of DATA")
    [m] = b.wait_messages(DAVE, 1)
    assert m.return_path == ALICE
    assert m.delivered_to == DAVE
    # B's Received: says it came from A in cleartext ESMTP; then A's own Received:, then the
    # message exactly as submitted.
    assert b"with ESMTP id" in m.received and b"TLS" not in m.received, m.received
    a_received, rest = split_received(m.body)
    assert b"by mx.example.test (ironpost) with ESMTPSA" in a_received, a_received
    assert rest == msg
    wait_queue_empty(a)
    sent = log_lines(a, rf"to=<{re.escape(DAVE)}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{b.smtp_port}.*status=sent")
    assert len(sent) == 1, a.log()
    assert "dsn=2.0.0" in sent[0] and "tls=none" in sent[0]
    assert a.files(ALICE) == []


def test_one_message_local_and_remote_and_alias_forward(make_server):
    """Local recipients go to Maildir, remote ones (also via an alias on port 25) to the
    queue; the 250 comes once both are durable."""
    b = remote_server(make_server)
    aliases = {"team@example.test": [BOB, DAVE], "fwd@example.test": ["Dave@Remote.Test"]}
    a = with_routes(make_server, {"remote.test": f"127.0.0.1:{b.smtp_port}"}, name="a",
                    aliases=aliases)
    msg = make_message("mixed", sender=ALICE, to="team@example.test")
    r = submit(a, ALICE, ["team@example.test", BOB, DAVE], msg)
    assert_reply(r, 250, "2.0.0")
    a.assert_delivered(BOB, msg, ALICE, delivered_to=BOB, tls="TLSv1.3")
    # dave got it once, though named directly and through the alias.
    [m] = b.wait_messages(DAVE, 1)
    assert split_received(m.body)[1] == msg
    wait_queue_empty(a)
    time.sleep(0.5)
    assert len(b.messages(DAVE)) == 1

    # An unauthenticated sender on port 25 reaches the forwarding alias; it is relayed with
    # the envelope sender unchanged.
    msg2 = make_message("forwarded", sender="someone@elsewhere.test", to="fwd@example.test")
    with RawSmtp(a.smtp_port) as c:
        c.ehlo()
        assert_reply(c.mail_transaction("someone@elsewhere.test", ["fwd@example.test"], msg2), 250)
        c.quit()
    msgs = b.wait_messages(DAVE, 2)
    fwd = [m for m in msgs if m.body.endswith(msg2)]
    assert len(fwd) == 1 and fwd[0].return_path == "someone@elsewhere.test"


def test_unauthenticated_relay_is_still_denied(make_server):
    a = with_routes(make_server, {"remote.test": "127.0.0.1:9"})
    with RawSmtp(a.smtp_port) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{ALICE}>", 250)
        c.expect(f"RCPT TO:<{DAVE}>", 554, "5.7.1")
    assert queue_files(a) == ["tmp"] or queue_files(a) == []


def test_relayhost_with_auth_over_starttls(make_server):
    """All mail through a smart host (B's submission port): STARTTLS, then AUTH with
    credentials from postfix-sasl-password.cf."""
    b = make_server(config={"hostname": "mx.remote.test", "domains": ["remote.test"], **NO_DNS},
                    accounts={DAVE: DAVE_PW, ALICE: "relay-pass"}, aliases={}, name="b")
    a = make_server(config=NO_DNS, start=False, name="a")
    text = a.config_path.read_text()
    a.config_path.write_text(text + f'\n[relay]\nrelayhost = "[127.0.0.1]:{b.submission_port}"\n')
    (a.data_dir / "postfix-sasl-password.cf").write_text(
        f"# smart host\n[127.0.0.1]:{b.submission_port} {ALICE}:relay-pass\n")
    a.start()
    msg = make_message("via smarthost", sender=ALICE, to=DAVE)
    assert_reply(submit(a, ALICE, [DAVE], msg), 250)
    [m] = b.wait_messages(DAVE, 1)
    assert m.return_path == ALICE
    assert b"with ESMTPSA" in m.received and b"TLSv1.3" in m.received, m.received
    assert split_received(m.body)[1] == msg
    sent = wait_until(lambda: log_lines(a, r"status=sent"), what="a sent line")
    assert "tls=TLSv1.3" in sent[0] and "unverified" in sent[0], sent


def test_mx_lookup_with_preference_and_fallback(make_server):
    """No route for the domain itself: MX records from a DNS responder on loopback, tried by
    preference; the best MX refuses connections, so the next one gets the mail. (The route
    only sets the port: an unbracketed name means MX lookup, as in Postfix.)"""
    with Sink() as sink:
        dns = FakeDns({
            ("mx.test", "MX"): [(20, "backup.mx.test"), (10, "primary.mx.test")],
            # Nothing listens on 127.0.0.3: connection refused.
            ("primary.mx.test", "A"): ["127.0.0.3"],
            ("backup.mx.test", "A"): ["127.0.0.1"],
            ("nowhere.test", "MX"): "NXDOMAIN",
            ("nowhere.test", "A"): "NXDOMAIN",
        })
        try:
            a = with_routes(make_server, {"mx.test": f"mx.test:{sink.port}",
                                          "nowhere.test": f"nowhere.test:{sink.port}"},
                            config={"dns": {"servers": [dns.addr], "timeout": 2}, **FAST_QUEUE})
            msg = make_message("via MX", sender=ALICE, to="zoe@mx.test")
            assert_reply(submit(a, ALICE, ["zoe@mx.test"], msg), 250)
            [(sender, rcpts, data)] = sink.wait_messages(1)
            assert rcpts == ["zoe@mx.test"] and split_received(data)[1] == msg
            sent = wait_until(lambda: log_lines(a, r"status=sent"), what="a sent line")
            assert f"relay=backup.mx.test[127.0.0.1]:{sink.port}" in sent[0], sent
            assert ("mx.test", 15) in dns.queries and ("primary.mx.test", 1) in dns.queries

            # A domain that does not exist bounces at once (5.4.4), without a connection.
            msg = make_message("nowhere", sender=ALICE, to="x@nowhere.test")
            assert_reply(submit(a, ALICE, ["x@nowhere.test"], msg), 250)
            [dsn] = a.wait_messages(ALICE, 1)
            _, parts = dsn_parts(dsn.body)
            assert "Status: 5.4.4" in parts[1].as_string()
            assert sink.transactions == 1
        finally:
            dns.close()


# -- retries, bounces, expiry ---------------------------------------------------------------
def test_4xx_then_accepted_on_retry(make_server):
    with Sink(rcpt_reply=lambda txn, rcpt: "451 4.3.0 Try again later" if txn == 1
              else "250 2.1.5 Ok") as sink:
        a = with_routes(make_server, {"remote.test": f"127.0.0.1:{sink.port}"}, config=FAST_QUEUE)
        msg = make_message("retried", sender=ALICE, to=DAVE)
        assert_reply(submit(a, ALICE, [DAVE], msg), 250)
        [(sender, rcpts, data)] = sink.wait_messages(1)
        assert sender == ALICE and rcpts == [DAVE]
        assert split_received(data)[1] == msg
        assert sink.transactions == 2
        wait_queue_empty(a)
        assert len(log_lines(a, r"status=deferred \(451 4\.3\.0 Try again later\)")) == 1, a.log()
        assert len(log_lines(a, r"status=sent")) == 1
        assert a.files(ALICE) == [], "no DSN for a message that got through"


def test_5xx_returns_a_dsn_to_the_local_sender(make_server):
    with Sink(rcpt_reply=lambda txn, rcpt: f"550 5.1.1 <{rcpt}>: Recipient address rejected") as sink:
        a = with_routes(make_server, {"remote.test": f"127.0.0.1:{sink.port}"}, config=FAST_QUEUE)
        msg = make_message("doomed", sender=ALICE, to=DAVE)
        assert_reply(submit(a, ALICE, [DAVE], msg), 250)
        [dsn] = a.wait_messages(ALICE, 1, timeout=15)
        assert dsn.return_path == "", "a DSN has the null sender"
        wait_queue_empty(a)
        assert sink.transactions == 1, "a permanent failure is not retried"
        msg_obj, parts = dsn_parts(dsn.body)
        assert "MAILER-DAEMON@mx.example.test" in msg_obj["From"]
        assert msg_obj["To"] == f"<{ALICE}>"
        assert [p.get_content_type() for p in parts] == [
            "text/plain", "message/delivery-status", "text/rfc822-headers"]
        status = parts[1].as_string()
        for want in ["Reporting-MTA: dns; mx.example.test", f"Final-Recipient: rfc822; {DAVE}",
                     "Action: failed", "Status: 5.1.1",
                     f"Diagnostic-Code: smtp; 550 5.1.1 <{DAVE}>: Recipient address rejected"]:
            assert want in status, f"{want!r} not in\n{status}"
        headers = parts[2].get_payload()
        subject = re.search(rb"Subject: [^\r\n]+", msg).group(0).decode()
        assert subject in headers, headers
        assert len(log_lines(a, r"status=bounced")) == 1
        assert log_lines(a, r"sender non-delivery notification")
        # Exactly one DSN, and none later.
        time.sleep(1.5)
        assert len(a.files(ALICE)) == 1


def test_down_destination_retries_then_expires_with_dsn(make_server):
    port = free_port()
    a = with_routes(make_server, {"remote.test": f"127.0.0.1:{port}"},
                    config={"queue": {"retry_intervals": [1], "max_age": 3}})
    msg = make_message("never arrives", sender=ALICE, to=DAVE)
    assert_reply(submit(a, ALICE, [DAVE], msg), 250)
    [dsn] = a.wait_messages(ALICE, 1, timeout=20)
    wait_queue_empty(a)
    deferred = log_lines(a, r"status=deferred \(connect to .*Connection refused\)")
    assert len(deferred) >= 2, a.log()
    assert len(log_lines(a, r"status=expired")) == 1, a.log()
    msg_obj, parts = dsn_parts(dsn.body)
    assert "expired" in msg_obj["Subject"]
    status = parts[1].as_string()
    assert "Action: failed" in status and "Status: 4.4.1" in status, status
    assert "Connection refused" in status
    assert "delivery time expired" in parts[0].get_payload()


def test_no_dsn_for_a_dsn(make_server):
    """A message from the null sender that fails gets no DSN of its own (no bounce loops)."""
    with Sink(rcpt_reply=lambda txn, rcpt: "550 5.1.1 No such user") as sink:
        a = with_routes(make_server, {"remote.test": f"127.0.0.1:{sink.port}"}, config=FAST_QUEUE,
                        aliases={"fwd@example.test": [DAVE]})
        msg = make_message("bounce of a bounce", sender="", to="fwd@example.test")
        with RawSmtp(a.smtp_port) as c:
            c.ehlo()
            assert_reply(c.mail_transaction("", ["fwd@example.test"], msg), 250)
            c.quit()
        wait_until(lambda: sink.transactions >= 1, what="an attempt")
        wait_queue_empty(a)
        assert log_lines(a, r"no DSN for a message from the null sender")
        assert a.all_files("new") == []


def test_messages_for_one_destination_share_a_connection(make_server):
    """Mail that piled up for a next hop goes out over one connection when the limit per
    destination is 1, one transaction per message."""
    port = free_port()
    a = with_routes(make_server, {"remote.test": f"127.0.0.1:{port}"},
                    config={"queue": {"retry_intervals": [3600], "max_age": 86400},
                            "outbound": {"concurrency_per_destination": 1}})
    msgs = [make_message(f"batch {i}", sender=ALICE, to=DAVE) for i in range(5)]
    for m in msgs:
        assert_reply(submit(a, ALICE, [DAVE], m), 250)
    wait_until(lambda: len(log_lines(a, r"status=deferred")) >= 5, what="five deferrals")
    with Sink(port=port) as sink:
        assert queue_cli(a, "flush").returncode == 0
        got = sink.wait_messages(5)
        assert sorted(split_received(d)[1] for _, _, d in got) == sorted(msgs)
        wait_queue_empty(a)
        assert sink.connections == 1, f"{sink.connections} connections for 5 messages"
        assert sink.transactions == 5


def test_tls_encrypt_defers_when_starttls_is_not_offered(make_server):
    with Sink() as sink:
        a = with_routes(make_server, {"remote.test": f"127.0.0.1:{sink.port}"},
                        config={**FAST_QUEUE, "outbound": {"tls": "encrypt"}})
        msg = make_message("must be encrypted", sender=ALICE, to=DAVE)
        assert_reply(submit(a, ALICE, [DAVE], msg), 250)
        line = wait_until(lambda: log_lines(a, r"status=deferred"), what="a deferral")[0]
        assert "dsn=4.7.4" in line and "STARTTLS" in line, line
        assert sink.messages == [] and sink.transactions == 0
        out = queue_cli(a, "list")
        assert f"<{DAVE}>  pending" in out.stdout, out.stdout


# -- crash safety ---------------------------------------------------------------------------
def test_sigkill_between_accept_and_delivery(make_server):
    port = free_port()
    a = with_routes(make_server, {"remote.test": f"127.0.0.1:{port}"}, config=FAST_QUEUE)
    msg = make_message("survives", big_body(200_000), sender=ALICE, to=DAVE)
    assert_reply(submit(a, ALICE, [DAVE], msg), 250)
    ids = [f[:-4] for f in queue_files(a) if f.endswith(".msg")]
    assert len(ids) == 1, queue_files(a)
    a.kill()
    a.start()
    with Sink(port=port) as sink:
        [(sender, rcpts, data)] = sink.wait_messages(1, timeout=20)
        assert sender == ALICE and rcpts == [DAVE]
        assert split_received(data)[1] == msg
        wait_queue_empty(a)
        assert log_lines(a, rf"^.*{ids[0]}: to=<{re.escape(DAVE)}>.*status=sent")


# -- the sender must be the user's ----------------------------------------------------------
def test_sender_must_be_owned_by_the_user(make_server):
    a = make_server(config=NO_DNS,
                    aliases={"sales@example.test": [ALICE, BOB], "info@example.test": [BOB]})
    with RawSmtp(a.submission_port) as c:
        c.ehlo()
        c.starttls(a.tls_context())
        c.ehlo()
        assert_reply(c.auth_plain(ALICE, ALICE_PW), 235)
        for other in [BOB, "info@example.test", "someone@elsewhere.test", ""]:
            r = c.cmd(f"MAIL FROM:<{other}>")
            assert_reply(r, 553, "5.7.1", f"MAIL FROM:<{other}>")
            assert f"not owned by user {ALICE}" in r.text
        # Her own address (any case) and an alias leading to her are fine.
        for own in ["Alice@Example.Test", "sales@example.test"]:
            c.expect(f"MAIL FROM:<{own}>", 250)
            c.expect("RSET", 250)
        c.quit()


# -- the queue from the command line -------------------------------------------------------
def test_queue_list_flush_delete(make_server):
    port = free_port()
    a = with_routes(make_server, {"remote.test": f"127.0.0.1:{port}"},
                    config={"queue": {"retry_intervals": [3600], "max_age": 86400}})
    m1 = make_message("first", sender=ALICE, to=DAVE)
    m2 = make_message("second", sender=ALICE, to="erin@remote.test")
    assert_reply(submit(a, ALICE, [DAVE], m1), 250)
    assert_reply(submit(a, ALICE, ["erin@remote.test"], m2), 250)
    wait_until(lambda: len(log_lines(a, r"status=deferred")) >= 2, what="two deferrals")
    out = queue_cli(a, "list")
    assert out.returncode == 0, out.stderr
    assert f"<{DAVE}>  pending, 1 failed attempt(s), next" in out.stdout, out.stdout
    assert "Connection refused" in out.stdout
    assert "-- 2 messages" in out.stdout
    ids = re.findall(r"^([0-9A-F]+)  \d+ bytes", out.stdout, re.M)
    assert len(ids) == 2
    erin = [i for i in ids if re.search(rf"^{i} .*\n    <erin@", out.stdout, re.M)]
    assert len(erin) == 1, out.stdout

    out = queue_cli(a, "delete", erin[0])
    assert out.returncode == 0 and "deleted" in out.stdout, out
    assert queue_cli(a, "delete", erin[0]).returncode != 0
    assert queue_cli(a, "delete", "../../etc").returncode != 0

    with Sink(port=port) as sink:
        out = queue_cli(a, "flush")
        assert out.returncode == 0, out.stderr
        [(sender, rcpts, data)] = sink.wait_messages(1, timeout=10)
        assert rcpts == [DAVE] and split_received(data)[1] == m1
        wait_queue_empty(a)
        time.sleep(1.5)
        assert len(sink.messages) == 1, "the deleted message must not be sent"
    out = queue_cli(a, "list")
    assert out.stdout == "Mail queue is empty\n", out.stdout


# -- a real foreign MTA ---------------------------------------------------------------------
SMTP_SINK = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None)


@pytest.mark.skipif(SMTP_SINK is None, reason="Postfix's smtp-sink is not installed "
                    "(Debian package postfix; scripts/test.sh installs it)")
def test_postfix_smtp_sink_as_foreign_mta(make_server, tmp_path):
    port = free_port()
    dump = tmp_path / "sink"
    dump.mkdir()
    cmd = [SMTP_SINK]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    cmd += ["-d", f"{dump}/%M.", f"127.0.0.1:{port}", "10"]
    sink = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_listening(port), 10, what="smtp-sink listening")
        a = with_routes(make_server, {"remote.test": f"127.0.0.1:{port}"}, config=FAST_QUEUE)
        msgs = [make_message(f"to postfix {i}", big_body(30_000, seed=i), sender=ALICE, to=DAVE)
                for i in range(3)]
        for m in msgs:
            assert_reply(submit(a, ALICE, [DAVE, "erin@remote.test"], m), 250)
        files = wait_until(lambda: (lambda f: f if len(f) >= 3 else None)(
            [p for p in dump.iterdir() if p.is_file() and p.stat().st_size > 0]), 20,
            what="three dumps from smtp-sink")
        time.sleep(0.3)
        # smtp-sink writes its dumps with LF line endings, after X-*-Args lines and its
        # own Received: field.
        dumped = [p.read_bytes() for p in dump.iterdir() if p.is_file()]
        assert len(dumped) == 3, [d[:300] for d in dumped]
        for m in msgs:
            unix = m.replace(b"\r\n", b"\n")
            assert sum(1 for d in dumped if unix in d) == 1, "each message arrives once, intact"
        for d in dumped:
            assert f"X-Mail-Args: <{ALICE}>\n".encode() in d, d[:300]
            assert f"X-Rcpt-Args: <{DAVE}>\nX-Rcpt-Args: <erin@remote.test>\n".encode() in d, d[:300]
        wait_queue_empty(a)
        sent = log_lines(a, r"status=sent")
        assert len(sent) == 6, sent
    finally:
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(5)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait(5)


def port_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(2)
            s.recv(100)
            return True
    except OSError:
        return False
