"""The chain-of-thought and question-answer annotations of a procedural clip, written from its ground truth.

The CoT follows §4.1 of the paper: a summary of the approach, a caption of the characters, the four reasoning
steps (count the characters; tell who is talking; decide dialogue, monologue or narration; conclude) and the
conclusion. Phrasings are drawn at random from a few templates so that no annotation is one fixed string.
"""

from __future__ import annotations

import numpy as np

from ..reasoner.cot import DubbingConclusion, format_cot
from ..reasoner.prompts import COT_INSTRUCTION, QA_QUESTION
from .schema import PERSON, ScenePlan

_SUMMARIES = (
    "I will count the characters in the frames, check whose lips move, decide whether the clip is a dialogue, a "
    "monologue or narration, and then describe the speaker.",
    "To answer, I count who is on screen, look at which mouths move with the speech, classify the scene and "
    "describe the speaker's gender, age and emotion.",
    "First I find the characters, then I watch their mouths to see who talks, then I decide the scene type and "
    "conclude with the speaker's attributes.",
)
_EMOTION_WORDS = {"neutral": "calm", "happy": "happy", "sad": "sad", "angry": "angry", "surprised": "surprised"}
_PERSON_NOUNS = {
    ("male", "child"): "boy", ("female", "child"): "girl",
    ("male", "young"): "young man", ("female", "young"): "young woman",
    ("male", "adult"): "man", ("female", "adult"): "woman",
    ("male", "elderly"): "old man", ("female", "elderly"): "old woman",
}  # fmt: skip
_ANIMAL_AGES = {"child": "baby", "young": "young", "adult": "grown", "elderly": "old"}
_NUMBERS = ("no", "one", "two", "three", "four")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(character) -> str:
    """`a young woman`, `an old male dog`."""
    if character.species == PERSON:
        noun = _PERSON_NOUNS[(character.gender, character.age)]
    else:
        noun = f"{_ANIMAL_AGES[character.age]} {character.gender} {character.species}"
    return f"{_article(noun)} {noun}"


def _positions(plan: ScenePlan, layout) -> dict:
    """Index of each visible character → `on the left` / `in the middle` / `on the right` (by bbox centre)."""
    visible = [i for i, c in enumerate(plan.characters) if c.visible]
    if len(visible) < 2 or layout is None:
        return {i: "" for i in visible}
    centres = sorted(visible, key=lambda i: (layout[i]["bbox"][0] + layout[i]["bbox"][2]) / 2)
    names = ["on the left", "on the right"] if len(centres) == 2 else ["on the left", "in the middle", "on the right"]
    return {index: " " + names[rank] for rank, index in enumerate(centres)}


def conclusion_of(plan: ScenePlan) -> DubbingConclusion:
    """The ground-truth conclusion: scene type, number of speakers and the target speaker's attributes."""
    speaker = plan.characters[plan.target_speaker]
    return DubbingConclusion(
        scene_type=plan.scene_type,
        num_speakers=len({turn.speaker for turn in plan.turns}),
        gender=speaker.gender,
        age=speaker.age,
        emotion=speaker.emotion,
    )


def annotate(plan: ScenePlan, layout=None, rng: np.random.Generator | None = None) -> dict:
    """The CoT response, the question-answer pair and the conclusion of a planned clip.

    Args:
        plan (`ScenePlan`): the clip, its turns set.
        layout (`list`, *optional*): `render_clip`'s layout (bounding boxes), to say who is left or right.
        rng (`np.random.Generator`, *optional*): picks the phrasings (seeded from the plan by default).

    Returns:
        `dict` with `cot`, `question`, `answer`, `conclusion` (a dict) and `cot_instruction`.
    """
    rng = rng if rng is not None else np.random.default_rng(plan.seed + 1)
    conclusion = conclusion_of(plan)
    where = _positions(plan, layout)
    visible = [i for i, c in enumerate(plan.characters) if c.visible]
    if layout is not None:  # describe them left to right, as one reads the frame
        visible.sort(key=lambda i: layout[i]["bbox"][0] + layout[i]["bbox"][2])
    kind = "people" if plan.level == 1 else "animals"
    kind_one = "person" if plan.level == 1 else "animal"

    if visible:
        parts = [f"{describe(plan.characters[i])}{where[i]} who looks {_EMOTION_WORDS[plan.characters[i].emotion]}"
                 for i in visible]
        noun = kind_one if len(visible) == 1 else kind
        caption = f"The clip shows {_NUMBERS[len(visible)]} {noun}: " + "; ".join(parts) + "."
    else:
        caption = str(rng.choice([
            "The clip shows an empty scene: nobody is on screen.",
            "Only the background is visible; there are no characters in the frames.",
        ]))

    count = len(visible)
    step1 = (f"Step 1: There {'is' if count == 1 else 'are'} {_NUMBERS[count]} "
             f"{kind_one if count == 1 else kind} in the video.")
    talk = []
    for i in visible:
        c = plan.characters[i]
        who = f"The {describe(c).split(' ', 1)[1]}{where[i]}"
        if c.talking:
            talk.append(f"{who} is talking: the mouth opens and closes with the speech.")
        else:
            talk.append(f"{who} is not talking: the mouth stays closed.")
    if not visible:
        talk.append("Nobody is on screen, yet a voice is heard.")
    step2 = "Step 2: " + " ".join(talk)
    if plan.scene_type == "dialogue":
        step3 = "Step 3: Two characters on screen talk in turn, so the clip is a dialogue."
    elif plan.scene_type == "monologue":
        step3 = "Step 3: Only one character on screen talks, so the clip is a monologue."
    else:
        step3 = "Step 3: The voice does not come from a moving mouth on screen, so the clip is narration."
    speaker = plan.characters[plan.target_speaker]
    voice_of = "the first speaker" if plan.scene_type == "dialogue" else "the speaker"
    if not speaker.visible:
        who_speaks = f"{voice_of} is an off-screen narrator"
    else:
        who_speaks = f"{voice_of} is {describe(speaker)}{where.get(plan.target_speaker, '')}"
    step4 = (f"Step 4: The scene type is {plan.scene_type}; {who_speaks}, {speaker.gender}, {speaker.age}, "
             f"who sounds {_EMOTION_WORDS[speaker.emotion]}.")
    reasoning = "\n".join((step1, step2, step3, step4))
    cot = format_cot(str(rng.choice(_SUMMARIES)), caption, reasoning, conclusion)
    return {
        "cot": cot,
        "cot_instruction": COT_INSTRUCTION,
        "question": QA_QUESTION,
        "answer": conclusion.to_text(),
        "conclusion": conclusion.to_dict(),
    }


__all__ = ["COT_INSTRUCTION", "QA_QUESTION", "annotate", "conclusion_of", "describe"]
