"""The CoT format: round trips, the corpus annotations, every failure reason, the F&O rewards and robustness to any
text a model may generate."""

import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepdubber_hf.data.annotate import annotate, conclusion_of
from deepdubber_hf.data.scenes import sample_plan
from deepdubber_hf.data.schema import AGES, EMOTIONS, GENDERS, SCENE_TYPES
from deepdubber_hf.reasoner.cot import (
    FAILURE_REASONS,
    REASONING_STEPS,
    TAGS,
    CoTFailure,
    DubbingConclusion,
    format_cot,
    format_reward,
    outcome_reward,
    parse_conclusion,
    parse_cot,
    split_sections,
)

STEPS = "\n".join(f"Step {k}: {step}" for k, step in enumerate(REASONING_STEPS, start=1))
REFERENCE = DubbingConclusion("dialogue", 2, "female", "young", "happy")

conclusions = st.builds(
    DubbingConclusion,
    scene_type=st.sampled_from(SCENE_TYPES),
    num_speakers=st.integers(0, 999_999),
    gender=st.sampled_from(GENDERS),
    age=st.sampled_from(AGES),
    emotion=st.sampled_from(EMOTIONS),
)
# Text rich in the pieces a parser could trip on: tags (nested, duplicated, unclosed), step markers, separators.
_PIECES = [f"<{t}>" for t in TAGS] + [f"</{t}>" for t in TAGS] + ["Step 1", "Step 4:", "step 02", ";", ":", "\n"]
_PIECES += ["scene type: dialogue", "speakers: 2", "gender: male", "age: adult", "emotion: sad", "<", ">", "/"]
tricky_text = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=20)), max_size=40).map("".join)
any_text = st.one_of(st.text(), tricky_text)


def cot(conclusion=REFERENCE, steps=STEPS):
    return format_cot("I count the characters and watch their mouths.", "Two young women.", steps, conclusion)


def fake_layout(plan):
    """Side-by-side bounding boxes, as `render_clip` reports them, so the annotation says left / right."""
    return [{"bbox": (10 + 50 * i, 20, 50 + 50 * i, 120)} for i in range(len(plan.characters))]


def test_round_trip_of_every_value_combination():
    for scene_type, gender, age, emotion, speakers in itertools.product(SCENE_TYPES, GENDERS, AGES, EMOTIONS, range(4)):
        conclusion = DubbingConclusion(scene_type, speakers, gender, age, emotion)
        text = cot(conclusion)
        assert parse_cot(text) == conclusion
        assert parse_cot(text, strict=False) == conclusion
        assert parse_conclusion(conclusion.to_text()) == conclusion
        assert format_reward(text) == 1.0
        assert outcome_reward(text, conclusion, fields=("scene_type", "num_speakers", "gender", "age", "emotion"))


@settings(max_examples=300, deadline=None)
@given(conclusion=conclusions, data=st.data())
def test_conclusion_line_is_read_in_any_order_case_and_spacing(conclusion, data):
    items = [
        ("scene type", conclusion.scene_type),
        ("speakers", str(conclusion.num_speakers)),
        ("gender", conclusion.gender),
        ("age", conclusion.age),
        ("emotion", conclusion.emotion),
    ]
    items = data.draw(st.permutations(items))
    space = st.sampled_from(["", " ", "  ", "\t", "\n "])
    recase = st.sampled_from([str.lower, str.upper, str.title])
    parts = [
        f"{data.draw(space)}{data.draw(recase)(key)}{data.draw(space)}:{data.draw(space)}"
        f"{data.draw(recase)(value)}{data.draw(space)}"
        for key, value in items
    ]
    line = ";".join(parts) + data.draw(st.sampled_from(["", ";", ".", " .\n"]))
    assert parse_conclusion(line) == conclusion
    assert parse_cot(cot(conclusion, steps=STEPS).replace(conclusion.to_text(), line)) == conclusion


@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("scene_type", SCENE_TYPES)
def test_corpus_annotations_parse_to_their_ground_truth(level, scene_type):
    for seed in range(15):
        plan = sample_plan(f"l{level}-{seed:06d}", level, seed, scene_type=scene_type)
        truth = conclusion_of(plan)
        for layout in (None, fake_layout(plan)):
            annotation = annotate(plan, layout=layout, rng=np.random.default_rng(seed))
            assert parse_cot(annotation["cot"]) == truth
            assert DubbingConclusion(**annotation["conclusion"]) == truth
            assert parse_conclusion(annotation["answer"]) == truth  # the QA mode's answer
            assert format_reward(annotation["cot"]) == 1.0
            assert outcome_reward(annotation["cot"], truth) == outcome_reward(annotation["answer"], truth) == 1.0
            sections = split_sections(annotation["cot"])
            assert sections["CONCLUSION"] == annotation["answer"]
            steps = [line.split(":")[0] for line in sections["REASONING"].splitlines()]
            assert steps == [f"Step {k}" for k in range(1, len(REASONING_STEPS) + 1)]


