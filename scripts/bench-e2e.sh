#!/usr/bin/env bash
# End-to-end comparison on this machine, same run: ironpost against Postfix + Dovecot from
# Debian (the peer in /work/shared/peer), both delivering into Maildir with fsync. Prints a
# Markdown table of medians and ironpost/Postfix ratios (see BENCHMARKS.md).
#
#   scripts/bench-e2e.sh                 # full run (about 5 minutes on 2 cores)
#   REPEATS=1 SECONDS_PER_RUN=2 SIZES="1024" CONCURRENCY="1 8" scripts/bench-e2e.sh   # quick
#
# Environment: RUNTIMES ("mio smol": one ironpost per runtime, side by side), REPEATS (3),
# SECONDS_PER_RUN (1), SIZES ("1024 10240 102400"),
# CONCURRENCY ("1 8 64"), IDLE_CONNS ("1000 10000"), IDLE_CONNS_PEER (90: Postfix runs one smtpd per
# connection and Debian's default_process_limit is 100), SOURCES (1: client addresses; Postfix
# looks up the name of every client address, and without DNS 127.0.0.2 and up cost it a
# resolver timeout per connection),
# PEER_DIR (/work/shared/peer), PEER_STATE (/tmp/peer-mail), IRONPOST_BIN / LOAD_BIN (skip
# the build and use these binaries), OUT (file for the raw results, default a temp file).
#
# Needs root (the peer runs as root; the fd limit is raised for the idle connections).
# While it runs, the peer's smtpd_client_connection_count_limit (50 per client address) is
# lifted, as ironpost's max_connections_per_ip is in its config here; restored on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNTIMES="${RUNTIMES:-mio smol}"
REPEATS="${REPEATS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-1}"
SIZES="${SIZES:-1024 10240 102400}"
CONCURRENCY="${CONCURRENCY:-1 8 64}"
IDLE_CONNS="${IDLE_CONNS:-1000 10000}"
IDLE_CONNS_PEER="${IDLE_CONNS_PEER:-90}"
SOURCES="${SOURCES:-1}"
PEER_DIR="${PEER_DIR:-/work/shared/peer}"
PEER_STATE="${PEER_STATE:-/tmp/peer-mail}"
PFCONF="$PEER_STATE/postfix/conf"
PEER_MAILDIR="$PEER_STATE/mail/example.test/alice"
FROM="load@client.example.org"
TO="alice@example.test"
HELO="client.example.org"

