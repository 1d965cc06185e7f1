"""Fixtures for the ironpost end-to-end tests.

Each test that asks for `server` (or calls `make_server(...)`) gets its own ironpost process
with its own config file, data directory and ports: every listener binds 127.0.0.1:0 and the
test learns the real ports from `<data_dir>/listeners`, so tests run in parallel (xdist).

Nothing is built here: scripts/test.sh builds first. The binary is $IRONPOST_BIN, default
<repo>/target/debug/ironpost.
"""

from __future__ import annotations

import copy
import functools
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_helpers import (  # noqa: E402
    ACCOUNTS, ALIASES, HOSTNAME, Delivered, check_maildir_name, split_delivered,
    verifying_context, insecure_context,
)

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

DEFAULT_CONFIG = {
    "hostname": HOSTNAME,
    # Relative on purpose: it must resolve against the config file's directory (the server
    # is started from another working directory).
    "data_dir": "data",
    "domains": ["example.test", "other.test"],
    "max_message_size": 10240000,
    "limits": {
        "max_connections": 1000,
        "max_connections_per_ip": 50,
        "max_recipients": 100,
        "max_line_length": 2048,
        "command_timeout": 300,
        "data_timeout": 180,
        "max_errors": 10,
        "max_auth_failures": 3,
    },
    "smtp": {"enabled": True, "listen": ["127.0.0.1:0"], "starttls": False},
    "submission": {"enabled": True, "listen": ["127.0.0.1:0"]},
    "submissions": {"enabled": False, "listen": ["127.0.0.1:0"]},
    # Outbound lookups go to a closed loopback port: no test server ever asks the
    # machine's resolver, so no test sends traffic off loopback.
    "dns": {"servers": ["127.0.0.1:9"], "timeout": 1},
}


def ironpost_bin() -> Path:
    return Path(os.environ.get("IRONPOST_BIN", REPO / "target" / "debug" / "ironpost"))


@functools.lru_cache(maxsize=None)
def builtin_config() -> dict:
    """The binary's embedded default configuration (`ironpost default-config`), used to learn
    which listener sections and keys this build has; {} if it cannot tell."""
    try:
        p = subprocess.run([str(ironpost_bin()), "default-config"], capture_output=True,
                           timeout=30)
        return tomllib.loads(p.stdout.decode()) if p.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, tomllib.TOMLDecodeError):
        return {}


