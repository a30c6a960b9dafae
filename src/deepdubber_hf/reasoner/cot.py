"""The chain-of-thought format of DeepDubber (§3.2.2, §4.1, Figure 4 of the paper) and its conclusion.

A response has four tagged sections, in order: ``<SUMMARY>`` (how the answer will be reached), ``<CAPTION>``
(who is in the clip), ``<REASONING>`` (Steps 1–4 of §4.1: count the characters, tell who is talking, decide
dialogue / monologue / narration, conclude) and ``<CONCLUSION>`` (the answer, in the machine-readable form of
:meth:`DubbingConclusion.to_text`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

TAGS = ("SUMMARY", "CAPTION", "REASONING", "CONCLUSION")


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


def format_cot(summary: str, caption: str, reasoning: str, conclusion: DubbingConclusion) -> str:
    """The four sections, each on its own line(s) between its tags."""
    sections = (summary, caption, reasoning, conclusion.to_text())
    return "\n".join(f"<{tag}>{text}</{tag}>" for tag, text in zip(TAGS, sections))


__all__ = ["TAGS", "DubbingConclusion", "format_cot"]
