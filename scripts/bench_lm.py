"""Benchmark the code language model served with onnxruntime (models/serving/lm.py), float32
against int8: session load, prefill of a long prompt, one decoding step, scoring candidates
after the prompt, and a beam search step.

The model is ``models/shipped/lm`` when it holds an exported model (``lm.json``), else its
Hugging Face weights exported to a temporary folder, else a random ``LlamaForCausalLM`` of the
default size (hidden 256, 6 layers, 4 heads, 2 key/value heads, intermediate 688, the LM
tokenizer's 8,199 ids) exported the same way; the export needs torch, serving does not. The
prompt is real code (this repository's resolver), cut to ``--prompt`` tokens. Times are
medians (and fastest) over ``--repeat`` runs, with the serving module's two threads.

    python scripts/bench_lm.py                    # models/shipped/lm or a random default model
    python scripts/bench_lm.py --model DIR --repeat 7
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "shipped" / "lm"
TOKENIZER = ROOT / "models" / "shipped" / "tokenizer.json"
TEXT_FILES = ("resolver/pipeline.py", "resolver/patterns.py", "models/serving/neural.py")


def random_default_model(folder: Path) -> Path:
    """A random model of the default size (:class:`LMConfig`) with the LM tokenizer, saved in
    ``folder``."""
    from splice.models.serving.prompt import LMTokenizer
    from splice.models.training.lm import LMConfig, build_model

    build_model(LMConfig(), str(TOKENIZER)).save_pretrained(folder)
    LMTokenizer.from_file(TOKENIZER).to_hf().save(str(folder / "tokenizer.json"))
    return folder


def served_folder(model: Path | None, work: Path) -> tuple[Path, str]:
    """The exported folder to load and a description of where it came from."""
    from splice.models.training.lm_export import export_lm

    source = model or SHIPPED
    if (source / "lm.json").is_file():
        return source, str(source)
    if (source / "config.json").is_file():
        return export_lm(source, work / "onnx").out_dir, f"{source} (exported here)"
    if model is not None:
        sys.exit(f"{model}: neither an exported model (lm.json) nor Hugging Face weights")
    export_lm(random_default_model(work / "hf"), work / "onnx")
    return work / "onnx", "random default-size Llama (no models/shipped/lm)"


def median_ms(fn, repeat: int) -> tuple[float, float]:
    """Median and fastest wall time of ``repeat`` calls, in ms (on a shared machine the
    fastest is the closest to the cost on an idle one)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def bench(
    folder: Path, model_file: str, prompt_len: int, repeat: int
) -> dict[str, tuple[float, float]]:
    from splice.models.serving.lm import CodeLM, GenerateOptions

    load = median_ms(lambda: CodeLM(folder, model_file=model_file), repeat)
    lm = CodeLM(folder, model_file=model_file)
    text = "".join((ROOT / f).read_text() for f in TEXT_FILES)
    ids = lm.tokenizer.encode(text)
    prompt, rest = ids[:prompt_len], ids[prompt_len:]
    candidates = [rest[i * 20 : (i + 1) * 20] for i in range(3)]
    lm.prefill(prompt)  # warm-up
    prefill = median_ms(lambda: lm.prefill(prompt), repeat)
    cache = lm.prefill(prompt)
    step_ids = np.array([[rest[0]]])
    decode = median_ms(lambda: lm.forward(cache, step_ids), max(repeat, 20))
    beams4 = cache.select([0, 0, 0, 0])
    decode4 = median_ms(lambda: lm.forward(beams4, np.array([[t] for t in rest[:4]])), repeat)
    score = median_ms(lambda: lm.score(prompt, candidates, cache=cache), repeat)
    # greedy decoding of 32 tokens after the prompt, prefill included
    generate = median_ms(
        lambda: lm.generate(prompt, GenerateOptions(beams=1, max_new_tokens=32, stop=(-1,))), repeat
    )
    size = (folder / model_file).stat().st_size / 2**20
    return {
        "file MiB": (size, size),
        "load ms": load,
        f"prefill {prompt_len} ms": prefill,
        "decode step ms": decode,
        "decode step, 4 beams ms": decode4,
        "score 3 x 20 after prompt ms": score,
        "score incl. prefill ms": (score[0] + prefill[0], score[1] + prefill[1]),
        "greedy 32 tokens incl. prefill ms": generate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="[models/shipped/lm, else a random model]")
    parser.add_argument("--prompt", type=int, default=1024, help="Prompt tokens [1024].")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="Print JSON, not Markdown.")
    args = parser.parse_args()
    from splice.models.serving.lm import FP32_FILE, MODEL_FILE

    with tempfile.TemporaryDirectory() as tmp:
        folder, origin = served_folder(args.model, Path(tmp))
        spec = json.loads((folder / "lm.json").read_text())
        rows = {}
        if (folder / FP32_FILE).is_file():
            rows["float32"] = bench(folder, FP32_FILE, args.prompt, args.repeat)
        label = "int8" if spec.get("quantized") else "float32"
        rows[label] = bench(folder, MODEL_FILE, args.prompt, args.repeat)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps({"model": origin, "rows": rows, "peak_rss_mib": rss}, indent=2))
        return
    print(f"model: {origin}; {spec['layers']} layers, vocab {spec['vocab_size']}")
    names = list(rows)
    print("| median (fastest) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key in rows[names[0]]:
        cells = [f"{rows[n][key][0]:,.1f} ({rows[n][key][1]:,.1f})" for n in names]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print(f"peak RSS of the benchmark process: {rss:,.0f} MiB")


if __name__ == "__main__":
    main()
