"""Splice's KV-cache methods side by side with kvpress's presses, on the same model and inputs
(issue 16, section 3). One command per side, the same JSON schema; kvpress pins an older
transformers, so its side runs in its own venv (``scripts/kvpress_env.sh``)::

    .venv/bin/python scripts/kv_eval.py run --model runs/lm/short --side splice \\
        --files 8 --json runs/kv_eval/splice.json
    runs/kvpress-venv/bin/python scripts/kv_eval.py run --model runs/lm/short --side kvpress \\
        --files 8 --json runs/kv_eval/kvpress.json
    runs/kvpress-venv/bin/python scripts/kv_eval.py check --model runs/lm/short
    .venv/bin/python scripts/kv_eval.py report runs/kv_eval/splice.json runs/kv_eval/kvpress.json

Inputs: long files of the validation repositories (``merged`` texts of
``../shared/data/merges``, repositories with ``split_of(repo) == "val"``), at least
``--min-tokens`` tokens, cut to ``--max-tokens``; chosen deterministically (shards in name
order, a few distinct paths per repository, round robin). Every method runs as a press at
prefill (Splice's through :class:`~splice.models.merging.cache.press.CachePress`), at keep
50/35/20/10% and 256/512 entries, plus the full cache. Measured per method and budget:

* bits per byte of each file's last 512 tokens, read after the compressed cache of what precedes
  them (the tokens are fed with their true positions and a mask over the stored entries);
* needle in code: an identifier whose earlier occurrences all lie in one third of the context
  (early, middle, late), used on a line near the file's end; the context up to that line is
  compressed, the line's start is read, and a hit is the greedy prediction of every token of the
  identifier;
* cache bytes held after the prefill, the time spent compressing, the prefill time (with the
  compression), and whether every layer holds exactly the budget.

``check`` (kvpress venv): whether Splice's ``streaming_llm`` and ``snapkv`` keep exactly the
entries kvpress's ``StreamingLLMPress`` and ``SnapKVPress`` keep on the same input, and whether
the harness's continuation (true positions, explicit mask) reproduces one plain forward.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import inspect
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCORED = 512  # tokens whose bits per byte are measured, at each file's end
QUERY_WINDOW = 64
DEPTHS = ("early", "middle", "late")
#: budget label -> (keep ratio, entries): one of the two
BUDGETS: dict[str, tuple[float | None, int | None]] = {
    "50%": (0.5, None),
    "35%": (0.35, None),
    "20%": (0.2, None),
    "10%": (0.1, None),
    "256": (None, 256),
    "512": (None, 512),
}
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{5,}")  # six characters or more
_KEYWORD_TEXT = (
    "self this super base None True False null true false undefined return import from "
    "public private protected static final const func function class struct interface void "
    "string bool boolean float double long char byte object async await yield else elif while "
    "break continue default case switch throw throws catch finally except raise assert pass "
    "lambda with package using namespace override virtual readonly abstract extends implements "
    "export module require typeof instanceof internal sealed partial type var let"
)
KEYWORDS = frozenset(_KEYWORD_TEXT.split())


# ---------------------------------------------------------------- inputs


@dataclass
class Needle:
    """An identifier ``name`` used at token ``answer`` (to ``answer_end``) on a line starting
    at token ``line``; its earlier occurrences all lie at ``depth`` of the ``line`` tokens
    before the line."""

    name: str
    depth: str
    line: int
    answer: int
    answer_end: int


@dataclass
class InputFile:
    """One validation file cut to at most ``max_tokens`` tokens."""

    id: str
    repo: str
    ids: list[int]
    scored_bytes: int
    needles: list[Needle] = field(default_factory=list)


def find_needles(text: str, offsets: list[tuple[int, int]], max_line: int = 48) -> list[Needle]:
    """At most one needle per depth: the last identifier use in the final quarter of the tokens
    whose earlier occurrences all lie in one third of the context before its line."""
    starts = {start: i for i, (start, _) in enumerate(offsets)}
    ends = {end: i + 1 for i, (_, end) in enumerate(offsets)}
    token_starts = [start for start, _ in offsets]
    n = len(offsets)
    matches = list(IDENTIFIER.finditer(text))
    seen: dict[str, list[int]] = {}
    for m in matches:
        seen.setdefault(m.group(), []).append(m.start())
    found: dict[str, Needle] = {}
    for m in reversed(matches):
        use, name = m.start(), m.group()
        if use not in starts or m.end() not in ends or name in KEYWORDS:
            continue
        answer = starts[use]
        if answer < 0.75 * n:
            break
        line_start = text.rfind("\n", 0, use) + 1
        if line_start not in starts:
            continue
        line = starts[line_start]
        if not 1 <= answer - line <= max_line:
            continue  # the line's start is read uncompressed: at least one token of it
        earlier = [p for p in seen[name] if p < line_start]
        if not earlier:
            continue
        thirds = {min(2, 3 * (bisect.bisect_right(token_starts, p) - 1) // line) for p in earlier}
        if len(thirds) != 1:
            continue
        depth = DEPTHS[thirds.pop()]
        if depth not in found:
            found[depth] = Needle(name, depth, line, answer, ends[m.end()])
        if len(found) == len(DEPTHS):
            break
    return [found[d] for d in DEPTHS if d in found]


def pick_files(
    data_dir: Path, tokenizer: Any, count: int, min_tokens: int, max_tokens: int
) -> list[InputFile]:
    """``count`` long validation files, deterministically (module doc)."""
    from splice.data.dataset import read_shard, repo_of_shard, split_of

    shards = sorted(p for p in data_dir.glob("*.jsonl.xz") if split_of(repo_of_shard(p)) == "val")
    if not shards:
        raise SystemExit(f"no validation shards in {data_dir}")
    per_repo = max(1, math.ceil(count / len(shards)))
    chosen: list[list[InputFile]] = []
    for shard in shards:
        taken: list[InputFile] = []
        paths: set[str] = set()
        for record in read_shard(shard):
            text, path = record["merged"], record["path"]
            if path in paths or len(text) < 2 * min_tokens:
                continue
            encoding = tokenizer.encode(text, add_special_tokens=False)
            if len(encoding.ids) < min_tokens:
                continue
            ids = encoding.ids[:max_tokens]
            offsets = encoding.offsets[: len(ids)]
            scored = tokenizer.decode(ids[-SCORED:], skip_special_tokens=False)
            paths.add(path)
            taken.append(
                InputFile(
                    id=record["id"],
                    repo=record["repo"],
                    ids=ids,
                    scored_bytes=len(scored.encode("utf-8")),
                    needles=find_needles(text[: offsets[-1][1]], offsets),
                )
            )
            if len(taken) >= per_repo:
                break
        chosen.append(taken)
    files = [
        f
        for rank in range(per_repo)
        for group in chosen
        if rank < len(group)
        for f in [group[rank]]
    ]
    return files[:count]


# ---------------------------------------------------------------- the model side


def load_model(model_dir: Path, threads: int) -> tuple[Any, Any]:
    """The causal LM (float32, eval) and its ``tokenizers`` tokenizer."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The cache under the name this transformers takes it (``cache`` from 5.2x on)."""
    params = inspect.signature(model.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}


