"""Identity policies: full name, resolvable alternative id, initials; per organisation."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import danish_names

from minlog import (
    Access,
    ConfigurationError,
    Employee,
    MemoryTransport,
    MinLog,
    Organisation,
    ValidationError,
)
from minlog.core.clock import FixedClock
from minlog.core.days import COPENHAGEN
from minlog.identity.memory import MemoryAliasRegistry
from minlog.identity.policy import (
    ALPHABET,
    AlternativeId,
    FullName,
    IdentityPolicy,
    Initials,
    check_character,
    shorten_name,
)

KEY = bytes(range(32))
SECRET = b"kommunens-hemmelighed-2026"
NORD = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
SYD = Organisation("380000000000002", "SOR", "Misbrugscenter Syd")
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=COPENHAGEN)

#: The registry protocol in memory (the store's is tested through MinLog below).
MemoryRegistry = MemoryAliasRegistry


def bound(policy: IdentityPolicy, registry: MemoryRegistry | None = None):  # type: ignore[no-untyped-def]
    return policy.bind(registry or MemoryRegistry(),
                       subject=lambda e: f"{e.source}:{e.id}".encode(),
                       seal=lambda data, aad: data, unseal=lambda data, aad: data)


def employee(n: int, name: str = "Anne Jensen") -> Employee:
    return Employee(f"0101{70 + n % 30:02d}{n % 10000:04d}", name=name, role="SOSU-hjælper")


class TestFullName:
    def test_short_names_are_shown_as_registered(self) -> None:
        """A name within 50 characters is shown unchanged (white space folded)."""
        assert FullName()(Employee("0101701234", name="Åse  Ørsted"), NORD) == "Åse Ørsted"

    def test_long_names_abbreviate_middle_names_first(self) -> None:
        """Middle names become initials before anything else is cut."""
        name = "Anne-Sofie Margrethe Kirstine Christiansen von Østergaard-Rasmussen"
        assert shorten_name(name) == "Anne-Sofie M. K. C. von Østergaard-Rasmussen"

    def test_very_long_names_are_truncated_with_a_marker(self) -> None:
        """When first and last name alone are too long, the end is cut with an ellipsis."""
        shown = shorten_name("Bartholomæus " + "Kjærgaard" * 8)
        assert len(shown) == 50
        assert shown.endswith("…")

    @given(danish_names())
    def test_shown_name_is_never_empty_and_fits(self, name: str) -> None:
        """Whatever the name, the shown one is 1-50 characters and not blank."""
        shown = FullName()(Employee("0101701234", name=name), NORD)
        assert 0 < len(shown) <= 50
        assert shown.strip() == shown
        assert shown[0] == unicodedata.normalize("NFC", name)[0]

    def test_missing_name_is_refused(self) -> None:
        """An employee with no name cannot be shown by name."""
        with pytest.raises(ValidationError) as e:
            FullName()(Employee("0101701234"), NORD)
        assert e.value.field == "employee.name"

    @pytest.mark.parametrize("bad", ["", "   ", "Anne\x00Jensen", "Anne\nJensen"])
    def test_bad_names_are_refused_naming_the_field(self, bad: str) -> None:
        """Empty, blank and control-character names never reach a formatter."""
        with pytest.raises(ValidationError) as e:
            Employee("0101701234", name=bad)
        assert e.value.field == "employee.name"


class TestAlternativeId:
    def test_code_is_stable_short_and_readable(self) -> None:
        """The same employee and organisation always give the same 'Medarbejder XXXX-XXXX'."""
        alt = AlternativeId(SECRET)
        a, b = alt(employee(1), NORD), alt(employee(1), NORD)
        assert a == b
        prefix, code = a.split(" ")
        assert prefix == "Medarbejder"
        assert len(code) == 9
        assert code[4] == "-"
        assert set(code.replace("-", "")) <= set(ALPHABET)

    def test_code_differs_per_organisation_and_secret(self) -> None:
        """Another organisation or another secret gives another code."""
        alt = AlternativeId(SECRET)
        assert alt(employee(1), NORD) != alt(employee(1), SYD)
        assert alt(employee(1), NORD) != AlternativeId(SECRET + b"x")(employee(1), NORD)

    def test_code_reveals_no_cpr(self) -> None:
        """The shown code holds no digits run of the employee's CPR number."""
        e = employee(7)
        assert e.id[:6] not in AlternativeId(SECRET)(e, NORD)

    @given(st.text(ALPHABET, min_size=7, max_size=11), st.data())
    def test_check_character_catches_single_errors_and_swaps(self, code: str,
                                                             data: st.DataObject) -> None:
        """Every single wrong symbol and every swap of neighbours changes the check."""
        check = check_character(code)
        i = data.draw(st.integers(0, len(code) - 1))
        other = data.draw(st.sampled_from([c for c in ALPHABET if c != code[i]]))
        assert check_character(code[:i] + other + code[i + 1 :]) != check
        if i + 1 < len(code) and code[i] != code[i + 1]:
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
            assert check_character(swapped) != check

    def test_short_secret_is_a_configuration_error(self) -> None:
        """A guessable secret is refused."""
        with pytest.raises(ConfigurationError):
            AlternativeId(b"short")

    def test_collisions_extend_the_code(self) -> None:
        """A code already taken by another employee makes the next one longer."""
        registry = MemoryRegistry()
        ident = bound(IdentityPolicy(default=AlternativeId(SECRET)), registry)
        first = AlternativeId(SECRET)(employee(1), NORD).split(" ")[1].replace("-", "")
        registry.add_alias("SOR:380000000000001", first, b"someone else", b"x")
        name, _ = ident(employee(1), NORD)
        assert name is not None
        assert len(name.split(" ")[1].replace("-", "")) == 10

    @pytest.mark.slow
    def test_unique_across_a_million_employees(self) -> None:
        """One million employees of one organisation get one million distinct codes."""
        registry = MemoryRegistry()
        ident = bound(IdentityPolicy(default=AlternativeId(SECRET)), registry)
        shown = set()
        for n in range(1_000_000):
            e = Employee(f"E{n}", source="Autorisation", name="x")
            name, _ = ident(e, NORD)
            shown.add(name)
        assert len(shown) == 1_000_000
        assert len(registry.codes) == 1_000_000

    def test_resolve_round_trip(self) -> None:
        """The shown text, the bare code, lower case or with O for 0 all resolve back."""
        ident = bound(IdentityPolicy(default=AlternativeId(SECRET)))
        e = employee(3)
        name, _ = ident(e, NORD)
        assert name is not None
        code = name.split(" ")[1]
        for typed in (name, code, code.lower(), code.replace("-", ""), code.replace("0", "O")):
            assert ident.resolve(NORD, typed) == e.id
        assert ident.resolve(SYD, code) is None
        assert ident.resolve(NORD, "Medarbejder YYYY-YYYY") is None

    def test_role_is_hidden_by_default(self) -> None:
        """An alternative identification does not reveal the role either, unless asked."""
        assert bound(IdentityPolicy(default=AlternativeId(SECRET)))(employee(1), NORD)[1] is None
        shown = bound(IdentityPolicy(default=AlternativeId(SECRET, show_role=True)))
        assert shown(employee(1), NORD)[1] == "SOSU-hjælper"


