"""Process life: logs, SIGTERM (graceful: in-flight DATA finishes, exit 0), SIGKILL under load
(every message that got 250 is in new/ intact, nothing partial is in new/, and a restart on
the same data_dir cleans tmp/)."""

import os
import resource
import signal
import socket
import threading
import time

from e2e_helpers import (
    RawSmtp, SmtpClosed, assert_reply, big_body, dot_stuff, make_message, split_delivered,
)

ALICE = "alice@example.test"
BOB = "bob@example.test"


def test_log_lines_per_connection_and_message(server):
    msg = make_message("logged")
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        assert_reply(c.mail_transaction("sender@remote.test", [ALICE, BOB], msg), 250)
        c.quit()
    server.assert_delivered(ALICE, msg, "sender@remote.test")
    time.sleep(0.3)
    lines = server.log().splitlines()
    conn = [ln for ln in lines if "127.0.0.1" in ln and "smtp" in ln]
    assert conn, "no log line names the client connection"
    msg_lines = [ln for ln in lines if ALICE in ln and BOB in ln and "sender@remote.test" in ln]
    assert len(msg_lines) == 1, f"expected one log line for the message, got {msg_lines}"


def test_sigterm_when_idle_exits_zero(server):
    assert server.stop() == 0, f"exit code after SIGTERM:\n{server.log()}"


def test_sigterm_right_after_start_exits_zero(make_server):
    """Once the listeners file exists the server is up, and SIGTERM means a graceful stop:
    the handler must be in place before the server says it is ready."""
    server = make_server(start=False)
    for attempt in range(10):
        server.start(poll=0.0005)
        code = server.stop()
        assert code == 0, f"attempt {attempt}: exit code {code} for SIGTERM right after start"


def test_sigterm_with_idle_client_does_not_wait_for_it(server):
    c = RawSmtp(server.smtp_port)
    try:
        c.ehlo()
        t0 = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.proc.wait(10)
        assert code == 0
        assert time.monotonic() - t0 < 10
        server.expect_exit = True
        try:
            rest = c.wait_closed(5)
        except TimeoutError:
            raise AssertionError("the idle client's connection is still open after the server exited")
        assert rest == b"" or rest.startswith(b"421"), f"idle client got {rest!r}"
    finally:
        c.close()


def test_sigterm_lets_in_flight_data_finish(server):
    msg = make_message("in flight at SIGTERM", big_body(200_000, seed=11))
    stuffed = dot_stuff(msg)
    half = len(stuffed) // 2
    c = RawSmtp(server.smtp_port)
    try:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(stuffed[:half])
        time.sleep(0.2)
        server.signal(signal.SIGTERM)
        server.expect_exit = True
        time.sleep(0.5)
        assert server.proc.poll() is None, "the server exited with a message in flight"
        c.send(stuffed[half:] + b".\r\n")
        r = c.read_reply()
        assert_reply(r, 250, None, "end of data after SIGTERM")
        try:
            r = c.cmd("QUIT")
            assert r.code in (221, 421), f"QUIT during shutdown: {r}"
        except (SmtpClosed, OSError):
            pass  # closing right after the message is fine too
    finally:
        c.close()
    code = server.proc.wait(15)
    assert code == 0, f"exit code {code} after SIGTERM"
    server.assert_delivered(ALICE, msg, "sender@remote.test")


def test_no_new_connections_after_sigterm(server):
    c = RawSmtp(server.smtp_port)
    try:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        server.signal(signal.SIGTERM)
        server.expect_exit = True
        # While the old session finishes, the listener soon stops taking new sessions.
        deadline = time.monotonic() + 5
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", server.smtp_port), timeout=3)
                s.settimeout(3)
                try:
                    first = s.recv(100)
                except (socket.timeout, ConnectionResetError):
                    first = b""
                s.close()
            except (ConnectionRefusedError, ConnectionResetError):
                break
            if not first.startswith(b"220"):
                break
            assert time.monotonic() < deadline, f"new sessions still greeted 5 s after SIGTERM: {first!r}"
            time.sleep(0.2)
        c.send(make_message("last one") + b".\r\n")
        assert_reply(c.read_reply(), 250)
    finally:
        c.close()
    assert server.proc.wait(15) == 0


def test_restart_keeps_mail(server):
    msg = make_message("before restart")
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        assert_reply(c.mail_transaction("sender@remote.test", [ALICE], msg), 250)
        c.quit()
    assert server.stop() == 0
    server.start()
    server.assert_delivered(ALICE, msg, "sender@remote.test")
    msg2 = make_message("after restart")
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        assert_reply(c.mail_transaction("sender@remote.test", [ALICE], msg2), 250)
        c.quit()
    server.assert_delivered(ALICE, msg2, "sender@remote.test", count=2)


def test_parallel_deliveries_all_land_exactly(server):
    """16 clients at once, 5 messages each: every one lands exactly once, intact."""
    results: dict[int, list[bytes]] = {}
    errors = []

    def client(n: int):
        sent = []
        try:
            with RawSmtp(server.smtp_port, timeout=30) as c:
                c.ehlo()
                for i in range(5):
                    msg = make_message(f"parallel {n}/{i}", big_body(1_000 + 9_000 * i, seed=n * 10 + i))
                    r = c.mail_transaction("load@remote.test", [ALICE if n % 2 else BOB], msg)
                    assert r.code == 250, str(r)
                    sent.append(msg)
                c.quit()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {n}: {e!r}")
        results[n] = sent

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for who, ns in [(ALICE, range(1, 16, 2)), (BOB, range(0, 16, 2))]:
        bodies = sorted(m.body for m in server.wait_messages(who, 40))
        assert bodies == sorted(msg for n in ns for msg in results[n])
    assert server.all_files("tmp") == []


