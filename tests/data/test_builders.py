"""The real-corpus builders on tiny trees laid out as each corpus is published (real wav/mp3/mp4/mpg files written
with espeak-ng and ffmpeg), then the export to the Hub layout and its offline reload."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "dataset_scripts"))

import export_real_corpus
from builders import COLUMNS, CoTMovieDubbing, Emilia, GridDubbing, V2CAnimation, dubbing_features
from builders.common import card_text, export_hub_layout, make_row
from builders.v2c_animation import read_split_list

MEDIA_COLUMNS = ("audio", "video")


def run(*command):
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed: run `make system-deps` (apt packages espeak-ng ffmpeg sox).")
    subprocess.run(command, check=True, capture_output=True)


def speak(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    run("espeak-ng", "-s", "220", "-w", str(path), text)
    return path


def to_mp3(wav: Path, mp3: Path) -> Path:
    mp3.parent.mkdir(parents=True, exist_ok=True)
    run("ffmpeg", "-v", "error", "-y", "-i", str(wav), "-ac", "1", "-ar", "16000", "-c:a", "libmp3lame", str(mp3))
    return mp3


def place(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One tiny mp4 (H.264) and one mpg (MPEG-1, as GRID ships) to copy wherever a layout wants a video."""
    folder = tmp_path_factory.mktemp("media")
    source = ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=0.4"]
    run("ffmpeg", *source, "-pix_fmt", "yuv420p", "-c:v", "libx264", str(folder / "clip.mp4"))
    run("ffmpeg", *source, "-c:v", "mpeg1video", str(folder / "clip.mpg"))
    return {"mp4": folder / "clip.mp4", "mpg": folder / "clip.mpg"}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def build(builder_class, data_dir, cache_dir, **kwargs):
    builder = builder_class(data_dir=str(data_dir), cache_dir=str(cache_dir), **kwargs)
    builder.download_and_prepare()
    return builder, builder.as_dataset()


def check_media(row, with_video=True):
    audio = row["audio"]["array"]
    assert audio.ndim == 1 and audio.size > 1000 and abs(audio).max() > 0.01, row["clip_id"]
    assert abs(audio.size / row["audio"]["sampling_rate"] - row["duration_s"]) < 0.1, row["clip_id"]
    if with_video:
        frame = row["video"].get_frame_at(0).data
        assert tuple(frame.shape) == (3, 48, 64), row["clip_id"]
    else:
        assert row["video"] is None


def plain(row) -> dict:
    return {k: v for k, v in row.items() if k not in MEDIA_COLUMNS}


def check_export_roundtrip(dataset_dict, export_dir, config_name, raw_dir, cache_dir, with_video=True):
    """Rows reloaded from the exported folder equal the built ones and their media decode without the raw tree."""
    shutil.rmtree(raw_dir)  # the export must hold the media bytes, not paths into the raw tree
    for split, built in dataset_dict.items():
        for shard in (export_dir / "data" / config_name).glob(f"{split}-*.parquet"):
            table = pq.read_table(shard, columns=list(MEDIA_COLUMNS))
            assert all(v is None or v["bytes"] for c in table.column_names for v in table[c].to_pylist())
        loaded = datasets.load_dataset(str(export_dir), config_name, split=split, cache_dir=str(cache_dir))
        assert loaded.features == dubbing_features()
        assert len(loaded) == len(built)
        reloaded = {row["clip_id"]: row for row in loaded}
        for row in built.cast_column("audio", datasets.Audio(decode=False)).cast_column(
            "video", datasets.Video(decode=False)
        ):
            again = reloaded[row["clip_id"]]
            assert plain(again) == plain(row)
            check_media(again, with_video=with_video)


# ---------------------------------------------------------------------------------------------------------------------
# V2C-Animation: the V2C toolkit's tree + HPMDubbing/StyleDubber split lists + emotions.json