class TestInitials:
    def test_initials_and_unit(self) -> None:
        """Initials skip particles and split hyphenated names; the unit follows."""
        ident = bound(IdentityPolicy(default=Initials()))
        name, _ = ident(Employee("0101701234", name="Anne-Sofie von Jensen"), NORD)
        assert name == "ASJ, Hjemmeplejen Nord"

    def test_same_initials_are_numbered(self) -> None:
        """Two employees with the same initials in one organisation get distinct codes."""
        ident = bound(IdentityPolicy(default=Initials()))
        a, _ = ident(Employee("0101701234", name="Anne Jensen"), NORD)
        b, _ = ident(Employee("0202802345", name="Aksel Juhl"), NORD)
        assert (a, b) == ("AJ, Hjemmeplejen Nord", "AJ2, Hjemmeplejen Nord")
        assert ident.resolve(NORD, b) == "0202802345"

    @given(danish_names(), st.text(min_size=1, max_size=200).filter(str.strip))
    @settings(max_examples=50)
    def test_always_fits(self, name: str, unit: str) -> None:
        """Initials plus any unit name fit in 50 characters."""
        try:
            org = Organisation("380000000000009", "SOR", unit)
        except ValidationError:
            return
        shown, _ = bound(IdentityPolicy(default=Initials()))(Employee("0101701234", name=name),
                                                              org)
        assert shown is not None
        assert 0 < len(shown) <= 50


