"""Writing the outputs fails cleanly: the cause and the path, and no half-written set.

`staged_output` is run directly with real files; a flow run adds nothing to what it
writes. Each test's docstring states how its failure is made: a real file-size limit
(``RLIMIT_FSIZE``, the kernel's EFBIG) in a subprocess, a read-only folder by chmod
(skipped as root, who may write anyway), or an OSError raised at the write or rename
call. The checks of the output folder before a sweep run through the command line in
this process; they fail before Prefect starts.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from allocation import outputs
from allocation.cli import main
from allocation.errors import AllocationError
from allocation.outputs import STAGING_PREFIX, staged_output, write_parquet
from tests.conftest import CATALOGS, REPO

WORKFLOW = CATALOGS / "workflows" / "object-detection.yaml"
SYSTEM = CATALOGS / "systems" / "edge-cloud.yaml"
EARLIER = {"front.parquet": b"earlier front", "report.md": b"earlier report\n"}


def earlier_run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, content in EARLIER.items():
        (out / name).write_bytes(content)


def assert_earlier_run_intact(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(EARLIER)
    for name, content in EARLIER.items():
        assert (out / name).read_bytes() == content, name


def test_full_disk_keeps_earlier_outputs(tmp_path: Path) -> None:
    """ENOSPC is raised at the write call of the second file, after one file is staged."""
    out = tmp_path / "out"
    earlier_run(out)

    with pytest.raises(AllocationError) as info, staged_output(out) as path_for:
        path_for("front.parquet").write_bytes(b"new front")
        target = path_for("report.md")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    message = str(info.value)
    assert "No space left on device (ENOSPC)" in message
    assert str(out) in message
    assert "keeps the files it had" in message
    assert_earlier_run_intact(out)


def test_file_size_limit_keeps_earlier_outputs(tmp_path: Path) -> None:
    """A real EFBIG: the subprocess may write files of at most 64 KiB (RLIMIT_FSIZE).

    SIGXFSZ is ignored there, so the write fails with an error instead of killing it.
    """
    out = tmp_path / "out"
    earlier_run(out)
    script = textwrap.dedent(
        f"""
        import resource, signal
        import numpy as np, pandas as pd
        from allocation.errors import AllocationError
        from allocation.outputs import staged_output, write_parquet

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        table = pd.DataFrame({{"latency_s": np.random.default_rng(0).random(100_000)}})
        try:
            with staged_output({str(out)!r}) as path_for:
                path_for("report.md").write_text("new report")
                write_parquet(table, path_for("front.parquet"))
        except AllocationError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert "File too large (EFBIG)" in result.stdout
    assert str(out) in result.stdout
    assert_earlier_run_intact(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_read_only_folder_keeps_earlier_outputs(tmp_path: Path) -> None:
    """A real EACCES: the output folder is made read-only with chmod."""
    out = tmp_path / "out"
    earlier_run(out)
    out.chmod(0o555)
    try:
        with pytest.raises(AllocationError) as info, staged_output(out) as path_for:
            path_for("report.md").write_text("new report")
    finally:
        out.chmod(0o755)

    assert "Permission denied (EACCES)" in str(info.value)
    assert str(out) in str(info.value)
    assert_earlier_run_intact(out)


def test_failed_rename_puts_earlier_files_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError (EIO) is raised by the rename of the second new file into place."""
    out = tmp_path / "out"
    earlier_run(out)
    real_replace = os.replace
    placed = []

    def failing_replace(source: os.PathLike[str], target: os.PathLike[str]) -> None:
        if Path(target).parent == out:
            placed.append(Path(target).name)
            if len(placed) == 2 and Path(source).parent.name.startswith(STAGING_PREFIX):
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))
        real_replace(source, target)

    monkeypatch.setattr(outputs.os, "replace", failing_replace)
    with pytest.raises(AllocationError) as info, staged_output(out) as path_for:
        path_for("front.parquet").write_bytes(b"new front")
        path_for("report.md").write_bytes(b"new report")
        path_for("run.json").write_bytes(b"{}")

    assert "Input/output error (EIO)" in str(info.value)
    assert_earlier_run_intact(out)


def test_failed_put_back_keeps_earlier_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OSErrors are raised by the rename of the new files and by the rename back."""
    out = tmp_path / "out"
    earlier_run(out)
    real_replace = os.replace

    def failing_replace(source: os.PathLike[str], target: os.PathLike[str]) -> None:
        # Setting the earlier files aside works; every other rename into `out` fails.
        if Path(target).parent == out and Path(source).parent != out:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))
        real_replace(source, target)

    monkeypatch.setattr(outputs.os, "replace", failing_replace)
    with pytest.raises(AllocationError) as info, staged_output(out) as path_for:
        path_for("report.md").write_bytes(b"new report")
        path_for("front.parquet").write_bytes(b"new front")

    message = str(info.value)
    previous = Path(message.rsplit("they are in ", 1)[1])
    assert previous.parent.parent == out
    for name, content in EARLIER.items():
        assert (previous / name).read_bytes() == content, name


