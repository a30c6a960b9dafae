"""The vocabulary and the plan of one procedural clip, shared by the scene sampler, the speech and picture
renderers, the annotator and the corpus writer.

A clip is planned first (:class:`ScenePlan`: who is there, how they look, who says what and when), then its
speech is synthesised (one voice per character), then its frames are drawn with each talking character's
mouth following the energy of its own speech, and finally it is annotated and written out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

FPS = 25
SAMPLING_RATE = 24_000

GENDERS = ("male", "female")
AGES = ("child", "young", "adult", "elderly")
EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised")
SCENE_TYPES = ("dialogue", "monologue", "narration")
# Level 1 shows people, level 2 animals.
PERSON = "person"
ANIMALS = ("cat", "dog", "rabbit", "bear")


@dataclass
class Character:
    """One character of a clip.

    Attributes:
        species: `"person"` (level 1) or one of :data:`ANIMALS` (level 2).
        gender, age, emotion: from :data:`GENDERS`, :data:`AGES`, :data:`EMOTIONS`; all must show in the picture
            when the character is visible.
        visible: drawn on screen. A narrator over an empty scene is not.
        talking: its mouth moves with its speech (False for a narrator and for listeners).
        voice: the voice it speaks with (a dict from `speech.VoiceSpec.to_dict()`), None if it never speaks.
    """

    species: str
    gender: str
    age: str
    emotion: str
    visible: bool = True
    talking: bool = False
    voice: Optional[dict] = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Turn:
    """One utterance: `speaker` indexes `ScenePlan.characters`; times are seconds from the start of the clip."""

    speaker: int
    text: str
    start_s: float = 0.0
    end_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScenePlan:
    """Everything about a clip that is decided before rendering.

    Attributes:
        clip_id: unique id, e.g. `"l1-000042"`.
        level: 1 (people) or 2 (animals).
        scene_type: one of :data:`SCENE_TYPES`.
        characters: every character, visible or not (a narrator over an empty scene is an invisible character).
        turns: the utterances in time order.
        target_speaker: index of the character the conclusion describes (the first to speak).
        duration_s: length of the clip (1–6 s).
        width, height: frame size in pixels (at least 128×128).
        seed: the seed everything random about this clip is drawn from.
    """

    clip_id: str
    level: int
    scene_type: str
    characters: list = field(default_factory=list)
    turns: list = field(default_factory=list)
    target_speaker: int = 0
    duration_s: float = 0.0
    width: int = 160
    height: int = 128
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return int(round(self.duration_s * FPS))

    @property
    def visible_characters(self) -> list:
        return [c for c in self.characters if c.visible]


__all__ = [
    "AGES",
    "ANIMALS",
    "EMOTIONS",
    "FPS",
    "GENDERS",
    "PERSON",
    "SAMPLING_RATE",
    "SCENE_TYPES",
    "Character",
    "ScenePlan",
    "Turn",
]
