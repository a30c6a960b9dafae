"""Convert an F5-TTS checkpoint (+ its vocab.txt and a Vocos folder) into a DeepDubberPipeline folder.

    python scripts/convert_f5tts_checkpoint.py \
        --checkpoint ckpts/F5TTS_v1_Base/model_1250000.safetensors \
        --vocab ckpts/F5TTS_v1_Base/vocab.txt \
        --model_config F5TTS_v1_Base \
        --vocos_dir vocos-mel-24khz \
        --output_dir deepdubber-f5tts-v1-base

`--checkpoint` takes the released EMA `.safetensors` or a `.pt` written by F5-TTS's trainer (EMA weights unless
`--no_ema`). `--vocos_dir` holds `config.yaml` and `pytorch_model.bin` as in `charactr/vocos-mel-24khz`.
The tokenizer keeps F5-TTS's vocab.txt; in "char" mode each character of the text is one token (F5-TTS's
pinyin conversion of Chinese text is not part of this project).
"""

import argparse
import logging

from deepdubber_hf import DeepDubberPipeline, DeepDubberTokenizer, FlowMatchSwayScheduler, VocosVocoder
from deepdubber_hf.models.conversion_f5tts import dit_from_f5tts, load_f5tts_checkpoint, read_f5tts_arch, read_f5tts_vocab

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="F5-TTS .pt or .safetensors checkpoint.")
    parser.add_argument("--vocab", required=True, help="The vocab.txt the checkpoint was trained with.")
    parser.add_argument("--model_config", default="F5TTS_v1_Base",
                        help="F5-TTS config name (F5TTS_v1_Base, F5TTS_v1_Small, F5TTS_Base, F5TTS_Small) or YAML path.")
    parser.add_argument("--vocos_dir", required=True, help="Local folder with Vocos config.yaml + pytorch_model.bin.")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--no_ema", action="store_true", help="Use the raw weights of a trainer .pt, not the EMA.")
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id", default=None)
    return parser.parse_args(argv)


def main(args):
    vocab = read_f5tts_vocab(args.vocab)
    state_dict = load_f5tts_checkpoint(args.checkpoint, use_ema=not args.no_ema)
    embed_rows = state_dict["text_embed.text_embed.weight"].shape[0]
    if embed_rows != len(vocab) + 1:
        raise ValueError(
            f"{args.vocab} has {len(vocab)} tokens but the checkpoint's text embedding has {embed_rows - 1}: "
            "pass the vocab.txt the checkpoint was trained with."
        )
    transformer = dit_from_f5tts(read_f5tts_arch(args.model_config), state_dict, vocab_size=len(vocab))
    pipe = DeepDubberPipeline(
        transformer=transformer,
        scheduler=FlowMatchSwayScheduler(),
        vocoder=VocosVocoder.from_vocos_checkpoint(args.vocos_dir),
        tokenizer=DeepDubberTokenizer(vocab_file=args.vocab),
    )
    hub = dict(push_to_hub=True, repo_id=args.hub_model_id) if args.push_to_hub else {}
    pipe.save_pretrained(args.output_dir, **hub)
    logger.info("wrote %s", args.output_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main(parse_args())