class Sender(threading.Thread):
    """Sends messages over one connection until told to stop or the server dies. Records
    every attempted message and which ones got their 250."""

    def __init__(self, port: int, n: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.n, self.stop_ev = port, n, stop
        self.attempted: list[tuple[bytes, list[str]]] = []
        self.acked: list[tuple[bytes, list[str]]] = []
        self.error: str | None = None

    def run(self):
        rcpt_sets = [[ALICE], [BOB], [ALICE, BOB], ["team@example.test"]]
        try:
            c = RawSmtp(self.port, timeout=20)
            c.ehlo()
            i = 0
            while not self.stop_ev.is_set():
                rcpts = rcpt_sets[(self.n + i) % len(rcpt_sets)]
                size = 2_000 + ((self.n * 7919 + i * 104729) % 300_000)
                msg = make_message(f"load {self.n}/{i}", big_body(size, seed=self.n * 1000 + i))
                c.expect("MAIL FROM:<load@remote.test>", 250)
                for r in rcpts:
                    c.expect(f"RCPT TO:<{r}>", 250)
                c.expect("DATA", 354)
                targets = [ALICE, BOB] if rcpts == ["team@example.test"] else rcpts
                self.attempted.append((msg, targets))
                c.send(dot_stuff(msg) + b".\r\n")
                r = c.read_reply()
                assert r.code == 250, str(r)
                self.acked.append((msg, targets))
                i += 1
        except (SmtpClosed, OSError, TimeoutError, AssertionError) as e:
            self.error = repr(e)


def test_sigkill_under_load_loses_nothing_acknowledged(server):
    stop = threading.Event()
    senders = [Sender(server.smtp_port, n, stop) for n in range(6)]
    for s in senders:
        s.start()
    deadline = time.monotonic() + 20
    while sum(len(s.acked) for s in senders) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sum(len(s.acked) for s in senders) >= 5, (
        f"hardly any message got through before the kill: {[s.error for s in senders]}")
    server.kill()
    stop.set()
    for s in senders:
        s.join(30)
        assert not s.is_alive(), "a sender thread is stuck"

    attempted = {}
    for s in senders:
        for msg, targets in s.attempted:
            attempted[msg] = targets
    acked = [(m, t) for s in senders for m, t in s.acked]

    # Every file in new/ is one whole attempted message, in one of its recipients' Maildir,
    # at most once per recipient.
    seen = {}
    for path in server.all_files("new"):
        owner = f"{path.parent.parent.name}@{path.parent.parent.parent.name}"
        d = split_delivered(path, path.read_bytes())
        assert d.body in attempted, f"{path} is not a whole message that was sent (partial?)"
        assert owner in attempted[d.body], f"{path} delivered to the wrong mailbox"
        key = (d.body, owner)
        assert key not in seen, f"{path} duplicates {seen[key]}"
        seen[key] = path
    # Every message that got 250 is there, for each of its recipients.
    missing = [(t, m[:120]) for m, ts in acked for t in ts if (m, t) not in seen]
    assert not missing, f"{len(missing)} acknowledged deliveries missing after SIGKILL: {missing[:3]}"
    names_before = sorted(p.name for p in server.all_files("new"))

    # A stale file from long ago in tmp/ (the Maildir rule: 36 hours) must go too.
    stale = server.maildir(ALICE) / "tmp" / "stale-file-from-a-crash"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"partial")
    old = time.time() - 40 * 3600
    os.utime(stale, (old, old))
    left_in_tmp = server.all_files("tmp")

    print(f"SIGKILL: {len(acked)} acknowledged, {len(attempted)} attempted, "
          f"{len(names_before)} files in new/, {len(left_in_tmp)} in tmp/ (1 planted)")
    server.start()
    deadline = time.monotonic() + 10
    while server.all_files("tmp") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.all_files("tmp") == [], (
        f"tmp/ not cleaned on restart (had {len(left_in_tmp)} files): {server.all_files('tmp')}")
    assert sorted(p.name for p in server.all_files("new")) == names_before
    msg = make_message("after the crash")
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        assert_reply(c.mail_transaction("sender@remote.test", ["carol@other.test"], msg), 250)
        c.quit()
    server.assert_delivered("carol@other.test", msg, "sender@remote.test")


def test_open_file_limit_is_raised_for_many_connections(make_server):
    """Started with a soft limit of 256 open files, the server raises it to the hard limit
    and holds 400 connections at once, each greeted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        import pytest
        pytest.skip(f"hard open-file limit {hard} leaves no room above 256")
    if soft < 512:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    srv = make_server(config={"limits": {"max_connections": 1000, "max_connections_per_ip": 1000}},
                      start=False)
    srv.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    srv.start()
    limits = open(f"/proc/{srv.proc.pid}/limits").read()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
    server_soft = line.split()[3]
    assert server_soft == ("unlimited" if hard == resource.RLIM_INFINITY else str(hard)), line
    socks = []
    try:
        for _ in range(400):
            socks.append(socket.create_connection(("127.0.0.1", srv.smtp_port), timeout=10))
        for s in socks:
            greeting = b""
            while not greeting.endswith(b"\r\n"):
                chunk = s.recv(512)
                assert chunk, "connection closed before the greeting"
                greeting += chunk
            assert greeting.startswith(b"220 "), greeting
    finally:
        for s in socks:
            s.close()
