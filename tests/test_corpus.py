"""The bad-input corpus: every case in tests/corpus/cases.yaml run through the CLI.

Each case starts from the valid files in tests/corpus/ and the shipped catalog, breaks
one input file, and runs ``allocation sweep`` in-process with ``--out`` in a temporary
folder, then ``allocation validate`` on the same files where that command reads them.
A case passes when the exit status and the message words are as listed, no traceback
is printed, nothing is written into the output folder and Prefect is never started.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from allocation import cli
from tests.conftest import CATALOGS

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES_FILE = CORPUS / "cases.yaml"

FILE_NAMES = {
    "workflow": "workflow.yaml",
    "system": "system.yaml",
    "compare": "compare.yaml",
    "cpus": "cpus.parquet",
    "prices": "prices.parquet",
    "aliases": "cpu-aliases.csv",
}
"""Input the case breaks, and its file name in the case folder or the catalog folder."""

CATALOG_FILES = ("cpus", "prices", "aliases")

HUGE_FILE_BYTES = 100 * 1024 * 1024


class PrefectStarted(BaseException):
    """Raised in place of Prefect's start-up, which bad input must never reach.

    It derives from BaseException so that the CLI's handler of unexpected errors does
    not turn it into exit status 1.
    """


@dataclass(frozen=True)
class Case:
    """One entry of cases.yaml; the fields are described in that file's header."""

    id: str
    file: str
    exit: int
    words: list[str]
    set: dict[str, Any] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    replace: list[list[str]] = field(default_factory=list)
    text: str | None = None
    name: str | None = None
    encoding: str = "utf-8"
    make: str | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)
    column_types: dict[str, str] = field(default_factory=dict)
    drop_columns: list[str] = field(default_factory=list)
    validate: bool = True
    note: str = ""


def _load_cases() -> list[Case]:
    entries = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
    return [Case(**entry) for entry in entries]


CASES = _load_cases()


# Building the broken input.


def _path_parts(path: str) -> list[str | int]:
    """Split ``stages.1.time_s`` into ``["stages", 1, "time_s"]``."""
    return [int(part) if part.isdigit() else part for part in path.split(".")]


def _edit(document: Any, path: str, value: Any, *, delete: bool = False) -> None:
    *parents, last = _path_parts(path)
    target = document
    for part in parents:
        target = target[part]
    if delete:
        del target[last]
    elif isinstance(target, list) and isinstance(last, int) and last == len(target):
        target.append(value)
    else:
        target[last] = value


def _yaml_text(case: Case, base: Path) -> str:
    if case.text is not None:
        return case.text
    text = base.read_text(encoding="utf-8")
    for old, new in case.replace:
        assert old in text, f"{case.id}: {old!r} is not in {base.name}"
        text = text.replace(old, new)
    if case.set or case.delete:
        document = yaml.safe_load(text)
        for path, value in case.set.items():
            _edit(document, path, value)
        for path in case.delete:
            _edit(document, path, None, delete=True)
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return text


def _write_text_file(case: Case, target: Path, base: Path) -> None:
    target.write_bytes(_yaml_text(case, base).encode(case.encoding))


def _write_table(case: Case, target: Path, base: Path) -> None:
    table = pq.read_table(base)
    # Nullable fields, so that a case can put a null where the shipped file has none.
    schema = pa.schema([pa.field(f.name, f.type) for f in table.schema])
    table = table.cast(schema)
    if case.cells:
        rows = table.to_pylist()
        for cell in case.cells:
            rows[cell["row"]][cell["column"]] = cell["value"]
        table = pa.Table.from_pylist(rows, schema=schema)
    for column, type_name in case.column_types.items():
        values = [None if v is None else str(v) for v in table.column(column).to_pylist()]
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, pa.array(values, type=pa.type_for_alias(type_name)))
    if case.drop_columns:
        table = table.drop_columns(case.drop_columns)
    pq.write_table(table, target)


def _make_special(case: Case, target: Path, base: Path, huge_file: Path) -> None:
    data = base.read_bytes()
    if case.make == "directory":
        target.mkdir()
        (target / "inside.txt").write_text("a file inside the folder\n")
    elif case.make == "missing":
        pass
    elif case.make == "empty":
        target.write_bytes(b"")
    elif case.make == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif case.make == "corrupt":
        # Parquet's magic bytes at both ends, around a footer that is not Thrift.
        junk = bytes(range(256)) * 8
        target.write_bytes(b"PAR1" + junk + len(junk).to_bytes(4, "little") + b"PAR1")
    elif case.make == "nested":
        # Flow syntax that YAML and JSON both read: lists nested 5,000 deep, past the
        # recursion limit.
        depth = 5_000
        target.write_text('{"workflow": ' + "[" * depth + "]" * depth + "}\n")
    elif case.make == "huge":
        target.symlink_to(huge_file)
    else:
        raise AssertionError(f"{case.id}: unknown make {case.make!r}")


@dataclass(frozen=True)
class Inputs:
    workflow: Path
    system: Path
    compare: Path
    catalog: Path
    broken: Path
    """The file the case broke, whose name the message must contain."""


