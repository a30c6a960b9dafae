import pytest

from deepdubber_hf.subtitles import parse_srt

SRT = """\ufeff1
00:00:01,000 --> 00:00:02,500
ALICE: Where did you put
the <i>map</i>?

2
00:00:03,000 --> 00:00:04,200
[Bob] On the table.

3
00:00:05,5 --> 00:00:06,000
- Dr. Who: See http://x.org now.

4
00:01:00,000 --> 00:01:01,250
Nobody named here: it is a narrator.
"""


def test_cues_times_speakers_and_text(tmp_path):
    path = tmp_path / "lines.srt"
    path.write_text(SRT, encoding="utf-8")
    for source in (SRT, str(path), path):
        cues = parse_srt(source)
        assert [c.index for c in cues] == [1, 2, 3, 4]
        assert [(c.start_s, c.end_s) for c in cues] == [(1.0, 2.5), (3.0, 4.2), (5.5, 6.0), (60.0, 61.25)]
        assert cues[0].speaker == "ALICE" and cues[0].text == "Where did you put the map?"
        assert cues[1].speaker == "Bob" and cues[1].text == "On the table."
        assert cues[2].speaker == "Dr. Who" and cues[2].text == "See http://x.org now."
        assert cues[3].speaker == "Nobody named here" and cues[3].duration_s == pytest.approx(1.25)


def test_a_line_without_a_name_has_no_speaker():
    cues = parse_srt("1\n00:00:00,000 --> 00:00:01,000\nJust words, no colon.\n")
    assert cues[0].speaker is None and cues[0].text == "Just words, no colon."


@pytest.mark.parametrize(
    "text, message",
    [
        ("1\n00:00:01 --> 00:00:02\nNo milliseconds.\n", "Cue 1 .* has no 'HH:MM:SS,mmm"),
        ("1\n00:00:02,000 --> 00:00:01,000\nBackwards.\n", "Cue 1 .* ends"),
        ("1\n00:00:01,000 --> 00:00:02,000\n<i> </i>\n", "Cue 1 .* no text"),
        ("1\n00:00:01,000 --> 00:00:03,000\nA.\n\n2\n00:00:02,000 --> 00:00:04,000\nB.\n", "Cues 1 and 2 .* overlap"),
        ("\n\n", "hold no cues"),
    ],
)
def test_bad_subtitles_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_srt(text)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="lines.srt"):
        parse_srt(str(tmp_path / "lines.srt"))
