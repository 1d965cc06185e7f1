"""The SMTP policy table, one test per row, over a raw socket so that the exact reply code
and enhanced status code are visible."""

import base64
import time

import pytest

from conftest import builtin_config
from e2e_helpers import (
    ACCOUNTS, RawSmtp, assert_reply, ehlo_keywords, make_message,
)

ALICE = "alice@example.test"
ALICE_PW = ACCOUNTS[ALICE]


def submission_tls(server, auth: bool = True) -> RawSmtp:
    c = RawSmtp(server.submission_port)
    c.ehlo()
    c.starttls(server.tls_context())
    c.ehlo()
    if auth:
        assert_reply(c.auth_plain(ALICE, ALICE_PW), 235, "2.7.0", "AUTH PLAIN")
    return c


# -- greeting, EHLO -------------------------------------------------------------------------
def test_greeting(server):
    with RawSmtp(server.smtp_port) as c:
        assert c.greeting.code == 220
        assert c.greeting.lines[0].startswith("mx.example.test ESMTP ironpost"), str(c.greeting)


def test_ehlo_on_smtp_port_advertises_extensions_without_auth_or_starttls(server):
    with RawSmtp(server.smtp_port) as c:
        r = c.ehlo()
        assert r.lines[0].startswith("mx.example.test"), str(r)
        kw = ehlo_keywords(r)
        for ext in ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"]:
            assert ext in kw, f"{ext} missing from {r}"
        assert kw.get("SIZE") == "10240000", str(r)
        assert "AUTH" not in kw, f"AUTH offered on the smtp port: {r}"
        assert "STARTTLS" not in kw, f"STARTTLS offered with smtp.starttls=false: {r}"
        c.quit()


def test_ehlo_on_smtp_port_with_starttls_enabled(tls_server):
    with RawSmtp(tls_server.smtp_port) as c:
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" in kw
        assert "AUTH" not in kw
        c.starttls(tls_server.tls_context())
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" not in kw, "STARTTLS advertised inside TLS"
        assert "AUTH" not in kw, "AUTH offered on the smtp port (inside TLS)"
        c.quit()


