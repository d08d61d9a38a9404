"""Where every stage writes, atomic writes, and caching keyed by the params a stage depends on.

Layout (all git-ignored):

    runs/<params name>/data/<dataset>/{train.jsonl,test.jsonl,manifest.json}   notebook 01
    runs/<params name>/scores/<dataset>__<condition>.jsonl                     per-item log-likelihoods
    runs/<params name>/ft/..., augment/..., notebooks/...                      later stages

A stage is cached by a *stamp*: a small JSON file written last, holding the hash of the inputs the stage
depends on and the sha256 of every file it wrote. A stage removes its stamp before it writes (`invalidate`)
and writes it last (`mark_fresh`); `is_fresh(path, key)` is true only when the stamp parses, its key hash
matches and every output still has its recorded hash, so a killed run (no stamp), changed params (other hash)
or a damaged output (other sha256) recompute; every file is written to a temp file and renamed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]  # the repository root
# COMPENDIUM_RUNS: another runs/ folder (a test's temp folder reaches the processes `accelerate launch` starts)
RUNS = Path(os.environ.get("COMPENDIUM_RUNS", ROOT / "runs"))


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
    """The rows of a JSONL file; a line that does not parse raises ValueError naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {i}: not valid JSON ({e.msg})") from None
    return rows


# --------------------------------------------------------------------------------------------- caching
def stamp_path(path: Path) -> Path:
    """The stamp of an output file or folder: `<path>.stamp.json` beside it."""
    path = Path(path)
    return path.parent / f"{path.name}.stamp.json"


def _output_files(path: Path) -> list[Path]:
    """The files a stamp vouches for: `path` itself, or every file under the folder `path` (stamps and
    temp files excluded)."""
    if path.is_file():
        return [path]
    return sorted(f for f in path.rglob("*") if f.is_file() and not f.name.endswith((".stamp.json", ".tmp")))


def _hashes(path: Path, outputs) -> dict[str, str]:
    files = [Path(o) for o in outputs] if outputs is not None else _output_files(path)
    base = path if path.is_dir() else path.parent
    return {os.path.relpath(f, base): sha256_file(f) for f in files}


def stale_reason(path: Path, key: Any) -> str | None:
    """None when `path` exists, its stamp is a JSON object with this exact key, and every output file the
    stamp lists still has the sha256 it had when the stage finished; else why not, in a few words. Anything
    odd (no stamp, a stamp that does not parse or has the wrong shape, a missing, truncated or edited output)
    is a reason to recompute, never an exception."""
    path, stamp = Path(path), stamp_path(path)
    if not path.exists():
        return "not built"
    if not stamp.exists():
        return "no stamp (never finished)"
    try:
        st = read_json(stamp)
    except (ValueError, OSError) as e:
        return f"stamp {stamp.name} does not parse ({type(e).__name__})"
    if not isinstance(st, dict) or not isinstance(st.get("outputs"), dict) or not st["outputs"]:
        return f"stamp {stamp.name} has the wrong shape"
    if st.get("key_hash") != key_hash(key):
        return "inputs changed"
    base = path if path.is_dir() else path.parent
    for rel, h in st["outputs"].items():
        f = base / rel
        if not f.is_file():
            return f"{rel} is missing"
        if sha256_file(f) != h:
            return f"{rel} changed since it was written (sha256 mismatch)"
    return None


def is_fresh(path: Path, key: Any) -> bool:
    """True when the stage's outputs at `path` are complete and were made with this exact key (see
    stale_reason)."""
    return stale_reason(path, key) is None


def mark_fresh(path: Path, key: Any, *, outputs: Iterable[Path] | None = None, **info) -> None:
    """Write the stamp last, after `path` is complete: the key's hash and the sha256 of every output (the
    files in `outputs`, default `path` itself or every file under the folder `path`)."""
    path = Path(path)
    write_json(stamp_path(path), {"key_hash": key_hash(key), "key": key,
                                  "outputs": _hashes(path, outputs), **info})


def invalidate(path: Path) -> None:
    """Remove the stamp of `path`: a stage calls this before it writes anything, so a kill mid-way leaves
    outputs that no rerun trusts."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(stamp_path(path))
