"""The public surface as a user meets it: typed options that refuse a typo before anything
is made, names that read ``minlog.X``, an error a user expects from a closed instance, and
a PostgreSQL store importable without making psycopg a need of ``import minlog``."""

from __future__ import annotations

import datetime as dt
import inspect
import os
import shutil
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import minlog
from minlog.client.options import Options

KEY = b"k" * 32
ORG = minlog.Organisation("380000000000001")
ANNE = minlog.Employee("0101701234", name="Anne Jensen")


def _access() -> minlog.Access:
    return minlog.Access("0303303456", ANNE, ORG, "Opslag", dt.datetime.now(dt.UTC))


def _open(path: Path, **options: Any) -> minlog.MinLog:
    return minlog.MinLog.open(path, transport=minlog.MemoryTransport(), system_name="Cura",
                              start_worker=False, exit_timeout=0.0, **options)


class TestOptions:
    def test_a_misspelt_option_fails_before_anything_is_made(self, tmp_path: Path) -> None:
        """`batch_sise=500` is a ConfigurationError naming it and the option meant, and
        neither the store nor its key file is created."""
        folder = tmp_path / "new"
        with pytest.raises(minlog.ConfigurationError) as e:
            _open(folder / "m.sqlite", batch_sise=500)
        assert "batch_sise" in str(e.value)
        assert "batch_size" in str(e.value)
        assert not folder.exists()

    def test_every_option_is_a_keyword_of_minlog(self) -> None:
        """`Options` names exactly the keyword options of `MinLog` (with their types)."""
        params = inspect.signature(minlog.MinLog.__init__).parameters
        own = {"self", "store", "transport", "system_name", "master_key", "identity",
               "tenants"}
        assert set(Options.__optional_keys__) == set(params) - own

    def test_a_misspelt_option_fails_the_type_check(self, tmp_path: Path) -> None:
        """mypy refuses `MinLog.open(..., batch_sise=500)` and accepts `batch_size=500`."""
        mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
        if mypy is None:
            pytest.skip("mypy is not installed here (pip install -e '.[dev]')")
        snippet = tmp_path / "snippet.py"
        snippet.write_text(textwrap.dedent("""\
            import minlog

            t = minlog.MemoryTransport()
            minlog.MinLog.open("m.sqlite", transport=t, system_name="Cura", batch_size=500)
            minlog.MinLog.open("m.sqlite", transport=t, system_name="Cura", batch_sise=500)
            """))
        done = subprocess.run(
            [mypy, "--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
             str(snippet)], capture_output=True, text=True, cwd=tmp_path,
            env={**os.environ, "MYPYPATH": str(Path(minlog.__file__).parent.parent)})
        errors = [line for line in done.stdout.splitlines() if ": error:" in line]
        assert len(errors) == 1, done.stdout
        assert "snippet.py:5:" in errors[0]
        assert '"batch_sise"' in errors[0]


def _public() -> list[tuple[str, Any]]:
    return [(name, getattr(minlog, name)) for name in minlog.__all__ if name != "__version__"]


class TestNames:
    @pytest.mark.parametrize(("name", "obj"), _public(), ids=[n for n, _ in _public()])
    def test_public_names_read_minlog_dot_name(self, name: str, obj: Any) -> None:
        """Every exported class and function says it is `minlog.<name>`."""
        assert obj.__module__ == "minlog"
        assert obj.__qualname__ == name
        assert obj is getattr(minlog, obj.__qualname__)

    def test_errors_in_tracebacks_read_minlog_dot_name(self) -> None:
        """A traceback names an exported error `minlog.<name>`."""
        for name, obj in _public():
            if isinstance(obj, type) and issubclass(obj, BaseException):
                err = obj("x", "y") if obj is minlog.ValidationError else obj("x")
                line = traceback.format_exception_only(err)[-1]
                assert line.startswith(f"minlog.{name}: "), line

    def test_default_reprs_read_minlog_dot_name(self) -> None:
        """An exported class without a repr of its own shows `<minlog.X object ...>`."""
        assert repr(minlog.MemoryTransport()).startswith("<minlog.MemoryTransport object")

    def test_type_hints_still_resolve(self) -> None:
        """`typing.get_type_hints` works on every exported class (attrs, cattrs use it)."""
        import typing

        for _, obj in _public():
            if isinstance(obj, type):
                typing.get_type_hints(obj)

    def test_pickled_errors_come_back(self) -> None:
        """Renamed classes still pickle (multiprocessing, task queues)."""
        import pickle

        err = minlog.ValidationError("access.at", "must be timezone-aware")
        back = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
        assert (type(back), back.field, back.rule) == (minlog.ValidationError, "access.at",
                                                       "must be timezone-aware")
        again = pickle.loads(pickle.dumps(minlog.RetryPolicy()))  # noqa: S301 - our own bytes
        assert again == minlog.RetryPolicy()


