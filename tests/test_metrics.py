"""Metrics: one snapshot (`minlog.metrics.collect`), Prometheus's text format written by
hand and held to the format's rules (and to the reference parser), a scrape endpoint, and
OpenTelemetry as an extra the core never imports."""

from __future__ import annotations

import datetime as dt
import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minlog
import minlog.metrics
from minlog import Access, Employee, MinLog, Organisation, RateLimit, RetryPolicy
from minlog.metrics import CATALOGUE, FamilySpec, MetricFamily, Sample
from minlog.minlog2 import Minlog2Transport
from minlog.testing import FakeNSP, make_test_certificate

CVR = "12345678"
ORG = Organisation("380000000000001")
CERT = make_test_certificate(CVR, "Testkommune")


def accesses(n: int, first: int = 0) -> list[Access]:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    return [Access(f"{1 + i % 28:02d}0{1 + i % 9}{60 + i % 30:02d}4321",
                   Employee(f"0101{70 + i % 20:02d}{i:04d}", name=f"E {i}"), ORG, "Opslag", at)
            for i in range(first, first + n)]


def values(families: list[MetricFamily]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(f.name, s.labels): s.value for f in families for s in f.samples}


@pytest.fixture
def log(tmp_path: Path) -> Iterator[MinLog]:
    """A log whose receiver refuses one entry and fails one request."""
    t = minlog.MemoryTransport(reject=lambda r: "E9" if r.user_person_name == "E 3" else None)
    t.fail_next(minlog.TransientDeliveryError("down", code="http-503"))
    with MinLog.open(tmp_path / "m.sqlite", transport=t, system_name="Cura",
                     start_worker=False, exit_timeout=0.0, batch_size=4,
                     rate_limit=RateLimit(100, 3600.0),
                     retry=RetryPolicy(initial=0.01, maximum=0.01)) as log:
        log.record_many(accesses(10) + accesses(2))  # two duplicates
        log.flush(timeout=10)
        log.record_many(accesses(3, first=100))  # pending
        yield log


class TestCollect:
    def test_the_figures_are_the_instances(self, log: MinLog) -> None:
        """Every figure matches stats() and what the deliverer counted, with tenant ""."""
        s = log.stats()
        v = values(minlog.metrics.collect(log))
        t = (("tenant", ""),)
        assert v[("minlog_outbox_pending", t)] == s.pending == 3
        assert v[("minlog_outbox_dead", t)] == s.dead == 1
        assert v[("minlog_outbox_in_flight", t)] == 0
        assert v[("minlog_outbox_oldest_pending_age_seconds", t)] == pytest.approx(
            s.oldest_pending_age, abs=1.0)
        assert v[("minlog_outbox_drain_seconds", t)] == s.drain_seconds
        assert v[("minlog_recorded_total", t)] == 15
        assert v[("minlog_duplicates_total", t)] == 2
        assert v[("minlog_first_of_day_total", t)] == 13
        assert v[("minlog_delivered_total", t)] == s.delivered == 9
        assert v[("minlog_dead_lettered_total", t)] == 1
        assert v[("minlog_failed_sends_total", (("tenant", ""), ("kind", "transient")))] == 1
        assert v[("minlog_failed_sends_total", (("tenant", ""), ("kind", "refused")))] == 0
        assert v[("minlog_requests_total", t)] == 4  # 1 failed + 3 batches of <= 4
        assert v[("minlog_store_up", ())] == 1
        assert v[("minlog_info", (("version", minlog.__version__),
                                  ("schema_version", "20250312"), ("system_name", "Cura"),
                                  ("store", "sqlite")))] == 1

    def test_every_family_of_the_catalogue_in_order(self, log: MinLog) -> None:
        """collect returns each catalogue family once, in order, each sample labelled as
        its family says."""
        families = minlog.metrics.collect(log)
        assert [f.spec for f in families] == list(CATALOGUE)
        minlog.metrics.check_families(families)

    def test_a_failing_store_is_store_up_0(self, log: MinLog) -> None:
        """When the store fails, store_up is 0 and the outbox families are empty."""
        log.store.close()
        v = minlog.metrics.collect(log)
        by = {f.name: f for f in v}
        assert by["minlog_store_up"].samples == (Sample((), 0.0),)
        assert by["minlog_outbox_pending"].samples == ()

    def test_card_fetches_and_expiry_times(self, tmp_path: Path) -> None:
        """Over HTTP: the first card, a renewal after the service refused it, the card's and
        the certificate's expiry times."""
        with FakeNSP(cvr=CVR) as nsp:
            t = Minlog2Transport(service_url=nsp.service_url, sts_url=nsp.sts_url, cvr=CVR,
                                 credentials=CERT, system_name="Cura",
                                 care_provider_name="K")
            with MinLog.open(tmp_path / "m.sqlite", transport=t, system_name="Cura",
                             start_worker=False, exit_timeout=0.0) as log:
                log.record_many(accesses(2))
                assert log.flush(timeout=10)
                nsp.expire_cards()
                log.record_many(accesses(2, first=50))
                assert log.flush(timeout=10)
                v = values(minlog.metrics.collect(log))
                expires = t.cards.expires
        fetched = {dict(labels)["reason"]: n for (name, labels), n in v.items()
                   if name == "minlog_card_fetches_total"}
        assert fetched == {"first": 1, "expiring": 0, "refused": 1}
        assert expires is not None
        t0 = (("tenant", ""),)
        assert v[("minlog_card_expiry_timestamp_seconds", t0)] == expires.timestamp()
        cert = t.credentials.certificate.not_valid_after_utc.timestamp()
        assert v[("minlog_certificate_expiry_timestamp_seconds", t0)] == cert


