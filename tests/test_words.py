"""The nonsense-word generator: deterministic, not English, tokenised the same with or without a space."""
import pytest

from lib import words


@pytest.fixture(scope="module")
def some_words():
    return words.nonsense_words(40, seed=3)


def test_same_seed_same_words_other_seed_other_words(some_words):
    assert words.nonsense_words(40, seed=3) == some_words
    other = words.nonsense_words(40, seed=4)
    assert other != some_words
    assert len(set(other) & set(some_words)) < 10


def test_shape_distinct_and_no_prefixes(some_words):
    assert len(set(some_words)) == len(some_words) == 40
    assert all(w.isalpha() and w.islower() and 4 <= len(w) <= 5 for w in some_words)
    assert not any(a != b and b.startswith(a) for a in some_words for b in some_words)


def test_not_english(some_words):
    from wordfreq import zipf_frequency

    assert words.is_english("dog") and words.is_english("house") and words.is_english("cat")  # plural/forms too
    for w in some_words:
        assert not words.is_english(w)
        assert zipf_frequency(w, "en") == 0 and zipf_frequency(w + "s", "en") == 0, w


def test_consistent_tokenisation(some_words, bundled_tokenizer):
    tok = bundled_tokenizer
    for w in some_words:
        assert words.splits_consistently(w, tok)
        # the pieces of " w" as a continuation are the pieces of w inside a sentence
        in_sentence = tok.encode(f"Some {w} are here.", add_special_tokens=False)
        alone = tok.encode(" " + w, add_special_tokens=False)
        assert any(in_sentence[i:i + len(alone)] == alone for i in range(len(in_sentence))), w
    # the filter rejects a word that the tokenizer cuts differently after a space
    assert not words.splits_consistently("kloum", tok)


def test_bad_n():
    assert words.nonsense_words(0, seed=3) == []
    with pytest.raises(ValueError, match="n must be"):
        words.nonsense_words(-1, seed=3)
