"""Where every stage writes, atomic writes, and caching keyed by the params a stage depends on.

Layout (all git-ignored):

    runs/<params name>/data/<dataset>/{train.jsonl,test.jsonl,manifest.json}   notebook 01
    runs/<params name>/scores/<dataset>__<condition>.jsonl                     per-item log-likelihoods
    runs/<params name>/results/<dataset>__<condition>.csv                      tidy accuracy rows
    runs/<params name>/ft/..., augment/..., notebooks/...                      later stages

A stage is cached by a *stamp*: a small JSON file written last, holding the hash of the inputs the stage
depends on. `is_fresh(path, key)` is true only when the stamp exists and its hash matches, so a killed run
(no stamp) or changed params (other hash) recompute; every file is written to a temp file and renamed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .params import ROOT

RUNS = ROOT / "runs"


def run_dir(params_or_name) -> Path:
    """`runs/<name>/` for a Params object or a params name."""
    name = params_or_name if isinstance(params_or_name, str) else params_or_name.name
    return RUNS / name


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def key_hash(key: Any, n: int = 64) -> str:
    """sha256 of the canonical JSON of `key` (first n hex digits)."""
    return hashlib.sha256(canonical_json(key).encode()).hexdigest()[:n]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temp path beside `path`; on success rename it over `path`, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """One JSON object per line, keys in insertion order, UTF-8: the same rows give the same bytes."""
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------------------------- caching
def stamp_path(path: Path) -> Path:
    """The stamp of an output file or folder: `<path>.stamp.json` beside it."""
    path = Path(path)
    return path.parent / f"{path.name}.stamp.json"


def is_fresh(path: Path, key: Any) -> bool:
    """True when `path` exists and was finished with this exact key."""
    path, stamp = Path(path), stamp_path(path)
    if not (path.exists() and stamp.exists()):
        return False
    try:
        return read_json(stamp).get("key_hash") == key_hash(key)
    except (json.JSONDecodeError, OSError):
        return False


def mark_fresh(path: Path, key: Any, **info) -> None:
    """Write the stamp last, after `path` is complete."""
    write_json(stamp_path(path), {"key_hash": key_hash(key), "key": key, **info})


def invalidate(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(stamp_path(path))