#: The text format's lines (Prometheus exposition format 0.0.4).
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_LABELS = rf"\{{(?:[a-zA-Z_][a-zA-Z0-9_]*={_VALUE}(?:,[a-zA-Z_][a-zA-Z0-9_]*={_VALUE})*)?\}}"
_NUMBER = r"(?:[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)|[+-]Inf|NaN)"
HELP = re.compile(rf"# HELP ({_NAME}) (?:[^\\\n]|\\\\|\\n)*")
TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE = re.compile(rf"({_NAME})(?:{_LABELS})? {_NUMBER}")


def check_exposition(text: str) -> None:
    """Hold ``text`` to the format's rules: the grammar of each line, one HELP and TYPE per
    family before its samples, families contiguous, a final line feed."""
    assert text.endswith("\n")
    done: set[str] = set()
    current = None
    for line in text[:-1].split("\n"):
        if m := HELP.fullmatch(line):
            name = m.group(1)
            assert name not in done, f"{name} twice"
            done.add(name)
            current, typed = name, False
        elif m := TYPE.fullmatch(line):
            assert m.group(1) == current, line
            assert not typed, line
            typed = True
        else:
            m = SAMPLE.fullmatch(line)
            assert m is not None, f"not a sample line: {line!r}"
            assert m.group(1) == current, f"{line!r} outside its family"
            assert typed, f"{line!r} before its TYPE"


