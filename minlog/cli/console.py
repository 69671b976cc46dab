"""What the ``minlog`` command writes to standard error: log events and progress.

* `log_to_stderr`: the library's structured events (`minlog.events`) as one line each,
  at WARNING and above by default, INFO with ``-v`` and DEBUG with ``-vv``; ``text``
  (``time level logger event: message [field=value ...]``) or ``json`` (one object per
  line with ``time``, ``level``, ``logger``, ``event``, the event's fields and
  ``message``).
* `Progress`: lines ``minlog COMMAND: ...`` for long commands; a bar redrawn with ``\\r``
  only when standard error is a terminal (a log file or a pipe gets whole lines, at most
  one per ``every`` seconds).

Standard output carries the command's answer alone (one JSON document with ``--json``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Final, TextIO

from minlog.events import EVENTS, redact

__all__ = ["LOG_FORMATS", "EventFormatter", "Progress", "log_to_stderr", "write_json"]

LOG_FORMATS: Final = ("text", "json")
_LEVELS: Final = {0: logging.WARNING, 1: logging.INFO}


def write_json(out: TextIO, document: dict[str, Any]) -> None:
    """The one JSON document of a command with ``--json``, on one line."""
    out.write(json.dumps(document, ensure_ascii=False) + "\n")


class EventFormatter(logging.Formatter):
    """One line per record: ``text`` or ``json`` (see the module docstring)."""

    def __init__(self, form: str = "text") -> None:
        super().__init__()
        if form not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
        self.form = form

    def format(self, record: logging.LogRecord) -> str:
        when = _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        event = str(getattr(record, "event", ""))
        spec = EVENTS.get(event)
        fields = {name: getattr(record, name) for name in (spec.fields if spec else ())
                  if hasattr(record, name)}
        message = redact(record.getMessage())
        if record.exc_info and self.form == "text":
            message += " | " + redact(self.formatException(record.exc_info)).replace(
                "\n", " | ")
        if self.form == "json":
            doc: dict[str, object] = {"time": when, "level": record.levelname,
                                      "logger": record.name, "event": event or None,
                                      **fields, "message": message}
            return json.dumps(doc, ensure_ascii=False, default=str)
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        head = f"{when} {record.levelname} {record.name}" + (f" {event}" if event else "")
        return f"{head}: {message}" + (f" [{tail}]" if tail else "")


def log_to_stderr(verbosity: int = 0, form: str = "text",
                  stream: TextIO | None = None) -> Callable[[], None]:
    """Send the ``minlog`` loggers' records to ``stream`` (standard error) at WARNING,
    INFO (``verbosity`` 1) or DEBUG (2 and more); returns what undoes it."""
    logger = logging.getLogger("minlog")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(EventFormatter(form))
    level = _LEVELS.get(verbosity, logging.DEBUG)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(before)
        handler.flush()

    return undo


class Progress:
    """Progress lines of one command on ``stream`` (standard error by default)."""

    def __init__(self, command: str, *, every: float = 10.0, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.command = command
        self.every = every
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        #: Whether the stream is a terminal (only then is a bar redrawn in place).
        self.terminal = bool(isatty and isatty())
        self._last = time.monotonic()
        self._open_bar = False

    def line(self, text: str) -> None:
        """One line, now."""
        if not self.enabled:
            return
        self._end_bar()
        self.stream.write(f"minlog {self.command}: {text}\n")
        self.stream.flush()
        self._last = time.monotonic()

    def due(self) -> bool:
        """Whether ``every`` seconds have passed since the last line (a real-time
        interval for a person watching; the library's clock is not asked)."""
        return time.monotonic() - self._last >= self.every

    def bar(self, done: int, total: int, text: str = "") -> None:
        """A bar redrawn in place on a terminal; elsewhere a line when `due` or done."""
        if not self.enabled:
            return
        if not self.terminal:
            if self.due() or done >= total:
                self.line(f"{done:,}/{total:,} {text}".rstrip())
            return
        width = 30
        filled = width * done // max(total, 1)
        self.stream.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done:>9,}/"
                          f"{total:,} {text}")
        self.stream.flush()
        self._open_bar = True
        if done >= total:
            self._end_bar()

    def _end_bar(self) -> None:
        if self._open_bar:
            self.stream.write("\n")
            self._open_bar = False
