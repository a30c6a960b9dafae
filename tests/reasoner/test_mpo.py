"""MPO (eq. 6–13): each term against a hand computation, parity with trl's DPOTrainer, a real training run."""

import math

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import BatchFeature, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import DPOConfig, DPOTrainer

from deepdubber_hf.reasoner.mpo import (
    MPO_LABEL_COLUMNS,
    DataCollatorWithMPOLabels,
    MPOConfig,
    MPOTrainer,
    answer_token_mask,
    mpo_loss,
)

SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>", "<SUMMARY>", "</SUMMARY>", "<CONCLUSION>", "</CONCLUSION>"]

ROWS = [
    {
        "prompt": "how many people speak in the clip",
        "chosen": " <SUMMARY> count the faces </SUMMARY> <CONCLUSION> dialogue two speakers </CONCLUSION>",
        "rejected": " <CONCLUSION> monologue one speaker",
        "chosen_format": 1.0,
        "chosen_outcome": 1.0,
        "rejected_format": 0.0,
        "rejected_outcome": 0.0,
    },
    {
        "prompt": "who is talking in the scene",
        "chosen": " <SUMMARY> look at the mouth </SUMMARY> <CONCLUSION> narration one speaker </CONCLUSION>",
        "rejected": " <SUMMARY> guess </SUMMARY> <CONCLUSION> dialogue two speakers </CONCLUSION>",
        "chosen_format": 1.0,
        "chosen_outcome": 1.0,
        "rejected_format": 1.0,
        "rejected_outcome": 0.0,
    },
]


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


# 1. The pure loss on fixed numbers


def fixed_inputs():
    # b = 2 pairs, t = 4 positions; rows: chosen 0, chosen 1, rejected 0, rejected 1
    per_token_logps = torch.tensor(
        [
            [-0.5, -1.0, -0.2, 0.0],
            [-0.3, -0.7, 0.0, 0.0],
            [-2.0, -1.5, -1.0, -0.5],
            [-0.1, -0.4, -0.9, 0.0],
        ],
        dtype=torch.float64,
    )
    completion_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]])
    answer_mask = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]])
    return {
        "chosen_logps": torch.tensor([-1.7, -1.0], dtype=torch.float64),
        "rejected_logps": torch.tensor([-5.0, -1.4], dtype=torch.float64),
        "ref_chosen_logps": torch.tensor([-2.0, -1.5], dtype=torch.float64),
        "ref_rejected_logps": torch.tensor([-4.0, -1.0], dtype=torch.float64),
        "per_token_logps": per_token_logps,
        "completion_mask": completion_mask,
        "answer_mask": answer_mask,
        "format_labels": torch.tensor([1.0, 1.0, 0.0, 1.0]),
        "outcome_labels": torch.tensor([1.0, 0.0, 0.0, 1.0]),
    }


def test_each_term_matches_a_hand_computation():
    inputs = fixed_inputs()
    beta, delta = 0.5, 0.3
    weights = {
        "preference_weight": 0.8,
        "quality_weight": 0.2,
        "generation_weight": 1.0,
        "format_weight": 0.3,
        "outcome_weight": 0.7,
    }
    loss, terms = mpo_loss(**inputs, beta=beta, reward_shift=delta, **weights)

    c = [-1.7, -1.0]
    r = [-5.0, -1.4]
    rc = [-2.0, -1.5]
    rr = [-4.0, -1.0]
    chosen_rewards = [beta * (c[i] - rc[i]) for i in range(2)]
    rejected_rewards = [beta * (r[i] - rr[i]) for i in range(2)]
    # eq. 7
    preference = sum(-log_sigmoid(chosen_rewards[i] - rejected_rewards[i]) for i in range(2)) / 2
    # eq. 8–10
    quality = (
        sum(-log_sigmoid(chosen_rewards[i] - delta) - log_sigmoid(-(rejected_rewards[i] - delta)) for i in range(2)) / 2
    )
    # eq. 11 as trl's "sft": mean over the 3 + 2 chosen tokens
    generation = -(-0.5 - 1.0 - 0.2 - 0.3 - 0.7) / 5
    # eq. 12: p_f = exp(mean token log-prob of each response)
    p_format = [
        math.exp((-0.5 - 1.0 - 0.2) / 3),
        math.exp((-0.3 - 0.7) / 2),
        math.exp((-2.0 - 1.5 - 1.0 - 0.5) / 4),
        math.exp((-0.1 - 0.4 - 0.9) / 3),
    ]
    format_ = sum(bce(p, y) for p, y in zip(p_format, [1, 1, 0, 1])) / 4
    # eq. 13: p_o over the answer tokens only
    p_outcome = [math.exp((-1.0 - 0.2) / 2), math.exp((-0.3 - 0.7) / 2), math.exp((-1.0 - 0.5) / 2), math.exp(-0.9)]
    outcome = sum(bce(p, y) for p, y in zip(p_outcome, [1, 0, 0, 1])) / 4

    expected = {
        "preference": preference,
        "quality": quality,
        "generation": generation,
        "format": format_,
        "outcome": outcome,
    }
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-9), name
    total = 0.8 * preference + 0.2 * quality + 1.0 * generation + 0.3 * format_ + 0.7 * outcome
    assert loss.item() == pytest.approx(total, rel=1e-9)


