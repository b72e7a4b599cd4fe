#!/usr/bin/env bash
# ferry's main job on the built-in default: this host, then a live migration
# on the simulated testbed. Run by `make demo` (as root, after make deps).
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=${FERRY:-bin/ferry}
# A testbed of its own, so that the demo never touches one a user made.
export FERRY_TESTBED_DIR=${FERRY_TESTBED_DIR:-/var/lib/ferry/demo-testbed}
export FERRY_TESTBED_PREFIX=${FERRY_TESTBED_PREFIX:-demo}
h1=${FERRY_TESTBED_PREFIX}1 h2=${FERRY_TESTBED_PREFIX}2

say() { printf '\n== %s\n' "$*" >&2; }
trap 'say "ferry testbed down"; "$FERRY" testbed down >/dev/null' EXIT

say "ferry version"
"$FERRY" version
say "ferry probe (this host)"
"$FERRY" probe
say "ferry testbed up --hosts 2"
"$FERRY" testbed down >/dev/null 2>&1 || true
"$FERRY" testbed up --hosts 2
say "ferry testbed run $h1 counter mem --memory 64M"
"$FERRY" testbed run "$h1" counter mem --memory 64M
"$FERRY" testbed verify counter
say "ferry check testbed:$h1 testbed:$h2"
"$FERRY" check "testbed:$h1" "testbed:$h2"
say "ferry migrate testbed:counter --to testbed:$h2"
"$FERRY" migrate testbed:counter --to "testbed:$h2"
say "ferry testbed verify counter (on $h2, counter continued)"
"$FERRY" testbed verify counter
say "ferry migrate testbed:counter --to testbed:$h1 --mode page-server"
"$FERRY" migrate testbed:counter --to "testbed:$h1" --mode page-server
"$FERRY" testbed verify counter
