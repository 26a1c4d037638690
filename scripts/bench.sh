#!/usr/bin/env bash
# The large benchmark (not part of the tests): a one-shot `sync` of many
# simulated organizations over many days, in a release build, against a
# private ClickHouse. Prints rows/s, wall time and peak RSS of the sync, then
# the same for an immediate re-sync (which must write nothing).
#
#   scripts/bench.sh [ORGS] [DAYS]     defaults: 20 orgs per provider, 30 days
set -euo pipefail
cd "$(dirname "$0")/.."
orgs=${1:-20}
days=${2:-30}

missing=()
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
[ -x /usr/bin/time ] || missing+=(time)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked
bin=./target/release/tokentra-sync

work=$(mktemp -d /tmp/tokentra-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sim_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
scripts/clickhouse-server.sh start "$work/ch" "$port" UTC >/dev/null
"$bin" simulate --listen "127.0.0.1:$sim_port" --orgs "$orgs" --history-days $((days + 5)) 2>/dev/null &
sim=$!
trap 'kill $sim 2>/dev/null || true; scripts/clickhouse-server.sh stop "$work/ch"; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fsS "127.0.0.1:$sim_port/_sim/stats" >/dev/null 2>&1 && break; sleep 0.1; done

{
  printf 'state_dir = "%s/state"\n[clickhouse]\nurl = "http://127.0.0.1:%s"\ndatabase = "bench"\n' "$work" "$port"
  for i in $(seq 1 "$orgs"); do
    printf '[[accounts]]\nid = "openai-org-%s"\nprovider = "openai"\nbase_url = "http://127.0.0.1:%s/openai/org-%s/v1"\n[accounts.credentials]\napi_key = "sk-admin-FAKE-sim-org-%s"\n' "$i" "$sim_port" "$i" "$i"
    printf '[[accounts]]\nid = "anthropic-org-%s"\nprovider = "anthropic"\nbase_url = "http://127.0.0.1:%s/anthropic/org-%s"\n[accounts.credentials]\napi_key = "sk-ant-admin01-FAKE-sim-org-%s"\n' "$i" "$sim_port" "$i" "$i"
  done
} > "$work/bench.toml"

today=$(date -u +%F)
since=$(date -u -d "$today - $days days" +%F)
"$bin" migrate -c "$work/bench.toml" >/dev/null

run() {
  local label=$1
  /usr/bin/time -v -o "$work/time.txt" "$bin" sync -c "$work/bench.toml" --since "$since" --until "$today" \
    --log warn > "$work/summary.txt"
  local fetched written wall rss
  fetched=$(awk 'NR>1 && $3=="success" {s+=$4} END {print s+0}' "$work/summary.txt")
  written=$(awk 'NR>1 && $3=="success" {s+=$5+$6} END {print s+0}' "$work/summary.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  secs=$(python3 -c "
p='$wall'.split(':'); print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))")
  printf '%-10s accounts=%s days=%s fetched=%s written=%s wall=%.1fs rows/s=%.0f peak_rss=%.1fMiB\n' \
    "$label" "$((orgs * 2))" "$days" "$fetched" "$written" "$secs" \
    "$(python3 -c "print($fetched/$secs)")" "$(python3 -c "print($rss/1024)")"
  grep -E 'User time|System time|Percent of CPU' "$work/time.txt" | sed 's/^[[:space:]]*/           /'
  if grep -q failed "$work/summary.txt"; then cat "$work/summary.txt"; fi
}
run first
run re-sync
