"""The nonsense-word generator shared by every synthetic dataset.

Words are pronounceable (onset + vowel + coda, one or two syllables), 4-5 letters long, and rejected when
- they are English words (in wordfreq's English list, as is or with a plural -s), or
- the default tokenizer splits them differently with and without a leading space (so that a word scored as
  a continuation, " glon", is cut into the same pieces as inside a sentence).
The same seed gives the same words, in the same order.
"""
from __future__ import annotations

import functools
import random

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "bl", "br", "dr", "fl",
          "fr", "gl", "gr", "kl", "kr", "pl", "pr", "sk", "sl", "sn", "sp", "st", "tr", "j", "h", "w"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "oo", "ee", "ai", "ou"]
CODAS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "t", "x", "z", "mp", "nt", "nk", "sk", "st",
         "lt", "rd", "ft", "rn", "lf", "mb", "nd", "rk", "rp", "lp"]
ENGLISH_ZIPF_MIN = 0.0  # any frequency at all in wordfreq's English list counts as a real word


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from .models import bundled_tokenizer

    return bundled_tokenizer()


def is_english(word: str) -> bool:
    from wordfreq import zipf_frequency

    return any(zipf_frequency(w, "en") > ENGLISH_ZIPF_MIN for w in (word, word + "s", word + "es"))


def splits_consistently(word: str, tokenizer=None) -> bool:
    """Same pieces with and without a leading space (after dropping the space marker)."""
    tok = tokenizer or _tokenizer()
    bare = tok.convert_ids_to_tokens(tok.encode(word, add_special_tokens=False))
    spaced = tok.convert_ids_to_tokens(tok.encode(" " + word, add_special_tokens=False))
    if not spaced or not bare or len(bare) != len(spaced):
        return False
    first = spaced[0].removeprefix("Ġ").removeprefix("▁")
    return [first, *spaced[1:]] == bare


def _candidate(rng: random.Random) -> str:
    if rng.random() < 0.55:
        return rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
    return (rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(ONSETS) + rng.choice(VOWELS)
            + rng.choice(CODAS))


def nonsense_words(n: int, seed: int, *, exclude=(), min_len: int = 4, max_len: int = 5,
                   tokenizer=None) -> list[str]:
    """`n` distinct nonsense words, deterministic in `seed`; none in `exclude`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"nonsense-words:{seed}")
    taken = set(exclude)
    out: list[str] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise RuntimeError(f"could not make {n} nonsense words (made {len(out)}); "
                               "relax the length limits")
        w = _candidate(rng)
        if not (min_len <= len(w) <= max_len) or w in taken:
            continue
        # no word may be a prefix of another (so "glon" is never read inside "glonk")
        if any(w.startswith(t) or t.startswith(w) for t in taken):
            continue
        if is_english(w) or not splits_consistently(w, tokenizer):
            continue
        taken.add(w)
        out.append(w)
    return out