V2C_CLIPS = {  # basename: (text, split or None, emotion label or None)
    "FrozenII@Anna_00_1305_00": ("the dam must fall", "train", 5),
    "FrozenII@Anna_00_0933_00": ("hey olaf maybe just one", "train", 3),
    "FrozenII@Elsa_00_0100_00": ("let it go now", "validation", 6),
    "CloudyII@Samantha_00_0060_00": ("awesome yes", "test", 4),
    "CloudyII@Samantha_00_0941_00": ("it does not mean we have to destroy them", "test", None),
    "CloudyII@Samantha_00_0500_00": ("this one is in no list", None, 0),
}
V2C_LISTS = {"train": "train.txt", "validation": "val.txt", "test": "test.txt"}


@pytest.fixture
def v2c_tree(tmp_path, clips):
    root = tmp_path / "V2C"
    lines = {split: [] for split in V2C_LISTS}
    for basename, (text, split, _) in V2C_CLIPS.items():
        movie, rest = basename.split("@")
        speaker, folder, index, _ = rest.rsplit("_", 3)
        speeches = root / movie / f"{movie}_speeches" / speaker / folder
        speak(speeches / f"{speaker}-{folder}-{index}.wav", text)
        (speeches / f"{speaker}-{folder}-{index}.normalized.txt").write_text(text)
        place(clips["mp4"], root / movie / f"{movie}_videos" / speaker / f"{index}.mp4")
        if split:
            lines[split].append(f"{basename}|{movie}@{speaker}|{{sil HH EY1 sp}}|{text}")
    for split, name in V2C_LISTS.items():
        (root / name).write_text("\n".join(lines[split]) + "\n")
    emotions = {b: label for b, (_, _, label) in V2C_CLIPS.items() if label is not None}
    (root / "emotions.json").write_text(json.dumps(emotions))
    return root


def test_v2c_animation_splits_labels_and_export(v2c_tree, tmp_path):
    builder, dataset = build(V2CAnimation, v2c_tree, tmp_path / "cache")
    assert {split: len(ds) for split, ds in dataset.items()} == {"train": 2, "validation": 1, "test": 2}
    assert list(dataset["train"].features) == list(COLUMNS)
    for split, ds in dataset.items():
        assert {row["clip_id"] for row in ds} == {b for b, (_, s, _) in V2C_CLIPS.items() if s == split}
    rows = {row["clip_id"]: row for split in dataset for row in dataset[split]}
    anna = rows["FrozenII@Anna_00_1305_00"]
    assert anna["transcript"] == "the dam must fall"
    assert anna["speaker_id"] == "FrozenII@Anna" and anna["source"] == "v2c-animation"
    assert anna["speaker_emotion"] == "sad"
    assert rows["FrozenII@Elsa_00_0100_00"]["speaker_emotion"] == "surprised"
    assert rows["CloudyII@Samantha_00_0941_00"]["speaker_emotion"] is None  # not in emotions.json
    assert all(rows[c][k] is None for c in rows for k in ("scene_type", "speaker_gender", "speaker_age", "cot"))
    for row in rows.values():
        check_media(row)

    export_dir = tmp_path / "hub"
    export_hub_layout(dataset, str(export_dir), "v2c", card_text(builder))
    readme = (export_dir / "README.md").read_text()
    assert "config_name: v2c" in readme and "path: data/v2c/validation-*.parquet" in readme
    assert "V2C: Visual Voice Cloning" in readme  # the citation
    check_export_roundtrip(dataset, export_dir, "v2c", v2c_tree, tmp_path / "cache")


