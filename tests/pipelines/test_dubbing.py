"""Dubbing a real generated clip with `DeepDubberPipeline(video=...)`: placement, guidance, the muxed video, the
subtitles with several voices, the reasoner, the round trip, and every bad input the issue names."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from deepdubber_hf import DeepDubberPipeline, DeepDubberTokenizer, DiTTransformerModel, FlowMatchSwayScheduler
from deepdubber_hf import VocosVocoder
from deepdubber_hf.audio import save_audio
from deepdubber_hf.pipelines.dubbing import Segment, assemble_track, assign_voices, dubbing_components, plan_segments
from deepdubber_hf.reasoner.cot import DubbingConclusion

CONCLUSION = DubbingConclusion("monologue", 1, "female", "young", "happy")
CHARACTERS = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'-:"


def tiny_dubbing_pipeline(tmp_path, seed=0, wake_controlnet=True):
    torch.manual_seed(seed)
    tokenizer = DeepDubberTokenizer.from_texts([CHARACTERS], tmp_path / f"vocab{seed}")
    transformer = DiTTransformerModel(num_layers=2, num_attention_heads=2, attention_head_dim=16,
                                      vocab_size=tokenizer.vocab_size, text_embed_dim=16, num_text_conv_layers=1)
    for module in (transformer.proj_out, transformer.norm_out.linear):  # leave AdaLN-zero: a model that speaks
        torch.nn.init.normal_(module.weight, std=0.05)
    vocoder = VocosVocoder(hidden_size=32, intermediate_size=64, num_layers=1)
    parts = dubbing_components(transformer, controlnet_layers=1, duration_predictor_layers=1)
    if wake_controlnet:  # zero-initialised projections: give them weights so the conditions reach the DiT
        controlnet = parts["controlnet"]
        for layer in (controlnet.control_embed, *controlnet.controlnet_blocks):
            torch.nn.init.normal_(layer.weight, std=0.2)
    pipe = DeepDubberPipeline(transformer.eval(), FlowMatchSwayScheduler(), vocoder.eval(), tokenizer, **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_dubbing_pipeline(tmp_path_factory.mktemp("pipe"))


def probe(path, stream, entry):
    result = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", f"stream={entry}",
                             "-of", "default=nw=1:nk=1", str(path)], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def video_stream_md5(path):
    result = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "md5",
                             "-"], capture_output=True, text=True, check=True)  # fmt: skip
    return result.stdout.strip()


def generator():
    return torch.Generator().manual_seed(0)


def test_a_clip_is_dubbed_into_a_track_as_long_as_the_video(pipe, clip, tmp_path):
    path, row = clip
    out = pipe(video=path, text=row["transcript"], conclusion=CONCLUSION, num_inference_steps=2, generator=generator())
    track = out.audios[0]
    assert track.ndim == 1 and abs(track.shape[0] / out.sampling_rate - row["duration_s"]) < 0.05
    (segment,) = out.segments
    assert 0 <= segment["onset_s"] < segment["offset_s"] <= row["duration_s"] + 1e-6
    assert segment["offset_s"] - segment["onset_s"] == pytest.approx(out.duration_in_s[0], abs=0.02)
    # Silence outside the planned speech, sound inside it.
    start, end = (int(segment[k] * out.sampling_rate) for k in ("onset_s", "offset_s"))
    assert np.abs(track[end + 10 :]).max(initial=0) == 0 and np.abs(track[:start]).max(initial=0) == 0
    assert np.abs(track[start:end]).max() > 0
    assert out.conclusion == CONCLUSION and out.reasoning is None

    out.save_video(tmp_path / "dubbed.mp4")
    assert video_stream_md5(tmp_path / "dubbed.mp4") == video_stream_md5(path)  # copied, not re-encoded
    assert float(probe(tmp_path / "dubbed.mp4", "a:0", "duration")) == pytest.approx(row["duration_s"], abs=0.05)
    assert probe(tmp_path / "dubbed.mp4", "a:0", "codec_name") == "aac"
    assert [f for f in os.listdir(tmp_path) if f.startswith(".partial")] == []


def test_each_condition_changes_the_speech_and_the_guidance_scales_weigh_them(pipe, clip):
    path, row = clip

    def mel(**kwargs):
        arguments = dict(video=path, text="Hello there.", conclusion=CONCLUSION, duration_in_s=1.0,
                         num_inference_steps=2, generator=generator(), output_type="mel")  # fmt: skip
        return pipe(**{**arguments, **kwargs}).audios[0]

    full = mel()
    assert not torch.allclose(full, mel(use_video=False))
    assert not torch.allclose(full, mel(use_conclusion=False))
    assert not torch.allclose(full, mel(conclusion=DubbingConclusion("dialogue", 2, "male", "elderly", "angry")))
    # With λ_V = 0 the video term vanishes: only the no-video branches remain, so the video no longer matters.
    assert torch.allclose(mel(video_guidance_scale=0.0), mel(video_guidance_scale=0.0, use_video=False), atol=1e-5)
    assert torch.allclose(mel(conclusion_guidance_scale=0.0, video_guidance_scale=0.0),
                          mel(conclusion_guidance_scale=0.0, video_guidance_scale=0.0, use_conclusion=False),
                          atol=1e-5)  # fmt: skip


def test_the_duration_predictor_places_the_speech_and_can_be_switched_off(pipe, clip):
    path, row = clip
    line = "Hello there."
    with torch.no_grad():
        predicted = pipe.plan_dub(path, line, conclusion=CONCLUSION)
        ruled = pipe.plan_dub(path, line, conclusion=CONCLUSION, use_duration_predictor=False)
        given = pipe.plan_dub(path, line, conclusion=CONCLUSION, duration_in_s=1.5)
        blind = pipe.plan_dub(path, line, conclusion=CONCLUSION, use_video=False)
    assert ruled.onsets_s == [0.0]  # the length rule starts with the window
    assert ruled.durations_s[0] == pytest.approx(len(line) / 14.0, rel=0.05)
    assert given.durations_s == [pytest.approx(1.5)]
    assert predicted.onsets_s != blind.onsets_s  # the predictor reads the video
    assert all(0 <= o and o + d <= row["duration_s"] + 1e-6 for p in (predicted, given, blind)
               for o, d in zip(p.onsets_s, p.durations_s))  # fmt: skip


def test_the_saved_pipeline_dubs_identically(pipe, clip, tmp_path):
    pipe.save_pretrained(tmp_path / "dubber")
    loaded = DeepDubberPipeline.from_pretrained(tmp_path / "dubber")
    for name in ("controlnet", "duration_predictor", "video_encoder", "image_processor", "condition_encoder",
                 "condition_tokenizer"):  # fmt: skip
        assert getattr(loaded, name) is not None, name
    path, row = clip
    kwargs = dict(video=path, text="Hello there.", conclusion=CONCLUSION, num_inference_steps=2)
    first, second = pipe(**kwargs, generator=generator()), loaded(**kwargs, generator=generator())
    assert first.segments == second.segments
    np.testing.assert_allclose(first.audios[0], second.audios[0], atol=1e-5)


def test_the_reasoner_concludes_when_no_conclusion_is_given(tiny_reasoner, clip, tmp_path):
    from deepdubber_hf.reasoner.generation import load_reasoner, parse_response, reason

    pipe = tiny_dubbing_pipeline(tmp_path)
    model, processor = load_reasoner(tiny_reasoner)
    pipe.register_modules(reasoner=model, reasoner_processor=processor)
    out = pipe(video=clip[0], text="Hello there.", num_inference_steps=1, generator=generator())
    expected = reason(model, processor, [clip[0]])[0][0]
    assert out.reasoning == expected
    # A one-step reasoner rarely writes a readable conclusion: then the speech goes without one.
    assert out.conclusion == (parse_response(expected) or None)
    pipe.save_pretrained(tmp_path / "with_reasoner")
    reloaded = DeepDubberPipeline.from_pretrained(tmp_path / "with_reasoner")
    assert type(reloaded.reasoner).__name__ == "DeepDubberReasonerForConditionalGeneration"
    assert reloaded(video=clip[0], text="Hello there.", num_inference_steps=1,
                    generator=generator()).reasoning == out.reasoning  # fmt: skip
    # A reasoner trained to answer directly (train_sft.py --mode qa) is asked the question instead.
    qa = DeepDubberPipeline(**{**reloaded.components, "reasoner_mode": "qa"})
    assert qa.plan_dub(clip[0], "Hello there.").reasoning == reason(model, processor, [clip[0]], mode="qa")[0][0]
    with pytest.raises(ValueError, match="reasoner_mode"):
        DeepDubberPipeline(**{**reloaded.components, "reasoner_mode": "chat"})


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """Two mono voices, a stereo one, a silent one and a too short one (wav files)."""
    folder = tmp_path_factory.mktemp("voices")
    rate = 24_000
    t = np.arange(int(1.5 * rate)) / rate
    files = {}
    for name, wave in (("alice", 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))),
                       ("bob", 0.3 * np.sign(np.sin(2 * np.pi * 110 * t))), ("silent", np.zeros_like(t)),
                       ("short", 0.3 * np.sin(2 * np.pi * 220 * t[: rate // 10]))):  # fmt: skip
        files[name] = folder / f"{name}.wav"
        save_audio(files[name], torch.tensor(wave, dtype=torch.float32), rate)
    files["stereo"] = folder / "stereo.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(files["alice"]), "-ac", "2", str(files["stereo"])], check=True)
    return files


SRT = """1
00:00:00,300 --> 00:00:01,900
ALICE: Where is the map?

