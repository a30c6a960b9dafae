"""Tables and figures of a dubbing evaluation, laid out as the paper's (Tables 1, 4, 6 and 7; Figure 5).

Every table takes `results`: a name (a system, a model, an ablation) → its aggregated scores, the dict of
:func:`deepdubber_hf.evaluation.suite.aggregate_scores`, optionally merged with the reasoning metrics of
:func:`deepdubber_hf.evaluation.reasoning.reasoning_metrics`. A metric that could not be computed (no emotion
model, no SyncNet) is `None` and shows as "n/a": never a made-up number.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ..data.schema import SCENE_TYPES
from .reasoning import CLASS_LETTERS

# column key → (header, how to show it): "percent" multiplies a [0, 1] rate by 100, "number" prints it as it is.
COLUMNS = {
    "accuracy": ("Ave.Acc (%) ↑", "percent"),
    "average_recall": ("Ave.Recall (%) ↑", "percent"),
    **{f"recall_{c}": (f"{CLASS_LETTERS[c]}.Recall (%) ↑", "percent") for c in SCENE_TYPES},
    "spk_sim": ("SPK-SIM (%) ↑", "percent"),
    "wer": ("WER (%) ↓", "percent"),
    "emo_sim": ("EMO-SIM (%) ↑", "percent"),
    "mcd_dtw": ("MCD ↓", "number"),
    "mcd_dtw_sl": ("MCD-SL ↓", "number"),
    "lse_c": ("LSE-C ↑", "number"),
    "lse_d": ("LSE-D ↓", "number"),
}
# The columns of each table: Table 4 (Dub 1.0 / 2.0: V2C's columns with GRID's lip-sync ones), Table 6 (Dub 3.0,
# an unseen voice), Table 1 (the initial-reasoning setting: the reasoner's scores and the speech), Table 7 (the
# ablations, in the 2.0 setting).
TABLE_COLUMNS = {
    "1.0": ("spk_sim", "wer", "emo_sim", "mcd_dtw", "mcd_dtw_sl", "lse_c", "lse_d"),
    "2.0": ("spk_sim", "wer", "emo_sim", "mcd_dtw", "mcd_dtw_sl", "lse_c", "lse_d"),
    "3.0": ("lse_c", "lse_d", "spk_sim", "emo_sim", "wer", "mcd_dtw"),
    "initial-reasoning": ("accuracy", "average_recall", *(f"recall_{c}" for c in SCENE_TYPES), "spk_sim", "wer",
                          "mcd_dtw", "mcd_dtw_sl"),
    "ablation": ("lse_c", "lse_d", "spk_sim", "emo_sim", "mcd_dtw", "mcd_dtw_sl", "wer"),
}
TABLE_TITLES = {
    "1.0": "Dub 1.0: the clip's own speech as the reference voice (Table 4)",
    "2.0": "Dub 2.0: another utterance of the same speaker as the reference voice (Table 4)",
    "3.0": "Dub 3.0: an unseen speaker's voice as the reference (Table 6)",
    "initial-reasoning": "Initial reasoning: the reasoner's scene type chooses the reference voice (Table 1)",
    "ablation": "Ablations in the Dub 2.0 setting (Table 7)",
}


def _cell(value, kind: str) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}" if kind == "percent" else f"{value:.2f}"


def _lookup(scores: dict, key: str):
    if key.startswith("recall_"):
        return (scores.get("recall") or {}).get(key[len("recall_"):])
    return scores.get(key)


def results_to_markdown(results: dict, table: str, title: str | None = None, first_column: str = "System") -> str:
    """One of the paper's tables as Markdown, one row per entry of `results`.

    Args:
        results (`dict[str, dict]`):
            row name → scores (`aggregate_scores`, with `reasoning_metrics` merged in for the initial-reasoning
            table); rows in this order. Missing or `None` scores show as "n/a".
        table (`str`):
            `"1.0"`, `"2.0"`, `"3.0"`, `"initial-reasoning"` or `"ablation"` (see :data:`TABLE_COLUMNS`).
        title (`str`, *optional*):
            A `###` heading; defaults to the table's entry in :data:`TABLE_TITLES`.
        first_column (`str`, *optional*, defaults to `"System"`):
            The header of the row names.

    Example:

    ```py
    >>> from deepdubber_hf.evaluation.report import results_to_markdown
    >>> print(results_to_markdown({"GT": {"spk_sim": 1.0, "wer": 0.19, "mcd_dtw": 0.0}}, "3.0", title="").strip())
    | System | LSE-C ↑ | LSE-D ↓ | SPK-SIM (%) ↑ | EMO-SIM (%) ↑ | WER (%) ↓ | MCD ↓ |
    | --- | ---: | ---: | ---: | ---: | ---: | ---: |
    | GT | n/a | n/a | 100.00 | n/a | 19.00 | 0.00 |
    ```
    """
    if table not in TABLE_COLUMNS:
        raise ValueError(f"table must be one of {sorted(TABLE_COLUMNS)}, got {table!r}.")
    if not results:
        raise ValueError("results is empty: give at least one `name: scores` entry.")
    keys = TABLE_COLUMNS[table]
    title = TABLE_TITLES[table] if title is None else title
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join([first_column, *(COLUMNS[k][0] for k in keys)]) + " |")
    lines.append("| --- |" + " ---: |" * len(keys))
    for name, scores in results.items():
        cells = [_cell(_lookup(scores, k), COLUMNS[k][1]) for k in keys]
        lines.append("| " + " | ".join([str(name).replace("|", "\\|"), *cells]) + " |")
    return "\n".join(lines) + "\n"


def save_figure(figure, path: str | os.PathLike) -> str:
    """Write a matplotlib `Figure` to a PNG atomically (a reader never sees half a file); returns the path."""
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"path must name a .png file, got {path!r}.")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(handle, "wb") as file:
            figure.savefig(file, format="png")
        os.chmod(tmp_path, 0o644)  # mkstemp's 0o600 would make the plot private
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return path


def plot_mel_comparison(waveforms: dict, path: str | os.PathLike, sampling_rate: int = 24000,
                        title: str | None = None) -> str:
    """Log-mel spectrograms stacked one above the other on one time axis (Figure 5 of the paper): the ground truth
    and each system's speech for the same line.

    Args:
        waveforms (`dict[str, np.ndarray]`):
            panel name (e.g. `"GT"`, `"Ours"`) → mono waveform at `sampling_rate`, panels in this order.
        path (`str` or `os.PathLike`):
            The PNG to write (atomically; its folder is created).
        sampling_rate (`int`, *optional*, defaults to 24000):
            Sampling rate of every waveform.
        title (`str`, *optional*):
            The figure title (e.g. the line spoken).

    Returns:
        `str`: `path`.

    Example:

    ```py
    >>> import os, tempfile, numpy as np
    >>> from deepdubber_hf.evaluation.report import plot_mel_comparison
    >>> tone = np.sin(np.linspace(0, 2000, 24000)).astype("float32")
    >>> path = plot_mel_comparison({"GT": tone, "Ours": tone[::-1].copy()}, os.path.join(tempfile.mkdtemp(), "m.png"))
    >>> os.path.getsize(path) > 0
    True
    ```
    """
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..audio import HOP_LENGTH, log_mel_spectrogram, resample

    if not waveforms:
        raise ValueError("waveforms is empty: give at least one `name: waveform` entry.")
    mels = {}
    for name, wave in waveforms.items():
        wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        if wave.ndim != 1 or wave.numel() == 0:
            raise ValueError(f"waveforms[{name!r}] must be a non-empty mono waveform, got shape {tuple(wave.shape)}.")
        if sampling_rate != 24000:
            wave = resample(wave, sampling_rate, 24000)
        mels[name] = log_mel_spectrogram(wave[None])[0].numpy()  # (n_mels, frames)
    frames = max(m.shape[1] for m in mels.values())
    low = min(float(m.min()) for m in mels.values())
    high = max(float(m.max()) for m in mels.values())
    figure = Figure(figsize=(8.0, 1.9 * len(mels) + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(mels), 1, squeeze=False)[:, 0]
    seconds = frames * HOP_LENGTH / 24000
    for ax, (name, mel) in zip(axes, mels.items()):
        # One shared colour scale and time axis, so the panels compare at a glance.
        ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high,
                  extent=(0, mel.shape[1] * HOP_LENGTH / 24000, 0, mel.shape[0]))
        ax.set_xlim(0, seconds)
        ax.set_ylabel(f"{name}\nmel bin")
    axes[-1].set_xlabel("time (s)")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


__all__ = ["COLUMNS", "TABLE_COLUMNS", "TABLE_TITLES", "plot_mel_comparison", "results_to_markdown", "save_figure"]
