"""Configuration errors, the account file's password schemes, and the `email add` CLI."""

import re
import subprocess

import pytest

from conftest import ironpost_bin
from e2e_helpers import RawSmtp, assert_reply, make_message

ALICE = "alice@example.test"


def serve_expecting_failure(tmp_path, text: str) -> tuple[int, str]:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    (tmp_path / "data").mkdir(exist_ok=True)
    try:
        p = subprocess.run([str(ironpost_bin()), "serve", "--config", str(cfg)],
                           capture_output=True, timeout=20, cwd="/")
    except subprocess.TimeoutExpired:
        pytest.fail("ironpost serve kept running with an invalid configuration")
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def names_line(out: str, line: int) -> bool:
    return re.search(rf"(?<![\d.]){line}(?!\d)", out) is not None


BASE = ('hostname = "mx.example.test"\n'
        'data_dir = "data"\n'
        'domains = ["example.test"]\n')
LISTEN = ('\n[smtp]\nlisten = ["127.0.0.1:0"]\n'
          '\n[submission]\nlisten = ["127.0.0.1:0"]\n')


@pytest.mark.parametrize("text,key,line", [
    (BASE + 'hostnme = "typo.example.test"\n' + LISTEN, "hostnme", 4),
    (BASE + LISTEN + "\n[limits]\nmax_conections = 5\n", "max_conections", 12),
    (BASE + '\n[smtp]\nlisten = ["127.0.0.1:0"]\nstarttsl = true\n', "starttsl", 7),
    (BASE + '\n[tls]\ncertificate = "/etc/x.pem"\n' + LISTEN, "certificate", 6),
], ids=["top-level", "limits", "smtp", "tls"])
def test_unknown_key_fails_naming_key_and_line(tmp_path, text, key, line):
    assert text.splitlines()[line - 1].startswith(key), "test bug: wrong line number"
    code, out = serve_expecting_failure(tmp_path, text)
    assert code != 0, f"exit code 0 with an unknown key:\n{out}"
    assert key in out, f"the message does not name the key {key!r}:\n{out}"
    assert names_line(out, line), f"the message does not name line {line}:\n{out}"
    assert not (tmp_path / "data" / "listeners").exists()


@pytest.mark.parametrize("text,key,line", [
    (BASE + LISTEN + "\n[limits]\nmax_errors = \"ten\"\n", "max_errors", 12),
    (BASE + LISTEN + "\n[limits]\nmax_line_length = 100\n", "max_line_length", 12),
    (BASE + 'max_message_size = -5\n' + LISTEN, "max_message_size", 4),
    (BASE + '\n[smtp]\nlisten = ["not-an-address"]\n', "listen", 6),
], ids=["wrong-type", "too-small", "negative", "bad-address"])
def test_bad_value_fails_naming_key_and_line(tmp_path, text, key, line):
    code, out = serve_expecting_failure(tmp_path, text)
    assert code != 0, f"exit code 0 with a bad value:\n{out}"
    assert key in out, f"the message does not name {key!r}:\n{out}"
    assert names_line(out, line), f"the message does not name line {line}:\n{out}"


def test_malformed_toml_fails_naming_line(tmp_path):
    code, out = serve_expecting_failure(tmp_path, BASE + "[smtp\n")
    assert code != 0
    assert names_line(out, 4), out


def test_missing_config_file(tmp_path):
    p = subprocess.run([str(ironpost_bin()), "serve", "--config", str(tmp_path / "nope.toml")],
                       capture_output=True, timeout=20)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode != 0
    assert "nope.toml" in out, out


def test_port_in_use_fails(make_server, tmp_path):
    first = make_server()
    busy = first.smtp_port
    second = make_server(config={"smtp": {"listen": [f"127.0.0.1:{busy}"]}}, start=False)
    p = subprocess.run([str(ironpost_bin()), "serve", "--config", str(second.config_path)],
                       capture_output=True, timeout=20)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode != 0, out
    assert str(busy) in out, f"the message does not name the address: {out}"


