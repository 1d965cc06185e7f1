#!/usr/bin/env bash
# Relay throughput on this machine, same run: ironpost against Postfix (the peer in
# /work/shared/peer). Messages come in on submission (STARTTLS + AUTH PLAIN as
# alice@example.test) for a foreign domain, sink.test, and both servers relay them to the same
# Postfix smtp-sink on loopback. Measured: messages/s from the first MAIL until the sink has
# received every message. Prints a Markdown table of medians and ironpost/Postfix ratios (see
# BENCHMARKS.md).
#
#   scripts/bench-relay.sh                          # about 1.5 minutes
#   REPEATS=1 MESSAGES=300 CONCURRENCY="8" scripts/bench-relay.sh   # quick
#
# Environment: REPEATS (3), MESSAGES (600 per run), SIZE (10240 octets), CONCURRENCY ("8 64"
# sessions), SOURCES (4 client addresses: Postfix allows 50 connections per client address),
# SINK_PORT (2626), PEER_DIR (/work/shared/peer), PEER_STATE (/tmp/peer-mail), RUNTIME (mio),
# IRONPOST_BIN / LOAD_BIN (skip the build and use these binaries), OUT (raw results file).
#
# While it runs, the peer gets `transport_maps = inline:{sink.test=smtp:[127.0.0.1]:PORT}`
# (restored, with a reload, on exit). Needs root (the peer runs as root; smtp-sink drops to the
# postfix user). Nothing leaves 127.0.0.0/8: ironpost's DNS points at a closed loopback port.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REPEATS="${REPEATS:-3}"
MESSAGES="${MESSAGES:-600}"
SIZE="${SIZE:-10240}"
CONCURRENCY="${CONCURRENCY:-8 64}"
SOURCES="${SOURCES:-4}"
SINK_PORT="${SINK_PORT:-2626}"
RUNTIME="${RUNTIME:-mio}"
PEER_DIR="${PEER_DIR:-/work/shared/peer}"
PEER_STATE="${PEER_STATE:-/tmp/peer-mail}"
PFCONF="$PEER_STATE/postfix/conf"
FROM="alice@example.test"
TO="user@sink.test"
HELO="client.example.org"

log() { printf '[bench-relay] %s\n' "$*" >&2; }

if [ -z "${IRONPOST_BIN:-}" ] || [ -z "${LOAD_BIN:-}" ]; then
  log "building ironpost and ironpost-load (release)"
  (cd "$ROOT" && cargo build --release -q -p ironpost -p ironpost-benches --bin ironpost --bin ironpost-load)
  tdir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  IRONPOST_BIN="${IRONPOST_BIN:-$tdir/release/ironpost}"
  LOAD_BIN="${LOAD_BIN:-$tdir/release/ironpost-load}"
fi
SMTP_SINK="$(command -v smtp-sink || echo /usr/sbin/smtp-sink)"

if [ ! -f "$PFCONF/main.cf" ]; then
  log "setting up the Postfix + Dovecot peer (installs packages)"
  "$PEER_DIR/setup.sh"
fi
"$PEER_DIR/start.sh" >/dev/null

# Mail for sink.test still in the peer's queue (from an interrupted run): only that is dropped.
drop_sink_mail() {
  postqueue -c "$PFCONF" -j 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    j = json.loads(line)
    if any(r["address"].endswith("@sink.test") for r in j["recipients"]):
        print(j["queue_id"])
' | postsuper -c "$PFCONF" -d - >/dev/null 2>&1 || true
}
drop_sink_mail

WORK="$(mktemp -d /tmp/ironpost-bench-relay.XXXXXX)"
chmod 755 "$WORK"  # smtp-sink runs as the postfix user
OUT="${OUT:-$WORK/results.txt}"
: >"$OUT"
SINK_DIR="$WORK/sink"
mkdir -p "$SINK_DIR"
chown postfix "$SINK_DIR"
orig_transport="$(postconf -c "$PFCONF" -h transport_maps)"
IRONPOST_PID=""
SINK_PID=""
cleanup() {
  [ -n "$IRONPOST_PID" ] && kill "$IRONPOST_PID" 2>/dev/null && wait "$IRONPOST_PID" 2>/dev/null || true
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null || true
  if [ -n "$orig_transport" ]; then
    postconf -c "$PFCONF" -e "transport_maps=$orig_transport" || true
  else
    postconf -c "$PFCONF" -X transport_maps || true
  fi
  postfix -c "$PFCONF" reload >/dev/null 2>&1 || true
  drop_sink_mail
  rm -rf "$WORK/data" "$SINK_DIR"
}
trap cleanup EXIT

# The sink: one file per message received, 256 connections of backlog
"$SMTP_SINK" -u postfix -d "$SINK_DIR/%H%M%S." "127.0.0.1:$SINK_PORT" 256 2>"$WORK/sink.log" &
SINK_PID=$!
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$SINK_PORT") 2>/dev/null && break
  sleep 0.1
done

# Postfix: mail for sink.test goes to the sink
# (inline: wants no spaces around '='; a map Postfix cannot parse fails every lookup, local
# mail included, so the map is checked before it is put in place.)
map="inline:{sink.test=smtp:[127.0.0.1]:$SINK_PORT}"
[ "$(postmap -c "$PFCONF" -q sink.test "$map")" = "smtp:[127.0.0.1]:$SINK_PORT" ] || {
  log "transport map $map does not parse"; exit 1; }
