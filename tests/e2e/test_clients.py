"""Receiving with real-world command-line clients: swaks, and openssl s_client driving a full
SMTP conversation through its stdin. Each test checks the exact bytes in Maildir."""

import base64
import re
import shutil
import subprocess
import threading
import time

import pytest

from e2e_helpers import ACCOUNTS, LOOPBACK, make_message

TIMEOUT = 30

needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def run_swaks(port: int, *args: str, data: bytes | None = None, tmp_path=None) -> subprocess.CompletedProcess:
    cmd = ["swaks", "--server", LOOPBACK, "--port", str(port), "--helo", "client.example.net",
           "--timeout", "15"]
    if data is not None:
        f = tmp_path / f"swaks-data-{time.monotonic_ns()}.eml"
        # swaks ends the data with CRLF "." CRLF itself: give it the message without its
        # final line break, so that what it sends is exactly `data` (dot-stuffed).
        assert data.endswith(b"\r\n")
        f.write_bytes(data[:-2])
        cmd += ["--data", f"@{f}"]
    cmd += list(args)
    return subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)


def swaks_ok(p: subprocess.CompletedProcess) -> None:
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode == 0, f"swaks exited {p.returncode}:\n{out}"


# swaks dot-stuffs and sends the data as given; keep it free of its %TOKENS%.
SWAKS_BODY = (b"Line one.\r\n"
              b".A line that starts with a dot.\r\n"
              b"..Two dots.\r\n"
              b"Last line.\r\n")


@needs_swaks
def test_swaks_plain_smtp_port(server, tmp_path):
    msg = make_message("swaks plain", SWAKS_BODY)
    p = run_swaks(server.smtp_port, "--from", "sender@remote.test", "--to", "alice@example.test",
                  data=msg, tmp_path=tmp_path)
    swaks_ok(p)
    server.assert_delivered("alice@example.test", msg, "sender@remote.test")


@needs_swaks
def test_swaks_pipelining_multiple_recipients(server, tmp_path):
    msg = make_message("swaks pipeline", SWAKS_BODY)
    p = run_swaks(server.smtp_port, "--pipeline", "--from", "sender@remote.test",
                  "--to", "alice@example.test,bob@example.test,carol@other.test",
                  data=msg, tmp_path=tmp_path)
    swaks_ok(p)
    for r in ["alice@example.test", "bob@example.test", "carol@other.test"]:
        server.assert_delivered(r, msg, "sender@remote.test")


@needs_swaks
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_submission_starttls_auth(server, tmp_path, mech):
    msg = make_message(f"swaks auth {mech}", SWAKS_BODY, sender="alice@example.test",
                       to="bob@example.test")
    p = run_swaks(server.submission_port, "--tls", "--auth", mech,
                  "--auth-user", "alice@example.test",
                  "--auth-password", ACCOUNTS["alice@example.test"],
                  "--from", "alice@example.test", "--to", "bob@example.test",
                  data=msg, tmp_path=tmp_path)
    swaks_ok(p)
    server.assert_delivered("bob@example.test", msg, "alice@example.test", tls="TLSv1.3")


@needs_swaks
def test_swaks_submission_bad_password(server, tmp_path):
    p = run_swaks(server.submission_port, "--tls", "--auth", "PLAIN",
                  "--auth-user", "alice@example.test", "--auth-password", "wrong",
                  "--from", "alice@example.test", "--to", "bob@example.test",
                  data=make_message("never"), tmp_path=tmp_path)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode != 0, out
    assert re.search(r"^<~\*? *535 5\.7\.8", out, re.M), out
    assert server.all_files("new") == []


@needs_swaks
def test_swaks_submission_without_tls_cannot_auth(server, tmp_path):
    p = run_swaks(server.submission_port, "--auth", "PLAIN",
                  "--auth-user", "alice@example.test",
                  "--auth-password", ACCOUNTS["alice@example.test"],
                  "--from", "alice@example.test", "--to", "bob@example.test",
                  data=make_message("never"), tmp_path=tmp_path)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode != 0, out
    assert server.all_files("new") == []


