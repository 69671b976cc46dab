"""Structured log events: a stable schema on the ``minlog`` loggers, documented, and never
a CPR number, even when the receiver echoes one back."""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import minlog
from minlog import Access, Employee, MinLog, Organisation, RetryPolicy
from minlog.cli import main as cli
from minlog.delivery.backlog import BacklogWatch
from minlog.events import EVENTS, emit, redact
from minlog.minlog2 import Minlog2Transport
from minlog.store.base import StoreCounts
from minlog.testing import FakeNSP, Fault, FixedClock, make_test_certificate

CVR = "12345678"
ORG = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
CERT = make_test_certificate(CVR, "Testkommune")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "observability.md"
EMPLOYEES = [f"0101{70 + i % 20:02d}{i:04d}" for i in range(40)]
CITIZENS = [f"{1 + i % 28:02d}0{1 + i % 9}{60 + i % 30:02d}4321" for i in range(40)]
#: The attributes every LogRecord has: an event's fields must not clash with them.
RECORD_ATTRIBUTES = set(vars(logging.LogRecord("n", 0, "p", 0, "m", None, None))) | {
    "message", "asctime", "taskName"}


def accesses(first: int, n: int) -> list[Access]:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    return [Access(CITIZENS[i], Employee(EMPLOYEES[i], name=f"Medarbejder {i}"), ORG,
                   "Opslag i Fælles Stamkort", at) for i in range(first, first + n)]


def cpr_forms() -> set[str]:
    """Every CPR number of the scenario, with and without its hyphen."""
    return {f for c in CITIZENS + EMPLOYEES for f in (c, f"{c[:6]}-{c[6:]}")}


def leaks(record: logging.LogRecord) -> list[str]:
    """The CPR numbers found anywhere in a record: its message, attributes, exception."""
    texts = [record.getMessage(), record.exc_text or ""]
    texts += [repr(v) for v in vars(record).values()]
    if record.exc_info and record.exc_info[1] is not None:
        texts.append(repr(record.exc_info[1]))
    return sorted({c for c in cpr_forms() for t in texts if c in t})


def transport(nsp: FakeNSP) -> Minlog2Transport:
    return Minlog2Transport(service_url=nsp.service_url, sts_url=nsp.sts_url, cvr=CVR,
                            credentials=CERT, system_name="Cura",
                            care_provider_name="Testkommune", read_timeout=2.0)


def open_log(path: Path, t: minlog.Transport, **kw: object) -> MinLog:
    return MinLog.open(path, transport=t, system_name="Cura", batch_size=10, poll=0.02,
                       retry=RetryPolicy(initial=0.02, maximum=0.1, jitter=0.1),
                       **kw)  # type: ignore[arg-type]


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)  # fills exc_text, as a real handler would
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record logged anywhere during the test, at every level."""
    root = logging.getLogger()
    keep, level = _Keep(), root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        yield keep.records
    finally:
        root.removeHandler(keep)
        root.setLevel(level)


class TestSchema:
    def test_fields_never_clash_with_the_log_record(self) -> None:
        """No event field overwrites a LogRecord attribute (logging would refuse it)."""
        for name, spec in EVENTS.items():
            assert not set(spec.fields) & RECORD_ATTRIBUTES, name
            assert "event" not in spec.fields
            assert spec.logger == "minlog" or spec.logger.startswith("minlog."), name

    def test_every_event_and_field_is_documented(self) -> None:
        """docs/observability.md names every event, its logger, level and every field."""
        text = DOCS.read_text()
        for name, spec in EVENTS.items():
            row = next((line for line in text.splitlines()
                        if line.startswith(f"| `{name}` |")), None)
            assert row is not None, f"{name} is not in docs/observability.md"
            assert f"`{spec.logger}`" in row, name
            assert logging.getLevelName(spec.level) in row, name
            for field in spec.fields:
                assert f"`{field}`" in row, f"{name}.{field}"

    def test_an_event_carries_its_fields(self, records: list[logging.LogRecord]) -> None:
        """`emit` logs on the event's logger and level, with `event` and its fields."""
        emit("dead_letters", "%d dead", 2, tenant="", count=2, code="E9", origin="receiver")
        (r,) = records
        assert (r.name, r.levelno, r.getMessage()) == ("minlog.delivery", logging.WARNING,
                                                       "2 dead")
        assert (r.event, r.tenant, r.count, r.code, r.origin) == (  # type: ignore[attr-defined]
            "dead_letters", "", 2, "E9", "receiver")


