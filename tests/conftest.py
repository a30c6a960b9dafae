"""Fixtures shared across test folders."""

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A procedural corpus of 6 level-1 clips (5 train, 1 test) and 4 level-2 clips, in the Hub layout."""
    from deepdubber_hf.data.corpus import generate_corpus

    folder = tmp_path_factory.mktemp("tiny_corpus")
    generate_corpus(str(folder), level=1, num_clips=6, seed=11, workers=1, shard_size=6, progress=False)
    generate_corpus(str(folder), level=2, num_clips=4, seed=12, workers=1, shard_size=4, progress=False)
    return str(folder)
