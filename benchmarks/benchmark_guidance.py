"""One sampling step of eq. 20's four-branch guidance: the branches as one batch vs four separate forwards.

    .venv/bin/python benchmarks/benchmark_guidance.py --config tiny small --steps 12

Each step is the ControlNet then the DiT with its residuals, on the same random weights; the batched step stacks the
four branches (all conditions; no video; no video and no conclusion; nothing) along the batch, the other runs them
one after the other. Alternating, after a warm-up; prints the medians and the median of the paired ratios.
"""

import argparse
import os
import statistics
import time

import torch

from benchmark_sampling import cpu_name
from deepdubber_hf import DeepDubberControlNetModel, DiTTransformerModel
from deepdubber_hf.pipelines.guidance import branch_drop_flags, stack_branches

# (width heads, head dim, DiT blocks, ControlNet blocks): the tiny default's shape and F5-TTS v1 Small's.
CONFIGS = {"tiny": (4, 64, 4, 2), "small": (12, 64, 18, 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["tiny", "small"], choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--frames", type=int, default=375, help="Mel frames (375 = 4 s).")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads")
    print("| config | mel frames | four forwards (ms) | one batched forward (ms) | speed-up (median of pairs) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.config:
        heads, head_dim, layers, control_layers = CONFIGS[name]
        torch.manual_seed(0)
        base = DiTTransformerModel(num_layers=layers, num_attention_heads=heads, attention_head_dim=head_dim,
                                   vocab_size=64, text_embed_dim=128, num_text_conv_layers=2).eval()  # fmt: skip
        controlnet = DeepDubberControlNetModel.from_transformer(base, num_layers=control_layers, video_dim=512,
                                                                condition_dim=256).eval()  # fmt: skip
        n = args.frames
        x, cond, t = torch.randn(1, n, 100), torch.randn(1, n, 100), torch.tensor([0.4])
        video, conclusion = torch.randn(1, n, 512), torch.randn(1, 12, 256)
        text = torch.randint(0, 64, (1, 60))
        flags = branch_drop_flags(1)
        with torch.no_grad():
            embeds = base.embed_text(stack_branches(text), n, drop_text=flags["drop_text"])  # once per call
            control_embeds = controlnet.embed_text(stack_branches(text), n, drop_text=flags["drop_text"])

            def step(rows):
                sub = {k: v[rows] for k, v in flags.items()}
                count = len(range(*rows.indices(4)))
                common = {"hidden_states": x.expand(count, -1, -1), "cond": cond.expand(count, -1, -1),
                          "timestep": t.expand(count), "drop_audio_cond": sub["drop_audio_cond"]}  # fmt: skip
                residuals = controlnet(
                    **common, video_features=video.expand(count, -1, -1), text_embeds=control_embeds[rows],
                    condition_embeds=conclusion.expand(count, -1, -1), drop_video=sub["drop_video"],
                    drop_conclusion=sub["drop_conclusion"],
                ).controlnet_block_samples
                return base(**common, text_embeds=embeds[rows], block_controlnet_hidden_states=list(residuals)).sample

            def batched():
                step(slice(0, 4))

            def separate():
                for branch in range(4):
                    step(slice(branch, branch + 1))

            batched(), separate()
            times, ratios = {batched: [], separate: []}, []
            for _ in range(args.steps):
                pair = {}
                for run in (separate, batched):
                    start = time.perf_counter()
                    run()
                    pair[run] = time.perf_counter() - start
                    times[run].append(pair[run])
                ratios.append(pair[separate] / pair[batched])
        print(f"| {name} | {n} | {1000 * statistics.median(times[separate]):.1f} | "
              f"{1000 * statistics.median(times[batched]):.1f} | {statistics.median(ratios):.2f}× |", flush=True)


if __name__ == "__main__":
    main()