2
00:00:02,000 --> 00:00:03,900
[Bob] On the table.
"""


def test_subtitles_dub_every_cue_in_its_window_with_its_speakers_voice(pipe, clip, voices, tmp_path, monkeypatch):
    path, row = clip
    srt = tmp_path / "lines.srt"
    srt.write_text(SRT)
    out = pipe(video=path, subtitles=str(srt), reference_audio=[str(voices["alice"]), str(voices["bob"])],
               reference_text=["A voice.", "Another voice."], conclusion=CONCLUSION, num_inference_steps=1,
               generator=generator())  # fmt: skip
    assert [s["speaker"] for s in out.segments] == ["ALICE", "Bob"]
    assert out.segments[0]["onset_s"] >= 0.3 - 1e-6 and out.segments[0]["offset_s"] <= 1.9 + 1e-6
    assert out.segments[1]["onset_s"] >= 2.0 - 1e-6 and out.segments[1]["offset_s"] <= 3.9 + 1e-6
    assert abs(out.audios[0].shape[0] / out.sampling_rate - row["duration_s"]) < 0.05
    # A film's many lines are sampled a batch at a time: the same plan, every line placed.
    from deepdubber_hf.pipelines import pipeline_deepdubber

    monkeypatch.setattr(pipeline_deepdubber, "LINES_PER_BATCH", 1)
    one_by_one = pipe(video=path, subtitles=str(srt), reference_audio=[str(voices["alice"]), str(voices["bob"])],
                      reference_text=["A voice.", "Another voice."], conclusion=CONCLUSION, num_inference_steps=1,
                      generator=[generator(), generator()])  # fmt: skip
    assert one_by_one.segments == out.segments and one_by_one.audios[0].shape == out.audios[0].shape
    # Voices by name, too; a missing voice is named.
    by_name = assign_voices(plan_segments(None, str(srt), 4.0), {"ALICE": "a.wav", "Bob": "b.wav"},
                            {"ALICE": "x", "Bob": "y"})  # fmt: skip
    assert by_name == [("a.wav", "x"), ("b.wav", "y")]
    with pytest.raises(ValueError, match="2 speaker"):
        assign_voices(plan_segments(None, str(srt), 4.0), ["a.wav", "b.wav", "c.wav"], ["x", "y", "z"])
    with pytest.raises(ValueError, match=r"no voice for speaker\(s\) \['Bob'\]"):
        assign_voices(plan_segments(None, str(srt), 4.0), {"ALICE": "a.wav"}, {"ALICE": "x"})


def test_pieces_are_laid_at_their_onsets_on_one_track():
    track = assemble_track([(0.5, np.ones(10)), (1.0, np.ones(100))], duration_s=1.001, sampling_rate=100)
    assert track.shape == (100,) and track[50:60].sum() == 10 and track[:50].sum() == 0 and track[60:].sum() == 0


def test_windows_and_lines_that_cannot_fit_are_named():
    with pytest.raises(ValueError, match="too long for the clip"):
        plan_segments("word " * 40, None, 3.0)
    with pytest.raises(ValueError, match="after the end of the video"):
        plan_segments(None, "1\n00:00:05,000 --> 00:00:06,000\nLate line.\n", 3.0)
    assert plan_segments(None, "1\n00:00:02,000 --> 00:00:06,000\nCut.\n", 3.0) == [Segment("Cut.", 2.0, 3.0)]


def ffmpeg_file(tmp_path, name, *args):
    path = tmp_path / name
    subprocess.run(["ffmpeg", "-v", "error", *args, str(path)], check=True)
    return str(path)


def test_bad_inputs_are_clear_errors(pipe, clip, voices, tmp_path):
    path, row = clip
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("these are notes, not a video")
    audio_only = ffmpeg_file(tmp_path, "audio_only.mp4", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac")
    cases = [
        (dict(video=str(not_a_video), text="Hi."), ValueError, "as a video"),
        (dict(video=audio_only, text="Hi."), ValueError, "video"),
        (dict(video=str(tmp_path / "missing.mp4"), text="Hi."), FileNotFoundError, "not found"),
        (dict(video=path, text="   "), ValueError, "empty or whitespace"),
        (dict(video=path, text="This line is far too long. " * 8), ValueError, "too long for the clip"),
        (dict(video=path, text="Hi.", reference_audio=str(voices["silent"]), reference_text="x"), ValueError, "silent"),
        (dict(video=path, text="Hi.", reference_audio=str(voices["short"]), reference_text="x"), ValueError, "shorter"),
        (dict(video=path, text="Hi.", reference_audio=str(voices["stereo"]), reference_text="x"), ValueError,
         "2 channels"),
        (dict(video=path, text="Hi.", reference_audio=str(voices["alice"])), ValueError, "reference_text"),
        (dict(video=path, text="Hi.", conclusion="scene type: opera"), ValueError, "cannot be read"),
        (dict(video=path, text="Hi.", duration_in_s=30.0), ValueError, "longer than the line's window"),
        (dict(text="Hi.", subtitles="lines.srt"), ValueError, "go with a `video`"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            pipe(**kwargs, num_inference_steps=1)
    out = pipe(video=path, text="Hi.", conclusion=CONCLUSION, num_inference_steps=1, output_type="mel")
    with pytest.raises(ValueError, match="waveform"):
        out.save_video(tmp_path / "x.mp4")
    speech = pipe("Hi.", num_inference_steps=1)
    with pytest.raises(ValueError, match="video="):
        speech.save_video(tmp_path / "x.mp4")
    good = pipe(video=path, text="Hi.", conclusion=CONCLUSION, num_inference_steps=1)
    with pytest.raises(ValueError, match="end it with one of"):
        good.save_video(tmp_path / "x.avi")
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.avi").exists()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_failed_mux_leaves_no_file(pipe, clip, tmp_path):
    out = pipe(video=clip[0], text="Hi.", conclusion=CONCLUSION, num_inference_steps=1)
    out.video = str(tmp_path / "gone.mp4")  # the source vanished between dubbing and saving
    with pytest.raises(RuntimeError, match="ffmpeg could not mux"):
        out.save_video(tmp_path / "dubbed.mp4")
    assert os.listdir(tmp_path) == []


def test_the_stream_hash_tells_a_reencoded_video(clip, tmp_path):
    # What makes the "copied, not re-encoded" check above mean something.
    reencoded = ffmpeg_file(tmp_path, "re.mp4", "-i", clip[0], "-c:v", "libx264", "-crf", "40")
    assert video_stream_md5(reencoded) != video_stream_md5(clip[0])
