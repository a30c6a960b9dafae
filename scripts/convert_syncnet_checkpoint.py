"""Convert syncnet_python's `syncnet_v2.model` (joonson/syncnet_python) into a `SyncNetModel` folder.

    python scripts/convert_syncnet_checkpoint.py --checkpoint data/syncnet_v2.model --output_dir syncnet-v2

The official file is a `torch.save`d state dict of `SyncNetModel.S`; it is read with `torch.load(weights_only=True)`,
which runs no code. A file holding the whole pickled module instead needs `--allow_pickle`, which reads it with
`weights_only=False` and so runs whatever code the pickle names: use it only for a file from a source you trust.
The output scores LSE-D / LSE-C with `lse_scores(video, audio, "syncnet-v2")` (224x224 face crops, as
syncnet_python).
"""

import argparse
import logging
import os
import pickle
import sys
import types

import torch

from deepdubber_hf.evaluation.syncnet import SyncNetModel, convert_syncnet_state_dict, syncnet_config_from_state_dict

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="syncnet_v2.model (a state dict or the pickled module).")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--allow_pickle", action="store_true",
                        help="Read a whole pickled module with torch.load(weights_only=False); trusted files only.")
    return parser.parse_args(argv)


def load_official_checkpoint(path: str, allow_pickle: bool = False):
    """The content of a syncnet_python checkpoint: a state dict (read safely) or, with `allow_pickle`, a whole
    pickled `SyncNetModel.S` module (syncnet_python's module need not be installed: a stand-in class takes its
    place, as only the tensors are kept)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--checkpoint {path!r} does not exist: pass the path of syncnet_v2.model.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not allow_pickle:
            raise ValueError(
                f"{path!r} is not a plain state dict (it pickles Python objects: {error}); if it is syncnet_python's "
                "whole model from a source you trust, pass --allow_pickle."
            ) from error
    if "SyncNetModel" not in sys.modules:  # the pickle names syncnet_python's module `SyncNetModel`, class `S`
        stand_in = types.ModuleType("SyncNetModel")
        stand_in.S = type("S", (torch.nn.Module,), {})
        sys.modules["SyncNetModel"] = stand_in
    return torch.load(path, map_location="cpu", weights_only=False)


def main(args):
    official = load_official_checkpoint(args.checkpoint, args.allow_pickle)
    model = SyncNetModel(**syncnet_config_from_state_dict(official))
    model.load_state_dict(convert_syncnet_state_dict(official), strict=True)
    model.eval().save_pretrained(args.output_dir)
    logger.info("wrote %s", args.output_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main(parse_args())
