#!/usr/bin/env bash
# The full crash trials (not part of the test command): each kind of crash
# 20 times with random timing (kill -9 of ClickHouse while it stores
# INSERTs, kill -9 of the daemon mid-backfill, the connection cut inside an
# INSERT, ClickHouse down 30s), each followed by a sync and an exact
# comparison of usage_daily and usage_records with the simulator's truth.
#   scripts/crash-trials.sh [TRIALS] [OUTAGE_SECS]
# Needs what scripts/test.sh installs (clickhouse-server, cargo-nextest).
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-20}
outage=${2:-30}
work=$(mktemp -d /tmp/tokentra-crash.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cleanup() { scripts/clickhouse-server.sh stop "$work/clickhouse" || true; rm -rf "$work"; }
trap cleanup EXIT
scripts/clickhouse-server.sh start "$work/clickhouse" "$port" Asia/Kolkata
export TOKENTRA_TEST_CLICKHOUSE_URL="http://127.0.0.1:$port"
export TOKENTRA_CRASH_TRIALS=$trials TOKENTRA_CRASH_OUTAGE_SECS=$outage
start=$(date +%s)
cargo nextest run --locked --no-fail-fast --no-capture -E 'test(crash::)'
echo "crash trials: $trials of each kind, outage ${outage}s, in $(( $(date +%s) - start ))s"
