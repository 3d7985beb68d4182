"""Train ``SpliceMergeModel`` on pre-split example sets (train and validation repositories).

AdamW with linear warmup and cosine decay, fixed seeds, a rich progress bar, a resumable
checkpoint (model + optimizer + scheduler + step) in ``out_dir/checkpoint`` and the best model by
validation accuracy saved with ``save_pretrained`` into ``out_dir`` itself. Validation accuracy is
"the top-1 pattern is one of the valid ones". A time budget stops cleanly.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from splice.models.training.configuration import SpliceConfig
from splice.models.training.modeling import SpliceMergeModel

ARRAYS = ("input_ids", "edit_ids", "attention_mask", "labels")
CHECKPOINT = "checkpoint"
STATE_FILE = "training_state.pt"
HISTORY_FILE = "history.jsonl"

Arrays = dict[str, np.ndarray]


@dataclass
class TrainResult:
    """What a call of :func:`train` did."""

    step: int
    total_steps: int
    best_accuracy: float
    best_step: int
    stopped_by_time: bool
    examples_per_second: float
    tokens_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)


# ----------------------------------------------------------------------------- data


def load_arrays(source: str | Path | Mapping[str, Any] | Any) -> Arrays:
    """The four training arrays from an .npz path, a mapping, or an object with those attributes.

    Paths go through ``splice.models.training.examples.load_examples`` when that module exists.
    """
    if isinstance(source, str | Path):
        if importlib.util.find_spec("splice.models.training.examples") is not None:
            from splice.models.training.examples import load_examples

            source = load_examples(source)
        else:
            with np.load(source, allow_pickle=False) as npz:
                source = {name: npz[name] for name in ARRAYS}
    if isinstance(source, Mapping):
        arrays = {name: np.asarray(source[name]) for name in ARRAYS}
    else:
        arrays = {name: np.asarray(getattr(source, name)) for name in ARRAYS}
    n, s, length = arrays["input_ids"].shape
    for name in ("edit_ids", "attention_mask"):
        if arrays[name].shape != (n, s, length):
            raise ValueError(f"{name} has shape {arrays[name].shape}, expected {(n, s, length)}")
    if arrays["labels"].ndim != 2 or len(arrays["labels"]) != n:
        raise ValueError(f"labels have shape {arrays['labels'].shape}, expected ({n}, labels)")
    return arrays


def make_batch(arrays: Arrays, index: np.ndarray) -> dict[str, torch.Tensor]:
    """int64 tensors for the examples ``index``, cut after the batch's last attended position."""
    mask = arrays["attention_mask"][index]
    attended = np.flatnonzero(mask.any(axis=(0, 1)))
    length = int(attended[-1]) + 1 if len(attended) else 1
    batch = {
        name: torch.from_numpy(arrays[name][index][..., :length].astype(np.int64))
        for name in ("input_ids", "edit_ids", "attention_mask")
    }
    batch["labels"] = torch.from_numpy(arrays["labels"][index].astype(np.float32))
    return batch


#: Label permutation of the mirror image of an example (ours and theirs swapped).
MIRROR_LABELS = (1, 0, 2, 4, 3, 6, 5, 8, 7, 9)
#: Sequence permutation of the mirror image: a|o, o|a <-> b|o, o|b.
MIRROR_SEQUENCES = (2, 3, 0, 1)


