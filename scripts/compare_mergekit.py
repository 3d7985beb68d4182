"""Compare ``splice merge-weights`` with mergekit on small random Llama models.

mergekit (LGPL) is never a dependency of Splice: this script installs it with PEFT into a
separate virtual environment, runs the same YAML through both and compares the outputs:

* ``linear``, ``task_arithmetic``, ``ties`` (also bf16 and per-layer gradients), ``multislerp``,
  ``karcher``, ``nearswap``, ``sce``, ``arcee_fusion``, ``ram``, ``ramplus_tl``: bit-identical;
* ``slerp``, ``nuslerp``, ``model_stock``: max |difference| <= 1e-6;
* ``dare_*``, ``della*``, ``breadcrumbs*``: the same statistics (kept fraction, rescale factor)
  within tolerance, measured on single-fine-tune merges where ``merged - base`` is the
  sparsified task vector itself;
* every merged model loads in transformers and gives finite logits;
* adapters: a linear merge in delta space against PEFT's ``add_weighted_adapter`` (``cat``).

Usage::

    python scripts/compare_mergekit.py [--venv /tmp/mk-venv] [--work /tmp/splice-mk] [--json F]
        [--only multislerp,karcher,...]   # these cases alone (name prefixes)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

VENV_PACKAGES = ["mergekit>=0.1.4", "peft", "transformers<5.3"]
MERGEKIT_FLAGS = ["--random-seed", "0", "--quiet", "--num-threads", "1"]


def ensure_venv(venv: Path) -> Path:
    """The venv's mergekit-yaml, installing torch 2.13.0 first, then mergekit and PEFT."""
    exe = venv / "bin" / "mergekit-yaml"
    if exe.exists():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *VENV_PACKAGES], check=True)
    return exe


def build_models(root: Path, n_fine: int = 3, seed: int = 0, dtype: str = "float32") -> list[Path]:
    """A random tiny Llama base and ``n_fine`` fine-tunes (base + small Gaussian deltas)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    paths = [root / f"{dtype}-base"] + [root / f"{dtype}-ft{i}" for i in range(n_fine)]
    if all((p / "config.json").exists() for p in paths):
        return paths
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    base = LlamaForCausalLM(config).eval()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    base.to(getattr(torch, dtype)).save_pretrained(paths[0])
    for i, path in enumerate(paths[1:]):
        gen = torch.Generator().manual_seed(seed + 1 + i)
        model = LlamaForCausalLM(config).eval()
        tuned = {k: v + 0.02 * torch.randn(v.shape, generator=gen) for k, v in state.items()}
        model.load_state_dict(tuned)
        model.to(getattr(torch, dtype)).save_pretrained(path)
    return paths


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a merged model folder."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(file))
    return state


def finite_logits(path: Path) -> bool:
    """Whether the merged model loads in transformers and gives finite logits."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.arange(16).reshape(1, 16)).logits
    return bool(torch.isfinite(logits).all())


