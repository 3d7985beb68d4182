"""The code language model: a small Llama-architecture causal LM trained here from scratch.

:class:`LMConfig` is the architecture (a ``transformers.LlamaConfig``, or with ``experts`` a
Mixtral-style mixture of experts, ``MixtralConfig``, with the vocabulary of
:class:`~splice.models.serving.prompt.LMTokenizer`, padded to a multiple of 8), so the saved
folder is a standard Hugging Face causal LM (``AutoModelForCausalLM.from_pretrained``) that
PEFT, the KV-cache API and the merging engine take unchanged. :func:`train_lm` trains it on the
sequences of :mod:`splice.models.training.lm_corpus` (code with fill-in-the-middle, and the
resolution task) with AdamW, linear warm-up then cosine decay, gradient clipping and optional
bfloat16 autocast, and writes to ``out_dir``:

- ``config.json``, ``model.safetensors`` (``save_pretrained``), ``tokenizer.json`` (the LM's
  vocabulary with its special tokens), ``training_history.jsonl`` (train loss every
  ``log_every`` steps, validation loss every ``eval_every``), ``report.json``;
- ``checkpoint/`` every ``checkpoint_minutes`` (a loadable model plus the optimizer state), from
  which ``resume`` continues.

Data-parallel: started by ``torchrun`` (``WORLD_SIZE``/``RANK`` set), every process joins the
process group (gloo on CPU, nccl on CUDA), wraps the model in ``DistributedDataParallel`` and
reads its own records (:class:`~splice.models.training.lm_corpus.CorpusOptions` ``rank``);
rank 0 writes. The batch size is per process.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from splice.models.training.lm_corpus import (
    DEFAULT_DATA,
    DEFAULT_TOKENIZER,
    IGNORE,
    CorpusOptions,
    LMSequence,
    build_sequences,
    iter_sequences,
)

HISTORY = "training_history.jsonl"
CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class LMConfig:
    """The architecture (defaults: about 6.4M parameters with the shipped tokenizer)."""

    hidden: int = 256
    layers: int = 6
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 688
    max_positions: int = 2048
    rope_theta: float = 10_000.0
    tie_embeddings: bool = True
    #: The embedding rows are padded to a multiple of this (0: not padded).
    pad_vocab_to: int = 8
    #: Experts per layer (0: a dense Llama; else a Mixtral-style MoE whose experts each have
    #: ``intermediate`` hidden units), the experts each token is routed to, and the weight of
    #: the router's load-balancing loss in training.
    experts: int = 0
    experts_per_token: int = 2
    router_aux_loss: float = 0.01

    def __post_init__(self) -> None:
        if min(self.hidden, self.layers, self.heads, self.kv_heads, self.intermediate) <= 0:
            raise ValueError("hidden, layers, heads, kv_heads and intermediate must be positive")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} is not a multiple of kv_heads {self.kv_heads}")
        if self.experts and not 0 < self.experts_per_token <= self.experts:
            raise ValueError(
                f"experts_per_token {self.experts_per_token} is not between 1 and {self.experts}"
            )

    def transformers_config(self, vocab_size: int, end_id: int):
        """The ``LlamaConfig`` (or ``MixtralConfig``) for a vocabulary of ``vocab_size`` ids."""
        from transformers import LlamaConfig, MixtralConfig

        if self.pad_vocab_to:
            vocab_size = -(-vocab_size // self.pad_vocab_to) * self.pad_vocab_to
        shared: dict[str, Any] = dict(
            vocab_size=vocab_size,
            hidden_size=self.hidden,
            intermediate_size=self.intermediate,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            max_position_embeddings=self.max_positions,
            rope_theta=self.rope_theta,
            tie_word_embeddings=self.tie_embeddings,
            bos_token_id=None,
            eos_token_id=end_id,
            # no padding row: the end token separates packed documents and must keep learning
            # from its lookups (an embedding's padding row gets no gradient from them)
            pad_token_id=None,
        )
        if self.experts:
            return MixtralConfig(
                **shared,
                num_local_experts=self.experts,
                num_experts_per_tok=self.experts_per_token,
                output_router_logits=self.router_aux_loss > 0,
                router_aux_loss_coef=self.router_aux_loss,
            )
        return LlamaConfig(**shared, attention_bias=False, mlp_bias=False)


def build_model(config: LMConfig, tokenizer: str = DEFAULT_TOKENIZER, seed: int = 0):
    """A freshly initialised causal LM (Llama or Mixtral) for the LM tokenizer at ``tokenizer``."""
    import torch
    from splice.models.serving.prompt import LMTokenizer
    from transformers import AutoModelForCausalLM

    tok = LMTokenizer.from_file(tokenizer)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(
        config.transformers_config(tok.vocab_size, tok.special.end)
    )


def count_parameters(model) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class LMTrainOptions:
    """One training run (defaults: the CPU recipe's settings, docs/LM.md)."""

    out_dir: str
    data_dir: str = DEFAULT_DATA
    tokenizer: str = DEFAULT_TOKENIZER
    model: LMConfig = field(default_factory=LMConfig)
    #: Stop after this many optimizer steps, or (when ``steps`` is 0) after this many tokens
    #: over all processes; ``max_minutes`` stops earlier when spent.
    steps: int = 0
    tokens: int = 20_000_000
    max_minutes: float | None = None
    batch_size: int = 8
    seq_len: int = 512
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    eval_every: int = 200
    log_every: int = 20
    val_sequences: int = 200
    checkpoint_minutes: float = 10.0
    seed: int = 0
    resolution_share: float = 0.2
    fim_rate: float = 0.5
    spm_rate: float = 0.5
    langs: tuple[str, ...] | None = None
    #: bfloat16 autocast (on this AVX2 CPU it is ~6x slower than float32: measured, docs/LM.md).
    bf16: bool = False
    threads: int = 2
    device: str = "cpu"
    resume: bool = False
    #: Start from this saved causal LM instead of a fresh one (e.g. full fine-tuning).
    init_from: str | None = None
    #: The dtype of the saved weights ("float32" or "bfloat16").
    save_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.steps < 0 or self.tokens < 0 or (self.steps == 0 and self.tokens == 0):
            raise ValueError("give a positive number of steps or tokens")
        for name in ("batch_size", "eval_every", "log_every", "threads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr {self.lr} is not a positive number")
        if self.warmup < 0 or self.val_sequences < 0:
            raise ValueError("warmup and val_sequences must not be negative")
        if self.seq_len > self.model.max_positions:
            raise ValueError(
                f"seq_len {self.seq_len} is longer than max_positions {self.model.max_positions}"
            )
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device {self.device!r} is not cpu, cuda or auto")
        if self.save_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"save_dtype {self.save_dtype!r} is not float32 or bfloat16")
        if not Path(self.tokenizer).is_file():
            raise ValueError(f"tokenizer {self.tokenizer} not found")
        self.corpus("train")  # checks the shares and seq_len

    def corpus(self, split: str, rank: int = 0, world: int = 1) -> CorpusOptions:
        return CorpusOptions(
            data_dir=self.data_dir,
            tokenizer=self.tokenizer,
            split=split,
            seq_len=self.seq_len,
            fim_rate=self.fim_rate,
            spm_rate=self.spm_rate,
            resolution_share=self.resolution_share,
            langs=self.langs,
            seed=self.seed if split == "train" else 1_000_003,
            rank=rank,
            world=world,
            repeat=split == "train",
        )