def test_relative_data_dir_resolves_against_the_config_file(server):
    # The fixture writes data_dir = "data" and starts the server with cwd=/.
    assert (server.root / "data" / "listeners").exists()
    assert server.cert_path.exists(), "no generated certificate in <data_dir>/tls/"
    assert (server.data_dir / "tls" / "key.pem").exists()


def test_certificate_is_kept_across_restarts(server):
    cert = server.cert_path.read_bytes()
    assert server.stop() == 0
    server.start()
    assert server.cert_path.read_bytes() == cert, "a new certificate was generated on restart"


# -- accounts: password schemes ------------------------------------------------------------
def auth_ok(server, user: str, password: str) -> int:
    c = RawSmtp(server.submission_port)
    try:
        c.ehlo()
        c.starttls(server.tls_context())
        c.ehlo()
        return c.auth_plain(user, password).code
    finally:
        c.close()


def test_bcrypt_blf_crypt_accounts(make_server):
    bcrypt = pytest.importorskip("bcrypt")
    h2b = bcrypt.hashpw(b"dave-pw", bcrypt.gensalt(rounds=5)).decode()
    h2y = "$2y$" + bcrypt.hashpw(b"erin-pw", bcrypt.gensalt(rounds=5)).decode()[4:]
    server = make_server(account_lines=[f"dave@example.test|{{BLF-CRYPT}}{h2b}",
                                        f"erin@example.test|{{BLF-CRYPT}}{h2y}"])
    assert auth_ok(server, "dave@example.test", "dave-pw") == 235
    assert auth_ok(server, "erin@example.test", "erin-pw") == 235
    assert auth_ok(server, "dave@example.test", "erin-pw") == 535


def test_argon2id_accounts(make_server):
    argon2 = pytest.importorskip("argon2")
    ph = argon2.PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1,
                               type=argon2.Type.ID)
    h = ph.hash("frank-pw")
    assert h.startswith("$argon2id$")
    server = make_server(account_lines=[f"frank@example.test|{{ARGON2ID}}{h}"])
    assert auth_ok(server, "frank@example.test", "frank-pw") == 235
    assert auth_ok(server, "frank@example.test", "frank-pw-wrong") == 535


def test_sha512_crypt_fixed_salt_and_explicit_rounds(make_server):
    lines = []
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", "abcdefgh", "gina-pw"],
                         capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    lines.append(f"gina@example.test|{{SHA512-CRYPT}}{out}")
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # the `$6$rounds=N$` form, as some tools write it
        rounds = crypt.crypt("ivan-pw", "$6$rounds=6000$saltsaltsalt$")
        assert rounds.startswith("$6$rounds=6000$")
        lines.append(f"ivan@example.test|{{SHA512-CRYPT}}{rounds}")
    except ImportError:
        rounds = None
    server = make_server(account_lines=lines)
    assert auth_ok(server, "gina@example.test", "gina-pw") == 235
    assert auth_ok(server, "gina@example.test", "gina-PW") == 535
    if rounds:
        assert auth_ok(server, "ivan@example.test", "ivan-pw") == 235


def test_email_add_cli_creates_a_working_account(make_server):
    server = make_server(start=False)
    p = subprocess.run([str(ironpost_bin()), "email", "add", "--config", str(server.config_path),
                        "henry@other.test", "henry-secret"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace")
    line = [ln for ln in (server.data_dir / "postfix-accounts.cf").read_text().splitlines()
            if ln.startswith("henry@other.test|")]
    assert len(line) == 1 and "|{SHA512-CRYPT}$6$" in line[0], line
    server.start()
    assert auth_ok(server, "henry@other.test", "henry-secret") == 235
    # ...and it receives mail.
    msg = make_message("to henry", to="henry@other.test")
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        assert_reply(c.mail_transaction("sender@remote.test", ["henry@other.test"], msg), 250)
        c.quit()
    server.assert_delivered("henry@other.test", msg, "sender@remote.test")