class TestRedact:
    @pytest.mark.parametrize("text", ["0101701234", "010170-1234", "id 0101701234.",
                                      "PersonIdentifier=0101701234"])
    def test_cpr_shapes_are_blanked(self, text: str) -> None:
        """Ten digits shaped like a CPR number, with or without hyphen, are blanked."""
        assert not re.search(r"\d{6}-?\d{4}", redact(text))

    @pytest.mark.parametrize("text", ["a3f0123456789012b4", "12345678", "HTTP 503",
                                      "0123456789abcdef0123456789abcdef"])
    def test_other_numbers_stay(self, text: str) -> None:
        """CVR numbers, status codes and sequence numbers (hex) are left alone."""
        assert redact(text) == text


def check_records(records: list[logging.LogRecord]) -> set[str]:
    """Each minlog record matches its event's schema and no record holds a CPR number;
    returns the events seen."""
    seen = set()
    for r in records:
        assert leaks(r) == [], (r.name, r.getMessage())
        if not r.name.startswith("minlog"):
            continue
        event = getattr(r, "event", None)
        assert event in EVENTS, (r.name, r.getMessage())
        spec = EVENTS[event]
        assert (r.name, r.levelno) == (spec.logger, spec.level), event
        for field in spec.fields:
            assert hasattr(r, field), f"{event}.{field}"
        seen.add(event)
    return seen


class TestScenario:
    def test_a_run_with_errors_is_told_in_events_and_never_shows_a_cpr(
            self, tmp_path: Path, records: list[logging.LogRecord]) -> None:
        """Refusals (echoing a CPR number), an outage, a card refused, a request refused,
        dead letters, a redrive and a new key given by the operator: each is told as its
        event, and no record anywhere (minlog's, httpx's) holds a CPR number."""
        db = tmp_path / "m.sqlite"
        with FakeNSP(cvr=CVR) as nsp:
            def reject(r: minlog.Registration) -> str | None:
                return "E-DUP" if r.user_person_identifier == EMPLOYEES[7] else None

            def refuse(rs: list[minlog.Registration]) -> tuple[str, str] | None:
                bad = [r for r in rs if r.user_person_identifier == EMPLOYEES[13]]
                return (("soap:Client", f"PersonIdentifier {bad[0].person_identifier} is "
                         "malformed") if bad else None)

            nsp.reject, nsp.refuse_request = reject, refuse
            nsp.inject(Fault("http503", times=2))
            nsp.inject(Fault("soap-fault", code="soap:Server",
                             text=f"busy with {CITIZENS[3]}"))
            log = open_log(db, transport(nsp))
            assert all(log.record_many(accesses(0, 20)))
            assert log.flush(timeout=30) is False  # two dead letters wait
            nsp.expire_cards()
            log.record_many(accesses(20, 10))
            log.flush(timeout=30)
            nsp.reject = nsp.refuse_request = None
            assert log.redrive() == 2
            assert log.flush(timeout=30) is True
            last_error = log.stats().last_error or ""
            log.close(timeout=5)
        # Entries left by an outage, then opened with another key: a key problem.
        down = minlog.MemoryTransport()
        down.fail_next(minlog.TransientDeliveryError("down"), times=1000)
        log = open_log(db, down)
        log.record_many(accesses(30, 5))
        log.close(timeout=0.2)
        # Another key only by the operator's rekey (a store refuses a key not its own).
        (tmp_path / "new.key").write_text((b"w" * 32).hex())
        assert cli.main(["rekey", str(db), "--new-key", str(tmp_path / "new.key"),
                         "--force"], out=io.StringIO()) == 0
        log = open_log(db, minlog.MemoryTransport(), key=b"w" * 32)
        log.flush(timeout=5)
        log.close(timeout=1)

        seen = check_records(records)
        assert {"batch_delivered", "send_failed", "request_refused", "dead_letters",
                "card_fetched", "card_refused", "key_problem", "closed",
                "key_created", "key_replaced"} <= seen
        assert not any(c in last_error for c in cpr_forms())
        fetched = {r.reason for r in records  # type: ignore[attr-defined]
                   if getattr(r, "event", "") == "card_fetched"}
        assert fetched == {"first", "refused"}
        origins = {(r.code, r.origin) for r in records  # type: ignore[attr-defined]
                   if getattr(r, "event", "") == "dead_letters"}
        assert origins == {("E-DUP", "receiver"), ("soap:Client", "request"),
                           ("minlog:unreadable", "unreadable")}

    def test_the_sts_refusing_the_card_is_an_error(
            self, tmp_path: Path, records: list[logging.LogRecord]) -> None:
        """A card the STS refuses (here: a digest it does not take) is an ERROR event
        naming the CVR; the entries wait."""
        with FakeNSP(cvr=CVR, accept_digests=("sha1",)) as other:
            log = open_log(tmp_path / "m.sqlite", transport(other))
            log.record_many(accesses(0, 3))
            assert log.flush(timeout=0.5) is False
            log.close(timeout=0.2)
        assert {"send_failed", "sts_refused"} <= check_records(records)
        refused = next(r for r in records if getattr(r, "event", "") == "sts_refused")
        assert (refused.levelno, refused.cvr) == (logging.ERROR, CVR)  # type: ignore[attr-defined]

    def test_a_misconfiguration_is_logged_and_raised(
            self, tmp_path: Path, records: list[logging.LogRecord]) -> None:
        """`MinLog.open` logs a ConfigurationError as the event configuration_error."""
        with pytest.raises(minlog.ConfigurationError):
            open_log(tmp_path / "m.sqlite", minlog.MemoryTransport(), batch_sise=5)
        assert check_records(records) == {"configuration_error"}


