"""Sampling speed of DeepDubberPipeline against the f5-tts package's `CFM.sample`, same DiT weights, one run.

    .venv/bin/python benchmarks/benchmark_sampling.py --configs tiny base --seconds 1.5

Both sides get the same random DiT weights (F5-TTS's DiT, converted), the same reference (a 2 s signal, its mel
for F5-TTS, the waveform for ours), text, total length, steps, CFG 2 and sway −1. Ours is timed up to the mel
(`output_type="mel"`, no vocoder), as `CFM.sample` stops there too. Each side runs in its own fresh processes,
alternating, so that neither shares memory with the other. Prints a markdown table with the machine.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from deepdubber_hf import DeepDubberPipeline, DeepDubberTokenizer, FlowMatchSwayScheduler, VocosVocoder
from deepdubber_hf.audio import log_mel_spectrogram
from deepdubber_hf.models.conversion_f5tts import F5TTS_ARCHS, dit_from_f5tts

CONFIGS = {
    "tiny": dict(dim=256, depth=4, heads=4, ff_mult=2, text_dim=64, text_mask_padding=True, conv_layers=2),
    "small": F5TTS_ARCHS["F5TTS_v1_Small"],
    "base": F5TTS_ARCHS["F5TTS_v1_Base"],
}
REFERENCE_TEXT = "I left the map on the kitchen table this morning."
TEXT = "Where did you put it after that?"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def make_weights(config_name, path):
    """Random F5-TTS DiT weights for `config_name` (its init zeroes some layers: every weight is perturbed)."""
    from f5_tts.model.backbones.dit import DiT

    vocab = sorted(set(REFERENCE_TEXT + " " + TEXT))
    torch.manual_seed(0)
    model = DiT(**CONFIGS[config_name], text_num_embeds=len(vocab), mel_dim=100)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    torch.save(model.state_dict(), path)


def run_side(side, config_name, weights, steps, seconds, repeats):
    """In a fresh process: load one side only, warm up, time `repeats` samplings; returns the times."""
    arch = CONFIGS[config_name]
    state_dict = torch.load(weights, weights_only=True)
    with tempfile.TemporaryDirectory() as vocab_dir:
        tokenizer = DeepDubberTokenizer.from_texts([REFERENCE_TEXT + " " + TEXT], vocab_dir)
    t = torch.arange(int(24000 * 2.0)) / 24000
    wave = 0.3 * torch.sin(2 * torch.pi * 150 * t) + 0.05 * torch.sin(2 * torch.pi * 900 * t)
    new_frames = int(seconds * 24000 / 256)
    if side == "f5":
        from f5_tts.model.backbones.dit import DiT
        from f5_tts.model.cfm import CFM

        dit = DiT(**arch, text_num_embeds=tokenizer.vocab_size, mel_dim=100)
        dit.load_state_dict(state_dict)
        cfm = CFM(transformer=dit.eval(), vocab_char_map=tokenizer.get_vocab()).eval()
        ref_mel = log_mel_spectrogram(wave[None]).transpose(1, 2)
        total = ref_mel.shape[1] + new_frames

        def run():  # CFM.sample runs under torch.no_grad, as our pipeline's __call__ does
            cfm.sample(ref_mel, [REFERENCE_TEXT + " " + TEXT], total, steps=steps, cfg_strength=2.0,
                       sway_sampling_coef=-1.0, seed=0)
    else:
        pipe = DeepDubberPipeline(
            dit_from_f5tts(arch, state_dict), FlowMatchSwayScheduler(), VocosVocoder(num_layers=1), tokenizer
        )
        pipe.set_progress_bar_config(disable=True)

        def run():
            pipe(TEXT, reference_audio=wave, reference_text=REFERENCE_TEXT, duration_in_s=(new_frames + 0.5) / 93.75,
                 num_inference_steps=steps, guidance_scale=2.0, sway_sampling_coef=-1.0,
                 generator=torch.Generator().manual_seed(0), output_type="mel")

    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def time_both(config_name, steps, seconds, repeats, rounds):
    """Alternate fresh processes (f5, ours, ours, f5, ...) so that neither side shares memory with the other
    and drift of the machine hits both alike; medians over every timed run."""
    times = {"f5": [], "ours": []}
    with tempfile.TemporaryDirectory() as folder:
        weights = os.path.join(folder, "dit.pt")
        make_weights(config_name, weights)
        for i in range(rounds):
            for side in ("f5", "ours") if i % 2 == 0 else ("ours", "f5"):
                command = [sys.executable, os.path.abspath(__file__), "--side", side, "--weights", weights,
                           "--configs", config_name, "--steps", str(steps), "--seconds", str(seconds),
                           "--repeats", str(repeats)]
                result = subprocess.run(command, capture_output=True, text=True, check=True)
                times[side] += json.loads(result.stdout.strip().splitlines()[-1])
        params = sum(v.numel() for k, v in torch.load(weights, weights_only=True).items() if "inv_freq" not in k)
    return params / 1e6, times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny", "base"], choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=None, help="ODE steps (default: 32 for tiny, 8 for small/base).")
    parser.add_argument("--seconds", type=float, default=3.0, help="Seconds of new speech (after a 2 s reference).")
    parser.add_argument("--repeats", type=int, default=2, help="Timed samplings per process, after a warm-up.")
    parser.add_argument("--rounds", type=int, default=4, help="Processes per side, alternating f5/ours.")
    parser.add_argument("--side", choices=["f5", "ours"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side is not None:  # a child process: time one side, print the times as JSON
        print(json.dumps(run_side(args.side, args.configs[0], args.weights, args.steps, args.seconds, args.repeats)))
        return

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    print(f"new speech: {args.seconds} s after a 2 s reference; {args.rounds} processes per side, {args.repeats} timed "
          "runs each after a warm-up; medians")
    print("| config | DiT params (M) | steps | f5-tts CFM.sample median / best (s) | DeepDubberPipeline median / best (s) "
          "| ours / f5-tts (median, best) |")
    print("|---|---|---|---|---|---|")
    for name in args.configs:
        steps = args.steps or (32 if name == "tiny" else 8)
        params, times = time_both(name, steps, args.seconds, args.repeats, args.rounds)
        f5, ours = statistics.median(times["f5"]), statistics.median(times["ours"])
        f5_best, ours_best = min(times["f5"]), min(times["ours"])
        print(f"| {name} | {params:.1f} | {steps} | {f5:.3f} / {f5_best:.3f} | {ours:.3f} / {ours_best:.3f} | "
              f"{ours / f5:.3f}, {ours_best / f5_best:.3f} |", flush=True)


if __name__ == "__main__":
    main()
