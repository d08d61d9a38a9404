"""Derivatoids: process knowledge (PAPER.md 2.5; notebook 01 explains the design). The rules are our own
design; the paper's are not public.

Expressions are built from nonsense function symbols applied to x (`blick(x)`), small integers and four
constructors: sum `f + g`, product `f * g`, nesting `a(g)` and scaling `k f`; binary sub-expressions are
parenthesised, so every expression has one reading. The transform `<name>[...]` (a nonsense name, say
`grelt`) has five rules, each deliberately unlike the derivative rule it resembles:

    atom     grelt[a(x)]  = a'(x)                a' is a's partner: the symbols form one cycle, a -> a' -> ...
    sum      grelt[f + g] = grelt[f] * grelt[g]  (a sum becomes a product)
    product  grelt[f * g] = grelt[g] - f         (the right factor is transformed, the left one subtracted)
    nest     grelt[a(g)]  = a'(grelt[g])         (the partner applied to the transformed inside)
    scale    grelt[k f]   = (k+1) grelt[f]       (the constant goes up by one)

Rule combinations are the (outer, inner) constructor pairs along an expression's edges; the seed holds out
four of the 16, one per outer and one per inner constructor. Training rows (prompt/completion) show every
atom, each rule over atoms and depth-2 expressions of trained pairs. Test splits: `trained` (trained pairs on
new inputs) and `compositional` (a held-out pair); `subset` is the outer rule. Options are the correct output
and wrong rule applications at one node (`VARIANTS`), never equal to it up to + / * order; with
`counterbalance` only the `FAIR` ones, closest to the gold's overlap with the prompt first (a wrong rule that
copies part of the prompt is what a model that learnt nothing prefers: 88-100% of the time over the gold).
`support`: `atom:<a>`, `rule:<constructor>` and `pair:<outer>><inner>` for each trained pair an item uses.
"""
from __future__ import annotations

import random
import re

GENERATOR_VERSION = "derivatoids-3"
OPS = ("sum", "product", "nest", "scale")
# the wrong-rule variants of `transform`, per constructor
VARIANTS = {"atom": ("same", "inverse", "twice"), "sum": ("textbook", "other", "swap", "minus", "minus_r"),
            "product": ("textbook", "other", "swap"), "scale": ("textbook", "other", "swap", "plus2"),
            "nest": ("textbook", "other", "swap", "inverse", "twice")}
# those that transform every part the correct rule transforms (so copy no more of the prompt than the gold)
FAIR = {"atom": ("inverse", "twice"), "sum": ("minus", "minus_r"), "product": ("swap",),
        "nest": ("inverse", "twice"), "scale": ("swap", "plus2")}
N_SYMBOLS = 8


# ----------------------------------------------------------------------------------- expressions as tuples
# ("atom", a) | ("sum", f, g) | ("product", f, g) | ("nest", a, g) | ("scale", k, f),
# and ("minus", f, g) in outputs
def show(e, top: bool = True) -> str:
    op = e[0]
    if op == "atom":
        return f"{e[1]}(x)"
    if op == "nest":
        return f"{e[1]}({show(e[2])})"
    if op == "scale":
        s = f"{e[1]} {show(e[2], False)}"
    else:
        s = f"{show(e[1], False)} {dict(sum='+', product='*', minus='-')[op]} {show(e[2], False)}"
    return s if top else f"({s})"


def canonical(e) -> str:
    """A printed form invariant under commutativity of + and * (children of a sum / product sorted)."""
    op = e[0]
    if op == "atom":
        return e[1]
    if op == "nest":
        return f"{e[1]}({canonical(e[2])})"
    if op == "scale":
        return f"{e[1]}*({canonical(e[2])})"
    kids = [canonical(e[1]), canonical(e[2])]
    return f"{op}({','.join(kids if op == 'minus' else sorted(kids))})"