@dataclass
class Prefill:
    cache: Any
    seconds: float
    compress_seconds: float


def prefill(model: Any, ids: list[int], press: Any | None) -> Prefill:
    """One forward of ``ids`` into a fresh ``DynamicCache``, under ``press`` when given; the
    press's ``compress`` is timed (the same wrapper for every press)."""
    import torch
    from transformers import DynamicCache

    spent = [0.0]
    if press is not None:
        inner = press.compress

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            spent[0] += time.perf_counter() - start
            return out

        press.compress = timed
    cache = DynamicCache()
    context = press(model) if press is not None else contextlib.nullcontext()
    start = time.perf_counter()
    with torch.no_grad(), context:
        model(torch.tensor([ids]), use_cache=True, logits_to_keep=1, **cache_kwargs(model, cache))
    seconds = time.perf_counter() - start
    if press is not None:
        del press.compress
    return Prefill(cache, seconds, spent[0])


def continue_logits(model: Any, cache: Any, ids: list[int], position: int) -> Any:
    """(len(ids), vocab) logits of ``ids`` read after ``cache`` at their true positions from
    ``position``: every stored entry visible, the new tokens causal among themselves."""
    import torch

    stored = cache.layers[0].keys.shape[2]
    if any(layer.keys.shape[2] != stored for layer in cache.layers):
        raise ValueError("layers hold different numbers of entries: one mask cannot serve them")
    q = len(ids)
    blocked = torch.finfo(torch.float32).min
    mask = torch.zeros(1, 1, q, stored + q)
    mask[0, 0, :, stored:] = torch.triu(torch.full((q, q), blocked), diagonal=1)
    positions = torch.arange(position, position + q)[None]
    extra: dict[str, Any] = {}
    if "cache_position" in inspect.signature(model.forward).parameters:
        extra["cache_position"] = positions[0]
    with torch.no_grad():
        out = model(
            torch.tensor([ids]),
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **cache_kwargs(model, cache),
            **extra,
        )
    return out.logits[0]


