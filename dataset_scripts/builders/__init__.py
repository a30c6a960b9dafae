"""`datasets` builders that turn the published on-disk layouts of the real dubbing corpora (V2C-Animation, GRID,
Emilia, CoT-Movie-Dubbing) into the project's common schema (`common.dubbing_features`), and the export of any of
them to the Hub layout (`common.export_hub_layout`).

datasets 5 runs builders in-process, no loading script involved::

    builder = GridDubbing(data_dir="GRID", cache_dir="cache")
    builder.download_and_prepare()
    dataset = builder.as_dataset("test")

`dataset_scripts/export_real_corpus.py` does this and writes the parquet + README layout.
"""

from .common import COLUMNS, SOURCES, dubbing_features, export_hub_layout
from .cot_movie_dubbing import CoTMovieDubbing
from .emilia import Emilia
from .grid import GridDubbing
from .v2c_animation import V2CAnimation

__all__ = [
    "COLUMNS",
    "SOURCES",
    "CoTMovieDubbing",
    "Emilia",
    "GridDubbing",
    "V2CAnimation",
    "dubbing_features",
    "export_hub_layout",
]