_CALLS: dict[str, Callable[[minlog.MinLog], object]] = {
    "record": lambda log: log.record(_access()),
    "record_many": lambda log: log.record_many([_access()]),
    "flush": lambda log: log.flush(timeout=0),
    "stats": lambda log: log.stats(),
    "dead_letters": lambda log: log.dead_letters(),
    "redrive": lambda log: log.redrive(),
    "resolve": lambda log: log.resolve(ORG, "Medarbejder K7Q4-9MX2"),
    "maintain": lambda log: log.maintain(),
    "step": lambda log: log.step(),
    "today": lambda log: log.today(),
    "registration_for": lambda log: log.registration_for(_access()),
    "with": lambda log: log.__enter__(),
}


class TestClosed:
    @pytest.mark.parametrize("call", sorted(_CALLS))
    def test_a_closed_minlog_raises_closed_error(self, tmp_path: Path, call: str) -> None:
        """Every use of a closed MinLog raises `minlog.ClosedError` (a MinlogError and a
        RuntimeError), saying it is closed."""
        log = _open(tmp_path / "m.sqlite")
        log.close(timeout=0)
        with pytest.raises(minlog.ClosedError, match="closed"):
            _CALLS[call](log)
        assert issubclass(minlog.ClosedError, minlog.MinlogError)
        assert issubclass(minlog.ClosedError, RuntimeError)

    def test_every_public_method_is_covered(self) -> None:
        """The list above holds every public method that uses the store or the worker."""
        # open makes one; close is idempotent; the fork hooks serve the lifecycle
        own = {"open", "close", "after_fork", "fork_locks"}
        methods = {n for n, v in vars(minlog.MinLog).items()
                   if callable(v) and not n.startswith("_")} - own
        assert methods <= set(_CALLS)

    def test_closing_twice_is_fine(self, tmp_path: Path) -> None:
        """close() is idempotent: a second close returns True and raises nothing."""
        log = _open(tmp_path / "m.sqlite")
        log.close(timeout=0)
        assert log.close(timeout=0) is True
        assert log.closed


class TestLazyPostgres:
    def test_import_minlog_does_not_need_psycopg(self) -> None:
        """`import minlog` imports no psycopg; where psycopg cannot be imported,
        `minlog.PostgresStore` is still there and making one says how to install it."""
        code = textwrap.dedent("""\
            import sys
            sys.modules["psycopg"] = None  # as if it were not installed
            import minlog
            assert "psycopg" not in sys.modules or sys.modules["psycopg"] is None
            assert "PostgresStore" in minlog.__all__
            assert minlog.PostgresStore.__module__ == "minlog"
            try:
                minlog.PostgresStore("postgresql://localhost/x")
            except minlog.ConfigurationError as e:
                assert "minlog[postgres]" in str(e), e
            else:
                raise AssertionError("a PostgresStore without psycopg")
            assert "psycopg" not in sys.modules or sys.modules["psycopg"] is None
            """)
        subprocess.run([sys.executable, "-c", code], check=True)

    def test_postgres_store_is_exported(self) -> None:
        """`minlog.PostgresStore` is the PostgreSQL store, named as exported."""
        from minlog.store.postgres import PostgresStore

        assert minlog.PostgresStore is PostgresStore
        assert PostgresStore.__module__ == "minlog"

    def test_step_result_is_exported(self) -> None:
        """`minlog.StepResult` is what `MinLog.step` returns."""
        assert inspect.signature(minlog.MinLog.step).return_annotation in (
            "StepResult", minlog.StepResult)
