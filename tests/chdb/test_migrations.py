"""Runs the migration plan that `tokentra-sync migrate` applies on a current
ClickHouse (gated features included) inside chdb's embedded engine, then checks
that the tables behave: a cancelled row nets to zero in usage_daily, the rollup
keeps money exact, and sync_runs has its TTL.

Usage: python3 tests/chdb/test_migrations.py PLAN.sql
"""
import sys
import tempfile

import chdb
from chdb import session as chs


def main(plan_path: str) -> None:
    plan = open(plan_path, encoding="utf-8").read()
    statements = [s.strip() for s in plan.split(";\n") if s.strip()]
    assert statements, "the plan is empty"
    with tempfile.TemporaryDirectory() as path:
        sess = chs.Session(path)
        sess.query("CREATE DATABASE IF NOT EXISTS tokentra")
        for statement in statements:
            sess.query(statement)
        # Every migration is idempotent: running the plan twice must work
        # (ALTERs are recorded and not re-run; an ADD COLUMN that ran before a
        # crash is recognised by the runner from "column already exists").
        def code(statement: str) -> str:
            return "\n".join(l for l in statement.splitlines() if not l.lstrip().startswith("--")).lstrip().upper()
        for statement in statements:
            if not code(statement).startswith("ALTER"):
                sess.query(statement)

        tables = sess.query("SELECT name FROM system.tables WHERE database = 'tokentra' ORDER BY name", "CSV").bytes().decode()
        for table in ["schema_migrations", "sync_runs", "sync_state", "usage_daily", "usage_daily_mv", "usage_records", "workspace_names"]:
            assert f'"{table}"' in tables, f"{table} missing: {tables}"

        ddl = sess.query("SHOW CREATE TABLE tokentra.sync_runs", "TSVRaw").bytes().decode()
        assert "TTL" in ddl, f"sync_runs has no TTL on a current engine: {ddl}"
        for column in ["error_kind", "connection_status"]:
            assert column in ddl, f"sync_runs lacks {column}: {ddl}"

        ddl = sess.query("SHOW CREATE TABLE tokentra.usage_records", "TSVRaw").bytes().decode()
        assert "index_granularity = 1024" in ddl, f"usage_records was not rebuilt with 1,024-row granules: {ddl}"

        cols = "connection_id, provider, record_type, endpoint, bucket_start, bucket_end, granularity, record_key, model, cost, input_tokens, sign, version, synced_at"
        row = "'c1', 'openai', 'cost', 'costs', toDateTime('2025-01-15 00:00:00', 'UTC'), toDateTime('2025-01-16 00:00:00', 'UTC'), '1d', 7, 'gpt-4o', toDecimal128('{cost}', 9), {tokens}, {sign}, {version}, now()"
        sess.query(f"INSERT INTO tokentra.usage_records ({cols}) VALUES ({row.format(cost='0.412345678', tokens=10, sign=1, version=1)})")
        sess.query(
            f"INSERT INTO tokentra.usage_records ({cols}) VALUES "
            f"({row.format(cost='0.412345678', tokens=10, sign=-1, version=1)}), "
            f"({row.format(cost='1.000000001', tokens=12, sign=1, version=2)})"
        )
        got = sess.query(
            "SELECT toString(day), toString(sum(cost)), sum(input_tokens), sum(records) FROM tokentra.usage_daily "
            "WHERE connection_id = 'c1' GROUP BY day",
            "TSV",
        ).bytes().decode().strip()
        assert got == "2025-01-15\t1.000000001\t12\t1", f"usage_daily after a cancel and a new version: {got!r}"
        sess.close()
    print("chdb migration test: 1 passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1])