def cache_bytes(cache: Any) -> int:
    return sum(
        t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
    )


# ---------------------------------------------------------------- methods


#: a method: (budget label, context length) -> (press or None, entries it must keep per layer)
MethodFactory = Callable[[str, int], tuple[Any, int]]


def splice_methods() -> dict[str, MethodFactory]:
    """Every registered Splice method as a :class:`CachePress`."""
    from splice.models.merging.cache import cache_method_names
    from splice.models.merging.cache.press import CachePress

    def factory(name: str) -> MethodFactory:
        def make(label: str, n: int) -> tuple[Any, int]:
            budget = budget_of(label)
            return CachePress(name, budget, query_window=QUERY_WINDOW), budget.size(n)

        return make

    return {name: factory(name) for name in cache_method_names()}


def budget_of(label: str) -> Any:
    from splice.models.merging.cache import Budget

    ratio, entries = BUDGETS[label]
    return Budget(keep_ratio=ratio, entries=entries)


def kvpress_ratio(n: int, kept: int) -> float:
    """The compression ratio under which kvpress keeps exactly ``kept`` of ``n`` entries: it
    keeps ``int(n * (1 - r))``, so half an entry of slack against float rounding (with
    ``r = 0.8`` it would keep 306 of 1,535 entries where a 20% budget keeps 307)."""
    return (n - kept - 0.5) / n


def kvpress_methods() -> dict[str, MethodFactory]:
    """kvpress's prefill presses. CAMPress is left out: it compresses while decoding only."""
    import kvpress

    presses: dict[str, Callable[[float], Any]] = {
        "kvpress:snapkv": lambda r: kvpress.SnapKVPress(compression_ratio=r),
        "kvpress:streaming_llm": lambda r: kvpress.StreamingLLMPress(compression_ratio=r),
        "kvpress:knorm": lambda r: kvpress.KnormPress(compression_ratio=r),
        "kvpress:tova": lambda r: kvpress.TOVAPress(compression_ratio=r),
        "kvpress:expected_attention": lambda r: kvpress.ExpectedAttentionPress(compression_ratio=r),
        "kvpress:merging(knorm)": lambda r: kvpress.MergingPress(
            press=kvpress.KnormPress(compression_ratio=r)
        ),
    }

    def factory(make_press: Callable[[float], Any]) -> MethodFactory:
        def make(label: str, n: int) -> tuple[Any, int]:
            kept = budget_of(label).size(n)
            return (None, n) if kept >= n else (make_press(kvpress_ratio(n, kept)), kept)

        return make

    return {name: factory(make) for name, make in presses.items()}


# ---------------------------------------------------------------- one side


def evaluate(
    model: Any, files: list[InputFile], make: MethodFactory | None, label: str
) -> dict[str, Any]:
    """One method at one budget (``make`` None: the full cache) over every file."""
    import torch

    bits = nbytes = 0.0
    needles = {d: [0, 0] for d in DEPTHS}
    held, compress_s, prefill_s, at_budget = [], [], [], True

    def run(ids: list[int]) -> Prefill:
        nonlocal at_budget
        press, expected = make(label, len(ids)) if make is not None else (None, len(ids))
        done = prefill(model, ids, press)
        at_budget &= all(layer.keys.shape[2] == expected for layer in done.cache.layers)
        return done

    for f in files:
        context = len(f.ids) - SCORED - 1
        done = run(f.ids[:context])
        held.append(cache_bytes(done.cache))
        compress_s.append(done.compress_seconds)
        prefill_s.append(done.seconds)
        logits = continue_logits(model, done.cache, f.ids[context:-1], context)
        targets = torch.tensor(f.ids[context + 1 :])
        nats = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        bits += float(nats) / math.log(2)
        nbytes += f.scored_bytes
        for needle in f.needles:
            done = run(f.ids[: needle.line])
            logits = continue_logits(
                model, done.cache, f.ids[needle.line : needle.answer_end - 1], needle.line
            )
            guess = logits[needle.answer - needle.line - 1 :].argmax(-1).tolist()
            needles[needle.depth][0] += guess == f.ids[needle.answer : needle.answer_end]
            needles[needle.depth][1] += 1
    return {
        "budget": label,
        "bits_per_byte": bits / nbytes,
        "needle": needles,
        "cache_bytes": float(np.mean(held)),
        "compress_s": float(np.mean(compress_s)),
        "prefill_s": float(np.mean(prefill_s)),
        "at_budget": at_budget,
    }


