"""Derivatoids: process knowledge (PAPER.md 2.5). The rules below are our own design; the paper's are not
public.

The paper describes "a pseudo-mathematical procedure which is a function-to-function transform similar to
taking a derivative, but with uncommon rules", trained and tested on a compositional split of rule
combinations. Ours:

Expressions are built from a handful of nonsense function symbols applied to x (`blick(x)`, `zorp(x)`), small
integers, and four constructors: sum `f + g`, product `f * g`, nesting `a(g)` (a symbol applied to an
expression) and scaling `k f`. The transform is written `<name>[...]` with a nonsense name (say `grelt`), and
is defined by five rules, each deliberately unlike the derivative rule it resembles:

    atom     grelt[a(x)]  = a'(x)                a' is a's partner: the symbols form one cycle, a -> a' -> ...
    sum      grelt[f + g] = grelt[f] * grelt[g]  (a sum becomes a product)
    product  grelt[f * g] = grelt[g] - f         (the right factor is transformed, the left one subtracted)
    nest     grelt[a(g)]  = a'(grelt[g])         (the partner applied to the transformed inside)
    scale    grelt[k f]   = (k+1) grelt[f]       (the constant goes up by one)

for example grelt[blick(x) + 3 zorp(x)] = blick'(x) * 4 zorp'(x). Binary sub-expressions are parenthesised, so
every expression has one reading.

The compositional split. An expression's *rule combinations* are the (outer, inner) constructor pairs along
its edges (sum>product, nest>scale, ...; 16 possible pairs). With the seed we hold out four pairs, one per
outer constructor and one per inner constructor (a random derangement), so every rule and every constructor
in both positions is still trained. Training rows show the transform applied: every atom once (the partner
table), every constructor over atoms (each rule alone), and depth-2 expressions that use only trained pairs.
Test items:
  trained        expressions whose pairs are all trained, with inputs (symbols, constants) never seen in that
                 combination: does the model apply what it saw to new inputs?
  compositional  expressions that contain a held-out pair: can it compose two rules it saw separately?
Each item is a prompt `grelt[<expression>] =` and `n_options` options: the correct output and outputs of wrong
rule applications: at one node of the expression (the outer one or an inner one) a wrong rule is used: the
textbook derivative rule (f' + g', f'g + fg', the chain rule, k f'), another of our rules, the wrong partner
(a itself, its inverse, or the partner's partner), the wrong constant or a difference for a sum. A distractor
is never equal to the correct output up to the order of + and * (checked). With `counterbalance` (the
default) only the wrong rules that transform every part the correct rule transforms are used (`FAIR`: the
wrong partner, the wrong constant, the wrong side of a product, a difference for a sum), closest first to the
gold's symbol overlap with the prompt: a wrong rule that leaves a part as it was (a itself, k kept, the
inside of a nest untransformed, + kept) copies the prompt, and a model that has learnt nothing prefers a
copy (the no-context model picked such a distractor over the gold 88-100% of the time).
`support` names the trained facts an item rests on: `atom:<a>` for each symbol, `rule:<constructor>`, and
`pair:<outer>><inner>` for each trained pair it uses.
"""
from __future__ import annotations

import random

GENERATOR_VERSION = "derivatoids-3"
OPS = ("sum", "product", "nest", "scale")
# the wrong-rule variants of `transform`, per constructor
VARIANTS = {"atom": ("same", "inverse", "twice"), "sum": ("textbook", "other", "swap", "minus", "minus_r"),
            "product": ("textbook", "other", "swap"), "nest": ("textbook", "other", "swap", "inverse", "twice"),
            "scale": ("textbook", "other", "swap", "plus2")}
# those that transform every part the correct rule transforms (so copy no more of the prompt than the gold):
# the wrong partner at an atom or a nest, the wrong constant, the wrong side of a product, a difference for a sum
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
        return s if top else f"({s})"
    sym = {"sum": "+", "product": "*", "minus": "-"}[op]
    s = f"{show(e[1], False)} {sym} {show(e[2], False)}"
    return s if top else f"({s})"


