"""Shared fixtures: a real PostgreSQL (embedded by default, or $PONY_TEST_DATABASE_URL) and a real S3 server.

Every test that needs a database gets a fresh, empty database on that server, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import make_dsn, parse_dsn

from pony_tasks.config import Settings, load_settings
from pony_tasks.db.embedded import throwaway_server
from tests.helpers import dsn_to_uri


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """Admin URL of the server the tests use."""
    with throwaway_server(url=os.environ.get("PONY_TEST_DATABASE_URL")) as url:
        yield url


def _admin(url: str):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


@pytest.fixture
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh empty database for one test."""
    name = f"pony_test_{uuid.uuid4().hex[:12]}"
    admin = _admin(postgres_server_url)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = parse_dsn(postgres_server_url)
    dsn["dbname"] = name
    yield dsn_to_uri(make_dsn(**dsn))
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.close()


class DatabaseCopies:
    """Databases made from a template database (``CREATE DATABASE … TEMPLATE``: a file copy, ~0.15 s) — for fixtures
    that build an expensive state once (scrape, fetch, normalise) and give every test its own copy of it."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.names: list[str] = []

    def url(self, name: str) -> str:
        dsn = parse_dsn(self.server_url)
        dsn["dbname"] = name
        return dsn_to_uri(make_dsn(**dsn))

    def create(self, template: str | None = None) -> str:
        """A new database (a copy of ``template``, which must have no open connections); returns its name."""
        name = f"pony_test_{uuid.uuid4().hex[:12]}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        admin = _admin(self.server_url)
        try:
            with admin.cursor() as cur:
                cur.execute(query)
        finally:
            admin.close()
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        admin = _admin(self.server_url)
        with admin.cursor() as cur:
            for name in reversed(self.names):
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.fixture(scope="module")
def database_copies(postgres_server_url: str) -> Iterator[DatabaseCopies]:
    copies = DatabaseCopies(postgres_server_url)
    yield copies
    copies.drop_all()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(database_url)
    yield conn
    conn.close()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings pointing at the test database and a file store in the test's temporary directory."""
    return load_settings(home=tmp_path / "home", database_url=database_url)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-speaking HTTP server (moto in server mode) on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_settings(tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for an S3 store in a fresh bucket on the loopback server."""
    bucket = f"pony-{uuid.uuid4().hex[:10]}"
    settings = load_settings(
        home=tmp_path / "home",
        storage_url=f"s3://{bucket}/objects",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
    )
    from pony_tasks.storage import open_store

    open_store(settings=settings).ensure_bucket()
    return settings


@pytest.fixture(scope="session")
def corpus():
    from pony_tasks.fakes.corpus import SampleCorpus

    return SampleCorpus()


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    """Test settings whose database has every migration applied."""
    from pony_tasks.db import connect, upgrade

    with connect(settings, check_schema=False) as conn:
        upgrade(conn)
    return settings


@pytest.fixture
def fake(corpus, request):
    """A clean fake server for the site given by indirect parametrisation (default danbooru)."""
    from pony_tasks.fakes.server import FakeBooru

    with FakeBooru(getattr(request, "param", "danbooru"), corpus) as server:
        yield server