def test_new_outputs_replace_earlier_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    earlier_run(out)
    (out / "notes.txt").write_text("the user's own file")

    with staged_output(out) as path_for:
        path_for("report.md").write_text("new report")
        write_parquet(pd.DataFrame({"latency_s": [1.0]}), path_for("front.parquet"))

    assert sorted(p.name for p in out.iterdir()) == ["front.parquet", "notes.txt", "report.md"]
    assert (out / "report.md").read_text() == "new report"
    assert (out / "notes.txt").read_text() == "the user's own file"


def test_symbolic_link_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("not to be overwritten")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").symlink_to(outside)

    with staged_output(out) as path_for:
        path_for("report.md").write_text("new report")

    assert outside.read_text() == "not to be overwritten"
    assert not (out / "report.md").is_symlink()
    assert (out / "report.md").read_text() == "new report"


def test_folder_in_the_way_keeps_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    earlier_run(out)
    (out / "run.json").mkdir()

    in_the_way = pytest.raises(AllocationError, match="a folder of that name is in the way")
    with in_the_way, staged_output(out) as path_for:
        path_for("report.md").write_text("new report")
        path_for("run.json").write_text("{}")

    assert (out / "report.md").read_bytes() == EARLIER["report.md"]
    assert (out / "run.json").is_dir()


def test_failed_block_removes_created_folder(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"

    with pytest.raises(RuntimeError), staged_output(out) as path_for:
        path_for("report.md").write_text("new report")
        raise RuntimeError("chart failed")

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a\0b", "", ".", "..", ".hidden"])
def test_staged_name_must_be_plain(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"), staged_output(tmp_path / "o") as path:
        path(name)

    assert list(tmp_path.iterdir()) == []


def sweep_status(out: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["sweep", str(WORKFLOW), str(SYSTEM), "--out", out])
    return status, capsys.readouterr().err


def test_out_names_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "results.txt"
    existing.write_text("keep")

    status, error = sweep_status(str(existing), capsys)

    assert status == 2
    assert f"--out: invalid value {str(existing)!r}: names an existing file" in error
    assert existing.read_text() == "keep"


def test_out_under_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real ENOTDIR: the folder would be created inside a file."""
    existing = tmp_path / "results.txt"
    existing.write_text("keep")

    status, error = sweep_status(str(existing / "out"), capsys)

    assert status == 2
    assert "Not a directory (ENOTDIR)" in error
    assert "give a folder you can write to" in error
    assert list(tmp_path.iterdir()) == [existing]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_read_only_out_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real EACCES: the parent of the output folder is made read-only with chmod."""
    parent = tmp_path / "read-only"
    parent.mkdir(mode=0o555)
    try:
        status, error = sweep_status(str(parent / "out"), capsys)
    finally:
        parent.chmod(0o755)

    assert status == 2
    assert "Permission denied (EACCES)" in error
    assert list(parent.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "status"), [(errno.EACCES, 2), (errno.EROFS, 2), (errno.ENOSPC, 1), (errno.EIO, 1)]
)
def test_out_check_errors_exit_status(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
    status: int,
) -> None:
    """The OSError is raised by the creation of the test file in the output folder.

    A location the user can change (permissions, a read-only file system) is exit
    status 2; a failure of the machine (a full disk, an I/O error) is exit status 1.
    """

    def failing_mkstemp(**_: object) -> tuple[int, str]:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outputs.tempfile, "mkstemp", failing_mkstemp)
    out = tmp_path / "new" / "out"

    actual, error = sweep_status(str(out), capsys)

    assert actual == status
    assert f"{os.strerror(code)} ({errno.errorcode[code]})" in error
    assert str(out) in error
    assert "Traceback" not in error
    assert list(tmp_path.iterdir()) == []
