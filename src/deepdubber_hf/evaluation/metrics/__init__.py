"""The paper's metrics as local `evaluate` modules: `evaluate.load(metric_path("wer"))` works with no network.

Each metric lives in its own folder (`metrics/<name>/<name>.py`, the layout `evaluate.load` expects of a local
module); the computation itself is in `deepdubber_hf.evaluation`, so the modules are thin and the library functions
can be used without `evaluate`.
"""

from __future__ import annotations

import os

METRICS_DIR = os.path.dirname(os.path.abspath(__file__))


def metric_names() -> list:
    """The metrics shipped as local `evaluate` modules."""
    return sorted(
        name for name in os.listdir(METRICS_DIR) if os.path.isfile(os.path.join(METRICS_DIR, name, f"{name}.py"))
    )


def metric_path(name: str) -> str:
    """The folder of the local `evaluate` module `name` (pass it to `evaluate.load`)."""
    path = os.path.join(METRICS_DIR, name)
    if not os.path.isfile(os.path.join(path, f"{name}.py")):
        raise ValueError(f"no metric {name!r} here; choose one of {metric_names()}.")
    return path


def text_pairs_info(description: str, inputs_description: str, references: bool = True):
    """The `evaluate.MetricInfo` of a metric whose inputs are strings (paths or texts): `predictions`, and
    `references` one per prediction unless `references=False`."""
    import datasets
    import evaluate

    columns = ("predictions", "references") if references else ("predictions",)
    return evaluate.MetricInfo(description=description, citation="", inputs_description=inputs_description,
                               features=datasets.Features({c: datasets.Value("string") for c in columns}))


def load_metric(name: str, **kwargs):
    """`evaluate.load` of the local module `name` (offline)."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = ["METRICS_DIR", "load_metric", "metric_names", "metric_path", "text_pairs_info"]
