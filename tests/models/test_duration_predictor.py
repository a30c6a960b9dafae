import pytest
import torch

from deepdubber_hf import DurationPredictorModel

DV, DC = 6, 5


def model(seed=0):
    torch.manual_seed(seed)
    return DurationPredictorModel(video_dim=DV, condition_dim=DC, vocab_size=16, hidden_size=32, num_layers=2,
                                  num_attention_heads=2, dropout=0.0)  # fmt: skip


def clips(n, generator, frames=30):
    """Video features whose first channel is 1 while a mouth moves (the speech), noise elsewhere."""
    onset = torch.randint(0, frames // 2, (n,), generator=generator)
    offset = onset + torch.randint(5, frames // 2, (n,), generator=generator)
    video = torch.randn(n, frames, DV, generator=generator) * 0.3
    index = torch.arange(frames)
    video[..., 0] = ((index >= onset[:, None]) & (index <= offset[:, None])).float()
    text = torch.randint(0, 16, (n, 8), generator=generator)
    return video, text, onset.float() / 10, offset.float() / 10


def test_it_learns_where_the_speech_is():
    predictor = model()
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(predictor.parameters(), lr=3e-3)
    for _ in range(150):
        video, text, onset, offset = clips(32, g)
        loss = predictor(video_features=video, text_ids=text, onset_s=onset, offset_s=offset).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    video, text, onset, offset = clips(64, torch.Generator().manual_seed(99))
    with torch.no_grad():
        out = predictor.eval()(video_features=video, text_ids=text)
    error = ((out.onset_s - onset).abs().mean() + (out.offset_s - offset).abs().mean()) / 2
    spread = ((onset - onset.mean()).abs().mean() + (offset - offset.mean()).abs().mean()) / 2  # a constant guess
    assert error < 0.25 * spread, (float(error), float(spread))
    assert torch.allclose(out.duration_s, out.offset_s - out.onset_s)


def test_padding_frames_and_tokens_change_nothing(tmp_path):
    predictor = model().eval()
    video, text, _, _ = clips(1, torch.Generator().manual_seed(1), frames=20)
    conclusion = torch.randn(1, 4, DC)
    with torch.no_grad():
        alone = predictor(video_features=video, text_ids=text, condition_embeds=conclusion)
        padded = predictor(
            video_features=torch.cat([video, torch.randn(1, 7, DV)], dim=1),
            video_mask=torch.arange(27)[None] < 20,
            text_ids=torch.cat([text, torch.full((1, 3), -1)], dim=1),
            condition_embeds=torch.cat([conclusion, torch.randn(1, 2, DC)], dim=1),
            condition_mask=torch.arange(6)[None] < 4,
        )
    assert torch.allclose(alone.onset_s, padded.onset_s, atol=1e-5)
    assert torch.allclose(alone.offset_s, padded.offset_s, atol=1e-5)
    assert torch.isinf(padded.start_logits[0, 20:]).all()

    predictor.save_pretrained(tmp_path / "duration")
    loaded = DurationPredictorModel.from_pretrained(tmp_path / "duration").eval()
    with torch.no_grad():
        again = loaded(video_features=video, text_ids=text, condition_embeds=conclusion)
    assert torch.equal(again.onset_s, alone.onset_s)


def test_bad_inputs_are_named():
    predictor = model()
    video, text, onset, _ = clips(2, torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="onset_s and offset_s"):
        predictor(video_features=video, text_ids=text, onset_s=onset)
    with pytest.raises(ValueError, match="valid video frame"):
        predictor(video_features=video, text_ids=text, video_mask=torch.zeros(2, 30, dtype=torch.bool))
