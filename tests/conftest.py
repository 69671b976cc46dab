"""Shared fixtures: stores of both kinds, and the Hypothesis profile."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None,
                          max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "100")))
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

#: True when the tests run under libfaketime (CI's runs at other dates).
UNDER_FAKETIME = "faketime" in os.environ.get("LD_PRELOAD", "")

if UNDER_FAKETIME:
    # CI runs the fast tests again under libfaketime at other dates. Its 0.9.10 (Debian
    # 12) breaks time.sleep on Python 3.11+ when the monotonic clock is left alone
    # (clock_nanosleep with TIMER_ABSTIME fails with EINVAL: libfaketime issue #426), and
    # faking the monotonic clock hangs every lock with a timeout. So monotonic time stays
    # real (FAKETIME_DONT_FAKE_MONOTONIC=1) and the tests sleep on an event instead.
    def _sleep(seconds: float) -> None:
        threading.Event().wait(max(0.0, seconds))

    time.sleep = _sleep

POSTGRES_URL = os.environ.get("MINLOG_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_reason() -> str | None:
    """None when a PostgreSQL server answers; otherwise why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'minlog[postgres]')"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return f"no PostgreSQL at {POSTGRES_URL}: {e}".splitlines()[0]
    return None


_PG_REASON: list[str | None] = []


def require_postgres() -> None:
    """Skip (on a laptop) or fail (in CI: MINLOG_REQUIRE_POSTGRES=1) without a server."""
    if not _PG_REASON:
        _PG_REASON.append(_postgres_reason())
    reason = _PG_REASON[0]
    if reason is not None:
        if os.environ.get("MINLOG_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here: {reason}")
        pytest.skip(reason)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, unique PostgreSQL schema name, dropped after the test."""
    require_postgres()
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """How to open a store of each kind: ``{"target": ..., "store_options": {...}}``."""
    if request.param == "sqlite":
        yield {"kind": "sqlite", "target": str(tmp_path / "minlog.sqlite"), "store_options": {}}
    else:
        pg: str = request.getfixturevalue("pg_schema")
        yield {"kind": "postgres", "target": POSTGRES_URL, "store_options": {"schema": pg}}


@pytest.fixture
def store(store_target: dict[str, Any]) -> Iterator[Any]:
    """An open store of each kind (SQLite file; PostgreSQL schema)."""
    from minlog.store import open_store

    s = open_store(store_target["target"], **store_target["store_options"])
    yield s
    s.close()


#: The authority's official schemas and WSDLs (never copied into this repository).
REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "minlog2"


def require_reference() -> Path:
    """The folder of official schemas; skip without it (on a laptop), or fail (in CI:
    MINLOG_REQUIRE_REFERENCE=1)."""
    if not (REFERENCE / "SOURCE.md").is_file():
        reason = f"the official MinLog2 schemas are not at {REFERENCE}"
        if os.environ.get("MINLOG_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"{reason} (MINLOG_REQUIRE_REFERENCE=1)")
        pytest.skip(reason)
    return REFERENCE


@pytest.fixture(scope="session")
def official() -> Any:
    """The official schemas (`minlog.minlog2.official.OfficialSchemas`)."""
    from minlog.minlog2.official import OfficialSchemas

    return OfficialSchemas(require_reference())


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run the ``minlog`` command in this process: its exit status, output and errors."""
    import io
    import sys

    from minlog.cli import main as cli

    out, err = io.StringIO(), io.StringIO()
    old, sys.stderr = sys.stderr, err
    try:
        status = cli.main(list(argv), out=out)
    finally:
        sys.stderr = old
    return status, out.getvalue(), err.getvalue()


def require_xmlsec() -> str:
    """The xmlsec1 program; skip without it, or fail (in CI: MINLOG_REQUIRE_XMLSEC=1)."""
    import shutil

    found = shutil.which("xmlsec1")
    if found is None:
        if os.environ.get("MINLOG_REQUIRE_XMLSEC") == "1":
            pytest.fail("xmlsec1 is required here (apt-get install xmlsec1)")
        pytest.skip("xmlsec1 is not installed (apt-get install xmlsec1)")
    return found