class TestPolicy:
    def test_per_organisation_choice_in_one_batch(self, tmp_path: Path) -> None:
        """In one record_many of mixed organisations each gets its own formatter."""
        policy = IdentityPolicy(organisations={("SOR", SYD.id): AlternativeId(SECRET)})
        t = MemoryTransport()
        clock = NOW.timestamp() + 1
        e = employee(1)
        with MinLog.open(tmp_path / "m.sqlite", transport=t, system_name="Cura", key=KEY,
                         identity=policy, clock=FixedClock(clock), start_worker=False) as log:
            citizens = ["0303303456", "0404404567", "0505505678", "0606606789"]
            orgs = [NORD, SYD, SYD, NORD]
            batch = [Access(c, e, org, "Opslag", NOW)
                     for c, org in zip(citizens, orgs, strict=True)]
            assert all(log.record_many(batch))
            assert log.flush(timeout=10)
        by_org = {r.organisation_id: r.user_person_name for r in t.delivered}
        assert by_org[NORD.id] == "Anne Jensen"
        assert by_org[SYD.id] is not None
        assert by_org[SYD.id].startswith("Medarbejder ")

    def test_strict_policy_refuses_unknown_organisations(self) -> None:
        """Under a strict policy an organisation without a rule is a ValidationError."""
        ident = bound(IdentityPolicy(organisations={("SOR", NORD.id): FullName()}, strict=True))
        assert ident(employee(1), NORD)[0] == "Anne Jensen"
        with pytest.raises(ValidationError) as e:
            ident(employee(1), SYD)
        assert e.value.field == "access.organisation"

    def test_from_toml(self, tmp_path: Path) -> None:
        """Operators choose per municipality in TOML; secrets come from a file or env."""
        (tmp_path / "secret").write_bytes(SECRET)
        path = tmp_path / "identity.toml"
        path.write_text(textwrap.dedent(f"""
            strict = true
            [default]
            formatter = "full-name"
            [[organisation]]
            source = "SOR"
            id = "{NORD.id}"
            formatter = "initials"
            [[organisation]]
            id = "{SYD.id}"
            formatter = "alternative-id"
            prefix = "Personale"
            secret_file = "secret"
        """), encoding="utf-8")
        policy = IdentityPolicy.from_toml(path)
        assert policy.strict
        assert isinstance(policy.formatter_for(NORD), Initials)
        alt = policy.formatter_for(SYD)
        assert isinstance(alt, AlternativeId)
        assert alt.prefix == "Personale"
        assert alt.secret == SECRET

    @pytest.mark.parametrize(("toml", "says"), [
        ("strict = 1", "strict"),
        ("[default]\nformatter = 'nickname'", "default.formatter"),
        ("[[organisation]]\nformatter = 'initials'", "organisation[0].id"),
        ("[[organisation]]\nid = 'x'\nformatter = 'alternative-id'", "secret"),
        ("[[organisation]]\nid = 'x'\nformatter = 'alternative-id'\nsecret = 'inline'",
         "unknown keys"),
        ("colour = 'blue'", "unknown keys"),
        ("this is not toml", "TOML"),
    ])
    def test_bad_toml_names_the_key(self, toml: str, says: str) -> None:
        """Each mistake in the policy file is a ConfigurationError naming the key."""
        with pytest.raises(ConfigurationError, match=re.escape(says)):
            IdentityPolicy.from_toml(toml, text=True)

    def test_policy_change_applies_to_new_logs_only(self, tmp_path: Path) -> None:
        """What is already in the outbox keeps the name it was accepted with."""
        db = tmp_path / "m.sqlite"
        clock = NOW.timestamp() + 1
        t = MemoryTransport()
        with MinLog.open(db, transport=t, system_name="Cura", key=KEY, clock=FixedClock(clock),
                         start_worker=False) as log:
            log.record(Access("0303303456", employee(1), NORD, "Opslag", NOW))
        with MinLog.open(db, transport=t, system_name="Cura", key=KEY, clock=FixedClock(clock),
                         identity=IdentityPolicy(default=AlternativeId(SECRET)),
                         start_worker=False) as log:
            log.record(Access("0404404567", employee(1), NORD, "Opslag", NOW))
            assert log.flush(timeout=10)
        names = sorted(r.user_person_name or "" for r in t.delivered)
        assert names[0] == "Anne Jensen"
        assert names[1].startswith("Medarbejder ")


