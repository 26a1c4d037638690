#!/usr/bin/env bash
# The README run command: on a fresh Debian machine, installs and starts a
# local ClickHouse (127.0.0.1:8123), starts the bundled provider simulator
# (127.0.0.1:8787), runs the daemon against both with config/demo.toml (plus a
# Google Vertex account whose key it makes at start, in .demo/demo.toml), and
# shows the backfill's progress. No real credentials are involved.
#
# Ctrl-C, or `kill <pid of this script>` (TERM, INT or HUP), stops everything
# the script started: the daemon (graceful), the simulator, the progress
# poller and the ClickHouse server if it started one.
#
# TOKENTRA_BIN=path/to/tokentra-sync skips the release build and uses that binary.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -n "${TOKENTRA_BIN:-}" ]; then
  bin=$TOKENTRA_BIN
else
  echo "== building tokentra-sync (release)"
  cargo build --release --locked
  bin="${CARGO_TARGET_DIR:-target}/release/tokentra-sync"
fi

for port in 9464 8787; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "something already listens on 127.0.0.1:$port (an earlier demo?); stop it first" >&2
    exit 1
  fi
done

# Everything started from here on is stopped on any exit.
pids=()
started_clickhouse=0
cleanup() {
  local code=$?
  trap - EXIT INT TERM HUP
  if [ ${#pids[@]} -gt 0 ]; then
    echo "== stopping (daemon ${daemon_pid:-none}, simulator ${sim_pid:-none})"
    # The daemon first, while the simulator still answers: it finishes a
    # running sync (up to 45s) and flushes (up to 25s).
    if [ -n "${daemon_pid:-}" ]; then
      kill -TERM "$daemon_pid" 2>/dev/null || true
      wait "$daemon_pid" 2>/dev/null || true
    fi
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  fi
  if [ "$started_clickhouse" = 1 ]; then scripts/clickhouse-server.sh stop .demo/clickhouse || true; fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir -p .demo
if curl -fsS http://127.0.0.1:8123/ping >/dev/null 2>&1; then
  echo "== using the ClickHouse already answering on 127.0.0.1:8123"
else
  started_clickhouse=1
  scripts/clickhouse-server.sh start .demo/clickhouse 8123 UTC
fi

# A throwaway service-account key for the simulated Google Vertex org (the
# simulator verifies the daemon's JWTs with its public half).
command -v openssl >/dev/null 2>&1 || { echo "openssl is needed to make the demo's Google key" >&2; exit 1; }
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out .demo/google-vertex-key.pem 2>/dev/null
pem=$(awk '{printf "%s\\n", $0}' .demo/google-vertex-key.pem)
cat > .demo/google-vertex-org-1.json <<JSON
{"type": "service_account", "project_id": "org-1-vertex", "private_key_id": "demo-key-1",
 "private_key": "$pem", "client_email": "tokentra-demo@org-1-vertex.iam.gserviceaccount.com",
 "client_id": "100000000000000000001", "token_uri": "http://127.0.0.1:8787/google_vertex/org-1/token"}
JSON
chmod 600 .demo/google-vertex-key.pem .demo/google-vertex-org-1.json
# The demo config: config/demo.toml plus the Vertex account of that key.
{
  cat config/demo.toml
  cat <<'TOML'

[[accounts]]
id = "vertex-org-1"
provider = "google_vertex"
interval = "1m"
base_url = "http://127.0.0.1:8787/google_vertex/org-1/bigquery/v2"
billing_table = "org-1-billing.billing_export.gcp_billing_export_v1_0A1B2C_3D4E5F_6A7B8C"
monitoring_url = "http://127.0.0.1:8787/google_vertex/org-1/monitoring"
[accounts.credentials]
service_account_file = ".demo/google-vertex-org-1.json"
TOML
} > .demo/demo.toml

"$bin" simulate --listen 127.0.0.1:8787 --orgs 2 --seed 42 \
  --google-service-account .demo/google-vertex-org-1.json 2>.demo/simulator.log &
sim_pid=$!
pids+=("$sim_pid")
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:8787/_sim/stats >/dev/null 2>&1 && break
  kill -0 "$sim_pid" 2>/dev/null || { echo "the simulator did not start:" >&2; cat .demo/simulator.log >&2; exit 1; }
  sleep 0.1
done

started=$(date -u +%s)
"$bin" run -c .demo/demo.toml 2>.demo/daemon.log &
daemon_pid=$!
pids+=("$daemon_pid")

where_to_look() {
  cat <<MSG
== tokentra-sync (pid $daemon_pid) syncs the simulator (pid $sim_pid) into ClickHouse. Logs: .demo/daemon.log
   Stop everything:  Ctrl-C, or kill $$
   Metrics:   curl -s 127.0.0.1:9464/metrics | grep -E 'account_status|last_success'
   Ready:     curl 127.0.0.1:9464/readyz
   Spend:     curl 127.0.0.1:8123 --data-binary "SELECT provider, model, sum(cost) AS billed_usd, sum(input_tokens) + sum(output_tokens) AS tokens FROM tokentra.usage_daily GROUP BY provider, model ORDER BY billed_usd DESC FORMAT PrettyCompact"
   Sync log:  curl 127.0.0.1:8123 --data-binary "SELECT started_at, connection_id, status, rows_fetched, rows_written, duration_ms, error FROM tokentra.sync_runs ORDER BY started_at DESC LIMIT 20 FORMAT PrettyCompact"
   Grafana:   the same demo with dashboards and Prometheus: docker-compose --profile demo up -d --build,
              then http://127.0.0.1:3000 (folder tokentra-sync); see docs/operations.md
MSG
}
where_to_look

# Backfill progress from the sync log and the watermarks, every 3 seconds
# until every account has caught up, then a line whenever new rows arrive.
accounts=$(grep -c '^\[\[accounts\]\]' .demo/demo.toml)
progress() {
  local sleeper=
  trap '[ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null; exit 0' TERM
  local caught_up=0 last=""
  while :; do
    local line
    line=$(curl -fsS http://127.0.0.1:8123 --data-binary "
      SELECT count(), countIf(status != 'success'), sum(rows_fetched), sum(rows_written) + sum(rows_cancelled),
             (SELECT count() FROM (SELECT connection_id, argMax(watermark, updated_at) AS w
                                   FROM tokentra.sync_state GROUP BY connection_id) WHERE w >= now() - 7200)
      FROM tokentra.sync_runs WHERE started_at >= toDateTime($started)" 2>/dev/null || true)
    if [ -n "$line" ]; then
      local runs failed fetched written done
      read -r runs failed fetched written done <<<"$line"
      if [ "$caught_up" = 0 ] || [ "$written" != "$last" ]; then
        printf '[%4ds] syncs %s (failed %s) | rows fetched %s, written %s | accounts caught up %s/%s\n' \
          $(($(date -u +%s) - started)) "$runs" "$failed" "$fetched" "$written" "$done" "$accounts"
        last=$written
      fi
      if [ "$caught_up" = 0 ] && [ "$done" -ge "$accounts" ]; then
        caught_up=1
        echo "== backfill done: every account is synced up to the last hour; the daemon keeps syncing every minute"
        where_to_look
      fi
    fi
    sleep $([ "$caught_up" = 1 ] && echo 30 || echo 3) &
    sleeper=$!
    wait "$sleeper" || true
    sleeper=
  done
}
progress &
pids+=("$!")

# `wait` (not a foreground child) so a signal to this script runs its trap at once.
set +e
wait "$daemon_pid"
code=$?
set -e
echo "== the daemon exited with status $code; last log lines:"
tail -n 20 .demo/daemon.log
exit "$code"