@dataclass
class LMTrainReport:
    """What :func:`train_lm` did."""

    out_dir: str
    parameters: int
    steps: int
    tokens: int
    seconds: float
    tokens_per_second: float
    world: int
    stopped_by_time: bool
    final_val: dict[str, float] | None
    history: list[dict[str, Any]]


def learning_rate(step: int, total: int, options: LMTrainOptions) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``total``."""
    if step < options.warmup:
        return options.lr * (step + 1) / options.warmup
    progress = min(1.0, (step - options.warmup) / max(1, total - options.warmup))
    floor = options.lr * options.min_lr_ratio
    return floor + (options.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def batches(sequences, batch_size: int, device):
    """Tensors ``(ids, labels)`` of ``batch_size`` sequences at a time."""
    import torch

    buf: list[LMSequence] = []
    for seq in sequences:
        buf.append(seq)
        if len(buf) == batch_size:
            ids = torch.tensor([s.ids for s in buf], dtype=torch.long, device=device)
            labels = torch.tensor([s.labels for s in buf], dtype=torch.long, device=device)
            buf = []
            yield ids, labels


def token_losses(model, ids, labels):
    """Per-position next-token losses (nats; 0 where ignored) and the mask of counted ones."""
    import torch.nn.functional as F

    logits = model(input_ids=ids).logits[:, :-1].float()
    target = labels[:, 1:]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        target.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(target.shape)
    return loss, target != IGNORE


def evaluate(model, val: list[LMSequence], batch_size: int, device, bf16: bool, tok, dist=None):
    """Validation losses over ``val`` (sharded by rank when ``dist`` is given): mean loss per
    token overall, on code and on resolved lines, bits per token, and bits per byte of code."""
    import torch

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    mine = val[rank::world]
    sums = torch.zeros(6, dtype=torch.float64, device=device)
    model.eval()
    with torch.no_grad(), _autocast(device, bf16):
        for start in range(0, len(mine), batch_size):
            part = mine[start : start + batch_size]
            ids = torch.tensor([s.ids for s in part], dtype=torch.long, device=device)
            labels = torch.tensor([s.labels for s in part], dtype=torch.long, device=device)
            loss, mask = token_losses(model, ids, labels)
            for row, seq in enumerate(part):
                total, count = float(loss[row].sum()), float(mask[row].sum())
                if seq.kind == "code":
                    counted = [t for t in seq.labels[1:] if t != IGNORE]
                    nbytes = len(tok.decode(counted).encode("utf-8"))
                    sums += torch.tensor([total, count, total, count, 0, nbytes], device=device)
                else:
                    sums += torch.tensor([total, count, 0, 0, total, 0], device=device)
    if dist:
        dist.all_reduce(sums)
    model.train()
    loss_sum, n, code_sum, n_code, res_sum, nbytes = sums.tolist()
    n_res = n - n_code
    out = {
        "val_loss": loss_sum / max(n, 1),
        "val_code_loss": code_sum / max(n_code, 1),
        "val_resolution_loss": res_sum / max(n_res, 1),
        "val_tokens": int(n),
    }
    out["val_bits_per_token"] = out["val_loss"] / math.log(2)
    out["val_code_bits_per_byte"] = code_sum / math.log(2) / max(nbytes, 1)
    return out


def _autocast(device, bf16: bool):
    import contextlib

    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def _distributed(device: str):
    """The process group when started by torchrun (else None), and this process's device."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world <= 1:
        return None, device
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return dist, device


