"""SubRip (`.srt`) subtitles: the lines of a long video, each with its time window and, for dialogue, its speaker.

A cue's speaker is named at the start of its text, as subtitlers write it: `ALICE: Where is the map?`,
`[Alice] Where is the map?` or `- Alice: ...`; a cue without a name has speaker `None`.

    >>> cues = parse_srt('''1
    ... 00:00:01,000 --> 00:00:02,500
    ... ALICE: Where did you put the map?
    ...
    ... 2
    ... 00:00:03,000 --> 00:00:04,200
    ... [Bob] On the table.
    ... ''')
    >>> [(c.start_s, c.end_s, c.speaker, c.text) for c in cues]
    [(1.0, 2.5, 'ALICE', 'Where did you put the map?'), (3.0, 4.2, 'Bob', 'On the table.')]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

_TIME = r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_TAGS = re.compile(r"<[^>]+>|\{\\[^}]*\}")  # <i>, </font>, {\an8}
_SPEAKER = re.compile(r"^\s*-?\s*(?:\[([^\]]{1,40})\]|([A-Za-z][\w .'-]{0,38}?)\s*:)\s*(?=\S)")


@dataclass
class Cue:
    """One subtitle: shown from `start_s` to `end_s` seconds, `text` spoken by `speaker` (None if unnamed)."""

    index: int
    start_s: float
    end_s: float
    text: str
    speaker: Optional[str] = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _seconds(h, m, s, ms) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def _split_speaker(text: str) -> tuple[Optional[str], str]:
    match = _SPEAKER.match(text)
    if not match or (match.group(2) and "://" in text[: match.end() + 2]):
        return None, text
    return (match.group(1) or match.group(2)).strip(), text[match.end() :].strip()


def parse_srt(source: str | os.PathLike) -> list[Cue]:
    """The cues of an SRT file (a path) or SRT text, in time order.

    Raises `ValueError`, naming the cue, for a block without a valid timing line, an end before its start, an empty
    text, or cues that overlap (one track cannot say two lines at once).
    """
    name = "the subtitles"
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and "-->" not in source):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"Subtitle file {str(source)!r} not found; check the path.")
        name = repr(str(source))
        with open(source, encoding="utf-8-sig") as handle:
            source = handle.read()
    blocks = [b for b in re.split(r"\n\s*\n", source.replace("\r\n", "\n").strip()) if b.strip()]
    if not blocks:
        raise ValueError(f"{name} hold no cues: an SRT file is blocks of 'index', 'start --> end', text lines.")
    cues = []
    for number, block in enumerate(blocks, start=1):
        lines = block.strip().split("\n")
        if _TIMING.match(lines[0]) is None and len(lines) > 1:
            lines = lines[1:]  # the index line
        timing = _TIMING.match(lines[0])
        if timing is None:
            raise ValueError(
                f"Cue {number} of {name} has no 'HH:MM:SS,mmm --> HH:MM:SS,mmm' line: {block[:80]!r}."
            )
        start, end = _seconds(*timing.groups()[:4]), _seconds(*timing.groups()[4:])
        text = " ".join(_TAGS.sub("", line).strip() for line in lines[1:] if line.strip())
        speaker, text = _split_speaker(text)
        if not text:
            raise ValueError(
                f"Cue {number} of {name} ({lines[0].strip()}) has no text to speak; remove it or add the line."
            )
        if end <= start:
            raise ValueError(
                f"Cue {number} of {name} ends ({end:.3f} s) before it starts ({start:.3f} s); fix its timing."
            )
        cues.append(Cue(number, start, end, text, speaker))
    cues.sort(key=lambda cue: cue.start_s)
    for previous, cue in zip(cues, cues[1:]):
        if cue.start_s < previous.end_s - 1e-6:
            raise ValueError(
                f"Cues {previous.index} and {cue.index} of {name} overlap ({previous.end_s:.3f} s > {cue.start_s:.3f} "
                "s); one track speaks one line at a time: shorten the first."
            )
    return cues


__all__ = ["Cue", "parse_srt"]