@needs_swaks
def test_swaks_submissions_implicit_tls(make_server, tmp_path):
    server = make_server(config={"submissions": {"enabled": True}})
    msg = make_message("swaks tlsc", SWAKS_BODY, sender="bob@example.test")
    p = run_swaks(server.submissions_port, "--tlsc", "--auth", "LOGIN",
                  "--auth-user", "bob@example.test", "--auth-password", ACCOUNTS["bob@example.test"],
                  "--from", "bob@example.test", "--to", "alice@example.test",
                  data=msg, tmp_path=tmp_path)
    swaks_ok(p)
    server.assert_delivered("alice@example.test", msg, "bob@example.test", tls="TLSv1.3")


@needs_swaks
def test_swaks_starttls_on_smtp_port(tls_server, tmp_path):
    msg = make_message("swaks 25 tls", SWAKS_BODY)
    p = run_swaks(tls_server.smtp_port, "--tls", "--from", "sender@remote.test",
                  "--to", "carol@other.test", data=msg, tmp_path=tmp_path)
    swaks_ok(p)
    tls_server.assert_delivered("carol@other.test", msg, "sender@remote.test", tls="TLSv1.3")


@needs_swaks
def test_swaks_relay_attempt_is_refused(server, tmp_path):
    p = run_swaks(server.smtp_port, "--from", "sender@remote.test", "--to", "x@elsewhere.test",
                  data=make_message("relay"), tmp_path=tmp_path)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode != 0, out
    assert re.search(r"^<\*\* *554 5\.7\.1", out, re.M), out


# -- openssl s_client ------------------------------------------------------------------------
class SClient:
    """openssl s_client as an interactive SMTP client: we write lines to its stdin and read
    the server's replies from its stdout."""

    def __init__(self, server, port: int, starttls: bool):
        cmd = ["openssl", "s_client", "-connect", f"{LOOPBACK}:{port}", "-quiet",
               "-CAfile", str(server.cert_path), "-verify_return_error",
               "-verify_hostname", "mx.example.test", "-servername", "mx.example.test"]
        if starttls:
            cmd += ["-starttls", "smtp", "-name", "client.example.net"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = b""
        self.err = b""
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, "out"), daemon=True),
                        threading.Thread(target=self._pump, args=(self.proc.stderr, "err"), daemon=True)]
        for t in self.threads:
            t.start()
        self.pos = 0

    def _pump(self, f, name):
        while True:
            chunk = f.read1(65536) if hasattr(f, "read1") else f.read(1)
            with self.cond:
                if not chunk:
                    setattr(self, "eof_" + name, True)
                    self.cond.notify_all()
                    return
                setattr(self, name, getattr(self, name) + chunk)
                self.cond.notify_all()

    def wait_handshake(self, timeout: float = 15) -> None:
        """Waits until s_client has verified the certificate (it prints `verify return:1` on
        stderr), then a little longer so that it has sent its Finished: input written after
        that travels in a TCP segment of its own."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while b"verify return:" not in self.err:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or getattr(self, "eof_err", False):
                    raise AssertionError(f"s_client did not complete the handshake: {self.err!r}")
                self.cond.wait(remaining)
        time.sleep(0.3)

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def reply(self, timeout: float = 15) -> tuple[int, str]:
        """The next complete SMTP reply on stdout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                text = self.out[self.pos:]
                m = re.search(rb"(?m)^(\d{3}) [^\r\n]*\r?\n", text)
                if m:
                    self.pos += m.end()
                    return int(m.group(1)), text[:m.end()].decode("utf-8", "replace")
                remaining = deadline - time.monotonic()
                if remaining <= 0 or getattr(self, "eof_out", False):
                    raise AssertionError(
                        f"no SMTP reply from s_client; stdout {self.out!r} stderr {self.err!r}")
                self.cond.wait(remaining)

    def cmd(self, line: str, want: int) -> str:
        self.write(line.encode() + b"\r\n")
        code, text = self.reply()
        assert code == want, f"{line!r}: expected {want}, got {text!r} (stderr {self.err!r})"
        return text

    def finish(self) -> int:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None  # still connected: the caller's checks say why


