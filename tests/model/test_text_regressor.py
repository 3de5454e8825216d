"""Text-only reference: frozen LM read at the last real token + W_t."""

from __future__ import annotations

import torch

from deepmlf.model import build_text_regressor

from .conftest import make_batch, small_config


def test_text_regressor_reads_the_last_real_token(new_backbone):
    reference = new_backbone()
    model = build_text_regressor(small_config(), backbone=new_backbone()).eval()
    b = make_batch()
    out = model(b)
    assert out.y_t.shape == (4,) and out.prediction is out.y_t
    with torch.no_grad():
        hidden = reference.model.base_model(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
    last = b.attention_mask.sum(1) - 1
    expected = model.head(hidden[torch.arange(4), last])
    torch.testing.assert_close(out.y_t, expected)
    torch.testing.assert_close(out.loss, (out.y_t - b.labels).abs().mean())


def test_only_the_head_trains_and_round_trips(new_backbone):
    model = build_text_regressor(small_config(), backbone=new_backbone())
    model.train()
    assert not model.backbone_model.training
    model(make_batch()).loss.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {"head.proj.weight", "head.proj.bias"}
    counts = model.parameter_counts()
    assert counts["trainable"] == 33 and counts["by_module"]["backbone"]["trainable"] == 0
    state = model.trainable_state_dict()
    assert set(state) == {"head.proj.weight", "head.proj.bias"}
    other = build_text_regressor(small_config(), backbone=new_backbone())
    other.load_trainable_state_dict(state)
    b = make_batch(labels=False)
    assert model(b).loss is None
    torch.testing.assert_close(other.eval()(b).y_t, model.eval()(b).y_t)
