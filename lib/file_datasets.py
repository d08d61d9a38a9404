"""Datasets of your own: `datasets.<name>: {path, learning_check}` in the params names a folder holding
train.jsonl and test.jsonl in the README's data contract. `file_rows` reads them, checks every line (each
problem as `<file>:<line>: <what>`) and fills in the optional fields; lib.datasets writes the rows to the
run's data folder like a generated set. Reads, writes nothing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .runs import ROOT

FILE_GENERATOR = "files"  # the manifest's `generator` of a dataset read from files
FILE_VERSION = "1"  # bump when the normalisation below changes what is written
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")  # the default sentence split of a document without `sentences`


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _is_text(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _is_texts(v) -> bool:
    return isinstance(v, list) and all(_is_text(s) for s in v)


def _is_index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _text_fields(r: dict, required: tuple, optional: tuple = ()) -> list[str]:
    """A problem for each required key absent, and for each key given that is not a non-empty string."""
    out = []
    for key in required + optional:
        if key in r and not _is_text(r[key]):
            why = " (an empty split name)" if key == "split" else ""
            out.append(f"field {key!r} must be a non-empty string{why}")
        elif key not in r and key in required:
            out.append(f"missing field {key!r}")
    return out


def _in_order(text: str, sentences: list[str]) -> bool:
    pos = 0
    for s in sentences:
        pos = text.find(s, pos)
        if pos < 0:
            return False
        pos += len(s)
    return True


def _train_row_problems(r: dict) -> list[str]:
    """What is wrong with one training row (the caller adds file and line)."""
    has_pc = "prompt" in r or "completion" in r
    out = _text_fields(r, ("id",) if has_pc else ("id", "text"), ("text",) if has_pc else ())
    if has_pc:
        if not (isinstance(r.get("prompt"), str) and _is_text(r.get("completion"))):
            out.append("fields 'prompt' and 'completion' must come together, as strings "
                       "(completion non-empty)")
        elif "text" in r and r["text"] != r["prompt"] + r["completion"]:
            out.append("field 'text' must be prompt + completion")
    if "sentences" in r:
        if not (_is_texts(r["sentences"]) and r["sentences"]):
            out.append("field 'sentences' must be a non-empty list of non-empty strings")
        elif _is_text(r.get("text")) and not _in_order(r["text"], r["sentences"]):
            out.append("field 'sentences': not found one after another in the text")
    if "facts" in r and not _is_texts(r["facts"]):
        out.append("field 'facts' must be a list of non-empty strings")
    return out


def _test_item_problems(x: dict, known: set[str]) -> list[str]:
    """What is wrong with one test item (the caller adds file and line); `known`: the training ids and facts
    a support may name."""
    out = _text_fields(x, ("id", "split", "prompt"), ("subset", "cluster"))
    opts = x.get("options")
    if "options" not in x:
        out.append("missing field 'options'")
    elif not _is_texts(opts):
        out.append("field 'options' must be a list of non-empty strings")
        opts = None
    elif len(opts) < 2:
        out.append(f"fewer than 2 options ({len(opts)})")
    elif len(set(opts)) < len(opts):
        dups = sorted({o for o in opts if opts.count(o) > 1})
        out.append("duplicate options: " + ", ".join(repr(o) for o in dups))
    n = len(opts) if isinstance(opts, list) else None
    gold, golds = x.get("gold"), x.get("golds")
    if "gold" not in x and "golds" not in x:
        out.append("missing field 'gold' (or 'golds')")
    elif "gold" in x and not _is_index(gold):
        out.append(f"field 'gold' must be an option index (got {gold!r})")
    elif "gold" in x and n is not None and not 0 <= gold < n:
        out.append(f"gold {gold} is outside the {n} options (indices 0-{n - 1})")
    if "golds" in x:
        if not (isinstance(golds, list) and golds and all(map(_is_index, golds))
                and len(set(golds)) == len(golds)):
            out.append("field 'golds' must be a non-empty list of distinct option indices")
        elif n is not None and any(not 0 <= i < n for i in golds):
            out.append(f"golds {golds} has an index outside the {n} options (indices 0-{n - 1})")
        elif _is_index(gold) and gold not in golds:
            out.append(f"gold {gold} is not among golds {golds}")
    if isinstance(x.get("prompt"), str) and x["prompt"].endswith((" ", "\n")):
        out.append("the prompt ends with whitespace (options are scored as ' ' + option)")
    if isinstance(opts, list) and any(o.startswith((" ", "\n")) for o in opts):
        out.append("an option starts with whitespace (options are scored as ' ' + option)")
    sup = x.get("support", [])
    if not _is_texts(sup):
        return out + ["field 'support' must be a list of training document ids"]
    return out + [f"support {s!r} names no training document (no train id or fact is {s!r})"
                  for s in sup if s not in known]


def _read_lines(path: Path) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    """(line number, object) of every non-blank line of a JSONL file, and (line number, problem) of every
    line that is not a JSON object."""
    rows, problems = [], []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append((i, f"not valid JSON ({e.msg})"))
                continue
            if isinstance(row, dict):
                rows.append((i, row))
            else:
                problems.append((i, f"not a JSON object (got {type(row).__name__})"))
    return rows, problems


def _duplicate_ids(lines: list[tuple[int, dict]]) -> list[tuple[int, str]]:
    first, out = {}, []
    for i, r in lines:
        rid = r.get("id")
        if isinstance(rid, str) and rid in first:
            out.append((i, f"duplicate id {rid!r} (first on line {first[rid]})"))
        elif isinstance(rid, str):
            first[rid] = i
    return out


def _at(path: Path, found: list[tuple[int, str]]) -> list[str]:
    """(line, problem) pairs as `file:line: problem` lines, in line order (a line's problems as found)."""
    return [f"{_shown(path)}:{i}: {msg}" for i, msg in sorted(found, key=lambda t: t[0])]


def folder_problems(name: str, cfg) -> list[str]:
    """The dataset folder or its train.jsonl / test.jsonl missing, one line each; [] when all are there."""
    folder = cfg.folder()
    if not folder.is_dir():
        return [f"datasets.{name}.path: folder not found: {_shown(folder)}"]
    return [f"datasets.{name}.path: file not found: {_shown(folder / f)}"
            for f in ("train.jsonl", "test.jsonl") if not (folder / f).is_file()]


def file_rows(name: str, cfg) -> tuple[list[dict], list[dict], list[str]]:
    """(normalised train rows, normalised test items, problems) of a dataset from files (`cfg`: its
    FileDatasetParams). Rows are only meaningful when there are no problems."""
    missing = folder_problems(name, cfg)
    if missing:
        return [], [], missing
    tr_path, te_path = cfg.folder() / "train.jsonl", cfg.folder() / "test.jsonl"
    tr_lines, tr_bad = _read_lines(tr_path)
    te_lines, te_bad = _read_lines(te_path)
    train = [_normal_train(r) for _, r in tr_lines]
    known = {f for r in train for f in r["facts"]}  # what a support may name: the ids, and facts rows give
    tr_bad += [(i, p) for i, r in tr_lines for p in _train_row_problems(r)] + _duplicate_ids(tr_lines)
    te_bad += [(i, p) for i, x in te_lines for p in _test_item_problems(x, known)] + _duplicate_ids(te_lines)
    problems = _at(tr_path, tr_bad) + _at(te_path, te_bad)
    if not tr_lines:
        problems.append(f"{_shown(tr_path)}: no training documents (an empty file)")
    if not te_lines:
        problems.append(f"{_shown(te_path)}: no test items (an empty file)")
    splits = list(dict.fromkeys(x["split"] for _, x in te_lines if _is_text(x.get("split"))))
    if splits and cfg.learning_check not in splits:
        problems.append(f"datasets.{name}.learning_check: split {cfg.learning_check!r} has no item in "
                        f"{_shown(te_path)} (its splits: {', '.join(splits)})")
    return train, [_normal_test(x) for _, x in te_lines], problems


def _normal_train(r: dict) -> dict:
    """A training row in the contract's full form: id, text (prompt + completion when absent), sentences
    (when absent: cut after . ! ? and whitespace; [text] for a prompt/completion row, one example), facts
    ([id] + its own: a support may name the document), the rest as given. Never raises on a malformed row."""
    text = r["text"] if "text" in r else f"{r.get('prompt', '')}{r.get('completion', '')}"
    text = text if isinstance(text, str) else ""
    rid = r.get("id")
    facts = [f for f in [rid, *(r.get("facts") if isinstance(r.get("facts"), list) else [])] if _is_text(f)]
    split = [s for s in SENTENCE_END.split(text.strip()) if s]
    default = [text] if "prompt" in r else split or [text]
    return {"id": rid, "text": text, "sentences": r.get("sentences") or default,
            "facts": list(dict.fromkeys(facts)),
            **{k: v for k, v in r.items() if k not in ("id", "text", "sentences", "facts")}}


def _normal_test(x: dict) -> dict:
    """A test item in the contract's full form: gold (the first of golds when absent), subset ("all" when
    absent), support ([] when absent), cluster (the item's id when absent: every item its own cluster), the
    rest as given."""
    golds = x.get("golds") if isinstance(x.get("golds"), list) else None
    gold = x["gold"] if "gold" in x else (min(golds) if golds and all(map(_is_index, golds)) else 0)
    out = {"id": x.get("id"), "split": x.get("split"), "subset": x.get("subset", "all"),
           "prompt": x.get("prompt"), "options": x.get("options"), "gold": gold,
           **({} if golds is None else {"golds": golds}),
           "support": x.get("support", []), "cluster": x.get("cluster", x.get("id"))}
    return out | {k: v for k, v in x.items() if k not in out}


def file_problems(params, name: str) -> list[str]:
    """Every problem of the dataset from files `name` in these params, one line each, naming the file and
    line (`data/x/test.jsonl:7: gold 4 is outside the 3 options`); [] when it can be built."""
    return file_rows(name, params.datasets.files[name])[2]