def canonical(e) -> str:
    """A printed form invariant under commutativity of + and * (children of a sum / product sorted)."""
    op = e[0]
    if op in ("sum", "product"):
        a, b = sorted([canonical(e[1]), canonical(e[2])])
        return f"{op}({a},{b})"
    if op == "minus":
        return f"minus({canonical(e[1])},{canonical(e[2])})"
    if op == "nest":
        return f"{e[1]}({canonical(e[2])})"
    if op == "scale":
        return f"{e[1]}*({canonical(e[2])})"
    return e[1]


def overlap(prompt: str, option: str) -> int:
    """Distinct word / number tokens of the option that occur in the prompt (lib.baselines' overlap)."""
    import re

    tok = lambda t: set(re.findall(r"[A-Za-z]+|\d+", t))
    return len(tok(option) & tok(prompt))


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
    """(path, constructor) of every node, outer first."""
    out = [(path, e[0])]
    if e[0] in ("sum", "product"):
        out += _nodes(e[1], path + (1,)) + _nodes(e[2], path + (2,))
    elif e[0] in ("nest", "scale"):
        out += _nodes(e[2], path + (2,))
    return out


def pairs(e) -> list[str]:
    """The rule combinations (outer>inner constructor pairs) of an expression."""
    out = []
    if e[0] in ("sum", "product"):
        kids = [e[1], e[2]]
    elif e[0] in ("nest", "scale"):
        kids = [e[2]]
    else:
        return out
    for k in kids:
        if k[0] != "atom":
            out.append(f"{e[0]}>{k[0]}")
        out += pairs(k)
    return sorted(set(out))


def symbols(e) -> list[str]:
    """The function symbols an expression uses."""
    return sorted({_at(e, p)[1] for p, op in _nodes(e) if op in ("atom", "nest")})


def _at(e, path):
    for i in path:
        e = e[i]
    return e


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
    ops = {op for _, op in _nodes(e)} - {"atom"}
    return sorted([f"atom:{a}" for a in symbols(e)] + [f"rule:{o}" for o in ops]
                  + [f"pair:{p}" for p in pairs(e) if p in trained_pairs])


def make_derivatoids(cfg, seed: int) -> tuple[list[dict], list[dict]]:
    """Training examples (prompt/completion rows) and multiple-choice test items; deterministic in the
    seed."""
    from .words import nonsense_words

    rng = random.Random(f"derivatoids:{seed}")
    words = nonsense_words(N_SYMBOLS + 1, seed + 7919)
    name, syms = words[0], words[1:]
    cycle = syms[:]
    rng.shuffle(cycle)
    partner = {cycle[i]: cycle[(i + 1) % len(cycle)] for i in range(len(cycle))}
    perm = OPS[:]
    while any(a == b for a, b in zip(OPS, perm)):
        perm = tuple(rng.sample(OPS, len(OPS)))
    held = {f"{a}>{b}" for a, b in zip(OPS, perm)}
    trained_pairs = [f"{a}>{b}" for a in OPS for b in OPS if f"{a}>{b}" not in held]

    def row(e):
        prompt, completion = f"{name}[{show(e)}] =", " " + show(transform(e, partner))
        facts = _support(e, set(trained_pairs))
        return prompt, completion, facts

    # training: atoms, every rule over atoms, then depth-2 expressions of trained pairs
    basics = [("atom", a) for a in syms] + [_make(op, rng, syms) for op in OPS for _ in range(2)]
    if cfg.n_train < len(basics) + len(trained_pairs):
        raise ValueError(f"derivatoids: n_train={cfg.n_train} is too small: the partner table, each rule and "
                         f"each trained pair need {len(basics) + len(trained_pairs)} examples")
    exprs, seen = [], set()
    for e in basics:
        if show(e) not in seen:
            seen.add(show(e))
            exprs.append(e)
    i = 0
    while len(exprs) < cfg.n_train:
        if i > 100 * cfg.n_train:
            raise ValueError(f"derivatoids: could not make {cfg.n_train} distinct training expressions")
        outer, inner = trained_pairs[i % len(trained_pairs)].split(">")
        i += 1
        e = _make(outer, rng, syms, inner)
        if show(e) not in seen:
            seen.add(show(e))
            exprs.append(e)
    rows = []
    for j, e in enumerate(exprs):
        prompt, completion, facts = row(e)
        rows.append({"id": f"derivatoids-train-{j:04d}", "text": prompt + completion,
                     "sentences": [prompt + completion], "facts": facts, "prompt": prompt,
                     "completion": completion})
    stated = {f for r in rows for f in r["facts"]}

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
            gold = show(transform(e, partner))
            if show(e) in seen or gold in prompt:
                continue
            gold_e = transform(e, partner)
            wrongs, taken = [], {canonical(gold_e)}
            for path, op in _nodes(e):
                for v in FAIR[op] if cfg.counterbalance else VARIANTS[op]:
                    w = transform(e, partner, (path, v))
                    if canonical(w) not in taken:  # never the gold (or another one) up to + / * order
                        taken.add(canonical(w))
                        wrongs.append((len(path) > 0, show(w)))
            rng.shuffle(wrongs)
            if cfg.counterbalance:  # then as close as possible to the gold's overlap with the prompt
                g_ov = overlap(prompt, gold)
                wrongs.sort(key=lambda w: abs(overlap(prompt, w[1]) - g_ov))
                cands = [w for _, w in wrongs]
            else:  # prefer a mix: wrong rules at the outer node and at an inner node
                outer_w = [w for deep, w in wrongs if not deep]
                inner_w = [w for deep, w in wrongs if deep]
                cands = [x for pair in zip(outer_w, inner_w) for x in pair] + outer_w + inner_w
            dis = []
            for w in cands:
                if w not in dis and w != gold and w not in prompt and len(dis) < cfg.n_options - 1:
                    dis.append(w)
            opts = [gold, *dis]
            order = list(range(len(opts)))
            rng.shuffle(order)
            seen.add(show(e))
            support = [f for f in _support(e, set(trained_pairs)) if f in stated]
            items.append({"id": f"derivatoids-{split}-{made:04d}", "split": split,
                          "subset": outer, "prompt": prompt,
                          "options": [opts[k] for k in order], "gold": order.index(0), "support": support,
                          "cluster": "+".join(pairs(e))})
            made += 1
    return rows, items


