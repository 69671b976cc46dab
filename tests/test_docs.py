"""Docs that cannot rot: the README's examples run (against FakeNSP where they show
production values), and the API reference names every public name and option with its
default."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import minlog
from minlog.client.options import Options
from minlog.testing import FakeNSP, make_test_certificate

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


def checked(block: str) -> str:
    """The block with each line that ends in ``# True`` or ``# False`` made an assertion
    of what it claims."""
    out = []
    for line in block.splitlines():
        m = re.fullmatch(r"(\s*)(.+?)\s*#\s*(True|False)\b.*", line)
        out.append(f"{m.group(1)}assert ({m.group(2)}) is {m.group(3)}" if m else line)
    return "\n".join(out) + "\n"


def substitute(block: str, values: dict[str, str]) -> str:
    """Replace the README's production values; each one must still be in the block."""
    for shown, used in values.items():
        assert shown in block, f"the README no longer shows {shown!r}: update this test"
        block = block.replace(shown, used)
    return block


class TestReadme:
    def test_the_using_it_example_runs_against_fakensp(self, tmp_path: Path) -> None:
        """The README's example runs as written, with FakeNSP's URLs, a test certificate
        and a temporary folder in place of the production ones, and its `# True` and
        `# False` claims hold."""
        (block,) = [b for b in python_blocks(ROOT / "README.md") if "MinLog.open" in b]
        p12, password = make_test_certificate("29189846", "Aarhus Kommune")
        (tmp_path / "system.p12").write_bytes(p12)
        (tmp_path / "identity.toml").write_text('[default]\nformatter = "full-name"\n')
        with FakeNSP(cvr="29189846") as nsp:
            code = substitute(checked(block), {
                '"https://.../minlog2-registration/20250312/RegisterService"':
                    repr(nsp.service_url),
                '"https://.../sts/services/NewSecurityTokenService"': repr(nsp.sts_url),
                '"/etc/eoj/system.p12"': repr(str(tmp_path / "system.p12")),
                'b"p12 password"': repr(password),
                '"/var/lib/eoj/minlog.sqlite"': repr(str(tmp_path / "minlog.sqlite")),
                '"/etc/eoj/identity.toml"': repr(str(tmp_path / "identity.toml")),
            })
            code += "assert log.closed\n"
            exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README
            assert len(nsp.received) == 1
            assert nsp.received[0].user_person_name == "Anne Jensen"

    def test_every_other_python_block_runs(self, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        """The README's other Python examples run as they stand."""
        monkeypatch.chdir(tmp_path)
        for block in python_blocks(ROOT / "README.md"):
            if "MinLog.open(" in block and "https://..." in block:
                continue  # the example above
            exec(compile(checked(block), "README.md", "exec"), {})  # noqa: S102


class TestTestingGuide:
    def test_every_python_block_runs(self) -> None:
        """Each Python example of docs/testing.md runs as written (FakeNSP on loopback)."""
        blocks = python_blocks(ROOT / "docs" / "testing.md")
        assert len(blocks) >= 3
        for block in blocks:
            exec(compile(block, "docs/testing.md", "exec"), {})  # noqa: S102

    def test_every_switch_of_fakensp_is_described(self) -> None:
        """The switch table names every keyword argument of FakeNSP."""
        text = (ROOT / "docs" / "testing.md").read_text()
        for name in inspect.signature(FakeNSP).parameters:
            assert f"`{name}`" in text, name


def api_text() -> str:
    return API.read_text()


class TestApiReference:
    @pytest.mark.parametrize("name", minlog.__all__)
    def test_every_public_name_is_in_it(self, name: str) -> None:
        """docs/api.md has a heading or a row for every name of `minlog.__all__`."""
        assert re.search(rf"`(minlog\.)?{re.escape(name)}\b", api_text()), name

    def test_every_option_with_its_default(self) -> None:
        """Every option of `Options` has a row in docs/api.md giving the default that
        `MinLog` really has."""
        params = inspect.signature(minlog.MinLog.__init__).parameters
        rows = {m.group(1): m.group(2) for m in re.finditer(
            r"^\| `(\w+)` \| `([^`]*)` \|", api_text(), re.M)}
        for option in sorted(Options.__optional_keys__):
            assert option in rows, f"{option} is not in docs/api.md"
            default = params[option].default
            shown = rows[option]
            if option == "clock":
                assert shown == "SYSTEM_CLOCK"
            elif option == "rate_limit":
                assert shown == "RateLimit.guidance()"
                assert default == minlog.RateLimit.guidance()
            else:
                assert shown == repr(default), f"{option}: docs say {shown}, code {default!r}"

    def test_every_metrics_name_is_in_it(self) -> None:
        """docs/api.md names the metrics module's public names."""
        import minlog.metrics

        for name in minlog.metrics.__all__:
            assert f"`{name}" in api_text() or f".{name}" in api_text(), name
