"""Word error rate with the normalisation dubbing papers use: lower case, no punctuation, numbers as words."""

from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
    """Non-negative integer → English words (`1204` → `one thousand two hundred four`)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return number_to_words(n // size) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def normalize_text(text: str) -> str:
    """Lower case, digits spelled out, punctuation removed (apostrophes inside words kept), spaces collapsed."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 → 1000
    text = re.sub(r"\d+", lambda m: " " + number_to_words(int(m.group())) + " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return " ".join(text.split())


def word_error_rate(references: list, hypotheses: list) -> float:
    """Corpus WER (total edits / total reference words) after :func:`normalize_text`, with jiwer."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses: give one of each per clip.")
    refs = [normalize_text(r) for r in references]
    hyps = [normalize_text(h) for h in hypotheses]
    kept = [(r, h) for r, h in zip(refs, hyps) if r]
    if not kept:
        raise ValueError("every reference transcript is empty after normalisation: nothing to score.")
    return float(jiwer.wer([r for r, _ in kept], [h for _, h in kept]))


__all__ = ["normalize_text", "number_to_words", "word_error_rate"]