RESOLVE_SCRIPT = """
import datetime as dt, sys
from minlog import Access, Employee, MemoryTransport, MinLog, Organisation
from minlog.identity.policy import AlternativeId, IdentityPolicy
secret = sys.argv[2].encode()
t = MemoryTransport()
with MinLog.open(sys.argv[1], transport=t, system_name="Cura", key=bytes(range(32)),
                 identity=IdentityPolicy(default=AlternativeId(secret)),
                 start_worker=False) as log:
    org = Organisation("380000000000001", "SOR", "Hjemmeplejen Nord")
    e = Employee("0101701234", name="Anne Jensen")
    print(log.registration_for(Access("0303303456", e, org, "Opslag",
          dt.datetime.now(dt.UTC))).user_person_name)
"""


class TestRegistryInTheStore:
    def test_codes_survive_restarts_and_secret_rotation(self, tmp_path: Path) -> None:
        """A code once shown is shown again after a restart, even with a new secret."""
        db = str(tmp_path / "m.sqlite")
        first = subprocess.run([sys.executable, "-c", RESOLVE_SCRIPT, db, "first-secret-1234"],
                               capture_output=True, text=True, check=True).stdout.strip()
        again = subprocess.run([sys.executable, "-c", RESOLVE_SCRIPT, db, "rotated-secret-99"],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert first.startswith("Medarbejder ")
        assert again == first

    def test_minlog_resolve_and_cli(self, tmp_path: Path) -> None:
        """MinLog.resolve returns the employee id behind a code; `minlog resolve` prints
        it with its source and the name."""
        db = tmp_path / "m.sqlite"
        e = employee(5)
        with MinLog.open(db, transport=MemoryTransport(), system_name="Cura", key=KEY,
                         identity=IdentityPolicy(default=AlternativeId(SECRET)),
                         start_worker=False) as log:
            name, _ = log._identity(e, NORD)
            assert name is not None
            assert log.resolve(NORD, name) == e.id
            assert log.resolve(NORD, "Medarbejder 0000-0000") is None
        (tmp_path / "k").write_text(KEY.hex())
        out = subprocess.run(
            [sys.executable, "-m", "minlog", "resolve", str(db), "--key", str(tmp_path / "k"),
             "--organisation", NORD.id, name],
            capture_output=True, text=True, check=True).stdout
        assert f"employee id:     {e.id}\n" in out
        assert "employee source: CPR\n" in out
        assert "name:            Anne Jensen\n" in out