def test_v2c_animation_all_config_pair_lists_and_missing_clips(v2c_tree, tmp_path):
    _, everything = build(V2CAnimation, v2c_tree, tmp_path / "cache", config_name="all")
    assert list(everything) == ["train"] and len(everything["train"]) == len(V2C_CLIPS)
    row = next(r for r in everything["train"] if r["clip_id"] == "CloudyII@Samantha_00_0500_00")
    assert row["transcript"] == "this one is in no list" and row["speaker_emotion"] == "angry"

    # DeepDubber-V1's datasets/V2C/V2C_Setting2.txt: target|{phones}|speaker|reference|{phones}, text from subtitles.
    pairs = [
        "CloudyII@Samantha_00_0060_00|{sil AA1 S AH0 M}|CloudyII@Samantha|CloudyII@Samantha_00_0941_00|{sil IH1 T}",
        "CloudyII@Samantha_00_0060_00|{sil AA1 S AH0 M}|CloudyII@Samantha|CloudyII@Samantha_00_0500_00|{sil DH}",
        "FrozenII@Anna_00_0933_00|{sil HH EY1}|s31-pgab1a|{P L EY1 S}",  # V2C_Setting3.txt: a GRID reference
    ]
    (v2c_tree / "V2C_Setting2.txt").write_text("\n".join(pairs) + "\n")
    assert [e[0] for e in read_split_list(str(v2c_tree / "V2C_Setting2.txt"))] == [
        "CloudyII@Samantha_00_0060_00", "FrozenII@Anna_00_0933_00"
    ]  # fmt: skip
    _, setting2 = build(V2CAnimation, v2c_tree, tmp_path / "cache", split_files={"test": "V2C_Setting2.txt"})
    assert sorted(setting2["test"]["transcript"]) == ["awesome yes", "hey olaf maybe just one"]
    assert sorted(setting2["test"]["speaker_id"]) == ["CloudyII@Samantha", "FrozenII@Anna"]

    ghost = "Up@Carl_00_0001_00|Up@Carl|{sil}|adventure is out there"
    (v2c_tree / "ghost.txt").write_text(
        f"{ghost}\nCloudyII@Samantha_00_0060_00|CloudyII@Samantha|{{sil}}|awesome yes\n"
    )
    with pytest.raises(FileNotFoundError, match=r"'Up@Carl_00_0001_00'.*Up/Up_speeches/Carl/00/Carl-00-0001\.wav"):
        build(V2CAnimation, v2c_tree, tmp_path / "cache", split_files={"test": "ghost.txt"})
    _, skipped = build(
        V2CAnimation, v2c_tree, tmp_path / "cache", split_files={"test": "ghost.txt"}, missing_files="skip"
    )
    assert skipped["test"]["clip_id"] == ["CloudyII@Samantha_00_0060_00"]

    with pytest.raises(FileNotFoundError, match="none of the V2C split lists"):
        build(V2CAnimation, v2c_tree, tmp_path / "cache", split_files={"test": "absent.txt"})


# ---------------------------------------------------------------------------------------------------------------------
# GRID: the corpus site's archives extracted per speaker + the lip-dubbing lists

GRID_WORDS = {
    "bbaf2n": "bin blue at f two now",
    "lgaz8p": "lay green at z eight please",
    "sbwn8a": "set blue with n eight again",
    "prwd7a": "place red with d seven again",
    "pgab1a": "place green at b one again",
}
GRID_CLIPS = {"s1": ("bbaf2n", "lgaz8p"), "s2": ("sbwn8a", "prwd7a", "pgab1a")}


def write_align(path: Path, words: str):
    """A GRID align file: `start end word` in 1/25000 s, silence around the six words."""
    lines, t = ["0 12250 sil"], 12250
    for word in words.split():
        lines.append(f"{t} {t + 6000} {word}")
        t += 6000
    lines.append(f"{t} 74500 sil")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def grid_tree(tmp_path, clips):
    root = tmp_path / "GRID"
    for speaker, utts in GRID_CLIPS.items():
        for utt in utts:
            if speaker == "s1":  # archives extracted per modality: video/s1, audio/s1, align/s1
                video, audio, align = root / "video" / speaker, root / "audio" / speaker, root / "align" / speaker
            else:  # all into s2/, the align tar keeping its align/ folder
                video = audio = root / speaker
                align = root / speaker / "align"
            place(clips["mpg"], video / f"{utt}.mpg")
            speak(audio / f"{utt}.wav", GRID_WORDS[utt])
            write_align(align / f"{utt}.align", GRID_WORDS[utt])
    train = ["s1-bbaf2n|s1|{sil B IH1 N}|bin blue at f two now", "s1-lgaz8p|s1|{sil L EY1}|lay green at z eight please",
             "s2-sbwn8a|s2|{sil S EH1 T}|set blue with n eight again"]  # fmt: skip
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "test.txt").write_text("s2-prwd7a|s2|{P L EY1 S}|place red with d seven again\n")
    return root


