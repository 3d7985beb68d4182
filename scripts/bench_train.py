"""Training throughput of SpliceMergeModel on this CPU: examples/s and tokens/s per setting.

Full-length random batches (every position attended, so no trimming): a worst case for L.

    python scripts/bench_train.py --threads 2 --steps 8 --setting 192,3,128 --setting 128,2,128
"""

from __future__ import annotations

import argparse
import time

import torch
from splice.models.training.configuration import SpliceConfig
from splice.models.training.modeling import SpliceMergeModel
from splice.models.training.train import make_optimizer


def bench(
    hidden: int, layers: int, length: int, batch: int, steps: int, bf16: bool = False
) -> tuple[float, float]:
    """(examples/s, tokens/s) of forward + backward + AdamW steps, after two warm-up steps."""
    torch.manual_seed(0)
    config = SpliceConfig(hidden_size=hidden, num_layers=layers, max_position=length)
    model = SpliceMergeModel(config).train()
    optimizer = make_optimizer(model, 5e-4, 0.01)
    shape = (batch, 4, length)
    ids = torch.randint(5, config.vocab_size, shape)
    edits = torch.randint(1, 5, shape)
    mask = torch.ones(shape, dtype=torch.long)
    labels = torch.zeros(batch, 10)
    labels[torch.arange(batch), torch.randint(0, 10, (batch,))] = 1
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(ids, edits, mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    examples = steps * batch
    return examples / seconds, examples * 4 * length / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--setting", action="append", help="hidden,layers,L (repeatable)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = args.setting or ["192,3,128", "128,2,128", "192,3,64", "256,4,128"]
    print(f"threads {args.threads}, batch {args.batch}, {args.steps} timed steps, bf16 {args.bf16}")
    print("hidden | layers | L | params | examples/s | tokens/s")
    for setting in settings:
        hidden, layers, length = (int(x) for x in setting.split(","))
        n_params = sum(
            p.numel()
            for p in SpliceMergeModel(
                SpliceConfig(hidden_size=hidden, num_layers=layers, max_position=length)
            ).parameters()
        )
        ex_s, tok_s = bench(hidden, layers, length, args.batch, args.steps, args.bf16)
        print(f"{hidden} | {layers} | {length} | {n_params / 1e6:.2f}M | {ex_s:.1f} | {tok_s:.0f}")


if __name__ == "__main__":
    main()
