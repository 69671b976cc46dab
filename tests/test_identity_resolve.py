"""Tracing a code back to the employee: `minlog resolve` and `minlog codes` (issue 11,
item 8): the check symbol, codes read out with spaces, the source and the name, and an
organisation's codes listed without the running system."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from minlog import (
    Access,
    AlternativeId,
    Employee,
    IdentityPolicy,
    Initials,
    MemoryTransport,
    MinLog,
    Organisation,
)
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.identity.codes import check_verdict, readings
from minlog.identity.formatters import ALPHABET, check_character
from minlog.identity.memory import MemoryAliasRegistry

KEY = bytes(range(32))
SECRET = b"kommunens-hemmelighed-2026"
NORD = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
SYD = Organisation("380000000000002", "SOR", "Misbrugscenter Syd")
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)
ANNE = Employee("0101701234", name="Anne Jensen", role="SOSU-hjælper")
BO = Employee("AUT-4711", source="Autorisation", name="Bo Ærø")


def bind(policy: IdentityPolicy, registry: Any = None) -> Any:
    return policy.bind(registry or MemoryAliasRegistry(),
                       subject=lambda e: f"{e.source}:{e.id}".encode(),
                       seal=lambda data, aad: data, unseal=lambda data, aad: data)


def mistype(code: str) -> str:
    """``code`` with its first symbol replaced by another symbol of the alphabet."""
    other = ALPHABET[(ALPHABET.index(code[0]) + 1) % len(ALPHABET)]
    return other + code[1:]


class TestReadings:
    @pytest.mark.parametrize("typed", [
        "Medarbejder K7Q4-9MX2", "K7Q4-9MX2", "k7q4-9mx2", "K7Q49MX2", "K7Q4 9MX2",
        "Medarbejder K7Q4 9MX2", "  k7q4   9mx2 ", "K7Q4\u20139MX2", "K7 Q4 9M X2",
        "Medarbejder nr. K7Q4-9MX2"])
    def test_a_code_read_out_in_any_form_is_read_as_the_code(self, typed: str) -> None:
        """Spaces, hyphens, case and the prefix do not change the code that is looked up."""
        assert "K7Q49MX2" in readings(typed)

    def test_lookalikes_are_read_as_digits(self) -> None:
        """O is read as 0, I and L as 1."""
        assert "K7Q409M1" in readings("k7q4-o9mi")

    def test_initials_with_the_unit(self) -> None:
        """Initials are read up to the comma that precedes the unit's name."""
        assert readings("AJ2, Hjemmeplejen Nord")[0] == "AJ2"
        assert readings("øj2")[0] == "ØJ2"

    def test_check_verdict(self) -> None:
        """A code whose check symbol matches is well formed; one wrong or missing symbol,
        or two swapped neighbours, make it mistyped; initials are not AlternativeId codes."""
        data = "K7Q49MX"
        code = data + check_character(data)
        shown = f"{code[:4]}-{code[4:]}"
        assert check_verdict(f"Medarbejder {shown}") == "well-formed"
        assert check_verdict(code.lower().replace("0", "o")) == "well-formed"
        assert check_verdict(mistype(code)) == "mistyped"
        assert check_verdict(code[:4] + " " + code[5:]) == "mistyped"  # a symbol missing
        assert check_verdict(code[1] + code[0] + code[2:]) == "mistyped"  # a swap
        assert check_verdict("AJ2, Hjemmeplejen Nord") == "not-alternative"
        assert check_verdict("   ") == "empty"