class TestBacklog:
    def test_warned_when_the_oldest_entry_waits_too_long(
            self, tmp_path: Path, records: list[logging.LogRecord]) -> None:
        """A backlog older than `backlog_warning` is a WARNING after a delivery round,
        and `backlog_cleared` after the round that delivers it."""
        clock = FixedClock(dt.datetime.now(dt.UTC))
        down = minlog.MemoryTransport()
        down.fail_next(minlog.TransientDeliveryError("down"), times=2)
        log = MinLog.open(tmp_path / "m.sqlite", transport=down, system_name="Cura",
                          start_worker=False, clock=clock, backlog_warning=600.0,
                          rate_limit=None, fill_wait=0.0)
        log._backlog.every = 0.0  # look after every round (the default: once a minute)
        log.record(accesses(0, 1)[0])
        log.step()  # fails; the entry is young
        clock.advance(900)
        log.step()  # fails again; the entry is 900 s old
        clock.advance(900)
        log.step()  # delivered
        log.close(timeout=1)
        events = [e for r in records if (e := getattr(r, "event", "")).startswith("backlog")]
        assert events == ["backlog", "backlog_cleared"]
        check_records(records)

    def test_the_watch_warns_repeats_and_clears(self,
                                                records: list[logging.LogRecord]) -> None:
        """Over the threshold: one warning, repeated after `repeat`; under: cleared once."""
        watch = BacklogWatch(60.0, every=0.0, repeat=300.0)
        old = StoreCounts(5, 0, 0, oldest_pending=1000.0)
        for mono in (0.0, 10.0, 400.0):
            assert watch.due(mono)
            watch.check("", old, now=1100.0, monotonic=mono)
        watch.check("", StoreCounts(0, 0, 0, None), now=1200.0, monotonic=500.0)
        watch.check("", StoreCounts(0, 0, 0, None), now=1300.0, monotonic=600.0)
        events = [r.event for r in records]  # type: ignore[attr-defined]
        assert events == ["backlog", "backlog", "backlog_cleared"]
        assert records[0].oldest_pending_age == 100.0  # type: ignore[attr-defined]

    def test_none_turns_it_off(self) -> None:
        """backlog_warning=None never looks; a threshold <= 0 is refused."""
        assert not BacklogWatch(None).due(0.0)
        with pytest.raises(ValueError, match="backlog_warning"):
            BacklogWatch(0)