def run_both(
    cfg: dict[str, Any], name: str, work: Path, mergekit: Path, sort_ties: bool = False
) -> tuple[Path, Path]:
    """Run ``cfg`` through Splice (in process) and mergekit (subprocess)."""
    from splice.models.merging import merge
    from splice.models.merging.sparsify import full_sort_ties

    cfg_path = work / "configs" / f"{name}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    ours, theirs = work / "out" / f"{name}-splice", work / "out" / f"{name}-mergekit"
    ours.parent.mkdir(parents=True, exist_ok=True)
    with full_sort_ties(sort_ties):
        merge(cfg_path, ours, seed=0)
    if not (theirs / "config.json").exists():
        subprocess.run(
            # One intra-op thread, as Splice's merge: whole-tensor reductions (norms, dot
            # products) sum in a thread-count-dependent order.
            [str(mergekit), str(cfg_path), str(theirs), *MERGEKIT_FLAGS],
            check=True,
            capture_output=True,
        )
    return ours, theirs


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, bool]:
    """Max |a - b| over common tensors (float64), and whether every tensor is bit-identical."""
    if set(a) != set(b):
        raise AssertionError(f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
    worst, identical = 0.0, True
    for key in a:
        if a[key].dtype != b[key].dtype or a[key].shape != b[key].shape:
            raise AssertionError(f"{key}: {a[key].dtype}{list(a[key].shape)} vs {b[key].dtype}")
        same = a[key].view(torch.uint8).equal(b[key].view(torch.uint8))
        identical &= same
        if not same:
            worst = max(worst, float((a[key].double() - b[key].double()).abs().max()))
    return worst, identical


def sparsity_stats(out: dict[str, torch.Tensor], base: dict, ft: dict) -> dict[str, float]:
    """Statistics of a single-fine-tune sparsified merge (``merged - base`` = kept delta).

    kept: fraction of entries changed; kept_small / kept_large: the same among the smaller and
    the larger half of each row's magnitudes (DELLA keeps large entries more often); factor:
    mean of the per-tensor rescale factors (merged delta / task vector on kept entries);
    spread: largest relative spread of the factor inside one tensor (0 for a per-tensor scale).
    """
    kept = total = small = large = 0
    factors, spreads = [], []
    for key, merged in out.items():
        delta = ft[key].double() - base[key].double()
        change = merged.double() - base[key].double()
        rows = delta.reshape(delta.shape[0] if delta.dim() > 1 else 1, -1)
        mask = (change != 0).reshape(rows.shape)
        ranks = rows.abs().argsort(dim=1).argsort(dim=1)
        upper = ranks >= rows.shape[1] // 2
        kept += int(mask.sum())
        total += mask.numel()
        small += int((mask & ~upper).sum())
        large += int((mask & upper).sum())
        nz = mask & (rows.abs() > 1e-3)  # tiny deltas only measure float rounding
        f = change.reshape(rows.shape)[nz] / rows[nz]
        if f.numel():
            factors.append(float(f.mean()))
            spreads.append(float((f.max() - f.min()) / f.abs().mean()))
    return {
        "kept": kept / total,
        "kept_small": 2 * small / total,
        "kept_large": 2 * large / total,
        "factor": sum(factors) / len(factors),
        "spread": max(spreads),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/mk-venv"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/splice-mk-compare"))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--only", help="comma-separated case names (prefixes) to run alone")
    args = parser.parse_args()
    mergekit = ensure_venv(args.venv)
    version = subprocess.run(
        [str(args.venv / "bin" / "python"), "-c", "import mergekit, importlib.metadata as m;"
         "print(m.version('mergekit'), m.version('transformers'), m.version('peft'))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    fp32 = build_models(work / "models")
    bf16 = build_models(work / "models", dtype="bfloat16")
    b, f0, f1, f2 = (str(p) for p in fp32)
    bb, bf0, bf1, bf2 = (str(p) for p in bf16)
    three = [
        {"model": f0, "parameters": {"weight": 0.5, "density": 0.6}},
        {"model": f1, "parameters": {"weight": 0.3, "density": 0.5}},
        {"model": f2, "parameters": {"weight": 0.2, "density": 0.7}},
    ]
    plain = [{"model": f0}, {"model": f1}, {"model": f2}]
    exact: dict[str, dict[str, Any]] = {
        "linear": {
            "merge_method": "linear",
            "models": [
                {"model": f0, "parameters": {"weight": 0.5}},
                {"model": f1, "parameters": {"weight": 0.3}},
                {"model": f2, "parameters": {"weight": 0.2}},
            ],
        },
        "linear_bf16": {
            "merge_method": "linear",
            "dtype": "bfloat16",
            "models": [
                {"model": bf0, "parameters": {"weight": 1.0}},
                {"model": bf1, "parameters": {"weight": 2.0}},
            ],
        },
        "task_arithmetic": {
            "merge_method": "task_arithmetic",
            "base_model": b,
            "parameters": {"lambda": 0.8},
            "models": three,
        },
        "ties": {"merge_method": "ties", "base_model": b, "models": three},
        "ties_gradient": {
            "merge_method": "ties",
            "base_model": b,
            "models": [
                {"model": f0, "parameters": {"weight": [0.2, 0.8], "density": [0.3, 0.9]}},
                {
                    "model": f1,
                    "parameters": {
                        "weight": [{"filter": "mlp", "value": 0.7}, {"value": 0.4}],
                        "density": 0.5,
                    },
                },
                {"model": f2, "parameters": {"weight": 0.3, "density": 0.5}},
            ],
        },
        "ties_unnormalized": {
            "merge_method": "ties",
            "base_model": b,
            "parameters": {"normalize": False},
            "models": three,
        },
        "multislerp": {
            "merge_method": "multislerp",
            "models": [
                {"model": f0, "parameters": {"weight": 0.5}},
                {"model": f1, "parameters": {"weight": 0.3}},
                {"model": f2, "parameters": {"weight": 0.2}},
            ],
        },
        "multislerp_base": {
            "merge_method": "multislerp",
            "base_model": b,
            "models": [
                {"model": f0, "parameters": {"weight": 0.7}},
                {"model": f1, "parameters": {"weight": 0.4}},
            ],
        },
        "multislerp_bf16": {
            "merge_method": "multislerp",
            "base_model": bb,
            "dtype": "bfloat16",
            "parameters": {"normalize_weights": False},
            "models": [
                {"model": bf0, "parameters": {"weight": 0.6}},
                {"model": bf1, "parameters": {"weight": 0.4}},
            ],
        },
        "karcher": {
            "merge_method": "karcher",
            "models": plain,
        },
        "karcher_base": {
            "merge_method": "karcher",
            "base_model": b,
            "parameters": {"max_iter": 20, "tol": 1e-6},
            "models": [{"model": f0}, {"model": f1}],
        },
        "nearswap": {
            "merge_method": "nearswap",
            "base_model": b,
            "parameters": {"t": 0.01},
            "models": [{"model": f0}],
        },
        "sce": {"merge_method": "sce", "base_model": b, "models": plain},
        "sce_topk": {
            "merge_method": "sce",
            "base_model": b,
            "parameters": {"select_topk": 0.5},
            "models": plain,
        },
        "sce_bf16": {
            "merge_method": "sce",
            "base_model": bb,
            "dtype": "bfloat16",
            "parameters": {"select_topk": 0.3},
            "models": [{"model": bf0}, {"model": bf1}, {"model": bf2}],
        },
        "arcee_fusion": {
            "merge_method": "arcee_fusion",
            "base_model": b,
            "models": [{"model": f0}],
        },
        "ram": {"merge_method": "ram", "base_model": b, "models": plain},
        "ram_eps": {
            "merge_method": "ram",
            "base_model": b,
            "parameters": {"epsilon": 0.02},  # about a third of the deltas count as unchanged
            "models": plain,
        },
        "ramplus_tl": {
            "merge_method": "ramplus_tl",
            "base_model": b,
            "parameters": {"epsilon": 0.02, "r": 0.5, "alpha": 0.5},
            "models": plain,
        },
        "ties_bf16_sort_ties": {
            "merge_method": "ties",
            "base_model": bb,
            "dtype": "bfloat16",
            "models": [
                {"model": bf0, "parameters": {"weight": 0.6, "density": 0.5}},
                {"model": bf1, "parameters": {"weight": 0.4, "density": 0.5}},
            ],
        },
    }
    close: dict[str, dict[str, Any]] = {
        "slerp": {
            "merge_method": "slerp",
            "base_model": b,
            "parameters": {"t": 0.3},
            "models": [{"model": b}, {"model": f0}],
        },
        "slerp_gradient": {
            "merge_method": "slerp",
            "base_model": b,
            "slices": [
                {
                    "sources": [
                        {"model": b, "layer_range": [0, 4]},
                        {"model": f0, "layer_range": [0, 4]},
                    ]
                }
            ],
            "parameters": {
                "t": [
                    {"filter": "self_attn", "value": [0, 0.5, 1]},
                    {"filter": "mlp", "value": [1, 0.5, 0]},
                    {"value": 0.5},
                ]
            },
        },
        "nuslerp": {
            "merge_method": "nuslerp",
            "models": [
                {"model": f0, "parameters": {"weight": 0.7}},
                {"model": f1, "parameters": {"weight": 0.3}},
            ],
        },
        "nuslerp_base_rows": {
            "merge_method": "nuslerp",
            "base_model": b,
            "parameters": {"nuslerp_flatten": False, "nuslerp_row_wise": True},
            "models": [
                {"model": f0, "parameters": {"weight": 0.4}},
                {"model": f1, "parameters": {"weight": 0.6}},
            ],
        },
        "nuslerp_base_cols": {
            "merge_method": "nuslerp",
            "base_model": b,
            "parameters": {"nuslerp_flatten": False},
            "models": [
                {"model": f0, "parameters": {"weight": 0.4}},
                {"model": f1, "parameters": {"weight": 0.6}},
            ],
        },
        "model_stock": {
            "merge_method": "model_stock",
            "base_model": b,
            "models": [{"model": f0}, {"model": f1}, {"model": f2}],
        },
        "passthrough_slices": {
            "merge_method": "passthrough",
            "slices": [
                {"sources": [{"model": f0, "layer_range": [0, 3]}]},
                {"sources": [{"model": f1, "layer_range": [1, 4]}]},
            ],
        },
    }
    one = [{"model": f0, "parameters": {"weight": 1.0, "density": 0.5}}]
    stats: dict[str, dict[str, Any]] = {
        "dare_linear": {"merge_method": "dare_linear", "base_model": b, "models": one},
        "dare_ties": {"merge_method": "dare_ties", "base_model": b, "models": one},
        "breadcrumbs": {
            "merge_method": "breadcrumbs",
            "base_model": b,
            "models": [{"model": f0, "parameters": {"weight": 1.0, "density": 0.5, "gamma": 0.1}}],
        },
        "breadcrumbs_ties": {"merge_method": "breadcrumbs_ties", "base_model": b, "models": one},
        "della": {
            "merge_method": "della",
            "base_model": b,
            "models": [
                {"model": f0, "parameters": {"weight": 1.0, "density": 0.5, "epsilon": 0.2}}
            ],
        },
        "della_linear": {
            "merge_method": "della_linear",
            "base_model": b,
            "models": [
                {"model": f0, "parameters": {"weight": 1.0, "density": 0.5, "epsilon": 0.2}}
            ],
        },
        "dare_ties_3": {"merge_method": "dare_ties", "base_model": b, "models": three},
    }
    ties_bf16 = exact["ties_bf16_sort_ties"]
    if args.only:
        wanted = tuple(args.only.split(","))
        for table in (exact, close, stats):
            for name in [n for n in table if not n.startswith(wanted)]:
                del table[name]
    base_state, ft_state = load_state(fp32[0]), load_state(fp32[1])
    results: dict[str, Any] = {"mergekit": version, "exact": {}, "close": {}, "stats": {}}
    ok = True
    for group, table, check in (("exact", exact, "bits"), ("close", close, 1e-6)):
        for name, cfg in table.items():
            t0 = time.perf_counter()
            ours, theirs = run_both(cfg, name, work, mergekit, name.endswith("sort_ties"))
            diff, identical = max_diff(load_state(ours), load_state(theirs))
            finite = finite_logits(ours) and finite_logits(theirs)
            passed = (identical if check == "bits" else diff <= check) and finite
            ok &= passed
            results[group][name] = {
                "max_abs_diff": diff, "bit_identical": identical, "finite_logits": finite,
                "pass": passed, "seconds": round(time.perf_counter() - t0, 1),
            }  # fmt: skip
            print(f"{group:5s} {name:20s} identical={identical} max|d|={diff:.3g} "
                  f"finite={finite} {'PASS' if passed else 'FAIL'}", flush=True)  # fmt: skip
    for name, cfg in stats.items():
        ours, theirs = run_both(cfg, name, work, mergekit)
        a = sparsity_stats(load_state(ours), base_state, ft_state)
        m = sparsity_stats(load_state(theirs), base_state, ft_state)
        finite = finite_logits(ours) and finite_logits(theirs)
        # Absolute tolerances; factor relative (a random variable on tiny tensors); spread: both
        # below 1% (one scale per tensor).
        tol = {"kept": 0.01, "kept_small": 0.02, "kept_large": 0.02}
        passed = all(abs(a[k] - m[k]) <= tol[k] for k in tol)
        if name != "dare_ties_3":  # with three models only the changed fractions compare
            passed &= abs(a["factor"] - m["factor"]) <= 0.03 * abs(m["factor"])
            passed &= a["spread"] < 0.01 and m["spread"] < 0.01
        passed &= finite
        ok &= passed
        results["stats"][name] = {"splice": a, "mergekit": m, "finite_logits": finite,
                                  "pass": passed}  # fmt: skip
        print(f"stats {name:20s} splice={_fmt(a)} mergekit={_fmt(m)} "
              f"{'PASS' if passed else 'FAIL'}", flush=True)  # fmt: skip
    if not args.only:  # the tie-break count and the adapters run with the full comparison
        ok &= compare_extras(ties_bf16, work, mergekit, fp32[0], results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print("ALL PASS" if ok else "SOME FAILED")
    return 0 if ok else 1


def compare_extras(
    ties_cfg: dict[str, Any], work: Path, mergekit: Path, base: Path, results: dict[str, Any]
) -> bool:
    """bf16 TIES tie-break differences (information) and the adapter check (pass/fail)."""
    # bf16 TIES with the default linear-time selection: ties at the magnitude threshold are
    # broken in index order, mergekit's by its sort; count the entries that differ.
    cfg = dict(ties_cfg)
    ours, theirs = run_both(cfg, "ties_bf16", work, mergekit)
    a, m = load_state(ours), load_state(theirs)
    differ = sum(int((a[k] != m[k]).sum()) for k in a)
    total = sum(v.numel() for v in a.values())
    results["ties_bf16_index_tiebreak"] = {"differing": differ, "total": total}
    print(f"info  ties_bf16 (index tie-break) differing entries: {differ} of {total}")
    results["adapters"] = compare_adapters(work, base)
    print(f"adapters linear vs PEFT cat: max|d| = {results['adapters']['max_abs_diff']:.3g} "
          f"{'PASS' if results['adapters']['pass'] else 'FAIL'}")  # fmt: skip
    return bool(results["adapters"]["pass"])


def _fmt(s: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in s.items())


def compare_adapters(work: Path, base: Path) -> dict[str, Any]:
    """Linear merge of two LoRA adapters in delta space vs PEFT ``cat``, folded into weights."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from splice.models.merging import merge_adapters
    from transformers import AutoModelForCausalLM

    paths = []
    for i, rank in enumerate((4, 8)):
        path = work / "adapters" / f"lora{i}"
        if not (path / "adapter_config.json").exists():
            torch.manual_seed(100 + i)
            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
            lora = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False,
                              target_modules=["q_proj", "v_proj", "down_proj"])  # fmt: skip
            get_peft_model(model, lora).save_pretrained(path)
        paths.append(path)
    weights = [0.6, 0.4]
    cfg = {"merge_method": "linear", "base_model": str(base), "output": "full",
           "parameters": {"normalize": False},
           "models": [{"model": str(p), "parameters": {"weight": w}}
                      for p, w in zip(paths, weights, strict=True)]}  # fmt: skip
    ours = work / "out" / "adapters-full"
    merge_adapters(cfg, ours)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(model, paths[0], adapter_name="a0")
    peft_model.load_adapter(paths[1], adapter_name="a1")
    peft_model.add_weighted_adapter(["a0", "a1"], weights, "merged", combination_type="cat")
    peft_model.set_adapter("merged")
    for name in ("a0", "a1"):
        peft_model.delete_adapter(name)
    reference = peft_model.merge_and_unload().state_dict()
    mine = load_state(ours)
    worst = max(float((mine[k] - reference[k]).abs().max()) for k in mine)
    lora_cfg = dict(cfg, output="lora")
    report = merge_adapters(lora_cfg, work / "out" / "adapters-lora")
    return {"max_abs_diff": worst, "pass": worst <= 1e-6 and finite_logits(ours),
            "refactor_rank": report.rank, "refactor_max_rel_error": report.max_error}  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