def mirror(batch: dict[str, torch.Tensor], which: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch with the examples ``which`` (bool, B) replaced by their mirror images: the two
    sides swapped, and each pattern's label moved to its mirror (ours <-> theirs, ours_theirs <->
    theirs_ours, ...). Base and empty are their own mirrors."""
    out = {}
    for name, value in batch.items():
        perm = MIRROR_LABELS if name == "labels" else MIRROR_SEQUENCES
        out[name] = torch.where(
            which.view(-1, *([1] * (value.ndim - 1))), value[:, list(perm)], value
        )
    return out


def class_weights_for(labels: np.ndarray) -> list[float]:
    """Inverse square-root label frequencies, scaled so the mean example weight is 1."""
    valid = labels.astype(bool)
    counts = np.maximum(valid.sum(axis=0), 1).astype(np.float64)
    weights = 1.0 / np.sqrt(counts / len(labels))
    has_valid = valid.any(axis=1)
    per_example = (valid @ weights)[has_valid] / valid.sum(axis=1)[has_valid]
    scale = per_example.mean() if len(per_example) else 1.0
    return [float(w) for w in weights / scale]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU; otherwise the named device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: SpliceMergeModel, arrays: Arrays, batch_size: int = 128) -> dict[str, float]:
    """Top-1 accuracy (the argmax is a valid pattern) and mean loss over ``arrays``."""
    was_training = model.training
    model.eval()
    n = len(arrays["labels"])
    device = next(model.parameters()).device
    correct, loss_sum = 0, 0.0
    for start in range(0, n, batch_size):
        batch = to_device(make_batch(arrays, np.arange(start, min(n, start + batch_size))), device)
        out = model(**batch)
        top1 = out.logits.argmax(dim=-1)
        correct += int(batch["labels"].gather(1, top1[:, None]).gt(0).sum())
        loss_sum += float(out.loss) * len(top1)
    model.train(was_training)
    return {"accuracy": correct / max(n, 1), "loss": loss_sum / max(n, 1)}


# ----------------------------------------------------------------------------- optimisation


def warmup_cosine(warmup: int, total: int, floor: float = 0.1):
    """LR multiplier: linear warmup to 1, then cosine down to ``floor`` at ``total`` steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_optimizer(model: SpliceMergeModel, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; matrices decay, biases, norms and the four sequence weights do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))


# ----------------------------------------------------------------------------- weight average


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak averaging).

    After step ``t`` the average moves towards the weights by ``1 - d`` with
    ``d = min(decay, (1 + t) / (10 + t))``, so early steps are not frozen in. Buffers are
    copied as they are.
    """

    def __init__(
        self, model: SpliceMergeModel, decay: float, state: dict[str, Any] | None = None
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model)
        self.model.eval()
        self.model.requires_grad_(False)
        if state is not None:
            self.model.load_state_dict(state)

    @torch.no_grad()
    def update(self, model: SpliceMergeModel, step: int) -> None:
        """Move the average towards ``model``'s current weights."""
        d = min(self.decay, (1 + step) / (10 + step))
        mine = dict(self.model.named_parameters())
        for name, p in model.named_parameters():
            mine[name].lerp_(p.detach(), 1.0 - d)
        theirs = dict(model.named_buffers())
        for name, b in self.model.named_buffers():
            b.copy_(theirs[name])

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(out_dir: Path, model: SpliceMergeModel, state: dict[str, Any]) -> None:
    """Write model + training state to ``out_dir/checkpoint`` (a new folder swapped in)."""
    final, tmp, old = (out_dir / name for name in (CHECKPOINT, CHECKPOINT + ".tmp", "ckpt.old"))
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out_dir: Path) -> tuple[SpliceMergeModel, dict[str, Any]] | None:
    """The model and training state saved in ``out_dir/checkpoint``, or None."""
    folder = Path(out_dir) / CHECKPOINT
    if not (folder / STATE_FILE).exists():
        return None
    model = SpliceMergeModel.from_pretrained(str(folder))
    return model, torch.load(folder / STATE_FILE, weights_only=True)


