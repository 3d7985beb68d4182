"""Measure the merging engine on trained code LMs (issue 17 §4; tables in docs/MERGING.md).

Every number is bits per byte of plain left-to-right code (no fill-in-the-middle, no resolution
task) in files of **validation repositories**; calibration text comes from **training
repositories** (the human-merged files of the merge data, round-robin over repositories).

    python scripts/eval_reduction.py experts --model runs/moe/lm --targets 4 2 --json out.json
    python scripts/eval_reduction.py layers --model runs/deep/lm --remove 4 7 --json out.json
    python scripts/eval_reduction.py weights --base runs/lm/cpu3 --json out.json \\
        --tuned python=runs/ft/python java=runs/ft/java typescript=runs/ft/typescript

``experts`` reduces a MoE LM's experts per layer (mc_smoe with and without compression,
hc_smoe, prune by usage and by saliency, average); ``layers`` removes layers from a dense LM (mka,
shortgpt, laco, average); ``weights`` merges per-language fine-tunes of one base (linear,
task_arithmetic, ties, tsv, r_tsvm, fisher, regmean) and scores each language.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = str(ROOT.parent / "shared" / "data" / "merges")
TOKENIZER = str(ROOT / "models" / "shipped" / "tokenizer.json")


def train_texts(tokens_hint: int, langs: tuple[str, ...] | None = None) -> list[str]:
    """Merged files of training repositories, round-robin, about ``tokens_hint`` tokens' worth."""
    from splice.data.dataset import iter_records

    texts, chars = [], 0
    for record in iter_records(DATA, split="train", langs=langs, limit=50_000):
        text = record.get("merged") or ""
        if not text or len(text) > 60_000:
            continue
        texts.append(text)
        chars += len(text)
        if chars >= tokens_hint * 4:  # about 3 characters per token; a margin
            break
    return texts


def val_sequences(n: int, langs: tuple[str, ...] | None = None, seq_len: int = 512):
    """``n`` plain code sequences of validation repositories (the fixed evaluation set)."""
    from splice.models.training.lm_corpus import CorpusOptions, build_sequences

    options = CorpusOptions(
        data_dir=DATA,
        tokenizer=TOKENIZER,
        split="val",
        seq_len=seq_len,
        fim_rate=0.0,
        resolution_share=0.0,
        langs=langs,
        seed=1_000_003,
    )
    return build_sequences(options, n)


def bits_per_byte(model: torch.nn.Module, sequences) -> float:
    from splice.models.serving.prompt import LMTokenizer
    from splice.models.training.lm import evaluate

    tok = LMTokenizer.from_file(TOKENIZER)
    return evaluate(model, sequences, 8, "cpu", False, tok)["val_code_bits_per_byte"]


def calibration_chunks(model, model_dir: str, tokens: int, langs=None) -> torch.Tensor:
    from splice.models.merging.calibration import Calibration, model_chunks
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return model_chunks(model, tokenizer, Calibration(train_texts(tokens, langs), tokens, 512))


