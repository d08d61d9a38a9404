"""Where every stage writes (`runs/<params name>/`: data/, scores/, ft/, augment/, notebooks/; the README
describes them), atomic writes (a temp file renamed), and caching keyed by the params a stage depends on.

A stage is cached by a *stamp* (`<output>.stamp.json`) holding the hash of its inputs and the sha256 of every
file it wrote. A stage removes its stamp before it writes (`invalidate`) and writes it last (`mark_fresh`), so
a killed run, changed params or a damaged output recompute.
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
# COMPENDIUM_RUNS: another runs/ folder (so a test's temp folder reaches what `accelerate launch` starts)
RUNS = Path(os.environ.get("COMPENDIUM_RUNS", ROOT / "runs"))


def run_dir(params_or_name) -> Path:
    """`runs/<name>/` for a Params object or a params name."""
    return RUNS / (params_or_name if isinstance(params_or_name, str) else params_or_name.name)


def key_hash(key: Any, n: int = 64) -> str:
    """sha256 of the canonical JSON of `key` (sorted keys, compact, UTF-8), first n hex digits."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


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


def stamp_path(path: Path) -> Path:
    """The stamp of an output file or folder: `<path>.stamp.json` beside it."""
    path = Path(path)
    return path.parent / f"{path.name}.stamp.json"


def stale_reason(path: Path, key: Any) -> str | None:
    """None when `path` exists, its stamp holds this exact key and every output it lists still has its
    sha256; else why not, in a few words. Anything odd (no stamp, a stamp that does not parse or has the wrong
    shape, a missing or edited output) is a reason to recompute, never an exception."""
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
    """Whether the outputs at `path` are complete and were made with this exact key (see stale_reason)."""
    return stale_reason(path, key) is None


def mark_fresh(path: Path, key: Any, *, outputs: Iterable[Path] | None = None, **info) -> None:
    """Write the stamp last, after `path` is complete: the key, its hash, `info`, and the sha256 of every
    output (the files in `outputs`; default `path` itself, or every file under the folder `path` but stamps
    and temp files)."""
    path = Path(path)
    base = path if path.is_dir() else path.parent
    if outputs is None:
        outputs = [path] if path.is_file() else sorted(
            f for f in path.rglob("*") if f.is_file() and not f.name.endswith((".stamp.json", ".tmp")))
    hashes = {os.path.relpath(f, base): sha256_file(Path(f)) for f in outputs}
    write_json(stamp_path(path), {"key_hash": key_hash(key), "key": key, "outputs": hashes, **info})


def invalidate(path: Path) -> None:
    """Remove the stamp of `path`: a stage calls this before it writes anything, so a kill mid-way leaves
    outputs that no rerun trusts."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(stamp_path(path))
