#!/usr/bin/env bash
# Builds the fuzz crate and runs every fuzz target for a short fixed time, failing on the
# first crash (panic, sanitizer report, timeout or out-of-memory).
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]     (default 20; env FUZZ_TARGETS to pick)
#
# Needs the nightly toolchain; installs cargo-fuzz if it is missing. Each target starts from
# its checked-in seeds (fuzz/corpus/<target>/seed-*) in a scratch corpus, so a smoke run
# leaves the tree as it was. Crash inputs land in fuzz/artifacts/<target>/.
set -euo pipefail

SECS="${1:-20}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$ROOT/fuzz"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz-smoke: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

cd "$FUZZ"
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
cargo +nightly fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=""
for t in $targets; do
  mkdir -p "$scratch/$t"
  cp corpus/"$t"/seed-* "$scratch/$t/" 2>/dev/null || true
  log="$scratch/$t.log"
  echo "fuzz-smoke: $t for ${SECS}s"
  if cargo +nightly fuzz run "$t" "$scratch/$t" -- \
      -dict=smtp.dict -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^#[0-9]+.*DONE' "$log" | tail -1 | sed "s/^/  /" || true
  else
    echo "fuzz-smoke: $t FAILED; the end of its log:" >&2
    grep -v '^#' "$log" | tail -40 >&2
    failed="$failed $t"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz-smoke: crashes in:$failed (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz-smoke: all targets ran ${SECS}s without a crash"