class TestLookup:
    def test_found_gives_id_source_and_name(self) -> None:
        """A code found says whose it is: id, source, and the name when it was issued."""
        ident = bind(IdentityPolicy(default=AlternativeId(SECRET)))
        shown, _ = ident(BO, NORD)
        found = ident.lookup(NORD, shown)
        assert found.status == "found"
        assert found.issued is not None
        assert (found.issued.employee_id, found.issued.employee_source, found.issued.name) == (
            "AUT-4711", "Autorisation", "Bo Ærø")
        assert found.issued.kind == "alternative-id"
        assert f"Medarbejder {found.issued.shown_code}" == shown

    def test_mistyped_is_told_apart_from_another_units_code(self) -> None:
        """A mistyped code is "mistyped"; a correct code of another unit is "unknown"."""
        ident = bind(IdentityPolicy(default=AlternativeId(SECRET)))
        shown, _ = ident(ANNE, SYD)
        code = shown.split(" ")[1].replace("-", "")
        assert ident.lookup(SYD, code).status == "found"
        assert ident.lookup(NORD, code).status == "unknown"
        assert ident.lookup(SYD, mistype(code)).status == "mistyped"
        assert ident.lookup(NORD, "AJ7").status == "unknown"
        assert ident.lookup(NORD, " ").status == "empty"

    def test_codes_read_out_with_spaces_resolve(self) -> None:
        """"K7Q4 9MX2" and "k7q4-9mx2" resolve like "K7Q4-9MX2"."""
        ident = bind(IdentityPolicy(default=AlternativeId(SECRET)))
        shown, _ = ident(ANNE, NORD)
        code = shown.split(" ")[1]
        for typed in (code.replace("-", " "), code.lower(), f"Medarbejder {code[:4]} {code[5:]}"):
            assert ident.resolve(NORD, typed) == ANNE.id

    def test_codes_of_an_organisation(self) -> None:
        """Every code of an organisation is listed with its employee, numbers in order."""
        ident = bind(IdentityPolicy(default=Initials()))
        staff = [Employee(f"A{i}", source="Autorisation", name=f"Anne{i} Jensen")
                 for i in range(11)]
        for e in staff:
            ident(e, NORD)
        ident(BO, SYD)
        listed = ident.codes(NORD)
        assert [c.code for c in listed] == ["AJ", *(f"AJ{n}" for n in range(2, 12))]
        assert [c.employee_id for c in listed] == [e.id for e in staff]
        assert {c.kind for c in listed} == {"initials"}
        assert [c.employee_id for c in ident.codes(SYD)] == ["AUT-4711"]

    def test_codes_issued_before_names_were_recorded_still_resolve(self) -> None:
        """A registry row of the older form (source and id only) resolves without a name."""
        registry = MemoryAliasRegistry()
        registry.add_alias("SOR:380000000000001", "AJ", b"s", b"CPR\x1f0101701234")
        ident = bind(IdentityPolicy(default=Initials()), registry)
        found = ident.lookup(NORD, "aj")
        assert found.issued is not None
        assert (found.issued.employee_id, found.issued.name) == ("0101701234", None)
        assert ident.resolve(NORD, "AJ") == "0101701234"


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A SQLite store with codes of both kinds; its key file; the codes shown."""
    db = tmp_path / "m.sqlite"
    shown: dict[str, str] = {}
    for org, policy, citizen in (
            (SYD, IdentityPolicy(default=AlternativeId(SECRET)), "0303303456"),
            (NORD, IdentityPolicy(default=Initials()), "0404404567")):
        t = MemoryTransport()
        with MinLog.open(db, transport=t, system_name="Cura", key=KEY, identity=policy,
                         clock=FixedClock(NOW), start_worker=False) as log:
            assert all(log.record_many([Access(citizen, e, org, "Opslag", NOW)
                                        for e in (ANNE, BO)]))
            assert log.flush(timeout=10)
        for r in t.delivered:
            assert r.user_person_name is not None
            shown[f"{org.id}:{r.user_person_identifier}"] = r.user_person_name
    (tmp_path / "k").write_text(KEY.hex())
    return db, tmp_path / "k", shown


run = run_cli


class TestResolveCommand:
    def test_prints_id_source_and_name(self, store: tuple[Path, Path, dict[str, str]]) -> None:
        """`minlog resolve` prints the employee's id with its source, and the name."""
        db, key, shown = store
        code = shown[f"{SYD.id}:AUT-4711"]
        status, out, _ = run("resolve", str(db), "--key", str(key), "--organisation", SYD.id,
                             code)
        assert status == 0
        assert "AUT-4711" in out
        assert "Autorisation" in out
        assert "Bo Ærø" in out

    def test_a_code_read_out_with_a_space(self, store: tuple[Path, Path, dict[str, str]]
                                          ) -> None:
        """"K7Q4 9MX2" typed as two words is found."""
        db, key, shown = store
        code = shown[f"{SYD.id}:{ANNE.id}"].split(" ")[1]
        status, out, _ = run("resolve", str(db), "--key", str(key), "--organisation", SYD.id,
                             code[:4].lower(), code[5:].lower())
        assert status == 0
        assert ANNE.id in out

    def test_json(self, store: tuple[Path, Path, dict[str, str]]) -> None:
        """--json prints the answer for a program."""
        db, key, shown = store
        status, out, _ = run("resolve", str(db), "--key", str(key), "--organisation", NORD.id,
                             "--json", shown[f"{NORD.id}:AUT-4711"])
        assert status == 0
        assert json.loads(out) == {
            "status": "found", "organisation": {"source": "SOR", "id": NORD.id},
            "code": "BÆ", "kind": "initials", "employee": {
                "source": "Autorisation", "id": "AUT-4711", "name": "Bo Ærø"}}

    def test_mistyped_code_says_so(self, store: tuple[Path, Path, dict[str, str]]) -> None:
        """A code with a wrong symbol is reported as mistyped, not as another unit's."""
        db, key, shown = store
        code = shown[f"{SYD.id}:{ANNE.id}"].split(" ")[1].replace("-", "")
        status, out, _ = run("resolve", str(db), "--key", str(key), "--organisation", SYD.id,
                             mistype(code))
        assert status == 3
        assert "mistyped" in out
        assert "check symbol" in out

    def test_other_units_code_says_so(self, store: tuple[Path, Path, dict[str, str]]) -> None:
        """A correct code asked of the wrong unit says no employee there has it."""
        db, key, shown = store
        status, out, _ = run("resolve", str(db), "--key", str(key), "--organisation", NORD.id,
                             shown[f"{SYD.id}:{ANNE.id}"])
        assert status == 1
        assert "no employee of SOR 380000000000001 has this code" in out
        assert "check symbol is right" in out

    def test_no_cpr_number_in_any_answer_but_the_found_one(
            self, store: tuple[Path, Path, dict[str, str]]) -> None:
        """Refusals never print a CPR number, even one typed by mistake as the code."""
        db, key, _ = store
        for typed in ("0101701234", "010170-1234"):
            status, out, err = run("resolve", str(db), "--key", str(key), "--organisation",
                                   NORD.id, typed)
            assert status != 0
            assert "0101701234" not in out + err
            assert "010170" not in out + err


