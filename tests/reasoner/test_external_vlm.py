"""The reasoner's frame sampling, prompt, `reason()`, parser and `examples/train_sft.py` on real transformers VLMs.

Tiny random Qwen2-VL / Qwen2.5-VL checkpoints are built here, offline: a byte-level BPE tokenizer trained on the
corpus with Qwen's special tokens, the architecture's own processor (`Qwen2VLImageProcessor`, Qwen's chat
template), saved so that `AutoProcessor` / `AutoModelForImageTextToText` load them like a Hub checkpoint. SmolVLM
is not covered: its processor needs the `num2words` package, which this environment does not have.
"""

import os
import subprocess
import sys

import datasets
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from deepdubber_hf.reasoner import build_messages
from deepdubber_hf.reasoner.cot import CoTFailure, DubbingConclusion, parse_cot
from deepdubber_hf.reasoner.generation import reason
from deepdubber_hf.reasoner.prompts import COT_INSTRUCTION, QA_QUESTION

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "train_sft.py")

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
)  # fmt: skip
# Qwen2-VL-Instruct's chat template (image items become `<|vision_start|><|image_pad|><|vision_end|>`).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# 56² pixels at most: a 16:9 frame becomes 28×56, 2×4 patches of 14, 2 tokens after the 2×2 merge.
MAX_PIXELS = 56 * 56
ARCHITECTURES = {
    "qwen2_vl": (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor),
    "qwen2_5_vl": (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor),
}


def build_tiny_qwen_vl(folder: str, architecture: str, texts: list) -> str:
    """A random Qwen2(.5)-VL of 2 text layers (hidden 64) and 1 vision layer, with its processor, in `folder`."""
    config_class, model_class, processor_class = ARCHITECTURES[architecture]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
    )
    processor = processor_class(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=MAX_PIXELS),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=MAX_PIXELS),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    vision_config = {"depth": 1, "num_heads": 2, "hidden_size": 64}  # Qwen2-VL: `hidden_size` is the output size
    if architecture == "qwen2_vl":
        vision_config.update(embed_dim=32, mlp_ratio=2)
    else:
        vision_config.update(hidden_size=32, intermediate_size=64, out_hidden_size=64, fullatt_block_indexes=[0])
    config = config_class(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            # M-RoPE: (temporal, height, width) sections of half the head dimension (16 / 2)
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = model_class(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """4 procedural level-1 clips in the Hub layout (3 train, 1 test)."""
    from deepdubber_hf.data.corpus import generate_corpus

    folder = tmp_path_factory.mktemp("vlm_corpus")
    generate_corpus(str(folder), level=1, num_clips=4, seed=7, workers=1, shard_size=4, progress=False)
    return str(folder)


@pytest.fixture(scope="module")
def clip(corpus, tmp_path_factory):
    """The test clip of the corpus as an mp4 file."""
    row = datasets.load_dataset(corpus, "level1", split="test").cast_column("video", datasets.Video(decode=False))[0]
    path = str(tmp_path_factory.mktemp("vlm_clip") / "clip.mp4")
    with open(path, "wb") as handle:
        handle.write(row["video"]["bytes"])
    return path


@pytest.fixture(scope="module")
def tiny_vlms(corpus, tmp_path_factory):
    """Folders of the tiny random VLMs, by architecture."""
    train = datasets.load_dataset(corpus, "level1", split="train")
    texts = list(train["cot"]) + list(train["answer"]) + [COT_INSTRUCTION, QA_QUESTION]
    return {name: build_tiny_qwen_vl(str(tmp_path_factory.mktemp(name)), name, texts) for name in ARCHITECTURES}


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_reason_runs_a_real_vlm(tiny_vlms, clip, architecture):
    processor = AutoProcessor.from_pretrained(tiny_vlms[architecture])
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlms[architecture])
    assert isinstance(model, ARCHITECTURES[architecture][1]) and isinstance(processor, ARCHITECTURES[architecture][2])

    # The shared prompt, rendered by the architecture's template: one vision span per sampled frame.
    prompt = processor.apply_chat_template(build_messages(2, "cot"), add_generation_prompt=True)
    assert prompt.count("<|vision_start|><|image_pad|><|vision_end|>") == 2 and COT_INSTRUCTION in prompt

    responses = reason(model, processor, [clip, clip], num_frames=2, max_new_tokens=8, batch_size=2)
    assert len(responses) == 2 and all(len(texts) == 1 and isinstance(texts[0], str) for texts in responses)
    assert responses[0] == responses[1]  # greedy decoding: the same clip twice in a batch gives the same text
    assert responses == reason(model, processor, [clip, clip], num_frames=2, max_new_tokens=8, batch_size=1)
    # An untrained model's text: a conclusion or a typed failure, never an error.
    assert isinstance(parse_cot(responses[0][0]), (DubbingConclusion, CoTFailure))


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_train_sft_fine_tunes_a_real_vlm(tiny_vlms, corpus, clip, tmp_path, use_lora):
    source = tiny_vlms["qwen2_5_vl"]
    out = str(tmp_path / "sft")
    command = [sys.executable, SCRIPT, "--dataset", corpus, "--dataset_config_name", "level1", "--output_dir", out,
               "--model_name_or_path", source, "--num_frames", "2", "--max_train_steps", "2",
               "--train_batch_size", "2", "--lr_warmup_steps", "0", "--dataloader_num_workers", "0",
               "--report_to", "none"]  # fmt: skip
    if use_lora:  # the language model's attention (the vision tower's is `qkv` / `proj`: left frozen)
        command += ["--use_lora", "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    before = dict(AutoModelForImageTextToText.from_pretrained(source).named_parameters())
    trained = AutoModelForImageTextToText.from_pretrained(out)
    assert isinstance(trained, Qwen2_5_VLForConditionalGeneration)
    after = dict(trained.named_parameters())
    assert after.keys() == before.keys()  # LoRA merged: a plain Qwen2.5-VL checkpoint, no adapter weights
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    if use_lora:
        assert changed and all(name.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "o_proj") for name in changed)
    else:
        assert any(".visual." in f".{name}" for name in changed) and any("language_model" in n for n in changed)

    processor = AutoProcessor.from_pretrained(out)
    text = reason(trained, processor, [clip], num_frames=2, max_new_tokens=8)[0][0]
    assert isinstance(parse_cot(text), (DubbingConclusion, CoTFailure))
