"""examples/train_tts.py: the flow-matching loss in process, then the script itself through `accelerate launch`
on a tiny espeak-ng dataset (training, resuming, two-process gloo DDP on the CPU, a bad column)."""

import importlib.util
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepdubber_hf import DiTTransformerModel

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "train_tts.py"

TEXTS = [
    "Where did you put the map?",
    "The train leaves at noon.",
    "Open the door, please.",
    "We will meet again soon.",
    "It is raining in the city.",
    "Good morning, everyone!",
    "The cat sat on the mat.",
    "Bring me the red box.",
]

# Fast settings shared by every run: a tiny model, a lr that visibly moves the weights, no warm-up.
COMMON_ARGS = [
    "--model_config", "tiny",
    "--train_batch_size", "2",
    "--learning_rate", "1e-3",
    "--lr_warmup_steps", "0",
    "--seed", "0",
]  # fmt: skip


def load_script():
    spec = importlib.util.spec_from_file_location("train_tts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(args, num_processes=1, check=True):
    """Run the script through `accelerate launch` on the CPU, as a user would."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "--num_processes", str(num_processes)]
    if num_processes == 1:
        launch += ["--cpu"]
    else:
        # `--cpu --num_processes N` starts a single process unless run through mpirun: torchrun (`--multi_gpu`)
        # with ACCELERATE_USE_CPU gives N processes of gloo DDP.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        launch += ["--multi_gpu", "--main_process_port", str(port)]
        env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [*launch, str(SCRIPT), *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"train_tts.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


def read_log(output_dir):
    with open(Path(output_dir) / "train_log.jsonl") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_weights(folder):
    return load_file(str(Path(folder) / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="session")
def speech_dataset(tmp_path_factory):
    """Eight espeak-ng utterances (about 1-2 s each) saved with `Dataset.save_to_disk`."""
    from datasets import Audio, Dataset

    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is needed to synthesise the test dataset: `make system-deps` installs it.")
    root = tmp_path_factory.mktemp("speech")
    paths = []
    for index, text in enumerate(TEXTS):
        path = root / f"utterance_{index}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
        paths.append(str(path))
    dataset = Dataset.from_dict({"audio": paths, "text": TEXTS}).cast_column("audio", Audio())
    dataset.save_to_disk(str(root / "dataset"))
    return root / "dataset"


@pytest.fixture(scope="module")
def pretrained_folder(tmp_path_factory):
    """A seeded tiny transformer and its tokenizer, laid out as a model folder (`transformer/`, `tokenizer/`)."""
    from deepdubber_hf.text import DeepDubberTokenizer

    root = tmp_path_factory.mktemp("pretrained")
    tokenizer = DeepDubberTokenizer.from_texts(TEXTS, root / "tokenizer")
    torch.manual_seed(0)
    config = dict(load_script().MODEL_CONFIGS["tiny"], vocab_size=tokenizer.vocab_size)
    DiTTransformerModel(**config).save_pretrained(root / "transformer")
    return root


@pytest.fixture(scope="module")
def two_step_run(speech_dataset, pretrained_folder, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("run") / "out"
    args = ["--dataset", speech_dataset, "--output_dir", output_dir, "--max_train_steps", 2]
    args += [
        "--checkpointing_steps",
        2,
        "--save_raw_transformer",
        "--pretrained_model_name_or_path",
        pretrained_folder,
    ]
    run_script([*args, *COMMON_ARGS])
    return output_dir


# ----------------------------------------------------------------------------------------------------------------
# In process
# ----------------------------------------------------------------------------------------------------------------


def test_loss_goes_down_on_a_repeated_batch():
    train_tts = load_script()
    torch.manual_seed(0)
    model = DiTTransformerModel(
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        vocab_size=32,
        text_embed_dim=16,
        num_text_conv_layers=1,
        dropout=0.0,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mel = torch.randn(2, 48, 100) * 2 - 5  # (b, n, c), roughly log-mel values
    mel_lengths = torch.tensor([48, 36])
    mel[1, 36:] = 0  # batch padding, as the collator pads
    text_ids = torch.randint(0, 32, (2, 12))
    text_ids[1, 9:] = -1

    losses = []
    for _ in range(20):
        # The same noise, times, spans and drops every step: the batch is really repeated.
        generator = torch.Generator().manual_seed(1)
        loss = train_tts.flow_matching_loss(model, mel, mel_lengths, text_ids, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(value) for value in losses)
    assert losses[-1] < 0.5 * losses[0], losses


def test_loss_ignores_everything_outside_the_span():
    """Padding and the prompt frames have no say in the loss: the gradient of the prediction is zero there."""
    train_tts = load_script()
    mel = torch.randn(2, 40, 100)
    mel_lengths = torch.tensor([40, 25])
    seen = {}

    def model(x_t, cond, timestep, text_ids, attention_mask, drop_audio_cond, drop_text):
        seen["cond"] = cond
        seen["pred"] = torch.zeros_like(x_t, requires_grad=True)
        return type("Output", (), {"sample": seen["pred"]})

    loss = train_tts.flow_matching_loss(model, mel, mel_lengths, torch.zeros(2, 5, dtype=torch.long))
    loss.backward()
    touched = seen["pred"].grad.abs().sum(-1) > 0  # (b, n)
    assert not touched[1, 25:].any()  # padding
    assert touched.any(dim=1).all()
    # The prompt keeps the mel outside the span and is zero inside it.
    prompt = seen["cond"].abs().sum(-1) > 0
    assert not (prompt & touched).any()
    assert (prompt | touched)[0].all()


def test_span_mask_covers_the_requested_fraction():
    train_tts = load_script()
    lengths = torch.tensor([100, 57, 10, 300])
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        span = train_tts.random_span_mask(lengths, (0.7, 1.0), 300, generator=generator)
        sizes = span.sum(dim=1)
        assert (sizes >= (0.7 * lengths).floor() - 1).all() and (sizes <= lengths).all()
        ends = 300 - span.flip(1).int().argmax(dim=1)
        assert (ends <= lengths).all()  # inside the valid frames
        assert (span.int().diff(dim=1).clamp(min=0).sum(dim=1) <= 1).all()  # contiguous


def test_frame_batches_respect_the_budget_and_reshuffle_per_epoch():
    train_tts = load_script()
    lengths = [50, 400, 120, 90, 300, 80, 200, 60, 150, 100]
    sampler = train_tts.LengthGroupedBatchSampler(lengths, batch_size=3, max_frames_per_batch=400, seed=0)
    epoch_0 = list(sampler)
    assert sorted(i for batch in epoch_0 for i in batch) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in batch) <= 400 and len(batch) <= 3 for batch in epoch_0)
    assert list(sampler) == epoch_0  # a resumed run sees the same order
    orders = set()
    for epoch in range(1, 6):
        sampler.set_epoch(epoch)
        orders.add(tuple(map(tuple, sampler)))
    assert len(orders) > 1


# ----------------------------------------------------------------------------------------------------------------
# The script, through accelerate launch
# ----------------------------------------------------------------------------------------------------------------


def test_two_steps_train_and_save(two_step_run, pretrained_folder):
    log = read_log(two_step_run)
    assert [entry["step"] for entry in log] == [1, 2]
    assert all(math.isfinite(entry["loss"]) and entry["loss"] > 0 for entry in log)

    start = load_weights(pretrained_folder / "transformer")
    trained = load_weights(two_step_run / "transformer")
    assert trained.keys() == start.keys()
    changed = [name for name in start if not torch.equal(start[name], trained[name])]
    assert len(changed) > 0.9 * len(start), f"only {len(changed)} of {len(start)} tensors changed"
    assert trained["proj_out.weight"].abs().sum() > 0  # zero at init (AdaLN-zero)
    # The EMA copies the weights for its first 100 steps (ema_pytorch's update_after_step, as F5-TTS).
    raw = load_weights(two_step_run / "transformer_raw")
    # (EMAModel "copies" as s - (s - p), which is p only up to rounding.)
    assert all(torch.allclose(raw[name], trained[name], rtol=0, atol=1e-6) for name in raw)

    checkpoint = two_step_run / "checkpoint-2"
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
        assert (checkpoint / name).is_file(), name
    assert json.loads((checkpoint / "training_state.json").read_text()) == {"global_step": 2}
    assert (checkpoint / "transformer_ema" / "diffusion_pytorch_model.safetensors").is_file()
    assert not [name for name in os.listdir(two_step_run) if name.startswith("tmp")]

    # What the pipeline loads: transformer, tokenizer, scheduler.
    from deepdubber_hf.schedulers.scheduling_flow_match import FlowMatchSwayScheduler
    from deepdubber_hf.text import DeepDubberTokenizer

    model = DiTTransformerModel.from_pretrained(two_step_run / "transformer")
    tokenizer = DeepDubberTokenizer.from_pretrained(two_step_run / "tokenizer")
    assert model.config.vocab_size == tokenizer.vocab_size
    FlowMatchSwayScheduler.from_pretrained(two_step_run / "scheduler")
    assert list((two_step_run / "logs").rglob("events.out.tfevents.*"))  # TensorBoard through accelerate


def test_resume_continues_from_the_saved_step(two_step_run, speech_dataset, pretrained_folder, tmp_path):
    output_dir = tmp_path / "out"
    shutil.copytree(two_step_run, output_dir)
    args = [
        "--dataset", speech_dataset,
        "--output_dir", output_dir,
        "--max_train_steps", 4,
        "--checkpointing_steps", 2,
        "--resume_from_checkpoint", "latest",
        "--pretrained_model_name_or_path", pretrained_folder,
    ]  # fmt: skip
    run_script([*args, *COMMON_ARGS])

    log = read_log(output_dir)
    assert [entry["step"] for entry in log] == [1, 2, 3, 4]
    assert log[:2] == read_log(two_step_run)
    assert all(math.isfinite(entry["loss"]) for entry in log)
    # The restored scheduler continues its linear decay: after 3 of 4 steps the lr is a quarter of the peak
    # (a fresh schedule would be at three quarters).
    assert log[2]["lr"] == pytest.approx(1e-3 * (4 - 3) / 4)
    # The EMA is restored too: it has counted all 4 steps.
    ema_config = json.loads((output_dir / "checkpoint-4" / "transformer_ema" / "config.json").read_text())
    assert ema_config["optimization_step"] == 4
    assert not [name for name in os.listdir(output_dir) if name.startswith("tmp")]


def test_two_processes_gloo_ddp_write_a_pipeline(speech_dataset, tmp_path):
    from deepdubber_hf import DeepDubberPipeline, VocosVocoder

    VocosVocoder(hidden_size=32, intermediate_size=64, num_layers=1).save_pretrained(tmp_path / "vocoder")
    output_dir = tmp_path / "out"
    args = ["--dataset", speech_dataset, "--output_dir", output_dir, "--max_train_steps", 2]
    args += ["--checkpointing_steps", 2, "--max_frames_per_batch", 400, "--report_to", "none"]
    args += ["--vocoder_name_or_path", tmp_path / "vocoder"]
    result = run_script([*args, *COMMON_ARGS], num_processes=2)

    assert "Num processes: 2" in result.stderr and "Backend: gloo" in result.stderr
    log = read_log(output_dir)
    assert [entry["step"] for entry in log] == [1, 2]
    assert all(math.isfinite(entry["loss"]) for entry in log)
    # Every process wrote its random states into the checkpoint before it was renamed.
    assert (output_dir / "checkpoint-2" / "random_states_1.pkl").is_file()
    assert (output_dir / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    # With a vocoder the output is a whole pipeline that speaks.
    pipe = DeepDubberPipeline.from_pretrained(output_dir)
    out = pipe("Open the door.", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.audios[0].ndim == 1 and out.audios[0].shape[0] > 0


def test_missing_text_column_is_a_clear_error(speech_dataset, tmp_path):
    args = ["--dataset", speech_dataset, "--output_dir", tmp_path / "out", "--text_column", "transcript"]
    result = run_script([*args, "--max_train_steps", 1, *COMMON_ARGS], check=False)
    assert result.returncode != 0
    assert "ValueError: --text_column 'transcript' is not a column of the dataset" in result.stderr
    assert "['audio', 'text']" in result.stderr


def test_forced_alignment_trains_on_aligned_durations_in_two_processes(speech_dataset, tmp_path):
    from deepdubber_hf.text import DeepDubberTokenizer

    output_dir = tmp_path / "out"
    args = ["--dataset", speech_dataset, "--output_dir", output_dir, "--max_train_steps", 2, "--report_to", "none"]
    args += ["--checkpointing_steps", 2, "--text_upsampling", "average", "--text_alignment", "viterbi"]
    run_script([*args, *COMMON_ARGS], num_processes=2)

    assert [entry["step"] for entry in read_log(output_dir)] == [1, 2]
    saved = torch.load(output_dir / "text_alignment.pt", weights_only=True)
    tokenizer = DeepDubberTokenizer.from_pretrained(output_dir / "tokenizer")
    module = load_script()
    dataset = module.SpeechTextDataset(module.load_from_disk(str(speech_dataset)), "audio", "text", list(range(8)))
    for index, durations in enumerate(saved["durations"]):
        item = dataset[index]
        assert len(durations) == len(tokenizer.tokens(item["text"]))
        assert int(durations.sum()) == item["mel"].shape[0]  # every frame belongs to one token
    # The tokenizer keeps the mean frames per token type: letters last, the space may take none.
    assert len(tokenizer.frame_weights) == tokenizer.vocab_size
    assert min(tokenizer.frame_weights[tokenizer.vocab[c]] for c in "aeiot") >= 1
    assert len(tokenizer.edge_frames) == 2

    # A rerun reads the alignment back; a different vocabulary must not reuse it.
    stamp = (output_dir / "text_alignment.pt").stat().st_mtime_ns
    run_script([*args, "--max_train_steps", 3, "--resume_from_checkpoint", "latest", *COMMON_ARGS])
    assert (output_dir / "text_alignment.pt").stat().st_mtime_ns == stamp
    result = run_script([*args, "--tokenizer_mode", "phoneme", *COMMON_ARGS], check=False)
    assert result.returncode != 0 and "was aligned for other rows or another vocabulary" in result.stderr
