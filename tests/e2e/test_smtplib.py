"""Receiving with Python's smtplib as the client: plain on the smtp port, STARTTLS + AUTH on
submission, implicit TLS on submissions; every test checks the exact bytes in Maildir."""

import smtplib
import ssl

import pytest

from e2e_helpers import ACCOUNTS, LOOPBACK, big_body, make_message, unfold

TIMEOUT = 15


def tls13_cipher_core(sock: ssl.SSLSocket) -> str:
    """`AES_256_GCM_SHA384` from `TLS_AES_256_GCM_SHA384` (rustls says TLS13_...)."""
    name = sock.cipher()[0]
    return name[4:] if name.startswith("TLS_") else name


def test_plain_smtp_port_delivers_exact_bytes(server):
    msg = make_message("plain", b"Hello Alice.\r\n\r\nSecond paragraph.\r\n")
    with smtplib.SMTP(LOOPBACK, server.smtp_port, local_hostname="client.example.net",
                      timeout=TIMEOUT) as c:
        code, _ = c.ehlo()
        assert code == 250
        assert "auth" not in c.esmtp_features, "AUTH offered on the smtp port"
        refused = c.sendmail("sender@remote.test", ["alice@example.test"], msg)
        assert refused == {}
    m = server.assert_delivered("alice@example.test", msg, "sender@remote.test")
    received = unfold(m.received)
    assert "mx.example.test" in received, received
    assert "127.0.0.1" in received, f"Received does not name the client address: {received}"


def test_submission_starttls_auth_plain(server):
    msg = make_message("submission plain", b"From Alice to Bob.\r\n",
                       sender="alice@example.test", to="bob@example.test")
    with smtplib.SMTP(LOOPBACK, server.submission_port, timeout=TIMEOUT) as c:
        c.ehlo("client.example.net")
        assert c.has_extn("starttls")
        assert not c.has_extn("auth"), "AUTH advertised before TLS on submission"
        c.starttls(context=server.tls_context())
        c.ehlo("client.example.net")
        assert not c.has_extn("starttls"), "STARTTLS still advertised inside TLS"
        mechs = c.esmtp_features.get("auth", "").upper().split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, c.esmtp_features
        cipher = tls13_cipher_core(c.sock)
        version = c.sock.version()
        c.user, c.password = "alice@example.test", ACCOUNTS["alice@example.test"]
        code, resp = c.auth("PLAIN", c.auth_plain)
        assert code == 235, (code, resp)
        assert c.sendmail("alice@example.test", ["bob@example.test"], msg) == {}
    m = server.assert_delivered("bob@example.test", msg, "alice@example.test", tls=version)
    assert version == "TLSv1.3"
    assert cipher in m.received.decode(), f"Received does not name cipher {cipher}: {m.received!r}"


def test_submission_starttls_auth_login(server):
    msg = make_message("submission login", b"LOGIN mechanism.\r\n",
                       sender="bob@example.test", to="alice@example.test")
    with smtplib.SMTP(LOOPBACK, server.submission_port, timeout=TIMEOUT) as c:
        c.starttls(context=server.tls_context())
        c.ehlo("client.example.net")
        c.user, c.password = "bob@example.test", ACCOUNTS["bob@example.test"]
        code, resp = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235, (code, resp)
        assert c.sendmail("bob@example.test", ["alice@example.test"], msg) == {}
    server.assert_delivered("alice@example.test", msg, "bob@example.test", tls="TLSv1.3")


