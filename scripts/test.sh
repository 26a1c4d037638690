#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a fresh
# Debian machine, starts a private ClickHouse server on loopback (time zone
# deliberately not UTC), and runs every test against it.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

missing=()
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# Tools of the ops checks, installed without their recommendations (the
# prometheus package would pull in node-exporter, docker-compose a Docker engine).
tools=()
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || tools+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || tools+=(docker-compose)
command -v systemd-analyze >/dev/null 2>&1 || tools+=(systemd)
if [ $((${#missing[@]} + ${#tools[@]})) -gt 0 ]; then
  log "installing ${missing[*]} ${tools[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then apt-get install -y -qq "${missing[@]}" >/dev/null; fi
  if [ ${#tools[@]} -gt 0 ]; then apt-get install -y -qq --no-install-recommends "${tools[@]}" >/dev/null; fi
fi
if ! python3 -c 'import chdb' >/dev/null 2>&1; then
  log "installing chdb (current ClickHouse engine, for the migration test)"
  python3 -m pip install --quiet --disable-pip-version-check 'chdb==4.4.0'
fi
if ! python3 -c 'import moto, flask; assert moto.__version__ == "5.2.1"' >/dev/null 2>&1; then
  log "installing moto[server] (AWS API emulator, for the Bedrock tests)"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1'
fi

work=$(mktemp -d /tmp/tokentra-test.XXXXXX)
port=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 60000)
    ok = True
    for q in (p, p + 1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
PY
)
cleanup() { scripts/clickhouse-server.sh stop "$work/clickhouse" || true; rm -rf "$work"; }
trap cleanup EXIT

log "starting ClickHouse (18.16 from Debian) on 127.0.0.1:$port, server time zone Asia/Kolkata"
scripts/clickhouse-server.sh start "$work/clickhouse" "$port" Asia/Kolkata
export TOKENTRA_TEST_CLICKHOUSE_URL="http://127.0.0.1:$port"

log "building"
cargo build --all-targets --locked
bin="${CARGO_TARGET_DIR:-target}/debug/tokentra-sync"

log "Prometheus config and alert rules (promtool)"
promtool check config config/prometheus/prometheus.yml
promtool check config config/prometheus/prometheus.compose.yml
(cd config/prometheus && promtool test rules alerts_test.yml)

log "systemd unit (systemd-analyze verify; a copy with ExecStart at the built binary)"
sed "s#/usr/local/bin/tokentra-sync#$(cd "$(dirname "$bin")" && pwd)/tokentra-sync#" \
  config/systemd/tokentra-sync.service > "$work/tokentra-sync.service"
systemd-analyze verify "$work/tokentra-sync.service"

log "docker-compose.yml (docker-compose config, with and without the demo profile)"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile demo config -q

log "migrations on chdb's current ClickHouse engine"
"$bin" migrate --print-sql --server-version 26.1 --database tokentra > "$work/plan.sql"
python3 tests/chdb/test_migrations.py "$work/plan.sql"

log "the scale benchmark's serving baseline (a recording simulator, replayed)"
python3 tests/bench/test_replay.py "$bin"

log "unit, property and integration tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