def sclient_transaction(server, port, starttls, user, rcpt, msg, greeting=False):
    c = SClient(server, port, starttls)
    try:
        c.wait_handshake()
        if greeting:
            code, text = c.reply()
            assert code == 220 and "mx.example.test" in text, text
        c.cmd("EHLO client.example.net", 250)
        if user:
            token = base64.b64encode(f"\0{user}\0{ACCOUNTS[user]}".encode()).decode()
            c.cmd(f"AUTH PLAIN {token}", 235)
        c.cmd(f"MAIL FROM:<{user or 'sender@remote.test'}>", 250)
        c.cmd(f"RCPT TO:<{rcpt}>", 250)
        c.cmd("DATA", 354)
        stuffed = b"\r\n".join((b"." + ln) if ln.startswith(b".") else ln
                               for ln in msg.split(b"\r\n"))
        c.write(stuffed + b".\r\n")
        code, text = c.reply()
        assert code == 250, f"end of data: {text!r}"
        c.cmd("QUIT", 221)
    finally:
        c.finish()
    # -verify_return_error: a certificate that does not verify aborts the handshake.


@needs_openssl
def test_openssl_starttls_submission(server):
    msg = make_message("s_client 587", SWAKS_BODY, sender="alice@example.test", to="bob@example.test")
    sclient_transaction(server, server.submission_port, True, "alice@example.test",
                        "bob@example.test", msg)
    server.assert_delivered("bob@example.test", msg, "alice@example.test", tls="TLSv1.3")


@needs_openssl
def test_openssl_starttls_smtp_port(tls_server):
    msg = make_message("s_client 25", SWAKS_BODY)
    sclient_transaction(tls_server, tls_server.smtp_port, True, None, "alice@example.test", msg)
    tls_server.assert_delivered("alice@example.test", msg, "sender@remote.test", tls="TLSv1.3")


@needs_openssl
def test_openssl_implicit_tls_submissions(make_server):
    server = make_server(config={"submissions": {"enabled": True}})
    msg = make_message("s_client 465", SWAKS_BODY, sender="bob@example.test")
    sclient_transaction(server, server.submissions_port, False, "bob@example.test",
                        "alice@example.test", msg, greeting=True)
    server.assert_delivered("alice@example.test", msg, "bob@example.test", tls="TLSv1.3")


@needs_openssl
@pytest.mark.parametrize("host", ["mx.example.test", "localhost", "127.0.0.1"])
def test_generated_certificate_verifies(server, host):
    """The self-signed certificate names the hostname, localhost and 127.0.0.1."""
    flag = "-verify_ip" if host[0].isdigit() else "-verify_hostname"
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        f"{LOOPBACK}:{server.submission_port}", "-CAfile", str(server.cert_path),
                        "-verify_return_error", flag, host],
                       input=b"QUIT\r\n", capture_output=True, timeout=TIMEOUT)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert "Verify return code: 0 (ok)" in out, out


@needs_openssl
def test_openssl_piped_transaction(server):
    """The usual `printf ... | openssl s_client -starttls smtp -quiet` use: the whole
    conversation is on stdin from the start, so s_client sends the EHLO right behind its TLS
    Finished, and the rest pipelined (the server buffers it; replies come in order)."""
    msg = make_message("s_client piped", SWAKS_BODY, sender="alice@example.test", to="bob@example.test")
    token = base64.b64encode(b"\0alice@example.test\0" + ACCOUNTS["alice@example.test"].encode())
    stuffed = b"\r\n".join((b"." + ln) if ln.startswith(b".") else ln for ln in msg.split(b"\r\n"))
    script = (b"EHLO client.example.net\r\nAUTH PLAIN " + token + b"\r\n"
              b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
              + stuffed + b".\r\nQUIT\r\n")
    c = SClient(server, server.submission_port, True)
    try:
        c.write(script)
        got = []
        for _ in range(7):
            try:
                got.append(c.reply(10)[0])
            except AssertionError:
                break
    finally:
        rc = c.finish()
    assert got == [250, 235, 250, 250, 354, 250, 221], (
        f"replies {got}; s_client stdout {c.out!r}")
    server.assert_delivered("bob@example.test", msg, "alice@example.test", tls="TLSv1.3")
    assert rc == 0, f"s_client exited {rc}: {c.err!r}"