def with_ephemeral_listeners(cfg: dict) -> dict:
    """Every listener section this build knows of (imap, imaps, ...) that the test did not
    configure gets port 0 too, so that parallel servers never share a fixed port."""
    out = copy.deepcopy(cfg)
    for name, table in builtin_config().items():
        if isinstance(table, dict) and "listen" in table and name not in out:
            out[name] = {"listen": ["127.0.0.1:0"]}
    return out


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def render_toml(cfg: dict) -> str:
    top = [f"{k} = {toml_value(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    out = "\n".join(top) + "\n"
    for k, v in cfg.items():
        if isinstance(v, dict):
            out += f"\n[{k}]\n" + "".join(f"{kk} = {toml_value(vv)}\n" for kk, vv in v.items())
    return out


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


_HASHES: dict[str, str] = {}


def sha512_crypt(password: str) -> str:
    """A `$6$` hash made by openssl, cached per password."""
    if password not in _HASHES:
        out = subprocess.run(["openssl", "passwd", "-6", password], check=True,
                             capture_output=True, text=True, timeout=30)
        _HASHES[password] = out.stdout.strip()
    return _HASHES[password]


class Server:
    """One ironpost process and its files."""

    def __init__(self, root: Path, config: dict, accounts: dict[str, str] | None,
                 aliases: dict[str, list[str]] | None, account_lines: list[str] | None = None):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.config_path = root / "ironpost.toml"
        self.config_path.write_text(render_toml(config))
        self.data_dir = (root / config["data_dir"]).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "server.log"
        self.proc: subprocess.Popen | None = None
        self.listeners: dict[str, list[tuple[str, int]]] = {}
        self.expect_exit = False
        # Run in the child before exec (e.g. to lower a resource limit), as Popen's preexec_fn.
        self.preexec = None
        lines = [f"{a}|{{SHA512-CRYPT}}{sha512_crypt(p)}" for a, p in (accounts or {}).items()]
        lines += account_lines or []
        (self.data_dir / "postfix-accounts.cf").write_text("".join(ln + "\n" for ln in lines))
        alias_lines = [f"{a} {','.join(t)}" for a, t in (aliases or {}).items()]
        (self.data_dir / "postfix-virtual.cf").write_text("".join(ln + "\n" for ln in alias_lines))

    # -- process ------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT, poll: float = 0.02) -> "Server":
        binary = ironpost_bin()
        if not binary.exists():
            pytest.fail(f"ironpost binary not found at {binary} (build it, or set IRONPOST_BIN)")
        listeners = self.data_dir / "listeners"
        if listeners.exists():
            listeners.unlink()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"==== starting {binary} serve --config {self.config_path}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(binary), "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", env=env,
                preexec_fn=self.preexec)
        self.expect_exit = False
        deadline = time.monotonic() + timeout
        while True:
            if listeners.exists():
                text = listeners.read_text()
                if text.endswith("\n"):
                    self.listeners = parse_listeners(text)
                    break
            code = self.proc.poll()
            if code is not None:
                pytest.fail(f"ironpost exited with {code} before writing {listeners}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no {listeners} within {timeout}s:\n{self.log()}")
            time.sleep(poll)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.expect_exit = True
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM; SIGKILL if it is still running after `timeout`. Returns the exit code,
        or None if SIGKILL was needed."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.expect_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
            return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- addresses ----------------------------------------------------------------------
    def port(self, name: str = "smtp") -> int:
        addrs = self.listeners.get(name)
        assert addrs, f"no '{name}' listener in {self.listeners}"
        return addrs[0][1]

    @property
    def smtp_port(self) -> int:
        return self.port("smtp")

    @property
    def submission_port(self) -> int:
        return self.port("submission")

    @property
    def submissions_port(self) -> int:
        return self.port("submissions")

    @property
    def cert_path(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def tls_context(self, **kw):
        """Trusts the server's generated certificate; checks the host name."""
        return verifying_context(self.cert_path, **kw)

    def insecure_tls_context(self):
        return insecure_context()

    # -- Maildir ------------------------------------------------------------------------
    def maildir(self, address: str) -> Path:
        local, domain = address.rsplit("@", 1)
        return self.data_dir / "mail" / domain / local

    def files(self, address: str, sub: str = "new") -> list[Path]:
        d = self.maildir(address) / sub
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.is_file())

    def all_files(self, sub: str) -> list[Path]:
        root = self.data_dir / "mail"
        if not root.is_dir():
            return []
        return sorted(p for p in root.glob(f"*/*/{sub}/*") if p.is_file())

    def messages(self, address: str) -> list[Delivered]:
        out = []
        for p in self.files(address):
            check_maildir_name(p)
            out.append(split_delivered(p, p.read_bytes()))
        return out

    def wait_messages(self, address: str, count: int, timeout: float = 10.0) -> list[Delivered]:
        """Polls (bounded) until `address` has at least `count` messages in new/; fails if it
        ends up with more, or never gets there."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.files(address)
            if len(files) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        msgs = self.messages(address)
        assert len(msgs) == count, (
            f"{address}: expected {count} message(s) in new/, found {len(msgs)}: "
            f"{[m.path.name for m in msgs]}")
        return msgs

    def assert_delivered(self, address: str, sent: bytes, sender: str,
                         delivered_to: str | list[str] | None = None, tls: str | None = None,
                         count: int = 1, timeout: float = 10.0) -> Delivered:
        """Exactly `count` messages are in `address`'s new/, one of them is `sent` byte for byte
        after the prefix, and nothing is left in tmp/."""
        msgs = self.wait_messages(address, count, timeout)
        match = [m for m in msgs if m.body == sent]
        if not match:
            detail = "\n".join(
                f"  {m.path.name}: {len(m.body)} bytes, first difference at "
                f"{first_difference(m.body, sent)}: got {m.body[:300]!r}" for m in msgs)
            raise AssertionError(
                f"{address}: no message in new/ equals the {len(sent)} bytes sent "
                f"({sent[:200]!r}...):\n{detail}")
        m = match[0]
        assert m.return_path == sender, f"Return-Path <{m.return_path}>, expected <{sender}>"
        targets = [address] if delivered_to is None else (
            [delivered_to] if isinstance(delivered_to, str) else delivered_to)
        assert m.delivered_to.lower() in [t.lower() for t in targets], (
            f"Delivered-To {m.delivered_to!r}, expected one of {targets}")
        if tls is not None:
            assert tls.encode() in m.received, f"Received field does not name {tls}: {m.received!r}"
        else:
            assert b"TLS" not in m.received, f"plaintext session, yet Received says TLS: {m.received!r}"
        assert self.files(address, "tmp") == [], f"left in tmp/: {self.files(address, 'tmp')}"
        return m


def first_difference(a: bytes, b: bytes) -> str:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return f"offset {i} (got {a[max(0, i - 20):i + 20]!r}, sent {b[max(0, i - 20):i + 20]!r})"
    return f"offset {n} (lengths {len(a)} vs {len(b)})"


def parse_listeners(text: str) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, addr = line.split()
        host, port = addr.rsplit(":", 1)
        out.setdefault(name, []).append((host.strip("[]"), int(port)))
    return out


# -- fixtures -----------------------------------------------------------------------------
# Every server test runs on each runtime (config key `runtime`); IRONPOST_RUNTIMES=mio picks
# one.
RUNTIMES = [r.strip() for r in os.environ.get("IRONPOST_RUNTIMES", "mio,smol").split(",") if r.strip()]


@pytest.fixture(params=RUNTIMES)
def runtime(request) -> str | None:
    builtin = builtin_config()
    if builtin and "runtime" not in builtin:
        # A build with one runtime: run each test once, without the key.
        if request.param != RUNTIMES[0]:
            pytest.skip("this build has no `runtime` setting")
        return None
    return request.param


@pytest.fixture
def make_server(tmp_path, request, runtime):
    """Factory: make_server(config={...overrides...}, accounts=..., aliases=..., start=True).
    A None value in the overrides removes a key."""
    servers: list[Server] = []
    request.node._ironpost_servers = servers

    def _make(config: dict | None = None, accounts: dict | None = None,
              aliases: dict | None = None, account_lines: list[str] | None = None,
              start: bool = True, name: str | None = None) -> Server:
        base = merge(DEFAULT_CONFIG, {"runtime": runtime}) if runtime else DEFAULT_CONFIG
        cfg = with_ephemeral_listeners(merge(base, config or {}))
        root = tmp_path / (name or f"srv{len(servers)}")
        s = Server(root, cfg, ACCOUNTS if accounts is None else accounts,
                   ALIASES if aliases is None else aliases, account_lines)
        servers.append(s)
        if start:
            s.start()
        return s

    yield _make

    problems = []
    for s in servers:
        if s.proc is None:
            continue
        code = s.proc.poll()
        if code is not None and not s.expect_exit:
            problems.append(f"{s.root.name}: ironpost exited on its own during the test (code {code})")
        if code is None:
            rc = s.stop()
            if rc is None:
                problems.append(f"{s.root.name}: ironpost did not exit within {STOP_TIMEOUT}s of SIGTERM")
        if "panicked at" in s.log():
            problems.append(f"{s.root.name}: ironpost panicked (see log)")
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def server(make_server) -> Server:
    return make_server()


@pytest.fixture
def tls_server(make_server) -> Server:
    """STARTTLS offered on the smtp port and implicit TLS on submissions."""
    return make_server(config={"smtp": {"starttls": True}, "submissions": {"enabled": True}})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in getattr(item, "_ironpost_servers", []):
            log = s.log()
            if len(log) > 30000:
                log = "...\n" + log[-30000:]
            rep.sections.append((f"ironpost log ({s.root.name}, {rep.when})", log))
