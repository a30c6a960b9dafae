"""Subjective listening tests: NMOS (naturalness) and SMOS (similarity to the reference voice) of dubbed speech.

Dubbing papers report both as a mean opinion score on the absolute category rating scale of ITU-T P.800
(1 Bad, 2 Poor, 3 Fair, 4 Good, 5 Excellent) with a 95 % confidence interval. This module covers the whole loop
without a server:

1. [`build_listening_test`] copies the samples under opaque names, shuffles them with a seed and writes one static
   `index.html` (inline CSS and JavaScript, opens from `file://`) that raters fill in and export as a CSV file;
2. the key that maps the opaque items back to (sample id, system) goes to `key.json` next to the page, which is
   **not** sent to the raters;
3. [`score_listening_test`] joins the exported CSV files with the key and returns the MOS of each system with its
   confidence interval; [`results_to_markdown`] lays them out as a table.

A test folder looks like this (the page reads only `media/`):

    output_dir/
        index.html          # send this and media/ to the raters
        media/3fa9c2e1-01.wav, media/3fa9c2e1-r01.wav, ...
        key.json            # keep private: item → (sample id, system)
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import logging
import math
import os
import random
import shutil
from collections.abc import Mapping

logger = logging.getLogger(__name__)

KINDS = ("nmos", "smos")
# ITU-T P.800 absolute category rating labels.
RATING_LABELS = {1: "Bad", 2: "Poor", 3: "Fair", 4: "Good", 5: "Excellent"}
# What browsers play in <audio> / <video> without plugins.
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".webm", ".ogv")
RATINGS_COLUMNS = ("rater", "item", "rating", "timestamp")
KEY_FORMAT = "deepdubber-listening-test/1"

_TITLES = {"nmos": "Naturalness listening test (NMOS)", "smos": "Voice similarity listening test (SMOS)"}
_QUESTIONS = {
    "nmos": "How natural does the speech sound?",
    "smos": "How similar is the voice of the sample to the voice of the reference?",
}
_INSTRUCTIONS = {
    "nmos": (
        "Please use headphones in a quiet room. Play each sample and rate how natural the speech sounds, as if it "
        "were spoken by a person: 1 (Bad) to 5 (Excellent). There are no right answers; rate every sample on its own."
    ),
    "smos": (
        "Please use headphones in a quiet room. Play the reference, then the sample, and rate how similar the voice "
        "of the sample is to the voice of the reference: 1 (Bad) to 5 (Excellent). Judge the voice only, not the "
        "words, the recording quality or the emotion."
    ),
}


# ----------------------------------------------------------------------------------------------------------------------
# Building the page
# ----------------------------------------------------------------------------------------------------------------------


def read_manifest(path: str) -> list:
    """The samples of a listening test, from a CSV file (one row per sample, with a header) or a JSON Lines file.

    Columns / keys: `id`, `system`, `audio` or `video`, and optionally `reference` and `text` (see
    [`build_listening_test`]). Relative media paths are taken relative to the manifest's folder; empty CSV cells count
    as absent.

    Args:
        path (`str`):
            a `.csv` or `.jsonl` file.

    Returns:
        `list` of `dict`: the samples, in file order, for [`build_listening_test`].

    Example:

    ```py
    >>> import os, tempfile
    >>> from deepdubber_hf.evaluation.subjective import read_manifest
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "manifest.csv"), "w") as f:
    ...     _ = f.write("id,system,audio,text\\nutt1,ours,ours/utt1.wav,Where is the map?\\n")
    >>> sample = read_manifest(os.path.join(folder, "manifest.csv"))[0]
    >>> sample["audio"] == os.path.join(folder, "ours", "utt1.wav"), sample["text"]
    (True, 'Where is the map?')
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"manifest {path!r} not found; pass a .csv or .jsonl file listing the samples.")
    extension = os.path.splitext(path)[1].lower()
    rows = []
    if extension == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle):
                rows.append({k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()})
    elif extension == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path}, line {number}: not valid JSON ({error}); write one object per line."
                    ) from error
                if not isinstance(row, dict):  # a bad line of a file, not a bad argument
                    raise ValueError(  # noqa: TRY004
                        f"{path}, line {number}: expected a JSON object with id, system, audio/video."
                    )
                rows.append({k: v for k, v in row.items() if v is not None and v != ""})
    else:
        raise ValueError(f"manifest {path!r} is neither .csv nor .jsonl; write the samples in one of those formats.")
    if not rows:
        raise ValueError(f"manifest {path!r} lists no samples; add one row per sample (id, system, audio or video).")
    folder = os.path.dirname(os.path.abspath(path))
    for row in rows:
        for field in ("audio", "video", "reference"):
            if isinstance(row.get(field), str) and not os.path.isabs(os.path.expanduser(row[field])):
                row[field] = os.path.join(folder, row[field])
    return rows


def _media_extension(path: str, field: str, where: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    allowed = {"audio": AUDIO_EXTENSIONS, "video": VIDEO_EXTENSIONS}.get(field, AUDIO_EXTENSIONS + VIDEO_EXTENSIONS)
    if extension not in allowed:
        raise ValueError(
            f"{where}: {field} {path!r} is not a format browsers play ({', '.join(allowed)}); convert it, e.g. "
            f"`ffmpeg -i {os.path.basename(path)} out{allowed[0]}`."
        )
    return extension


def _check_samples(samples, kind: str) -> list:
    """Validated copies of the samples: `id`, `system`, `field` (audio/video), `media`, `reference`, `text`."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is unknown; choose 'nmos' (naturalness) or 'smos' (similarity).")
    if isinstance(samples, (str, bytes, os.PathLike, Mapping)):
        raise TypeError("samples must be a list of dicts (one per sample); read a manifest file with read_manifest.")
    checked, seen = [], {}
    for index, sample in enumerate(samples):
        where = f"samples[{index}]"
        if not isinstance(sample, Mapping):
            raise TypeError(f"{where} is a {type(sample).__name__}; give a dict with id, system and audio or video.")
        for field in ("id", "system"):
            value = sample.get(field)
            if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
                raise ValueError(f"{where} has no {field!r}; give every sample an id (the utterance) and a system.")
        sample_id, system = str(sample["id"]).strip(), str(sample["system"]).strip()
        where = f"{where} (id {sample_id!r}, system {system!r})"
        if (sample_id, system) in seen:
            raise ValueError(
                f"{where} repeats samples[{seen[sample_id, system]}]: each (id, system) pair must appear once; "
                "give the utterances distinct ids."
            )
        seen[sample_id, system] = index
        fields = [field for field in ("audio", "video") if sample.get(field)]
        if len(fields) != 1:
            raise ValueError(f"{where} needs exactly one of 'audio' (wav, mp3, ...) or 'video' (mp4, ...).")
        field = fields[0]
        for name in (field, "reference"):
            if sample.get(name) and not isinstance(sample[name], (str, os.PathLike)):
                raise ValueError(f"{where}: {name} is a {type(sample[name]).__name__}; give the path of the file.")
        media = os.path.expanduser(os.fspath(sample[field]))
        _media_extension(media, field, where)
        if not os.path.isfile(media):
            raise FileNotFoundError(f"{where}: {field} file {media!r} not found; fix the path in the manifest.")
        reference = sample.get("reference") or None
        if kind == "smos":
            if reference is None:
                raise ValueError(
                    f"{where} has no 'reference': an SMOS test compares each sample with a recording of the target "
                    "voice; add a 'reference' path, or build an NMOS test (kind='nmos')."
                )
            reference = os.path.expanduser(os.fspath(reference))
            _media_extension(reference, "reference", where)
            if not os.path.isfile(reference):
                raise FileNotFoundError(
                    f"{where}: reference file {reference!r} not found; fix the path in the manifest."
                )
        else:
            reference = None  # naturalness is judged on the sample alone
        text = sample.get("text")
        checked.append({
            "id": sample_id, "system": system, "field": field, "media": media, "reference": reference,
            "text": str(text).strip() if text not in (None, "") else None,
        })  # fmt: skip
    if not checked:
        raise ValueError("samples is empty; give at least one sample to rate.")
    return checked


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _player(src: str, role: str) -> str:
    tag = "video" if os.path.splitext(src)[1].lower() in VIDEO_EXTENSIONS else "audio"
    return (
        f'<div class="player"><span class="role">{role}</span>'
        f'<{tag} controls preload="metadata" src="{html.escape(src)}"></{tag}></div>'
    )


def _item_block(item: str, number: int, total: int, entry: dict, kind: str) -> str:
    lines = [f'<section class="item" id="item-{item}" data-item="{item}">', f"<h2>Item {number} of {total}</h2>"]
    if entry["reference"] is not None:
        lines.append(_player(entry["reference"], "Reference voice"))
    lines.append(_player(entry["media"], "Sample"))
    if entry["text"]:
        lines.append(f'<p class="text">Text: “{html.escape(entry["text"])}”</p>')
    lines.append(f'<fieldset class="rating"><legend>{_QUESTIONS[kind]}</legend>')
    for value, label in RATING_LABELS.items():
        lines.append(f'<label><input type="radio" name="{item}" value="{value}"> {value} · {label}</label>')
    lines += ["</fieldset>", "</section>"]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 0 auto; padding: 1rem; line-height: 1.45;
       color: #1b1b1b; background: #fafafa; }
header, .item, footer { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; margin: 1rem 0; }
h1 { font-size: 1.4rem; margin-top: 0; }
h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
.player { display: flex; align-items: center; gap: .75rem; margin: .4rem 0; }
.player .role { width: 8.5rem; font-weight: 600; }
.player audio { flex: 1; }
.player video { flex: 1; max-width: 100%; max-height: 18rem; background: #000; }
.text { font-style: italic; color: #444; }
fieldset.rating { border: none; padding: 0; margin: .5rem 0 0; display: flex; flex-wrap: wrap; gap: .4rem 1rem; }
fieldset.rating legend { font-weight: 600; margin-bottom: .3rem; }
fieldset.rating label { cursor: pointer; padding: .2rem .5rem; border: 1px solid #ccc; border-radius: 4px; }
fieldset.rating label:has(input:checked) { background: #dbeafe; border-color: #3b82f6; }
.item.rated h2::after { content: " ✓"; color: #15803d; }
footer { position: sticky; bottom: 0; display: flex; align-items: center; gap: 1rem; }
#rater { font-size: 1rem; padding: .25rem .4rem; }
button { font-size: 1rem; padding: .4rem .9rem; cursor: pointer; }
"""

# Pure helpers first (the tests run them under node), then the DOM wiring, which only runs in a browser.
_JS = """
function csvField(value) {
  return '"' + String(value).replace(/"/g, '""') + '"';
}
function ratingsToCsv(rater, ratings, items) {
  var lines = [["rater", "item", "rating", "timestamp"].join(",")];
  items.forEach(function (item) {
    var entry = ratings[item];
    if (entry) { lines.push([rater, item, entry.rating, entry.time].map(csvField).join(",")); }
  });
  return lines.join("\\r\\n") + "\\r\\n";
}
function setUpListeningTest() {
  var storeKey = "deepdubber-listening-test-" + TEST_ID;
  var items = Array.prototype.map.call(document.querySelectorAll(".item"), function (el) { return el.dataset.item; });
  var raterInput = document.getElementById("rater");
  var progress = document.getElementById("progress");
  var state = { rater: "", ratings: {} };
  // Ratings survive a reload in localStorage; some browsers forbid it from file://, then they live in the page only.
  try { state = JSON.parse(window.localStorage.getItem(storeKey)) || state; } catch (error) { /* no storage */ }
  function save() {
    try { window.localStorage.setItem(storeKey, JSON.stringify(state)); } catch (error) { /* no storage */ }
  }
  function refresh() {
    var done = items.filter(function (item) { return state.ratings[item]; }).length;
    progress.textContent = done + " of " + items.length + " items rated";
    items.forEach(function (item) {
      document.getElementById("item-" + item).classList.toggle("rated", Boolean(state.ratings[item]));
    });
  }
  raterInput.value = state.rater || "";
  items.forEach(function (item) {
    var entry = state.ratings[item];
    if (entry) {
      var radio = document.querySelector('input[name="' + item + '"][value="' + entry.rating + '"]');
      if (radio) { radio.checked = true; }
    }
  });
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target === raterInput) { state.rater = raterInput.value.trim(); save(); return; }
    if (target.type === "radio" && items.indexOf(target.name) >= 0) {
      state.ratings[target.name] = { rating: Number(target.value), time: new Date().toISOString() };
      save();
      refresh();
    }
  });
  // One player at a time, so that a rater never hears two samples over each other.
  document.addEventListener("play", function (event) {
    document.querySelectorAll("audio, video").forEach(function (player) {
      if (player !== event.target) { player.pause(); }
    });
  }, true);
  document.getElementById("export").addEventListener("click", function () {
    var rater = raterInput.value.trim();
    if (!rater) { window.alert("Please enter your name first."); raterInput.focus(); return; }
    state.rater = rater;
    save();
    var done = items.filter(function (item) { return state.ratings[item]; }).length;
    if (done === 0) { window.alert("No item is rated yet."); return; }
    var left = items.length - done;
    var question = left + (left === 1 ? " item is" : " items are") + " not rated yet. Export anyway?";
    if (left > 0 && !window.confirm(question)) { return; }
    var blob = new Blob([ratingsToCsv(rater, state.ratings, items)], { type: "text/csv;charset=utf-8" });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "ratings-" + TEST_ID + "-" + rater.replace(/[^A-Za-z0-9_-]+/g, "_") + ".csv";
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  });
  refresh();
}
if (typeof document !== "undefined") { document.addEventListener("DOMContentLoaded", setUpListeningTest); }
"""


def _render_page(title: str, kind: str, test_id: str, blocks: list) -> str:
    header = [
        "<header>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="instructions">{_INSTRUCTIONS[kind]}</p>',
        '<p class="scale">' + ", ".join(f"{v} = {label}" for v, label in RATING_LABELS.items()) + "</p>",
        '<label>Your name: <input id="rater" type="text" autocomplete="name"></label>',
        "</header>",
    ]
    footer = [
        "<footer>",
        '<span id="progress"></span>',
        '<button id="export" type="button">Export ratings (CSV)</button>',
        "</footer>",
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        *header,
        "<main>",
        *blocks,
        "</main>",
        *footer,
        f'<script>\n"use strict";\nvar TEST_ID = "{test_id}";{_JS}</script>',
        "</body>",
        "</html>",
        "",
    ])  # fmt: skip


def build_listening_test(samples, output_dir: str, kind: str = "nmos", seed: int = 0, title: str | None = None) -> dict:
    """Write a self-contained NMOS or SMOS listening test: a static page, the media under opaque names, and the key.

    The page (`output_dir/index.html`, inline CSS and JavaScript, no external assets, works from `file://`) shows the
    samples in an order shuffled with `seed`, each with its player(s), the five rating buttons labelled 1 Bad … 5
    Excellent, and keeps a rater-name field and an export button that downloads the ratings as a CSV file with the
    columns `rater, item, rating, timestamp`. Neither the page nor the media file names say which system made a
    sample: the media are copied to `output_dir/media/` as `<test id>-<position>.<ext>` and the mapping from item to
    (sample id, system) is written to `output_dir/key.json` only. Send raters `index.html` and `media/`, never
    `key.json`; score their CSV files with [`score_listening_test`].

    The files are copied byte for byte: metadata inside them (an ID3 title, an mp4 `encoder` tag) is not removed.

    Args:
        samples (`list` of `dict`):
            one entry per sample to rate, with the keys
            - `id` (`str`): the utterance; the same id across systems for the same line,
            - `system` (`str`): the system that made the sample (a model name, `"ground truth"`, ...),
            - `audio` (`str`): the path of a `.wav`, `.mp3`, `.flac`, `.ogg`, `.opus` or `.m4a` file, **or**
              `video` (`str`): the path of an `.mp4`, `.m4v`, `.webm` or `.ogv` file (a dubbed clip),
            - `reference` (`str`, *optional*): a recording of the target voice, played next to the sample; required
              for SMOS, ignored for NMOS (naturalness is rated on the sample alone),
            - `text` (`str`, *optional*): the transcript, shown under the players.
            Each (id, system) pair appears once. [`read_manifest`] reads such a list from a CSV or JSON Lines file.
        output_dir (`str`):
            the folder of the test; created, and must be empty or absent so that an existing key is never replaced.
        kind (`str`, *optional*, defaults to `"nmos"`):
            `"nmos"` (how natural is the speech) or `"smos"` (how similar is the voice to the reference).
        seed (`int`, *optional*, defaults to 0):
            the seed of the presentation order; the same samples and seed give the same page, byte for byte.
        title (`str`, *optional*):
            the page heading; defaults to "Naturalness listening test (NMOS)" or "Voice similarity listening test
            (SMOS)". Keep system names out of it.

    Returns:
        `dict`: the key, as written to `key.json`: `test_id`, `kind`, `seed`, `title`, `systems` (in the order of
        `samples`) and `items`, item id → `{"id", "system", "media", "source", "reference", "reference_source"}`, in
        the order of the page.

    Example:

    ```py
    >>> import os, subprocess, tempfile
    >>> from deepdubber_hf.evaluation.subjective import build_listening_test
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("ours", "baseline"):
    ...     _ = subprocess.run(["sox", "-n", "-r", "24000", os.path.join(folder, f"{name}.wav"), "synth", "0.5",
    ...                         "sine", "440"], check=True)
    >>> samples = [{"id": "utt1", "system": name, "audio": os.path.join(folder, f"{name}.wav")}
    ...            for name in ("ours", "baseline")]
    >>> key = build_listening_test(samples, os.path.join(folder, "test"), kind="nmos", seed=0)
    >>> sorted(os.listdir(os.path.join(folder, "test"))), len(key["items"])
    (['index.html', 'key.json', 'media'], 2)
    ```
    """
    # 1. Check inputs
    entries = _check_samples(samples, kind)
    output_dir = os.fspath(output_dir)
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise ValueError(
            f"output_dir {output_dir!r} exists and is not an empty folder; pass a new folder (a test's key must "
            "never be overwritten while its ratings are being collected) or delete it first."
        )
    title = _TITLES[kind] if title is None else str(title)

    # 2. The test id: a digest of everything that defines the test, so that ratings of another test never score
    # against this key (its items are `<test id>-<position>`).
    digests = {path: _file_digest(path) for e in entries for path in (e["media"], e["reference"]) if path is not None}
    fingerprint = json.dumps([
        kind, seed, title,
        [[e["id"], e["system"], digests[e["media"]], e["reference"] and digests[e["reference"]], e["text"]]
         for e in entries],
    ])  # fmt: skip
    test_id = hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:8]

    # 3. Shuffle and name the items
    order = list(range(len(entries)))
    random.Random(seed).shuffle(order)
    width = max(2, len(str(len(entries))))
    os.makedirs(os.path.join(output_dir, "media"), exist_ok=True)
    items, references, blocks = {}, {}, []
    for position, index in enumerate(order, start=1):
        entry = entries[index]
        item = f"{test_id}-{position:0{width}d}"
        media = f"media/{item}{os.path.splitext(entry['media'])[1].lower()}"
        shutil.copyfile(entry["media"], os.path.join(output_dir, media))
        reference = None
        if entry["reference"] is not None:
            source = os.path.realpath(entry["reference"])
            if source not in references:  # one copy per reference recording, numbered in page order
                references[source] = f"media/{test_id}-r{len(references) + 1:0{width}d}"
                references[source] += os.path.splitext(source)[1].lower()
                shutil.copyfile(source, os.path.join(output_dir, references[source]))
            reference = references[source]
        items[item] = {
            "id": entry["id"], "system": entry["system"], "media": media, "source": os.path.abspath(entry["media"]),
            "reference": reference,
            "reference_source": None if entry["reference"] is None else os.path.abspath(entry["reference"]),
        }  # fmt: skip
        blocks.append(
            _item_block(item, position, len(entries), {**entry, "media": media, "reference": reference}, kind)
        )

    # 4. Write the page and the key
    page = _render_page(title, kind, test_id, blocks)
    lowered = page.lower()
    for system in dict.fromkeys(e["system"] for e in entries):
        if len(system) >= 3 and system.lower() in lowered:
            logger.warning(
                "the system name %r appears in the page (in the title or a transcript?): raters may see which "
                "system made a sample; reword it.", system,
            )  # fmt: skip
    with open(os.path.join(output_dir, "index.html"), "w", encoding="utf-8") as handle:
        handle.write(page)
    key = {
        "format": KEY_FORMAT, "test_id": test_id, "kind": kind, "seed": seed, "title": title,
        "systems": list(dict.fromkeys(e["system"] for e in entries)), "items": items,
    }  # fmt: skip
    with open(os.path.join(output_dir, "key.json"), "w", encoding="utf-8") as handle:
        json.dump(key, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    logger.info("wrote a %s test of %d items to %s", kind.upper(), len(items), output_dir)
    return key


# ----------------------------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------------------------


def _load_key(key_path: str) -> dict:
    key_path = os.fspath(key_path)
    if not os.path.isfile(key_path):
        raise FileNotFoundError(f"key {key_path!r} not found; pass the key.json that build_listening_test wrote.")
    with open(key_path, encoding="utf-8") as handle:
        try:
            key = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"key {key_path!r} is not valid JSON ({error}); pass the key.json of the test.") from error
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT or not isinstance(key.get("items"), dict):
        raise ValueError(
            f"{key_path!r} is not a listening-test key; pass the key.json that build_listening_test wrote."
        )
    return key


def _summary(scores: list) -> dict:
    """Count, mean, sample standard deviation and the Student-t 95 % half-width of a list of ratings."""
    from scipy.stats import t

    n = len(scores)
    if n == 0:
        return {"num_ratings": 0, "mean": None, "std": None, "ci95": None}
    mean = sum(scores) / n
    if n == 1:  # no spread to estimate: the interval is undefined
        return {"num_ratings": 1, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    return {"num_ratings": n, "mean": mean, "std": std, "ci95": float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)}


def score_listening_test(ratings_csvs, key_path: str) -> dict:
    """The MOS of each system of a listening test, with its 95 % confidence interval, from the raters' CSV files.

    The interval is Student's t on the individual ratings, `t(0.975, n − 1) · s / √n` with `s` the sample standard
    deviation (ddof 1) of the `n` ratings of a system: what TTS and dubbing papers usually report. It treats every
    rating as independent, so it ignores that ratings by the same rater, or of the same utterance, are correlated; with
    few raters or items the true uncertainty is larger (Rosenberg & Ramabhadran, "Bias and statistical significance in
    evaluating speech synthesis with mean opinion scores", Interspeech 2017). Compare systems with a paired test on the
    same raters and items rather than by overlapping intervals.

    Args:
        ratings_csvs (`str` or `list` of `str`):
            the CSV file(s) exported from the page: columns `rater`, `item`, `rating` (and `timestamp`, not used),
            one row per rated item. Items a rater left unrated are simply absent.
        key_path (`str`):
            the `key.json` written by [`build_listening_test`] for the same test.

    Returns:
        `dict` (JSON-serialisable) with `kind`, `test_id`, `num_raters`, `ci` (how the interval is computed),
        `systems`, system name → `{"num_ratings", "num_raters", "num_items", "mean", "std", "ci95"}` in the order of
        the key (a system nobody rated has `num_ratings` 0 and `None` statistics; `ci95`, the half-width, is `None`
        with a single rating), and `overall`, the same over all ratings.

    Example:

    ```py
    >>> import os, subprocess, tempfile
    >>> from deepdubber_hf.evaluation.subjective import build_listening_test, score_listening_test
    >>> folder = tempfile.mkdtemp()
    >>> _ = subprocess.run(["sox", "-n", "-r", "24000", os.path.join(folder, "a.wav"), "synth", "0.5", "sine", "440"],
    ...                    check=True)
    >>> samples = [{"id": "utt1", "system": "ours", "audio": os.path.join(folder, "a.wav")}]
    >>> key = build_listening_test(samples, os.path.join(folder, "test"))
    >>> (item,) = key["items"]
    >>> with open(os.path.join(folder, "ratings.csv"), "w") as f:
    ...     _ = f.write(f"rater,item,rating,timestamp\\nann,{item},4,\\nbob,{item},5,\\n")
    >>> results = score_listening_test(os.path.join(folder, "ratings.csv"), os.path.join(folder, "test", "key.json"))
    >>> ours = results["systems"]["ours"]
    >>> ours["num_ratings"], ours["mean"], round(ours["ci95"], 3)
    (2, 4.5, 6.353)
    ```
    """
    key = _load_key(key_path)
    if isinstance(ratings_csvs, (str, os.PathLike)):
        ratings_csvs = [ratings_csvs]
    ratings_csvs = [os.fspath(path) for path in ratings_csvs]
    if not ratings_csvs:
        raise ValueError("no ratings files given; pass the CSV files the raters exported from the page.")
    items = key["items"]
    ratings, seen = [], {}  # (rater, item, rating); (rater, item) → where it was first read
    for path in ratings_csvs:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ratings file {path!r} not found; pass the CSV files the raters exported.")
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in ("rater", "item", "rating") if name not in columns]
            if missing:
                raise ValueError(
                    f"{path}: no column {', '.join(missing)} (found {columns}); pass the CSV exported from the test "
                    "page, with a header row rater,item,rating,timestamp."
                )
            for row in reader:
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                where = f"{path}, line {reader.line_num}"
                rater, item, rating = row["rater"], row["item"], row["rating"]
                if not rater:
                    raise ValueError(f"{where}: empty rater; every row needs the name of the person who rated it.")
                if item not in items:
                    raise ValueError(
                        f"{where}: item {item!r} is not in the key {key_path!r} (test {key['test_id']}); these "
                        "ratings come from another test or were edited; pass the key.json of the test they rated."
                    )
                if rating not in ("1", "2", "3", "4", "5"):
                    raise ValueError(
                        f"{where}: rating {rating!r} of item {item!r} is not an integer from 1 to 5; fix or remove "
                        "the row."
                    )
                if (rater, item) in seen:
                    raise ValueError(
                        f"{where}: rater {rater!r} already rated item {item!r} ({seen[rater, item]}); was a file "
                        "passed twice? Keep one export per rater."
                    )
                seen[rater, item] = where
                ratings.append((rater, item, int(rating)))
    if not ratings:
        raise ValueError(f"{', '.join(ratings_csvs)} hold no ratings; pass files exported after rating some items.")

    systems = {}
    for system in key.get("systems") or dict.fromkeys(entry["system"] for entry in items.values()):
        chosen = [(rater, item, score) for rater, item, score in ratings if items[item]["system"] == system]
        systems[system] = {
            **_summary([score for _, _, score in chosen]),
            "num_raters": len({rater for rater, _, _ in chosen}),
            "num_items": len({item for _, item, _ in chosen}),
        }
    overall = {
        **_summary([score for _, _, score in ratings]),
        "num_raters": len({rater for rater, _, _ in ratings}),
        "num_items": len({item for _, item, _ in ratings}),
    }
    unrated = len(items) - overall["num_items"]
    if unrated:
        logger.warning("%d of the %d items of test %s have no rating.", unrated, len(items), key["test_id"])
    return {
        "kind": key["kind"],
        "test_id": key["test_id"],
        "num_raters": overall["num_raters"],
        "ci": "Student t on the individual ratings: t(0.975, n-1) * s / sqrt(n), s with ddof 1",
        "systems": systems,
        "overall": overall,
    }


def results_to_markdown(results: dict, title: str | None = None) -> str:
    """A Markdown table of [`score_listening_test`] results: one row per system, then all systems together.

    Args:
        results (`dict`):
            what [`score_listening_test`] returned.
        title (`str`, *optional*):
            a `###` heading above the table; none by default.

    Returns:
        `str`: the table "System | N | NMOS ± 95 % CI" (or SMOS), scores with two decimals, `–` where undefined.

    Example:

    ```py
    >>> from deepdubber_hf.evaluation.subjective import results_to_markdown
    >>> stats = {"num_ratings": 4, "mean": 3.75, "ci95": 0.7614, "num_raters": 2, "num_items": 2}
    >>> print(results_to_markdown({"kind": "nmos", "systems": {"ours": stats}, "overall": stats}))
    | System | N | NMOS ± 95 % CI |
    | --- | ---: | ---: |
    | ours | 4 | 3.75 ± 0.76 |
    | All systems | 4 | 3.75 ± 0.76 |
    ```
    """
    if not isinstance(results, Mapping) or not {"kind", "systems", "overall"} <= set(results):
        raise ValueError("results lacks kind, systems or overall: pass the dict returned by score_listening_test.")

    def cell(stats):
        if not stats["num_ratings"]:
            return "–"
        return f"{stats['mean']:.2f} ± " + ("–" if stats["ci95"] is None else f"{stats['ci95']:.2f}")

    lines = [] if title is None else [f"### {title}", ""]
    lines += [f"| System | N | {results['kind'].upper()} ± 95 % CI |", "| --- | ---: | ---: |"]
    for name, stats in [*results["systems"].items(), ("All systems", results["overall"])]:
        name = str(name).replace("|", "\\|")  # a `|` in a system name would end the cell
        lines.append(f"| {name} | {stats['num_ratings']} | {cell(stats)} |")
    return "\n".join(lines)


__all__ = [
    "AUDIO_EXTENSIONS",
    "KINDS",
    "RATING_LABELS",
    "VIDEO_EXTENSIONS",
    "build_listening_test",
    "read_manifest",
    "results_to_markdown",
    "score_listening_test",
]
