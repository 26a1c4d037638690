#!/usr/bin/env bash
# The scale benchmark (not part of the tests; BENCHMARKS.md has its results):
# the simulator with N accounts (one org each, providers round-robin), the
# daemon in `run` mode (release build) and a private ClickHouse, all on this
# machine; prints, per size, the first sync and one incremental cycle of every
# account: accounts synced, wall time, peak and idle RSS, CPU seconds of the
# daemon, the simulator and ClickHouse, ClickHouse queries and CPU per
# account, and provider requests per account.
#
#   scripts/scale-bench.sh 1000 10000              sizes to run
#   scripts/scale-bench.sh 1000 --broken-percent 10
#       also runs 1000 accounts with 10% broken (bad key, 500s, hangs,
#       malformed pages) and compares the healthy accounts' sync times
#
# More options: scripts/scale_bench.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked
exec python3 -u scripts/scale_bench.py --binary "${CARGO_TARGET_DIR:-target}/release/tokentra-sync" "$@"