def test_starttls_refused_on_smtp_port_when_not_offered(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        r = c.cmd("STARTTLS")
        assert 500 <= r.code < 600, f"STARTTLS not offered, yet: {r}"
        c.expect("NOOP", 250)


def test_ehlo_on_submission_before_and_after_tls(server):
    with RawSmtp(server.submission_port) as c:
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" in kw
        assert "AUTH" not in kw, "AUTH advertised before TLS on submission"
        c.starttls(server.tls_context())
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" not in kw
        assert kw.get("AUTH", "").upper().split() == ["PLAIN", "LOGIN"], kw
        c.quit()


def test_ehlo_on_submissions(make_server):
    server = make_server(config={"submissions": {"enabled": True}})
    with RawSmtp(server.submissions_port, tls_context=server.tls_context()) as c:
        assert c.greeting.code == 220
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" not in kw
        assert kw.get("AUTH", "").upper().split() == ["PLAIN", "LOGIN"], kw
        c.quit()


def test_helo_works_too(server):
    with RawSmtp(server.smtp_port) as c:
        r = c.cmd("HELO client.example.net")
        assert_reply(r, 250)
        msg = make_message("helo")
        assert_reply(c.mail_transaction("sender@remote.test", [ALICE], msg), 250)
        c.quit()
    server.assert_delivered(ALICE, msg, "sender@remote.test")


# -- relay and recipients ------------------------------------------------------------------
def test_unknown_local_user_is_550_511(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect("RCPT TO:<nobody@example.test>", 550, "5.1.1")
        c.expect("RCPT TO:<nobody@other.test>", 550, "5.1.1")


def test_foreign_recipient_unauthenticated_is_554_571(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect("RCPT TO:<someone@elsewhere.test>", 554, "5.7.1")
        # The session goes on: a local recipient is still fine.
        c.expect(f"RCPT TO:<{ALICE}>", 250)


def test_foreign_recipient_with_local_sender_unauthenticated_is_554_571(server):
    """A local sender address proves nothing: still no relay."""
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{ALICE}>", 250)
        c.expect("RCPT TO:<victim@elsewhere.test>", 554, "5.7.1")


def test_foreign_recipient_from_authenticated_user(server):
    """An authenticated user may send to other domains: accepted for relay by a build that has
    outbound relay (a [relay] section), 451 4.3.0 (try later) by one that has not. No DATA is
    sent, so nothing is queued and nothing leaves the machine."""
    relay_built = "relay" in builtin_config()
    with submission_tls(server) as c:
        c.expect(f"MAIL FROM:<{ALICE}>", 250)
        if relay_built:
            c.expect("RCPT TO:<friend@elsewhere.test>", 250)
        else:
            c.expect("RCPT TO:<friend@elsewhere.test>", 451, "4.3.0")
        c.expect("RCPT TO:<bob@example.test>", 250)
        c.expect("RSET", 250)
        c.quit()


def test_too_many_recipients_is_452(make_server):
    server = make_server(config={"limits": {"max_recipients": 3}})
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("RCPT TO:<bob@example.test>", 250)
        c.expect("RCPT TO:<carol@other.test>", 250)
        c.expect("RCPT TO:<team@example.test>", 452, "4.5.3")
        c.expect("DATA", 354)
        msg = make_message("three")
        c.send(msg + b".\r\n")
        assert_reply(c.read_reply(), 250, None, "end of data")
        c.quit()
    for r in [ALICE, "bob@example.test", "carol@other.test"]:
        server.assert_delivered(r, msg, "sender@remote.test")


# -- sizes ----------------------------------------------------------------------------------
def test_size_parameter_over_limit_is_552_534(make_server):
    server = make_server(config={"max_message_size": 1000})
    with RawSmtp(server.smtp_port) as c:
        assert ehlo_keywords(c.ehlo()).get("SIZE") == "1000"
        c.expect("MAIL FROM:<sender@remote.test> SIZE=1001", 552, "5.3.4")
        c.expect("MAIL FROM:<sender@remote.test> SIZE=500", 250)


def test_size_limit_boundary(make_server):
    """A message of exactly max_message_size octets (after dot-unstuffing) is accepted, one
    more is not; SIZE= equal to the limit is accepted."""
    server = make_server(config={"max_message_size": 1000})
    head = make_message("boundary", b"")
    exact = head + b"." * (1000 - len(head) - 2) + b"\r\n"
    over = head + b"." * (1001 - len(head) - 2) + b"\r\n"
    assert len(exact) == 1000 and len(over) == 1001
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        r = c.mail_transaction("sender@remote.test", [ALICE], exact, mail_params="SIZE=1000")
        assert_reply(r, 250, None, "message of exactly max_message_size")
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(b"\r\n".join((b"." + ln) if ln.startswith(b".") else ln
                             for ln in over.split(b"\r\n")) + b".\r\n")
        r = c.read_reply()
        assert r.code == 552, f"message one octet over the limit: {r}"
        c.quit()
    server.assert_delivered(ALICE, exact, "sender@remote.test")


def test_body_over_limit_is_552_and_nothing_delivered(make_server):
    server = make_server(config={"max_message_size": 1000})
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(make_message("too big", b"x" * 70 + b"\r\n") * 30 + b".\r\n")
        r = c.read_reply()
        assert r.code == 552, f"oversized body: {r}"
        # The session continues, and a message within the limit is accepted.
        small = make_message("small")
        assert_reply(c.mail_transaction("sender@remote.test", [ALICE], small), 250)
        c.quit()
    server.assert_delivered(ALICE, small, "sender@remote.test")
    assert server.all_files("tmp") == []


def test_body_over_limit_via_bdat_is_552(make_server):
    server = make_server(config={"max_message_size": 1000})
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        chunk = b"y" * 1500
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        r = c.read_reply()
        assert r.code == 552, f"oversized BDAT: {r}"
        c.expect("RSET", 250)
        c.expect("NOOP", 250)
    assert server.all_files("new") == [] and server.all_files("tmp") == []


# -- submission rules ---------------------------------------------------------------------
def test_auth_before_tls_on_submission_is_538_5711(server):
    with RawSmtp(server.submission_port) as c:
        kw = ehlo_keywords(c.ehlo())
        assert "AUTH" not in kw
        token = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()
        c.expect(f"AUTH PLAIN {token}", 538, "5.7.11")
        c.expect("AUTH LOGIN", 538, "5.7.11")


def test_mail_before_starttls_on_submission_is_530_570(server):
    with RawSmtp(server.submission_port) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{ALICE}>", 530, "5.7.0")


def test_mail_without_auth_on_submission_is_530_570(server):
    with submission_tls(server, auth=False) as c:
        c.expect(f"MAIL FROM:<{ALICE}>", 530, "5.7.0")
        c.expect("RCPT TO:<bob@example.test>", 503, "5.5.1")


def test_submission_refuses_local_delivery_without_auth(server):
    """Port 587 is not an inbound port: even a local recipient needs AUTH."""
    with submission_tls(server, auth=False) as c:
        r = c.cmd("MAIL FROM:<sender@remote.test>")
        assert_reply(r, 530, "5.7.0")
    assert server.all_files("new") == []


def test_auth_on_smtp_port_is_refused(tls_server):
    token = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()
    with RawSmtp(tls_server.smtp_port) as c:
        c.ehlo()
        r = c.cmd(f"AUTH PLAIN {token}")
        assert 500 <= r.code < 600, f"AUTH on the smtp port (cleartext): {r}"
        c.starttls(tls_server.tls_context())
        c.ehlo()
        r = c.cmd(f"AUTH PLAIN {token}")
        assert 500 <= r.code < 600, f"AUTH on the smtp port (TLS): {r}"
        # ...and so no relaying from it.
        c.expect(f"MAIL FROM:<{ALICE}>", 250)
        c.expect("RCPT TO:<x@elsewhere.test>", 554, "5.7.1")


def test_bad_password_is_535_578(server):
    with submission_tls(server, auth=False) as c:
        r = c.auth_plain(ALICE, "not-the-password")
        assert_reply(r, 535, "5.7.8")
        # Right password for another user is still wrong.
        assert_reply(c.auth_plain(ALICE, ACCOUNTS["bob@example.test"]), 535, "5.7.8")
        assert_reply(c.auth_plain(ALICE, ALICE_PW), 235, "2.7.0")


def test_auth_login_good_and_bad_raw(server):
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    with submission_tls(server, auth=False) as c:
        r = c.cmd("AUTH LOGIN")
        assert_reply(r, 334)
        assert base64.b64decode(r.lines[0]).lower().startswith(b"username"), str(r)
        r = c.cmd(b64(ALICE))
        assert_reply(r, 334)
        assert base64.b64decode(r.lines[0]).lower().startswith(b"password"), str(r)
        assert_reply(c.cmd(b64("wrong")), 535, "5.7.8")
        # LOGIN with the username as initial response (RFC 4954 allows it).
        r = c.cmd(f"AUTH LOGIN {b64(ALICE)}")
        assert_reply(r, 334)
        assert_reply(c.cmd(b64(ALICE_PW)), 235, "2.7.0")
        c.expect(f"MAIL FROM:<{ALICE}>", 250)


def test_auth_plain_with_empty_initial_response(server):
    with submission_tls(server, auth=False) as c:
        r = c.cmd("AUTH PLAIN")
        assert_reply(r, 334)
        token = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()
        assert_reply(c.cmd(token), 235, "2.7.0")


def test_auth_plain_cannot_act_as_another_user(server):
    """authzid names bob, credentials are alice's: that is not a login as bob (nor as alice
    acting for bob)."""
    token = base64.b64encode(f"bob@example.test\0{ALICE}\0{ALICE_PW}".encode()).decode()
    with submission_tls(server, auth=False) as c:
        r = c.cmd(f"AUTH PLAIN {token}")
        assert r.code != 235, f"authorization identity accepted: {r}"
        assert 500 <= r.code < 600, str(r)


def test_auth_plain_same_authzid_is_fine(server):
    token = base64.b64encode(f"{ALICE}\0{ALICE}\0{ALICE_PW}".encode()).decode()
    with submission_tls(server, auth=False) as c:
        assert_reply(c.cmd(f"AUTH PLAIN {token}"), 235, "2.7.0")


def test_auth_cancelled_with_star(server):
    with submission_tls(server, auth=False) as c:
        assert_reply(c.cmd("AUTH LOGIN"), 334)
        r = c.cmd("*")
        assert r.code == 501, f"cancelled AUTH: {r}"
        c.expect("NOOP", 250)


def test_max_auth_failures_then_421_and_close(server):
    with submission_tls(server, auth=False) as c:
        for _ in range(2):
            assert_reply(c.auth_plain(ALICE, "bad"), 535, "5.7.8")
        assert_reply(c.auth_plain(ALICE, "bad"), 535, "5.7.8")
        r = c.read_reply()
        assert r.code == 421, f"after 3 failed AUTH attempts: {r}"
        c.wait_closed()


def test_auth_twice_is_503(server):
    with submission_tls(server) as c:
        r = c.auth_plain(ALICE, ALICE_PW)
        assert_reply(r, 503, "5.5.1")


# -- command sequence ---------------------------------------------------------------------
def test_mail_before_ehlo_is_503_551(server):
    with RawSmtp(server.smtp_port) as c:
        c.expect("MAIL FROM:<sender@remote.test>", 503, "5.5.1")


def test_rcpt_before_mail_is_503_551(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect(f"RCPT TO:<{ALICE}>", 503, "5.5.1")


def test_data_without_valid_recipient_is_554_551(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect("RCPT TO:<nobody@example.test>", 550, "5.1.1")
        c.expect("DATA", 554, "5.5.1")
        c.expect("NOOP", 250)


def test_data_without_mail_is_503(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        r = c.cmd("DATA")
        assert r.code == 503, str(r)


def test_nested_mail_is_503(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect("MAIL FROM:<sender@remote.test>", 503, "5.5.1")


def test_rset_clears_the_transaction(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@remote.test>", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("RSET", 250)
        c.expect("DATA", 503)


def test_unknown_command_is_500(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        r = c.cmd("FROBNICATE now")
        assert r.code == 500, str(r)
        c.expect("NOOP", 250)


def test_bad_address_syntax_is_501(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<not an address>")
        assert r.code == 501, str(r)


def test_vrfy_does_not_confirm_users(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        a = c.cmd(f"VRFY {ALICE}")
        b = c.cmd("VRFY nobody@example.test")
        assert a.code == b.code and a.code != 250, f"VRFY leaks users: {a} / {b}"


def test_quit_is_221_and_closes(server):
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        r = c.cmd("QUIT")
        assert_reply(r, 221)
        c.wait_closed()


def test_too_many_errors_then_421_and_close(make_server):
    server = make_server(config={"limits": {"max_errors": 3}})
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        for i in range(3):
            r = c.cmd(f"BOGUS{i}")
            assert r.code == 500, str(r)
        r = c.read_reply()
        assert r.code == 421, f"after 3 errors: {r}"
        c.wait_closed()
    # The server itself is fine.
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.quit()


def test_smtputf8_sender(server):
    msg = make_message("utf8", "Grüße\r\n".encode(), sender="jürgen@remote.test")
    with RawSmtp(server.smtp_port) as c:
        c.ehlo()
        c.expect("MAIL FROM:<jürgen@bücher.test> SMTPUTF8 BODY=8BITMIME", 250)
        c.expect(f"RCPT TO:<{ALICE}>", 250)
        c.expect("DATA", 354)
        c.send(msg + b".\r\n")
        assert_reply(c.read_reply(), 250, None, "end of data")
        c.quit()
    server.assert_delivered(ALICE, msg, "jürgen@bücher.test")


def test_max_connections(make_server):
    server = make_server(config={"limits": {"max_connections": 2}})
    a = RawSmtp(server.smtp_port)
    b = RawSmtp(server.submission_port)
    try:
        with RawSmtp(server.smtp_port, greeting=False) as c:
            r = c.read_reply()
            assert r.code == 421, f"third connection with max_connections = 2: {r}"
            c.wait_closed()
    finally:
        a.quit()
        b.quit()


def test_max_connections_per_ip(make_server):
    server = make_server(config={"limits": {"max_connections_per_ip": 2}})
    a = RawSmtp(server.smtp_port)
    b = RawSmtp(server.smtp_port)
    try:
        c = RawSmtp(server.smtp_port, greeting=False)
        with c:
            r = c.read_reply()
            assert r.code == 421, f"third connection from one IP: {r}"
            c.wait_closed()
    finally:
        a.quit()
    # Once a connection has gone, a new one is welcome again (allow the server a moment to
    # notice the close).
    deadline = time.monotonic() + 5
    while True:
        d = RawSmtp(server.smtp_port, greeting=False)
        with d:
            r = d.read_reply()
            if r.code == 220 or time.monotonic() > deadline:
                assert r.code == 220, f"after one of two connections closed: {r}"
                d.quit()
                break
        time.sleep(0.1)
    b.quit()
