"""NMOS / SMOS listening tests: the page built from real files, blind and reproducible; scoring against a hand
computation; clear errors; the page's CSV export (run under node) and the CLI round trip."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import soundfile
from scipy.stats import t

from deepdubber_hf.evaluation.subjective import (
    RATING_LABELS,
    build_listening_test,
    read_manifest,
    results_to_markdown,
    score_listening_test,
)

SYSTEMS = ("groundtruth_rec", "f5tts_baseline", "deepdubber_ours")
UTTERANCES = ("utt_a", "utt_b", "utt_c")


def write_tone(path, frequency, duration_in_s=0.3, sampling_rate=16000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    time = np.arange(int(duration_in_s * sampling_rate)) / sampling_rate
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * frequency * time), sampling_rate)
    return str(path)


@pytest.fixture
def samples(tmp_path):
    """3 utterances × 3 systems, files under folders named after the systems, one reference voice per utterance."""
    rows = []
    for u, utterance in enumerate(UTTERANCES):
        reference = write_tone(tmp_path / "refs" / f"{utterance}_voice.wav", 200 + 50 * u)
        for s, system in enumerate(SYSTEMS):
            audio = write_tone(tmp_path / system / f"{utterance}.wav", 300 + 100 * s + 10 * u)
            rows.append({"id": utterance, "system": system, "audio": audio, "reference": reference,
                         "text": f"Line number {u + 1}."})  # fmt: skip
    return rows


class PageParser(HTMLParser):
    """The items of the page: their radios, players and text, plus anything that would load from elsewhere."""

    def __init__(self):
        super().__init__()
        self.items, self.external, self.current, self.in_script = {}, [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "item" in attrs.get("class", "").split():
            self.current = attrs["data-item"]
            self.items[self.current] = {"radios": [], "players": [], "text": ""}
        elif tag == "input" and attrs.get("type") == "radio":
            self.items[self.current]["radios"].append((attrs["name"], attrs["value"]))
        elif tag in ("audio", "video"):
            self.items[self.current]["players"].append((tag, attrs["src"]))
        if tag in ("link", "img", "iframe") or (tag == "script" and "src" in attrs):
            self.external.append(tag)
        self.external += [value for value in attrs.values() if value and re.match(r"(https?:)?//", value)]
        self.in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.items[self.current]["text"] += data


def parse_page(folder):
    parser = PageParser()
    with open(os.path.join(folder, "index.html"), encoding="utf-8") as handle:
        parser.feed(handle.read())
    return parser


def read_key(folder):
    with open(os.path.join(folder, "key.json"), encoding="utf-8") as handle:
        return json.load(handle)


def write_ratings(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rater", "item", "rating", "timestamp"])
        writer.writerows([*row, "2025-01-01T10:00:00.000Z"] for row in rows)
    return str(path)


def test_every_item_has_five_labelled_radios_and_a_copied_player(samples, tmp_path):
    folder = tmp_path / "test"
    key = build_listening_test(samples, folder, kind="nmos", seed=0)
    page = parse_page(folder)
    assert list(page.items) == list(key["items"]) and len(page.items) == len(samples)
    for item, found in page.items.items():
        assert found["radios"] == [(item, str(value)) for value in range(1, 6)]
        for value, label in RATING_LABELS.items():
            assert f"{value} · {label}" in found["text"]
        ((tag, src),) = found["players"]  # NMOS: the sample alone, no reference
        source = next(s for s in samples if (s["id"], s["system"]) == (key["items"][item]["id"],
                                                                          key["items"][item]["system"]))  # fmt: skip
        assert tag == "audio" and src == key["items"][item]["media"]
        with open(folder / src, "rb") as copy, open(source["audio"], "rb") as original:
            assert copy.read() == original.read()
        assert source["text"] in found["text"]
    assert page.external == []
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert 'id="rater"' in html and 'id="export"' in html and "new Blob(" in html


def test_neither_the_page_nor_the_media_names_reveal_the_systems(samples, tmp_path):
    folder = tmp_path / "test"
    key = build_listening_test(samples, folder, kind="smos", seed=0)
    html = (folder / "index.html").read_text(encoding="utf-8").lower()
    names = os.listdir(folder / "media")
    for system in SYSTEMS:
        assert system.lower() not in html and not any(system in name for name in names)
    for sample in samples:  # nor the utterance ids or the original paths
        assert sample["id"] not in html and os.path.basename(sample["audio"]) not in names
        assert os.path.dirname(sample["audio"]).lower() not in html
    assert {(entry["id"], entry["system"]) for entry in key["items"].values()} == {
        (s["id"], s["system"]) for s in samples
    }
    assert read_key(folder) == key


def test_smos_items_play_the_reference_voice_before_the_sample(samples, tmp_path):
    folder = tmp_path / "test"
    key = build_listening_test(samples, folder, kind="smos", seed=0)
    page = parse_page(folder)
    references = {}
    for item, found in page.items.items():
        (_, reference), (_, sample) = found["players"]
        assert (reference, sample) == (key["items"][item]["reference"], key["items"][item]["media"])
        assert (folder / reference).is_file() and (folder / sample).is_file()
        references.setdefault(key["items"][item]["id"], set()).add(reference)
        assert "similar" in found["text"]
    # one copy per reference recording, shared by the systems speaking that utterance
    assert all(len(copies) == 1 for copies in references.values()) and len(os.listdir(folder / "media")) == 9 + 3


def test_the_order_is_reproducible_with_a_seed_and_changes_with_another(samples, tmp_path):
    first = build_listening_test(samples, tmp_path / "a", seed=0)
    again = build_listening_test(samples, tmp_path / "b", seed=0)
    other = build_listening_test(samples, tmp_path / "c", seed=1)
    assert (tmp_path / "a" / "index.html").read_bytes() == (tmp_path / "b" / "index.html").read_bytes()
    assert first["items"] == again["items"]

    def order(key):
        return [(entry["id"], entry["system"]) for entry in key["items"].values()]

    assert order(other) != order(first) and sorted(order(other)) == sorted(order(first))
    assert order(first) != [(s["id"], s["system"]) for s in samples]  # shuffled, not the manifest order
    assert not set(other["items"]) & set(first["items"])  # another test: its items never score against this key


def test_video_samples_get_a_video_player(tmp_path):
    video = tmp_path / "dubbed.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=32x32:d=0.4:r=10", "-f", "lavfi",
                    "-i", "sine=frequency=440:duration=0.4", "-shortest", "-pix_fmt", "yuv420p", str(video)],
                   check=True)  # fmt: skip
    reference = write_tone(tmp_path / "voice.wav", 220)
    key = build_listening_test([{"id": "clip1", "system": "ours", "video": str(video), "reference": reference}],
                               tmp_path / "test", kind="smos")  # fmt: skip
    (found,) = parse_page(tmp_path / "test").items.values()
    assert [tag for tag, _ in found["players"]] == ["audio", "video"]
    assert next(iter(key["items"].values()))["media"].endswith(".mp4")


def test_manifests_resolve_paths_relative_to_their_folder(samples, tmp_path):
    with open(tmp_path / "manifest.jsonl", "w") as handle:
        for sample in samples[:2]:
            handle.write(json.dumps({**sample, "audio": os.path.relpath(sample["audio"], tmp_path), "text": None}))
            handle.write("\n\n")
    rows = read_manifest(tmp_path / "manifest.jsonl")
    assert [row["audio"] for row in rows] == [os.path.join(str(tmp_path), os.path.relpath(s["audio"], tmp_path))
                                              for s in samples[:2]]  # fmt: skip
    assert all("text" not in row for row in rows)
    (tmp_path / "manifest.txt").write_text("id,system\n")
    with pytest.raises(ValueError, match=r"neither \.csv nor \.jsonl"):
        read_manifest(tmp_path / "manifest.txt")


# Ratings (rater, (utterance, system), score) for the scoring tests; deepdubber_ours gets a single rating.
RATINGS = [
    ("ann", ("utt_a", "groundtruth_rec"), 5), ("ann", ("utt_b", "groundtruth_rec"), 4),
    ("ann", ("utt_a", "f5tts_baseline"), 3), ("ann", ("utt_b", "f5tts_baseline"), 2),
    ("bob", ("utt_a", "groundtruth_rec"), 5), ("bob", ("utt_c", "groundtruth_rec"), 5),
    ("bob", ("utt_a", "f5tts_baseline"), 4), ("bob", ("utt_c", "f5tts_baseline"), 3),
    ("bob", ("utt_c", "deepdubber_ours"), 4),
]  # fmt: skip


def rate(key, ratings=RATINGS):
    item_of = {(entry["id"], entry["system"]): item for item, entry in key["items"].items()}
    return [(rater, item_of[sample], score) for rater, sample, score in ratings]


def test_scores_match_a_hand_computation(samples, tmp_path):
    key = build_listening_test(samples, tmp_path / "test", kind="nmos", seed=0)
    rows = rate(key)
    files = [write_ratings(tmp_path / f"{rater}.csv", [r for r in rows if r[0] == rater]) for rater in ("ann", "bob")]
    results = score_listening_test(files, tmp_path / "test" / "key.json")
    assert results["kind"] == "nmos" and results["num_raters"] == 2 and list(results["systems"]) == list(SYSTEMS)

    def expected(scores):
        scores = np.asarray(scores, dtype=float)
        return scores.mean(), t.ppf(0.975, len(scores) - 1) * scores.std(ddof=1) / np.sqrt(len(scores))

    for system, scores in (("groundtruth_rec", [5, 4, 5, 5]), ("f5tts_baseline", [3, 2, 4, 3])):
        mean, ci95 = expected(scores)
        stats = results["systems"][system]
        assert stats["num_ratings"] == 4 and stats["num_raters"] == 2 and stats["num_items"] == 3
        assert stats["mean"] == pytest.approx(mean) and stats["ci95"] == pytest.approx(ci95)
    assert results["systems"]["groundtruth_rec"]["ci95"] == pytest.approx(3.182446 * 0.5 / 2, rel=1e-6)
    single = results["systems"]["deepdubber_ours"]
    assert (single["num_ratings"], single["mean"], single["ci95"]) == (1, 4.0, None)
    mean, ci95 = expected([score for *_, score in RATINGS])
    assert results["overall"]["num_ratings"] == 9
    assert results["overall"]["mean"] == pytest.approx(mean) and results["overall"]["ci95"] == pytest.approx(ci95)
    json.dumps(results)  # serialisable as is

    table = results_to_markdown(results, title="NMOS").splitlines()
    assert table[:4] == ["### NMOS", "", "| System | N | NMOS ± 95 % CI |", "| --- | ---: | ---: |"]
    assert table[4] == "| groundtruth_rec | 4 | 4.75 ± 0.80 |"
    assert table[6] == "| deepdubber_ours | 1 | 4.00 ± – |" and table[7].startswith("| All systems | 9 | ")


def test_a_system_without_ratings_is_reported_empty(samples, tmp_path):
    key = build_listening_test(samples, tmp_path / "test", seed=0)
    ratings = write_ratings(tmp_path / "r.csv", rate(key, RATINGS[:4]))
    results = score_listening_test(ratings, tmp_path / "test" / "key.json")
    assert results["systems"]["deepdubber_ours"] == {"num_ratings": 0, "mean": None, "std": None, "ci95": None,
                                                     "num_raters": 0, "num_items": 0}  # fmt: skip
    assert "| deepdubber_ours | 0 | – |" in results_to_markdown(results)


@pytest.mark.parametrize("bad", ["0", "6", "x", "3.5", ""])
def test_a_rating_outside_1_to_5_names_the_file_and_line(samples, tmp_path, bad):
    key = build_listening_test(samples, tmp_path / "test", seed=0)
    rows = rate(key, RATINGS[:3])
    rows[1] = (*rows[1][:2], bad)
    path = write_ratings(tmp_path / "ann.csv", rows)
    with pytest.raises(ValueError, match=rf"ann\.csv, line 3: rating '{re.escape(bad)}' .* integer from 1 to 5"):
        score_listening_test(path, tmp_path / "test" / "key.json")


def test_ratings_of_unknown_items_twice_rated_items_or_without_columns_are_errors(samples, tmp_path):
    key = build_listening_test(samples, tmp_path / "test", seed=0)
    key_path = tmp_path / "test" / "key.json"
    other = build_listening_test(samples, tmp_path / "other", seed=1)  # same samples, another test
    path = write_ratings(tmp_path / "mixed.csv", [*rate(key, RATINGS[:2]), *rate(other, RATINGS[2:3])])
    with pytest.raises(ValueError, match=r"mixed\.csv, line 4: item '[0-9a-f]{8}-\d+' is not in the key"):
        score_listening_test(path, key_path)
    once = write_ratings(tmp_path / "ann.csv", rate(key, RATINGS[:2]))
    with pytest.raises(ValueError, match=r"already rated .* passed twice"):
        score_listening_test([once, once], key_path)
    (tmp_path / "bare.csv").write_text("name,item,score\nann,x,3\n")
    with pytest.raises(ValueError, match=r"bare\.csv: no column rater, rating"):
        score_listening_test(tmp_path / "bare.csv", key_path)
    with pytest.raises(FileNotFoundError, match="build_listening_test"):
        score_listening_test(once, tmp_path / "missing.json")


def test_bad_samples_are_clear_errors_and_write_nothing(samples, tmp_path):
    no_reference = [{k: v for k, v in s.items() if k != "reference"} for s in samples]
    cases = [
        (no_reference, "smos", ValueError, r"samples\[0\] .* has no 'reference'.*kind='nmos'"),
        ([*samples, samples[4]], "nmos", ValueError, r"samples\[9\] .* repeats samples\[4\]"),
        ([{**samples[0], "audio": str(tmp_path / "gone.wav")}], "nmos", FileNotFoundError, r"gone\.wav' not found"),
        ([{**samples[0], "reference": str(tmp_path / "gone.wav")}], "smos", FileNotFoundError, "reference file"),
        ([{**samples[0], "audio": "clip.mkv"}], "nmos", ValueError, r"not a format browsers play.*ffmpeg"),
        ([{"id": "utt_a", "system": "x"}], "nmos", ValueError, "exactly one of 'audio'"),
        ([{"system": "x", "audio": samples[0]["audio"]}], "nmos", ValueError, r"no 'id'"),
        (samples, "mos", ValueError, r"kind 'mos' is unknown; choose 'nmos'"),
        ([], "nmos", ValueError, "samples is empty"),
    ]
    for given, kind, error, message in cases:
        with pytest.raises(error, match=message):
            build_listening_test(given, tmp_path / "test", kind=kind)
        assert not (tmp_path / "test").exists()
    no_reference_key = build_listening_test(no_reference, tmp_path / "test", kind="nmos")  # NMOS needs none
    assert len(no_reference_key["items"]) == 9
    with pytest.raises(ValueError, match="not an empty folder"):  # an existing key is never replaced
        build_listening_test(samples, tmp_path / "test")


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the page's export code")
def test_the_page_exports_a_csv_the_scorer_reads(samples, tmp_path):
    key = build_listening_test(samples, tmp_path / "test", seed=0)
    html = (tmp_path / "test" / "index.html").read_text(encoding="utf-8")
    script = re.search(r"<script>(.*?)</script>", html, re.DOTALL).group(1)
    items = list(key["items"])
    ratings = {item: {"rating": score, "time": "2025-01-01T10:00:00.000Z"} for _, item, score in rate(key)}
    runner = (script + "\nprocess.stdout.write(ratingsToCsv(process.argv[1], JSON.parse(process.argv[2]), "
              "JSON.parse(process.argv[3])));")  # fmt: skip
    rater = 'Ann "A." Lee, Paris'  # quotes and a comma survive the export
    result = subprocess.run(["node", "-e", runner, rater, json.dumps(ratings), json.dumps(items)],
                            capture_output=True, text=True, check=True)  # fmt: skip
    (tmp_path / "export.csv").write_text(result.stdout, encoding="utf-8", newline="")
    with open(tmp_path / "export.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["rater"] for row in rows} == {rater} and [row["item"] for row in rows] == [
        item for item in items if item in ratings
    ]
    results = score_listening_test(tmp_path / "export.csv", tmp_path / "test" / "key.json")
    assert results["overall"]["num_ratings"] == len(ratings) == 7 and results["num_raters"] == 1


def deepdubber(*args, cwd):
    return subprocess.run([sys.executable, "-m", "deepdubber_hf.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, check=False)  # fmt: skip


def test_cli_builds_and_scores_a_test(samples, tmp_path):
    with open(tmp_path / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "system", "audio", "reference", "text"])
        for s in samples:
            writer.writerow([s["id"], s["system"], os.path.relpath(s["audio"], tmp_path),
                             os.path.relpath(s["reference"], tmp_path), s["text"]])  # fmt: skip
    result = deepdubber("listening-test", "build", "manifest.csv", "smos_test", "--kind", "smos", "--seed", 3,
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "SMOS test of 9 items" in result.stdout and "key.json private" in result.stdout
    key = read_key(tmp_path / "smos_test")
    assert key["kind"] == "smos" and key["seed"] == 3
    ratings = write_ratings(tmp_path / "ratings.csv", rate(key))
    result = deepdubber("listening-test", "score", "smos_test/key.json", ratings, "--json", "out.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| System | N | SMOS ± 95 % CI |" in result.stdout
    assert "| groundtruth_rec | 4 | 4.75 ± 0.80 |" in result.stdout
    with open(tmp_path / "out.json") as handle:
        assert json.load(handle)["systems"]["f5tts_baseline"]["mean"] == pytest.approx(3.0)

    (tmp_path / "no_ref.csv").write_text(f"id,system,audio\nutt_a,ours,{samples[0]['audio']}\n")
    result = deepdubber("listening-test", "build", "no_ref.csv", "again", "--kind", "smos", cwd=tmp_path)
    assert result.returncode == 2 and "has no 'reference'" in result.stderr and not (tmp_path / "again").exists()