def versions() -> dict[str, str]:
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    with contextlib.suppress(ImportError):
        from importlib.metadata import version

        out["kvpress"] = version("kvpress")
    return out


def run_side(args: argparse.Namespace) -> None:
    model, tokenizer = load_model(args.model, args.threads)
    files = pick_files(args.data, tokenizer, args.files, args.min_tokens, args.max_tokens)
    methods: dict[str, tuple[str, MethodFactory]] = {
        name: ("splice", make) for name, make in splice_methods().items()
    }
    if args.side == "kvpress":
        methods.update({name: ("kvpress", make) for name, make in kvpress_methods().items()})
    if args.methods:
        methods = {k: v for k, v in methods.items() if k in args.methods.split(",")}
    budgets = args.budgets.split(",") if args.budgets else list(BUDGETS)
    prefill(model, files[0].ids[:256], None)  # warm up
    rows = [{"method": "full", "source": "none", **evaluate(model, files, None, "100%")}]
    print(f"full: {rows[0]['bits_per_byte']:.4f} bits/byte", file=sys.stderr, flush=True)
    for name, (source, make) in methods.items():
        for label in budgets:
            start = time.perf_counter()
            row = {"method": name, "source": source, **evaluate(model, files, make, label)}
            rows.append(row)
            print(
                f"{name} {label}: {row['bits_per_byte']:.4f} bits/byte "
                f"({time.perf_counter() - start:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    report = {
        "side": args.side,
        "model": str(args.model),
        "versions": versions(),
        "threads": args.threads,
        "files": [
            {
                "id": f.id,
                "repo": f.repo,
                "tokens": len(f.ids),
                "scored_bytes": f.scored_bytes,
                "needles": [asdict(n) for n in f.needles],
            }
            for f in files
        ],
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)


# ---------------------------------------------------------------- fairness check


def kept_entries(full_keys: Any, kept_keys: Any) -> list[set[int]]:
    """Per kv head, the indices of the full layer's entries whose keys were kept (kvpress
    returns keys, not indices; keys of distinct positions differ after RoPE)."""
    import torch

    out = []
    for head in range(full_keys.shape[1]):
        distance = torch.cdist(kept_keys[0, head].double(), full_keys[0, head].double())
        out.append(set(distance.argmin(dim=1).tolist()))
    return out


