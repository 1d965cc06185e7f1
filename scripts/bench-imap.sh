#!/usr/bin/env bash
# IMAP on this machine, same run: ironpost against Dovecot (the peer in /work/shared/peer),
# both serving the same 10,000-message INBOX over implicit TLS on loopback. Prints a Markdown
# table of medians and ironpost/Dovecot time ratios (see BENCHMARKS.md).
#
#   scripts/bench-imap.sh                 # about 1-2 minutes
#   ROUNDS=3 COUNT=2000 scripts/bench-imap.sh   # quick
#
# Environment: ROUNDS (9), COUNT (10000 messages), SIZE (2048 octets each), BODIES (100:
# FETCH 1:BODIES BODY.PEEK[]), PEER_DIR (/work/shared/peer), PEER_STATE (/tmp/peer-mail),
# IRONPOST_BIN / BENCH_BIN (skip the build and use these binaries), RUNTIME (mio), VERBOSE
# (1: print every round's times), IDLE_CONNS (1000: connections held in IDLE on ironpost for
# its memory per connection; 0 skips), IDLE_CONNS_PEER (90 on Dovecot, which runs an imap and
# an imap-login process per connection, 100 of each at most by default, and takes 10
# connections per user and address, so they come from 10 source addresses).
#
# The mailbox is bob@example.test's INBOX on both servers. The peer's Maildir for bob is moved
# aside for the run and put back on exit. Needs root (the peer's Maildirs belong to uid 5000).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${ROUNDS:-9}"
COUNT="${COUNT:-10000}"
SIZE="${SIZE:-2048}"
BODIES="${BODIES:-100}"
RUNTIME="${RUNTIME:-mio}"
PEER_DIR="${PEER_DIR:-/work/shared/peer}"
PEER_STATE="${PEER_STATE:-/tmp/peer-mail}"
PEER_MAILDIR="$PEER_STATE/mail/example.test/bob"
USER_ADDR="bob@example.test"
PEER_PASS="bob-secret-2"

log() { printf '[bench-imap] %s\n' "$*" >&2; }

if [ -z "${IRONPOST_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  log "building ironpost and ironpost-imap-bench (release)"
  (cd "$ROOT" && cargo build --release -q -p ironpost -p ironpost-benches --bin ironpost --bin ironpost-imap-bench)
  tdir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  IRONPOST_BIN="${IRONPOST_BIN:-$tdir/release/ironpost}"
  BENCH_BIN="${BENCH_BIN:-$tdir/release/ironpost-imap-bench}"
fi

if [ ! -f "$PEER_STATE/dovecot/conf/dovecot.conf" ]; then
  log "setting up the Postfix + Dovecot peer (installs packages)"
  "$PEER_DIR/setup.sh"
fi
"$PEER_DIR/start.sh" >/dev/null

WORK="$(mktemp -d /tmp/ironpost-bench-imap.XXXXXX)"
SAVED="$PEER_MAILDIR.bench-saved.$$"
IRONPOST_PID=""
cleanup() {
  [ -n "$IRONPOST_PID" ] && kill "$IRONPOST_PID" 2>/dev/null && wait "$IRONPOST_PID" 2>/dev/null || true
  if [ -d "$SAVED" ]; then
    rm -rf "$PEER_MAILDIR"
    mv "$SAVED" "$PEER_MAILDIR"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# ironpost: only the IMAPS listener, on a port of its choosing
mkdir -p "$WORK/data"
cat >"$WORK/ironpost.toml" <<EOF
hostname = "mail.example.test"
data_dir = "$WORK/data"
domains = ["example.test"]
runtime = "$RUNTIME"

[smtp]
enabled = false

[submission]
enabled = false

[imap]
enabled = false

[imaps]
listen = ["127.0.0.1:0"]

[dns]
servers = ["127.0.0.1:9"]

[limits]
max_connections = 20000
max_connections_per_ip = 20000
EOF
"$IRONPOST_BIN" email add "$USER_ADDR" bench-password --config "$WORK/ironpost.toml" >/dev/null

# The same files, same names, in both Maildirs' new/
log "writing $COUNT messages of $SIZE octets into both Maildirs"
"$BENCH_BIN" populate --dir "$WORK/data/mail/example.test/bob" --count "$COUNT" --size "$SIZE" >/dev/null
if [ -e "$PEER_MAILDIR" ]; then mv "$PEER_MAILDIR" "$SAVED"; fi
"$BENCH_BIN" populate --dir "$PEER_MAILDIR" --count "$COUNT" --size "$SIZE" >/dev/null
chown -R 5000:5000 "$PEER_MAILDIR"
sync

RUST_LOG=warn "$IRONPOST_BIN" serve --config "$WORK/ironpost.toml" 2>"$WORK/ironpost.log" &
IRONPOST_PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/data/listeners" ] && break
  sleep 0.1
done
PORT="$(awk '$1 == "imaps" { n = split($2, a, ":"); print a[n] }' "$WORK/data/listeners")"
[ -n "$PORT" ] || { log "ironpost did not start:"; cat "$WORK/ironpost.log" >&2; exit 1; }
log "ironpost ($RUNTIME, pid $IRONPOST_PID) IMAPS on 127.0.0.1:$PORT; Dovecot IMAPS on 127.0.0.1:2993"

timeout 600 "$BENCH_BIN" run \
  --target "ironpost=127.0.0.1:$PORT,$USER_ADDR,bench-password" \
  --target "Dovecot=127.0.0.1:2993,$USER_ADDR,$PEER_PASS" \
  --rounds "$ROUNDS" --expect "$COUNT" --bodies "$BODIES" 2>"$WORK/rounds.log" || {
  log "the benchmark failed:"; tail -20 "$WORK/rounds.log" >&2; exit 1; }
[ "${VERBOSE:-0}" = 1 ] && cat "$WORK/rounds.log" >&2
log "ironpost RSS after the run: $(awk '/VmRSS/ { print $2, $3 }' "/proc/$IRONPOST_PID/status")"

IDLE_CONNS="${IDLE_CONNS:-1000}"
IDLE_CONNS_PEER="${IDLE_CONNS_PEER:-90}"
if [ "$IDLE_CONNS" -gt 0 ]; then
  log "memory per connection in IDLE: ironpost $IDLE_CONNS, Dovecot $IDLE_CONNS_PEER"
  timeout 600 "$BENCH_BIN" idle --target "ironpost=127.0.0.1:$PORT,$USER_ADDR,bench-password" \
    --conns "$IDLE_CONNS" --pid "$IRONPOST_PID"
  DOVECOT_PID="$(cat "$PEER_STATE/dovecot/run/master.pid")"
  timeout 600 "$BENCH_BIN" idle --target "Dovecot=127.0.0.1:2993,$USER_ADDR,$PEER_PASS" \
    --conns "$IDLE_CONNS_PEER" --pid "$DOVECOT_PID" --with-children --sources 10
fi