class TestPrometheusFormat:
    def test_the_rendering_follows_the_format(self, log: MinLog) -> None:
        """A real instance's metrics are valid text format, family by family."""
        check_exposition(minlog.metrics.render_prometheus(log).decode())

    def test_the_reference_parser_reads_the_same_values(self, log: MinLog) -> None:
        """prometheus_client's own parser reads every family and value we wrote."""
        from prometheus_client.parser import text_string_to_metric_families

        families = minlog.metrics.collect(log)
        text = minlog.metrics.render_prometheus(families).decode()
        parsed = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                parsed[(s.name, tuple(sorted(s.labels.items())))] = s.value
        ours = {(n, tuple(sorted(labels))): v for (n, labels), v in values(families).items()}
        assert parsed == ours

    @given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=30),
           st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r"),
                   max_size=60).map(str.strip))
    def test_any_label_value_and_help_survive(self, value: str, help_text: str) -> None:
        """Backslashes, quotes, line feeds and any Unicode in label values and help text
        are escaped so that the reference parser reads them back unchanged (help text
        without a carriage return, which the format cannot escape, nor white space at its
        ends, which parsers drop: ours has neither)."""
        from prometheus_client.parser import text_string_to_metric_families

        spec = FamilySpec("t_total", "counter", "1", ("x",), "t", help_text)
        text = minlog.metrics.render_prometheus(
            [MetricFamily(spec, (Sample((("x", value),), 1.5),))]).decode()
        check_exposition(text)
        (fam,) = text_string_to_metric_families(text)
        assert fam.documentation == help_text
        assert [(s.labels, s.value) for s in fam.samples] == [({"x": value}, 1.5)]

    @pytest.mark.parametrize(("value", "text"), [
        (3.0, "3"), (0.25, "0.25"), (1e300, "1e+300"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
        (2.0**60, "1.152921504606847e+18"), (-7.0, "-7")])
    def test_numbers(self, value: float, text: str) -> None:
        """Integers without a fraction, floats as Python writes them, infinities as +Inf."""
        spec = FamilySpec("g", "gauge", "1", (), "g", "h")
        out = minlog.metrics.render_prometheus([MetricFamily(spec, (Sample((), value),))])
        assert out.decode().splitlines()[-1] == f"g {text}"

    @pytest.mark.parametrize(("args", "says"), [
        (("1bad", "gauge", "1", (), "x", "h"), "metric name"),
        (("c", "counter", "1", (), "x", "h"), "_total"),
        (("g", "gauge", "1", ("__x",), "x", "h"), "label name"),
        (("g", "gauge", "1", ("a-b",), "x", "h"), "label name")])
    def test_bad_names_are_refused(self, args: tuple[str, ...], says: str) -> None:
        """Names the format does not allow are refused when the family is declared."""
        with pytest.raises(ValueError, match=says):
            FamilySpec(*args)  # type: ignore[arg-type]

    def test_two_samples_with_the_same_labels_are_refused(self) -> None:
        """A family cannot hold two samples with the same labels."""
        spec = FamilySpec("g", "gauge", "1", ("a",), "g", "h")
        s = Sample((("a", "1"),), 1.0)
        with pytest.raises(ValueError, match="two samples"):
            minlog.metrics.render_prometheus([MetricFamily(spec, (s, s))])


class TestEndpoint:
    def test_serve_answers_a_scrape(self, log: MinLog) -> None:
        """`serve` answers GET /metrics with the text format; other paths 404, POST 405."""
        with minlog.metrics.serve(log, 0) as server:
            r = httpx.get(server.url)
            assert r.status_code == 200
            assert r.headers["content-type"] == minlog.metrics.CONTENT_TYPE
            check_exposition(r.text)
            assert 'minlog_outbox_pending{tenant=""} 3' in r.text.splitlines()
            assert httpx.get(server.url.replace("/metrics", "/other")).status_code == 404
            assert httpx.post(server.url).status_code == 405
            head = httpx.head(server.url)
            assert head.status_code == 200
            assert head.content == b""

    def test_the_wsgi_app(self, log: MinLog) -> None:
        """The WSGI app answers like the server (for the delivery service's mount)."""
        from wsgiref.util import setup_testing_defaults

        app = minlog.metrics.wsgi_app(log)
        got: list[object] = []
        environ: dict[str, object] = {"PATH_INFO": "/metrics"}
        setup_testing_defaults(environ)
        body = b"".join(app(environ, lambda status, headers: got.append((status, headers))))
        assert got[0] == ("200 OK", [("Content-Type", minlog.metrics.CONTENT_TYPE),
                                     ("Content-Length", str(len(body)))])
        check_exposition(body.decode())


class TestOpenTelemetry:
    def test_the_core_never_imports_opentelemetry(self) -> None:
        """`import minlog` and `import minlog.metrics` import no opentelemetry."""
        code = textwrap.dedent("""\
            import sys
            import minlog, minlog.metrics
            assert not [m for m in sys.modules if m.startswith("opentelemetry")]
            """)
        subprocess.run([sys.executable, "-c", code], check=True)

    def test_instruments_report_through_the_sdk(self, log: MinLog) -> None:
        """Observable instruments on a MeterProvider report the same figures, with units,
        attributes, counters as monotonic sums and one store read per collection."""
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from minlog.metrics import otel

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        otel.instrument(log, provider)
        data = reader.get_metrics_data()
        assert data is not None
        got = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                assert sm.scope.name == "minlog"
                for m in sm.metrics:
                    got[m.name] = m
        assert set(got) <= {spec.otel_name for spec in CATALOGUE}
        pending = got["minlog.outbox.pending"]
        assert pending.unit == "{entry}"
        ((point),) = pending.data.data_points
        assert (dict(point.attributes), point.value) == ({"tenant": ""}, 3)
        delivered = got["minlog.delivered"]
        assert delivered.data.is_monotonic
        assert [p.value for p in delivered.data.data_points] == [9]
        sends = {p.attributes["kind"]: p.value for p in got["minlog.failed_sends"].data.data_points}
        assert sends == {"transient": 1, "refused": 0}
        provider.shutdown()