def test_submission_login_via_smtplib_login(server):
    """smtplib's own login() picks a mechanism from the advertised list."""
    msg = make_message("login()", b"Via login().\r\n", sender="carol@other.test")
    with smtplib.SMTP(LOOPBACK, server.submission_port, timeout=TIMEOUT) as c:
        c.starttls(context=server.tls_context())
        c.login("carol@other.test", ACCOUNTS["carol@other.test"])
        assert c.sendmail("carol@other.test", ["alice@example.test"], msg) == {}
    server.assert_delivered("alice@example.test", msg, "carol@other.test", tls="TLSv1.3")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_bad_password_is_535(server, mechanism):
    with smtplib.SMTP(LOOPBACK, server.submission_port, timeout=TIMEOUT) as c:
        c.starttls(context=server.tls_context())
        c.ehlo("client.example.net")
        c.user, c.password = "alice@example.test", "wrong-password"
        obj = c.auth_plain if mechanism == "PLAIN" else c.auth_login
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.auth(mechanism, obj, initial_response_ok=(mechanism == "PLAIN"))
        assert e.value.smtp_code == 535
        assert e.value.smtp_error.startswith(b"5.7.8"), e.value.smtp_error
        # Not authenticated: sending is still refused.
        with pytest.raises(smtplib.SMTPSenderRefused) as e2:
            c.sendmail("alice@example.test", ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
        assert e2.value.smtp_code == 530
    assert server.files("bob@example.test") == []


def test_submission_unknown_user_is_535(server):
    with smtplib.SMTP(LOOPBACK, server.submission_port, timeout=TIMEOUT) as c:
        c.starttls(context=server.tls_context())
        c.ehlo("client.example.net")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.login("nobody@example.test", "alice-secret-1")
        assert e.value.smtp_code == 535


def test_submissions_implicit_tls(make_server):
    server = make_server(config={"submissions": {"enabled": True}})
    msg = make_message("implicit tls", b"Over port 465.\r\n", sender="alice@example.test")
    with smtplib.SMTP_SSL(LOOPBACK, server.submissions_port, timeout=TIMEOUT,
                          context=server.tls_context()) as c:
        c.ehlo("client.example.net")
        assert not c.has_extn("starttls"), "STARTTLS advertised on implicit TLS"
        assert "PLAIN" in c.esmtp_features.get("auth", "").upper().split()
        version = c.sock.version()
        c.login("alice@example.test", ACCOUNTS["alice@example.test"])
        assert c.sendmail("alice@example.test", ["bob@example.test"], msg) == {}
    server.assert_delivered("bob@example.test", msg, "alice@example.test", tls=version)


def test_submissions_bad_password(make_server):
    server = make_server(config={"submissions": {"enabled": True}})
    with smtplib.SMTP_SSL(LOOPBACK, server.submissions_port, timeout=TIMEOUT,
                          context=server.tls_context()) as c:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.login("alice@example.test", "nope")
        assert e.value.smtp_code == 535


def test_tls12_is_named_in_received(server):
    msg = make_message("tls12", b"TLS 1.2 session.\r\n", sender="alice@example.test")
    ctx = server.tls_context(max_version=ssl.TLSVersion.TLSv1_2)
    with smtplib.SMTP(LOOPBACK, server.submission_port, timeout=TIMEOUT) as c:
        c.starttls(context=ctx)
        assert c.sock.version() == "TLSv1.2"
        c.login("alice@example.test", ACCOUNTS["alice@example.test"])
        assert c.sendmail("alice@example.test", ["bob@example.test"], msg) == {}
    server.assert_delivered("bob@example.test", msg, "alice@example.test", tls="TLSv1.2")


def test_one_megabyte_message(server):
    body = big_body(1024 * 1024, seed=7)
    msg = make_message("one megabyte", body)
    assert len(msg) > 1024 * 1024
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=60) as c:
        assert c.sendmail("sender@remote.test", ["alice@example.test"], msg) == {}
    server.assert_delivered("alice@example.test", msg, "sender@remote.test")


def test_eight_bit_message(server):
    body = ("Grüße aus Köln — naïve café, 日本語, emoji 📬\r\n").encode("utf-8")
    body += bytes(b for b in range(128, 256)) + b"\r\n"
    body += "Latin-1: ".encode() + "déjà vu".encode("latin-1") + b"\r\n"
    msg = make_message("8bit", body, extra_headers=[
        "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit"])
    assert any(b > 127 for b in msg)
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        c.ehlo("client.example.net")
        assert c.has_extn("8bitmime")
        assert c.sendmail("sender@remote.test", ["alice@example.test"], msg,
                          mail_options=["BODY=8BITMIME"]) == {}
    server.assert_delivered("alice@example.test", msg, "sender@remote.test")


