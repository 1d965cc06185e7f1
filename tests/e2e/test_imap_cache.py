"""IMAP end to end: the header cache (`ironpost.cache` in the mailbox directory) is filled by
FETCH, as a client like Thunderbird fetches every ENVELOPE before it ever searches, and a
later SEARCH on header keys is answered from it, also after other sessions or programs have
changed the message files."""

from __future__ import annotations

import imaplib
import re
from pathlib import Path

from e2e_helpers import ACCOUNTS, LOOPBACK, make_message

ALICE = "alice@example.test"
TIMEOUT = 10
CACHE = "ironpost.cache"
# The cache says what it did at debug level: "header cache written" with how many messages
# it holds, whenever it writes the file.
CACHE_LOG = "info,ironpost::mailstore::cache=debug"


def imaps(server) -> imaplib.IMAP4_SSL:
    ctx = server.tls_context()
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL(LOOPBACK, server.port("imaps"), ssl_context=ctx, timeout=TIMEOUT)
    typ, _ = m.login(ALICE, ACCOUNTS[ALICE])
    assert typ == "OK"
    return m


def ok(result, what: str = ""):
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


def search(m: imaplib.IMAP4, *keys: str, uid: bool = False) -> list[int]:
    data = ok(m.uid("SEARCH", *keys) if uid else m.search(None, *keys), f"SEARCH {keys}")
    return [int(n) for n in data[0].split()]


def subject_of(msg: bytes) -> str:
    """The Subject as written (make_message's: a word and a unique token)."""
    return re.search(rb"^Subject: (.*)\r$", msg, re.M).group(1).decode()


def append_all(m: imaplib.IMAP4, count: int) -> list[bytes]:
    msgs = [make_message(f"cached{i}", sender=f"s{i}@remote.test") for i in range(count)]
    for msg in msgs:
        ok(m.append("INBOX", None, None, msg), "APPEND")
    return msgs


def fetch_envelopes(m: imaplib.IMAP4, count: int) -> None:
    data = ok(m.fetch("1:*", "(ENVELOPE)"), "FETCH ENVELOPE")
    assert sum(1 for d in data if d and b"ENVELOPE (" in d) == count, data


def four_fetched(server, m: imaplib.IMAP4) -> list[str]:
    """Appends four messages, selects INBOX and fetches their envelopes, which writes the
    cache; returns the subjects in order."""
    subjects = [subject_of(x) for x in append_all(m, 4)]
    ok(m.select("INBOX"))
    fetch_envelopes(m, 4)
    assert cache_file(server).is_file()
    return subjects


def cache_file(server) -> Path:
    return server.maildir(ALICE) / CACHE


def cache_writes(server) -> list[int]:
    """How many messages the cache held at each write of it, in order."""
    return [int(n) for n in re.findall(r"header cache written.*?messages=(\d+)", server.log())]


def test_fetch_envelope_fills_the_cache_and_search_uses_it(make_server, monkeypatch):
    monkeypatch.setenv("RUST_LOG", CACHE_LOG)
    server = make_server()
    m = imaps(server)
    try:
        msgs = append_all(m, 5)
        ok(m.select("INBOX"))
        assert not cache_file(server).exists(), "APPEND and SELECT read no header"
        fetch_envelopes(m, 5)
        # The FETCH wrote the cache once, with every message, their subjects lower-cased.
        assert cache_file(server).is_file()
        assert cache_writes(server) == [5], server.log()
        content = cache_file(server).read_bytes()
        for msg in msgs:
            assert subject_of(msg).lower().encode() in content
        # SEARCH on header keys: the right messages, and no new summary (none was read).
        third = subject_of(msgs[2])
        assert search(m, "SUBJECT", f'"{third}"') == [3]
        assert search(m, "SUBJECT", f'"{third.upper()}"') == [3]
        assert search(m, "SUBJECT", "cached") == [1, 2, 3, 4, 5]
        assert search(m, "OR", "FROM", "s1@remote", "SUBJECT", "cached4") == [2, 5]
        assert search(m, "NOT", "FROM", "s0@", "SENTON", "25-Nov-2025") == [2, 3, 4, 5]
        assert search(m, "SUBJECT", "nowhere") == []
        assert cache_writes(server) == [5], "SEARCH had to read a message"
        # Another session, and the same FETCH again: nothing new to write.
        other = imaps(server)
        try:
            ok(other.select("INBOX"))
            assert search(other, "SUBJECT", f'"{subject_of(msgs[4])}"', uid=True) == [5]
            fetch_envelopes(other, 5)
        finally:
            other.logout()
        assert cache_writes(server) == [5]
    finally:
        m.logout()


def test_search_after_another_session_expunges_and_renames(server):
    m = imaps(server)
    other = imaps(server)
    try:
        subjects = four_fetched(server, m)
        # Another session expunges message 2 and sets flags on 3 (its file is renamed).
        ok(other.select("INBOX"))
        ok(other.store("2", "+FLAGS.SILENT", "\\Deleted"))
        ok(other.expunge())
        ok(other.store("2", "+FLAGS.SILENT", "(\\Seen $Work)"))
        files = {subject_of(p.read_bytes()): p.name
                 for p in server.files(ALICE, "cur") + server.files(ALICE, "new")}
        assert sorted(files) == sorted([subjects[0], subjects[2], subjects[3]])
        assert re.search(r":2,S[a-z]+$", files[subjects[2]]), files
        # The session that fetched has not been told of the expunge yet: the message keeps
        # its number but is found no more; the renamed one is.
        assert search(m, "SUBJECT", f'"{subjects[1]}"') == []
        assert search(m, "SUBJECT", f'"{subjects[2]}"') == [3]
        assert search(m, "SUBJECT", "cached") == [1, 3, 4]
        # Once told, the numbers move.
        ok(m.noop())
        assert search(m, "SUBJECT", "cached") == [1, 2, 3]
        assert search(m, "SUBJECT", f'"{subjects[2]}"', uid=True) == [3]
        assert search(other, "SUBJECT", f'"{subjects[1]}"') == []
        # The next write of the cache (a new message fetched) leaves the expunged one out.
        new = make_message("cachednew")
        ok(m.append("INBOX", None, None, new))
        ok(m.noop())
        fetch_envelopes(m, 4)
        content = cache_file(server).read_bytes()
        assert subjects[1].lower().encode() not in content
        for s in (subjects[0], subjects[2], subjects[3], subject_of(new)):
            assert s.lower().encode() in content
        assert search(m, "SUBJECT", "cached") == [1, 2, 3, 4]
    finally:
        other.logout()
        m.logout()


def test_search_after_another_program_changes_the_files(server):
    m = imaps(server)
    try:
        subjects = four_fetched(server, m)
        files = {subject_of(p.read_bytes()): p
                 for p in server.files(ALICE, "cur") + server.files(ALICE, "new")}
        assert set(files) == set(subjects)
        # Another program (Dovecot, a filter) deletes message 1's file and marks message 4
        # seen by renaming its file.
        files[subjects[0]].unlink()
        four = files[subjects[3]]
        base = four.name.split(":2,")[0]
        four.rename(four.parent.parent / "cur" / f"{base}:2,S")
        ok(m.noop())
        assert search(m, "SUBJECT", f'"{subjects[0]}"') == []
        assert search(m, "SUBJECT", f'"{subjects[3]}"') == [3]
        assert search(m, "SUBJECT", "cached", "SEEN") == [3]
        assert search(m, "FROM", "s1@remote.test") == [1]
    finally:
        m.logout()
