"""The receiver of a benchmark: `FakeNSP` (STS and RegisterService, strict) in a process of
its own, on loopback, as MinLog2 is a service of its own (it then takes no time from the
library's interpreter).

It counts what it accepts and forgets it (a morning's requests would otherwise fill its
memory). ``python -m minlog.bench.receiver --cvr C --at T`` runs one: it prints one JSON
line with its URLs, serves until its standard input closes or says ``stop``, then prints
one JSON line with its counts. `Receiver` starts and stops one from Python.
"""

from __future__ import annotations

import argparse
import json
import selectors
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from minlog.core.clock import ShiftedClock
from minlog.errors import ConfigurationError
from minlog.testing.fakensp import FakeNSP

__all__ = ["CountingNSP", "Receiver"]


class CountingNSP(FakeNSP):
    """A `FakeNSP` that keeps counts, not what it received."""

    accepted = 0

    def handle_service(self, body: bytes, headers: Mapping[str, str] | None = None
                       ) -> tuple[int, bytes, dict[str, str]]:
        answer = super().handle_service(body, headers)
        with self._lock:
            self.accepted += len(self.received)
            self.received.clear()
            self.requests.clear()
            self.headers.clear()
        return answer


class Receiver:
    """A `CountingNSP` in a child process. ``cvr`` is the CVR its cards must name; ``at``
    the wall time its clock starts at (the library's clock, so that ID cards are valid).
    """

    def __init__(self, cvr: str, at: float, *, startup_timeout: float = 60.0) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 - this interpreter, our module
            [sys.executable, "-m", "minlog.bench.receiver", "--cvr", cvr, "--at", repr(at)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            first = self._line(startup_timeout)
        except BaseException:
            self._proc.kill()
            self._proc.communicate()
            raise
        self.service_url: str = first["service_url"]
        self.sts_url: str = first["sts_url"]

    def _line(self, timeout: float) -> dict[str, Any]:
        out = self._proc.stdout
        assert out is not None
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise ConfigurationError("the benchmark's receiver did not start")
        line = out.readline()
        if not line:
            raise ConfigurationError("the benchmark's receiver ended early")
        data: dict[str, Any] = json.loads(line)
        return data

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """Stop the receiver; its counts (``accepted``, ``calls``, ``cards``)."""
        stdin = self._proc.stdin
        try:
            if stdin is not None and not stdin.closed:
                stdin.write("stop\n")
                stdin.close()
            counts: dict[str, int] = self._line(timeout)
        finally:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            finally:
                for pipe in (self._proc.stdin, self._proc.stdout):
                    if pipe is not None:
                        pipe.close()
        return counts

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            self.stop()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()


def main(argv: Sequence[str] | None = None, stdin: IO[str] | None = None,
         out: IO[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minlog.bench.receiver",
                                     description="A counting FakeNSP for minlog bench.")
    parser.add_argument("--cvr", required=True)
    parser.add_argument("--at", type=float, required=True, help="POSIX time of its clock")
    args = parser.parse_args(argv)
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    nsp = CountingNSP(cvr=args.cvr, clock=ShiftedClock(args.at))
    with nsp:
        out.write(json.dumps({"service_url": nsp.service_url, "sts_url": nsp.sts_url}) + "\n")
        out.flush()
        for line in stdin:  # until "stop" or the parent goes away
            if line.strip() == "stop":
                break
        with nsp._lock:
            counts = {"accepted": nsp.accepted, "calls": nsp.calls, "cards": nsp.cards_issued}
    out.write(json.dumps(counts) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a process
    raise SystemExit(main())
