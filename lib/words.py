"""The nonsense-word generator of every synthetic dataset: pronounceable words (onset + vowel + coda, one or
two syllables) of 4-5 letters, none an English word (wordfreq's English list, also with -s / -es), none cut
differently by the bundled tokenizer after a space (a continuation " glon" must be the same pieces as inside
a sentence), none a prefix of another. The same seed gives the same words, in the same order.
"""
from __future__ import annotations

import functools
import random

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "bl", "br", "dr", "fl",
          "fr", "gl", "gr", "kl", "kr", "pl", "pr", "sk", "sl", "sn", "sp", "st", "tr", "j", "h", "w"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "oo", "ee", "ai", "ou"]
CODAS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "t", "x", "z", "mp", "nt", "nk", "sk", "st",
         "lt", "rd", "ft", "rn", "lf", "mb", "nd", "rk", "rp", "lp"]


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from .models import bundled_tokenizer

    return bundled_tokenizer()


def is_english(word: str) -> bool:
    from wordfreq import zipf_frequency

    return any(zipf_frequency(w, "en") > 0 for w in (word, word + "s", word + "es"))  # any frequency at all


def splits_consistently(word: str, tokenizer=None) -> bool:
    """Same pieces with and without a leading space (after dropping the space marker)."""
    tok = tokenizer or _tokenizer()
    bare = tok.convert_ids_to_tokens(tok.encode(word, add_special_tokens=False))
    spaced = tok.convert_ids_to_tokens(tok.encode(" " + word, add_special_tokens=False))
    if not spaced or not bare or len(bare) != len(spaced):
        return False
    first = spaced[0].removeprefix("Ġ").removeprefix("▁")
    return [first, *spaced[1:]] == bare


def nonsense_words(n: int, seed: int) -> list[str]:
    """`n` distinct nonsense words, deterministic in `seed`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"nonsense-words:{seed}")
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise RuntimeError(f"could not make {n} nonsense words of 4-5 letters (made {len(out)})")
        n_syllables = 1 if rng.random() < 0.55 else 2  # onset + vowel each, then a coda
        w = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(n_syllables)) + rng.choice(CODAS)
        if not 4 <= len(w) <= 5 or any(w.startswith(t) or t.startswith(w) for t in out):
            continue  # (no prefixes: "glon" is never read inside "glonk")
        if is_english(w) or not splits_consistently(w):
            continue
        out.append(w)
    return out
