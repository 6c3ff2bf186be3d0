import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from pony_tasks.db.migrations import MIGRATIONS_DIR, MigrationError, discover, migration_status, upgrade


def schema_snapshot(conn) -> list[tuple]:
    """Tables, columns, indexes and constraints of the public schema: what 're-running changes nothing' compares."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT 'column', table_name, column_name || ' ' || data_type || ' ' || is_nullable
                 FROM information_schema.columns WHERE table_schema = 'public'
               UNION ALL SELECT 'index', tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'
               UNION ALL SELECT 'constraint', conrelid::regclass::text, pg_get_constraintdef(oid)
                 FROM pg_constraint WHERE connamespace = 'public'::regnamespace
               ORDER BY 1, 2, 3"""
        )
        rows = cur.fetchall()
    conn.rollback()
    return rows


def test_upgrade_from_empty_applies_everything_then_rerun_changes_nothing(db) -> None:
    applied = upgrade(db)
    assert [m.version for m in applied] == [m.version for m in discover()]
    before = schema_snapshot(db)
    with db.cursor() as cur:
        cur.execute("SELECT version, applied_at FROM pony_schema_migrations ORDER BY version")
        history = cur.fetchall()
    db.rollback()
    assert upgrade(db) == []
    assert schema_snapshot(db) == before
    with db.cursor() as cur:
        cur.execute("SELECT version, applied_at FROM pony_schema_migrations ORDER BY version")
        assert cur.fetchall() == history
    assert all(state.applied_at and state.checksum_matches for state in migration_status(db))


def test_status_before_upgrade_lists_everything_pending(db) -> None:
    states = migration_status(db)
    assert states and all(state.applied_at is None for state in states)


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, target)
    return target


def test_edited_migration_is_refused(db, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    upgrade(db, directory)
    first = sorted(directory.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- sneaky edit\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        upgrade(db, directory)


def test_failing_migration_rolls_back_completely(db, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "9001_broken.sql").write_text("CREATE TABLE half_done (x int);\nSELECT no_such_function();\n")
    with pytest.raises(MigrationError, match="9001_broken.sql"):
        upgrade(db, directory)
    with db.cursor() as cur:
        cur.execute(
            "SELECT to_regclass('half_done'), (SELECT count(*) FROM pony_schema_migrations WHERE version = 9001)"
        )
        assert cur.fetchone() == (None, 0)
    db.rollback()


def test_badly_named_migration_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "1_oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="1_oops.sql"):
        discover(tmp_path)


def test_concurrent_upgrades_apply_each_migration_once(database_url: str) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        conn = psycopg2.connect(database_url)
        try:
            upgrade(conn)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    conn = psycopg2.connect(database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT version) FROM pony_schema_migrations")
        total, distinct = cur.fetchone()
    conn.close()
    assert total == distinct == len(discover())


def test_killed_upgrade_leaves_no_half_applied_migration(database_url: str, db, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    slow = directory / "9002_slow.sql"
    slow.write_text(
        "CREATE TABLE killed_midway (x int);\nINSERT INTO killed_midway VALUES (1);\nSELECT pg_sleep(60);\n"
    )
    script = (
        "import sys, psycopg2; from pathlib import Path; from pony_tasks.db.migrations import upgrade\n"
        "upgrade(psycopg2.connect(sys.argv[1]), Path(sys.argv[2]))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, database_url, str(directory)])
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until the child is inside the slow migration
            with db.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()"
                )
                if cur.fetchone()[0]:
                    break
            db.rollback()
            assert time.monotonic() < deadline, "child never reached the slow migration"
            time.sleep(0.1)
        db.rollback()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with db.cursor() as cur:
        cur.execute(
            "SELECT to_regclass('killed_midway'), (SELECT count(*) FROM pony_schema_migrations WHERE version = 9002)"
        )
        assert cur.fetchone() == (None, 0)
    db.rollback()
    # The server notices the dead client and releases its locks; the next upgrade completes.
    slow.write_text("CREATE TABLE killed_midway (x int);\n")
    started = time.monotonic()
    assert [m.version for m in upgrade(db, directory)] == [9002]
    assert time.monotonic() - started < 30
