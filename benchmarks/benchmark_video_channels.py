"""Does the tiny video encoder see the mouths? A per-frame "a mouth is open" probe, frames alone vs frames + motion.

    .venv/bin/python benchmarks/benchmark_video_channels.py --dataset /work/rc/train --eval_dataset /work/rc/eval \
        --channels 3 6 --steps 600

The tiny CLIP of `deepdubber_hf.models.conditioning` (random init) and a linear head on its image embedding are
trained with binary cross-entropy on single frames at 10 fps from `--dataset`'s level-1 training clips (labels:
the corpus's `mouth_openness`, as `examples/train_controlnet.py --activity_weight` uses them), then scored on every
frame of `--eval_dataset`'s level-1 test clips. With 6 channels each frame comes with its difference from the
frame before it (`clip_pixels(..., num_channels=6)`, the tiny default). Prints held-out accuracy and loss every
`--eval_every` steps, beside the share of the commoner label.
"""

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F
from datasets import load_dataset
from tqdm.auto import tqdm
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from benchmark_sampling import cpu_name
from deepdubber_hf.models.conditioning import (
    TINY_CLIP_VISION_CONFIG,
    clip_pixels,
    load_frames_at_rate,
    tiny_video_encoder,
)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from train_controlnet import mouth_activity  # noqa: E402  (the labels stage 2.2 trains with)


def decode(dataset, num_clips: int, processor) -> tuple[list, torch.Tensor]:
    """Per clip its pixels with motion channels `(f, 6, s, s)` (float16); the labels of all frames."""
    clips, labels = [], []
    rows = dataset.select_columns(["video", "mouth_openness", "fps"])
    for index in tqdm(range(min(num_clips, len(rows))), desc="Decoding", unit="clip"):
        row = rows[index]
        frames, _ = load_frames_at_rate(row["video"])
        clips.append(clip_pixels(frames, processor, num_channels=6).half())
        labels.append(mouth_activity(row["mouth_openness"], row["fps"], frames.shape[0]))
    return clips, torch.cat(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="The procedural corpus to train on (its level1 train split).")
    parser.add_argument("--eval_dataset", required=True, help="A corpus never trained on (its level1 test split).")
    parser.add_argument("--num_train_clips", type=int, default=1200)
    parser.add_argument("--channels", type=int, nargs="+", default=[3, 6], choices=[3, 6])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval_every", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=128, help="Frames per step.")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    args = parser.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    _, processor = tiny_video_encoder()  # the default's image processing
    train, train_labels = decode(load_dataset(args.dataset, "level1", split="train"), args.num_train_clips, processor)
    test, test_labels = decode(load_dataset(args.eval_dataset, "level1", split="test"), 10**9, processor)
    train, test = torch.cat(train), torch.cat(test)  # 1200 clips: about 42 000 frames, 4.6 GB
    commoner = max(test_labels.mean().item(), 1 - test_labels.mean().item())
    print(f"{train.shape[0]} training frames, {test.shape[0]} held-out frames ({100 * commoner:.1f} % share the "
          "commoner label)")  # fmt: skip
    print("| input | step | held-out accuracy (%) | held-out BCE | seconds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for channels in args.channels:
        torch.manual_seed(0)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**{**TINY_CLIP_VISION_CONFIG, "num_channels": channels}))
        head = torch.nn.Linear(encoder.config.projection_dim, 1)
        optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=args.learning_rate,
                                      weight_decay=0.01)  # fmt: skip
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for step in range(1, args.steps + 1):
            index = torch.randint(0, train.shape[0], (args.batch_size,), generator=generator)
            pixels = train[index, :channels].float()
            logits = head(encoder(pixel_values=pixels).image_embeds).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(logits, train_labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % args.eval_every == 0 or step == args.steps:
                encoder.eval()
                with torch.no_grad():
                    logits = torch.cat([head(encoder(pixel_values=test[i : i + 512, :channels].float()).image_embeds)
                                        for i in range(0, test.shape[0], 512)]).squeeze(-1)  # fmt: skip
                encoder.train()
                accuracy = 100 * ((logits > 0).float() == test_labels).float().mean().item()
                bce = F.binary_cross_entropy_with_logits(logits, test_labels).item()
                name = "frame" if channels == 3 else "frame + motion"
                print(f"| {name} | {step} | {accuracy:.1f} | {bce:.3f} | {time.perf_counter() - start:.0f} |",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