def sections_text(bodies, order=TAGS):
    return "\n".join(f"<{tag}>{body}</{tag}>" for tag, body in zip(order, bodies))


GOOD = ["Summary.", "Caption.", STEPS, REFERENCE.to_text()]
CRAFTED = {
    "missing_section": sections_text(GOOD[:3]),
    "duplicate_section": sections_text(GOOD) + "\n<CAPTION>Again.</CAPTION>",
    "sections_out_of_order": sections_text([GOOD[1], GOOD[0], *GOOD[2:]], order=("CAPTION", "SUMMARY", *TAGS[2:])),
    "empty_section": sections_text(["Summary.", " \n ", STEPS, REFERENCE.to_text()]),
    "text_outside_sections": "Sure! Here is my answer.\n" + sections_text(GOOD),
    "missing_steps": sections_text(["Summary.", "Caption.", "Step 1: two. Step 2: both. Step 4: done.", GOOD[3]]),
    "unparsable_conclusion": sections_text([*GOOD[:3], "It is a dialogue between two young women."]),
    "invalid_value": sections_text([*GOOD[:3], REFERENCE.to_text().replace("happy", "ecstatic")]),
}


def test_crafted_texts_cover_every_failure_reason():
    assert set(CRAFTED) == set(FAILURE_REASONS)
    for reason, text in CRAFTED.items():
        failure = parse_cot(text)
        assert isinstance(failure, CoTFailure) and failure.reason == reason, (reason, failure)
        assert not failure and failure.detail
        # Only the two conclusion failures are well formed.
        assert format_reward(text) == (1.0 if reason in ("unparsable_conclusion", "invalid_value") else 0.0)


NESTED = sections_text(GOOD).replace("</SUMMARY>\n<CAPTION>", "<CAPTION>").replace("</CAPTION>", "</CAPTION></SUMMARY>")


def with_conclusion(line):
    return sections_text([*GOOD[:3], line])


@pytest.mark.parametrize(
    "text, reason",
    [
        (sections_text(GOOD).replace("</SUMMARY>", ""), "missing_section"),
        (NESTED, "sections_out_of_order"),
        (sections_text(GOOD) + "\nThat is all.", "text_outside_sections"),
        (sections_text(GOOD).replace("</SUMMARY>\n", "</SUMMARY> x "), "text_outside_sections"),
        (sections_text(["a", "b", "Step 2. Step 1. Step 3. Step 4.", GOOD[3]]), "missing_steps"),
        (sections_text(["a", "b", "Step 10. Step 2. Step 3. Step 4.", GOOD[3]]), "missing_steps"),
        (with_conclusion(GOOD[3].rsplit(";", 1)[0]), "unparsable_conclusion"),
        (with_conclusion(GOOD[3] + "; emotion: sad"), "unparsable_conclusion"),
        (with_conclusion(GOOD[3] + "; mood: sad"), "unparsable_conclusion"),
        (with_conclusion(GOOD[3].replace("speakers: 2", "speakers: two")), "invalid_value"),
        (with_conclusion(GOOD[3].replace("speakers: 2", "speakers: -1")), "invalid_value"),
        (with_conclusion(GOOD[3].replace("speakers: 2", "speakers: ²")), "invalid_value"),
        (with_conclusion(GOOD[3].replace("speakers: 2", "speakers: " + "9" * 5000)), "invalid_value"),
    ],
)  # fmt: skip
def test_more_malformed_responses(text, reason):
    assert parse_cot(text).reason == reason


def test_lowercase_tags_are_not_tags():
    text = sections_text(GOOD).replace("SUMMARY", "summary")
    assert parse_cot(text).reason == "missing_section"
    assert format_reward(text) == 0.0


def test_non_strict_reads_the_last_conclusion_whatever_surrounds_it():
    other = DubbingConclusion("narration", 1, "male", "elderly", "sad")
    rambling = f"Hmm.\n<CONCLUSION>{other.to_text()}</CONCLUSION>\nNo, wait.\n<CONCLUSION>{GOOD[3]}</CONCLUSION>"
    assert parse_cot(rambling).reason == "missing_section"
    assert parse_cot(rambling, strict=False) == REFERENCE
    assert parse_cot("<CONCLUSION>  </CONCLUSION>", strict=False).reason == "empty_section"
    assert parse_cot(f"<CONCLUSION>{GOOD[3]}", strict=False).reason == "missing_section"


