"""Write a sweep's files into its output folder, all or nothing.

Every file is first written into a hidden staging folder inside the output folder, so
on the same file system. When all of them are complete, the files of an earlier run
with the same names are set aside and the new files are renamed into place. If a
rename fails, the earlier files are put back. A failure at any point leaves the output
folder with the complete set of files it had before. Renames replace a symbolic link
left in the output folder instead of writing through it.

`checked_output_folder` runs before a sweep starts, so that an output folder that
cannot be written fails at once, as the user's mistake (`InputError`, exit status 2).
`check_yaml_output_file` does the same for the single YAML file that `allocation
profile` and `allocation calibrate` write.
A failure while the outputs are written, such as a full disk, is an `AllocationError`
(exit status 1).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from allocation.errors import AllocationError, InputError

__all__ = [
    "MAX_NAME_BYTES",
    "check_yaml_output_file",
    "checked_output_folder",
    "dataframe_to_arrow",
    "default_out_dir",
    "share_link",
    "staged_output",
    "write_json",
    "write_parquet",
]

MAX_NAME_BYTES = 255
"""Maximum length of a file or folder name, in bytes, on common file systems (ext4, XFS,
APFS; NTFS counts 255 UTF-16 units)."""

STAGING_PREFIX = ".staging-"

_YAML_SUFFIXES = (".yaml", ".yml")

# Errors that mean the location itself cannot hold the outputs: the user has to give
# another one. Anything else (a full disk, an I/O error) is a failure of the machine.
_LOCATION_ERRORS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.EINVAL,
    errno.ENOENT,
}


def default_out_dir(workflow: str, system: str) -> Path:
    """Return the default output folder, ``results/<workflow>--<system>``.

    Raises
    ------
    InputError
        When ``<workflow>--<system>`` is not a plain folder name: it contains a path
        separator or NUL, consists of dots only, or is longer than `MAX_NAME_BYTES`.
        The loaders accept only ids of letters, digits, ``_``, ``.`` and ``-``, so in
        practice only two long ids fail. The message requests ``--out``.
    """
    name = f"{workflow}--{system}"
    if any(character in name for character in "/\\\0") or set(name) <= {"."}:
        problem = "is not a plain folder name"
    elif len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"is {len(name.encode('utf-8'))} bytes long, over {MAX_NAME_BYTES}"
    else:
        return Path("results") / name
    raise InputError(
        f"the default output folder name results/<workflow>--<system> {problem}; "
        "give an output folder with --out",
        file="command line",
        field="--out",
        value=name,
        has_value=True,
    )


@contextmanager
def checked_output_folder(out_dir: Path, *, given: bool = True) -> Iterator[Path]:
    """Create `out_dir` if needed and check that files can be created in it.

    Run this before a sweep starts, around it: when the block raises, the folders
    created here are removed again if they are still empty, so a failed sweep leaves
    no empty output folder behind. `given` is True when the user named the folder
    with ``--out`` and False for the default folder, which the messages then name.

    Raises
    ------
    InputError
        When `out_dir` or a parent is a file, or the folder cannot be created or
        written (permissions, read-only file system, name too long): the user must
        give another folder.
    AllocationError
        For other failures, such as a full disk or an I/O error.
    """
    out_dir = Path(out_dir)
    field = "--out" if given else "--out (not given, so the default folder)"
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(
            "names an existing file; give a folder for the outputs",
            file="command line",
            field=field,
            value=out_dir,
            has_value=True,
        )
    created: list[Path] = []
    try:
        created = _make_folders(out_dir)
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=out_dir)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        _remove_empty(created)
        if exc.errno in _LOCATION_ERRORS:
            raise InputError(
                f"cannot create files in this folder: {_cause(exc)}; give a folder you "
                "can write to",
                file="command line",
                field=field,
                value=out_dir,
                has_value=True,
            ) from exc
        raise AllocationError(
            f"cannot create files in the output folder {out_dir}: {_cause(exc)}"
        ) from exc

    try:
        yield out_dir
    except BaseException:
        _remove_empty(created)
        raise


def dataframe_to_arrow(table: pd.DataFrame) -> pa.Table:
    """Convert a table with a fixed schema and no pandas metadata.

    Columns ending in ``_bytes`` or ``_count`` become int64, ``at_*`` and other text
    become string, the rest float64 (null where missing). The file bytes then depend on
    the values alone, not on the pandas version.
    """
    arrays = []
    fields = []
    for name in table.columns:
        column = table[name]
        if name.endswith(("_bytes", "_count")) or name == "pattern_index":
            arrow_type = pa.int64()
        elif pd.api.types.is_bool_dtype(column):
            arrow_type = pa.bool_()
        elif pd.api.types.is_numeric_dtype(column):
            arrow_type = pa.float64()
        else:
            arrow_type = pa.string()
        # from_pandas: NaN, None and pandas' NA become null, without a Python list.
        arrays.append(pa.array(column, type=arrow_type, from_pandas=True))
        fields.append(pa.field(str(name), arrow_type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_parquet(table: pd.DataFrame, path: Path) -> None:
    """Write `table` as Parquet with a deterministic layout."""
    pq.write_table(
        dataframe_to_arrow(table),
        path,
        compression="zstd",
        write_statistics=True,
        store_schema=False,
    )


def write_json(data: Any, path: Path) -> None:
    """Write `data` as indented JSON; NaN is not allowed (use None)."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False, default=str) + "\n", "utf-8")


