#!/usr/bin/env bash
# The README run command: on a fresh Debian machine, installs and starts a
# local ClickHouse (127.0.0.1:8123), starts the bundled provider simulator
# (127.0.0.1:8787), and runs the daemon against both with config/demo.toml.
# No real credentials are involved. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== building tokentra-sync (release)"
cargo build --release --locked
bin=./target/release/tokentra-sync

mkdir -p .demo
started_clickhouse=0
if curl -fsS http://127.0.0.1:8123/ping >/dev/null 2>&1; then
  echo "== using the ClickHouse already answering on 127.0.0.1:8123"
else
  scripts/clickhouse-server.sh start .demo/clickhouse 8123 UTC
  started_clickhouse=1
fi

"$bin" simulate --listen 127.0.0.1:8787 --orgs 2 --seed 42 &
sim_pid=$!
cleanup() {
  kill "$sim_pid" 2>/dev/null || true
  if [ "$started_clickhouse" = 1 ]; then scripts/clickhouse-server.sh stop .demo/clickhouse; fi
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:8787/_sim/stats >/dev/null 2>&1 && break
  sleep 0.1
done

cat <<MSG
== tokentra-sync is starting against the simulator.
   Metrics:   curl 127.0.0.1:9464/metrics
   Data:      curl 127.0.0.1:8123 --data-binary "SELECT day, provider, model, sum(cost), sum(input_tokens) FROM tokentra.usage_daily GROUP BY day, provider, model ORDER BY day, provider, model"
   Stop:      Ctrl-C
MSG
"$bin" run -c config/demo.toml
