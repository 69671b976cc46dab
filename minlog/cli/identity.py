"""The identity commands of ``minlog``: trace a code a citizen was shown.

* ``minlog resolve STORE --organisation ID CODE``: the employee behind one code (id, its
  source, and the name when the code was issued), or why there is none: the code was
  mistyped (its check symbol does not match) or no employee of that organisation has it.
* ``minlog codes STORE --organisation ID [--format csv|json] [--output FILE]``: every code
  of an organisation with its employee, so a municipality can trace codes without the
  running EOJ system.

Both read the store's alias registry with the store's key. Their answers hold employee ids
(CPR numbers for staff identified by CPR): they are operator actions on the store, as
reading the store itself is. No refusal ever repeats what was typed (it could be a CPR
number typed in the wrong place).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, TextIO

from minlog.core.model import Organisation
from minlog.errors import ConfigurationError
from minlog.identity.codes import IssuedCode

if TYPE_CHECKING:
    from minlog.client.facade import MinLog

__all__ = ["CSV_COLUMNS", "add_commands", "cmd_codes", "cmd_resolve"]

#: The columns of ``minlog codes --format csv``, in order.
CSV_COLUMNS: Final = ("organisation_source", "organisation_id", "code", "shown_code", "kind",
                      "employee_source", "employee_id", "employee_name")
#: What ``minlog resolve`` exits with: found, no such code here, nothing typed, mistyped.
EXIT_FOUND, EXIT_UNKNOWN, EXIT_EMPTY, EXIT_MISTYPED = 0, 1, 2, 3
_PROTECT: Final = ("minlog: this listing holds employee ids (CPR numbers for staff "
                   "identified by CPR) and names: keep it as safe as the store, and delete "
                   "it when the question is answered\n")


def _open(args: argparse.Namespace) -> AbstractContextManager[MinLog]:
    from minlog.cli.main import _open_for_ops  # the one way the commands open a store

    return _open_for_ops(args)


def _organisation(args: argparse.Namespace) -> Organisation:
    return Organisation(args.organisation, args.organisation_source)


def _employee(c: IssuedCode) -> dict[str, str | None]:
    return {"source": c.employee_source, "id": c.employee_id, "name": c.name}


def cmd_resolve(args: argparse.Namespace, out: TextIO) -> int:
    """Find the employee behind an identity code a citizen was shown: the employee's id
    and its source, and the name when the code was issued. The code may be typed as
    shown ("Medarbejder K7Q4-9MX2", "AJ2, Hjemmeplejen Nord"), bare, in any case, with
    spaces or a hyphen between the groups ("k7q4 9mx2"), with O for 0 or I/L for 1.
    A mistyped code (its check symbol does not match) is told apart from a code no
    employee of the organisation has. Exit status: 0 found, 1 no such code in the
    organisation, 2 no code given, 3 mistyped."""
    org = _organisation(args)
    with _open(args) as log:
        found = log._identity.lookup(org, " ".join(args.code))
    where = f"{org.source} {org.id}"
    if args.json:
        answer: dict[str, Any] = {"status": found.status,
                                  "organisation": {"source": org.source, "id": org.id}}
        if found.issued is not None:
            answer.update(code=found.issued.shown_code, kind=found.issued.kind,
                          employee=_employee(found.issued))
        elif found.status == "unknown":
            answer["check_symbol_right"] = found.checked
        out.write(json.dumps(answer, ensure_ascii=False) + "\n")
    elif found.issued is not None:
        c = found.issued
        name = c.name or "(not recorded: the code was issued before minlog kept names)"
        out.write(f"code:            {c.shown_code} ({c.kind}) in {where}\n"
                  f"employee id:     {c.employee_id}\n"
                  f"employee source: {c.employee_source}\n"
                  f"name:            {name}\n")
    elif found.status == "mistyped":
        out.write("this code is mistyped: its check symbol does not match (or a symbol is "
                  "missing or extra). Ask for the code again; O and 0, and I, L and 1, are "
                  "read as the same.\n")
    elif found.status == "empty":
        out.write("no code given\n")
    else:
        why = (" (its check symbol is right: is it a code of another unit?)" if found.checked
               else "")
        out.write(f"no employee of {where} has this code{why}\n")
    return {"found": EXIT_FOUND, "unknown": EXIT_UNKNOWN, "empty": EXIT_EMPTY,
            "mistyped": EXIT_MISTYPED}[found.status]


def _cell(value: str | None) -> str:
    """A CSV cell a spreadsheet shows as text: a leading = + - @ (a formula to Excel and
    LibreOffice) gets a leading apostrophe."""
    if not value:
        return ""
    return "'" + value if value[0] in "=+-@\t\r" else value


def _render(org: Organisation, codes: Sequence[IssuedCode], form: str) -> str:
    if form == "json":
        return json.dumps({
            "organisation": {"source": org.source, "id": org.id},
            "codes": [{"code": c.code, "shown_code": c.shown_code, "kind": c.kind,
                       "employee": _employee(c)} for c in codes],
        }, ensure_ascii=False, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in codes:
        writer.writerow([org.source, org.id, c.code, c.shown_code, c.kind,
                         c.employee_source, _cell(c.employee_id), _cell(c.name)])
    return buffer.getvalue()


def _write_new(path: str, text: str) -> None:
    """Write ``text`` to a new file only its owner can read (mode 0600); an existing file
    is never overwritten."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(
            f"{path} exists: choose another file, or remove it first") from None
    except OSError as e:
        raise ConfigurationError(f"cannot create {path}: {e}") from e
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def cmd_codes(args: argparse.Namespace, out: TextIO) -> int:
    """List every identity code of an organisation with its employee (id, source, name
    when the code was issued), as CSV or JSON, so that a municipality can trace its codes
    without the running system. The listing holds employee ids (CPR numbers for staff
    identified by CPR): it is an operator action on the store; --output writes a new file
    only its owner can read (mode 0600) and never overwrites one."""
    org = _organisation(args)
    with _open(args) as log:
        codes = log._identity.codes(org)
    text = _render(org, codes, "json" if args.json else args.format)
    sys.stderr.write(_PROTECT)
    if args.output:
        _write_new(args.output, text)
        sys.stderr.write(f"minlog: {len(codes)} codes written to {args.output} (mode 0600)\n")
    else:
        out.write(text)
    return 0


def add_commands(store_parser: Callable[[str, str, str | None], argparse.ArgumentParser]
                 ) -> None:
    """Add ``resolve`` and ``codes`` with ``store_parser(name, help, description)``, the
    parser factory of `minlog.cli.main` for commands that open a store."""
    def organisation(p: argparse.ArgumentParser) -> None:
        p.add_argument("--organisation", required=True,
                       help="the organisation's (unit's) id, e.g. its SOR code")
        p.add_argument("--organisation-source", default="SOR",
                       help="the organisation id's source (default SOR)")

    resolve = store_parser("resolve", "find the employee behind a shown code",
                           cmd_resolve.__doc__)
    resolve.add_argument("code", nargs="+",
                         help='the code or the shown text, e.g. "Medarbejder K7Q4-9MX2" '
                              "(words typed apart are joined)")
    organisation(resolve)
    resolve.set_defaults(func=cmd_resolve)

    codes = store_parser("codes", "list an organisation's identity codes (CSV or JSON)",
                         cmd_codes.__doc__)
    organisation(codes)
    codes.add_argument("--format", choices=("csv", "json"), default="csv",
                       help="csv (default) or json (the same as --json)")
    codes.add_argument("--output", default=None,
                       help="write to this new file (mode 0600) instead of standard output")
    codes.set_defaults(func=cmd_codes)
