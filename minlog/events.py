"""Structured log events: what ``minlog`` tells an operator, in a schema a machine can read.

Every record ``minlog`` logs is one of the events in `EVENTS`, on the ``minlog`` logger or
one of its children (``minlog.delivery``, ``minlog.transport``), and carries its name and
fields as attributes of the `logging.LogRecord` (``extra=``), so that a JSON log formatter
picks them up::

    {"event": "dead_letters", "tenant": "", "count": 3, "code": "E-DUP",
     "origin": "receiver", "message": "3 entries became dead letters: ..."}

The names and fields are stable (adding a field is not a breaking change; renaming or
removing one is). `docs/observability.md` lists them; a test holds that list, this
catalogue and every record the library logs in step.

No event ever carries a CPR number or a payload: entries are counted and named by their
fault code, never shown. Texts that come from outside (a receiver's fault string, an
exception's message) are passed through `redact`, which blanks anything shaped like a
CPR number, before they are logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Final

import attrs

__all__ = ["EVENTS", "Event", "emit", "redact"]


@attrs.frozen(slots=True)
class Event:
    """One kind of log record: its logger, level, fields (besides ``event``) and meaning."""

    logger: str
    level: int
    fields: tuple[str, ...]
    doc: str


_D, _T, _M = "minlog.delivery", "minlog.transport", "minlog"
_I, _W, _E = logging.INFO, logging.WARNING, logging.ERROR

#: Every event ``minlog`` logs, by name.
EVENTS: Final[Mapping[str, Event]] = {
    "batch_delivered": Event(_D, _I, ("tenant", "entries", "acked", "refused", "attempt",
                                      "seconds"),
                             "A request was answered: ``acked`` of its ``entries`` were taken, "
                             "``refused`` were refused (see ``dead_letters``)."),
    "send_failed": Event(_D, _W, ("tenant", "entries", "attempt", "retry_in", "code", "error"),
                         "A request failed for now (outage, timeout, 5xx, 429, an STS "
                         "problem); its entries are sent again in ``retry_in`` seconds."),
    "request_refused": Event(_D, _W, ("tenant", "entries", "code"),
                             "The receiver refused a whole request for good; its entries are "
                             "sent again in halves to find the ones it refuses."),
    "dead_letters": Event(_D, _W, ("tenant", "count", "code", "origin"),
                          "Entries became dead letters with fault ``code``. ``origin``: "
                          "``receiver`` (refused by name), ``request`` (a refused request, "
                          "isolated), ``unattributed`` (refused without a name, found by "
                          "splitting), ``unreadable`` (cannot be opened with the store's "
                          "key), ``beyond-retention`` (older than MinLog2 keeps logs)."),
    "unattributed_failures": Event(_D, _W, ("tenant", "count", "entries"),
                                   "The receiver reported failures without naming the "
                                   "entries; the ``entries`` of unknown fate are sent again "
                                   "in halves until each one's fate is known."),
    "key_problem": Event(_D, _E, ("tenant", "count"),
                         "Entries cannot be opened with this store's key (sealed with a "
                         "key replaced by ``minlog rekey``, or altered); they are dead "
                         "letters (``minlog:unreadable``)."),
    "settle_failed": Event(_D, _E, ("error",),
                           "The store failed to record the outcome of sent entries (their "
                           "acknowledgement, reschedule or dead letter); it is tried again "
                           "before the next claim, and nothing new is claimed meanwhile."),
    "step_failed": Event(_D, _E, ("error",),
                         "A delivery round failed (usually the store); the worker keeps "
                         "going and tries again after a pause."),
    "backlog": Event(_D, _W, ("tenant", "pending", "oldest_pending_age", "threshold"),
                     "The oldest undelivered entry has waited longer than ``threshold`` "
                     "seconds (option ``backlog_warning``); repeated while it lasts."),
    "backlog_cleared": Event(_D, _I, ("tenant", "pending", "threshold"),
                             "The oldest undelivered entry is younger than ``threshold`` "
                             "again."),
    "card_fetched": Event(_T, _I, ("cvr", "reason", "expires"),
                          "A new ID card was fetched from the STS. ``reason``: ``first``, "
                          "``expiring`` (about to expire) or ``refused`` (the service "
                          "refused the card); ``expires``: its end of validity (ISO 8601)."),
    "card_refused": Event(_T, _I, ("cvr", "code"),
                          "The service refused the ID card (a DGWS card fault, a "
                          "WS-Security token fault, HTTP 401/403); it is renewed at once."),
    "card_refused_again": Event(_T, _W, ("cvr", "code"),
                                "The service refused a freshly issued card too; the request "
                                "fails for now and the retry policy waits."),
    "sts_refused": Event(_T, _E, ("cvr", "code"),
                         "The STS refused the organisation's signed system card: check the "
                         "certificate, the CVR and the system's registration at the STS."),
    "beyond_horizon": Event(_M, _W, ("count", "horizon_days"),
                            "First-of-day logs older than the dedup horizon were accepted "
                            "(``beyond_horizon='deliver'``)."),
    "key_created": Event(_M, _I, ("path",),
                         "A new key file was created for the store; keep it with the "
                         "backups (not inside them): the outbox cannot be opened without it."),
    "key_replaced": Event(_M, _W, ("key_id",),
                          "An operator gave the store a new master key (``minlog rekey "
                          "--force``): what the old key sealed can no longer be opened."),
    "fork_waited": Event(_M, _E, ("seconds",),
                         "A fork waited ``seconds`` for minlog's threads to come out of the "
                         "stores and went ahead anyway: the child may find a store locked."),
    "configuration_error": Event(_M, _E, ("error",),
                                 "``MinLog.open`` refused its settings (the same "
                                 "`ConfigurationError` is raised)."),
    "collect_failed": Event("minlog.metrics", _W, ("error",),
                            "Metrics could not read the store (``minlog_store_up`` is 0)."),
    "worker_started": Event("minlog.service", _I, ("health_port",),
                            "``minlog worker`` delivers until SIGTERM or SIGINT; "
                            "``health_port``: the port of /healthz and /metrics on "
                            "127.0.0.1 (0: none)."),
    "worker_stopping": Event("minlog.service", _I, ("signal",),
                             "The worker was asked to stop: the round under way is "
                             "finished (its outcome recorded), nothing new is claimed."),
    "leases_released": Event("minlog.service", _W, ("count",),
                             "The round under way did not finish within the stop timeout: "
                             "its ``count`` entries were given back to pending at once "
                             "(sent again later; a request that reached the receiver "
                             "meanwhile makes them arrive twice)."),
    "worker_stopped": Event("minlog.service", _I, ("rounds", "delivered", "released"),
                            "The worker stopped: ``rounds`` delivery rounds, ``delivered`` "
                            "entries, ``released`` entries given back at the stop."),
    "closed": Event(_M, _I, ("delivered_all",),
                    "The instance was closed; ``delivered_all`` is False when entries were "
                    "left in the store for next time."),
}

#: Ten digits shaped like a CPR number (six, an optional hyphen, four), standing alone.
_CPR_LIKE: Final = re.compile(r"(?<![0-9A-Za-z])\d{6}-?\d{4}(?![0-9A-Za-z])")


def redact(text: str) -> str:
    """``text`` with anything shaped like a CPR number replaced by ``[cpr?]``."""
    return _CPR_LIKE.sub("[cpr?]", text)


def emit(event: str, message: str, *args: object, exc_info: bool = False,
         **fields: object) -> None:
    """Log ``event`` (a name in `EVENTS`) on its logger at its level: ``message % args``
    (redacted) with the event's fields as record attributes (strings redacted)."""
    spec = EVENTS[event]
    logger = logging.getLogger(spec.logger)
    if not logger.isEnabledFor(spec.level):
        return
    text = redact(message % args if args else message)
    extra: dict[str, object] = {"event": event}
    for name, value in fields.items():
        extra[name] = redact(value) if isinstance(value, str) else value
    logger.log(spec.level, text, extra=extra, exc_info=exc_info, stacklevel=2)