log() { printf '[bench-e2e] %s\n' "$*" >&2; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# ---------------------------------------------------------------------------------------
# Binaries
if [ -z "${IRONPOST_BIN:-}" ] || [ -z "${LOAD_BIN:-}" ]; then
  log "building ironpost and ironpost-load (release)"
  (cd "$ROOT" && cargo build --release -q -p ironpost -p ironpost-benches)
  tdir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  IRONPOST_BIN="${IRONPOST_BIN:-$tdir/release/ironpost}"
  LOAD_BIN="${LOAD_BIN:-$tdir/release/ironpost-load}"
fi
SMTP_SOURCE="$(command -v smtp-source || echo /usr/sbin/smtp-source)"

# ---------------------------------------------------------------------------------------
# The peer: Postfix + Dovecot
if [ ! -f "$PFCONF/main.cf" ]; then
  log "setting up the Postfix + Dovecot peer (installs packages)"
  "$PEER_DIR/setup.sh"
fi
"$PEER_DIR/start.sh" >/dev/null
orig_limit="$(postconf -c "$PFCONF" -h smtpd_client_connection_count_limit)"

WORK="$(mktemp -d /tmp/ironpost-bench.XXXXXX)"
OUT="${OUT:-$WORK/results.txt}"
: >"$OUT"
IRONPOST_PIDS=""
cleanup() {
  for p in $IRONPOST_PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  postconf -c "$PFCONF" -e "smtpd_client_connection_count_limit=$orig_limit" || true
  postfix -c "$PFCONF" reload >/dev/null 2>&1 || true
  rm -rf "$WORK"/*/data/mail
}
trap cleanup EXIT
postconf -c "$PFCONF" -e "smtpd_client_connection_count_limit=0"
# A reload also ends the peer's idle smtpd processes, so the memory baseline is clean.
postfix -c "$PFCONF" reload >/dev/null 2>&1
sleep 2

# ---------------------------------------------------------------------------------------
# ironpost, one instance per runtime, each on a port of its choosing
declare -A PORT MAILDIR PID
for rt in $RUNTIMES; do
  dir="$WORK/$rt"
  mkdir -p "$dir/data"
  cat >"$dir/ironpost.toml" <<EOF
hostname = "mx.example.test"
data_dir = "$dir/data"
domains = ["example.test"]
runtime = "$rt"

[limits]
max_connections = 20000
max_connections_per_ip = 20000

[smtp]
listen = ["127.0.0.1:0"]

[submission]
enabled = false

[imap]
enabled = false

[imaps]
enabled = false
EOF
  "$IRONPOST_BIN" email add "$TO" bench-password --config "$dir/ironpost.toml" >/dev/null
  RUST_LOG=warn "$IRONPOST_BIN" serve --config "$dir/ironpost.toml" 2>"$dir/ironpost.log" &
  PID[ironpost-$rt]=$!
  IRONPOST_PIDS="$IRONPOST_PIDS $!"
  for _ in $(seq 1 100); do
    [ -s "$dir/data/listeners" ] && break
    sleep 0.1
  done
  PORT[ironpost-$rt]="$(awk '$1 == "smtp" { n = split($2, a, ":"); print a[n] }' "$dir/data/listeners")"
  [ -n "${PORT[ironpost-$rt]}" ] || { log "ironpost ($rt) did not start:"; cat "$dir/ironpost.log" >&2; exit 1; }
  MAILDIR[ironpost-$rt]="$dir/data/mail/example.test/alice"
  log "ironpost on $rt (pid ${PID[ironpost-$rt]}) on 127.0.0.1:${PORT[ironpost-$rt]}"
done
PORT[postfix]=2525
MAILDIR[postfix]="$PEER_MAILDIR"
PID[postfix]="$(tr -d " " <"$PEER_STATE/postfix/spool/pid/master.pid")"
log "Postfix master pid ${PID[postfix]} on 127.0.0.1:2525"
SERVERS="$(for rt in $RUNTIMES; do printf 'ironpost-%s ' "$rt"; done)postfix"

# Between runs: ironpost's Maildir loses its messages; the peer's loses the whole mailbox,
# Dovecot's index included, which Dovecot LMTP recreates. (Deleting only the files would leave
# Dovecot an index full of expunged messages to reconcile on every delivery.)
clear_maildir() {
  if [ "$1" = "$PEER_MAILDIR" ]; then
    rm -rf "$PEER_MAILDIR"
  else
    find "$1/new" -type f -delete 2>/dev/null || true
  fi
}
count_new() { find "$1/new" -type f 2>/dev/null | wc -l; }

# ---------------------------------------------------------------------------------------
# Memory per idle connection (first, while both servers are fresh)
idle() { # name port pid children conns
  local res
  res="$("$LOAD_BIN" --server "127.0.0.1:$2" --ehlo "$HELO" --sources "$SOURCES" --idle "$5" \
          --hold 2 --pid "$3" $4 | tail -1)"
  echo "idle $1 conns=$5 $res" >>"$OUT"
  log "idle $1 $5: $res"
}
for rt in $RUNTIMES; do
  for k in $IDLE_CONNS_PEER $IDLE_CONNS; do
    idle "ironpost-$rt" "${PORT[ironpost-$rt]}" "${PID[ironpost-$rt]}" "" "$k"
  done
done
idle postfix 2525 "${PID[postfix]}" --with-children "$IDLE_CONNS_PEER"
sleep 1

# ---------------------------------------------------------------------------------------
# Durable throughput: the load tool and smtp-source against both, medians of REPEATS
load_run() { # name port maildir size conc rep -> prints accepted count
  local res
  clear_maildir "$3"
  res="$("$LOAD_BIN" --server "127.0.0.1:$2" --ehlo "$HELO" --from "$FROM" --to "$TO" \
          --size "$4" --concurrency "$5" --sources "$SOURCES" --messages 0 \
          --duration "$SECONDS_PER_RUN" --wait-maildir "$3" --wait-timeout 120 | tail -1)" || true
  echo "load $1 size=$4 conc=$5 rep=$6 $res" >>"$OUT"
  log "load $1 size=$4 conc=$5 rep=$6: $res"
  sed -n 's/.*accepted=\([0-9]*\).*/\1/p' <<<"$res"
}
source_run() { # name port maildir size conc count rep
  local t0 t1 n=0 deadline
  clear_maildir "$3"
  t0="$(date +%s.%N)"
  timeout 180 "$SMTP_SOURCE" -s "$5" -m "$6" -l "$4" -M "$HELO" -f "$FROM" -t "$TO" \
    "127.0.0.1:$2" >/dev/null 2>&1 || true
  deadline=$(( $(date +%s) + 120 ))
  while :; do
    n="$(count_new "$3")"
    [ "$n" -ge "$6" ] || [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 0.02
  done
  t1="$(date +%s.%N)"
  local res
  res="$(python3 -c "import sys; n, t = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'status={\"ok\" if n >= int(sys.argv[4]) else \"timeout\"} in_maildir={n} durable_seconds={t:.3f} durable_per_s={n / t:.1f}')" "$n" "$t0" "$t1" "$6")"
  echo "smtp-source $1 size=$4 conc=$5 rep=$7 count=$6 $res" >>"$OUT"
  log "smtp-source $1 size=$4 conc=$5 rep=$7 count=$6: $res"
}

for size in $SIZES; do
  for conc in $CONCURRENCY; do
    for rep in $(seq 1 "$REPEATS"); do
      # Rotate which server goes first, so none always gets the cooler machine.
      order="$(tr ' ' '\n' <<<"$SERVERS" | awk -v r="$rep" '{ a[NR - 1] = $0 } END { for (i = 0; i < NR; i++) print a[(i + r - 1) % NR] }')"
      for name in $order; do
        port="${PORT[$name]}"; md="${MAILDIR[$name]}"
        n="$(load_run "$name" "$port" "$md" "$size" "$conc" "$rep")"
        # smtp-source sends as many messages as the load tool managed in the same slot.
        [ -n "$n" ] && [ "$n" -gt 0 ] || n=$((conc * 10))
        source_run "$name" "$port" "$md" "$size" "$conc" "$n" "$rep"
      done
    done
  done
done
clear_maildir "$PEER_MAILDIR"

# ---------------------------------------------------------------------------------------
# The table
python3 - "$OUT" "$REPEATS" <<'PY'
import statistics, sys
path, repeats = sys.argv[1], sys.argv[2]
rows = []
for line in open(path):
    kind, name, *rest = line.split()
    kv = dict(x.split("=", 1) for x in rest if "=" in x)
    rows.append((kind, name, kv))

def med(kind, name, key, **match):
    vals = [float(kv[key]) for k, n, kv in rows
            if k == kind and n == name and key in kv and kv.get("status", "ok") == "ok"
            and all(kv.get(a) == str(b) for a, b in match.items())]
    return statistics.median(vals) if vals else None

def fmt(v, d=0):
    return "–" if v is None else f"{v:,.{d}f}"

def ratio(a, b):
    return "–" if a is None or b in (None, 0) else f"{a / b:.2f}x"

names = []
for k, n, _ in rows:
    if n not in names and n != "postfix":
        names.append(n)
sizes = sorted({int(kv["size"]) for k, _, kv in rows if "size" in kv})
concs = sorted({int(kv["conc"]) for k, _, kv in rows if "conc" in kv})
for kind, title in [("load", "ironpost-load"), ("smtp-source", "Postfix's smtp-source")]:
    print(f"\nDurable messages/s into Maildir, driven by {title} "
          f"(median of {repeats} runs; ratio = ironpost / Postfix)\n")
    head = ["size", "sessions"] + names + ["Postfix"] + [f"{n} / Postfix" for n in names]
    if kind == "load":
        head += [f"{n} p50 / p99 ms" for n in names] + ["Postfix p50 / p99 ms (to queue)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in sizes:
        for c in concs:
            vals = {n: med(kind, n, "durable_per_s", size=s, conc=c) for n in names + ["postfix"]}
            cells = [f"{s // 1024} KiB", str(c)] + [fmt(vals[n]) for n in names + ["postfix"]]
            cells += [ratio(vals[n], vals["postfix"]) for n in names]
            if kind == "load":
                for n in names + ["postfix"]:
                    p50 = fmt(med("load", n, "p50_ms", size=s, conc=c), 1)
                    p99 = fmt(med("load", n, "p99_ms", size=s, conc=c), 1)
                    cells.append(f"{p50} / {p99}")
            print("| " + " | ".join(cells) + " |")
print("\nMemory per idle connection (after EHLO; Pss, whole process tree for Postfix)\n")
print("| server | connections | per connection | server total before → after |")
print("|---|---|---|---|")
for k, n, kv in rows:
    if k == "idle" and "pss_per_conn_kib" in kv:
        print(f"| {n} | {kv['open']} of {kv['conns']} | {float(kv['pss_per_conn_kib']):.1f} KiB "
              f"(VmRSS {float(kv['rss_per_conn_kib']):.1f} KiB) | "
              f"{int(kv['pss_before_kib']) / 1024:.1f} → {int(kv['pss_after_kib']) / 1024:.1f} MiB |")
PY
log "raw results: $OUT"