def test_dot_stuffed_lines(server):
    body = (b".leading dot\r\n"
            b"..two leading dots\r\n"
            b".\r\n"
            b"..\r\n"
            b" .not at start\r\n"
            b"end\r\n")
    msg = make_message("dots", body)
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        assert c.sendmail("sender@remote.test", ["alice@example.test"], msg) == {}
    server.assert_delivered("alice@example.test", msg, "sender@remote.test")


def test_multiple_recipients_each_get_their_own_copy(server):
    msg = make_message("multi", b"To three people.\r\n")
    rcpts = ["alice@example.test", "bob@example.test", "carol@other.test"]
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        assert c.sendmail("sender@remote.test", rcpts, msg) == {}
    paths = set()
    for r in rcpts:
        m = server.assert_delivered(r, msg, "sender@remote.test")
        assert m.delivered_to == r
        paths.add(m.path)
    assert len(paths) == 3


def test_mixed_good_and_unknown_recipients(server):
    msg = make_message("partial", b"Some recipients unknown.\r\n")
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        refused = c.sendmail("sender@remote.test",
                             ["alice@example.test", "ghost@example.test"], msg)
    assert set(refused) == {"ghost@example.test"}
    assert refused["ghost@example.test"][0] == 550
    server.assert_delivered("alice@example.test", msg, "sender@remote.test")
    assert not server.maildir("ghost@example.test").exists()


def test_alias_expansion(server):
    msg = make_message("alias", b"For the postmaster.\r\n", to="postmaster@example.test")
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        assert c.sendmail("sender@remote.test", ["postmaster@example.test"], msg) == {}
    server.assert_delivered("alice@example.test", msg, "sender@remote.test",
                            delivered_to=["alice@example.test", "postmaster@example.test"])
    assert not server.maildir("postmaster@example.test").exists()


def test_alias_with_several_targets(server):
    msg = make_message("team", b"For the team.\r\n", to="team@example.test")
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        assert c.sendmail("sender@remote.test", ["team@example.test"], msg) == {}
    for r in ["alice@example.test", "bob@example.test"]:
        server.assert_delivered(r, msg, "sender@remote.test",
                                delivered_to=[r, "team@example.test"])


def test_alias_across_domains(server):
    msg = make_message("info", b"For info@other.test.\r\n", to="info@other.test")
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        assert c.sendmail("sender@remote.test", ["info@other.test"], msg) == {}
    server.assert_delivered("bob@example.test", msg, "sender@remote.test",
                            delivered_to=["bob@example.test", "info@other.test"])


def test_recipient_case_is_ignored(server):
    msg = make_message("case", b"Mixed-case recipient.\r\n")
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        assert c.sendmail("sender@remote.test", ["Alice@EXAMPLE.test"], msg) == {}
    server.assert_delivered("alice@example.test", msg, "sender@remote.test",
                            delivered_to=["alice@example.test", "Alice@EXAMPLE.test"])


def test_null_sender(server):
    msg = make_message("bounce", b"A delivery status notification.\r\n", sender="MAILER-DAEMON@remote.test")
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        assert c.sendmail("<>", ["alice@example.test"], msg) == {}
    server.assert_delivered("alice@example.test", msg, "")


def test_several_messages_on_one_connection(server):
    msgs = [make_message(f"n{i}", f"Message number {i}.\r\n") for i in range(5)]
    with smtplib.SMTP(LOOPBACK, server.smtp_port, timeout=TIMEOUT) as c:
        for m in msgs:
            assert c.sendmail("sender@remote.test", ["bob@example.test"], m) == {}
    for m in msgs:
        server.assert_delivered("bob@example.test", m, "sender@remote.test", count=5)


def test_authenticated_user_can_send_to_local_users_on_submission(server):
    msg = make_message("local via 587", b"Local delivery from submission.\r\n",
                       sender="alice@example.test")
    with smtplib.SMTP(LOOPBACK, server.submission_port, timeout=TIMEOUT) as c:
        c.starttls(context=server.tls_context())
        c.login("alice@example.test", ACCOUNTS["alice@example.test"])
        assert c.sendmail("alice@example.test",
                          ["bob@example.test", "carol@other.test"], msg) == {}
    server.assert_delivered("bob@example.test", msg, "alice@example.test", tls="TLSv1.3")
    server.assert_delivered("carol@other.test", msg, "alice@example.test", tls="TLSv1.3")
