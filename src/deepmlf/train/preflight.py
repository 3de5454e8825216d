"""What can refuse a run is checked before stage 1 starts ("bad values are refused before anything runs").

    check_backbone(cfg)           for a model.arch that needs a backbone: it resolves offline, its
                                  tokenizer has an eos (or a pad to serve as one), and the arch's own
                                  checks pass (DeepMLF: mm_layers, n_heads, text + fusion tokens fit it).
                                  Reads the backbone's config.json and tokenizer only, never its weights.
    resolve_dataset(cfg, data)    data.dataset=infer -> the dataset the file shows (said); a named one
                                  was already checked against the file by `load_mmsa`.
    check_selection(cfg)          train.key_metric is one the dataset's task reports.

`deepmlf.train.run.train_run` calls all three before it writes anything; stage 2 repeats the
backbone checks on the loaded weights (`build_model`), which then cannot fail on them.
"""

from __future__ import annotations

from ..config import DATASET_INFER, Config, config_from_dict
from ..data.corpora import MOSI_LIKE
from ..data.mmsa import MMSAData
from ..errors import ConfigError
from ..model.registry import get_arch
from ..tasks import MSATask
from .distributed import say


def check_backbone(cfg: Config) -> None:
    """Refuse a backbone that does not resolve, or a model config that does not fit it (ConfigError /
    BackboneError naming the key), from the backbone's config and tokenizer alone."""
    arch = get_arch(cfg.model.arch, task=MSATask.name)
    if not arch.needs_backbone:
        return
    from ..backbones import inspect_backbone  # lazy: transformers' config machinery

    spec = inspect_backbone(cfg.model.backbone)  # raises for an unknown backbone or a tokenizer without eos/pad
    if arch.check_backbone is not None:
        arch.check_backbone(cfg, spec)


def resolve_dataset(cfg: Config, data: MMSAData) -> Config:
    """`cfg` with data.dataset set to a named corpus: the file's when it was "infer" (and say so)."""
    if cfg.data.dataset != DATASET_INFER:
        return cfg  # load_mmsa refused it if the file contradicts it
    if data.dataset is not None:
        dataset, how = data.dataset, "inferred from the file"
    elif data.family is not None:
        # MOSI and MOSEI (or SIMS and SIMSv2) share the label range and MMSA's metrics.
        dataset = data.family
        how = f"the file is {MOSI_LIKE if dataset == 'mosi' else 'sims-like'}; scored with the {dataset} metrics"
    else:
        raise ConfigError(
            f"data.dataset=infer: {data.path} does not show which dataset it is (feature dims "
            f"{data['train'].audio_dim}/{data['train'].vision_dim} are no standard set, no regression_labels_T/A/V, "
            "every label in [-1, 1]); set data.dataset (mosi, mosei, sims or simsv2) or use a --preset"
        )
    say(f"data: dataset {dataset} ({how}; set data.dataset to be explicit)")
    tree = cfg.to_dict()
    tree["data"]["dataset"] = dataset
    return config_from_dict(tree, f"config with data.dataset={dataset}")


def check_selection(cfg: Config) -> None:
    """train.key_metric must be one the dataset's task reports (or "Loss")."""
    MSATask.of_config(cfg).check_key_metric(cfg.train.key_metric, "train.key_metric")
