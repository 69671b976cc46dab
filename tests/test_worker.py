"""``minlog worker``: the delivery service, run as a process against a real SQLite store
and FakeNSP over loopback. It delivers, answers /healthz and /metrics, and on SIGTERM
finishes the batch under way (or gives it back at once past --stop-timeout) and exits 0:
nothing is left in flight, every entry reaches the receiver once."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from test_cli_scripting import CITIZEN, CVR, fill, one_json, transport_toml

from minlog import MemoryTransport, MinLog
from minlog.cli import exits
from minlog.errors import TransientDeliveryError
from minlog.service import DeliveryService, HealthServer
from minlog.testing import FakeNSP, Fault

#: A guard against a hang, never a measure: every wait below ends long before it.
PATIENCE = 60.0


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.02)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=PATIENCE) as answer:  # noqa: S310 - loopback
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Worker:
    """``python -m minlog worker`` as a process; its standard error read on a thread."""

    def __init__(self, *argv: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "minlog", "worker", *argv, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._started()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)
            self.lines.put(line)

    def _started(self) -> str:
        """The health server's URL from the line the worker prints when it runs."""
        while True:
            try:
                line = self.lines.get(timeout=PATIENCE)
            except queue.Empty:
                self.process.kill()
                pytest.fail("the worker did not start: " + "".join(self.err))
            if line.startswith("minlog worker: delivering"):
                return line.split("health at ", 1)[1].split("/healthz", 1)[0]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, dict[str, Any]]:
        """Send ``sig``; the exit status and the JSON summary."""
        self.process.send_signal(sig)
        try:
            out, _ = self.process.communicate(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return self.process.returncode, one_json(out)


@pytest.fixture
def nsp() -> Iterator[FakeNSP]:
    with FakeNSP(cvr=CVR) as fake:
        yield fake


def outbox(db: Path) -> dict[str, Any]:
    status, out, _ = run_cli("status", str(db), "--json")
    assert status in (exits.OK, exits.DEAD_LETTERS)
    return one_json(out)


def employees(nsp: FakeNSP) -> list[str | None]:
    return [r.user_person_identifier for r in nsp.received]


class TestWorkerProcess:
    def test_delivers_answers_health_and_metrics_and_stops_on_sigterm(
            self, tmp_path: Path, nsp: FakeNSP) -> None:
        db = tmp_path / "minlog.sqlite"
        fill(db, 30)
        config = transport_toml(tmp_path, nsp)
        worker = Worker(str(db), "--config", str(config), "--rate-limit", "none",
                        "--batch-size", "10", "--health-port", "0")
        until(lambda: len(nsp.received) == 30, "delivery")
        until(lambda: get(worker.url + "/healthz")[0] == 200
              and json.loads(get(worker.url + "/healthz")[1])["pending"] == 0, "health")
        status, body = get(worker.url + "/healthz")
        report = json.loads(body)
        assert status == 200
        assert (report["status"], report["problems"], report["in_flight"], report["dead"]) == (
            "ok", [], 0, 0)
        assert report["delivered"] == 30
        status, body = get(worker.url + "/metrics")
        assert status == 200
        assert b"minlog_outbox_pending" in body
        assert b"minlog_delivered_total" in body
        assert get(worker.url + "/nothing")[0] == 404
        code, summary = worker.stop()
        assert code == exits.OK
        assert (summary["stopped_by"], summary["delivered"], summary["released"]) == (
            "SIGTERM", 30, 0)
        assert sorted(employees(nsp)) == sorted(set(employees(nsp)))  # each once
        assert outbox(db)["pending"] == 0
        assert CITIZEN not in "".join(worker.err)

    def test_sigterm_mid_batch_finishes_the_batch(self, tmp_path: Path, nsp: FakeNSP) -> None:
        """SIGTERM while a request is at the receiver: the answer is awaited and recorded,
        nothing new is claimed, nothing stays in flight; every entry is delivered once
        (the rest by a later drain)."""
        db = tmp_path / "minlog.sqlite"
        fill(db, 30)
        config = transport_toml(tmp_path, nsp)
        nsp.inject(Fault("latency", times=3, seconds=1.5))
        worker = Worker(str(db), "--config", str(config), "--rate-limit", "none",
                        "--batch-size", "10", "--health-port", "0", "--stop-timeout", "30")
        until(lambda: nsp.calls >= 1, "a request at the receiver")
        at_term = nsp.calls
        code, summary = worker.stop()
        assert code == exits.OK
        assert summary["released"] == 0
        calls = nsp.calls
        assert calls >= at_term >= 1
        # Every request that reached the receiver was answered and recorded as delivered.
        assert len(nsp.received) == summary["delivered"] == 10 * calls
        left = outbox(db)
        assert (left["in_flight"], left["pending"]) == (0, 30 - 10 * calls)
        assert run_cli("drain", str(db), "--config", str(config), "--rate-limit",
                       "none")[0] == exits.OK
        assert len(nsp.received) == 30
        assert len(set(employees(nsp))) == 30

    def test_past_the_stop_timeout_the_batch_is_given_back_at_once(
            self, tmp_path: Path, nsp: FakeNSP) -> None:
        """A receiver that does not answer within --stop-timeout: the worker gives its
        leased entries back to pending and exits 0; nothing waits for a lease to run
        out."""
        db = tmp_path / "minlog.sqlite"
        fill(db, 20)
        config = transport_toml(tmp_path, nsp)
        nsp.inject(Fault("latency", times=1, seconds=8))
        worker = Worker(str(db), "--config", str(config), "--rate-limit", "none",
                        "--batch-size", "10", "--health-port", "0", "--stop-timeout", "0.2")
        until(lambda: nsp.calls >= 1, "a request at the receiver")
        code, summary = worker.stop()
        assert code == exits.OK
        assert (summary["released"], summary["delivered"]) == (10, 0)
        left = outbox(db)
        assert (left["in_flight"], left["pending"]) == (0, 20)

    def test_a_taken_port_is_an_error(self, tmp_path: Path, nsp: FakeNSP) -> None:
        db = tmp_path / "minlog.sqlite"
        fill(db, 1)
        with _listening() as port:
            status, _out, err = run_cli("worker", str(db), "--config",
                                       str(transport_toml(tmp_path, nsp)),
                                       "--health-port", str(port), "--rate-limit", "none")
        assert status == exits.ERROR
        assert f"--health-port {port}" in err
        assert outbox(db)["pending"] == 1


class _listening:
    """A port taken by another socket on loopback."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


class TestHealth:
    def test_healthz_follows_rounds_store_and_stop(self, tmp_path: Path) -> None:
        """503 before the first round, 200 after it, 503 when the store fails or the
        service stops; the body never holds a CPR number, even from an error text."""
        db = tmp_path / "minlog.sqlite"
        fill(db, 2)
        transport = MemoryTransport()
        transport.fail_next(TransientDeliveryError(f"citizen {CITIZEN} unknown"), times=1)
        log = MinLog.open(db, transport=transport, system_name="Cura", start_worker=False,
                          exit_timeout=0.0, rate_limit=None, fill_wait=0)
        service = DeliveryService(log, poll=0.05)
        with HealthServer(service, 0) as server:
            status, body = get(server.url + "/healthz")
            assert status == 503
            assert json.loads(body)["problems"] == ["no_recent_round"]
            service.start()
            until(lambda: service.rounds >= 1, "a round")
            status, body = get(server.url + "/healthz")
            assert status == 200, body
            report = json.loads(body)
            assert report["last_error"]
            assert "[cpr?]" in report["last_error"]
            assert CITIZEN.encode() not in body
            service.stop("test")
            service.shutdown()
            status, body = get(server.url + "/healthz")
            assert (status, json.loads(body)["problems"]) == (503, ["stopping"])
            log.store.close()
            status, body = get(server.url + "/healthz")
            assert status == 503
            assert "store" in json.loads(body)["problems"]
        log.close(timeout=0)