def transform(e, partner, wrong=None, path=()):
    """The rules above; `wrong=(node path, variant)` uses a wrong rule at that one node (for distractors)."""
    op = e[0]
    w = wrong[1] if wrong is not None and wrong[0] == path else None
    T = lambda sub, i: transform(sub, partner, wrong, path + (i,))
    inverse = {v: k for k, v in partner.items()}
    if op == "atom":
        a = e[1]
        return ("atom", {None: partner[a], "same": a, "inverse": inverse[a], "twice": partner[partner[a]]}[w])
    if op == "sum":
        f, g = e[1], e[2]
        return {None: lambda: ("product", T(f, 1), T(g, 2)),
                "textbook": lambda: ("sum", T(f, 1), T(g, 2)),
                "other": lambda: ("minus", T(g, 2), f),
                "swap": lambda: ("product", T(g, 2), T(f, 1)),
                "minus": lambda: ("minus", T(f, 1), T(g, 2)),
                "minus_r": lambda: ("minus", T(g, 2), T(f, 1))}[w]()
    if op == "product":
        f, g = e[1], e[2]
        return {None: lambda: ("minus", T(g, 2), f),
                "textbook": lambda: ("sum", ("product", T(f, 1), g), ("product", f, T(g, 2))),
                "other": lambda: ("product", T(f, 1), T(g, 2)),
                "swap": lambda: ("minus", T(f, 1), g)}[w]()
    if op == "nest":
        a, g = e[1], e[2]
        return {None: lambda: ("nest", partner[a], T(g, 2)),
                "textbook": lambda: ("product", ("nest", partner[a], g), T(g, 2)),
                "other": lambda: ("nest", a, T(g, 2)),
                "swap": lambda: ("nest", partner[a], g),
                "inverse": lambda: ("nest", inverse[a], T(g, 2)),
                "twice": lambda: ("nest", partner[partner[a]], T(g, 2))}[w]()
    if op == "scale":
        k, f = e[1], e[2]
        return {None: lambda: ("scale", k + 1, T(f, 2)),
                "textbook": lambda: ("scale", k, T(f, 2)),
                "other": lambda: ("scale", k + 1, f),
                "swap": lambda: ("scale", k - 1 if k > 2 else k + 2, T(f, 2)),
                "plus2": lambda: ("scale", k + 2, T(f, 2))}[w]()
    raise ValueError(f"derivatoids: unknown constructor {op!r}")


def _nodes(e, path=()):
    """(path, sub-expression) of every node, outer first (a `minus` node's parts are not visited)."""
    kids = {"sum": (1, 2), "product": (1, 2), "nest": (2,), "scale": (2,)}.get(e[0], ())
    return [(path, e)] + [n for i in kids for n in _nodes(e[i], path + (i,))]


def pairs(e) -> list[str]:
    """The rule combinations (outer>inner constructor pairs) of an expression."""
    nodes = dict(_nodes(e))
    return sorted({f"{nodes[p[:-1]][0]}>{n[0]}" for p, n in nodes.items() if p and n[0] != "atom"})


def symbols(e) -> list[str]:
    """The function symbols an expression uses."""
    return sorted({n[1] for _, n in _nodes(e) if n[0] in ("atom", "nest")})


def _make(op, rng, syms, inner=None):
    """One expression with constructor `op` on top; children are atoms, or `inner` on one side."""
    atom = lambda: ("atom", rng.choice(syms))
    child = (lambda: _make(inner, rng, syms)) if inner else atom
    if op in ("sum", "product"):
        if inner is None:
            a, b = rng.sample(syms, 2)
            return (op, ("atom", a), ("atom", b))
        return (op, child(), atom()) if rng.random() < 0.5 else (op, atom(), child())
    if op == "nest":
        return ("nest", rng.choice(syms), child())
    return ("scale", rng.randint(2, 8), child())