def test_failure_is_falsy_and_frozen():
    failure = CoTFailure("missing_steps", "no Step 3")
    assert not failure and bool(REFERENCE)
    with pytest.raises(AttributeError):
        failure.reason = "invalid_value"


def test_rewards():
    good = cot()
    wrong = cot(DubbingConclusion("monologue", 1, "female", "young", "happy"))
    assert (format_reward(good), outcome_reward(good, REFERENCE)) == (1.0, 1.0)
    assert (format_reward(wrong), outcome_reward(wrong, REFERENCE)) == (1.0, 0.0)
    # Right answer, bad format: the two rewards judge separately.
    chatty = "Okay.\n" + good
    assert (format_reward(chatty), outcome_reward(chatty, REFERENCE)) == (0.0, 1.0)
    # QA mode: a bare conclusion line, no tags.
    assert (format_reward(REFERENCE.to_text()), outcome_reward(REFERENCE.to_text(), REFERENCE)) == (0.0, 1.0)
    # ... which is the QA mode's well-formed answer, where the CoT and any extra words are not.
    assert format_reward(REFERENCE.to_text(), mode="qa") == 1.0
    assert format_reward(good, mode="qa") == format_reward(chatty, mode="qa") == format_reward("", mode="qa") == 0.0
    with pytest.raises(ValueError, match="mode must be"):
        format_reward(good, mode="json")
    assert outcome_reward("It is a dialogue.", REFERENCE) == 0.0
    assert outcome_reward("", REFERENCE) == format_reward("") == 0.0
    # The number of speakers only counts when asked for.
    three = cot(DubbingConclusion("dialogue", 3, "female", "young", "happy"))
    assert outcome_reward(three, REFERENCE) == 1.0
    assert outcome_reward(three, REFERENCE, fields=("scene_type", "num_speakers")) == 0.0
    assert outcome_reward(wrong, REFERENCE, fields=("gender", "age", "emotion")) == 1.0
    with pytest.raises(ValueError, match="fields must be"):
        outcome_reward(good, REFERENCE, fields=("colour",))
    with pytest.raises(TypeError, match="text must be a string"):
        parse_cot(None)


@settings(max_examples=500, deadline=None)
@given(text=any_text, reference=conclusions)
def test_any_text_is_read_without_raising(text, reference):
    strict, loose, bare = parse_cot(text), parse_cot(text, strict=False), parse_conclusion(text)
    for parsed in (strict, loose, bare):
        assert isinstance(parsed, (DubbingConclusion, CoTFailure))
        assert bool(parsed) == isinstance(parsed, DubbingConclusion)
        if not parsed:
            assert parsed.reason in FAILURE_REASONS
    assert format_reward(text) in (0.0, 1.0)
    assert format_reward(text, mode="qa") == (1.0 if bare else 0.0)
    assert outcome_reward(text, reference) in (0.0, 1.0)
    sections = split_sections(text)
    assert isinstance(sections, (dict, CoTFailure))
    if strict:  # a strict parse implies good format, and the loose parse agrees with it
        assert format_reward(text) == 1.0 and loose == strict
        assert outcome_reward(text, strict) == 1.0
    if format_reward(text):
        assert list(sections) == list(TAGS) and all(sections.values())


@settings(max_examples=200, deadline=None)
@given(conclusion=conclusions, junk=st.text(min_size=1).filter(str.strip), where=st.integers(0, 4))
def test_anything_but_whitespace_outside_the_sections_breaks_the_format(conclusion, junk, where):
    blocks = [f"<{tag}>{body}</{tag}>" for tag, body in zip(TAGS, [*GOOD[:3], conclusion.to_text()])]
    blocks.insert(where, junk)  # before, between or after the sections
    text = "\n".join(blocks)
    assert format_reward(text) == 0.0
    assert not parse_cot(text)


def test_huge_and_pathological_texts_are_fast():
    huge = [
        "<CONCLUSION>" * 200_000,
        "</CONCLUSION><CONCLUSION>" * 100_000,
        "<SUMMARY>" + "<REASONING>Step 1 " * 100_000 + "</SUMMARY>",
        "Step " * 200_000,
        ";" * 1_000_000,
        "speakers:" * 200_000,
        cot(steps=STEPS + "\n" + "Step 4 " * 100_000),
        "\U0001f600\u200b\x00" * 300_000,
    ]
    start = time.perf_counter()
    for text in huge:
        assert not parse_cot(text) or format_reward(text)
        parse_cot(text, strict=False)
        parse_conclusion(text)
        assert outcome_reward(text, REFERENCE) in (0.0, 1.0)
    assert time.perf_counter() - start < 10.0