def check(args: argparse.Namespace) -> None:
    """Splice's streaming_llm and snapkv against kvpress's presses on the same inputs."""
    import kvpress
    import torch
    from splice.models.merging.cache import SnapKV, StreamingLLM
    from splice.models.merging.cache.press import CachePress

    model, tokenizer = load_model(args.model, args.threads)
    files = pick_files(args.data, tokenizer, args.files, args.min_tokens, args.max_tokens)
    pairs = {
        "streaming_llm (sinks 4)": (
            lambda r: kvpress.StreamingLLMPress(compression_ratio=r, n_sink=4),
            lambda b: CachePress(StreamingLLM(sinks=4), b),
        ),
        "snapkv (window 64, kernel 5)": (
            lambda r: kvpress.SnapKVPress(compression_ratio=r, window_size=64, kernel_size=5),
            lambda b: CachePress(SnapKV(window=64, kernel=5), b),
        ),
        "snapkv (window 64, kernel 1)": (
            lambda r: kvpress.SnapKVPress(compression_ratio=r, window_size=64, kernel_size=1),
            lambda b: CachePress(SnapKV(window=64, kernel=1), b),
        ),
    }
    result: dict[str, Any] = {"versions": versions(), "pairs": {}}
    for name, (theirs, ours) in pairs.items():
        same = total = heads_equal = heads = 0
        for f in files:
            ids = f.ids[: len(f.ids) - SCORED - 1]
            full = prefill(model, ids, None).cache
            for label in BUDGETS:
                budget = budget_of(label)
                kept = budget.size(len(ids))
                their_cache = prefill(model, ids, theirs(kvpress_ratio(len(ids), kept))).cache
                press = ours(budget)
                prefill(model, ids, press)
                for layer, full_layer in enumerate(full.layers):
                    mine = [set(row.tolist()) for row in press.positions[layer][0]]
                    kept = kept_entries(full_layer.keys, their_cache.layers[layer].keys)
                    for a, b in zip(mine, kept, strict=True):
                        same += len(a & b)
                        total += max(len(a), len(b))
                        heads_equal += a == b
                        heads += 1
        result["pairs"][name] = {
            "entries_in_both": same / total,
            "heads_identical": f"{heads_equal}/{heads}",
        }
        print(f"{name}: {same / total:.4%} of entries agree, {heads_equal}/{heads} heads identical")
    # the harness: reading the last tokens after a full cache reproduces one plain forward
    ids = files[0].ids
    context = len(ids) - SCORED - 1
    with torch.no_grad():
        whole = model(torch.tensor([ids[:-1]])).logits[0, context:]
    split = continue_logits(
        model, prefill(model, ids[:context], None).cache, ids[context:-1], context
    )
    result["continuation_max_abs_diff"] = float((whole - split).abs().max())
    print(f"continuation vs one forward: max |diff| {result['continuation_max_abs_diff']:.2e}")
    result["kvpress_pipeline"] = pipeline_runs(model, args.model, tokenizer.decode(ids[:context]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


def pipeline_runs(model: Any, model_dir: Path, context: str) -> dict[str, Any]:
    """kvpress's own pipeline (``kv-press-text-generation``) with Splice's presses in it:
    every method, 35% kept; the entries each layer holds after the prefill."""
    from kvpress import KVPressTextGenerationPipeline  # noqa: F401  (registers the pipeline)
    from splice.models.merging.cache import Budget, cache_method_names
    from splice.models.merging.cache.press import CachePress
    from transformers import DynamicCache, PreTrainedTokenizerFast, pipeline

    # kvpress prepends the tokenizer's bos_token to a context when there is no chat template
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(model_dir / "tokenizer.json"), bos_token="<s>", eos_token="</s>"
    )
    pipe = pipeline("kv-press-text-generation", model=model, tokenizer=tokenizer, device="cpu")
    out: dict[str, Any] = {}
    for name in cache_method_names():
        cache = DynamicCache()
        press = CachePress(name, Budget(keep_ratio=0.35))
        try:
            pipe(context, question="\n", press=press, cache=cache, max_new_tokens=4)
            out[name] = {"context_tokens": press._last_length, "stored": cache.get_seq_length()}
        except Exception as error:  # report, do not stop the check
            out[name] = {"error": f"{type(error).__name__}: {error}"}
        print(f"kvpress pipeline with CachePress({name!r}, 35%): {out[name]}")
    return out


# ---------------------------------------------------------------- report


def report(args: argparse.Namespace) -> None:
    """One Markdown table over the sides' JSON files, then the issue's targets."""
    sides = [json.loads(Path(p).read_text()) for p in args.json_files]
    lines = [
        "| side | method | budget | bits/byte | vs full | needle early | middle | late | "
        "cache KiB | compress ms | prefill ms | added | at budget |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side in sides:
        full = next(r for r in side["rows"] if r["method"] == "full")
        for row in side["rows"]:
            needle = [f"{h}/{t}" for h, t in (row["needle"][d] for d in DEPTHS)]
            change = row["bits_per_byte"] / full["bits_per_byte"] - 1
            lines.append(
                f"| {side['side']} | {row['method']} | {row['budget']} | "
                f"{row['bits_per_byte']:.4f} | {change:+.1%} | {' | '.join(needle)} | "
                f"{row['cache_bytes'] / 1024:.0f} | {row['compress_s'] * 1e3:.1f} | "
                f"{row['prefill_s'] * 1e3:.0f} | {added(row):+.1%} | "
                f"{'yes' if row['at_budget'] else 'NO'} |"
            )
    print("\n".join(lines))
    print()
    for line in targets(sides):
        print(f"- {line}")


EVICTION = ("streaming_llm", "random", "h2o", "snapkv")


def added(row: dict[str, Any]) -> float:
    """What compressing added to the prefill: its time over the rest of the same prefills
    (measured in one run, so the machine's load cancels out)."""
    return row["compress_s"] / max(row["prefill_s"] - row["compress_s"], 1e-9)


def targets(sides: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, met or missed, from Splice's side and kvpress's presses."""
    ours = next((s for s in sides if s["side"] == "splice"), sides[0])
    theirs = [r for s in sides for r in s["rows"] if r["source"] == "kvpress"]
    full = next(r for r in ours["rows"] if r["method"] == "full")
    splice_rows = [r for r in ours["rows"] if r["source"] == "splice"]

    def at(rows: list[dict[str, Any]], budget: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["budget"] == budget]

    out = []
    best = min(at(splice_rows, "35%"), key=lambda r: r["bits_per_byte"], default=None)
    if best is not None:
        gap = best["bits_per_byte"] / full["bits_per_byte"] - 1
        out.append(
            f"35% kept, best Splice method {best['method']} {best['bits_per_byte']:.4f} vs full "
            f"{full['bits_per_byte']:.4f} ({gap:+.2%}): within 2%: "
            f"{'met' if gap <= 0.02 else 'MISSED'}"
        )
        rivals = at(theirs, "35%")
        if rivals:
            rival = min(rivals, key=lambda r: r["bits_per_byte"])
            ahead = best["bits_per_byte"] < rival["bits_per_byte"]
            out.append(
                f"35% kept, ahead of every kvpress press (best {rival['method']} "
                f"{rival['bits_per_byte']:.4f}): {'met' if ahead else 'MISSED'}"
            )
    best10 = min(at(splice_rows, "10%"), key=lambda r: r["bits_per_byte"], default=None)
    baselines = [r for r in at(splice_rows, "10%") if r["method"] in EVICTION] + [
        r for r in at(theirs, "10%") if "merging" not in r["method"]
    ]
    if best10 is not None and baselines:
        merging = [r for r in at(splice_rows, "10%") if r["method"] not in EVICTION]
        best_merge = min(merging, key=lambda r: r["bits_per_byte"])
        rival = min(baselines, key=lambda r: r["bits_per_byte"])
        ahead = best_merge["bits_per_byte"] < rival["bits_per_byte"]
        out.append(
            f"10% kept, best Splice merging method {best_merge['method']} "
            f"{best_merge['bits_per_byte']:.4f} vs best eviction baseline {rival['method']} "
            f"{rival['bits_per_byte']:.4f}: {'met' if ahead else 'MISSED'}"
        )
    off = [f"{r['method']} {r['budget']}" for s in sides for r in s["rows"] if not r["at_budget"]]
    out.append(f"cache at exactly its budget: {'met' if not off else 'MISSED: ' + ', '.join(off)}")
    by_method: dict[str, float] = {}
    for r in splice_rows:
        by_method[r["method"]] = max(by_method.get(r["method"], 0.0), added(r))
    over = sorted(f"{m} {a:+.0%}" for m, a in by_method.items() if a > 0.10)
    within = sorted(m for m, a in by_method.items() if a <= 0.10)
    out.append(
        "compression adds at most 10% to prefill (worst budget per method): met by "
        f"{', '.join(within) or 'none'}; MISSED by {', '.join(over) or 'none'}"
    )
    return out


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "check"):
        p = sub.add_parser(name)
        p.add_argument("--model", type=Path, default=ROOT / "runs/lm/short")
        p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/merges")
        p.add_argument("--files", type=int, default=8 if name == "run" else 2)
        p.add_argument("--min-tokens", type=int, default=2000)
        p.add_argument("--max-tokens", type=int, default=2048)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--json", type=Path, required=name == "run")
        if name == "run":
            p.add_argument("--side", choices=("splice", "kvpress"), required=True)
            p.add_argument("--methods", help="comma-separated subset of the methods")
            p.add_argument("--budgets", help=f"comma-separated subset of {','.join(BUDGETS)}")
    p = sub.add_parser("report")
    p.add_argument("json_files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    {"run": run_side, "check": check, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
