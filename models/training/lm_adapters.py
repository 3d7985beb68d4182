"""LoRA adapters for the resolution task, one per language, merged by the engine (MergeRepair).

:func:`train_adapters` trains, on a saved base LM (:mod:`splice.models.training.lm`), one PEFT
LoRA adapter (``q, k, v, o, gate, up, down`` projections) per language on that language's
resolution sequences of the train split (:mod:`splice.models.training.lm_corpus` with
``resolution_share`` 1), and one adapter on all those languages together with the same compute
(``steps`` times the number of languages). Each lands in ``OUT/<lang>`` (``OUT/all``) as a PEFT
adapter folder, and ``OUT/merge-linear.yaml`` / ``OUT/merge-continual.yaml`` are configurations
for the existing engine (equal-weight averaging; the continual fold in the given order)::

    splice merge-adapters OUT/merge-linear.yaml OUT/merged        # a LoRA of the summed rank
    splice merge-adapters OUT/merge-linear.yaml OUT/full --output full

:func:`resolution_loss` measures any of them (an adapter folder, or a full model) on the
validation split's resolution sequences per language, so merged, single and fine-tuned models
compare on the same tokens.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from splice.models.training.lm_corpus import DEFAULT_DATA, DEFAULT_TOKENIZER, CorpusOptions

#: The Llama projections an adapter changes.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AdapterOptions:
    """The adapters of one :func:`train_adapters` run."""

    base: str
    out_dir: str
    langs: tuple[str, ...] = ("python", "java", "typescript", "javascript", "csharp", "go")
    data_dir: str = DEFAULT_DATA
    tokenizer: str = DEFAULT_TOKENIZER
    #: Optimizer steps per language adapter (the all-language adapter gets this times the
    #: number of languages).
    steps: int = 200
    batch_size: int = 8
    seq_len: int = 512
    lr: float = 1e-3
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    #: Train the all-language adapter too.
    joint: bool = True
    val_sequences: int = 64
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if not self.langs:
            raise ValueError("give at least one language")
        for name in ("steps", "batch_size", "rank", "alpha", "threads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr {self.lr} is not a positive number")
        if not (Path(self.base) / "config.json").is_file():
            raise ValueError(f"base model {self.base}: no config.json (a saved causal LM folder)")
        if not Path(self.tokenizer).is_file():
            raise ValueError(f"tokenizer {self.tokenizer} not found")

    def corpus(self, split: str, langs: tuple[str, ...], seed: int = 0) -> CorpusOptions:
        return CorpusOptions(
            data_dir=self.data_dir,
            tokenizer=self.tokenizer,
            split=split,
            seq_len=self.seq_len,
            resolution_share=1.0,
            langs=langs,
            seed=seed,
            repeat=split == "train",
        )


@dataclass
class AdapterResult:
    name: str
    langs: tuple[str, ...]
    path: str
    steps: int
    seconds: float
    train_loss: float
    #: Validation loss on resolved lines per language (nats per token).
    val: dict[str, float] = field(default_factory=dict)


def _load_base(path: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def val_sets(options: AdapterOptions) -> dict[str, list]:
    """Per language, the fixed validation resolution sequences."""
    from splice.models.training.lm_corpus import build_sequences

    return {
        lang: build_sequences(options.corpus("val", (lang,), seed=1_000_003), options.val_sequences)
        for lang in options.langs
    }


def resolution_loss(model, sequences: list, batch_size: int = 8) -> float:
    """Mean loss (nats per token) of ``model`` on the resolved lines of ``sequences``."""
    import torch
    from splice.models.training.lm import token_losses

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            part = sequences[start : start + batch_size]
            ids = torch.tensor([s.ids for s in part], dtype=torch.long)
            labels = torch.tensor([s.labels for s in part], dtype=torch.long)
            loss, mask = token_losses(model, ids, labels)
            total += float(loss.sum())
            count += int(mask.sum())
    return total / max(count, 1)


def load_for_eval(path: str | Path, base: str | None = None):
    """A full model folder, or a PEFT adapter folder on ``base`` (its own base when None)."""
    path = Path(path)
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        config = json.loads((path / "adapter_config.json").read_text())
        return PeftModel.from_pretrained(
            _load_base(base or config["base_model_name_or_path"]), path
        )
    return _load_base(str(path))


def train_adapter(
    options: AdapterOptions, name: str, langs: tuple[str, ...], steps: int, val: dict[str, list]
) -> AdapterResult:
    """One LoRA adapter on the resolution sequences of ``langs``, saved in ``OUT/name``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from splice.models.training.lm import batches
    from splice.models.training.lm_corpus import iter_sequences

    torch.manual_seed(options.seed)
    model = get_peft_model(
        _load_base(options.base),
        LoraConfig(
            r=options.rank,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            target_modules=list(TARGET_MODULES),
            task_type="CAUSAL_LM",
        ),
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0)
    data = batches(
        iter_sequences(options.corpus("train", langs, options.seed)), options.batch_size, "cpu"
    )
    started = time.monotonic()
    losses: list[float] = []
    for step in range(steps):
        ids, labels = next(data)
        for group in optimizer.param_groups:  # cosine decay, no warm-up (LoRA B starts at 0)
            group["lr"] = options.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    seconds = time.monotonic() - started
    path = Path(options.out_dir) / name
    model.save_pretrained(path)
    config_file = path / "adapter_config.json"  # the base as given, so the folder stays usable
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = str(Path(options.base).resolve())
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    tail = losses[-max(1, len(losses) // 10) :]
    return AdapterResult(
        name=name,
        langs=langs,
        path=str(path),
        steps=steps,
        seconds=seconds,
        train_loss=sum(tail) / len(tail),
        val={lang: resolution_loss(model, seqs, options.batch_size) for lang, seqs in val.items()},
    )


def merge_configs(options: AdapterOptions, names: list[str]) -> dict[str, Path]:
    """Engine configurations over the per-language adapters: equal-weight ``linear`` averaging
    and the ``continual`` fold in the order of ``names``."""
    import yaml

    out = Path(options.out_dir)
    base = str(Path(options.base).resolve())
    models = [{"model": str((out / n).resolve()), "parameters": {"weight": 1.0}} for n in names]
    configs = {
        "linear": {
            "merge_method": "linear",
            "base_model": base,
            "mode": "simultaneous",
            "output": "lora",
            "models": models,
        },
        "continual": {
            "merge_method": "linear",
            "base_model": base,
            "mode": "continual",
            "output": "lora",
            "models": models,
        },
    }
    paths = {}
    for key, config in configs.items():
        path = out / f"merge-{key}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths[key] = path
    return paths


def train_adapters(options: AdapterOptions, echo=None) -> dict[str, Any]:
    """Every per-language adapter, the all-language one, the merge configurations, and
    ``OUT/adapters.json`` with each one's validation loss per language (module doc)."""
    import torch

    torch.set_num_threads(options.threads)
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    val = val_sets(options)
    base = _load_base(options.base)
    results: dict[str, Any] = {
        "base": {
            lang: resolution_loss(base, seqs, options.batch_size) for lang, seqs in val.items()
        }
    }
    del base
    if echo:
        echo(f"base: {_fmt(results['base'])}")
    for lang in options.langs:
        result = train_adapter(options, lang, (lang,), options.steps, val)
        results[lang] = asdict(result)
        if echo:
            echo(f"{lang}: {result.steps} steps {result.seconds:.0f}s; val {_fmt(result.val)}")
    if options.joint and len(options.langs) > 1:
        steps = options.steps * len(options.langs)
        result = train_adapter(options, "all", options.langs, steps, val)
        results["all"] = asdict(result)
        if echo:
            echo(f"all: {result.steps} steps {result.seconds:.0f}s; val {_fmt(result.val)}")
    configs = merge_configs(options, list(options.langs))
    results["merge_configs"] = {k: str(v) for k, v in configs.items()}
    results["options"] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()
    }
    (out / "adapters.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _fmt(losses: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in losses.items())
