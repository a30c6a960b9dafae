"""Sampling the plan of a procedural clip: scene type, characters and who says what.

Scene types (§4.1 of the paper):

- **dialogue**: two visible characters speak in turn (2–3 turns), sometimes with a silent third one;
- **monologue**: one visible character speaks, sometimes beside a silent listener;
- **narration**: a voice over mouths that do not move: either the voice-over of a visible character (its
  thoughts; its mouth stays shut) or, in half of the narration clips, an off-screen narrator over an empty scene.

Texts are chosen here; the times of the turns are set once the speech exists (see `corpus.py`).
"""

from __future__ import annotations

import numpy as np

from .schema import AGES, ANIMALS, EMOTIONS, GENDERS, PERSON, SCENE_TYPES, Character, ScenePlan, Turn

FRAME_SIZES = ((160, 128), (176, 144), (192, 160))


def sample_character(level: int, rng: np.random.Generator, visible: bool = True) -> Character:
    """A character of the level's species with uniformly drawn gender, age and emotion."""
    species = PERSON if level == 1 else str(rng.choice(ANIMALS))
    return Character(
        species=species,
        gender=str(rng.choice(GENDERS)),
        age=str(rng.choice(AGES)),
        emotion=str(rng.choice(EMOTIONS)),
        visible=visible,
    )


def sample_plan(clip_id: str, level: int, seed: int, scene_type: str | None = None) -> ScenePlan:
    """The characters and turns (texts still empty) of one clip, all drawn from `seed`.

    Args:
        clip_id (`str`): id of the clip.
        level (`int`): 1 (people) or 2 (animals).
        seed (`int`): the clip's seed.
        scene_type (`str`, *optional*): force a scene type; drawn uniformly by default.
    """
    if level not in (1, 2):
        raise ValueError(f"level must be 1 (people) or 2 (animals), got {level!r}.")
    rng = np.random.default_rng(seed)
    if scene_type is None:
        scene_type = str(rng.choice(SCENE_TYPES))
    elif scene_type not in SCENE_TYPES:
        raise ValueError(f"scene_type must be one of {SCENE_TYPES}, got {scene_type!r}.")
    width, height = FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))]

    if scene_type == "dialogue":
        characters = [sample_character(level, rng) for _ in range(2)]
        for character in characters:
            character.talking = True
        if rng.random() < 0.2:
            characters.insert(int(rng.integers(3)), sample_character(level, rng))  # a silent bystander
        speakers = [i for i, c in enumerate(characters) if c.talking]
        first = int(rng.integers(2))
        order = [speakers[(first + k) % 2] for k in range(int(rng.integers(2, 4)))]
    elif scene_type == "monologue":
        characters = [sample_character(level, rng)]
        characters[0].talking = True
        if rng.random() < 0.3:
            characters.insert(int(rng.integers(2)), sample_character(level, rng))  # a silent listener
        order = [next(i for i, c in enumerate(characters) if c.talking)] * int(rng.integers(1, 3))
    else:  # narration
        if rng.random() < 0.5:
            characters = [sample_character(level, rng, visible=False)]  # an off-screen narrator, empty scene
            order = [0]
        else:
            characters = [sample_character(level, rng) for _ in range(int(rng.integers(1, 3)))]
            order = [int(rng.integers(len(characters)))]  # the voice-over of one of them, mouth shut
        order = order * int(rng.integers(1, 3))

    turns = [Turn(speaker=s, text="") for s in order]
    return ScenePlan(
        clip_id=clip_id,
        level=level,
        scene_type=scene_type,
        characters=characters,
        turns=turns,
        target_speaker=order[0],
        width=width,
        height=height,
        seed=seed,
    )


__all__ = ["FRAME_SIZES", "sample_character", "sample_plan"]
