"""One DiT forward of ours against F5-TTS's on the same weights, in one process, alternating, on the guidance batch.

    .venv/bin/python benchmarks/benchmark_forward_pairs.py --config base --pairs 14

Both models hold the same random weights (F5-TTS's `DiT`, converted). F5-TTS runs its packed classifier-free
guidance forward (`cfg_infer=True`, text embedding cached); ours runs the same two branches as one batch with the
text embeddings precomputed, as the pipeline does. Prints the medians and the median of the paired ratios.
"""

import argparse
import statistics
import time

import torch

from benchmark_sampling import CONFIGS as ARCHS  # the same tiny / small / base as the sampling benchmark
from deepdubber_hf.models.conversion_f5tts import dit_from_f5tts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="base", choices=sorted(ARCHS))
    parser.add_argument("--pairs", type=int, default=14)
    parser.add_argument("--frames", type=int, default=375)
    args = parser.parse_args()
    from f5_tts.model.backbones.dit import DiT

    torch.manual_seed(0)
    f5 = DiT(**ARCHS[args.config], text_num_embeds=30, mel_dim=100)
    with torch.no_grad():
        for param in f5.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    f5.eval()
    ours = dit_from_f5tts(ARCHS[args.config], f5.state_dict(), vocab_size=30)
    n = args.frames
    x, cond = torch.randn(1, n, 100), torch.randn(1, n, 100)
    text, t = torch.randint(0, 30, (1, 60)), torch.tensor([0.4])
    with torch.no_grad():
        embeds = torch.cat([ours.embed_text(text, n), ours.embed_text(text, n, drop_text=True)])
        x2, cond2 = torch.cat([x, x]), torch.cat([cond, torch.zeros_like(cond)])

        def run_f5():
            f5(x, cond, text, t, cfg_infer=True, cache=True)

        def run_ours():
            ours(x2, cond2, t.expand(2), text_embeds=embeds)

        run_f5(), run_ours()
        times = {run_f5: [], run_ours: []}
        ratios = []
        for i in range(args.pairs):
            for fn in (run_f5, run_ours) if i % 2 == 0 else (run_ours, run_f5):
                start = time.perf_counter()
                fn()
                times[fn].append(time.perf_counter() - start)
            ratios.append(times[run_ours][-1] / times[run_f5][-1])
    print(f"{args.config}, {n} frames, {args.pairs} pairs: f5-tts median {statistics.median(times[run_f5]):.3f} s, "
          f"ours median {statistics.median(times[run_ours]):.3f} s, median paired ratio (ours / f5-tts) "
          f"{statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
