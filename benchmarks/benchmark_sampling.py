"""Sampling speed of DeepDubberPipeline against the f5-tts package's `CFM.sample`, same DiT weights, one run.

    .venv/bin/python benchmarks/benchmark_sampling.py --configs tiny base --repeats 3

Both sides get the same random DiT weights (F5-TTS's DiT, converted), the same reference (a 2 s signal, its mel
for F5-TTS, the waveform for ours), text, total length, steps, CFG 2 and sway −1. Ours is timed up to the mel
(`output_type="mel"`, no vocoder), as `CFM.sample` stops there too. Prints a markdown table with the machine.
"""

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

from deepdubber_hf import DeepDubberPipeline, DeepDubberTokenizer, FlowMatchSwayScheduler, VocosVocoder
from deepdubber_hf.audio import log_mel_spectrogram
from deepdubber_hf.models.conversion_f5tts import F5TTS_ARCHS, dit_from_f5tts

CONFIGS = {
    "tiny": dict(dim=128, depth=4, heads=4, ff_mult=2, text_dim=64, text_mask_padding=True, conv_layers=2),
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


def build(config_name, vocab_dir):
    from f5_tts.model.backbones.dit import DiT
    from f5_tts.model.cfm import CFM

    tokenizer = DeepDubberTokenizer.from_texts([REFERENCE_TEXT + " " + TEXT], vocab_dir)
    arch = CONFIGS[config_name]
    torch.manual_seed(0)
    f5 = DiT(**arch, text_num_embeds=tokenizer.vocab_size, mel_dim=100)
    with torch.no_grad():
        for param in f5.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    f5.eval()
    cfm = CFM(transformer=f5, vocab_char_map=tokenizer.get_vocab()).eval()
    pipe = DeepDubberPipeline(
        dit_from_f5tts(arch, f5.state_dict()), FlowMatchSwayScheduler(), VocosVocoder(num_layers=1), tokenizer
    )
    pipe.set_progress_bar_config(disable=True)
    return cfm, pipe


def time_both(config_name, steps, seconds, repeats):
    with tempfile.TemporaryDirectory() as vocab_dir:
        cfm, pipe = build(config_name, vocab_dir)
    t = torch.arange(int(24000 * 2.0)) / 24000
    wave = 0.3 * torch.sin(2 * torch.pi * 150 * t) + 0.05 * torch.sin(2 * torch.pi * 900 * t)
    ref_mel = log_mel_spectrogram(wave[None]).transpose(1, 2)
    new_frames = int(seconds * 24000 / 256)
    total = ref_mel.shape[1] + new_frames

    def run_f5():
        with torch.inference_mode():
            cfm.sample(ref_mel, [REFERENCE_TEXT + " " + TEXT], total, steps=steps, cfg_strength=2.0,
                       sway_sampling_coef=-1.0, seed=0)

    def run_ours():
        pipe(TEXT, reference_audio=wave, reference_text=REFERENCE_TEXT, duration_in_s=(new_frames + 0.5) / 93.75,
             num_inference_steps=steps, guidance_scale=2.0, sway_sampling_coef=-1.0,
             generator=torch.Generator().manual_seed(0), output_type="mel")

    run_f5(), run_ours()  # warm-up
    f5_times, our_times = [], []
    for _ in range(repeats):  # interleaved, so drift of the machine hits both
        start = time.perf_counter()
        run_f5()
        f5_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_ours()
        our_times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e6
    return params, total, statistics.median(f5_times), statistics.median(our_times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny", "base"], choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--base_steps", type=int, default=8, help="Steps for the small/base configs (CPU time).")
    parser.add_argument("--seconds", type=float, default=3.0, help="Seconds of new speech (after a 2 s reference).")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    print("| config | DiT params (M) | frames | steps | f5-tts CFM.sample (s) | DeepDubberPipeline (s) | ours / f5-tts |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        steps = args.steps if name == "tiny" else args.base_steps
        params, frames, f5, ours = time_both(name, steps, args.seconds, args.repeats)
        print(f"| {name} | {params:.1f} | {frames} | {steps} | {f5:.3f} | {ours:.3f} | {ours / f5:.3f} |", flush=True)


if __name__ == "__main__":
    main()