postconf -c "$PFCONF" -e "transport_maps=$map"
postfix -c "$PFCONF" reload >/dev/null 2>&1
sleep 1

# ironpost: submission only, sink.test routed to the sink, DNS at a closed loopback port
mkdir -p "$WORK/data"
cat >"$WORK/ironpost.toml" <<EOF
hostname = "mail.example.test"
data_dir = "$WORK/data"
domains = ["example.test"]
runtime = "$RUNTIME"

[smtp]
enabled = false

[submission]
listen = ["127.0.0.1:0"]

[imap]
enabled = false

[imaps]
enabled = false

[relay]
routes = { "sink.test" = "127.0.0.1:$SINK_PORT" }

[dns]
servers = ["127.0.0.1:9"]
EOF
"$IRONPOST_BIN" email add "$FROM" bench-password --config "$WORK/ironpost.toml" >/dev/null
RUST_LOG=warn "$IRONPOST_BIN" serve --config "$WORK/ironpost.toml" 2>"$WORK/ironpost.log" &
IRONPOST_PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/data/listeners" ] && break
  sleep 0.1
done
PORT="$(awk '$1 == "submission" { n = split($2, a, ":"); print a[n] }' "$WORK/data/listeners")"
[ -n "$PORT" ] || { log "ironpost did not start:"; cat "$WORK/ironpost.log" >&2; exit 1; }
log "ironpost ($RUNTIME, pid $IRONPOST_PID) submission on 127.0.0.1:$PORT; Postfix on 127.0.0.1:2587; smtp-sink on 127.0.0.1:$SINK_PORT"

declare -A SPORT SAUTH
SPORT[ironpost]="$PORT"; SAUTH[ironpost]="$FROM:bench-password"
SPORT[postfix]=2587;     SAUTH[postfix]="$FROM:alice-secret-1"

sink_count() { find "$SINK_DIR" -type f | wc -l; }

one_run() { # name conc rep
  local name="$1" conc="$2" rep="$3" res t0 t1 n deadline
  find "$SINK_DIR" -type f -delete
  t0="$(date +%s.%N)"
  res="$(timeout 300 "$LOAD_BIN" --server "127.0.0.1:${SPORT[$name]}" --ehlo "$HELO" \
          --starttls --insecure --auth "${SAUTH[$name]}" --from "$FROM" --to "$TO" \
          --size "$SIZE" --concurrency "$conc" --sources "$SOURCES" --messages "$MESSAGES" 2>>"$WORK/load.log" | tail -1)" || true
  local accepted
  accepted="$(sed -n 's/.*accepted=\([0-9]*\).*/\1/p' <<<"$res")"
  accepted="${accepted:-0}"
  deadline=$(( $(date +%s) + 60 ))
  while :; do
    n="$(sink_count)"
    [ "$n" -ge "$accepted" ] || [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 0.02
  done
  t1="$(date +%s.%N)"
  local line
  line="$(python3 -c "import sys; n, a, t = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[4]) - float(sys.argv[3]); print(f'status={\"ok\" if a > 0 and n >= a else \"incomplete\"} accepted={a} at_sink={n} seconds={t:.3f} relayed_per_s={n / t:.1f}')" "$n" "$accepted" "$t0" "$t1")"
  echo "relay $name conc=$conc rep=$rep $line load: $res" >>"$OUT"
  log "relay $name conc=$conc rep=$rep: $line"
  sleep 1
}

# Warm-up (not counted): fresh smtpd processes, TLS session caches, ironpost's first queue files.
for name in ironpost postfix; do one_run "$name" 8 0; done

for conc in $CONCURRENCY; do
  for rep in $(seq 1 "$REPEATS"); do
    if [ $((rep % 2)) -eq 1 ]; then order="ironpost postfix"; else order="postfix ironpost"; fi
    for name in $order; do one_run "$name" "$conc" "$rep"; done
  done
done

python3 - "$OUT" "$REPEATS" "$MESSAGES" "$SIZE" <<'PY'
import statistics, sys
path, repeats, messages, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = []
for line in open(path):
    kind, name, *rest = line.split(" load: ")[0].split()
    rows.append((name, dict(x.split("=", 1) for x in rest if "=" in x)))
concs = sorted({int(kv["conc"]) for _, kv in rows})
def vals(name, conc):
    return sorted(float(kv["relayed_per_s"]) for n, kv in rows
                  if n == name and kv["conc"] == str(conc) and kv["rep"] != "0"
                  and kv["status"] == "ok")
print(f"\nMessages/s relayed, submission (STARTTLS + AUTH) to smtp-sink, {size // 1024} KiB, "
      f"{messages} messages per run (median of {repeats} runs; ratio = ironpost / Postfix)\n")
print("| sessions | ironpost (min–max) | Postfix (min–max) | ironpost / Postfix |")
print("|---|---|---|---|")
for c in concs:
    i, p = vals("ironpost", c), vals("postfix", c)
    mi = statistics.median(i) if i else None
    mp = statistics.median(p) if p else None
    f = lambda m, v: "–" if m is None else f"{m:,.0f} ({v[0]:,.0f}–{v[-1]:,.0f})"
    r = "–" if mi is None or not mp else f"{mi / mp:.2f}x"
    print(f"| {c} | {f(mi, i)} | {f(mp, p)} | {r} |")
PY
log "raw results: $OUT"
