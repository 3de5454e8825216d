"""`deepmlf demo rationale`: a rationale beside every score (MulCoT-RD's mechanics) on the fusion probe.

The teacher is SYMBOLIC (`deepmlf.rationale.teachers.probe_rationales`): a template that knows the
probe's hidden cues (valence v, tone s, smile c) and writes e.g.
`Text: very positive (brilliant). Voice: sarcastic. Face: smile. Prediction: -1.3`. No language
model wrote these; no multimodal LLM teacher is reachable offline. What the demo shows is the
mechanics: a frozen SmolLM2-135M, conditioned on audio and video only through DeepMLF's fusion
tokens, learns to *say* the audio cue.

Stages:
  1. the probe and the teacher's rationales for every split;
  2. the assistant: DeepMLF + rationale head (model.rationale), trained by the one training loop;
  3. the text-only control: the same model and training on a copy of the probe whose audio and
     vision are all zeros (the fusion tokens then carry no cue) - the Voice field at chance;
  4. the student: the same 30 layers (it must write language), fewer MM blocks and fusion tokens
     and a smaller LoRA, trained with token-level KD from the assistant (CE 0.7 + KL(T=2) 0.3,
     MulCoT-RD's weights);
  5. greedy rationales on the test split for all three; per-field accuracy, the parsed score's
     MMSA metrics against the labels and against y_o, BLEU-4 / ROUGE-L / Distinct / MiniLM cosine
     against the teacher, sizes and decoding speed.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ..config import Config, load_config
from ..data.synth import PRESETS, make_probe, probe_latents, save_probe
from ..errors import ConfigError
from ..io import write_json, write_text
from ..metrics import msa_metrics
from ..rationale.format import parse_fields
from ..rationale.metrics import bleu4, distinct_n, field_accuracy, minilm_cosine, minilm_dir, parsed_scores, rouge_l
from ..rationale.teachers import SYMBOLIC_TEACHER, probe_rationales, read_rationales, write_jsonl

DEFAULT_OUT = Path("runs/demo-rationale")
PROBE_SEED = 0
DEMO_N = 400
FIELDS = ("Text", "Voice", "Face")
# Sized for 2 shared CPU cores (benchmarks/RESULTS.md, "Rationale demo"). The LM must be the full
# 30-layer SmolLM2-135M: its head expects layer-29 states, and a truncated decoder does not write
# language (the first 8 layers reached validation CE 8.5 per token; all 30 layers 1.37 after one
# epoch). What makes it affordable (one thread, measured):
#   * float32, not bfloat16: this CPU has no bf16 matrix units; a 30-layer forward of 32x40 tokens
#     took 5.7 s in float32 and 35.8 s in bfloat16;
#   * model.rationale.prefix_cache: the frozen states of [text ‖ fusion ‖ prompt ‖ rationale] up to
#     the first MM block are computed once per sample (exact: the fusion tokens' embeddings are
#     frozen, model.fusion_trainable=false, and the text states are the frozen LM's, text_cache),
#     so a step runs the fusion and suffix tokens through the layers above the first MM block only;
#   * MM blocks after layers 27-29 only (the upper pass is then layers 28-29; the deep-fusion recipe
#     of docs/deep-fusion.md: fusion tokens at the embedding RMS, the cross-attention branch x16,
#     gates at 30x the lr, FFW on fusion tokens, and here on the suffix too: model.rationale.suffix_ffw),
#     LoRA (suffix only, 5x the lr) on the last two layers' query/value projections;
#   * model.rationale.readout=fusion: in each MM layer the suffix cross-attends to that layer's
#     fusion-token states. Without it the suffix read the fusion tokens only through the frozen
#     attention (2-5 % of its weight) and the Voice field sat at the text-only control's level;
#   * batch 8 for 2 epochs (70 steps) rather than 16 for 3 (54): more updates for less time.
# The student shares the tokenizer and all 30 layers (a student that writes the format must); it is
# smaller where parameters train: 2 MM blocks instead of 3, 2 fusion tokens instead of 4, LoRA on
# one layer at rank 4, trained with token KD from the assistant (CE 0.7 + KL(T=2) 0.3).
# Everything is pinned here on the package defaults (not on the demo preset, which other demos tune).
ASSISTANT = [
    "model.backbone=smollm2-135m", "model.dtype=float32", "data.max_text_len=12", "data.batch_size=8",
    "data.eval_batch_size=60", "model.n_fusion=4", "model.n_heads=9", "model.ffw=full",
    "model.mm_layers=[27,28,29]", "model.augment.kind=none", "model.fusion_init_std=embedding",
    "model.gca_scale=16", "model.ffw_tokens=fusion", "model.text_cache=true", "model.fusion_trainable=false",
    "model.av_encoder.av_len=20", "model.av_encoder.batchnorm=false", "model.av_encoder.init=random_tune",
    "model.rationale.enabled=true", "model.rationale.prefix_cache=true", "model.rationale.max_len=24",
    "model.rationale.lora_layers=2", "model.rationale.suffix_ffw=true", "model.rationale.readout=fusion",
    "loss.lambda_lm=0", "train.lr=1e-3", "train.lr_av=3e-3",
    "train.lr_parts={gates: 30, rationale_lora: 5}", "train.max_epochs=2", "train.early_stop=3", "train.warmup_epochs=0.25",
    "train.key_metric=MAE", "train.seeds=[1111]", "data.dataset=mosi", "loss.lambda_f=1.0", "loss.lambda_av=1.0",
    "loss.lambda_t=1.0", "train.weight_decay=0.01", "train.weight_decay_av=0.01", "train.grad_accum=1",
]
# The student trains one epoch longer than the assistant (35 more steps): it distils from the
# assistant's soft targets with a third less trainable capacity.
STUDENT = ["model.mm_layers=[28,29]", "model.n_fusion=2", "model.rationale.lora_layers=1", "model.rationale.lora_r=4",
           "train.max_epochs=3"]
FAST = ["train.max_epochs=1"]
MODELS = ("DeepMLF assistant", "text-only control", "student")


def demo_configs(out_dir: Path, probe: Path, control_probe: Path, teacher: Path, *, fast: bool,
                 overrides: list[str] | None) -> dict[str, Config]:
    fast_set = FAST if fast else []
    base = ASSISTANT + fast_set + [f"model.rationale.path={teacher}"]
    user = list(overrides or [])
    assistant = load_config(overrides=base + user + [f"data.path={probe}"])
    if len(assistant.train.seeds) != 1:
        raise ConfigError(f"train.seeds={assistant.train.seeds}: the demo trains one seed; give exactly one")
    seed = assistant.train.seeds[0]
    best = out_dir / "assistant" / f"seed-{seed}" / "best.pt"
    return {
        "DeepMLF assistant": assistant,
        "text-only control": load_config(overrides=base + user + [f"data.path={control_probe}"]),
        "student": load_config(overrides=base + STUDENT + fast_set + user + [
            f"data.path={probe}", f"model.rationale.teacher_checkpoint={best}"]),
    }


def _write_probes(directory: Path, n: int, seed: int) -> tuple[Path, Path, Path, dict[str, Any]]:
    """The probe, its AV-zeroed copy (the control's), the teacher JSONL, and the raw dict."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = make_probe(n=n, seed=seed)
    lat = probe_latents(n=n, seed=seed)
    p = PRESETS["mosi"]
    rationales = probe_rationales(raw, lat, label_scale=p.label_scale, label_range=p.label_range, with_word=False)
    probe = save_probe(directory / "unaligned_50.pkl", raw)
    zeroed = copy.deepcopy(raw)
    for split in zeroed.values():
        split["audio"] = np.zeros_like(split["audio"])
        split["vision"] = np.zeros_like(split["vision"])
    control = save_probe(directory / "control_no_av.pkl", zeroed)
    teacher = write_jsonl(directory / "teacher.jsonl", [{"id": k, "rationale": v} for k, v in rationales.items()])
    return probe, control, teacher, raw


def _size(model: Any) -> dict[str, int]:
    counts = model.parameter_counts()
    return {"trainable": int(counts["trainable"]), "total": int(counts["total"]),
            "decoder_layers": len(model.lm.backbone.layers), "fusion_tokens": int(model.lm.n_fusion),
            "mm_blocks": len(model.lm.mm_layers)}


def _explain(run_dir: Path, seed: int, split: Any, batch_size: int) -> tuple[list[dict[str, Any]], float, dict]:
    from ..data import make_loader
    from ..predictor import load
    from ..rationale.explain import explain_batches

    pred = load(run_dir / f"seed-{seed}" / "best.pt")
    loader = make_loader(split, pred.tokenizer, max_text_len=pred.config.data.max_text_len,
                         batch_size=batch_size, shuffle=False)
    t0 = time.perf_counter()
    rows = explain_batches(pred.model, loader)
    return rows, time.perf_counter() - t0, _size(pred.model)


def score_rows(rows: list[dict[str, Any]], refs: dict[str, str], *, cosine: bool) -> dict[str, Any]:
    preds = [r["rationale"] for r in rows]
    ref = [refs[r["id"]] for r in rows]
    labels = np.array([r["label"] for r in rows], dtype=np.float32)
    y_o = np.array([r["y_o"] for r in rows], dtype=np.float32)
    scores, ok = parsed_scores(preds)
    voice_ref = [parse_fields(t).get("Voice", "") for t in ref]
    voice_pred = [parse_fields(t).get("Voice", "").strip().lower() for t in preds]
    # Balanced accuracy of the Voice field: the mean of the per-class recalls (chance = 1/2).
    recalls = [np.mean([p == c for p, r in zip(voice_pred, voice_ref) if r == c]) for c in sorted(set(voice_ref))]
    out: dict[str, Any] = {
        "n": len(rows),
        "fields": field_accuracy(preds, ref, FIELDS),
        "voice_balanced": float(np.mean(recalls)),
        "parsed": ok / len(rows),
        "score_vs_label": msa_metrics(scores, labels, "mosi"),
        "y_o_vs_label": msa_metrics(y_o, labels, "mosi"),
        "score_vs_y_o_mae": float(np.mean(np.abs(scores - y_o))),
        "bleu4": bleu4(preds, ref), "rouge_l": rouge_l(preds, ref),
        "distinct_1": distinct_n(preds, 1), "distinct_2": distinct_n(preds, 2),
        "examples": rows[:4],
    }
    if cosine:
        out["cosine"] = minilm_cosine(preds, ref)
    return out


def results_table(res: dict[str, dict[str, Any]], voice_majority: float) -> Table:
    t = Table(title="Rationales on the probe's test split (teacher: symbolic, knows the hidden cues)")
    t.add_column("metric")
    for name in res:
        t.add_column(name, justify="right")
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731

    rows = [(f"field {f} acc %", lambda r, f=f: pct(r["fields"].get(f, 0.0))) for f in FIELDS]
    rows += [
        ("Voice balanced acc %", lambda r: pct(r["voice_balanced"])),
        ("parsed Prediction %", lambda r: pct(r["parsed"])),
        ("parsed score MAE", lambda r: f"{r['score_vs_label']['MAE']:.3f}"),
        ("parsed score Corr", lambda r: f"{r['score_vs_label']['Corr']:.3f}"),
        ("parsed score Acc-2 %", lambda r: pct(r["score_vs_label"]["Non0_acc_2"])),
        ("parsed score Acc-7 %", lambda r: pct(r["score_vs_label"]["Mult_acc_7"])),
        ("y_o MAE", lambda r: f"{r['y_o_vs_label']['MAE']:.3f}"),
        ("|parsed - y_o|", lambda r: f"{r['score_vs_y_o_mae']:.3f}"),
        ("BLEU-4", lambda r: f"{r['bleu4']:.3f}"),
        ("ROUGE-L", lambda r: f"{r['rouge_l']:.3f}"),
        ("Distinct-1 / -2", lambda r: f"{r['distinct_1']:.3f} / {r['distinct_2']:.3f}"),
        ("MiniLM cosine", lambda r: f"{r['cosine']:.3f}" if "cosine" in r else "-"),
        ("decoder layers / MM blocks / fusion tokens",
         lambda r: f"{r['size']['decoder_layers']} / {r['size'].get('mm_blocks', '-')} / {r['size']['fusion_tokens']}"),
        ("parameters (trainable)", lambda r: f"{r['size']['total'] / 1e6:.1f} M ({r['size']['trainable'] / 1e6:.2f} M)"),
        ("explain ms / sample", lambda r: f"{1000 * r['explain_s'] / r['n']:.0f}"),
        ("train s", lambda r: f"{r['train_s']:.0f}"),
    ]
    for label, fn in rows:
        t.add_row(label, *(fn(r) for r in res.values()))
    t.caption = (f"Voice majority class ('sincere') = {100 * voice_majority:.1f} % of the test clips: a model "
                 "that cannot hear sits there (balanced accuracy 50 %).")
    return t


def verdict(res: dict[str, dict[str, Any]]) -> dict[str, Any]:
    a, c, s = (res[m] for m in MODELS)
    voice_gap = a["fields"]["Voice"] - c["fields"]["Voice"]
    mean_a = float(np.mean([a["fields"][f] for f in FIELDS]))
    mean_s = float(np.mean([s["fields"][f] for f in FIELDS]))
    return {
        "voice_gap_points": 100 * voice_gap,
        "voice_beats_control_by_20": bool(voice_gap >= 0.20),
        "assistant_mean_field_acc": mean_a,
        "student_mean_field_acc": mean_s,
        "student_within_10pct": bool(mean_s >= 0.9 * mean_a),
    }


def run(out_dir: str | Path = DEFAULT_OUT, *, n: int | None = None, fast: bool = False,
        overrides: list[str] | None = None, progress: bool = True, console: Console | None = None) -> dict[str, Any]:
    from ..data.mmsa import load_mmsa
    from ..train import train_run

    console = console or Console()
    out_dir = Path(out_dir)
    n = n or DEMO_N
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    console.rule("[bold]1/5 · probe and symbolic teacher")
    t0 = time.perf_counter()
    probe, control_probe, teacher, raw = _write_probes(out_dir / "probe", n, PROBE_SEED)
    refs = read_rationales(teacher)
    test_ids = [str(i) for i in raw["test"]["id"]]
    console.print(f"teacher: {SYMBOLIC_TEACHER}")
    console.print(f"e.g. {test_ids[0]}: \"{raw['test']['raw_text'][0]}\" -> {refs[test_ids[0]]}", highlight=False)
    cfgs = demo_configs(out_dir, probe, control_probe, teacher, fast=fast, overrides=overrides)
    seed = cfgs["DeepMLF assistant"].train.seeds[0]
    timings["probe + teacher"] = time.perf_counter() - t0

    dirs = {"DeepMLF assistant": out_dir / "assistant", "text-only control": out_dir / "control",
            "student": out_dir / "student"}
    res: dict[str, dict[str, Any]] = {}
    for step, name in enumerate(["DeepMLF assistant", "text-only control", "student"], start=2):
        console.rule(f"[bold]{step}/5 · train the {name}")
        shutil.rmtree(dirs[name], ignore_errors=True)
        t0 = time.perf_counter()
        train_run(cfgs[name], dirs[name], progress=progress)
        res[name] = {"train_s": time.perf_counter() - t0}
        timings[f"train {name}"] = res[name]["train_s"]

    console.rule("[bold]5/5 · rationales on the test split")
    cosine = minilm_dir() is not None
    for name in MODELS:
        data = load_mmsa(cfgs[name].data.path)
        t0 = time.perf_counter()
        rows, explain_s, size = _explain(dirs[name], seed, data["test"], cfgs[name].data.eval_batch_size)
        res[name].update(score_rows(rows, refs, cosine=cosine), explain_s=explain_s, size=size)
        write_jsonl(out_dir / f"rationales_{dirs[name].name}.jsonl", rows)
        timings[f"explain + score {name}"] = time.perf_counter() - t0
        for r in rows[:2]:
            console.print(f"  {name} | {r['id']}: {r['rationale']}", highlight=False)

    voice = [parse_fields(refs[i])["Voice"] for i in test_ids]
    majority = max(voice.count(v) for v in set(voice)) / len(voice)
    console.print(results_table(res, majority))
    v = verdict(res)
    timings["total"] = time.perf_counter() - t_start
    console.print(
        f"Voice field: assistant {100 * res[MODELS[0]]['fields']['Voice']:.1f} % vs text-only control "
        f"{100 * res[MODELS[1]]['fields']['Voice']:.1f} % ({v['voice_gap_points']:+.1f} points; criterion >= +20: "
        f"{'met' if v['voice_beats_control_by_20'] else 'NOT met'}). Student mean field accuracy "
        f"{100 * v['student_mean_field_acc']:.1f} % vs assistant {100 * v['assistant_mean_field_acc']:.1f} % "
        f"(criterion within 10 %: {'met' if v['student_within_10pct'] else 'NOT met'}). Total {timings['total']:.0f} s.")
    summary = {"teacher": SYMBOLIC_TEACHER, "n": n, "seed": PROBE_SEED, "fast": fast, "voice_majority": majority,
               "results": res, "verdict": v, "timings": timings,
               "configs": {k: c.to_dict() for k, c in cfgs.items()}}
    write_json(out_dir / "rationale_demo.json", summary)
    write_text(out_dir / "report.md", _markdown(res, v, majority, timings))
    return summary


def _markdown(res: dict[str, dict[str, Any]], v: dict[str, Any], majority: float, timings: dict[str, float]) -> str:
    from rich.console import Console as _C

    c = _C(record=True, width=140)
    c.print(results_table(res, majority))
    lines = ["# deepmlf demo rationale", "", f"Teacher: {SYMBOLIC_TEACHER}.", "", "```", c.export_text().rstrip(), "```",
             "", f"Verdict: {v}", "", "Timings (s): " + ", ".join(f"{k} {t:.0f}" for k, t in timings.items()), "",
             "Examples:"]
    for name, r in res.items():
        for ex in r["examples"][:2]:
            lines.append(f"- {name}, {ex['id']} (label {ex['label']:+.2f}, y_o {ex['y_o']:+.2f}): `{ex['rationale']}`")
    return "\n".join(lines) + "\n"