def test_quality_without_shift_is_trl_bco_pair_and_outcome_falls_back_to_the_response():
    inputs = fixed_inputs()
    _, terms = mpo_loss(**inputs, beta=0.5, reward_shift=0.0)
    chosen_rewards = 0.5 * (inputs["chosen_logps"] - inputs["ref_chosen_logps"])
    rejected_rewards = 0.5 * (inputs["rejected_logps"] - inputs["ref_rejected_logps"])
    bco_pair = (
        -torch.nn.functional.logsigmoid(chosen_rewards) - torch.nn.functional.logsigmoid(-rejected_rewards)
    ).mean()
    assert torch.allclose(terms["quality"], bco_pair)
    # no answer mask: p_o is p_f, so with equal labels L_o is L_f
    inputs.update(answer_mask=None, outcome_labels=inputs["format_labels"])
    _, terms = mpo_loss(**inputs)
    assert torch.allclose(terms["outcome"], terms["format"])


def test_probabilities_are_clamped_and_zero_weights_leave_terms_out():
    inputs = fixed_inputs()
    # a response the policy is certain of (p = 1) but labelled ill-formed: -log(1 - p) would be infinite
    inputs["per_token_logps"] = torch.zeros_like(inputs["per_token_logps"], requires_grad=True)
    inputs["format_labels"] = torch.zeros(4)
    loss, terms = mpo_loss(**inputs, format_weight=1.0)
    assert torch.isfinite(terms["format"]) and terms["format"].item() == pytest.approx(-math.log(1e-6), rel=1e-6)
    loss.backward()
    _, terms = mpo_loss(**fixed_inputs())
    only_dpo, _ = mpo_loss(
        **fixed_inputs(),
        preference_weight=1.0,
        quality_weight=0.0,
        generation_weight=0.0,
        format_weight=0.0,
        outcome_weight=0.0,
    )
    assert torch.allclose(only_dpo, terms["preference"])


def test_answer_token_mask():
    # 9 = <CONCLUSION>, 6 = </CONCLUSION>; rows: tags found, no closing tag, no tag, empty answer
    ids = torch.tensor(
        [
            [1, 9, 4, 9, 7, 8, 6, 2],
            [1, 1, 9, 7, 8, 2, 0, 0],
            [1, 4, 7, 8, 2, 0, 0, 0],
            [1, 4, 9, 6, 2, 0, 0, 0],
        ]
    )
    completion = torch.tensor(
        [
            [0, 1, 1, 1, 1, 1, 1, 1],
            [0, 0, 1, 1, 1, 1, 0, 0],
            [0, 1, 1, 1, 1, 0, 0, 0],
            [0, 1, 1, 1, 1, 0, 0, 0],
        ]
    )
    mask = answer_token_mask(ids, completion, [9], [6]).int()
    assert mask.tolist() == [
        [0, 0, 0, 0, 1, 1, 0, 0],  # after the last opening tag, before the closing one
        [0, 0, 0, 1, 1, 1, 0, 0],  # to the end of the response (EOS included)
        [0, 1, 1, 1, 1, 0, 0, 0],  # whole response
        [0, 1, 1, 1, 1, 0, 0, 0],  # whole response
    ]
    # multi-token tags (a tokenizer without the added token)
    ids = torch.tensor([[3, 5, 9, 7, 8, 5, 6, 2]])
    assert answer_token_mask(ids, torch.ones_like(ids), [5, 9], [5, 6]).int().tolist() == [[0, 0, 0, 1, 1, 0, 0, 0]]


def test_config_validation():
    with pytest.raises(ValueError, match="outcome_weight"):
        MPOConfig("out", outcome_weight=-1.0, report_to="none")
    with pytest.raises(ValueError, match="loss_type"):
        MPOConfig("out", loss_type=["sigmoid", "sft"], report_to="none")
    with pytest.raises(ValueError, match="ld_alpha"):
        MPOConfig("out", ld_alpha=0.5, report_to="none")


def test_collator_wrapper_is_generic():
    seen = []

    def inner(examples):  # stands for a processor-based collator returning a BatchFeature
        seen.extend(examples)
        return BatchFeature({"input_ids": torch.zeros(2 * len(examples), 3, dtype=torch.long)})

    batch = DataCollatorWithMPOLabels(inner)([dict(row) for row in ROWS])
    assert all(column not in example for example in seen for column in MPO_LABEL_COLUMNS)
    assert batch["rejected_format"].tolist() == [0.0, 1.0] and batch["chosen_outcome"].dtype == torch.float32
    with pytest.raises(ValueError, match="chosen_outcome"):
        DataCollatorWithMPOLabels(inner)([{k: v for k, v in ROWS[0].items() if k != "chosen_outcome"}])