def test_grid_dubbing_lists_align_transcripts_and_cli_export(grid_tree, tmp_path):
    _, dataset = build(GridDubbing, grid_tree, tmp_path / "cache")
    assert {split: len(ds) for split, ds in dataset.items()} == {"train": 3, "test": 1}
    assert set(dataset["train"]["clip_id"]) == {"s1-bbaf2n", "s1-lgaz8p", "s2-sbwn8a"}
    assert dataset["test"]["clip_id"] == ["s2-prwd7a"]  # s2-pgab1a is in neither list
    for row in (*dataset["train"], *dataset["test"]):
        assert row["transcript"] == GRID_WORDS[row["clip_id"].split("-")[1]]  # from the align file
        assert row["speaker_id"] == row["clip_id"].split("-")[0] and row["source"] == "grid"
        assert row["speaker_emotion"] is None and row["scene_type"] is None
        check_media(row)

    _, everything = build(GridDubbing, grid_tree, tmp_path / "cache", config_name="all")
    assert sorted(everything["train"]["clip_id"]) == sorted(f"{s}-{u}" for s, us in GRID_CLIPS.items() for u in us)

    export_dir = tmp_path / "hub"
    argv = [
        "grid",
        "--data_dir",
        str(grid_tree),
        "--output_dir",
        str(export_dir),
        "--cache_dir",
        str(tmp_path / "cache"),
    ]
    paths = export_real_corpus.main(export_real_corpus.parse_args(argv))
    assert sorted(Path(p).name for p in paths) == ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]
    check_export_roundtrip(dataset, export_dir, "grid", grid_tree, tmp_path / "cache")