def _build_inputs(case: Case, folder: Path, huge_file: Path) -> Inputs:
    catalog = folder / "catalog"
    catalog.mkdir()
    for key in CATALOG_FILES:
        shutil.copyfile(CATALOGS / FILE_NAMES[key], catalog / FILE_NAMES[key])
    paths = {}
    for key in ("workflow", "system", "compare"):
        paths[key] = folder / FILE_NAMES[key]
        shutil.copyfile(CORPUS / FILE_NAMES[key], paths[key])

    in_catalog = case.file in CATALOG_FILES
    base = (CATALOGS if in_catalog else CORPUS) / FILE_NAMES[case.file]
    target = (catalog if in_catalog else folder) / (case.name or FILE_NAMES[case.file])
    if target.exists():
        target.unlink()
    if case.make is not None:
        _make_special(case, target, base, huge_file)
    elif case.file in ("cpus", "prices"):
        _write_table(case, target, base)
    else:
        _write_text_file(case, target, base)
    if not in_catalog:
        paths[case.file] = target
    return Inputs(paths["workflow"], paths["system"], paths["compare"], catalog, target)


# Running the CLI.


@dataclass(frozen=True)
class Outcome:
    status: int
    stdout: str
    stderr: str


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    capsys.readouterr()
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse rejects an option value this way
        status = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Outcome(status, captured.out, captured.err)


def _sweep_argv(case: Case, inputs: Inputs, out: Path) -> list[str]:
    argv = ["sweep", str(inputs.workflow), str(inputs.system), "--catalog", str(inputs.catalog)]
    argv += ["--out", str(out)]
    if case.file == "compare":
        argv += ["--compare", str(inputs.compare)]
    return argv


def _check_outcome(case: Case, outcome: Outcome, inputs: Inputs, command: str) -> None:
    where = f"{case.id} ({command}): {outcome.stderr.strip()!r}"
    output = outcome.stdout + outcome.stderr
    assert outcome.status == case.exit, where
    assert "Traceback" not in output, where
    assert inputs.broken.name in outcome.stderr, where
    for word in case.words:
        assert word in outcome.stderr, f"{where} lacks {word!r}"


@pytest.fixture(scope="session")
def huge_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write a 100 MB YAML file once: a valid workflow padded with comment lines."""
    path = tmp_path_factory.mktemp("huge") / "huge.yaml"
    head = (CORPUS / "workflow.yaml").read_bytes()
    line = b"# " + b"x" * 1021 + b"\n"
    block = line * 1024
    with path.open("wb") as stream:
        stream.write(head)
        while stream.tell() + len(block) <= HUGE_FILE_BYTES:
            stream.write(block)
        stream.write(block[: HUGE_FILE_BYTES - stream.tell()])
    assert path.stat().st_size == HUGE_FILE_BYTES
    return path


@pytest.fixture
def no_prefect(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make any start of Prefect by the CLI fail the test."""

    def block(verbose: bool) -> None:
        raise PrefectStarted("the CLI started Prefect for input it should have rejected")

    monkeypatch.setattr(cli, "_configure_prefect", block)
    yield


@pytest.mark.usefixtures("no_prefect")
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus_case(
    case: Case, tmp_path: Path, huge_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = _build_inputs(case, tmp_path, huge_file)
    out = tmp_path / "out"
    before = sorted(tmp_path.rglob("*"))

    outcome = _run(_sweep_argv(case, inputs, out), capsys)

    _check_outcome(case, outcome, inputs, "sweep")
    assert not out.exists() or not any(out.iterdir()), f"{case.id}: wrote into --out"
    assert sorted(tmp_path.rglob("*")) == before, f"{case.id}: wrote a file"

    if case.validate and case.file != "compare":
        argv = [
            "validate",
            str(inputs.workflow),
            str(inputs.system),
            "--catalog",
            str(inputs.catalog),
        ]
        _check_outcome(case, _run(argv, capsys), inputs, "validate")


def test_corpus_size() -> None:
    assert len(CASES) >= 50
    assert len({case.id for case in CASES}) == len(CASES)
    covered = {case.file for case in CASES}
    assert covered == set(FILE_NAMES)


@pytest.mark.usefixtures("no_prefect")
def test_valid_inputs_reach_prefect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The base files pass every check, so the sweep goes on to start Prefect, which the
    # fixture turns into PrefectStarted. A corpus case that reached Prefect fails so.
    argv = [
        "sweep",
        str(CORPUS / "workflow.yaml"),
        str(CORPUS / "system.yaml"),
        "--catalog",
        str(CATALOGS),
        "--out",
        str(tmp_path / "out"),
        "--compare",
        str(CORPUS / "compare.yaml"),
    ]
    with pytest.raises(PrefectStarted):
        cli.main(argv)

    assert "9 assignments" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_corpus_base_files_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Every case breaks one thing in these files, so they must pass on their own.
    argv = [
        "validate",
        str(CORPUS / "workflow.yaml"),
        str(CORPUS / "system.yaml"),
        "--catalog",
        str(CATALOGS),
    ]
    outcome = _run(argv, capsys)

    assert outcome.status == 0, outcome.stderr
    assert "9 assignments" in outcome.stdout
