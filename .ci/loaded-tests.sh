#!/usr/bin/env bash
# The operator and CSI node suites on a loaded machine: two busy processes per CPU compete with
# the tests for the whole run (as two builds beside them would), so a test that leans on timing
# instead of waiting for the condition it needs shows up here. Every test runs (no fail-fast).
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--no-fail-fast -p cstor-operators -p cstor-csi-node "$@")
# Built before the load starts: the load is for the tests, not the compiler.
cargo test --no-run "${args[@]}"
hogs=()
stop_hogs() { for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_hogs EXIT
for _ in $(seq 1 $((2 * $(nproc)))); do
  sh -c 'while :; do :; done' &
  hogs+=("$!")
done
echo "loaded-tests: ${#hogs[@]} busy processes on $(nproc) CPUs"
cargo test "${args[@]}"
