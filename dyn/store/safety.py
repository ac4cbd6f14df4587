"""Codec policy: which stored arrays dyn is willing to decode.

Some zarr codecs (pickle, object arrays) execute code from the file when decoded. dyn reads only plain numeric
and string arrays with compression codecs, and checks every array's JSON metadata before any chunk is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from ..errors import StoreError

__all__ = ["SAFE_CODECS", "check_codecs", "check_metadata"]

#: Codecs dyn decodes. Anything else is refused before any data is read.
SAFE_CODECS = {"bytes", "blosc", "zstd", "gzip", "crc32c", "transpose", "vlen-utf8", "vlen-bytes", "sharding_indexed"}


def check_codecs(path: str | os.PathLike) -> None:
    """Refuse a store containing arrays whose codecs or data types dyn does not decode safely (JSON only).

    Both the arrays' own ``zarr.json`` files and the copies of their metadata consolidated in a group's
    ``zarr.json`` are checked: readers use the consolidated copy when there is one.
    """
    root = Path(path)
    metadata = []
    for meta_path in root.rglob("zarr.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            raise StoreError(f"{root}: unreadable metadata {meta_path.relative_to(root)}") from None
        metadata.append((str(meta_path.parent.relative_to(root)), meta))
    check_metadata(root, metadata)


def check_metadata(root: Any, metadata: Iterable[tuple[str, Any]]) -> None:
    """:func:`check_codecs` on parsed ``zarr.json`` contents: ``(folder in the store, contents)`` pairs (``"."``:
    the root); ``root`` names the store in the message (a folder, or a URL).

    Examples
    --------
    >>> check_metadata("s.zarr", [(".", {"node_type": "group"}), ("a", {"node_type": "array", "codecs": [{"name": "bytes"}]})])
    >>> check_metadata("s.zarr", [("a", {"node_type": "array", "codecs": [{"name": "pickle"}]})])
    Traceback (most recent call last):
    ...
    dyn.errors.StoreError: s.zarr: array a uses codec 'pickle', which dyn does not read (only compression codecs; some codecs execute code when decoding)
    """
    for folder, meta in metadata:
        if not isinstance(meta, dict):
            continue
        where = PurePosixPath(folder)
        if meta.get("node_type") == "array":
            _check_array(root, str(where), meta)
        consolidated = meta.get("consolidated_metadata")
        entries = consolidated.get("metadata") if isinstance(consolidated, dict) else None
        for name, entry in (entries.items() if isinstance(entries, dict) else ()):
            if isinstance(entry, dict) and entry.get("node_type") == "array":
                _check_array(root, str(where / str(name)), entry)


def _check_array(root: Any, name: str, meta: dict) -> None:
    dtype = meta.get("data_type")
    if isinstance(dtype, str) and dtype.lower() in ("object", "|o", "o"):
        raise StoreError(f"{root}: array {name} has object data type, which dyn does not read")
    raw = meta.get("codecs")
    codecs = list(raw) if isinstance(raw, list) else ([] if raw is None else [raw])
    while codecs:
        codec = codecs.pop()
        cname = codec.get("name") if isinstance(codec, dict) else None
        if cname not in SAFE_CODECS:
            raise StoreError(f"{root}: array {name} uses codec {cname!r}, which dyn does not read "
                             "(only compression codecs; some codecs execute code when decoding)")
        inner = (codec.get("configuration") or {}).get("codecs") if isinstance(codec.get("configuration"), dict) else None
        codecs.extend(inner if isinstance(inner, list) else [])
