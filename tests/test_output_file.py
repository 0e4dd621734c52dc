"""One --out rule for the commands that write a single YAML file: profile and calibrate."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocation.cli import main
from allocation.errors import InputError
from allocation.outputs import check_yaml_output_file
from tests.conftest import CATALOGS

WORKFLOW = CATALOGS / "workflows" / "object-detection.yaml"
SYSTEM = CATALOGS / "systems" / "edge-cloud.yaml"
MEASUREMENTS = CATALOGS / "measurements" / "object-detection-published.yaml"

# The --out value (relative to a temporary folder) and the message expected for it.
REJECTED = [
    ("folder.yaml", "is a folder"),
    ("model.txt", "expected a file name ending in .yaml or .yml"),
    ("missing/model.yaml", "does not exist; create it or choose another path"),
]


def _command(name: str, out: Path) -> list[str]:
    if name == "profile":
        return ["profile", "examples.detection_pipeline:PIPELINE", "--out", str(out)]
    return ["calibrate", str(WORKFLOW), str(SYSTEM), str(MEASUREMENTS), "--out", str(out)]


@pytest.mark.parametrize(("relative", "expected"), REJECTED)
def test_yaml_output_file_rejected(tmp_path: Path, relative: str, expected: str) -> None:
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(InputError, match=expected) as caught:
        check_yaml_output_file(tmp_path / relative)

    assert str(caught.value).startswith("command line: --out: invalid value")


def test_yaml_output_file_keeps_inputs(tmp_path: Path) -> None:
    source = tmp_path / "system.yaml"
    source.write_text("system: s\n", encoding="utf-8")
    report = tmp_path / "system.md"
    report.write_text("# report\n", encoding="utf-8")

    with pytest.raises(InputError, match="would overwrite the input file"):
        check_yaml_output_file(source, inputs=[source])
    with pytest.raises(InputError, match="would overwrite the input file"):
        check_yaml_output_file(tmp_path / "out.yml", inputs=[report], companions=[report])
    check_yaml_output_file(tmp_path / "new.yml", inputs=[source])


@pytest.mark.parametrize("command", ["profile", "calibrate"])
@pytest.mark.parametrize(("relative", "expected"), REJECTED)
def test_commands_share_out_rule(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    relative: str,
    expected: str,
) -> None:
    (tmp_path / "folder.yaml").mkdir()
    out = tmp_path / relative
    code = main(_command(command, out))
    error = capsys.readouterr().err

    assert code == 2
    assert "command line: --out: invalid value" in error
    assert expected in error
    assert not (tmp_path / "missing").exists()
    assert not (tmp_path / "model.txt").exists()
