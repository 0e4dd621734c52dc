"""Write a sweep's files into its output folder, all or nothing.

Every file is first written into a hidden staging folder beside the output folder; only
when all of them are complete are they moved into place, each with an atomic rename. A
failure before that point leaves the output folder as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from allocation.errors import AllocationError, InputError

__all__ = ["dataframe_to_arrow", "share_link", "staged_output", "write_json", "write_parquet"]


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

    Yields a function that returns the staging path for a file name. On an exception
    the staging folder is removed and `out_dir` is left untouched.

    Raises
    ------
    AllocationError
        When the output folder cannot be created or written.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    except OSError as exc:
        raise AllocationError(
            f"cannot create the output folder {out_dir}: {exc.strerror or exc}; "
            "choose another folder with --out"
        ) from exc

    names: list[str] = []

    def path_for(name: str) -> Path:
        if "/" in name or "\\" in name or name in {"", ".", ".."}:
            raise ValueError(f"output file name {name!r} must be a plain file name")
        if name not in names:
            names.append(name)
        return staging / name

    try:
        yield path_for
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(staging / name, out_dir / name)
    except OSError as exc:
        raise AllocationError(
            f"cannot write the outputs into {out_dir}: {exc.strerror or exc}; "
            "check free space and permissions, or choose another folder with --out"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
