"""The training loop on a fake regressor (and a fake classifier): early stopping, best/last
checkpoints, exact resume; the task decides the metrics."""

from __future__ import annotations

import pytest
import torch

from deepmlf.errors import ConfigError
from deepmlf.io import read_jsonl
from deepmlf.train.checkpoint import load_best, load_last
from deepmlf.train.early_stopping import EarlyStopping
from deepmlf.tasks import ClassificationTask, MSATask
from deepmlf.train.evaluate import collect_predictions
from deepmlf.train.loop import Stage, fit, make_accelerator

from .conftest import FakeClassifier, FakeRegressor, fake_batches


def test_early_stopping_counts_epochs_without_improvement():
    es = EarlyStopping(mode="min", patience=2)
    stream = [1.0, 0.5, 0.5 - 1e-7, 0.6, 0.4, 0.45, float("nan")]
    improved = [es.step(v, epoch) for epoch, v in enumerate(stream, start=1)]
    # 0.5 - 1e-7 is not an improvement: the threshold is 1e-6 (the authors' trainer).
    assert improved == [True, True, False, False, True, False, False]
    assert (es.best, es.best_epoch, es.bad_epochs, es.should_stop) == (0.4, 5, 2, True)
    up = EarlyStopping(mode="max", patience=1)
    assert up.step(0.7, 1) and not up.step(0.6, 2) and up.should_stop


def _stage(model, *, lr=0.05, optimizer=None, **kw) -> Stage:
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=lr)
    defaults = dict(name="stage2", model=model, optimizer=opt, task=MSATask("mosi"), key_metric="MAE",
                    max_epochs=4, early_stop=3, grad_accum=2,
                    checkpoint_meta={"config": {"x": 1}, "audio_dim": 3, "vision_dim": 2})
    defaults.update(kw)
    return Stage(**defaults)


def test_fit_stops_after_early_stop_epochs_without_improvement(tmp_path):
    torch.manual_seed(0)
    model = FakeRegressor()
    # lr 0: validation never changes, so only epoch 1 improves and epochs 2..4 do not.
    stage = _stage(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), max_epochs=50, early_stop=3)
    res = fit(stage, fake_batches(5), fake_batches(2, seed=1), tmp_path, accelerator=make_accelerator("no", 2),
              progress=False)
    assert res.stop_reason == "early_stop"
    assert res.epochs == 4 and res.best_epoch == 1
    hist = read_jsonl(tmp_path / "history.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert [h["improved"] for h in hist] == [True, False, False, False]
    assert hist[-1]["step"] == 4 * 3  # 5 batches, accumulation 2 -> 3 optimiser steps per epoch
    assert {"loss", "task"} <= set(hist[0]["train"])
    assert {"MAE", "Has0_acc_2", "Loss", "task"} <= set(hist[0]["valid"])
    best = load_best(tmp_path / "best.pt")
    assert best["epoch"] == 1 and best["config"] == {"x": 1} and best["metrics"]["MAE"] == hist[0]["valid"]["MAE"]


def test_clipping_by_value_bounds_the_applied_update(tmp_path):
    torch.manual_seed(0)
    model = FakeRegressor()
    before = model.linear.weight.detach().clone()
    # SGD lr 1: the update equals the clipped gradient, so it is bounded by clip_grad.
    stage = _stage(model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), max_epochs=1, grad_accum=1,
                   clip_grad=1e-3, clip_mode="value", clip_params=[model.linear.weight], limit_batches=1)
    fit(stage, fake_batches(3), fake_batches(1), tmp_path, accelerator=make_accelerator("no", 1), progress=False)
    assert (model.linear.weight - before).abs().max() <= 1e-3 + 1e-9


def test_max_steps_and_limit_batches_cap_a_smoke_run(tmp_path):
    model = FakeRegressor()
    stage = _stage(model, max_epochs=10, max_steps=3, limit_batches=4, grad_accum=2)
    res = fit(stage, fake_batches(9), fake_batches(2), tmp_path, accelerator=make_accelerator("no", 2), progress=False)
    assert (res.stop_reason, res.global_step, res.epochs) == ("max_steps", 3, 2)


def test_key_metric_must_exist_for_the_dataset(tmp_path):
    stage = _stage(FakeRegressor(), key_metric="Mult_acc_3")  # a SIMS metric on MOSI
    with pytest.raises(ConfigError, match="train.key_metric='Mult_acc_3'.*Has0_acc_2"):
        fit(stage, fake_batches(2), fake_batches(1), tmp_path, accelerator=make_accelerator("no", 2), progress=False)


