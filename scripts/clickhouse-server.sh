#!/usr/bin/env bash
# Starts a private ClickHouse server on loopback for the tests and the demo.
#
#   scripts/clickhouse-server.sh start DIR HTTP_PORT [TIMEZONE]
#   scripts/clickhouse-server.sh stop DIR
#
# With TOKENTRA_CH_QUERY_LOG=1 the server logs every query to
# system.query_log and every new, merged or removed part to system.part_log
# (the scale benchmark counts queries, merges and their cost). With
# TOKENTRA_CH_NO_MERGES=1 it merges no part at all (a diagnostic for the scale
# benchmark's `--no-merges`: what the merges cost; never for real data).
#
# The server keeps everything under DIR (data, logs, pid) and listens only on
# 127.0.0.1. The test suite starts it with a non-UTC server time zone on purpose:
# every query of ours must name 'UTC' itself (docs/DESIGN.md rule 8).
set -euo pipefail

cmd=${1:?usage: start DIR HTTP_PORT [TIMEZONE] | stop DIR}
dir=${2:?missing DIR}

find_server() {
  for candidate in clickhouse-server /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
    if command -v "$candidate" >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
  done
  return 1
}

# A killed server whose parent is gone may linger as a zombie until it is
# reaped (containers often have no init that reaps): that is not running.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

case "$cmd" in
  stop)
    if [ -f "$dir/server.pid" ]; then
      pid=$(cat "$dir/server.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do alive "$pid" || exit 0; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    ;;
  start)
    port=${3:?missing HTTP_PORT}
    tz=${4:-UTC}
    server=$(find_server) || { echo "clickhouse-server not found: apt-get install -y clickhouse-server" >&2; exit 1; }
    mkdir -p "$dir"/{data,tmp,user_files,log,format_schemas}
    dir=$(cd "$dir" && pwd)
    tcp_port=$((port + 1))
    query_log='' log_queries=''
    if [ "${TOKENTRA_CH_QUERY_LOG:-0}" = 1 ]; then
      # ClickHouse's own default flush interval: a shorter one would charge
      # the benchmark for the log table's own parts and merges.
      query_log='<query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>7500</flush_interval_milliseconds></query_log>'
      query_log="$query_log<part_log><database>system</database><table>part_log</table><flush_interval_milliseconds>7500</flush_interval_milliseconds></part_log>"
      log_queries='<log_queries>1</log_queries>'
    fi
    merge_tree=''
    if [ "${TOKENTRA_CH_NO_MERGES:-0}" = 1 ]; then
      merge_tree='<merge_tree><max_bytes_to_merge_at_max_space_in_pool>1</max_bytes_to_merge_at_max_space_in_pool><max_bytes_to_merge_at_min_space_in_pool>1</max_bytes_to_merge_at_min_space_in_pool></merge_tree>'
    fi
    cat > "$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/server.log</log>
        <errorlog>$dir/log/server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <http_port>$port</http_port>
    <tcp_port>$tcp_port</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>536870912</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>$tz</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    $query_log
    $merge_tree
</yandex>
XML
    cat > "$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage>$log_queries</default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
    if [ -f "$dir/server.pid" ] && alive "$(cat "$dir/server.pid")"; then
      echo "clickhouse already running in $dir (pid $(cat "$dir/server.pid"))"
    else
      # exec: the recorded pid is the server itself, so `stop` can reach it.
      (cd "$dir" && exec nohup "$server" --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1) &
      echo $! > "$dir/server.pid"
    fi
    for _ in $(seq 1 300); do
      if curl -fsS "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then
        echo "clickhouse ready on http://127.0.0.1:$port (data in $dir)"
        exit 0
      fi
      if ! alive "$(cat "$dir/server.pid")"; then
        echo "clickhouse-server exited; last log lines:" >&2
        tail -n 30 "$dir/log/stdout.log" "$dir/log/server.err.log" >&2 2>/dev/null || true
        exit 1
      fi
      sleep 0.2
    done
    echo "clickhouse did not answer /ping on port $port within 60s" >&2
    exit 1
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