# ----------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class TrainOptions:
    """How :func:`train` trains: schedule, optimiser, budget, validation, hardware, start point.

    Vary it with ``dataclasses.replace(options, lr=1e-4)``. The network's shape is ``architecture``.
    """

    #: Passes over the training set; the learning-rate schedule always spans all of them.
    epochs: int = 3
    #: Training examples per optimiser step.
    batch_size: int = 32
    #: Peak AdamW learning rate (linear warmup, then cosine decay to a tenth of it).
    lr: float = 5e-4
    #: Seeds the initial weights, the epoch orders, mirroring and the validation subset.
    seed: int = 0
    #: Time budget: stop after the step that crosses it (validation, best model and checkpoint
    #: still written); None: no budget.
    max_minutes: float | None = None
    #: Continue from ``out_dir/checkpoint`` when there is one: model, optimizer, scheduler, step
    #: and RNG state come from it.
    resume: bool = False
    #: Weight the loss by inverse square-root label frequency (:func:`class_weights_for`).
    class_weights: bool = True
    #: Shape of a fresh network (default: ``SpliceConfig`` sized to the data's length); ignored
    #: when resuming from a checkpoint or starting from ``init_from``.
    architecture: SpliceConfig | None = None
    #: AdamW weight decay of the weight matrices (biases, norms and sequence weights: none).
    weight_decay: float = 0.01
    #: Share of all steps spent warming the learning rate up linearly.
    warmup_ratio: float = 0.05
    #: Largest gradient norm; larger gradients are scaled down to it.
    grad_clip: float = 1.0
    #: Validate and checkpoint every this many steps (and at each epoch end).
    checkpoint_every: int = 500
    #: Examples per validation batch.
    eval_batch_size: int = 128
    #: Validate on a fixed random subset of this size (a full pass over 15k examples takes
    #: minutes on 2 cores); None: the whole validation set.
    max_val_examples: int | None = None
    #: CPU threads torch may use.
    num_threads: int = 2
    #: Run training steps under bfloat16 autocast (about 30% faster on an AVX512-BF16 CPU);
    #: validation stays in float32.
    bf16: bool = False
    #: Show a rich progress bar.
    progress: bool = True
    #: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
    device: str = "cpu"
    #: Start from this saved ``SpliceMergeModel`` (e.g. the masked-LM pretrained body of
    #: :mod:`splice.models.training.pretrain`) instead of a random one.
    init_from: str | Path | None = None
    #: Share of training examples replaced by their mirror image (:func:`mirror`), so the model
    #: learns rules about edits rather than a fixed preference for one side.
    mirror_rate: float = 0.0
    #: Validate, keep and checkpoint an exponential moving average of the weights with this decay
    #: (:class:`WeightAverage`), which swings far less between checkpoints; None: the raw weights.
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every", "eval_batch_size", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.mirror_rate <= 1.0:
            raise ValueError(f"mirror_rate must be in [0, 1], got {self.mirror_rate}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {self.ema_decay}")


