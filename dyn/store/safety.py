"""Codec policy: which stored arrays dyn is willing to decode.

Some zarr codecs (pickle, object arrays) execute code from the file when decoded. dyn reads only plain numeric
and string arrays with compression codecs, and checks every array's JSON metadata before any chunk is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import StoreError

__all__ = ["SAFE_CODECS", "check_codecs"]

#: Codecs dyn decodes. Anything else is refused before any data is read.
SAFE_CODECS = {"bytes", "blosc", "zstd", "gzip", "crc32c", "transpose", "vlen-utf8", "vlen-bytes", "sharding_indexed"}


def check_codecs(path: str | os.PathLike) -> None:
    """Refuse a store containing arrays whose codecs or data types dyn does not decode safely (JSON only)."""
    root = Path(path)
    for meta_path in root.rglob("zarr.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            raise StoreError(f"{root}: unreadable metadata {meta_path.relative_to(root)}") from None
        if not isinstance(meta, dict) or meta.get("node_type") != "array":
            continue
        name = str(meta_path.parent.relative_to(root))
        dtype = meta.get("data_type")
        if isinstance(dtype, str) and dtype.lower() in ("object", "|o", "o"):
            raise StoreError(f"{root}: array {name} has object data type, which dyn does not read")
        codecs = list(meta.get("codecs") or [])
        while codecs:
            codec = codecs.pop()
            cname = codec.get("name") if isinstance(codec, dict) else None
            if cname not in SAFE_CODECS:
                raise StoreError(f"{root}: array {name} uses codec {cname!r}, which dyn does not read "
                                 "(only compression codecs; some codecs execute code when decoding)")
            codecs.extend((codec.get("configuration") or {}).get("codecs") or [])