def save_lm(model, out: Path, tokenizer: str, dtype: str = "float32") -> None:
    """``save_pretrained`` (safetensors) plus the LM's ``tokenizer.json`` into ``out``."""
    import copy

    import torch
    from splice.models.serving.prompt import LMTokenizer

    out.mkdir(parents=True, exist_ok=True)
    if dtype == "bfloat16":
        model = copy.deepcopy(model).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    LMTokenizer.from_file(tokenizer).to_hf().save(str(out / "tokenizer.json"))


def _save_checkpoint(model, optimizer, out: Path, options: LMTrainOptions, state: dict) -> None:
    import torch

    tmp = out / (CHECKPOINT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_lm(model, tmp, options.tokenizer)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    final = out / CHECKPOINT
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def train_lm(
    options: LMTrainOptions,
    echo=None,
    train_data: Iterable[LMSequence] | None = None,
    val_data: list[LMSequence] | None = None,
) -> LMTrainReport:
    """Train the LM (module doc); ``echo`` gets one line per evaluation (rank 0).

    ``train_data`` (this process's sequences) and ``val_data`` replace the corpus of the
    shards (e.g. a synthetic task)."""
    import torch
    from splice.models.serving.prompt import LMTokenizer
    from transformers import AutoModelForCausalLM

    dist, device = _distributed(options.device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    main = rank == 0
    torch.set_num_threads(options.threads)
    out = Path(options.out_dir)
    ckpt = out / CHECKPOINT
    tok = LMTokenizer.from_file(options.tokenizer)
    if options.resume and (ckpt / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
        state = json.loads((ckpt / "state.json").read_text())
    elif options.init_from:
        model = AutoModelForCausalLM.from_pretrained(options.init_from, dtype=torch.float32)
        state = {}
    else:
        model = build_model(options.model, options.tokenizer, options.seed)
        state = {}
    if model.config.vocab_size < tok.vocab_size:
        raise ValueError(
            f"the model's vocabulary ({model.config.vocab_size}) is smaller than the "
            f"tokenizer's ({tok.vocab_size})"
        )
    model.to(device).train()
    parameters = count_parameters(model)
    net = model
    if dist:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=None if device == "cpu" else [device])
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": options.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=options.lr,
        betas=options.betas,
    )
    if state and (ckpt / "optimizer.pt").exists():
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device))
    per_step = options.batch_size * options.seq_len * world
    total = options.steps or max(1, options.tokens // per_step)
    step = int(state.get("step", 0))
    seconds_before = float(state.get("seconds", 0.0))
    history: list[dict[str, Any]] = list(state.get("history", []))
    if val_data is None:
        val_data = build_sequences(options.corpus("val"), options.val_sequences)
    val = val_data
    if train_data is None:
        train_data = iter_sequences(options.corpus("train", rank, world))
    stream = iter(train_data)
    for _ in range(step * options.batch_size):  # the sequences the checkpoint has seen
        next(stream)
    data = batches(stream, options.batch_size, device)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        history_file = (out / HISTORY).open("w")  # on resume: the checkpoint's history
        for entry in history:
            history_file.write(json.dumps(entry) + "\n")
    started = time.monotonic()
    last_checkpoint = started
    stopped_by_time = False
    running, running_n = 0.0, 0

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        if main:
            history_file.write(json.dumps(entry) + "\n")
            history_file.flush()

    def elapsed() -> float:
        return seconds_before + time.monotonic() - started

    def run_eval() -> dict[str, float]:
        result = evaluate(model, val, options.batch_size, device, options.bf16, tok, dist)
        entry = {"step": step, "tokens": step * per_step, "seconds": round(elapsed(), 1)}
        entry.update({k: round(v, 5) if isinstance(v, float) else v for k, v in result.items()})
        record(entry)
        if main and echo:
            echo(
                f"step {step}/{total} tokens {step * per_step:,} "
                f"val loss {result['val_loss']:.4f} (code {result['val_code_loss']:.4f}, "
                f"resolution {result['val_resolution_loss']:.4f}; "
                f"{result['val_code_bits_per_byte']:.3f} bits/byte of code) "
                f"{elapsed() / 60:.1f} min"
            )
        return result

    final_val = None
    if step == 0 and val:
        final_val = run_eval()
    while step < total:
        ids, labels = next(data)
        lr = learning_rate(step, total, options)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with _autocast(device, options.bf16):
            loss = net(input_ids=ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
        optimizer.step()
        step += 1
        running += float(loss.detach())
        running_n += 1
        if step % options.log_every == 0 or step == total:
            record(
                {
                    "step": step,
                    "tokens": step * per_step,
                    "seconds": round(elapsed(), 1),
                    "train_loss": round(running / running_n, 5),
                    "lr": lr,
                }
            )
            running, running_n = 0.0, 0
        stop = options.max_minutes is not None and elapsed() >= options.max_minutes * 60
        if dist:  # every rank stops at the same step
            flag = torch.tensor([float(stop)], device=device)
            dist.all_reduce(flag)
            stop = bool(flag.item())
        if val and (step % options.eval_every == 0 or step == total or stop):
            final_val = run_eval()
        now = time.monotonic()
        if main and (now - last_checkpoint >= options.checkpoint_minutes * 60) and step < total:
            _save_checkpoint(
                model,
                optimizer,
                out,
                options,
                {"step": step, "seconds": elapsed(), "history": history},
            )
            last_checkpoint = now
        if stop:
            stopped_by_time = step < total
            break
    seconds = elapsed()
    report = LMTrainReport(
        out_dir=str(out),
        parameters=parameters,
        steps=step,
        tokens=step * per_step,
        seconds=seconds,
        tokens_per_second=step * per_step / max(seconds, 1e-9),
        world=world,
        stopped_by_time=stopped_by_time,
        final_val=final_val,
        history=history,
    )
    if main:
        history_file.close()
        save_lm(model, out, options.tokenizer, options.save_dtype)
        summary = {k: v for k, v in asdict(report).items() if k != "history"}
        summary["options"] = _jsonable(asdict(options))
        (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
        shutil.rmtree(ckpt, ignore_errors=True)
    if dist:
        dist.barrier()
        dist.destroy_process_group()
    return report


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
