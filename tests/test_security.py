"""What input files cannot make the tool do: build objects, escape the output folder, or
reach the network.

YAML tags that would build Python objects are rejected like any invalid input. Ids
that would be unsafe in a path are rejected before anything is written, and the
default output folder stays one plain name under ``results/``. A real sweep in a child
process, under an audit hook (`sys.addaudithook`), opens sockets only to the Prefect
server on 127.0.0.1 and writes only into its own folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from allocation.cli import main
from allocation.errors import InputError
from allocation.outputs import MAX_NAME_BYTES, default_out_dir
from tests.conftest import CATALOGS, REPO

WORKFLOW = CATALOGS / "workflows" / "object-detection.yaml"
SYSTEM = CATALOGS / "systems" / "edge-cloud.yaml"


@pytest.mark.parametrize(
    "document",
    [
        'workflow: !!python/object/apply:os.mkdir ["{marker}"]\n',
        "workflow: !!python/name:os.system\n",
        'workflow: !!python/object/new:pathlib.Path ["{marker}"]\n',
        "workflow: !!python/object:argparse.Namespace {{x: 1}}\n",
        '!!python/object/apply:os.mkdir ["{marker}"]\n',
    ],
)
@pytest.mark.parametrize("command", ["validate", "sweep"])
def test_python_yaml_tags_rejected(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    document: str,
    command: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "created-by-yaml"
    evil = tmp_path / "workflow.yaml"
    evil.write_text(document.format(marker=marker))
    arguments = [str(evil)] if command == "validate" else [str(evil), str(SYSTEM)]

    status = main([command, *arguments])

    error = capsys.readouterr().err
    assert status == 2
    assert "workflow.yaml" in error
    assert "python/" in error
    assert "Traceback" not in error
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == [evil]


@pytest.mark.parametrize("name", ["../../etc/x", "/etc/x", "a\\b", "x\0y", "a b", ""])
@pytest.mark.parametrize("field", ["workflow", "system"])
def test_unsafe_names_exit_2_write_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    field: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    source = WORKFLOW if field == "workflow" else SYSTEM
    text = source.read_text()
    original = f"{field}: {'object-detection' if field == 'workflow' else 'edge-cloud'}\n"
    assert original in text
    hostile = tmp_path / source.name
    hostile.write_text(text.replace(original, f"{field}: {json.dumps(name)}\n"))
    workflow = hostile if field == "workflow" else WORKFLOW
    system = hostile if field == "system" else SYSTEM

    status = main(["sweep", str(workflow), str(system)])

    error = capsys.readouterr().err
    assert status == 2
    assert f"{source.name}: {field}: invalid value" in error
    assert list(tmp_path.iterdir()) == [hostile]


@pytest.mark.parametrize(
    ("workflow", "system"),
    [("..", ".."), (".", "."), ("...", "-"), ("-", "--"), ("a" * 128, "b" * 125)],
)
def test_default_out_dir_one_name_under_results(workflow: str, system: str) -> None:
    folder = default_out_dir(workflow, system)

    assert folder.parent == Path("results")
    assert folder.name == f"{workflow}--{system}"
    assert folder.name not in {".", ".."}
    assert (Path("/base") / folder).resolve().parent == Path("/base/results")


@pytest.mark.parametrize(
    ("workflow", "system"),
    [("a" * 128, "b" * 126), ("../x", "s"), ("w", "/etc"), ("w\0", "s")],
)
def test_default_out_dir_rejects_unsafe_names(workflow: str, system: str) -> None:
    with pytest.raises(InputError, match="give an output folder with --out"):
        default_out_dir(workflow, system)


def test_long_names_ask_for_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ids may be 128 characters each, which makes a default folder name too long."""
    monkeypatch.chdir(tmp_path)
    workflow = tmp_path / "workflow.yaml"
    system = tmp_path / "system.yaml"
    workflow.write_text(
        WORKFLOW.read_text().replace("workflow: object-detection", f"workflow: {'w' * 128}")
    )
    system.write_text(SYSTEM.read_text().replace("system: edge-cloud", f"system: {'s' * 128}"))

    status = main(["sweep", str(workflow), str(system)])

    error = capsys.readouterr().err
    assert status == 2
    assert f"is 258 bytes long, over {MAX_NAME_BYTES}" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["system.yaml", "workflow.yaml"]


AUDIT_SCRIPT = """\
import json, os, sys

LOOPBACK = {"127.0.0.1", "::1", "localhost", None}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
events = []


def record(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[-1]
        # A tuple is an internet address; a str or bytes is a local (AF_UNIX) socket.
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            events.append(["network", event, repr(address)])
    elif event == "socket.getaddrinfo" and args[0] not in LOOPBACK:
        events.append(["network", event, repr(args[0])])
    elif event == "open" and isinstance(args[0], str) and (args[2] or 0) & WRITE_FLAGS:
        events.append(["write", event, os.path.abspath(args[0])])
    elif event == "os.mkdir" and isinstance(args[0], str):
        events.append(["write", event, os.path.abspath(args[0])])
    elif event == "os.rename" and isinstance(args[1], str):
        events.append(["write", event, os.path.abspath(args[1])])


sys.addaudithook(record)
from allocation.cli import main

status = main(sys.argv[2:])
with open(sys.argv[1], "w") as report:
    json.dump({"status": status, "events": events}, report)
"""


@pytest.mark.prefect
def test_sweep_stays_local(prefect_harness: None, tmp_path: Path) -> None:
    """A sweep connects only to 127.0.0.1 and writes only into its own folders.

    The child process sends its Prefect calls to this session's test server on
    127.0.0.1. Writes count when Python opens a file for writing, creates a folder or
    renames into a path. Allowed are the working folder (outputs, PREFECT_HOME),
    /dev, and ``__pycache__`` folders, where Python and numba cache compiled code.
    Files written by native code (pyarrow, vl-convert) are not seen by the hook; they
    go to paths the Python code chooses.
    """
    from prefect.settings import get_current_settings

    api_url = str(get_current_settings().api.url)
    assert api_url.startswith("http://127.0.0.1:"), api_url
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    report = tmp_path / "audit.json"
    script = tmp_path / "audit.py"
    script.write_text(textwrap.dedent(AUDIT_SCRIPT))
    command = [sys.executable, str(script), str(report), "sweep", str(WORKFLOW), str(SYSTEM)]

    result = subprocess.run(
        command,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    audit = json.loads(report.read_text())
    assert audit["status"] == 0
    assert [e for e in audit["events"] if e[0] == "network"] == []
    outside = [
        e
        for e in audit["events"]
        if e[0] == "write"
        and not e[2].startswith((f"{tmp_path}{os.sep}", "/dev/"))
        and f"{os.sep}__pycache__" not in e[2]
    ]
    assert outside == []
    out = tmp_path / "results" / "object-detection--edge-cloud"
    assert (out / "report.html").is_file()
    assert any(e[2].startswith(f"{out}{os.sep}") for e in audit["events"])
