"""`deepdubber demo`, driven as a person would: the real command serves the page on a loopback port, and headless
Chromium (Debian's, through Playwright's Python client) uploads a generated clip, types a line, presses Dub and
plays the result; then it submits an empty line and reads the error. A screenshot of the page is kept in
test-artifacts/ (or $DEEPDUBBER_TEST_ARTIFACTS)."""

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from deepdubber_hf.demo import DemoDubber, mel_image, reasoning_markdown, timing_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
# Chromium as root on a machine with no network beyond loopback: no sandbox, no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
ARTIFACTS = os.environ.get("DEEPDUBBER_TEST_ARTIFACTS", os.path.join(ROOT, "test-artifacts"))
LINE = "Where did you put the map?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url():
    """`deepdubber demo` on a free loopback port, with the embedded default; stopped after the module."""
    port = free_port()
    command = [os.path.join(os.path.dirname(sys.executable), "deepdubber"), "demo", "--port", str(port)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed, ready = [], threading.Event()

    def read():
        for text in server.stdout:
            printed.append(text)
            if "DeepDubber demo on http://" in text:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 240
    while not ready.is_set() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if not ready.is_set():
        server.kill()
        pytest.fail("the demo did not start:\n" + "".join(printed)[-3000:])
    yield f"http://127.0.0.1:{port}/"
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="module")
def speaker_clip(tmp_path_factory):
    """A generated level-1 clip with one character on screen talking (a monologue): (path, its line)."""
    from deepdubber_hf.data.corpus import generate_clip

    row = generate_clip("demo", level=1, seed=1)
    assert row["scene_type"] == "monologue" and row["num_characters"] == 1
    path = tmp_path_factory.mktemp("demo_clip") / "monologue.mp4"
    path.write_bytes(row["video"]["bytes"])
    return str(path), row["transcript"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"the browser test needs Debian's chromium at {CHROMIUM}: apt-get install chromium "
                    "(make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def wait_for_playable_video(page, selector: str, previous_src: str = "") -> dict:
    """Wait until the <video> under `selector` has a new source whose metadata loaded; its src and duration."""
    page.wait_for_function(
        """([selector, previous]) => {
            const video = document.querySelector(selector + ' video');
            return video && video.currentSrc && video.currentSrc !== previous && video.readyState >= 1
                && video.duration > 0;
        }""",
        arg=[selector, previous_src],
        timeout=240_000,
    )
    return page.evaluate(
        "(selector) => { const v = document.querySelector(selector + ' video'); "
        "return {src: v.currentSrc, duration: v.duration}; }",
        selector,
    )


def test_dubbing_in_the_browser(demo_url, browser, speaker_clip):
    clip_path, line = speaker_clip
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(demo_url, wait_until="networkidle")

    # The sample clip is one click away: it fills the clip and its line.
    sample_line = open(os.path.join(ROOT, "checkpoints", "deepdubber-tiny", "sample", "line.txt")).read().strip()
    page.get_by_text(sample_line).first.click()
    page.wait_for_function("(line) => document.querySelector('#line textarea').value === line", arg=sample_line)
    page.locator("#clip video").wait_for(timeout=60_000)
    page.locator("#clip button[aria-label='Clear']").first.click()

    # Upload the generated clip, type the line, fewer steps to keep the test short, press Dub.
    page.locator("#clip input[type=file]").set_input_files(clip_path)
    page.locator("#clip video").wait_for(timeout=60_000)
    page.locator("#line textarea").fill(line)
    page.get_by_text("Settings").click()
    steps = page.locator("#steps input[type=number]")
    steps.fill("8")
    steps.press("Enter")
    page.locator("#dub").click()

    first = wait_for_playable_video(page, "#dubbed")
    assert first["duration"] > 0
    # It plays: the current time moves.
    page.evaluate("() => { const v = document.querySelector('#dubbed video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('#dubbed video').currentTime > 0", timeout=30_000)
    conclusion = page.locator("#conclusion textarea").input_value()
    assert conclusion.startswith("scene type: ") and "emotion: " in conclusion
    reasoning = page.locator("#reasoning").inner_text()
    for title in ("Summary.", "Caption.", "Reasoning.", "Conclusion."):
        assert title in reasoning
    assert "s of speech at" in page.locator("#timing textarea").input_value()
    assert page.locator("#mel img").count() == 1
    assert page.locator("#download").is_visible()
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "demo.png"), full_page=True)

    # An empty line: the refusal is shown in the page, and the app keeps serving.
    page.locator("#line textarea").fill("   ")
    page.locator("#dub").click()
    page.get_by_text("The line is empty").first.wait_for(timeout=60_000)
    page.screenshot(path=os.path.join(ARTIFACTS, "demo-error.png"), full_page=True)
    page.locator("#line textarea").fill("Run!")
    steps.fill("4")
    steps.press("Enter")
    page.locator("#dub").click()
    second = wait_for_playable_video(page, "#dubbed", previous_src=first["src"])
    assert second["duration"] > 0
    assert not errors, errors
    page.close()


