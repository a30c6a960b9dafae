"""The chain-of-thought format of DeepDubber (§3.2.2, §4.1, Figure 4 of the paper) and its conclusion.

A response has four tagged sections, in order: ``<SUMMARY>`` (how the answer will be reached), ``<CAPTION>``
(who is in the clip), ``<REASONING>`` (Steps 1–4 of §4.1: count the characters, tell who is talking, decide
dialogue / monologue / narration, conclude) and ``<CONCLUSION>`` (the answer, in the machine-readable form of
:meth:`DubbingConclusion.to_text`).

This file also holds the rule-based rewards of §3.2.2 (DeepSeek-R1 style): the *format* reward checks the four
sections, the *outcome* reward checks the answer. Both read model output, so nothing here raises on any text: a
response that cannot be read gives a :class:`CoTFailure` saying why.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args

from ..data.schema import AGES, EMOTIONS, GENDERS, SCENE_TYPES

TAGS = ("SUMMARY", "CAPTION", "REASONING", "CONCLUSION")

# §4.1: the four steps of the <REASONING> section, written as "Step 1: ...", ..., "Step 4: ..." (see
# `data/annotate.py`, which writes them for the procedural corpus).
REASONING_STEPS = (
    "Count the characters in the video.",
    "Tell whether each character is talking.",
    "Decide whether the clip is a dialogue, a monologue or narration.",
    "Conclude and give the answer.",
)

CoTFailureReason = Literal[
    "missing_section",
    "duplicate_section",
    "sections_out_of_order",
    "empty_section",
    "text_outside_sections",
    "missing_steps",
    "unparsable_conclusion",
    "invalid_value",
]
FAILURE_REASONS = get_args(CoTFailureReason)

# Tags are matched exactly (upper case, no spaces), as the processor adds them as single tokens.
_TAG_RE = re.compile(r"<(/?)(SUMMARY|CAPTION|REASONING|CONCLUSION)>")
_STEP_RE = re.compile(r"\bstep\s*([0-9]+)\b", re.IGNORECASE)
_DIGITS_RE = re.compile(r"[0-9]+")
# Keys of the conclusion line (lower case, `_`/`-` read as spaces) → DubbingConclusion fields.
_CONCLUSION_KEYS = {
    "scene type": "scene_type",
    "speakers": "num_speakers",
    "num speakers": "num_speakers",
    "gender": "gender",
    "age": "age",
    "emotion": "emotion",
}
_VOCABULARIES = {"scene_type": SCENE_TYPES, "gender": GENDERS, "age": AGES, "emotion": EMOTIONS}
_MAX_SPEAKER_DIGITS = 6


def _excerpt(text: str, limit: int = 40) -> str:
    """`repr` of the start of `text`, so a failure's detail stays short whatever the response."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


