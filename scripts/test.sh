#!/usr/bin/env bash
# Builds ironpost, runs the Rust tests, then the end-to-end suite (tests/e2e) against the
# built binary. Installs what the end-to-end suite needs when it is missing (swaks, openssl,
# pytest and friends). Run from anywhere; exits non-zero on any failure.
#
# Environment:
#   IRONPOST_BIN     binary the e2e suite runs (default: <repo>/target/debug/ironpost)
#   E2E_WORKERS      pytest-xdist workers (default: auto)
#   SKIP_CARGO_TEST  set to 1 to skip `cargo test --workspace`
#   PYTEST_ARGS      extra arguments for pytest (e.g. "-k smuggling -x")
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

log() { printf '==> %s\n' "$*" >&2; }

# -- system packages ------------------------------------------------------------------------
missing=()
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v fetchmail >/dev/null 2>&1 || missing+=(fetchmail)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Postfix's smtp-sink, a real foreign MTA for tests/e2e/test_relay.py. "No configuration"
# installs the programs without a main.cf, so no postfix daemon is set up or started.
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    log "installing postfix (for smtp-sink only: no configuration, no daemon)"
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi

# -- Python packages ------------------------------------------------------------------------
python="${PYTHON:-python3}"
pymissing=()
"$python" -c 'import pytest' 2>/dev/null || pymissing+=(pytest)
"$python" -c 'import xdist' 2>/dev/null || pymissing+=(pytest-xdist)
"$python" -c 'import pytest_timeout' 2>/dev/null || pymissing+=(pytest-timeout)
"$python" -c 'import bcrypt' 2>/dev/null || pymissing+=(bcrypt)
"$python" -c 'import argon2' 2>/dev/null || pymissing+=(argon2-cffi)
if ((${#pymissing[@]})); then
    log "pip installing ${pymissing[*]}"
    "$python" -m pip install -q --disable-pip-version-check "${pymissing[@]}" \
        || "$python" -m pip install -q --disable-pip-version-check --break-system-packages "${pymissing[@]}"
fi

# -- build and Rust tests -------------------------------------------------------------------
log "cargo build -p ironpost"
cargo build -p ironpost
if [ "${SKIP_CARGO_TEST:-0}" != 1 ]; then
    log "cargo test --workspace"
    cargo test --workspace
fi

# -- end-to-end -----------------------------------------------------------------------------
export IRONPOST_BIN="${IRONPOST_BIN:-$repo/target/debug/ironpost}"
workers="${E2E_WORKERS:-auto}"
# shellcheck disable=SC2206
extra=(${PYTEST_ARGS:-})
log "pytest tests/e2e (-n $workers) against $IRONPOST_BIN"
set +e
"$python" -m pytest -p no:cacheprovider -n "$workers" tests/e2e "${extra[@]}"
rc=$?
set -e
if [ "$rc" = 3 ] || [ "$rc" = 4 ]; then
    # xdist could not start "auto" workers: retry with two.
    log "pytest -n $workers failed to start (exit $rc); retrying with -n 2"
    set +e
    "$python" -m pytest -p no:cacheprovider -n 2 tests/e2e "${extra[@]}"
    rc=$?
    set -e
fi
if [ "$rc" = 5 ]; then
    log "pytest collected no tests"
fi
exit "$rc"