# ------------------------------------------------------------------------------------------------- checks
def parse(s: str):
    """An expression from its printed form (the inverse of `show`)."""
    import re

    toks = re.findall(r"\d+|[a-z]+|[()+*-]", s)
    pos = [0]

    def peek():
        return toks[pos[0]] if pos[0] < len(toks) else None

    def eat(expect=None):
        if pos[0] >= len(toks) or (expect and toks[pos[0]] != expect):
            raise ValueError(f"derivatoids: cannot parse {s!r} at token {pos[0]}")
        pos[0] += 1
        return toks[pos[0] - 1]

    def term():
        t = peek()
        if t == "(":
            eat("(")
            e = expr()
            eat(")")
            return e
        if t is not None and t.isdigit():
            return ("scale", int(eat()), term())
        name = eat()
        eat("(")
        if peek() == "x":
            eat("x")
            eat(")")
            return ("atom", name)
        e = expr()
        eat(")")
        return ("nest", name, e)

    def expr():
        left = term()
        if peek() in ("+", "*", "-"):
            return ({"+": "sum", "*": "product", "-": "minus"}[eat()], left, term())
        return left

    e = expr()
    if pos[0] != len(toks):
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
    out = []

    def add(name, n, bad):
        out.append(check_row(name, n, bad))

    add("training rows follow the rules", len(rows),
        [r["id"] for r in rows if " " + show(transform(expr(r["prompt"]), partner)) != r["completion"]])
    add("gold follows the rules", len(items),
        [x["id"] for x in items if x["options"][x["gold"]] != show(transform(expr(x["prompt"]), partner))])
    add("no distractor equals the correct output (up to + / * order)", len(items),
        [x["id"] for x in items if sum(canonical(parse(o)) == canonical(parse(x["options"][x["gold"]]))
                                       for o in x["options"]) != 1])
    add("trained items use only trained rule pairs", len(items),
        [x["id"] for x in items if x["split"] == "trained" and not set(pairs(expr(x["prompt"]))) <= trained])
    add("compositional items use a held-out rule pair", len(items),
        [x["id"] for x in items
         if x["split"] == "compositional" and not set(pairs(expr(x["prompt"]))) - trained])
    return pd.DataFrame(out)