def load(model_dir: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run_experts(args: argparse.Namespace) -> list[dict[str, Any]]:
    from splice.models.merging.experts import EXPERT_METHODS, reduce_experts

    model = load(args.model)
    chunks = calibration_chunks(model, args.model, args.calib_tokens)
    val = val_sequences(args.sequences)
    base = bits_per_byte(model, val)
    rows = [{"method": "original", "experts": model.config.num_local_experts, "bpb": base,
             "parameters": parameters(model)}]  # fmt: skip
    print(f"original: {base:.4f} bits/byte, {rows[0]['parameters']:,} parameters", flush=True)
    variants = {
        "mc_smoe": ("mc_smoe", {}),
        "mc_smoe+compress": ("mc_smoe", {"compress": True}),
        "mc_smoe (no alignment)": ("mc_smoe", {"align": False}),
        "mc_smoe (saliency leads and weighs)": ("mc_smoe", {"score": "saliency"}),
        "hc_smoe": ("hc_smoe", {}),
        "prune (usage)": ("prune", {}),
        "prune (saliency)": ("prune", {"criterion": "saliency"}),
        "average": ("average", {}),
    }
    for target in args.targets:
        for label, (name, params) in variants.items():
            started = time.monotonic()
            reduced = copy.deepcopy(model)
            report = reduce_experts(reduced, chunks, EXPERT_METHODS.get(name, **params), target)
            bpb = bits_per_byte(reduced, val)
            row = {
                "method": label,
                "experts": target,
                "bpb": bpb,
                "increase": bpb / base - 1,
                "parameters": report.parameters_after,
                "expert_parameters": report.expert_parameters_after,
                "compressed_expert_parameters": report.compressed_expert_parameters,
                "seconds": time.monotonic() - started,
            }
            rows.append(row)
            print(f"{target} experts, {label}: {bpb:.4f} (+{row['increase']:.1%})", flush=True)
    return rows


def run_layers(args: argparse.Namespace) -> list[dict[str, Any]]:
    from splice.models.merging.layers import LAYER_METHODS, reduce_layers

    model = load(args.model)
    chunks = calibration_chunks(model, args.model, args.calib_tokens)
    val = val_sequences(args.sequences)
    base = bits_per_byte(model, val)
    layers = model.config.num_hidden_layers
    rows = [{"method": "original", "layers": layers, "bpb": base, "parameters": parameters(model)}]
    print(f"original: {base:.4f} bits/byte, {layers} layers", flush=True)
    for remove in args.remove:
        for name in ("mka", "shortgpt", "laco", "average"):
            started = time.monotonic()
            reduced, steps = reduce_layers(
                copy.deepcopy(model), chunks, LAYER_METHODS.get(name), layers - remove
            )
            bpb = bits_per_byte(reduced, val)
            rows.append({
                "method": name, "layers": layers - remove, "removed": remove, "bpb": bpb,
                "increase": bpb / base - 1, "parameters": parameters(reduced),
                "steps": [asdict(s) for s in steps], "seconds": time.monotonic() - started,
            })  # fmt: skip
            print(f"-{remove} layers, {name}: {bpb:.4f} (+{bpb / base - 1:.1%})", flush=True)
    return rows


WEIGHT_METHODS = {
    "linear": {},
    "task_arithmetic": {"lambda": 1.0},
    "ties": {"density": 0.5},
    "tsv": {},
    "r_tsvm": {},
    "fisher": {},
    "regmean": {},
}


def run_weights(args: argparse.Namespace) -> list[dict[str, Any]]:
    from splice.models.merging.calibration import Calibration
    from splice.models.merging.data_aware import collect_statistics, merge

    tuned = dict(item.split("=", 1) for item in args.tuned)
    langs = list(tuned)
    val = {lang: val_sequences(args.sequences, (lang,)) for lang in langs}
    rows: list[dict[str, Any]] = []

    def score(label: str, model_dir: str) -> None:
        model = load(model_dir)
        row: dict[str, Any] = {"method": label}
        for lang in langs:
            row[lang] = bits_per_byte(model, val[lang])
        row["mean"] = sum(row[lang] for lang in langs) / len(langs)
        rows.append(row)
        print(label, {k: round(v, 4) for k, v in row.items() if k != "method"}, flush=True)

    score("base", args.base)
    for lang, path in tuned.items():
        score(f"fine-tune: {lang}", path)
    with tempfile.TemporaryDirectory() as tmp:
        stats: dict[str, dict[str, str]] = {"fisher": {}, "regmean": {}}
        for kind in stats:
            for lang, path in tuned.items():
                calib = Calibration(train_texts(args.calib_tokens, (lang,)), args.calib_tokens, 512)
                out = Path(tmp) / f"{kind}-{lang}.safetensors"
                collect_statistics(path, calib, kind, out)
                stats[kind][lang] = str(out)
        for method, params in WEIGHT_METHODS.items():
            models = []
            for lang, path in tuned.items():
                entry: dict[str, Any] = {"model": path, "parameters": {"weight": 1.0}}
                if method in stats:
                    entry["parameters"]["statistics"] = stats[method][lang]
                models.append(entry)
            config: dict[str, Any] = {
                "merge_method": method,
                "models": models,
                "parameters": params,
                "dtype": "float32",
            }
            if method not in ("linear", "fisher", "regmean"):
                config["base_model"] = args.base
            out = Path(tmp) / method
            merge(config, out)
            score(method, str(out))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="family", required=True)
    experts = sub.add_parser("experts")
    experts.add_argument("--model", required=True)
    experts.add_argument("--targets", type=int, nargs="+", default=[4, 2])
    layers = sub.add_parser("layers")
    layers.add_argument("--model", required=True)
    layers.add_argument("--remove", type=int, nargs="+", default=[4, 7])
    weights = sub.add_parser("weights")
    weights.add_argument("--base", required=True)
    weights.add_argument("--tuned", nargs="+", required=True, help="LANG=MODEL_DIR ...")
    for p in (experts, layers, weights):
        p.add_argument("--calib-tokens", type=int, default=65_536)
        p.add_argument("--sequences", type=int, default=120, help="Evaluation sequences.")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--json", help="Write the rows here.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    run = {"experts": run_experts, "layers": run_layers, "weights": run_weights}[args.family]
    rows = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