@contextmanager
def staged_output(out_dir: Path) -> Iterator[Callable[[str], Path]]:
    """Stage files for `out_dir` and move them in when the block succeeds.

    Yields a function that returns the staging path for a file name. When the block
    succeeds, the staged files replace the files of the same names in `out_dir`, all
    or none of them. When it raises, the staging folder is removed and `out_dir` keeps
    the files it had; a folder created here is removed again if it is empty.

    Raises
    ------
    AllocationError
        When the output folder cannot be created or written, or a file cannot be
        written into the staging folder (a full disk, permissions, an I/O error). The
        message gives the path and the cause.
    """
    out_dir = Path(out_dir)
    try:
        created = _make_folders(out_dir)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    except OSError as exc:
        raise AllocationError(
            f"cannot create the output folder {out_dir}: {_cause(exc)}; "
            "choose another folder with --out"
        ) from exc

    names: list[str] = []

    def path_for(name: str) -> Path:
        if any(c in name for c in "/\\\0") or name in {"", ".", ".."} or name.startswith("."):
            raise ValueError(f"output file name {name!r} must be a plain file name")
        if name not in names:
            names.append(name)
        return staging / name

    try:
        yield path_for
        _move_into_place(staging, out_dir, names)
    except _EarlierFilesStranded:
        # The staging folder contains the only copy of some earlier files, so keep it.
        raise
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        if not isinstance(exc, OSError):
            raise
        what = exc.filename or f"the outputs into {out_dir}"
        raise AllocationError(
            f"cannot write {what}: {_cause(exc)}; {out_dir} keeps the files it had. "
            "Free some space, fix the permissions or choose another folder with --out"
        ) from exc
    shutil.rmtree(staging, ignore_errors=True)


class _EarlierFilesStranded(AllocationError):
    """A rename into the output folder failed, and so did putting the earlier files back."""