def _support(e, trained_pairs):
    ops = {n[0] for _, n in _nodes(e)} - {"atom"}
    return sorted([f"atom:{a}" for a in symbols(e)] + [f"rule:{o}" for o in ops]
                  + [f"pair:{p}" for p in pairs(e) if p in trained_pairs])


def make_derivatoids(cfg, seed: int) -> tuple[list[dict], list[dict]]:
    """Training rows (prompt/completion) and multiple-choice test items; deterministic in the seed."""
    from .baselines import words as tokens
    from .words import nonsense_words

    rng = random.Random(f"derivatoids:{seed}")
    words = nonsense_words(N_SYMBOLS + 1, seed + 7919)
    name, syms = words[0], words[1:]
    cycle = syms[:]
    rng.shuffle(cycle)
    partner = dict(zip(cycle, cycle[1:] + cycle[:1]))
    perm = OPS[:]
    while any(a == b for a, b in zip(OPS, perm)):
        perm = tuple(rng.sample(OPS, len(OPS)))
    held = {f"{a}>{b}" for a, b in zip(OPS, perm)}
    trained_pairs = [f"{a}>{b}" for a in OPS for b in OPS if f"{a}>{b}" not in held]

    # training: atoms, every rule over atoms, then depth-2 expressions of trained pairs
    basics = [("atom", a) for a in syms] + [_make(op, rng, syms) for op in OPS for _ in range(2)]
    if cfg.n_train < len(basics) + len(trained_pairs):
        raise ValueError(f"derivatoids: n_train={cfg.n_train} is too small: the partner table, each rule and "
                         f"each trained pair need {len(basics) + len(trained_pairs)} examples")
    exprs = {show(e): e for e in basics}  # printed form -> expression: distinct ones, in order
    i = 0
    while len(exprs) < cfg.n_train:
        if i > 100 * cfg.n_train:
            raise ValueError(f"derivatoids: could not make {cfg.n_train} distinct training expressions")
        outer, inner = trained_pairs[i % len(trained_pairs)].split(">")
        i += 1
        e = _make(outer, rng, syms, inner)
        exprs[show(e)] = e
    rows = []
    for j, (shown, e) in enumerate(exprs.items()):
        prompt, completion = f"{name}[{shown}] =", " " + show(transform(e, partner))
        rows.append({"id": f"derivatoids-train-{j:04d}", "text": prompt + completion,
                     "sentences": [prompt + completion], "facts": _support(e, set(trained_pairs)),
                     "prompt": prompt, "completion": completion})
    stated = {f for r in rows for f in r["facts"]}
    seen = set(exprs)

    items, n_split = [], {"trained": (cfg.n_test + 1) // 2, "compositional": cfg.n_test // 2}
    for split, n in n_split.items():
        pool = trained_pairs if split == "trained" else sorted(held)
        made, tries = 0, 0
        while made < n:
            tries += 1
            if tries > 200 * n + 1000:
                raise ValueError(f"derivatoids: could not make {n} distinct {split} items")
            outer = OPS[made % len(OPS)]  # the subset: items cycle over the outer rule
            outer, inner = rng.choice([p for p in pool if p.startswith(outer + ">")]).split(">")
            e = _make(outer, rng, syms, inner)
            prompt = f"{name}[{show(e)}] ="
            gold_e = transform(e, partner)
            gold = show(gold_e)
            if show(e) in seen or gold in prompt:
                continue
            wrongs, taken = [], {canonical(gold_e)}
            for path, node in _nodes(e):
                for v in FAIR[node[0]] if cfg.counterbalance else VARIANTS[node[0]]:
                    w = transform(e, partner, (path, v))
                    if canonical(w) not in taken:  # never the gold (or another one) up to + / * order
                        taken.add(canonical(w))
                        wrongs.append((len(path) > 0, show(w)))
            rng.shuffle(wrongs)
            if cfg.counterbalance:  # then as close as possible to the gold's overlap with the prompt
                overlap = lambda o: len(set(tokens(o)) & set(tokens(prompt)))  # lib.baselines' overlap
                wrongs.sort(key=lambda w: abs(overlap(w[1]) - overlap(gold)))
                cands = [w for _, w in wrongs]
            else:  # prefer a mix: wrong rules at the outer node and at an inner node
                outer_w = [w for deep, w in wrongs if not deep]
                inner_w = [w for deep, w in wrongs if deep]
                cands = [x for pair in zip(outer_w, inner_w) for x in pair] + outer_w + inner_w
            dis = [w for w in dict.fromkeys(cands) if w != gold and w not in prompt][:cfg.n_options - 1]
            opts = [gold, *dis]
            order = list(range(len(opts)))
            rng.shuffle(order)
            seen.add(show(e))
            support = [f for f in _support(e, set(trained_pairs)) if f in stated]
            items.append({"id": f"derivatoids-{split}-{made:04d}", "split": split, "subset": outer,
                          "prompt": prompt, "options": [opts[k] for k in order], "gold": order.index(0),
                          "support": support, "cluster": "+".join(pairs(e))})
            made += 1
    return rows, items


# ------------------------------------------------------------------------------------------------- checks
def parse(s: str):
    """An expression from its printed form (the inverse of `show`); ValueError when it is not one."""
    toks = re.findall(r"\d+|[a-z]+|[()+*-]", s)[::-1]  # a stack: the next token last
    peek = lambda: toks[-1] if toks else None

    def eat(expect=None):
        if not toks or (expect and toks[-1] != expect):
            raise ValueError(f"derivatoids: cannot parse {s!r} at token {n - len(toks)}")
        return toks.pop()

    def term():
        t = peek()
        if t is not None and t.isdigit():
            return ("scale", int(eat()), term())
        if t == "(":
            eat("(")
            e = expr()
        else:
            name = eat()
            eat("(")
            if peek() == "x":
                eat("x")
                e = ("atom", name)
            else:
                e = ("nest", name, expr())
        eat(")")
        return e

    def expr():
        left = term()
        if peek() in ("+", "*", "-"):
            return ({"+": "sum", "*": "product", "-": "minus"}[eat()], left, term())
        return left

    n = len(toks)
    e = expr()
    if toks:
        raise ValueError(f"derivatoids: trailing tokens in {s!r}")
    return e


def expr(prompt: str):
    """The expression inside a prompt `name[<expression>] =`."""
    return parse(prompt.split("[", 1)[1].rsplit("]", 1)[0])


def partner_table(rows) -> dict:
    """{symbol: partner} from the training rows that show the atom rule."""
    return {e[1]: parse(r["completion"])[1] for r in rows for e in [expr(r["prompt"])] if e[0] == "atom"}


def check(rows, items):
    """The derivatoid-specific checks, one row each: check, n, failed, ok, example."""
    import pandas as pd

    from .datasets import check_row

    partner = partner_table(rows)
    trained = {p for r in rows for p in pairs(expr(r["prompt"]))}
    right = lambda r: show(transform(expr(r["prompt"]), partner))
    canon = lambda o: canonical(parse(o))
    return pd.DataFrame([
        check_row("training rows follow the rules", len(rows),
                  [r["id"] for r in rows if " " + right(r) != r["completion"]]),
        check_row("gold follows the rules", len(items),
                  [x["id"] for x in items if x["options"][x["gold"]] != right(x)]),
        check_row("no distractor equals the correct output (up to + / * order)", len(items),
                  [x["id"] for x in items
                   if sum(canon(o) == canon(x["options"][x["gold"]]) for o in x["options"]) != 1]),
        check_row("trained items use only trained rule pairs", len(items),
                  [x["id"] for x in items
                   if x["split"] == "trained" and not set(pairs(expr(x["prompt"]))) <= trained]),
        check_row("compositional items use a held-out rule pair", len(items),
                  [x["id"] for x in items
                   if x["split"] == "compositional" and not set(pairs(expr(x["prompt"]))) - trained])])