class TestCodesCommand:
    def test_csv(self, store: tuple[Path, Path, dict[str, str]]) -> None:
        """`minlog codes --format csv` lists the organisation's codes with their employees."""
        db, key, shown = store
        status, out, _ = run("codes", str(db), "--key", str(key), "--organisation", SYD.id,
                             "--format", "csv")
        assert status == 0
        rows = list(csv.DictReader(io.StringIO(out)))
        assert {r["employee_id"] for r in rows} == {ANNE.id, "AUT-4711"}
        by_id = {r["employee_id"]: r for r in rows}
        assert f"Medarbejder {by_id[ANNE.id]['shown_code']}" == shown[f"{SYD.id}:{ANNE.id}"]
        assert by_id["AUT-4711"]["employee_source"] == "Autorisation"
        assert by_id["AUT-4711"]["employee_name"] == "Bo Ærø"
        assert {r["kind"] for r in rows} == {"alternative-id"}
        assert {r["organisation_id"] for r in rows} == {SYD.id}

    def test_json_to_a_protected_file(self, store: tuple[Path, Path, dict[str, str]],
                                      tmp_path: Path) -> None:
        """--output writes a file only its owner can read, and never overwrites one."""
        db, key, _ = store
        target = tmp_path / "nord.json"
        status, _, err = run("codes", str(db), "--key", str(key), "--organisation", NORD.id,
                             "--format", "json", "--output", str(target))
        assert status == 0
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
        data = json.loads(target.read_text(encoding="utf-8"))
        assert data["organisation"] == {"source": "SOR", "id": NORD.id}
        assert [c["code"] for c in data["codes"]] == ["AJ", "BÆ"]
        assert "employee ids" in err
        status, _, err = run("codes", str(db), "--key", str(key), "--organisation", NORD.id,
                             "--output", str(target))
        assert status != 0
        assert "exists" in err

    def test_an_organisation_without_codes(self, store: tuple[Path, Path, dict[str, str]]
                                           ) -> None:
        """An organisation with no codes gives an empty listing, not an error."""
        db, key, _ = store
        status, out, _ = run("codes", str(db), "--key", str(key), "--organisation", "999",
                             "--format", "json")
        assert status == 0
        assert json.loads(out)["codes"] == []

    def test_runs_as_a_process(self, store: tuple[Path, Path, dict[str, str]]) -> None:
        """`python -m minlog codes` works as a process (CSV by default)."""
        db, key, _ = store
        done = subprocess.run([sys.executable, "-m", "minlog", "codes", str(db), "--key",
                               str(key), "--organisation", NORD.id],
                              capture_output=True, text=True, check=True)
        assert done.stdout.splitlines()[0].startswith("organisation_source,organisation_id,code")