@pytest.fixture(scope="module")
def dubber(tmp_path_factory):
    return DemoDubber(output_root=str(tmp_path_factory.mktemp("demo")))


def test_dubber_result_and_refusals(dubber, clip, tmp_path):
    clip_path, _ = clip
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    result = dubber.dub(clip_path, LINE, num_inference_steps=4)
    assert os.path.isfile(result.video_path) and result.video_path.startswith(dubber.output_root)
    assert result.conclusion.startswith("scene type: ")
    assert result.mel_image.ndim == 3 and result.mel_image.shape[2] == 3 and result.mel_image.dtype == np.uint8
    assert dubber.sample is not None and os.path.isfile(dubber.sample[0]) and dubber.sample[1]
    cases = [
        (dict(video=None, line=LINE), "No clip"),
        (dict(video=clip_path, line=""), "The line is empty"),
        (dict(video=clip_path, line=LINE, subtitles="lines.srt"), "not both"),
        (dict(video=clip_path, line=None, subtitles="lines.txt"), "not an .srt file"),
        (dict(video=clip_path, line=LINE, reference_audio=clip_path), "needs its transcript"),
        (dict(video=clip_path, line=LINE, reference_text="Hello."), "without a reference voice"),
        (dict(video=clip_path, line=LINE, num_inference_steps=0), "between 1 and 256"),
        # Ones the pipeline refuses: a file that is not a video, a line far too long for a 3-second clip.
        (dict(video=str(not_a_video), line=LINE), "Could not decode"),
        (dict(video=clip_path, line="word " * 200), "too long"),
    ]
    for kwargs, message in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            dubber.dub(**kwargs)


def test_dubber_with_subtitles_and_a_reference_voice(dubber, clip, tmp_path):
    clip_path, row = clip
    voice = tmp_path / "voice.wav"
    voice.write_bytes(row["audio"]["bytes"])  # the clip's own speech, as a voice to clone
    srt = tmp_path / "lines.srt"
    srt.write_text("1\n00:00:00,200 --> 00:00:01,400\nRun!\n\n2\n00:00:01,600 --> 00:00:03,000\nCome back.\n")
    result = dubber.dub(clip_path, None, subtitles=str(srt), reference_audio=str(voice),
                        reference_text=row["transcript"], num_inference_steps=4, seed=1)  # fmt: skip
    lines = result.timing.splitlines()
    assert len(lines) == 3 and lines[0].endswith(": Run!") and lines[1].endswith(": Come back.")
    onsets = [float(line.split(" at ")[1].split("-")[0]) for line in lines[:2]]
    assert 0.2 <= onsets[0] < 1.4 and 1.6 <= onsets[1] < 3.0  # each line inside its cue's window
    assert os.path.getsize(result.video_path) > 1000


def test_reasoning_markdown_and_timing():
    text = ("<SUMMARY>A room.</SUMMARY> <CAPTION>A man talks.</CAPTION> <REASONING>Step 1: lips move.</REASONING> "
            "<CONCLUSION>scene type: monologue; speakers: 1; gender: male; age: adult; emotion: sad</CONCLUSION>")
    markdown = reasoning_markdown(text)
    assert markdown.index("**Summary.** A room.") < markdown.index("**Conclusion.** scene type: monologue")
    assert "could not be read" in reasoning_markdown("scene type: monologue")
    assert "no reasoner" in reasoning_markdown(None)
    timing = timing_text([{"text": "Hi.", "speaker": "ANA", "onset_s": 0.5, "offset_s": 1.25}], [0.75], 3.0)
    assert timing.startswith("0.75 s of speech at 0.50-1.25 s: ANA: Hi.") and "3.00 s" in timing


def test_mel_image_shows_where_the_sound_is():
    rate = 24_000
    track = np.zeros(rate * 2, np.float32)
    track[rate // 2 : rate] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate // 2) / rate)
    image = mel_image(track, rate)
    brightness = image.astype(float).sum(axis=(0, 2))
    frames_per_second = image.shape[1] / 2
    loud = brightness[int(0.6 * frames_per_second) : int(0.9 * frames_per_second)].mean()
    quiet = brightness[int(1.2 * frames_per_second) :].mean()
    assert image.shape[0] == 200 and loud > 2 * quiet


def test_demo_command_rejects_a_bad_port():
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "deepdubber"), "demo", "--port", "70000"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "--port 70000 is not a TCP port" in result.stderr

