"""Masked-language-model pretraining of the classifier's encoder body on code (CodeBERT-style).

MergeBERT fine-tunes an encoder pretrained on source code; ours is pretrained here, on the code of
the training repositories only (the human-merged files of the ``train`` split, exact duplicates
dropped), so nothing from the validation repositories leaks in.

- :func:`build_corpus` tokenizes that code into one ``uint16`` array of subword ids, files
  separated by ``</s>``.
- :func:`pretrain` trains the built-in
  :class:`~splice.models.training.modeling.TransformerBody` of a
  :class:`~splice.models.training.modeling.SpliceMergeModel` to predict 15% masked subwords (of
  those, 80% replaced by the mask id, 10% by a random id, 10% kept). The byte-level tokenizer
  never emits ``<unk>``, so ``<unk>`` serves as the mask token. Every input token carries the
  ``equal`` edit type, as context tokens do in the classifier's input. The prediction head is tied
  to the token embeddings and dropped afterwards: the saved directory is a ``SpliceMergeModel``
  (classifier head untrained) that ``splice train --init DIR`` fine-tunes.

    python -m splice.models.training.pretrain corpus --out runs/corpus.npy
    python -m splice.models.training.pretrain train --corpus runs/corpus.npy --out runs/pretrained
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from splice.models.training.configuration import SpliceConfig

#: Share of subwords chosen for prediction, and how they are corrupted (mask, random, kept).
MASK_RATE = 0.15
MASK_SPLIT = (0.8, 0.1, 0.1)


def build_corpus(
    data_dir: str | Path,
    tokenizer_path: str | Path,
    split: str = "train",
    max_tokens: int | None = None,
    max_file_chars: int = 200_000,
) -> np.ndarray:
    """Subword ids (uint16) of the distinct human-merged files of ``split``, ``</s>``-separated."""
    from splice.models.serving.tokenizer import EOS
    from tokenizers import Tokenizer

    from splice.data.dataset import iter_records

    tok = Tokenizer.from_file(str(tokenizer_path))
    if tok.get_vocab_size() > np.iinfo(np.uint16).max:
        raise ValueError("vocabulary too large for uint16 ids")
    eos = tok.token_to_id(EOS)
    seen: set[bytes] = set()
    texts: list[str] = []
    for record in iter_records(data_dir, split=split):
        text = record["merged"][:max_file_chars]
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            texts.append(text)
    order = np.random.default_rng(0).permutation(len(texts))  # mix repositories
    parts: list[np.ndarray] = []
    total = 0
    for start in range(0, len(order), 256):
        batch = [texts[i] for i in order[start : start + 256]]
        for enc in tok.encode_batch(batch, add_special_tokens=False):
            ids = np.asarray(enc.ids + [eos], dtype=np.uint16)
            parts.append(ids)
            total += len(ids)
        if max_tokens is not None and total >= max_tokens:
            break
    corpus = np.concatenate(parts) if parts else np.zeros(0, np.uint16)
    return corpus[:max_tokens] if max_tokens is not None else corpus


def mask_tokens(
    ids: np.ndarray, rng: np.random.Generator, vocab_size: int, mask_id: int, n_special: int
) -> tuple[np.ndarray, np.ndarray]:
    """(corrupted inputs, targets with -100 where nothing is predicted) for a batch of ids."""
    ids = ids.astype(np.int64)
    chosen = rng.random(ids.shape) < MASK_RATE
    chosen &= ids >= n_special  # never ask for special tokens
    targets = np.where(chosen, ids, -100)
    draw = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (draw < MASK_SPLIT[0])] = mask_id
    rand = chosen & (draw >= MASK_SPLIT[0]) & (draw < MASK_SPLIT[0] + MASK_SPLIT[1])
    inputs[rand] = rng.integers(n_special, vocab_size, size=int(rand.sum()))
    return inputs, targets


@dataclass(frozen=True)
class PretrainOptions:
    """How :func:`pretrain` trains; vary it with ``dataclasses.replace``."""

    #: Subwords per training window (the network's ``max_position`` must be at least this).
    seq_len: int = 192
    #: Windows per optimiser step.
    batch_size: int = 256
    #: Optimiser steps; the learning-rate schedule spans them.
    steps: int = 10_000
    #: Peak AdamW learning rate (linear warmup, then cosine decay to 5% of it).
    lr: float = 1e-3
    #: Steps of linear learning-rate warmup.
    warmup: int = 500
    #: Time budget: stop when spent, the cosine then following elapsed time; None: no budget.
    max_minutes: float | None = None
    #: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
    device: str = "auto"
    #: Seeds the initial weights, the windows drawn and the masking.
    seed: int = 0
    #: Log the smoothed loss every this many steps (``pretrain_log.jsonl`` and stdout).
    log_every: int = 200
    #: Shape of the network (built-in body only); default: ``SpliceConfig(max_position=seq_len)``.
    architecture: SpliceConfig | None = None


def pretrain(
    corpus: np.ndarray, out_dir: str | Path, options: PretrainOptions | None = None
) -> dict[str, float]:
    """Train the body of a fresh ``SpliceMergeModel`` by masked LM; save it to ``out_dir``."""
    import torch
    import torch.nn.functional as F
    from splice.models.serving.encoding import EQUAL
    from splice.models.serving.tokenizer import SPECIAL_TOKENS, UNK
    from splice.models.training.configuration import SpliceConfig
    from splice.models.training.modeling import SpliceMergeModel
    from splice.models.training.train import resolve_device, warmup_cosine

    opts = options if options is not None else PretrainOptions()
    seq_len, batch_size, steps, lr = opts.seq_len, opts.batch_size, opts.steps, opts.lr
    dev = resolve_device(opts.device)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    config = opts.architecture or SpliceConfig(max_position=seq_len)
    if config.body is not None or config.max_position < seq_len:
        raise ValueError("pretraining needs the built-in body with max_position >= seq_len")
    model = SpliceMergeModel(config).to(dev)
    body = model.encoder
    head = torch.nn.Sequential(
        torch.nn.Linear(config.hidden_size, config.hidden_size),
        torch.nn.GELU(),
        torch.nn.LayerNorm(config.hidden_size),
    ).to(dev)
    out_bias = torch.nn.Parameter(torch.zeros(config.vocab_size, device=dev))
    params = [*body.parameters(), *head.parameters(), model.edit_embeddings.weight, out_bias]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    schedule = warmup_cosine(opts.warmup, steps, floor=0.05)
    mask_id = SPECIAL_TOKENS.index(UNK)
    n_windows = len(corpus) // seq_len
    if n_windows < batch_size:
        raise ValueError(f"corpus of {len(corpus)} tokens is too small")
    windows = corpus[: n_windows * seq_len].reshape(n_windows, seq_len)
    bf16 = dev.type == "cuda"
    start, seen, loss_ema, step = time.monotonic(), 0, None, 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "pretrain_log.jsonl", "w")  # noqa: SIM115 - closed below
    model.train()
    for step in range(1, steps + 1):
        ids = windows[rng.integers(0, n_windows, batch_size)]
        inputs, targets = mask_tokens(ids, rng, config.vocab_size, mask_id, len(SPECIAL_TOKENS))
        x = torch.from_numpy(inputs).to(dev)
        y = torch.from_numpy(targets).to(dev)
        mask = torch.ones_like(x)
        edits = model.edit_embeddings(torch.full_like(x, EQUAL))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            hidden = body(x, edits, mask)
            picked = hidden[y >= 0]
            logits = head(picked) @ body.token_embeddings.weight.T + out_bias
            loss = F.cross_entropy(logits.float(), y[y >= 0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        # the cosine follows steps or, under a time budget, elapsed time, whichever is further
        done = step
        if opts.max_minutes is not None:
            done = max(done, int(steps * (time.monotonic() - start) / (60 * opts.max_minutes)))
        for group in opt.param_groups:
            group["lr"] = lr * schedule(done)
        opt.step()
        seen += x.numel()
        value = loss.item() if step % 20 == 0 or step == 1 else None
        if value is not None:
            loss_ema = value if loss_ema is None else 0.9 * loss_ema + 0.1 * value
        if step % opts.log_every == 0:
            rec = {"step": step, "loss": loss_ema, "tokens": seen, "s": time.monotonic() - start}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
        if opts.max_minutes is not None and time.monotonic() - start >= 60 * opts.max_minutes:
            break
    log.close()
    model.to("cpu").save_pretrained(out_dir)
    elapsed = time.monotonic() - start
    summary = {
        "steps": step,
        "tokens": seen,
        "seconds": elapsed,
        "tokens_per_second": seen / elapsed,
        "final_loss": loss_ema if loss_ema is not None else math.nan,
        "perplexity": math.exp(loss_ema) if loss_ema is not None else math.nan,
    }
    (out_dir / "pretrain_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus", help="tokenize the training split's code")
    c.add_argument("--data", default="../shared/data/merges")
    c.add_argument("--tokenizer", default="models/shipped/tokenizer.json")
    c.add_argument("--max-tokens", type=int, default=None)
    c.add_argument("--out", required=True)
    t = sub.add_parser("train", help="masked-LM pretraining of the body")
    t.add_argument("--corpus", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--hidden", type=int, default=192)
    t.add_argument("--layers", type=int, default=4)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--seq-len", type=int, default=192)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--steps", type=int, default=10_000)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--minutes", type=float, default=None)
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.cmd == "corpus":
        t0 = time.perf_counter()
        corpus = build_corpus(args.data, args.tokenizer, max_tokens=args.max_tokens)
        np.save(args.out, corpus)
        print(f"{len(corpus)} tokens -> {args.out} in {time.perf_counter() - t0:.0f} s")
        return
    from splice.models.training.configuration import SpliceConfig

    config = SpliceConfig(
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        max_position=args.seq_len,
    )
    corpus = np.load(args.corpus)
    options = PretrainOptions(
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        max_minutes=args.minutes,
        device=args.device,
        seed=args.seed,
        architecture=config,
    )
    summary = pretrain(corpus, args.out, options)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
