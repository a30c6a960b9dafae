"""Mixed Preference Optimization (MPO) of the chain-of-thought reasoner (§3.2.2, eq. 6–13 of the paper).

The objective mixes five terms, each weighted (eq. 6):

    L = w_p·L_p + w_q·L_q + w_g·L_g + w_f·L_f + w_o·L_o

- ``L_p``, the preference loss: DPO's sigmoid loss on the chosen/rejected pair (eq. 7);
- ``L_q``, the quality loss: BCO's binary classifier on each response alone, with a reward shift δ (eq. 8–10);
- ``L_g``, the generation loss: SFT on the chosen response (eq. 11);
- ``L_f``, the format loss: a binary cross-entropy against a 0/1 label saying whether the response is well formed
  (the four tagged sections of :mod:`deepdubber_hf.reasoner.cot`) (eq. 12);
- ``L_o``, the outcome loss: the same against a 0/1 label saying whether the response's conclusion is right (eq. 13).

:func:`mpo_loss` computes all five from log-probabilities, :class:`MPOTrainer` runs it inside trl's `DPOTrainer`.

Shapes: ``b`` preference pairs, so ``2b`` responses (the chosen ones first, then the rejected ones, as trl lays
out a batch), ``t`` token positions (shifted: position ``i`` scores token ``i + 1``).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from accelerate.logging import get_logger
from trl import DPOConfig, DPOTrainer

from .cot import TAGS

logger = get_logger(__name__)

# The per-response labels an MPO dataset carries next to trl's `prompt` / `chosen` / `rejected` (/ `images`) columns
MPO_LABEL_COLUMNS = ("chosen_format", "chosen_outcome", "rejected_format", "rejected_outcome")

# Batch entries that are not forward inputs of the model (trl's own, then ours)
_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", *MPO_LABEL_COLUMNS}

# The answer section of a response, whose tokens score the outcome (eq. 13); see `answer_token_mask`
ANSWER_TAG = TAGS[-1]


@dataclass
class MPOConfig(DPOConfig):
    r"""
    Configuration class for the [`MPOTrainer`]: trl's [`~trl.DPOConfig`] plus the weights of the five MPO terms
    (eq. 6) and BCO's reward shift (eq. 9–10).

    The loss is set by the weights alone, so trl's `loss_type`, `loss_weights`, `ld_alpha`, `f_divergence_type`,
    `use_weighting` and `label_smoothing` must keep their defaults: [`MPOTrainer`] does not apply them. `beta` is
    the β of eq. 7, 9 and 10.

    Parameters:
        preference_weight (`float`, *optional*, defaults to `0.8`):
            w_p, the weight of the DPO preference loss L_p (eq. 7). InternVL's MPO (arXiv 2411.10442) uses 0.8.
        quality_weight (`float`, *optional*, defaults to `0.2`):
            w_q, the weight of the BCO quality loss L_q (eq. 8). InternVL's MPO uses 0.2.
        generation_weight (`float`, *optional*, defaults to `1.0`):
            w_g, the weight of the SFT generation loss L_g (eq. 11). InternVL's MPO uses 1.0.
        format_weight (`float`, *optional*, defaults to `0.2`):
            w_f, the weight of the format loss L_f (eq. 12). The paper does not give it. For a well-formed
            response, L_f is its length-normalised negative log-likelihood (see [`mpo_loss`]), an SFT term on the
            scale of L_g: a weight of 1.0 would double the SFT signal on most chosen responses. Like L_q it is an
            absolute, per-response signal, so it gets L_q's weight.
        outcome_weight (`float`, *optional*, defaults to `0.2`):
            w_o, the weight of the outcome loss L_o (eq. 13). The paper does not give it; 0.2 for the same reason
            as `format_weight`.
        reward_shift (`float`, *optional*, defaults to `0.0`):
            δ of eq. 9–10, subtracted from both implicit rewards in L_q. With 0.0, L_q is trl's `"bco_pair"` loss.
            BCO keeps a running mean of the rewards there; the paper calls it a constant "for stabilizing training",
            and so it is here.

    Example:

    ```py
    >>> from deepdubber_hf.reasoner.mpo import MPOConfig
    >>> args = MPOConfig(output_dir="mpo", format_weight=0.5, bf16=False, report_to="none")
    >>> args.preference_weight, args.format_weight
    (0.8, 0.5)
    ```
    """

    preference_weight: float = field(
        default=0.8,
        metadata={"help": "w_p, the weight of the DPO preference loss L_p (eq. 7)."},
    )
    quality_weight: float = field(
        default=0.2,
        metadata={"help": "w_q, the weight of the BCO quality loss L_q (eq. 8)."},
    )
    generation_weight: float = field(
        default=1.0,
        metadata={"help": "w_g, the weight of the SFT generation loss L_g (eq. 11)."},
    )
    format_weight: float = field(
        default=0.2,
        metadata={"help": "w_f, the weight of the format loss L_f (eq. 12)."},
    )
    outcome_weight: float = field(
        default=0.2,
        metadata={"help": "w_o, the weight of the outcome loss L_o (eq. 13)."},
    )
    reward_shift: float = field(
        default=0.0,
        metadata={"help": "δ of eq. 9–10, subtracted from both implicit rewards of the BCO quality loss L_q."},
    )

    def __post_init__(self):
        weights = {
            "preference_weight": self.preference_weight,
            "quality_weight": self.quality_weight,
            "generation_weight": self.generation_weight,
            "format_weight": self.format_weight,
            "outcome_weight": self.outcome_weight,
        }
        negative = [name for name, weight in weights.items() if weight < 0]
        if negative:
            raise ValueError(f"MPOConfig: {', '.join(negative)} must be >= 0, got {weights}. Use 0.0 to drop a term.")
        if not any(weights.values()):
            raise ValueError(
                f"MPOConfig: all five MPO weights are 0 ({weights}); set at least one to a positive value."
            )
        if self.loss_type not in ("sigmoid", ["sigmoid"]) or self.loss_weights is not None:
            raise ValueError(
                f"MPOConfig: `loss_type={self.loss_type!r}` / `loss_weights={self.loss_weights!r}` are not used by "
                "MPOTrainer, whose loss is set by `preference_weight`, `quality_weight`, `generation_weight`, "
                "`format_weight` and `outcome_weight`. Leave `loss_type` and `loss_weights` unset."
            )
        unsupported = {
            "ld_alpha": (self.ld_alpha, None),
            "f_divergence_type": (self.f_divergence_type, "reverse_kl"),
            "use_weighting": (self.use_weighting, False),
            "label_smoothing": (self.label_smoothing, 0.0),
        }
        changed = [f"{name}={value!r}" for name, (value, default) in unsupported.items() if value != default]
        if changed:
            raise ValueError(
                f"MPOConfig: {', '.join(changed)} would be ignored by MPOTrainer (eq. 6–13 use plain DPO/BCO "
                "rewards). Leave these at their defaults."
            )
        super().__post_init__()


def _bernoulli_nll(log_probs: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """`-[y log p + (1 - y) log(1 - p)]` from `log p`, with `p` kept in `[eps, 1 - eps]`."""
    log_probs = log_probs.clamp(min=math.log(eps), max=math.log1p(-eps))
    log_one_minus = torch.log(-torch.expm1(log_probs))  # log(1 - p), exact for p near 1
    return -(labels * log_probs + (1 - labels) * log_one_minus)


def mpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    per_token_logps: torch.Tensor,
    completion_mask: torch.Tensor,
    answer_mask: torch.Tensor | None,
    format_labels: torch.Tensor,
    outcome_labels: torch.Tensor,
    *,
    beta: float = 0.1,
    reward_shift: float = 0.0,
    preference_weight: float = 0.8,
    quality_weight: float = 0.2,
    generation_weight: float = 1.0,
    format_weight: float = 0.2,
    outcome_weight: float = 0.2,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""
    The MPO loss (eq. 6) and its five terms (eq. 7–13), from the policy's and the reference's log-probabilities.

    With the implicit rewards r_c = β log π_θ(y_c|x)/π_0(y_c|x) and r_r = β log π_θ(y_r|x)/π_0(y_r|x):

    - L_p = -log σ(r_c - r_r), averaged over the pairs (eq. 7; trl's `"sigmoid"`);
    - L_q = -log σ(r_c - δ) - log σ(-(r_r - δ)), averaged over the pairs (eq. 8–10; trl's `"bco_pair"` when δ = 0);
    - L_g = -Σ_i log π_θ(y_c^i|x^i) / Σ_i |y_c^i|, the mean negative log-probability of the chosen tokens, pooled
      over the batch (trl's `"sft"`). For one pair this is eq. 11; over a batch it is eq. 11 averaged with each
      response weighted by its length |y_c^i|, i.e. every chosen token counts once.
    - L_f = mean over the 2b responses y (chosen and rejected) of -[f log p_f + (1 - f) log(1 - p_f)] (eq. 12);
    - L_o = the same with the outcome label o and p_o (eq. 13).

    The paper leaves p_f and p_o ("the probability ... predicted by the model") open. Here they are read off the
    policy itself, as the length-normalised probability it gives the response:

    - p_f = exp(mean over the tokens of y of log π_θ(token | context)), the geometric mean of the token
      probabilities of the whole response. Minimising L_f raises the likelihood of well-formed responses (for f = 1
      the term is y's per-token negative log-likelihood) and pushes ill-formed ones down through log(1 - p_f), an
      unlikelihood term; so the policy learns to write in the format, not a separate classifier head to judge it.
      Length normalisation keeps p_f in a usable range whatever the response length (the plain sequence
      probability would be ~0 for any long response, making every label-1 term huge and every label-0 term null).
    - p_o = the same mean over the tokens of the answer only (`answer_mask`: the `<CONCLUSION>` section, see
      [`answer_token_mask`]), so the outcome label acts on the answer, not on the reasoning or the tags. A response
      with no answer mask falls back to its whole completion.

    p is kept in [eps, 1 - eps] (in log space, so log(1 - p) stays exact near 1) to bound the terms. The sum of
    eq. 12–13 runs over the 2b responses of the batch and is divided by 2b, so the terms do not grow with the batch
    size and their weights compare with those of the batch-averaged L_p, L_q, L_g. Labels may be soft (in [0, 1]).

    Args:
        chosen_logps (`torch.Tensor` of shape `(b,)`):
            log π_θ(y_c|x), summed over the chosen tokens.
        rejected_logps (`torch.Tensor` of shape `(b,)`):
            log π_θ(y_r|x), summed over the rejected tokens.
        ref_chosen_logps (`torch.Tensor` of shape `(b,)`):
            log π_0(y_c|x) under the reference model.
        ref_rejected_logps (`torch.Tensor` of shape `(b,)`):
            log π_0(y_r|x) under the reference model.
        per_token_logps (`torch.Tensor` of shape `(2b, t)`):
            The policy's log-probability of each token, the chosen responses' rows first, then the rejected ones'.
        completion_mask (`torch.Tensor` of shape `(2b, t)`):
            1 on the response tokens, 0 on the prompt and padding.
        answer_mask (`torch.Tensor` of shape `(2b, t)`, *optional*):
            1 on the answer tokens (a subset of `completion_mask`). `None` scores the outcome on the whole response.
        format_labels (`torch.Tensor` of shape `(2b,)`):
            f ∈ {0, 1}, whether each response is well formed (chosen first, then rejected).
        outcome_labels (`torch.Tensor` of shape `(2b,)`):
            o ∈ {0, 1}, whether each response's answer is right (chosen first, then rejected).
        beta (`float`, *optional*, defaults to `0.1`):
            β of eq. 7, 9, 10.
        reward_shift (`float`, *optional*, defaults to `0.0`):
            δ of eq. 9–10.
        preference_weight, quality_weight, generation_weight, format_weight, outcome_weight (`float`, *optional*):
            w_p, w_q, w_g, w_f, w_o of eq. 6 (defaults 0.8, 0.2, 1.0, 0.2, 0.2, as [`MPOConfig`]). A term whose
            weight is 0 is still returned, but not added to the loss.
        eps (`float`, *optional*, defaults to `1e-6`):
            p_f and p_o are kept in [eps, 1 - eps].

    Returns:
        `tuple[torch.Tensor, dict[str, torch.Tensor]]`: the scalar loss, and the five unweighted scalar terms under
        `"preference"`, `"quality"`, `"generation"`, `"format"` and `"outcome"`.

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf.reasoner.mpo import mpo_loss
    >>> per_token_logps = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.25]]))  # one pair, two tokens each
    >>> mask = torch.ones(2, 2)
    >>> loss, terms = mpo_loss(
    ...     per_token_logps[0:1].sum(1), per_token_logps[1:2].sum(1), torch.tensor([-2.0]), torch.tensor([-2.0]),
    ...     per_token_logps, mask, None, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]),
    ... )
    >>> round(terms["generation"].item(), 4)  # -log 0.5
    0.6931
    ```
    """
    n = per_token_logps.size(0)
    if chosen_logps.size(0) * 2 != n or format_labels.shape != (n,) or outcome_labels.shape != (n,):
        raise ValueError(
            f"mpo_loss: per_token_logps has {n} rows, chosen_logps {chosen_logps.size(0)} pairs, format_labels "
            f"{tuple(format_labels.shape)}, outcome_labels {tuple(outcome_labels.shape)}; expected 2b rows and "
            "labels of shape (2b,), the chosen responses first, then the rejected ones."
        )
    completion_mask = completion_mask.to(per_token_logps.dtype)
    answer_mask = completion_mask if answer_mask is None else answer_mask.to(per_token_logps.dtype)
    format_labels = format_labels.to(per_token_logps.dtype)
    outcome_labels = outcome_labels.to(per_token_logps.dtype)

    chosen_rewards = beta * (chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (rejected_logps - ref_rejected_logps)

    # eq. 7
    preference = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    # eq. 8–10
    quality = (-F.logsigmoid(chosen_rewards - reward_shift) - F.logsigmoid(-(rejected_rewards - reward_shift))).mean()
    # eq. 11, as trl's "sft": the token mean over all chosen tokens of the batch
    chosen_token_logps, _ = per_token_logps.chunk(2, dim=0)
    chosen_mask, _ = completion_mask.chunk(2, dim=0)
    generation = -(chosen_token_logps * chosen_mask).sum() / chosen_mask.sum().clamp(min=1)

    # eq. 12–13: log p_f, log p_o are length-normalised response (answer) log-probabilities
    log_p_format = (per_token_logps * completion_mask).sum(1) / completion_mask.sum(1).clamp(min=1)
    log_p_outcome = (per_token_logps * answer_mask).sum(1) / answer_mask.sum(1).clamp(min=1)
    format_ = _bernoulli_nll(log_p_format, format_labels, eps).mean()
    outcome = _bernoulli_nll(log_p_outcome, outcome_labels, eps).mean()

    terms = {
        "preference": preference,
        "quality": quality,
        "generation": generation,
        "format": format_,
        "outcome": outcome,
    }
    weights = {
        "preference": preference_weight,
        "quality": quality_weight,
        "generation": generation_weight,
        "format": format_weight,
        "outcome": outcome_weight,
    }
    # eq. 6; a term with weight 0 is left out rather than multiplied by 0, so a non-finite value cannot leak in
    loss = sum(weights[name] * term for name, term in terms.items() if weights[name] != 0)
    return loss, terms


def _find_last(sequence: list[int], pattern: list[int], end: int | None = None) -> int:
    """Start of the last occurrence of `pattern` in `sequence[:end]`, or -1."""
    end = len(sequence) if end is None else end
    for start in range(end - len(pattern), -1, -1):
        if sequence[start : start + len(pattern)] == pattern:
            return start
    return -1


def _find_first(sequence: list[int], pattern: list[int], start: int) -> int:
    """Start of the first occurrence of `pattern` in `sequence[start:]`, or -1."""
    for index in range(start, len(sequence) - len(pattern) + 1):
        if sequence[index : index + len(pattern)] == pattern:
            return index
    return -1


def answer_token_mask(
    token_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    start_ids: list[int],
    end_ids: list[int] | None = None,
) -> torch.Tensor:
    r"""
    The tokens of each response's answer: those after its last `start_ids` sequence (the `<CONCLUSION>` tag) and
    before the next `end_ids` sequence (`</CONCLUSION>`), or the end of the response if there is none.

    The tags are left out: they are format, scored by L_f. A response with no start tag, or an empty answer, gets
    its whole completion, so L_o then scores the response as a whole.

    Args:
        token_ids (`torch.Tensor` of shape `(n, t)`):
            Token ids, aligned with `completion_mask`.
        completion_mask (`torch.Tensor` of shape `(n, t)`):
            1 on the response tokens.
        start_ids (`list[int]`):
            The ids of the opening tag, e.g. `tokenizer.encode("<CONCLUSION>", add_special_tokens=False)`. Empty
            means no answer is ever found.
        end_ids (`list[int]`, *optional*):
            The ids of the closing tag. `None` or empty runs every answer to the end of its response.

    Returns:
        `torch.BoolTensor` of shape `(n, t)`: the answer tokens, a non-empty subset of each non-empty completion.

    Example:

    ```py
    >>> import torch
    >>> from deepdubber_hf.reasoner.mpo import answer_token_mask
    >>> ids = torch.tensor([[5, 9, 7, 8, 6, 2], [5, 7, 8, 2, 0, 0]])  # 9 = <CONCLUSION>, 6 = </CONCLUSION>
    >>> mask = torch.tensor([[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0]])
    >>> answer_token_mask(ids, mask, [9], [6]).int()
    tensor([[0, 0, 1, 1, 0, 0],
            [0, 1, 1, 1, 0, 0]], dtype=torch.int32)
    ```
    """
    end_ids = end_ids or []
    answer_mask = completion_mask.bool().clone()
    if not start_ids:
        return answer_mask
    for row in range(token_ids.size(0)):
        positions = completion_mask[row].nonzero(as_tuple=True)[0]
        tokens = token_ids[row, positions].tolist()
        start = _find_last(tokens, start_ids)
        if start < 0:
            continue
        begin = start + len(start_ids)
        end = _find_first(tokens, end_ids, begin) if end_ids else -1
        end = len(tokens) if end < 0 else end
        if end <= begin:
            continue
        answer_mask[row] = False
        answer_mask[row, positions[begin:end]] = True
    return answer_mask


@dataclass
class DataCollatorWithMPOLabels:
    r"""
    Wraps a preference collator and adds the MPO labels to its batch.

    The wrapped collator (trl's [`~trl.trainer.dpo_trainer.DataCollatorForPreference`] for tokenized text,
    [`~trl.trainer.dpo_trainer.DataCollatorForVisionPreference`] for images and video frames, or any other) sees the
    examples without the label columns and may return a `dict` or a [`~transformers.BatchFeature`]; the batch then
    gets `chosen_format`, `chosen_outcome`, `rejected_format` and `rejected_outcome`, float tensors of shape `(b,)`.

    Args:
        collator (`Callable[[list[dict]], dict]`):
            The preference collator to wrap.

    Example:

    ```py
    >>> from trl.trainer.dpo_trainer import DataCollatorForPreference
    >>> from deepdubber_hf.reasoner.mpo import DataCollatorWithMPOLabels
    >>> collator = DataCollatorWithMPOLabels(DataCollatorForPreference(pad_token_id=0))
    >>> batch = collator([
    ...     {"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5],
    ...      "chosen_format": 1.0, "chosen_outcome": 1.0, "rejected_format": 1.0, "rejected_outcome": 0.0},
    ... ])
    >>> batch["rejected_outcome"]
    tensor([0.])
    ```
    """

    collator: Callable[[list[dict[str, Any]]], Any]

    def __call__(self, examples: list[dict[str, Any]]) -> Any:
        labels = {}
        for column in MPO_LABEL_COLUMNS:
            missing = [index for index, example in enumerate(examples) if column not in example]
            if missing:
                raise ValueError(
                    f"Example {missing[0]} of the batch has no `{column}` column. MPO needs the 0/1 columns "
                    f"{list(MPO_LABEL_COLUMNS)} in every example; add them to the dataset (and keep them if you "
                    "set `remove_unused_columns`, which MPOTrainer already does)."
                )
            values = torch.tensor([float(example[column]) for example in examples], dtype=torch.float32)
            if ((values < 0) | (values > 1)).any():
                raise ValueError(
                    f"`{column}` must lie in [0, 1] (1 = well formed / correct), got {values.tolist()}; fix the labels "
                    "of the dataset."
                )
            labels[column] = values
        # The wrapped collator may mutate its examples (trl's vision collator does): give it copies without labels
        batch = self.collator([{k: v for k, v in example.items() if k not in labels} for example in examples])
        for column, values in labels.items():
            batch[column] = values
        return batch


class MPOTrainer(DPOTrainer):
    r"""
    Trainer for Mixed Preference Optimization of the reasoner (§3.2.2, eq. 6–13), a subclass of trl's
    [`~trl.DPOTrainer`] whose loss is [`mpo_loss`].

    Everything else is trl's: models (or a PEFT adapter) and reference model, dataset preparation, collators,
    precomputed reference log-probabilities, vision-language models. The datasets hold trl's preference columns
    (`prompt`, `chosen`, `rejected`, and `images` for a VLM: the sampled video frames) plus four 0/1 float labels:
    `chosen_format`, `rejected_format` (the response is well formed) and `chosen_outcome`, `rejected_outcome` (its
    conclusion is right). The answer scored by the outcome loss is the `<CONCLUSION>` section, found in the
    completion ids as the tokens of `tokenizer.encode("<CONCLUSION>", add_special_tokens=False)` (one id when the
    tag is an added token) up to those of `"</CONCLUSION>"`.

    Besides trl's metrics (`rewards/*`, `logps/*`, `entropy`, `mean_token_accuracy`, ...), each unweighted term is
    logged as `loss/preference`, `loss/quality`, `loss/generation`, `loss/format` and `loss/outcome`.

    Args:
        model (`str`, [`~transformers.PreTrainedModel`] or [`~peft.PeftModel`]):
            The policy, as for [`~trl.DPOTrainer`].
        ref_model ([`~transformers.PreTrainedModel`], *optional*):
            The reference π_0. Without it, trl reloads `model` from its name or path (so a model built in memory
            needs one, or a PEFT adapter, or `precompute_ref_log_probs=True`).
        args ([`MPOConfig`], *optional*):
            The configuration. `None` uses the defaults of [`MPOConfig`].
        data_collator (`Callable`, *optional*):
            A preference collator; it is wrapped in [`DataCollatorWithMPOLabels`]. `None` uses trl's.
        train_dataset ([`~datasets.Dataset`] or [`~datasets.IterableDataset`]):
            Preference pairs with the four label columns.
        eval_dataset ([`~datasets.Dataset`], [`~datasets.IterableDataset`] or `dict`, *optional*):
            Same layout as `train_dataset`.
        processing_class ([`~transformers.PreTrainedTokenizerBase`] or [`~transformers.ProcessorMixin`], *optional*):
            The tokenizer or processor, as for [`~trl.DPOTrainer`].
        **kwargs:
            The other arguments of [`~trl.DPOTrainer`] (`compute_metrics`, `callbacks`, `optimizers`,
            `quantization_config`, `peft_config`).

    Example:

    ```py
    >>> from datasets import Dataset
    >>> from deepdubber_hf.reasoner.mpo import MPOConfig, MPOTrainer
    >>> dataset = Dataset.from_list([{
    ...     "prompt": "Who speaks?", "chosen": " <CONCLUSION>two</CONCLUSION>", "rejected": " one",
    ...     "chosen_format": 1.0, "chosen_outcome": 1.0, "rejected_format": 0.0, "rejected_outcome": 0.0,
    ... }])
    >>> trainer = MPOTrainer(model, ref_model=ref_model, args=MPOConfig("mpo"), train_dataset=dataset,
    ...                      processing_class=tokenizer)  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    ```
    """

    _tag_names: ClassVar[list[str]] = ["trl", "dpo", "mpo"]
    _name = "MPO"
    _paper: ClassVar[dict[str, str]] = {
        "title": "Enhancing the Reasoning Ability of Multimodal Large Language Models via Mixed Preference "
        "Optimization",
        "id": "2411.10442",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{wang2024mpo,
                title        = {{Enhancing the Reasoning Ability of Multimodal Large Language Models via Mixed Preference Optimization}},
                author       = {Weiyun Wang and Zhe Chen and Wenhai Wang and Yue Cao and Yangzhou Liu and Zhangwei Gao and Jinguo Zhu and Xizhou Zhu and Lewei Lu and Yu Qiao and Jifeng Dai},
                year         = 2024,
                journal      = {arXiv preprint arXiv:2411.10442},
            }"""),
    }

    def __init__(
        self,
        model,
        ref_model=None,
        args: MPOConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path or "model"
            args = MPOConfig(f"{model_name.split('/')[-1]}-MPO")
        elif not isinstance(args, MPOConfig):
            raise ValueError(
                f"MPOTrainer needs an `MPOConfig`, got `{type(args).__name__}`; build `MPOConfig(...)` with the same "
                "arguments plus the MPO weights."
            )
        if train_dataset is None:
            raise ValueError("`train_dataset` is required: preference pairs with the four MPO label columns.")
        named_datasets = {"train_dataset": train_dataset}
        if isinstance(eval_dataset, dict):
            named_datasets.update({f"eval_dataset[{name!r}]": dataset for name, dataset in eval_dataset.items()})
        elif eval_dataset is not None:
            named_datasets["eval_dataset"] = eval_dataset
        for name, dataset in named_datasets.items():
            missing = [column for column in MPO_LABEL_COLUMNS if column not in next(iter(dataset))]
            if missing:
                raise ValueError(
                    f"`{name}` has no {missing} column(s). MPO needs, besides `prompt`/`chosen`/`rejected`, the 0/1 "
                    f"labels {list(MPO_LABEL_COLUMNS)} (format: the response is well formed; outcome: its answer "
                    "is right); add them to the dataset."
                )

        super().__init__(
            model,
            ref_model=ref_model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        # trl builds its default collator inside `__init__`; the labels are added on top of whichever it uses. The
        # reference log-probs precomputed above do not need them.
        if not isinstance(self.data_collator, DataCollatorWithMPOLabels):
            self.data_collator = DataCollatorWithMPOLabels(self.data_collator)
        self._answer_start_ids = self._tokenizer.encode(f"<{ANSWER_TAG}>", add_special_tokens=False)
        self._answer_end_ids = self._tokenizer.encode(f"</{ANSWER_TAG}>", add_special_tokens=False)

    def _set_signature_columns_if_needed(self):
        # The MPO labels are no model input, so `remove_unused_columns` would drop them: keep them.
        super()._set_signature_columns_if_needed()
        extra = [column for column in MPO_LABEL_COLUMNS if column not in self._signature_columns]
        self._signature_columns = [*self._signature_columns, *extra]

    def compute_ref_log_probs(self, model, inputs):
        # The MPO labels would reach the reference model's forward as keyword arguments: drop them first.
        inputs = {key: value for key, value in inputs.items() if key not in MPO_LABEL_COLUMNS}
        return super().compute_ref_log_probs(model, inputs)

    def _compute_loss(self, model, inputs, return_outputs):
        # Replaces trl's `loss_type` mix with the five MPO terms (eq. 6–13); the forward passes are trl's.
        mode = "train" if self.model.training else "eval"
        model_kwargs = {key: value for key, value in inputs.items() if key not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        shift_completion_mask = completion_mask[..., 1:]  # (2b, t)
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        # Prompt-learning PEFT prepends virtual tokens to the outputs; keep the positions of the real tokens
        seq_len = shift_completion_mask.size(1)
        per_token_logps = outputs.log_probs[:, -seq_len:]  # (2b, t)
        chosen_logps, rejected_logps = per_token_logps.sum(dim=1).chunk(2, dim=0)  # (b,), (b,)

        if self.precompute_ref_logps:
            ref_chosen_logps, ref_rejected_logps = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_model = self.ref_model if self.ref_model is not None else self.model  # PEFT: adapter disabled
            ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(ref_model, inputs)

        answer_mask = answer_token_mask(
            inputs["input_ids"][:, 1:], shift_completion_mask, self._answer_start_ids, self._answer_end_ids
        )
        format_labels = torch.cat([inputs["chosen_format"], inputs["rejected_format"]])  # (2b,)
        outcome_labels = torch.cat([inputs["chosen_outcome"], inputs["rejected_outcome"]])  # (2b,)
        loss, terms = mpo_loss(
            chosen_logps,
            rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            per_token_logps,
            shift_completion_mask,
            answer_mask,
            format_labels,
            outcome_labels,
            beta=self.beta,
            reward_shift=self.args.reward_shift,
            preference_weight=self.args.preference_weight,
            quality_weight=self.args.quality_weight,
            generation_weight=self.args.generation_weight,
            format_weight=self.args.format_weight,
            outcome_weight=self.args.outcome_weight,
        )

        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(outputs.aux_loss).mean().item())
        self._log_metrics(
            mode,
            inputs,
            outputs,
            seq_len,
            shift_completion_mask,
            chosen_logps,
            rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            terms,
        )

        if return_outputs:
            # trl's deprecated `compute_metrics` path: the fused LM head builds no logits, so recompute them
            with torch.no_grad():
                outputs = model(**model_kwargs)
        return (loss, outputs) if return_outputs else loss

    def _log_metrics(
        self,
        mode,
        inputs,
        outputs,
        seq_len,
        shift_completion_mask,
        chosen_logps,
        rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        terms,
    ):
        """trl's DPO metrics, then the five MPO terms."""
        metrics = self._metrics[mode]
        gather = self.accelerator.gather_for_metrics
        mask = shift_completion_mask.bool()
        chosen_mask, rejected_mask = mask.chunk(2, dim=0)

        entropy_sum = gather((outputs.entropy[:, -seq_len:].detach() * mask).sum()).sum()
        total_tokens = gather(mask.sum()).sum()
        metrics["entropy"].append((entropy_sum / total_tokens).item() if total_tokens > 0 else 0.0)
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]

        chosen_mean_logits, rejected_mean_logits = outputs.mean_logits[:, -seq_len:].detach().chunk(2, dim=0)
        for name, mean_logits, side_mask in (
            ("chosen", chosen_mean_logits, chosen_mask),
            ("rejected", rejected_mean_logits, rejected_mask),
        ):
            total = gather(mean_logits[side_mask].sum()).sum().item()
            count = gather(side_mask.sum()).sum().item()
            metrics[f"logits/{name}"].append(total / count if count > 0 else 0.0)

        chosen_is_top1, _ = outputs.is_top1[:, -seq_len:].chunk(2, dim=0)
        correct = gather((chosen_is_top1 & chosen_mask).sum()).sum()
        count = gather(chosen_mask.sum()).sum()
        metrics["mean_token_accuracy"].append((correct / count).item() if count > 0 else 0.0)

        chosen_rewards = self.beta * (chosen_logps - ref_chosen_logps).detach()
        rejected_rewards = self.beta * (rejected_logps - ref_rejected_logps).detach()
        metrics["rewards/chosen"].append(self.accelerator.gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(self.accelerator.gather(rejected_rewards).mean().item())
        accuracies = (chosen_rewards > rejected_rewards).float()
        metrics["rewards/accuracies"].append(self.accelerator.gather(accuracies).mean().item())
        metrics["rewards/margins"].append(self.accelerator.gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(self.accelerator.gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(self.accelerator.gather(rejected_logps.detach()).mean().item())

        for name, term in terms.items():
            metrics[f"loss/{name}"].append(gather(term.detach()).mean().item())


__all__ = [
    "MPO_LABEL_COLUMNS",
    "DataCollatorWithMPOLabels",
    "MPOConfig",
    "MPOTrainer",
    "answer_token_mask",
    "mpo_loss",
]