def test_the_loop_trains_a_classifier_on_the_classification_task(tmp_path):
    """Same loop, another task: valid metrics are the task's, selection follows its direction."""
    task = ClassificationTask(["neg", "neu", "pos"])
    torch.manual_seed(0)
    model = FakeClassifier(n_classes=3)
    stage = _stage(model, task=task, key_metric="weighted_f1", max_epochs=6, early_stop=6, lr=0.1)
    train, valid = fake_batches(6, classes=3), fake_batches(4, seed=1, classes=3)
    res = fit(stage, train, valid, tmp_path, accelerator=make_accelerator("no", 2), progress=False)
    hist = read_jsonl(tmp_path / "history.jsonl")
    assert list(hist[0]["valid"]) == [*task.metric_names, "Loss", "task"]
    f1 = [h["valid"]["weighted_f1"] for h in hist]
    assert res.best_value == max(f1) and res.best_epoch == f1.index(max(f1)) + 1  # "max" direction
    assert hist[-1]["train"]["loss"] < hist[0]["train"]["loss"]  # it trains
    # The valid "Loss" is the mean cross-entropy of the collected probabilities = the model's own loss.
    assert hist[-1]["valid"]["Loss"] == pytest.approx(hist[-1]["valid"]["task"], rel=1e-5)
    preds = collect_predictions(model, valid, task=task)
    assert preds.probs.shape == (16, 3) and preds.labels.dtype.kind == "i"
    assert preds.prediction.tolist() == preds.probs.argmax(1).tolist()
    with pytest.raises(ConfigError, match=r"train.key_metric='MAE' is not reported for task 'erc'; choose one of acc"):
        fit(_stage(FakeClassifier(3), task=task, key_metric="MAE"), train, valid, tmp_path / "x",
            accelerator=make_accelerator("no", 2), progress=False)


class Interrupt(Exception):
    pass


def _resumable_fit(out, *, callbacks=(), resume=False):
    torch.manual_seed(0)
    model = FakeRegressor()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    loader = torch.utils.data.DataLoader(fake_batches(6), batch_size=None, shuffle=True,
                                         generator=torch.Generator().manual_seed(3))
    stage = _stage(model, optimizer=opt, scheduler=sched, max_epochs=3, early_stop=10, grad_accum=2)
    res = fit(stage, loader, fake_batches(2, seed=1), out, accelerator=make_accelerator("no", 2), progress=False,
              resume=resume, callbacks=callbacks)
    return model, res


def test_resume_continues_exactly_where_the_interrupted_run_stopped(tmp_path):
    ref_model, ref = _resumable_fit(tmp_path / "ref")

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        _resumable_fit(tmp_path / "cut", callbacks=[stop_after_first])
    saved = load_last(tmp_path / "cut" / "last.pt", stage="stage2")
    assert (saved["epoch"], saved["global_step"], saved["stop_reason"]) == (1, 3, None)

    model, res = _resumable_fit(tmp_path / "cut", resume=True)
    assert (res.epochs, res.global_step) == (ref.epochs, ref.global_step) == (3, 9)
    hist = read_jsonl(tmp_path / "cut" / "history.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert [h["step"] for h in hist] == [3, 6, 9]
    ref_hist = read_jsonl(tmp_path / "ref" / "history.jsonl")
    assert [h["lr"] for h in hist] == [h["lr"] for h in ref_hist]
    # Same weights, shuffles and schedule as the uninterrupted run.
    for k, v in ref_model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert hist[-1]["valid"] == ref_hist[-1]["valid"]


def test_resume_drops_history_lines_written_after_the_last_checkpoint(tmp_path):
    _resumable_fit(tmp_path)
    path = tmp_path / "history.jsonl"
    lines = path.read_text().splitlines()
    # Simulate a crash after epoch 2's last.pt... by restoring an older last.pt is not possible, so
    # append a stray line instead: it is not counted in last.pt's history length.
    path.write_text("\n".join(lines + ['{"epoch": 99}']) + "\n")
    _, res = _resumable_fit(tmp_path, resume=True)  # finished: nothing trains
    assert [h["epoch"] for h in read_jsonl(path)] == [1, 2, 3]
    assert res.stop_reason == "max_epochs"


def test_accumulated_step_equals_one_big_batch_and_partial_groups_are_means(tmp_path):
    """Accumulating 2 batches of 4 gives the update of one batch of 8 (L1 means are equal-weighted);
    a trailing 1-batch group is a mean over 1 batch, not a half-sized gradient."""
    from deepmlf.data.batch import Batch

    def cat(bs):
        return Batch(**{f: (torch.cat([getattr(b, f) for b in bs]) if f != "ids" else sum((b.ids for b in bs), []))
                        for f in ("input_ids", "attention_mask", "audio", "audio_lengths", "vision",
                                  "vision_lengths", "labels", "ids")})

    batches = fake_batches(3)

    def run(loader, accum, sub):
        torch.manual_seed(0)
        model = FakeRegressor()
        stage = _stage(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), max_epochs=1, grad_accum=accum)
        fit(stage, loader, fake_batches(1), tmp_path / sub, accelerator=make_accelerator("no", 8), progress=False)
        return model.linear.weight.detach().clone()

    accumulated = run(batches, 2, "a")  # groups: [b0, b1], [b2]
    manual = run([cat(batches[:2]), batches[2]], 1, "b")
    assert torch.allclose(accumulated, manual, atol=1e-6)


def test_without_an_epoch_cap_only_early_stopping_ends_training(tmp_path):
    """train.stop_at_max_epochs=false (authors): Stage.max_epochs None, so the stage runs on past any
    max_epochs until early_stop epochs pass without improvement."""
    torch.manual_seed(0)
    model = FakeRegressor()
    stage = _stage(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), max_epochs=None, early_stop=6)
    res = fit(stage, fake_batches(3), fake_batches(2, seed=1), tmp_path, accelerator=make_accelerator("no", 2),
              progress=False)
    assert res.stop_reason == "early_stop" and res.epochs == 7 and res.best_epoch == 1