def test_grid_dubbing_errors_name_the_input(grid_tree, tmp_path):
    (grid_tree / "train.txt").unlink()
    (grid_tree / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="config_name='all'"):
        build(GridDubbing, grid_tree, tmp_path / "cache")
    with pytest.raises(ValueError, match="pass data_dir"):
        GridDubbing(cache_dir=str(tmp_path / "cache")).download_and_prepare()
    (grid_tree / "test.txt").write_text("s2_prwd7a|s2\n")
    with pytest.raises(ValueError, match="not a GRID clip id"):
        build(GridDubbing, grid_tree, tmp_path / "cache")
    (grid_tree / "test.txt").write_text("s2-prwd7a|s2\ns2-prwd7a|s2\n")
    with pytest.raises(ValueError, match="listed twice"):
        build(GridDubbing, grid_tree, tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------------------------
# Emilia: the JSONL release and the WebDataset release

EMILIA_CLIPS = {  # id: text (with Emilia's leading space)
    "EN_B00000_S00000_W000000": " You can help my mother.",
    "EN_B00000_S00000_W000001": " Honda's gone, twenty squads done.",
    "EN_B00000_S00001_W000000": " What happened to you, Los Angeles?",
}


def emilia_record(clip_id: str, duration: float) -> dict:
    speaker = clip_id.rsplit("_", 1)[0]
    wav = f"EN_B00000/{speaker}/mp3/{clip_id}.mp3"
    return {"id": clip_id, "wav": wav, "text": EMILIA_CLIPS[clip_id], "duration": duration, "speaker": speaker,
            "language": "en", "dnsmos": 3.29}  # fmt: skip


@pytest.fixture
def emilia_mp3s(tmp_path):
    """{id: (mp3 path, duration)}"""
    from builders.common import audio_duration_s

    mp3s = {}
    for clip_id, text in EMILIA_CLIPS.items():
        mp3 = to_mp3(speak(tmp_path / "wav" / f"{clip_id}.wav", text), tmp_path / "mp3" / f"{clip_id}.mp3")
        mp3s[clip_id] = (mp3, round(audio_duration_s(str(mp3)), 3))
    return mp3s


def check_emilia(dataset, mp3s):
    assert list(dataset) == ["train"] and sorted(dataset["train"]["clip_id"]) == sorted(EMILIA_CLIPS)
    for row in dataset["train"]:
        assert row["transcript"] == EMILIA_CLIPS[row["clip_id"]].strip()
        assert row["speaker_id"] == row["clip_id"].rsplit("_", 1)[0] and row["source"] == "emilia"
        assert row["duration_s"] == pytest.approx(mp3s[row["clip_id"]][1], abs=1e-3)
        check_media(row, with_video=False)


def test_emilia_jsonl_release(tmp_path, emilia_mp3s):
    root = tmp_path / "Emilia-Dataset"
    lines = []
    for clip_id, (mp3, duration) in emilia_mp3s.items():
        record = emilia_record(clip_id, duration)
        place(mp3, root / "EN" / record["wav"])
        lines.append(json.dumps(record))
    (root / "EN" / "EN_B00000.jsonl").write_text("\n".join(lines) + "\n")
    builder, dataset = build(Emilia, root, tmp_path / "cache")
    check_emilia(dataset, emilia_mp3s)

    (root / "EN" / "EN_B00001.jsonl").write_text(lines[0] + "\n")  # its batch folder was not extracted
    (root / "EN" / "EN_B00001.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"EN_B00001'.*absent\. Extract .*EN_B00001\.tar\.gz"):
        build(Emilia, root, tmp_path / "cache2")
    (root / "EN" / "EN_B00001.jsonl").unlink()

    export_dir = tmp_path / "hub"
    export_hub_layout(dataset, str(export_dir), "emilia", card_text(builder))
    check_export_roundtrip(dataset, export_dir, "emilia", root, tmp_path / "cache", with_video=False)


def test_emilia_webdataset_release(tmp_path, emilia_mp3s):
    root = tmp_path / "Emilia-Dataset"
    shard = root / "Emilia" / "EN" / "EN-B000000.tar"
    shard.parent.mkdir(parents=True)
    first, second, third = list(emilia_mp3s)
    # json before mp3, and one key's members apart: pairing is by key, not by position
    order = [(first, "json"), (first, "mp3"), (second, "mp3"), (third, "json"), (third, "mp3"), (second, "json")]
    with tarfile.open(shard, "w") as archive:
        for clip_id, extension in order:
            mp3, duration = emilia_mp3s[clip_id]
            data = mp3.read_bytes() if extension == "mp3" else json.dumps(emilia_record(clip_id, duration)).encode()
            info = tarfile.TarInfo(f"{clip_id}.{extension}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    _, dataset = build(Emilia, root, tmp_path / "cache")
    check_emilia(dataset, emilia_mp3s)

    with tarfile.open(shard, "a") as archive:  # a key without its mp3
        data = json.dumps(emilia_record(first, 1.0) | {"id": "EN_B00000_S00009_W000000"}).encode()
        info = tarfile.TarInfo("EN_B00000_S00009_W000000.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    # Found while streaming the shard, so datasets wraps it: the cause names the missing member.
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as error:
        build(Emilia, root, tmp_path / "cache2")
    assert isinstance(error.value.__cause__, FileNotFoundError)
    assert "EN_B00000_S00009_W000000.mp3" in str(error.value.__cause__)


# ---------------------------------------------------------------------------------------------------------------------
# CoT-Movie-Dubbing: DeepDubber-V1's released test list + the clip tree

QUESTION = "What is the voice-over category for this video? Options: A. dialogue, B. monologue, C. narration."
COT_CLIPS = {  # video: (transcript, conclusion letter, scene type)
    "Chihuahua1/Chihuahua1_00002.mp4": ("where are we going", "A", "dialogue"),
    "Chihuahua1/Chihuahua1_00213.mp4": ("i am all alone", "B", "monologue"),
    "ppc/planes_1_scene_141.mp4": ("he went to that place", "C", "narration"),
}


def cot_answer(letter: str) -> str:
    return (
        "Summary stage: What's the problem? What should I do?\n<SUMMARY> I will count the people. </SUMMARY>\n"
        "Caption stage: What can I know from the video?\n<CAPTION> The video shows two people. </CAPTION>\n"
        "Reasoning stage: How to solve the problem step-by-step?\n<REASONING> ... the voice-over scene of the video "
        f"is dialog. </REASONING>\nConclusion stage: What is the final answer?\n<CONCLUSION> {letter} </CONCLUSION>"
    )


def test_cot_movie_dubbing_test_list_and_export(tmp_path, clips):
    root = tmp_path / "CoTMovieDubbing"
    lines = []
    for number, (video, (text, letter, _)) in enumerate(COT_CLIPS.items()):
        stem = root / os.path.splitext(video)[0]
        place(clips["mp4"], stem.with_suffix(".mp4"))
        to_mp3(speak(tmp_path / "wav" / f"{number}.wav", text), stem.with_suffix(".mp3"))
        stem.with_suffix(".txt").write_text(text + "\n\n")
        conversations = [{"from": "human", "value": QUESTION}, {"from": "gpt", "value": cot_answer(letter)}]
        lines.append(json.dumps({"id": 1 + 10 * number, "video": video, "conversations": conversations}))
    (root / "filelist").mkdir()
    (root / "filelist" / "mmlm_test.jsonl").write_text("\n".join(lines) + "\n")

    builder, dataset = build(CoTMovieDubbing, root, tmp_path / "cache")
    assert list(dataset) == ["test"] and len(dataset["test"]) == 3  # no train list is released
    for row in dataset["test"]:
        text, letter, scene_type = COT_CLIPS[row["clip_id"] + ".mp4"]
        assert row["transcript"] == text and row["scene_type"] == scene_type
        assert row["cot"] == cot_answer(letter) and row["source"] == "cot-movie-dubbing"
        assert row["speaker_id"] is None
        check_media(row)

    export_dir = tmp_path / "hub"
    export_hub_layout(dataset, str(export_dir), "cot", card_text(builder))
    check_export_roundtrip(dataset, export_dir, "cot", root, tmp_path / "cache")


def test_export_keeps_other_configs_and_replaces_stale_shards(tmp_path):
    wav = speak(tmp_path / "a.wav", "one two three")
    row = make_row(clip_id="x", source="grid", audio=str(wav), transcript="one two three", duration_s=1.0)
    small = datasets.DatasetDict({"test": datasets.Dataset.from_list([row], features=dubbing_features())})
    out = tmp_path / "hub"
    export_hub_layout(small, str(out), "first", "First corpus.")
    export_hub_layout(small, str(out), "second", "Second corpus.")
    stale = out / "data" / "first" / "test-00001-of-00002.parquet"
    stale.write_bytes(b"left by an earlier export")
    export_hub_layout(small, str(out), "first", "First corpus, again.")
    assert not stale.exists()
    readme = (out / "README.md").read_text()
    assert readme.count("config_name:") == 2 and "default: true" in readme
    assert "First corpus, again." in readme and "First corpus.\n" not in readme and "Second corpus." in readme
    for name in ("first", "second"):
        loaded = datasets.load_dataset(str(out), name, split="test", cache_dir=str(tmp_path / "cache"))
        assert loaded[0]["transcript"] == "one two three"
    assert datasets.load_dataset(str(out), split="test", cache_dir=str(tmp_path / "cache"))[0]["clip_id"] == "x"
    with pytest.raises(ValueError, match="config_name must be a plain folder name"):
        export_hub_layout(small, str(out), "../escape", "")

    three = datasets.Dataset.from_list([row | {"clip_id": f"x{i}"} for i in range(3)], features=dubbing_features())
    paths = export_hub_layout(datasets.DatasetDict({"test": three}), str(out), "sharded", "", max_shard_size=1)
    assert [Path(p).name for p in paths] == [f"test-0000{i}-of-00003.parquet" for i in range(3)]
    loaded = datasets.load_dataset(str(out), "sharded", split="test", cache_dir=str(tmp_path / "cache"))
    assert loaded["clip_id"] == ["x0", "x1", "x2"] and loaded[2]["audio"]["array"].size > 1000