def _move_into_place(staging: Path, out_dir: Path, names: list[str]) -> None:
    """Rename the staged files into `out_dir`, all or none of them.

    The files they replace are first renamed into ``staging/.previous``, and deleted
    with the staging folder after the last rename. When a rename fails, the files
    are put back and the error propagates.

    Raises
    ------
    _EarlierFilesStranded
        When putting the earlier files back fails too; they stay in the staging folder.
    """
    previous = staging / ".previous"
    previous.mkdir()
    set_aside: list[str] = []
    placed: list[str] = []
    try:
        for name in names:
            target = out_dir / name
            if target.is_dir() and not target.is_symlink():
                raise AllocationError(
                    f"cannot write {target}: a folder of that name is in the way; move "
                    "it, or choose another folder with --out"
                )
            if os.path.lexists(target):
                os.replace(target, previous / name)
                set_aside.append(name)
        for name in names:
            os.replace(staging / name, out_dir / name)
            placed.append(name)
    except BaseException as exc:
        if _put_back(staging, out_dir, previous, set_aside, placed):
            raise
        cause = _cause(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        raise _EarlierFilesStranded(
            f"cannot write the outputs into {out_dir}: {cause}. The files of the earlier "
            f"run could not all be put back either: they are in {previous}"
        ) from exc


def _put_back(
    staging: Path, out_dir: Path, previous: Path, set_aside: list[str], placed: list[str]
) -> bool:
    """Undo `_move_into_place`; return whether every file went back."""
    restored = True
    for name in placed:
        try:
            os.replace(out_dir / name, staging / name)
        except OSError:
            restored = False
    for name in set_aside:
        try:
            os.replace(previous / name, out_dir / name)
        except OSError:
            restored = False
    return restored


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return the ones created, outermost first."""
    missing = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    created: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
    except OSError:
        _remove_empty(created)
        raise
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove the given folders, innermost first, as long as they are empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def _cause(exc: OSError) -> str:
    """Return the reason of an OSError in words, with its errno name."""
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} ({errno.errorcode.get(exc.errno, exc.errno)})"


_SHAREABLE_SCHEMES = ("http://", "https://", "file://")
_URL_SAFE = ":/?#@!$&*+,;=%~"


def share_link(share_url: str | None, file_name: str) -> str | None:
    """Return the address of `file_name` in the shared output folder, or None.

    A URL must use http, https or file; anything else is a path, made absolute and
    turned into a file URL. Characters that could end a markdown link are
    percent-encoded. The link lands in the Prefect UI, so no other scheme (such
    as javascript:) is accepted.

    Raises
    ------
    InputError
        For a URL with another scheme.
    """
    if share_url is None:
        return None
    text = share_url.strip()
    if not text:
        raise InputError(
            "is empty; give the URL or path where the output folder is shared",
            file="command line",
            field="--share-url",
        )
    if text.lower().startswith(("http://", "https://")):
        parts = urlsplit(text)
        if not parts.hostname:
            raise InputError(
                "has no host name; give a URL such as https://reports.example.com/sweeps/",
                file="command line",
                field="--share-url",
                value=share_url,
                has_value=True,
            )
        if "@" in parts.netloc:
            raise InputError(
                "contains a user name or password, which would be stored in the Prefect "
                "artifact; give the URL without them",
                file="command line",
                field="--share-url",
                value=re.sub(r"//[^@/]*@", "//***@", text),
                has_value=True,
            )
    if text.lower().startswith(_SHAREABLE_SCHEMES):
        # Percent-encode what could end a markdown link or an attribute: spaces,
        # quotes, brackets, parentheses and angle brackets.
        return quote(text.rstrip("/") + "/" + file_name, safe=_URL_SAFE)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) and not re.match(r"^[A-Za-z]:[\\/]", text):
        raise InputError(
            "is a URL with a scheme other than http, https or file; give such a URL or a "
            "folder path",
            file="command line",
            field="--share-url",
            value=share_url,
            has_value=True,
        )
    return (Path(text).expanduser().resolve() / file_name).as_uri()


def check_yaml_output_file(
    out: Path, *, inputs: Sequence[Path] = (), companions: Sequence[Path] = ()
) -> None:
    """Check the `--out` file of a command that writes one YAML file, before it runs.

    Parameters
    ----------
    out
        The YAML file to write. It may exist, and is then replaced.
    inputs
        Files the command reads, which neither `out` nor a companion may overwrite.
    companions
        Other files written beside `out`, such as the report of `allocation calibrate`.

    Raises
    ------
    InputError
        When `out` is a folder, does not end in .yaml or .yml, lies in a folder that does
        not exist, or would overwrite one of `inputs`.
    """
    if out.is_dir():
        raise _out_error(out, "is a folder; give the path of the YAML file to write")
    if out.suffix.lower() not in _YAML_SUFFIXES:
        raise _out_error(
            out, "expected a file name ending in .yaml or .yml, because the file is YAML"
        )
    if not out.parent.is_dir():
        raise _out_error(
            out,
            f"the folder {str(out.parent)!r} does not exist; create it or choose another path",
        )
    for path in inputs:
        if path.exists() and any(
            target.exists() and target.resolve() == path.resolve() for target in (out, *companions)
        ):
            raise _out_error(
                out, f"would overwrite the input file {str(path)!r}; choose another path"
            )


def _out_error(out: Path, message: str) -> InputError:
    return InputError(message, file="command line", field="--out", value=out, has_value=True)