@dataclass(frozen=True)
class DubbingConclusion:
    """What the reasoner concludes about a clip, and what conditions the speech generator.

    Attributes:
        scene_type: `"dialogue"`, `"monologue"` or `"narration"`.
        num_speakers: how many characters speak.
        gender: the speaker's gender (`"male"` / `"female"`).
        age: `"child"`, `"young"`, `"adult"` or `"elderly"`.
        emotion: `"neutral"`, `"happy"`, `"sad"`, `"angry"` or `"surprised"`.
    """

    scene_type: str
    num_speakers: int
    gender: str
    age: str
    emotion: str

    def to_text(self) -> str:
        """``scene type: dialogue; speakers: 2; gender: female; age: young; emotion: happy``"""
        return (
            f"scene type: {self.scene_type}; speakers: {self.num_speakers}; gender: {self.gender}; "
            f"age: {self.age}; emotion: {self.emotion}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


_FIELD_NAMES = tuple(f.name for f in fields(DubbingConclusion))


@dataclass(frozen=True)
class CoTFailure:
    """Why a response could not be read. Falsy, so ``if parsed:`` tells a conclusion from a failure.

    Args:
        reason (`str`):
            One of `"missing_section"`, `"duplicate_section"`, `"sections_out_of_order"`, `"empty_section"`,
            `"text_outside_sections"`, `"missing_steps"` (the format rule), `"unparsable_conclusion"` (the
            conclusion line does not have the five `key: value` fields) or `"invalid_value"` (a value outside the
            vocabularies of `deepdubber_hf.data.schema`).
        detail (`str`):
            A short human-readable explanation (with an excerpt of the offending text).

    Example:

    ```py
    >>> from deepdubber_hf.reasoner.cot import parse_conclusion
    >>> failure = parse_conclusion("scene type: opera; speakers: 1; gender: male; age: adult; emotion: sad")
    >>> bool(failure), failure.reason
    (False, 'invalid_value')
    ```
    """

    reason: CoTFailureReason
    detail: str

    def __bool__(self) -> bool:
        return False


def format_cot(summary: str, caption: str, reasoning: str, conclusion: DubbingConclusion) -> str:
    """The four sections, each on its own line(s) between its tags.

    Args:
        summary (`str`): how the answer will be reached.
        caption (`str`): who is in the clip.
        reasoning (`str`): Steps 1–4 of §4.1, e.g. `"Step 1: ...\\nStep 2: ..."` (see :data:`REASONING_STEPS`).
        conclusion (`DubbingConclusion`): the answer; written with :meth:`DubbingConclusion.to_text`.

    Example:

    ```py
    >>> from deepdubber_hf.reasoner.cot import DubbingConclusion, format_cot, parse_cot
    >>> answer = DubbingConclusion("monologue", 1, "female", "young", "happy")
    >>> steps = "\\n".join(f"Step {k}: ..." for k in range(1, 5))
    >>> text = format_cot("I count and look.", "One young woman.", steps, answer)
    >>> parse_cot(text) == answer
    True
    ```
    """
    sections = (summary, caption, reasoning, conclusion.to_text())
    return "\n".join(f"<{tag}>{text}</{tag}>" for tag, text in zip(TAGS, sections))


def parse_conclusion(text: str) -> DubbingConclusion | CoTFailure:
    """Read a conclusion line, the output of :meth:`DubbingConclusion.to_text` (and the answer of the QA mode).

    Fields are `key: value` pairs separated by `;`, in any order, in any case, with any whitespace; a trailing `;`
    or `.` is allowed. The keys are `scene type`, `speakers`, `gender`, `age`, `emotion` (`scene_type` and
    `num_speakers` are accepted too); each must appear exactly once. Values must belong to the vocabularies of
    `deepdubber_hf.data.schema`; `speakers` is a non-negative integer.

    Args:
        text (`str`): the conclusion line, e.g. the content of the `<CONCLUSION>` section.

    Returns:
        [`DubbingConclusion`] (values lower-cased) or a falsy [`CoTFailure`] with reason `"unparsable_conclusion"`
        or `"invalid_value"`. Never raises on a string.

    Example:

    ```py
    >>> from deepdubber_hf.reasoner.cot import parse_conclusion
    >>> parse_conclusion("Emotion: Sad; Scene Type: NARRATION; speakers: 1; age: elderly; gender: male")
    DubbingConclusion(scene_type='narration', num_speakers=1, gender='male', age='elderly', emotion='sad')
    ```
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string (the decoded response), got {type(text).__name__}.")
    body = text.strip()
    if body.endswith((";", ".")):
        body = body[:-1].rstrip()
    if not body:
        return CoTFailure("unparsable_conclusion", "the conclusion is empty")

    values = {}
    for part in body.split(";"):
        key, colon, value = part.partition(":")
        if not colon:
            return CoTFailure("unparsable_conclusion", f"{_excerpt(part.strip())} is not a `key: value` field")
        name = " ".join(key.replace("_", " ").replace("-", " ").lower().split())
        field = _CONCLUSION_KEYS.get(name)
        if field is None:
            expected = "scene type, speakers, gender, age, emotion"
            return CoTFailure("unparsable_conclusion", f"unknown key {_excerpt(key.strip())}; expected {expected}")
        if field in values:
            return CoTFailure("unparsable_conclusion", f"the field {field!r} is given twice")
        values[field] = value.strip().lower()

    missing = [name for name in _FIELD_NAMES if name not in values]
    if missing:
        return CoTFailure("unparsable_conclusion", f"the conclusion lacks {', '.join(missing)}")

    for field, vocabulary in _VOCABULARIES.items():
        if values[field] not in vocabulary:
            return CoTFailure(
                "invalid_value", f"{field} is {_excerpt(values[field])}, not one of {', '.join(vocabulary)}"
            )
    speakers = values["num_speakers"]
    if _DIGITS_RE.fullmatch(speakers) is None or len(speakers.lstrip("0")) > _MAX_SPEAKER_DIGITS:
        return CoTFailure("invalid_value", f"speakers is {_excerpt(speakers)}, not a non-negative integer")
    values["num_speakers"] = int(speakers)
    return DubbingConclusion(**values)


def split_sections(text: str) -> dict[str, str] | CoTFailure:
    """The contents of the four sections, if the tags are well placed.

    The tags must each appear exactly once (opening and closing), in the order of :data:`TAGS`, without nesting;
    only whitespace may lie outside the sections and no section may be blank. Tags are matched exactly
    (`<SUMMARY>`, not `<summary>`).

    Args:
        text (`str`): the decoded response.

    Returns:
        `dict` mapping each tag of :data:`TAGS` to its content (stripped), or a falsy [`CoTFailure`] with reason
        `"missing_section"`, `"duplicate_section"`, `"sections_out_of_order"`, `"text_outside_sections"` or
        `"empty_section"`. Never raises on a string.

    Example:

    ```py
    >>> from deepdubber_hf.reasoner.cot import split_sections
    >>> split_sections("<SUMMARY>a</SUMMARY> <CAPTION>b</CAPTION> <REASONING>c</REASONING> <CONCLUSION>d</CONCLUSION>")
    {'SUMMARY': 'a', 'CAPTION': 'b', 'REASONING': 'c', 'CONCLUSION': 'd'}
    >>> split_sections("<SUMMARY>a</SUMMARY>").reason
    'missing_section'
    ```
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string (the decoded response), got {type(text).__name__}.")
    matches = list(_TAG_RE.finditer(text))
    tokens = [f"<{m.group(1)}{m.group(2)}>" for m in matches]
    for tag in TAGS:
        for token in (f"<{tag}>", f"</{tag}>"):
            if token not in tokens:
                return CoTFailure("missing_section", f"no {token} tag")
    for tag in TAGS:
        for token in (f"<{tag}>", f"</{tag}>"):
            if tokens.count(token) > 1:
                return CoTFailure("duplicate_section", f"{token} appears {tokens.count(token)} times")
    expected = [token for tag in TAGS for token in (f"<{tag}>", f"</{tag}>")]
    if tokens != expected:
        return CoTFailure("sections_out_of_order", f"tags found in the order {' '.join(tokens)}")

    # Outside the sections: before <SUMMARY>, between </SUMMARY> and <CAPTION>, ..., after </CONCLUSION>.
    starts = [0] + [matches[2 * k + 1].end() for k in range(4)]
    ends = [matches[2 * k].start() for k in range(4)] + [len(text)]
    for k, (start, end) in enumerate(zip(starts, ends)):
        piece = text[start:end]
        if piece.strip():
            where = "before <SUMMARY>" if k == 0 else f"after </{TAGS[k - 1]}>"
            return CoTFailure("text_outside_sections", f"{_excerpt(piece.strip())} {where}")
    sections = {tag: text[matches[2 * k].end() : matches[2 * k + 1].start()].strip() for k, tag in enumerate(TAGS)}
    for tag, content in sections.items():
        if not content:
            return CoTFailure("empty_section", f"the <{tag}> section is blank")
    return sections


def _check_steps(reasoning: str) -> CoTFailure | None:
    """Steps 1–4 of §4.1 must each be announced (`Step k`), first appearances in order."""
    first = {}
    for m in _STEP_RE.finditer(reasoning):
        first.setdefault(m.group(1).lstrip("0"), m.start())
    missing = [str(k) for k in range(1, 5) if str(k) not in first]
    if missing:
        return CoTFailure("missing_steps", f"the reasoning has no Step {', '.join(missing)}")
    positions = [first[str(k)] for k in range(1, 5)]
    if positions != sorted(positions):
        return CoTFailure("missing_steps", "Steps 1–4 are not in order")
    return None


def _check_format(text: str) -> dict[str, str] | CoTFailure:
    sections = split_sections(text)
    if not sections:
        return sections
    failure = _check_steps(sections["REASONING"])
    return failure if failure is not None else sections


def _last_conclusion(text: str) -> str | CoTFailure:
    """The content of the last complete `<CONCLUSION>…</CONCLUSION>` pair (linear in the length of `text`)."""
    opened, content = None, None
    for m in _TAG_RE.finditer(text):
        if m.group(2) != "CONCLUSION":
            continue
        if not m.group(1):
            opened = m.end()
        elif opened is not None:
            content, opened = text[opened : m.start()], None
    if content is None:
        return CoTFailure("missing_section", "no complete <CONCLUSION>…</CONCLUSION> section")
    if not content.strip():
        return CoTFailure("empty_section", "the <CONCLUSION> section is blank")
    return content


def parse_cot(text: str, strict: bool = True) -> DubbingConclusion | CoTFailure:
    """Read a four-section CoT response and return its conclusion.

    Args:
        text (`str`): the decoded response.
        strict (`bool`, *optional*, defaults to `True`):
            If `True`, the response must be well formed (see :func:`format_reward`: the four tags once each, in
            order, non-blank, Steps 1–4 in the reasoning, only whitespace outside sections) before its conclusion
            is read. If `False`, only the last complete `<CONCLUSION>` section is read, whatever surrounds it
            (how the outcome is judged).

    Returns:
        [`DubbingConclusion`] or a falsy [`CoTFailure`] saying why the response cannot be read. Never raises on a
        string.

    Example:

    ```py
    >>> from deepdubber_hf.reasoner.cot import parse_cot
    >>> answer = "scene type: dialogue; speakers: 2; gender: male; age: adult; emotion: angry"
    >>> text = f"Two men shout at each other. <CONCLUSION>{answer}</CONCLUSION>"
    >>> parse_cot(text).reason
    'missing_section'
    >>> parse_cot(text, strict=False).scene_type
    'dialogue'
    ```
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string (the decoded response), got {type(text).__name__}.")
    if strict:
        sections = _check_format(text)
        if not sections:
            return sections
        return parse_conclusion(sections["CONCLUSION"])
    conclusion = _last_conclusion(text)
    if not conclusion:
        return conclusion
    return parse_conclusion(conclusion)


def format_reward(text: str, mode: str = "cot") -> float:
    """The format reward of §3.2.2: 1.0 if the response is well formed, else 0.0.

    Well formed: `<SUMMARY>`, `<CAPTION>`, `<REASONING>`, `<CONCLUSION>` sections, each exactly once and in this
    order, none blank, no nesting, nothing but whitespace outside them, and the reasoning announcing Steps 1–4 in
    order. Whether the conclusion is right, or even readable, is the outcome reward's business. A direct answer
    (`mode="qa"`) has no sections: it is well formed when it is a readable conclusion line and nothing else.

    Args:
        text (`str`): the decoded response.
        mode (`str`, *optional*, defaults to `"cot"`): `"cot"` for the reasoning, `"qa"` for the direct answer.

    Example:

    ```py
    >>> from deepdubber_hf.reasoner.cot import TAGS, format_reward
    >>> steps = " ".join(f"Step {k}." for k in range(1, 5))
    >>> format_reward("".join(f"<{tag}>{body}</{tag}>" for tag, body in zip(TAGS, ["a", "b", steps, "?"])))
    1.0
    >>> format_reward("scene type: dialogue; speakers: 2; gender: male; age: adult; emotion: angry")
    0.0
    >>> format_reward("scene type: dialogue; speakers: 2; gender: male; age: adult; emotion: angry", mode="qa")
    1.0
    ```
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string (the decoded response), got {type(text).__name__}.")
    if mode == "qa":
        return 1.0 if parse_conclusion(text) else 0.0
    if mode != "cot":
        raise ValueError(f"mode must be 'cot' or 'qa', got {mode!r}.")
    return 1.0 if _check_format(text) else 0.0


def outcome_reward(
    text: str,
    reference: DubbingConclusion,
    fields: tuple[str, ...] = ("scene_type", "gender", "age", "emotion"),
) -> float:
    """The outcome reward of §3.2.2: 1.0 if the response's conclusion matches the reference, else 0.0.

    The conclusion is read from the last `<CONCLUSION>` section (format is not judged here, see
    :func:`format_reward`) or, if the response has none of the four tags, from the whole text as a bare conclusion
    line (the QA mode). An unreadable conclusion scores 0.0.

    Args:
        text (`str`): the decoded response.
        reference (`DubbingConclusion`): the ground truth.
        fields (`tuple[str, ...]`, *optional*, defaults to `("scene_type", "gender", "age", "emotion")`):
            the fields of [`DubbingConclusion`] that must all match.

    Example:

    ```py
    >>> from deepdubber_hf.reasoner.cot import DubbingConclusion, outcome_reward
    >>> reference = DubbingConclusion("dialogue", 2, "male", "adult", "angry")
    >>> outcome_reward("scene type: dialogue; speakers: 3; gender: male; age: adult; emotion: angry", reference)
    1.0
    >>> outcome_reward("<CONCLUSION>scene type: monologue</CONCLUSION>", reference)
    0.0
    ```
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string (the decoded response), got {type(text).__name__}.")
    if not isinstance(reference, DubbingConclusion):
        raise TypeError(f"reference must be a DubbingConclusion, got {type(reference).__name__}.")
    if not fields or any(name not in _FIELD_NAMES for name in fields):
        raise ValueError(f"fields must be a non-empty subset of {_FIELD_NAMES}, got {fields!r}.")
    parsed = parse_cot(text, strict=False) if _TAG_RE.search(text) else parse_conclusion(text)
    if not parsed:
        return 0.0
    return 1.0 if all(getattr(parsed, name) == getattr(reference, name) for name in fields) else 0.0


__all__ = [
    "FAILURE_REASONS",
    "REASONING_STEPS",
    "TAGS",
    "CoTFailure",
    "CoTFailureReason",
    "DubbingConclusion",
    "format_cot",
    "format_reward",
    "outcome_reward",
    "parse_conclusion",
    "parse_cot",
    "split_sections",
]
