#!/usr/bin/env bash
# Installs what the tests need and runs every test: the Rust workspace (unit, conformance and
# end-to-end tests through real sockets) and the phoenix.js compatibility suite.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# Tansu: the Kafka-protocol broker the distributed tests run against (about 12 minutes to
# build once; cached in ~/.cargo/bin afterwards).
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v tansu >/dev/null 2>&1; then
  log "installing Tansu (Kafka-protocol broker for the distributed tests)"
  cargo install tansu --locked --features dynostore
fi

# Chromium: the browser the phoenix.js long-poll tests drive (tests/js/browser.test.js, through
# playwright-core with Debian's build). FAWKES_CHROMIUM points at another binary.
if [ -z "${FAWKES_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  log "installing Chromium (Debian package) for the browser tests"
  sudo_if_needed=""
  if [ "$(id -u)" -ne 0 ]; then sudo_if_needed="sudo"; fi
  $sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq chromium >/dev/null
fi

log "installing the phoenix.js test client (tests/js, from package-lock.json)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

log "building"
cargo build --workspace --all-targets

results="$(mktemp)"
trap 'rm -f "$results"' EXIT

if [ -z "${FAWKES_SCYLLA_NODES:-}" ]; then
  log "NOTICE: FAWKES_SCYLLA_NODES is not set: the Scylla leg of the store conformance suite is SKIPPED (it runs against a real cluster when set; see infra/SCYLLA.md)"
fi

log "Rust tests"
cargo test --workspace 2>&1 | tee -a "$results"

log "phoenix.js compatibility tests"
(cd tests/js && FAWKES_BIN="$PWD/../../target/debug/fawkes" npm test) 2>&1 | tee -a "$results"

# One closing line over both runners.
passed=$(( $(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$results" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}') \
         + $(grep -oE '^ℹ pass [0-9]+' "$results" | awk '{s+=$3} END {print s+0}') ))
failed=$(( $(grep -oE '[0-9]+ failed;' "$results" | awk '{s+=$1} END {print s+0}') \
         + $(grep -oE '^ℹ fail [0-9]+' "$results" | awk '{s+=$3} END {print s+0}') ))
echo
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
