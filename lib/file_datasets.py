"""Datasets of your own: `datasets.<name>: {path, learning_check}` in the params names a folder holding
train.jsonl and test.jsonl in the data contract (the README's). They are read, checked line by line
(`file_problems`: every problem at once, `<file>:<line>: <what>`) and normalised (the optional fields filled
in); lib.datasets writes them to the run's data folder like a generated set, so every later stage treats both
kinds alike. Reads, writes nothing; `python -m lib.params` runs the same checks before any stage.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .runs import ROOT

FILE_GENERATOR = "files"  # the manifest's `generator` of a dataset read from files
FILE_VERSION = "1"  # bump when the normalisation below changes what is written
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")  # the default sentence split of a document without `sentences`


def split_sentences(text: str) -> list[str]:
    """A document's sentences when its row gives none: cut after . ! ? followed by whitespace (so the
    sentences, joined with the whitespace, give the text back)."""
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


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


def _is_text(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _is_index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _train_row_problems(r: dict) -> list[str]:
    """What is wrong with one training row of a file (the caller adds file and line)."""
    out = []
    has_pc = "prompt" in r or "completion" in r
    if not _is_text(r.get("id")):
        out.append("missing field 'id'" if "id" not in r else "field 'id' must be a non-empty string")
    if "text" not in r and not has_pc:
        out.append("missing field 'text'")
    elif "text" in r and not _is_text(r["text"]):
        out.append("field 'text' must be a non-empty string")
    if has_pc:
        if not (isinstance(r.get("prompt"), str) and _is_text(r.get("completion"))):
            out.append("fields 'prompt' and 'completion' must come together, as strings "
                       "(completion non-empty)")
        elif "text" in r and r["text"] != r["prompt"] + r["completion"]:
            out.append("field 'text' must be prompt + completion")
    if "sentences" in r:
        sents = r["sentences"]
        if not isinstance(sents, list) or not sents or not all(_is_text(s) for s in sents):
            out.append("field 'sentences' must be a non-empty list of non-empty strings")
        elif _is_text(r.get("text")) and not _in_order(r["text"], sents):
            out.append("field 'sentences': not found one after another in the text")
    if "facts" in r and not (isinstance(r["facts"], list) and all(_is_text(f) for f in r["facts"])):
        out.append("field 'facts' must be a list of non-empty strings")
    return out


def _in_order(text: str, sentences: list[str]) -> bool:
    pos = 0
    for s in sentences:
        i = text.find(s, pos)
        if i < 0:
            return False
        pos = i + len(s)
    return True


def _test_item_problems(x: dict, known: set[str]) -> list[str]:
    """What is wrong with one test item of a file (the caller adds file and line); `known`: the training
    ids and facts a support may name."""
    out = []
    for key in ("id", "split", "prompt"):
        if key not in x:
            out.append(f"missing field {key!r}")
        elif not _is_text(x[key]):
            out.append(f"field {key!r} must be a non-empty string" + (" (an empty split name)"
                                                                        if key == "split" else ""))
    for key in ("subset", "cluster"):
        if key in x and not _is_text(x[key]):
            out.append(f"field {key!r} must be a non-empty string")
    opts = x.get("options")
    if "options" not in x:
        out.append("missing field 'options'")
    elif not isinstance(opts, list) or not all(_is_text(o) for o in opts):
        out.append("field 'options' must be a list of non-empty strings")
        opts = None
    elif len(opts) < 2:
        out.append(f"fewer than 2 options ({len(opts)})")
    elif len(set(opts)) < len(opts):
        out.append("duplicate options: " + ", ".join(repr(o) for o in sorted({o for o in opts
                                                                               if opts.count(o) > 1})))
    n = len(opts) if isinstance(opts, list) else None
    if "gold" not in x and "golds" not in x:
        out.append("missing field 'gold' (or 'golds')")
    if "gold" in x:
        if not _is_index(x["gold"]):
            out.append(f"field 'gold' must be an option index (got {x['gold']!r})")
        elif n is not None and not 0 <= x["gold"] < n:
            out.append(f"gold {x['gold']} is outside the {n} options (indices 0-{n - 1})")
    if "golds" in x:
        g = x["golds"]
        if not isinstance(g, list) or not g or not all(_is_index(i) for i in g) or len(set(g)) < len(g):
            out.append("field 'golds' must be a non-empty list of distinct option indices")
        elif n is not None and any(not 0 <= i < n for i in g):
            out.append(f"golds {g} has an index outside the {n} options (indices 0-{n - 1})")
        elif _is_index(x.get("gold")) and x["gold"] not in g:
            out.append(f"gold {x['gold']} is not among golds {g}")
    if isinstance(x.get("prompt"), str) and x["prompt"].endswith((" ", "\n")):
        out.append("the prompt ends with whitespace (options are scored as ' ' + option)")
    if isinstance(opts, list) and any(o.startswith((" ", "\n")) for o in opts):
        out.append("an option starts with whitespace (options are scored as ' ' + option)")
    sup = x.get("support", [])
    if not isinstance(sup, list) or not all(_is_text(s) for s in sup):
        out.append("field 'support' must be a list of training document ids")
    else:
        out += [f"support {s!r} names no training document (no train id or fact is {s!r})"
                for s in sup if s not in known]
    return out


def _duplicate_ids(lines: list[tuple[int, dict]]) -> list[tuple[int, str]]:
    first, out = {}, []
    for i, r in lines:
        rid = r.get("id")
        if not isinstance(rid, str):
            continue
        if rid in first:
            out.append((i, f"duplicate id {rid!r} (first on line {first[rid]})"))
        else:
            first[rid] = i
    return out


def _at(path: Path, found: list[tuple[int, str]]) -> list[str]:
    """(line, problem) pairs as `file:line: problem` lines, in line order (a line's problems as found)."""
    return [f"{_shown(path)}:{i}: {msg}" for i, msg in sorted(found, key=lambda t: t[0])]


def file_rows(name: str, cfg) -> tuple[list[dict], list[dict], list[str]]:
    """(normalised train rows, normalised test items, problems) of a dataset from files. Rows are only
    meaningful when there are no problems."""
    folder = cfg.folder()
    paths = {f: folder / f for f in ("train.jsonl", "test.jsonl")}
    if not folder.is_dir():
        return [], [], [f"datasets.{name}.path: folder not found: {_shown(folder)}"]
    missing = [f"datasets.{name}.path: file not found: {_shown(p)}"
               for p in paths.values() if not p.is_file()]
    if missing:
        return [], [], missing
    tr_path, te_path = paths["train.jsonl"], paths["test.jsonl"]
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
    if te_lines and splits and cfg.learning_check not in splits:
        problems.append(f"datasets.{name}.learning_check: split {cfg.learning_check!r} has no item in "
                        f"{_shown(te_path)} (its splits: {', '.join(splits)})")
    test = [_normal_test(x) for _, x in te_lines]
    return train, test, problems


def _normal_train(r: dict) -> dict:
    """A training row in the contract's full form: id, text (prompt + completion when absent), sentences
    (when absent: split_sentences, or [text] for a prompt/completion row, which is one example), facts
    ([id] + its own facts: a support may name the document), the rest as given."""
    text = r["text"] if "text" in r else f"{r.get('prompt', '')}{r.get('completion', '')}"
    text = text if isinstance(text, str) else ""
    rid = r.get("id")
    # only strings: a malformed row is reported by _train_row_problems and must not crash the normalising
    facts = [f for f in [rid, *(r.get("facts") if isinstance(r.get("facts"), list) else [])] if _is_text(f)]
    default = [text] if "prompt" in r else split_sentences(text) or [text]
    return {"id": rid, "text": text, "sentences": r.get("sentences") or default,
            "facts": list(dict.fromkeys(facts)),
            **{k: v for k, v in r.items() if k not in ("id", "text", "sentences", "facts")}}


def _normal_test(x: dict) -> dict:
    """A test item in the contract's full form: gold (the first of golds when absent), subset ("all" when
    absent), support ([] when absent), cluster (the item's id when absent: every item its own cluster), the
    rest as given."""
    golds_ = x.get("golds") if isinstance(x.get("golds"), list) else None
    gold = x["gold"] if "gold" in x else (min(golds_) if golds_ and all(map(_is_index, golds_)) else 0)
    out = {"id": x.get("id"), "split": x.get("split"), "subset": x.get("subset", "all"),
           "prompt": x.get("prompt"), "options": x.get("options"), "gold": gold}
    if golds_ is not None:
        out["golds"] = golds_
    out |= {"support": x.get("support", []), "cluster": x.get("cluster", x.get("id"))}
    return out | {k: v for k, v in x.items() if k not in out}


def file_problems(params, name: str) -> list[str]:
    """Every problem of the dataset from files `name` in these params, one line each, naming the file and
    line (`data/x/test.jsonl:7: gold 4 is outside the 3 options`); [] when it can be built. Reads, writes
    nothing."""
    return file_rows(name, params.datasets.files[name])[2]