# 2. The trainer on a tiny Llama


@pytest.fixture(scope="module")
def tokenizer():
    words = [row[key] for row in ROWS for key in ("prompt", "chosen", "rejected")]
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    assert len(tokenizer) <= 64
    return tokenizer


def tiny_llama(tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def training_kwargs(tmp_path, **kwargs):
    return dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        bf16=False,
        activation_checkpointing=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        beta=0.5,
        seed=0,
        **kwargs,
    )


def perturb(model):
    """Moves the policy away from the reference, so the log-ratios are not zero."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.2 * torch.randn(param.shape, generator=generator))


def batch_loss(trainer, rows):
    examples = [trainer.train_dataset[i] for i in range(len(rows))]
    batch = trainer._prepare_inputs(trainer.data_collator(examples))
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch)


def test_trainer_matches_trl_dpo_trainer_with_sigmoid_bco_pair_sft(tokenizer, tmp_path):
    dataset = Dataset.from_list(ROWS)
    weights = [0.8, 0.2, 1.0]
    dpo = DPOTrainer(
        tiny_llama(tokenizer),
        ref_model=tiny_llama(tokenizer),
        args=DPOConfig(
            **training_kwargs(tmp_path / "dpo"), loss_type=["sigmoid", "bco_pair", "sft"], loss_weights=weights
        ),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    perturb(dpo.model)
    args = MPOConfig(
        **training_kwargs(tmp_path / "mpo"),
        preference_weight=weights[0],
        quality_weight=weights[1],
        generation_weight=weights[2],
        format_weight=0.0,
        outcome_weight=0.0,
    )
    mpo = MPOTrainer(
        tiny_llama(tokenizer),
        ref_model=tiny_llama(tokenizer),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    perturb(mpo.model)

    dpo_loss = batch_loss(dpo, ROWS)
    mpo_loss_value = batch_loss(mpo, ROWS)
    assert abs(dpo._metrics["train"]["rewards/margins"][0]) > 1e-2
    assert torch.allclose(mpo_loss_value, dpo_loss, atol=1e-6, rtol=1e-6)
    metrics = mpo._metrics["train"]
    assert metrics["rewards/margins"] == pytest.approx(dpo._metrics["train"]["rewards/margins"], abs=1e-6)
    assert "loss/outcome" in metrics and "loss/format" in metrics


def test_precomputed_reference_gives_the_same_loss(tokenizer, tmp_path):
    dataset = Dataset.from_list(ROWS)
    losses = []
    for precompute in (False, True):
        args = MPOConfig(**training_kwargs(tmp_path / str(precompute)), precompute_ref_log_probs=precompute)
        trainer = MPOTrainer(
            tiny_llama(tokenizer),
            ref_model=None if precompute else tiny_llama(tokenizer),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        perturb(trainer.model)  # after the precompute, so the reference is the initial policy
        losses.append(batch_loss(trainer, ROWS))
    assert "ref_chosen_logps" in trainer.train_dataset.column_names
    assert torch.allclose(losses[0], losses[1], atol=1e-6)


def test_train_all_five_terms(tokenizer, tmp_path):
    dataset = Dataset.from_list(ROWS)
    args = MPOConfig(
        **training_kwargs(tmp_path),
        learning_rate=1e-2,
        max_steps=3,
        logging_steps=1,
        format_weight=0.5,
        outcome_weight=0.5,
        reward_shift=0.1,
    )
    trainer = MPOTrainer(
        tiny_llama(tokenizer),
        ref_model=tiny_llama(tokenizer),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )

    # the labels reach the loss: flipping the outcome labels changes it
    loss = batch_loss(trainer, ROWS)
    flipped_rows = [
        dict(row, chosen_outcome=1 - row["chosen_outcome"], rejected_outcome=1 - row["rejected_outcome"])
        for row in (trainer.train_dataset[i] for i in range(len(ROWS)))
    ]
    flipped_batch = trainer._prepare_inputs(trainer.data_collator(flipped_rows))
    with torch.no_grad():
        flipped_loss = trainer.compute_loss(trainer.model, flipped_batch)
    assert torch.isfinite(loss) and not torch.allclose(loss, flipped_loss)
    trainer._metrics["train"].clear()

    before = {name: param.detach().clone() for name, param in trainer.model.named_parameters()}
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    changed = [name for name, param in trainer.model.named_parameters() if not torch.equal(before[name], param)]
    assert len(changed) == len(before)
    logs = [log for log in trainer.state.log_history if "loss/outcome" in log]
    assert len(logs) == 3
    for log in logs:
        assert all(
            math.isfinite(log[f"loss/{name}"]) for name in ("preference", "quality", "generation", "format", "outcome")
        )
    # the repeated batch is learned: the MPO loss went down
    assert logs[-1]["loss"] < logs[0]["loss"]
