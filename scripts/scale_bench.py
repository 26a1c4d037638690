#!/usr/bin/env python3
"""The scale benchmark behind scripts/scale-bench.sh (see BENCHMARKS.md).

Runs, as separate processes on this machine: a private ClickHouse (query log
on), the provider simulator serving ACCOUNTS orgs (one account each, providers
round-robin, BROKEN% of them broken four ways), and `tokentra-sync run` over
all of them. Then measures the first sync (backfill) and one incremental cycle
and prints what BENCHMARKS.md tabulates. Nothing here asserts a timing: the
numbers are printed, and compared by a reader.

A cycle is timed from the moment every account is due (the daemon is asked to
sync all of them at once through its admin API, the worst case of aligned
ticks) until the last account finished.
"""

import argparse
import collections
import concurrent.futures
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair():
    """ClickHouse takes HTTP on p and native TCP on p + 1."""
    for _ in range(200):
        p = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def http(method, url, body=None, headers=None, timeout=60):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode()


class ClickHouse:
    def __init__(self, repo, work):
        self.repo = repo
        self.dir = os.path.join(work, "clickhouse")
        self.port = free_port_pair()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, TOKENTRA_CH_QUERY_LOG="1")
        subprocess.run(
            [os.path.join(repo, "scripts/clickhouse-server.sh"), "start", self.dir, str(self.port), "UTC"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        with open(os.path.join(self.dir, "server.pid")) as f:
            self.pid = int(f.read().strip())

    def query(self, sql):
        return http("POST", self.url + "/", sql.encode()).strip()

    def stop(self):
        subprocess.run([os.path.join(self.repo, "scripts/clickhouse-server.sh"), "stop", self.dir], check=False)


def cpu_seconds(pid):
    """User + system CPU of a process and its reaped children, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / CLK_TCK
    except FileNotFoundError:
        return float("nan")


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 1e6
    except FileNotFoundError:
        return float("nan")


class RssWatch(threading.Thread):
    """Samples a process's RSS every 100 ms; `peak` is the largest seen."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self):
        while self.running:
            value = rss_mb(self.pid)
            if value == value:
                self.peak = max(self.peak, value)
            time.sleep(0.1)

    def take_peak(self):
        peak, self.peak = self.peak, rss_mb(self.pid)
        return peak


def wait_for(what, probe, limit, every=0.5):
    deadline = time.time() + limit
    while True:
        value = probe()
        if value:
            return value
        if time.time() > deadline:
            raise SystemExit(f"timed out after {limit}s waiting for {what}")
        time.sleep(every)


def backfilled_accounts(ch, db):
    """Accounts whose first backfill stored its last chunk (it counts as a deep sync)."""
    tsv = ch.query(
        f"SELECT connection_id FROM {db}.sync_state GROUP BY connection_id "
        f"HAVING toUnixTimestamp(argMax(last_deep_sync_at, updated_at)) > 0"
    )
    return set(tsv.split())


def runs_since(ch, db, since, status=None):
    """(account -> (status, error_kind, connection_status, duration_ms, finished)) of runs started at or after `since`."""
    where = f"started_at >= toDateTime({int(since)}, 'UTC')"
    if status:
        where += f" AND status = '{status}'"
    tsv = ch.query(
        f"SELECT connection_id, argMax(status, finished_at), argMax(error_kind, finished_at), "
        f"argMax(connection_status, finished_at), argMax(duration_ms, finished_at), "
        f"toUnixTimestamp(max(finished_at)), toUnixTimestamp(min(started_at)) "
        f"FROM {db}.sync_runs WHERE {where} AND status IN ('success', 'failed') GROUP BY connection_id"
    )
    out = {}
    for line in tsv.splitlines():
        f = line.split("\t")
        out[f[0]] = (f[1], f[2], f[3], int(f[4]), int(f[5]), int(f[6]))
    return out


# A query's CPU: user + system time from its ProfileEvents.
QUERY_CPU_MICROS = (
    "sum(arraySum(arrayMap(v -> toUInt64(v), arrayFilter((v, n) -> n IN "
    "('UserTimeMicroseconds', 'SystemTimeMicroseconds'), ProfileEvents.Values, ProfileEvents.Names))))"
)


def query_log(ch, since, until):
    """Queries the daemon sent in [since, until): count, CPU seconds by ProfileEvents."""
    ch.query("SYSTEM FLUSH LOGS")
    tsv = ch.query(
        f"SELECT count(), {QUERY_CPU_MICROS}, "
        "countIf(query LIKE 'INSERT%'), sum(read_rows) "
        f"FROM system.query_log WHERE type = 2 AND event_time >= toDateTime({int(since)}, 'UTC') "
        f"AND event_time < toDateTime({int(until) + 1}, 'UTC') AND http_user_agent NOT LIKE 'Python%'"
    )
    count, micros, inserts, read_rows = tsv.split("\t")
    return int(count), int(micros) / 1e6, int(inserts), int(read_rows)


def query_kinds(ch, since, until):
    """The daemon's queries in [since, until) by kind (their first words): count, CPU seconds, rows read."""
    tsv = ch.query(
        "SELECT replaceRegexpAll(substring(query, 1, 60), '[0-9]+', 'N') AS kind, count(), "
        f"{QUERY_CPU_MICROS}, "
        "sum(read_rows) "
        f"FROM system.query_log WHERE type = 2 AND event_time >= toDateTime({int(since)}, 'UTC') "
        f"AND event_time < toDateTime({int(until) + 1}, 'UTC') AND http_user_agent NOT LIKE 'Python%' "
        "GROUP BY kind ORDER BY kind"
    )
    out = {}
    for line in tsv.splitlines():
        kind, count, micros, read_rows = line.split("\t")
        out[" ".join(kind.split())] = {"count": int(count), "cpu_s": int(micros) / 1e6, "read_rows": int(read_rows)}
    return out


CH_EVENTS = ("InsertQuery", "SelectQuery", "InsertedRows", "MergedRows", "MergesTimeMilliseconds")


def ch_events(ch):
    """The server's cumulative counters this benchmark reports (merges are not in the query log)."""
    names = ", ".join(f"'{e}'" for e in CH_EVENTS)
    tsv = ch.query(f"SELECT event, value FROM system.events WHERE event IN ({names})")
    values = dict.fromkeys(CH_EVENTS, 0)
    for line in tsv.splitlines():
        name, value = line.split("\t")
        values[name] = int(value)
    return values


def part_log(ch, since, until=None):
    """Per table, from `since` (to `until`): parts inserted, merges, the rows of the parts the merges made,
    their milliseconds. (Not `read_rows`: 18.16's part log puts the bytes read there.)"""
    ch.query("SYSTEM FLUSH LOGS")
    before = f" AND event_time <= toDateTime({int(until) + 1}, 'UTC')" if until else ""
    tsv = ch.query(
        "SELECT table, countIf(event_type = 1), countIf(event_type = 2), sumIf(rows, event_type = 2), "
        "sumIf(duration_ms, event_type = 2) FROM system.part_log "
        f"WHERE event_time >= toDateTime({int(since)}, 'UTC'){before} AND database != 'system' "
        "GROUP BY table ORDER BY table"
    )
    out = {}
    for line in tsv.splitlines():
        table, new, merges, merged, ms = line.split("\t")
        # Migration 13 builds usage_records as usage_records_rebuild and
        # renames it; 18.16's part log keeps the old name for new parts (not
        # for merges), so both are usage_records' own.
        counts = out.setdefault(RENAMED.get(table, table), {"new_parts": 0, "merges": 0, "merged_rows": 0, "merge_ms": 0})
        for key, value in zip(("new_parts", "merges", "merged_rows", "merge_ms"), (new, merges, merged, ms)):
            counts[key] += int(value)
    return out


RENAMED = {"usage_records_rebuild": "usage_records"}


def last_write(log_path, until):
    """Epoch seconds of the writer's last acknowledged batch at or before
    `until`, from the daemon's log (its `batch written` debug line comes after
    ClickHouse answered); None when the log has no such line. Polling shows
    the end of a first sync only to the poll's period and its queries' time."""
    last = None
    with open(log_path, errors="replace") as log:
        for line in log:
            if "batch written" not in line:
                continue
            try:
                at = datetime.datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()
            except ValueError:
                continue
            if at <= until and (last is None or at > last):
                last = at
    return last


def ingest_baseline(ch, db, work):
    """The same rows inserted by `clickhouse-client` alone, one INSERT into a
    copy of usage_records: wall seconds and ClickHouse CPU, once in Native (the
    server's own block format: the strictest baseline) and once in
    TabSeparated (a text file as a user would load one, and how the baseline
    was first measured)."""
    # The keys the report has always read are the plain Native insert's.
    return dict(insert_once(ch, db, work, "Native"),
                with_rollup=insert_once(ch, db, work, "Native", rollup=True),
                tsv=insert_once(ch, db, work, "TabSeparated"))


def records_requests(binary, cache={}):
    """Whether `binary`'s simulator can record requests (builds before it could not)."""
    if binary not in cache:
        usage = subprocess.run([binary, "simulate", "--help"], capture_output=True, text=True).stdout
        cache[binary] = "--record-requests" in usage
    return cache[binary]


def serve_baseline(sim_url, sim_pid, work, parallel=16):
    """The simulator alone serving the first sync's pages: every provider
    request it answered (`simulate --record-requests`) sent again as recorded
    by `replay_requests.py`, a lean client that throws the answers away. Wall
    seconds, the simulator's and the client's CPU, and bytes served; every
    answer must carry the status the daemon got (the same pages, not errors)."""
    recorded = http("GET", sim_url + "/_sim/requests")
    want = collections.Counter(str(r["status"]) for r in json.loads(recorded))
    recorded_path = os.path.join(work, "requests.json")
    with open(recorded_path, "w") as f:
        f.write(recorded)
    replay = os.path.join(os.path.dirname(os.path.abspath(__file__)), "replay_requests.py")
    sim0 = cpu_seconds(sim_pid)
    out = subprocess.run([sys.executable, replay, sim_url, str(parallel), recorded_path],
                         capture_output=True, text=True, check=True).stdout
    sim_cpu = cpu_seconds(sim_pid) - sim0
    os.remove(recorded_path)
    result = json.loads(out)
    if collections.Counter(result["statuses"]) != want:
        raise SystemExit(f"the replay was not answered as the first sync was: {result['statuses']} against {dict(want)}")
    return {"requests": result["requests"], "parallel": parallel, "wall_s": round(result["wall_s"], 2),
            "sim_cpu_s": round(sim_cpu, 2), "client_cpu_s": round(result["cpu_s"], 2),
            "mb": round(result["bytes"] / 1e6, 1)}


def insert_once(ch, db, work, fmt, rollup=False):
    """One INSERT of the first sync's rows into a copy of usage_records; with
    `rollup`, the copy also feeds a copy of the daily rollup through the same
    materialized view, as usage_records does (the daemon pays for that too)."""
    dump = os.path.join(work, "rows." + fmt)
    client = ["clickhouse-client", "--host", "127.0.0.1", "--port", str(ch.port + 1)]
    ch.query(f"CREATE TABLE {db}.ingest_copy AS {db}.usage_records")
    if rollup:
        ch.query(f"CREATE TABLE {db}.ingest_daily AS {db}.usage_daily")
        view = ch.query(f"SELECT create_table_query FROM system.tables WHERE database = '{db}' "
                        f"AND name = 'usage_daily_mv' FORMAT TSVRaw")
        view = (view.replace(f"{db}.usage_daily_mv", f"{db}.ingest_daily_mv")
                .replace(f"TO {db}.usage_daily ", f"TO {db}.ingest_daily ")
                .replace(f"FROM {db}.usage_records", f"FROM {db}.ingest_copy"))
        if f"TO {db}.ingest_daily " not in view or f"FROM {db}.ingest_copy" not in view:
            raise SystemExit(f"could not copy the rollup view: {view[:200]}")
        ch.query(view)
    with open(dump, "wb") as out:
        subprocess.run(client + ["--query", f"SELECT * FROM {db}.usage_records FORMAT {fmt}"], stdout=out, check=True)
    settle_merges(ch)
    cpu0, t0 = cpu_seconds(ch.pid), time.time()
    with open(dump, "rb") as rows:
        subprocess.run(client + ["--query", f"INSERT INTO {db}.ingest_copy FORMAT {fmt}"], stdin=rows, check=True)
    wall = time.time() - t0
    settle_merges(ch)
    rows = int(ch.query(f"SELECT count() FROM {db}.ingest_copy"))
    if rollup:
        ch.query(f"DROP TABLE {db}.ingest_daily_mv")
        ch.query(f"DROP TABLE {db}.ingest_daily")
    ch.query(f"DROP TABLE {db}.ingest_copy")
    os.remove(dump)
    return {"rows": rows, "insert_wall_s": round(wall, 2), "ch_cpu_s": round(cpu_seconds(ch.pid) - cpu0, 2)}


def settle_merges(ch, limit=300):
    """Waits until ClickHouse has had no merge running for two seconds."""
    deadline, quiet = time.time() + limit, 0
    while quiet < 4 and time.time() < deadline:
        quiet = quiet + 1 if ch.query("SELECT count() FROM system.merges") == "0" else 0
        time.sleep(0.5)


class Profile:
    """`perf record` of the daemon and the simulator during the cycle (--perf DIR)."""

    def __init__(self, out_dir, pids, freq=199):
        self.procs = []
        if not out_dir:
            return
        os.makedirs(out_dir, exist_ok=True)
        for name, pid in pids.items():
            self.procs.append(subprocess.Popen(
                # DWARF unwinding: neither the release build nor libc keeps frame pointers.
                ["perf", "record", "-F", str(freq), "--call-graph", "dwarf,16384", "-p", str(pid), "-o", os.path.join(out_dir, f"{name}.data")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self):
        for p in self.procs:
            p.send_signal(2)
        for p in self.procs:
            p.wait(timeout=120)


def sim_requests(sim_url):
    return json.loads(http("GET", sim_url + "/_sim/stats"))["total"]


def scenario(args, repo, binary, accounts, broken):
    work = tempfile.mkdtemp(prefix="tokentra-scale.")
    procs = []
    ch = ClickHouse(repo, work)
    try:
        db = "bench"
        sim_port, admin_port = free_port(), free_port()
        accounts_file = os.path.join(work, "accounts.toml")
        extra = f'backfill_days = {args.backfill_days}\ninterval = "{args.interval}"'
        # Serving is measured by replaying what the simulator recorded; an
        # older simulator build gets the CPU bound alone.
        record = args.ingest_baseline and records_requests(args.simulator_binary or binary)
        sim = subprocess.Popen(
            [args.simulator_binary or binary, "simulate", "--listen", f"127.0.0.1:{sim_port}", "--orgs", str(accounts),
             "--history-days", str(args.backfill_days + 3), "--accounts-out", accounts_file,
             "--broken-percent", str(broken), "--account-extra", extra]
            + (["--providers", args.providers] if args.providers else [])
            + (["--record-requests"] if record else []),
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "sim.log"), "w"),
        )
        procs.append(sim)
        sim_url = f"http://127.0.0.1:{sim_port}"
        wait_for("the simulator", lambda: os.path.exists(accounts_file) and sim_requests(sim_url) == 0, 30)
        token = "FAKE-bench-admin-token-0123456789"
        config = os.path.join(work, "config.toml")
        with open(config, "w") as f:
            f.write(
                f'state_dir = "{work}/state"\n[clickhouse]\nurl = "{ch.url}"\ndatabase = "{db}"\n'
                f'[admin]\nlisten = "127.0.0.1:{admin_port}"\ntoken = "{token}"\n'
                f'[sync]\njitter = "0s"\n{args.sync_extra}\n\n'
            )
            with open(accounts_file) as a:
                f.write(a.read())
        with open(accounts_file) as a:
            ids = [line.split('"')[1] for line in a if line.startswith("id = ")]
        daemon_log = open(os.path.join(work, "daemon.log"), "w")
        t0 = time.time()
        cpu0 = {"ch": cpu_seconds(ch.pid), "sim": cpu_seconds(sim.pid)}
        daemon = subprocess.Popen(args.daemon_prefix.split() + [binary, "run", "-c", config], stdout=subprocess.DEVNULL, stderr=daemon_log,
                                  env=dict(os.environ, TOKENTRA_LOG=args.daemon_log))
        procs.append(daemon)
        rss = RssWatch(daemon.pid)
        rss.start()
        first_profile = Profile(args.perf_first, {"daemon": daemon.pid, "simulator": sim.pid, "clickhouse": ch.pid},
                                args.perf_freq)

        # The simulator breaks the accounts `simulator::fleet` picks: waiting
        # for the healthy ones only keeps a broken account that hangs for
        # request_timeout x attempts out of the healthy first-sync time.
        expected_broken = {a for i, a in enumerate(ids) if (i + 1) * broken // 100 > i * broken // 100}

        def first_runs():
            # A backfill longer than a chunk (7 days) records a run per chunk,
            # so an account is done once its backfill's last chunk stored the
            # watermark as a deep sync too, not at its first run row.
            try:
                runs = runs_since(ch, db, 0)
                backfilled = backfilled_accounts(ch, db)
            except (urllib.error.URLError, OSError):
                return None
            done = all(a in runs and a in backfilled for a in ids if a not in expected_broken)
            return runs if done else None

        first = wait_for("a finished first sync of every healthy account", first_runs, args.timeout)
        t1 = time.time()
        written_at = last_write(os.path.join(work, "daemon.log"), t1)
        first_profile.stop()
        cpu1 = {"daemon": cpu_seconds(daemon.pid), "ch": cpu_seconds(ch.pid), "sim": cpu_seconds(sim.pid)}
        req1 = sim_requests(sim_url)
        peak_first = rss.take_peak()
        healthy = [a for a in ids if a not in expected_broken]
        rows = int(ch.query(f"SELECT count() FROM {db}.usage_records"))
        ch.query("SYSTEM FLUSH LOGS")
        first_kinds = query_kinds(ch, t0, t1)
        first_parts = part_log(ch, t0, t1)

        baseline = None
        if args.ingest_baseline:
            # Each alone: the first sync's merges end first.
            settle_merges(ch)
            serve = serve_baseline(sim_url, sim.pid, work) if record else None
            baseline = dict(ingest_baseline(ch, db, work), serve=serve)

        # Idle: the daemon with nothing due. The backfill's merges finish
        # first, so the cycle is not charged for them.
        settle_merges(ch)
        idle_from = cpu_seconds(daemon.pid)
        time.sleep(args.idle_secs)
        idle_cpu = (cpu_seconds(daemon.pid) - idle_from) / args.idle_secs
        idle_rss = rss_mb(daemon.pid)
        rss.take_peak()
        if args.kill_at_idle:
            # A heap profiler's trace then ends with what the idle daemon holds
            # (a clean exit would free it first).
            # By its config path: under a profiler the daemon is its child.
            subprocess.run(["pkill", "-9", "-f", config], check=False)
            daemon.wait()
            print(f"killed the idle daemon: {len(ids)} accounts, {rows} rows, idle RSS {idle_rss:.1f} MB")
            return None

        # One incremental cycle: every account due at once.
        c0 = time.time()
        cpu2 = {"daemon": cpu_seconds(daemon.pid), "ch": cpu_seconds(ch.pid), "sim": cpu_seconds(sim.pid)}
        req2 = sim_requests(sim_url)
        written0 = int(ch.query(f"SELECT count() FROM {db}.usage_records"))
        events0 = ch_events(ch)
        profile = Profile(args.perf, {"daemon": daemon.pid, "simulator": sim.pid, "clickhouse": ch.pid}, args.perf_freq)
        if args.advance_clock:
            # As if that much time had passed since the first sync: new hours
            # complete, and every account's current day changes (records to
            # cancel and rewrite, not only new ones).
            http("POST", sim_url + "/_sim/clock", json.dumps({"advance_secs": args.advance_clock}).encode(),
                 {"Content-Type": "application/json"})
        time.sleep(1.05)  # sync_runs times are whole seconds: runs of this cycle start after c0
        since = int(time.time())
        trigger = lambda account: http(
            "POST", f"http://127.0.0.1:{admin_port}/v1/accounts/{account}/sync",
            b"{}", {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(trigger, ids))

        # Broken accounts retry on their own backoff: the cycle is the
        # healthy accounts' (the broken ones' status is read from the first).
        def cycle_runs():
            runs = runs_since(ch, db, since)
            return runs if all(a in runs for a in healthy) else None

        cycle = wait_for("an incremental sync of every account", cycle_runs, args.timeout)
        c1 = time.time()
        profile.stop()
        events = {k: v - events0[k] for k, v in ch_events(ch).items()}
        cpu3 = {"daemon": cpu_seconds(daemon.pid), "ch": cpu_seconds(ch.pid), "sim": cpu_seconds(sim.pid)}
        req3 = sim_requests(sim_url)
        peak_cycle = rss.take_peak()
        written = int(ch.query(f"SELECT count() FROM {db}.usage_records")) - written0
        # The merges the cycle's inserts started, to their end.
        settle_merges(ch)
        # Steady state: what the daemon keeps once a cycle is over.
        idle_after_rss = rss_mb(daemon.pid)
        ch_cpu_settled = cpu_seconds(ch.pid) - cpu2["ch"]
        events_settled = {k: v - events0[k] for k, v in ch_events(ch).items()}
        parts = part_log(ch, since)
        last_finish = max(cycle[a][4] for a in healthy)
        q_count, q_cpu, q_inserts, q_read = query_log(ch, since, last_finish)
        q_kinds = query_kinds(ch, since, last_finish)

        # The broken accounts' first attempts, however long a hang takes.
        # (A hang fails only after request_timeout x attempts: at most
        # --broken-wait seconds more; those still hanging are reported so.)
        deadline = time.time() + args.broken_wait
        broken_runs = runs_since(ch, db, 0)
        while expected_broken and not all(a in broken_runs for a in expected_broken) and time.time() < deadline:
            time.sleep(1)
            broken_runs = runs_since(ch, db, 0)
        broken_ids = expected_broken
        ok_first = sum(1 for a in healthy if first[a][0] == "success")
        ok_cycle = sum(1 for a in healthy if cycle[a][0] == "success")
        result = {
            "accounts": len(ids),
            "clock_advanced_s": args.advance_clock,
            "broken": len(broken_ids),
            "broken_status": {a: broken_runs.get(a, ("still in its first attempt", "", ""))[:3]
                              for a in sorted(broken_ids)},
            "first_sync": {
                "healthy_synced": ok_first,
                "wall_s": round(t1 - t0, 1),
                "healthy_done_after_s": round(max((first[a][4] for a in healthy), default=t0) - t0, 1),
                "last_write_s": None if written_at is None else round(written_at - t0, 2),
                "rows": rows,
                "daemon_cpu_s": round(cpu1["daemon"], 1),
                "ch_cpu_s": round(cpu1["ch"] - cpu0["ch"], 1),
                "sim_cpu_s": round(cpu1["sim"] - cpu0["sim"], 1),
                "requests_per_account": round(req1 / len(ids), 2),
                "peak_rss_mb": round(peak_first, 1),
                "ch_query_kinds": first_kinds,
                "ch_parts_by_table": first_parts,
                "ingest_baseline": baseline,
            },
            "idle": {"rss_mb": round(idle_rss, 1), "cpu_pct": round(100 * idle_cpu, 2),
                     "rss_after_cycle_mb": round(idle_after_rss, 1)},
            "cycle": {
                "healthy_synced": ok_cycle,
                "failed_healthy": sorted(a for a in healthy if cycle[a][0] != "success")[:10],
                "wall_s": round(c1 - c0 - 1.05, 1),
                "last_finish_after_s": last_finish - since,
                "rows_written": written,
                "daemon_cpu_s": round(cpu3["daemon"] - cpu2["daemon"], 2),
                "ch_cpu_s": round(cpu3["ch"] - cpu2["ch"], 2),
                "sim_cpu_s": round(cpu3["sim"] - cpu2["sim"], 2),
                "ch_queries_per_account": round(q_count / len(ids), 2),
                "ch_inserts": q_inserts,
                "ch_query_cpu_ms_per_account": round(1000 * q_cpu / len(ids), 2),
                "ch_process_cpu_ms_per_account": round(1000 * (cpu3["ch"] - cpu2["ch"]) / len(ids), 2),
                "ch_rows_read_per_account": round(q_read / len(ids), 1),
                "requests_per_account": round((req3 - req2) / len(ids), 2),
                "ch_events": events,
                "ch_events_settled": events_settled,
                "ch_parts_by_table": parts,
                "ch_query_kinds": q_kinds,
                "ch_process_cpu_ms_per_account_merges_settled": round(1000 * ch_cpu_settled / len(ids), 2),
                "peak_rss_mb": round(peak_cycle, 1),
                "sync_ms_healthy": percentiles([cycle[a][3] for a in healthy]),
            },
            "per_account_ms": {a: cycle[a][3] for a in healthy},
            "first_per_account_ms": {a: first[a][3] for a in healthy},
        }
        rss.running = False
        return result
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
        ch.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


def percentiles(values):
    if not values:
        return {}
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return {"p50": pick(0.5), "p95": pick(0.95), "max": values[-1]}


def print_parts(parts):
    for table, p in parts.items():
        print(f"                   {table}: {p['new_parts']} parts inserted, {p['merges']} merges making parts of "
              f"{p['merged_rows']} rows in all, {p['merge_ms'] / 1000:.1f} s")


def report(name, r):
    advanced = r.get("clock_advanced_s")
    print(f"\n== {name}: {r['accounts']} accounts, {r['broken']} broken"
          + (f"; the cycle after the simulator's clock moved {advanced} s ahead" if advanced else ""))
    f, c, i = r["first_sync"], r["cycle"], r["idle"]
    healthy = r["accounts"] - r["broken"]
    written = f.get("last_write_s")
    print(f"first sync     : {f['healthy_synced']}/{healthy} healthy synced in {f['wall_s']} s polled every 0.5 s "
          + (f"(its last write acknowledged at {written} s), " if written else
             f"(the last healthy one after {f['healthy_done_after_s']} s), ")
          + f"{f['rows']} rows, "
          f"{f['requests_per_account']} requests/account, peak RSS {f['peak_rss_mb']} MB")
    print(f"                 CPU s: daemon {f['daemon_cpu_s']}, simulator {f['sim_cpu_s']}, ClickHouse {f['ch_cpu_s']}")
    print_kinds(f.get("ch_query_kinds", {}))
    print_parts(f.get("ch_parts_by_table", {}))
    b = f.get("ingest_baseline")
    if b:
        bound = f["sim_cpu_s"] / (os.cpu_count() or 1)
        measured = b.get("serve")
        print(f"                 baseline, serving: the simulator's first-sync CPU spread over every core {bound:.1f} s"
              + (f"; measured alone (its {measured['requests']} requests sent again, {measured['parallel']} at a "
                 f"time, {measured['mb']} MB): {measured['wall_s']} s (simulator {measured['sim_cpu_s']}, client "
                 f"{measured['client_cpu_s']} CPU s)" if measured else ""))
        print("                 baseline, inserting the same rows alone with clickhouse-client, and first sync / "
              "(serving + insert), polled / to the last write, serving as the CPU bound"
              + (" | as measured:" if measured else ":"))
        for what, t in (("Native into a plain copy", b),
                        ("Native into a copy with the rollup view (as usage_records)", b.get("with_rollup")),
                        ("TabSeparated text into a plain copy", b.get("tsv"))):
            if not t:
                continue
            def ratios(serve):
                total = serve + t["insert_wall_s"]
                return f"{f['wall_s'] / total:.2f}x / " + (f"{written / total:.2f}x" if written else "-")
            print(f"                   {what}: {t['insert_wall_s']} s ({t['ch_cpu_s']} ClickHouse CPU s): "
                  f"{ratios(bound)}" + (f" | {ratios(measured['wall_s'])}" if measured else ""))
    print(f"idle           : RSS {i['rss_mb']} MB after the first sync, {i.get('rss_after_cycle_mb')} MB after the cycle; "
          f"CPU {i['cpu_pct']}% of a core")
    print(f"incremental    : {c['healthy_synced']}/{healthy} healthy synced, cycle {c['wall_s']} s, "
          f"{c['rows_written']} rows written, peak RSS {c['peak_rss_mb']} MB")
    print(f"                 CPU s: daemon {c['daemon_cpu_s']}, simulator {c['sim_cpu_s']}, ClickHouse {c['ch_cpu_s']}")
    print(f"                 ClickHouse per account: {c['ch_queries_per_account']} queries, "
          f"{c['ch_query_cpu_ms_per_account']} ms query CPU, {c['ch_process_cpu_ms_per_account']} ms process CPU, "
          f"{c['ch_rows_read_per_account']} rows read; {c['ch_inserts']} INSERTs in all")
    e = c["ch_events"]
    print(f"                 ClickHouse events: {e['InsertQuery']} inserts of {e['InsertedRows']} rows, "
          f"{e['SelectQuery']} selects, merges {e['MergedRows']} rows in {e['MergesTimeMilliseconds'] / 1000:.1f} s")
    s = c["ch_events_settled"]
    print(f"                 with the cycle's merges run to their end: ClickHouse process CPU "
          f"{c['ch_process_cpu_ms_per_account_merges_settled']} ms per account, merges {s['MergedRows']} rows "
          f"in {s['MergesTimeMilliseconds'] / 1000:.1f} s")
    print_kinds(c["ch_query_kinds"])
    print_parts(c["ch_parts_by_table"])
    print(f"                 provider requests per account: {c['requests_per_account']}; "
          f"healthy sync ms {c['sync_ms_healthy']}")
    if c["failed_healthy"]:
        print(f"                 healthy accounts that failed: {c['failed_healthy']}")
    kinds = {}
    for status in r["broken_status"].values():
        kinds[tuple(status)] = kinds.get(tuple(status), 0) + 1
    for (status, kind, conn), n in sorted(kinds.items()):
        print(f"broken         : {n} x {status}/{kind or '-'} -> {conn}")


def print_kinds(kinds):
    for kind, q in kinds.items():
        print(f"                   {q['count']:6} x {kind[:60]:60} {q['cpu_s']:7.2f} CPU s, {q['read_rows']} rows read")


def compare(base, mixed):
    """Per healthy account: sync time with the broken share vs without."""
    for phase in ("first_per_account_ms", "per_account_ms"):
        ratios = []
        for account, ms in mixed[phase].items():
            if account in base[phase] and base[phase][account] > 0:
                ratios.append(ms / base[phase][account])
        ratios.sort()
        if ratios:
            pick = lambda q: ratios[min(len(ratios) - 1, int(q * len(ratios)))]
            print(f"{'first sync' if phase.startswith('first') else 'incremental'}: healthy sync time with / without broken "
                  f"accounts: median {pick(0.5):.2f}x, p95 {pick(0.95):.2f}x, max {ratios[-1]:.2f}x "
                  f"({len(ratios)} accounts)")
    for key in ("first_sync", "cycle"):
        print(f"{key} wall: {base[key]['wall_s']} s without, {mixed[key]['wall_s']} s with broken accounts")


def compare_builds(args, repo):
    """`--against`: the two builds alternately (against first), one line per run, then medians."""
    columns = [("first sync s", "first_sync", "wall_s"), ("last write s", "first_sync", "last_write_s"),
               ("daemon CPU s", "first_sync", "daemon_cpu_s"),
               ("simulator CPU s", "first_sync", "sim_cpu_s"), ("ClickHouse CPU s", "first_sync", "ch_cpu_s"),
               ("peak RSS MB", "first_sync", "peak_rss_mb"), ("cycle s", "cycle", "wall_s"),
               ("cycle daemon CPU s", "cycle", "daemon_cpu_s"), ("cycle peak RSS MB", "cycle", "peak_rss_mb")]
    builds = [("against", args.against), ("binary", args.binary)]
    results = {}
    for n in args.accounts:
        runs = {label: [] for label, _ in builds}
        for i in range(args.pairs):
            # Alternating which build goes first: runs later in a long
            # session measured slower on this machine, whichever build ran.
            for label, binary in builds if i % 2 == 0 else builds[::-1]:
                r = scenario(args, repo, binary, n, 0)
                runs[label].append(r)
                print(f"{n} accounts, pair {i + 1}, {label}: "
                      + ", ".join(f"{name} {r[part][key]}" for name, part, key in columns), flush=True)
        print(f"\n== {n} accounts, medians of {args.pairs} runs each (against = {args.against}, binary = {args.binary})")
        print("| | " + " | ".join(name for name, _, _ in columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for label, _ in builds:
            medians = [statistics.median([r[part][key] for r in runs[label] if r[part][key] is not None] or [0])
                       for _, part, key in columns]
            print(f"| {label} | " + " | ".join(f"{m:g}" for m in medians) + " |")
        results[f"{n}"] = runs
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("accounts", type=int, nargs="+")
    parser.add_argument("--binary", required=True)
    parser.add_argument("--simulator-binary",
                        help="run the simulator from this build instead (to compare daemons against one simulator)")
    parser.add_argument("--broken-percent", type=int, default=0,
                        help="also run each size with this share broken and compare healthy accounts' sync times")
    parser.add_argument("--backfill-days", type=int, default=2)
    parser.add_argument("--interval", default="1h", help="account interval (the benchmark triggers its cycle itself)")
    parser.add_argument("--providers", default="")
    parser.add_argument("--sync-extra", default="", help="more [sync] lines")
    parser.add_argument("--advance-clock", type=int, default=0, metavar="SECS",
                        help="before the cycle, move the simulator's clock this far ahead (3600: the cycle after an "
                             "hour has passed, when every account's current day changed)")
    parser.add_argument("--idle-secs", type=float, default=10)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--broken-wait", type=float, default=900,
                        help="after the cycle, how long to wait for broken accounts' first attempts")
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--daemon-log", default="warn,tokentra_sync::actors::writer=debug",
                        help="the daemon's TOKENTRA_LOG filter (its log is kept with --keep); the writer's debug "
                             "line gives the first sync's last acknowledged write")
    parser.add_argument("--ingest-baseline", action="store_true",
                        help="after the first sync, time clickhouse-client inserting the same rows alone")
    parser.add_argument("--daemon-prefix", default="",
                        help="run the daemon under this command (e.g. a heap profiler); CPU and RSS are then the prefix's")
    parser.add_argument("--kill-at-idle", action="store_true",
                        help="SIGKILL the daemon once idle after the first sync (with --daemon-prefix heaptrack: "
                             "what an idle daemon holds) and skip the cycle")
    parser.add_argument("--perf-freq", type=int, default=199,
                        help="samples per second of --perf and --perf-first (499 for a first sync of a few seconds)")
    parser.add_argument("--perf-first", help="record a perf profile of each process during the first sync into this folder")
    parser.add_argument("--perf", help="record a perf profile of each process during the cycle into this folder")
    parser.add_argument("--against", metavar="BINARY",
                        help="run this build and --binary alternately (each first in every other pair), --pairs times per size, and print the two "
                             "side by side with medians (run-to-run spread is larger than most single changes)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--no-merges", action="store_true",
                        help="a diagnostic: the private ClickHouse merges no part at all, so the first sync's "
                             "ClickHouse CPU and time without its merges can be compared with a normal run's")
    args = parser.parse_args()
    if args.no_merges:
        os.environ["TOKENTRA_CH_NO_MERGES"] = "1"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.against:
        compare_builds(args, repo)
        return
    results = {}
    for n in args.accounts:
        base = scenario(args, repo, args.binary, n, 0)
        if base is None:
            continue
        report(f"{n} accounts", base)
        results[f"{n}"] = base
        if args.broken_percent:
            mixed = scenario(args, repo, args.binary, n, args.broken_percent)
            report(f"{n} accounts, {args.broken_percent}% broken", mixed)
            results[f"{n}-broken"] = mixed
            compare(base, mixed)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