def train(
    examples_train: str | Path | Mapping[str, Any] | Any,
    examples_val: str | Path | Mapping[str, Any] | Any,
    out_dir: str | Path,
    options: TrainOptions | None = None,
) -> TrainResult:
    """Train a model on ``examples_train``; keep the best on ``examples_val`` in ``out_dir``.

    AdamW with warmup and cosine decay as ``options`` (:class:`TrainOptions`) say; validation
    (top-1 accuracy) and a resumable checkpoint at each epoch end and every
    ``options.checkpoint_every`` steps.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from transformers.utils import logging as hf_logging

    opts = options if options is not None else TrainOptions()
    start_time = time.monotonic()
    torch.set_num_threads(opts.num_threads)
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar under ours at each save
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_arrays, val_arrays = load_arrays(examples_train), load_arrays(examples_val)
    n_val = len(val_arrays["labels"])
    if opts.max_val_examples is not None and n_val > opts.max_val_examples:
        keep = np.sort(
            np.random.default_rng(opts.seed).choice(n_val, opts.max_val_examples, replace=False)
        )
        val_arrays = {name: array[keep] for name, array in val_arrays.items()}
    n_train = len(train_arrays["labels"])
    steps_per_epoch = math.ceil(n_train / opts.batch_size)
    total_steps = opts.epochs * steps_per_epoch

    loaded = load_checkpoint(out_dir) if opts.resume else None
    dev = resolve_device(opts.device)
    if loaded is not None:
        model, state = loaded
    else:
        torch.manual_seed(opts.seed)
        if opts.init_from is not None:
            # trained in float32 whatever the saved dtype (the shipped model is float16)
            model = SpliceMergeModel.from_pretrained(str(opts.init_from)).float()
            config = model.config
        elif opts.architecture is not None:
            config = copy.deepcopy(opts.architecture)  # the caller's stays as it was
        else:
            config = SpliceConfig(max_position=train_arrays["input_ids"].shape[-1])
        config.class_weights = (
            class_weights_for(train_arrays["labels"]) if opts.class_weights else None
        )
        if opts.init_from is None:
            model = SpliceMergeModel(config)
        state = {"step": 0, "best_accuracy": -1.0, "best_step": 0, "history": []}
    _check_fits(model.config, train_arrays, val_arrays)
    model.to(dev)
    model.train()
    optimizer = make_optimizer(model, opts.lr, opts.weight_decay)
    warmup = max(1, int(opts.warmup_ratio * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total_steps))
    if loaded is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])

    average = WeightAverage(model, opts.ema_decay, state.get("ema")) if opts.ema_decay else None
    step, history = state["step"], state["history"]
    best = {"accuracy": state["best_accuracy"], "step": state["best_step"]}
    train_seconds, train_examples, train_tokens = 0.0, 0, 0
    ema_loss: float | None = None
    stopped_by_time = False

    def validate_and_checkpoint() -> None:
        kept = average.model if average is not None else model
        metrics = (
            evaluate(kept, val_arrays, opts.eval_batch_size) if len(val_arrays["labels"]) else {}
        )
        accuracy = metrics.get("accuracy", 0.0)
        record = {"step": step, "epoch": step / steps_per_epoch, "train_loss": ema_loss, **metrics}
        history.append(record)
        with open(out_dir / HISTORY_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if accuracy > best["accuracy"] or not metrics:  # without validation: keep the latest
            best.update(accuracy=accuracy, step=step)
            kept.save_pretrained(out_dir)
        training_state = {
            "step": step,
            "best_accuracy": best["accuracy"],
            "best_step": best["step"],
            "history": history,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "seed": opts.seed,
            "batch_size": opts.batch_size,
        }
        if average is not None:
            training_state["ema"] = average.state_dict()
        save_checkpoint(out_dir, model, training_state)
        bar.update(task, val=f"{accuracy:.3f} (best {best['accuracy']:.3f})")

    columns = [
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  val acc {task.fields[val]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    last_val = f"{best['accuracy']:.3f}" if best["accuracy"] >= 0 else "-"
    with Progress(*columns, disable=not opts.progress) as bar:
        task = bar.add_task("train", total=total_steps, completed=step, loss="-", val=last_val)
        while step < total_steps and not stopped_by_time:
            epoch, offset = divmod(step, steps_per_epoch)
            order = np.random.default_rng(opts.seed + epoch).permutation(n_train)
            for first in range(offset * opts.batch_size, n_train, opts.batch_size):
                t0 = time.perf_counter()
                batch = make_batch(train_arrays, order[first : first + opts.batch_size])
                if opts.mirror_rate > 0:
                    which = torch.rand(len(batch["labels"])) < opts.mirror_rate
                    batch = mirror(batch, which)
                batch = to_device(batch, dev)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=opts.bf16):
                    loss = model(**batch).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                if average is not None:
                    average.update(model, step)
                train_seconds += time.perf_counter() - t0
                train_examples += len(batch["labels"])
                train_tokens += batch["input_ids"].numel()
                value = loss.item()
                ema_loss = value if ema_loss is None else 0.95 * ema_loss + 0.05 * value
                bar.update(task, completed=step, loss=f"{ema_loss:.3f}")
                epoch_end = step % steps_per_epoch == 0
                out_of_time = opts.max_minutes is not None and (
                    time.monotonic() - start_time >= 60 * opts.max_minutes
                )
                if epoch_end or step % opts.checkpoint_every == 0 or out_of_time:
                    validate_and_checkpoint()
                if out_of_time:
                    stopped_by_time = step < total_steps
                    break

    return TrainResult(
        step=step,
        total_steps=total_steps,
        best_accuracy=best["accuracy"],
        best_step=best["step"],
        stopped_by_time=stopped_by_time,
        examples_per_second=train_examples / max(train_seconds, 1e-9),
        tokens_per_second=train_tokens / max(train_seconds, 1e-9),
        history=history,
    )


def _check_fits(config: SpliceConfig, *sets: Arrays) -> None:
    """Fail early when the data do not fit the model's vocabulary, positions or labels."""
    for arrays in sets:
        n, s, length = arrays["input_ids"].shape
        if n == 0:
            continue
        if s != config.num_sequences or arrays["labels"].shape[1] != config.num_labels:
            raise ValueError(f"data have {s} sequences / {arrays['labels'].shape[1]} labels")
        if config.body is None and length > config.max_position:
            raise ValueError(f"sequences of length {length} > max_position {config.max_position}")
        if int(arrays["input_ids"].max()) >= config.vocab_size:
            raise ValueError(f"token id {int(arrays['input_ids'].max())} >= vocab_size")
        if int(arrays["edit_ids"].max()) >= config.num_edit_types:
            raise ValueError("edit type id out of range")
