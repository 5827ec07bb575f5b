"""Model versions moved from ``ml`` to ``registry`` and training runs from ``classifier`` to
``training``: a database made before the move keeps every row, foreign key and permission,
on SQLite and on PostgreSQL (where the tests run on it)."""
import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.conf import settings

from tests.conftest import BASE_DIR, database_url


def migrate_old_database(url: str) -> dict:
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "tests.old_database"], cwd=BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])

def assert_nothing_lost(report: dict) -> None:
    assert report["active"] is True
    assert report["warmups"] == ["worker-1"]
    assert report["photo_model"] == "old-v1"
    assert report["run_result"] == "old-v1"
    assert report["reviewer_may_view_models"] is True
    assert report["trainer_may_start_runs"] is True
    assert report["old_content_types"] == 0
    assert report["old_tables"] == []
    assert report["new_tables"] == ["registry_modelversion", "registry_modelwarmup", "training_trainingrun"]
    assert report["new_version_id_above_old"] is True
    assert report["new_run_id_above_old"] is True

def test_an_sqlite_database_from_before_the_move_keeps_everything(tmp_path):
    assert_nothing_lost(migrate_old_database(f"sqlite:///{tmp_path / 'old.sqlite3'}"))

def test_a_postgresql_database_from_before_the_move_keeps_everything():
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("the tests run on SQLite (CI runs them on PostgreSQL)")
    name = f"petsite_old_{uuid.uuid4().hex[:8]}"
    server = database_url({**db, "NAME": "postgres"})
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        assert_nothing_lost(migrate_old_database(database_url({**db, "NAME": name})))
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
