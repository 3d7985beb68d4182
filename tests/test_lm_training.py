"""Training the code language model: save/load, a learnable synthetic infilling rule, the corpus
of real records (split, FIM format, resolution mask), data-parallel training under torchrun,
and LoRA adapters merged by the engine."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from splice.models.serving.neural import default_model_dir  # noqa: E402
from splice.models.serving.prompt import LMTokenizer, fim_ids  # noqa: E402
from splice.models.training.lm import (  # noqa: E402
    LMConfig,
    LMTrainOptions,
    build_model,
    count_parameters,
    save_lm,
    train_lm,
)
from splice.models.training.lm_corpus import (  # noqa: E402
    IGNORE,
    CorpusOptions,
    LMSequence,
    build_sequences,
    code_ids,
    iter_sequences,
    resolution_examples,
)

TOKENIZER = str(default_model_dir() / "tokenizer.json")
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "merges"
#: Small shards: three train repositories (C#, JavaScript) and two validation ones.
TRAIN_SHARDS = ("App-vNext__Polly", "vuejs__vue-cli", "dotnet__docfx")
VAL_SHARDS = ("microsoft__vstest", "microsoft__botbuilder-js")
TINY = LMConfig(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, max_positions=256)
needs_data = pytest.mark.skipif(
    not all((DATA / f"{s}.jsonl.xz").exists() for s in TRAIN_SHARDS + VAL_SHARDS),
    reason="the shared merge shards are not here",
)


@pytest.fixture(scope="module")
def tok() -> LMTokenizer:
    return LMTokenizer.from_file(TOKENIZER)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder of a few real shards (links, not copies)."""
    root = tmp_path_factory.mktemp("shards")
    for name in TRAIN_SHARDS + VAL_SHARDS:
        source = DATA / f"{name}.jsonl.xz"
        if source.exists():
            (root / source.name).symlink_to(source.resolve())
    return root


def test_default_size_and_save_load_round_trip(tmp_path: Path, tok: LMTokenizer) -> None:
    default = build_model(LMConfig(), TOKENIZER)
    assert 5_000_000 <= count_parameters(default) <= 7_000_000
    assert default.config.vocab_size % 8 == 0 and default.config.vocab_size >= tok.vocab_size
    model = build_model(TINY, TOKENIZER, seed=1).eval()
    save_lm(model, tmp_path / "m", TOKENIZER)
    assert (tmp_path / "m" / "model.safetensors").exists()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    ids = torch.tensor([fim_ids(tok, "def add(a, b):\n    return ", "a + b", "\n")])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    again = LMTokenizer.from_file(tmp_path / "m" / "tokenizer.json")
    assert again.special == tok.special and loaded.config.eos_token_id == tok.special.end


WORDS = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta", "lambda", "zeta"]


def _reverse_example(tok: LMTokenizer, rng: random.Random, seq_len: int) -> list[int]:
    """Infilling rule: the middle is the prefix's last identifier reversed."""
    filler = "".join(f"v{rng.randrange(100)} = {rng.randrange(1000)}\n" for _ in range(2))
    word = rng.choice(WORDS)
    prefix = f"{filler}name = {word}\nrev = '"
    return fim_ids(tok, prefix, word[::-1], f"'\nv{rng.randrange(100)} = 0\n")[:seq_len]


def _synthetic(tok: LMTokenizer, seed: int, seq_len: int):
    rng = random.Random(seed)
    while True:
        ids = _reverse_example(tok, rng, seq_len)
        pad, start = seq_len - len(ids), ids.index(tok.special.middle) + 1
        labels = [*[IGNORE] * start, *ids[start:], *[IGNORE] * pad]  # loss on the middle
        yield LMSequence([*ids, *[tok.special.end] * pad], labels, "resolution")


def test_learns_a_synthetic_infilling_rule(tmp_path: Path, tok: LMTokenizer) -> None:
    seq_len = 64
    val = [s for s, _ in zip(_synthetic(tok, 99, seq_len), range(32), strict=False)]
    options = LMTrainOptions(
        out_dir=str(tmp_path / "lm"),
        tokenizer=TOKENIZER,
        model=TINY,
        steps=150,
        batch_size=16,
        seq_len=seq_len,
        lr=4e-3,
        warmup=15,
        eval_every=150,
        log_every=30,
        checkpoint_minutes=60,
        threads=1,  # small matrices: one thread is faster, much faster on a busy machine
    )
    report = train_lm(options, train_data=_synthetic(tok, 0, seq_len), val_data=val)
    evals = [h for h in report.history if "val_loss" in h]
    assert evals[0]["val_loss"] > 8 and evals[-1]["val_loss"] < 0.4 * evals[0]["val_loss"]
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "lm").eval()
    rng, right = random.Random(12345), 0
    for _ in range(20):  # held-out examples (new fillers): greedy infill
        ids = _reverse_example(tok, rng, seq_len)
        start = ids.index(tok.special.middle) + 1
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids[:start]]),
                max_new_tokens=8,
                do_sample=False,
                eos_token_id=tok.special.end,
                pad_token_id=tok.special.end,
            )
        right += tok.decode(out[0, start:].tolist()) == tok.decode(ids[start:-1])
    assert right >= 18
    lines = (tmp_path / "lm" / "training_history.jsonl").read_text().splitlines()
    assert {"train_loss", "tokens", "seconds"} <= set(json.loads(lines[1]))


def test_a_mixture_of_experts_lm_trains_and_reloads(tmp_path: Path, tok: LMTokenizer) -> None:
    moe = LMConfig(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=64, experts=4,
                   experts_per_token=2, max_positions=256)  # fmt: skip
    model = build_model(moe, TOKENIZER)
    assert type(model).__name__ == "MixtralForCausalLM"
    assert model.config.num_local_experts == 4 and model.config.output_router_logits
    with pytest.raises(ValueError, match="experts_per_token 5"):
        LMConfig(experts=4, experts_per_token=5)
    seq_len = 64
    val = [s for s, _ in zip(_synthetic(tok, 99, seq_len), range(16), strict=False)]
    options = LMTrainOptions(
        out_dir=str(tmp_path / "moe"), tokenizer=TOKENIZER, model=moe, steps=40, batch_size=16,
        seq_len=seq_len, lr=4e-3, warmup=5, eval_every=40, log_every=10, threads=1,
    )  # fmt: skip
    report = train_lm(options, train_data=_synthetic(tok, 0, seq_len), val_data=val)
    evals = [h for h in report.history if "val_loss" in h]
    assert evals[-1]["val_loss"] < 0.6 * evals[0]["val_loss"]
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "moe").eval()
    assert type(loaded).__name__ == "MixtralForCausalLM"
    assert loaded.config.num_experts_per_tok == 2


def test_fim_pieces_put_back_together(tok: LMTokenizer) -> None:
    s = tok.special
    piece = "def f(x):\n    return x + 1\n\nprint(f(2))\n"
    rng = random.Random(0)
    for spm in (0.0, 1.0):
        for _ in range(20):
            ids = code_ids(tok, piece, rng, fim_rate=1.0, spm_rate=spm)
            first, second = (s.suffix, s.prefix) if spm else (s.prefix, s.suffix)
            assert ids[0] == first and ids[-1] == s.end and ids.count(s.middle) == 1
            a, m = ids.index(second), ids.index(s.middle)
            one, two, middle = ids[1:a], ids[a + 1 : m], ids[m + 1 : -1]
            prefix, suffix = (two, one) if spm else (one, two)
            assert tok.decode(prefix) + tok.decode(middle) + tok.decode(suffix) == piece
    plain = code_ids(tok, piece, rng, fim_rate=0.0, spm_rate=0.5)
    assert plain[-1] == s.end and tok.decode(plain) == piece


def _documents(tok: LMTokenizer, ids: list[int]) -> list[list[int]]:
    out, current = [], []
    for i in ids:
        current.append(i)
        if i == tok.special.end:
            out.append(current)
            current = []
    return out


@needs_data
def test_corpus_split_format_mask_and_determinism(data_dir: Path, tok: LMTokenizer) -> None:
    from splice.data.dataset import iter_records

    s = tok.special
    options = CorpusOptions(data_dir=str(data_dir), tokenizer=TOKENIZER, seq_len=256)
    seqs = list(iter_sequences(options))  # every train record, once
    assert len(seqs) > 20 and all(len(q.ids) == len(q.labels) == 256 for q in seqs)
    assert seqs[:30] == build_sequences(options, 30)  # deterministic
    other = build_sequences(CorpusOptions(**{**options.__dict__, "seed": 1}), 30)
    assert other != seqs[:30]
    # split: a line found only in the validation repositories never reaches training
    val_lines = {
        line.strip()
        for r in iter_records(data_dir, split="val")
        for line in r["merged"].splitlines()
        if len(line.strip()) > 50
    }
    train_lines = {
        line.strip()
        for r in iter_records(data_dir, split="train")
        for line in r["merged"].splitlines()
    }
    only_val = val_lines - train_lines
    assert len(only_val) > 50
    text = tok.decode([i for q in seqs for i in q.ids])
    assert not any(line in text for line in only_val)
    # format: packed code is a run of well-formed FIM or plain documents
    code = [i for q in seqs if q.kind == "code" for i in q.ids]
    docs = _documents(tok, code)[:-1]
    kinds = {"psm": 0, "spm": 0, "plain": 0}
    for doc in docs[1:]:  # the first may be cut by an earlier resolution draw: skip it
        marks = [i for i in doc if i >= s.prefix]
        if marks == [s.prefix, s.suffix, s.middle, s.end]:
            kinds["psm"] += 1
        elif marks == [s.suffix, s.prefix, s.middle, s.end]:
            kinds["spm"] += 1
        else:
            assert marks == [s.end]
            kinds["plain"] += 1
    assert all(n > 5 for n in kinds.values()), kinds
    # resolution: loss only on the resolved lines and the end token
    res = [q for q in seqs if q.kind == "resolution"]
    assert res and 0.05 < len(res) / len(seqs) < 0.5
    for q in res:
        start = q.ids.index(s.middle) + 1
        assert all(x == IGNORE for x in q.labels[:start])
        stop = q.ids.index(s.end, start) + 1
        assert q.labels[start:stop] == q.ids[start:stop]
        assert all(x == IGNORE for x in q.labels[stop:])


@needs_data
def test_resolution_examples_hold_the_human_resolution(data_dir: Path, tok: LMTokenizer) -> None:
    from splice.resolver.chunks import split_lines
    from splice.resolver.pipeline import find_hunks

    from splice.data.dataset import iter_records
    from splice.data.evaluation import locate_resolutions

    checked = 0
    for record in iter_records(data_dir, split="train", limit=30):
        b, o, t = (split_lines(record[k]) for k in ("base", "ours", "theirs"))
        chunks, _ = find_hunks(b, o, t, record["lang"])
        truths = [
            x for x in locate_resolutions(chunks, split_lines(record["merged"])) if x is not None
        ]
        examples = resolution_examples(tok, record, 512)
        assert len(examples) <= len(truths)
        for ids, start in examples:
            assert len(ids) <= 512 and ids[start - 1] == tok.special.middle
            assert tok.decode(ids[start:-1]) in {"".join(x) for x in truths}
            checked += 1
    assert checked >= 5


@needs_data
def test_two_process_data_parallel_run(tmp_path: Path, data_dir: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(
        textwrap.dedent(
            """
            import hashlib, json, os, sys
            from splice.models.training import lm
            from splice.models.training.lm import LMConfig, LMTrainOptions, train_lm

            out, data, tokenizer = sys.argv[1:4]
            options = LMTrainOptions(
                out_dir=out, data_dir=data, tokenizer=tokenizer, steps=3, batch_size=2,
                seq_len=64, eval_every=3, log_every=1, val_sequences=8, warmup=1, threads=1,
                model=LMConfig(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64,
                               max_positions=64),
            )
            seen = []
            batches = lm.batches

            def spy(sequences, batch_size, device):
                for ids, labels in batches(sequences, batch_size, device):
                    seen.append(hashlib.sha256(ids.numpy().tobytes()).hexdigest())
                    yield ids, labels

            lm.batches = spy
            trained = {}
            import torch.nn.parallel as parallel
            original = parallel.DistributedDataParallel

            class Spy(original):
                def __init__(self, model, **kw):
                    trained["model"] = model
                    super().__init__(model, **kw)

            parallel.DistributedDataParallel = Spy
            report = train_lm(options)
            weights = hashlib.sha256()
            for name, p in sorted(trained["model"].state_dict().items()):
                weights.update(p.detach().numpy().tobytes())
            rank = os.environ["RANK"]
            with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
                json.dump({"world": report.world, "steps": report.steps, "batches": seen,
                           "weights": weights.hexdigest()}, fh)
            """
        )
    )
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(out), str(data_dir), TOKENIZER],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["steps"] == 3 for r in ranks)
    assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"])  # each its own records
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were averaged
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 1
    history = [json.loads(x) for x in (out / "training_history.jsonl").read_text().splitlines()]
    assert history[-1]["tokens"] == 3 * 2 * 64 * 2


@needs_data
def test_lora_adapters_per_language_and_a_merge_through_the_engine(
    tmp_path: Path, data_dir: Path
) -> None:
    peft = pytest.importorskip("peft")
    from click.testing import CliRunner
    from safetensors.torch import load_file
    from splice.models.training.lm_adapters import load_for_eval, resolution_loss, val_sets

    from splice.cli import main

    base = tmp_path / "base"
    save_lm(build_model(TINY, TOKENIZER, seed=0), base, TOKENIZER)
    out = tmp_path / "adapters"
    result = CliRunner().invoke(
        main,
        ["train-lm-adapters", str(base), str(out), "--langs", "csharp,javascript",
         "--steps", "4", "--batch-size", "2", "--seq-len", "256", "--val-sequences", "4",
         "--data", str(data_dir), "--tokenizer", TOKENIZER, "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "adapters.json").read_text())
    for name in ("csharp", "javascript", "all"):
        tensors = load_file(out / name / "adapter_model.safetensors")
        lora_b = [v for k, v in tensors.items() if "lora_B" in k]
        assert len(lora_b) == 7 * TINY.layers and any(bool(v.abs().sum()) for v in lora_b)
        assert set(summary[name]["val"]) == {"csharp", "javascript"}
    assert summary["all"]["steps"] == 2 * summary["csharp"]["steps"]
    merged = tmp_path / "merged"
    result = CliRunner().invoke(
        main, ["merge-adapters", str(out / "merge-linear.yaml"), str(merged)]
    )
    assert result.exit_code == 0, result.output
    model = load_for_eval(merged, str(base))
    assert isinstance(model, peft.PeftModel)
    from splice.models.training.lm_adapters import AdapterOptions

    options = AdapterOptions(
        base=str(base), out_dir=str(out), langs=("csharp",), data_dir=str(data_dir),
        tokenizer=TOKENIZER, val_sequences=4, seq_len=256,
    )  # fmt: skip
    loss = resolution_loss(model, val_sets(options)["csharp"])
    assert 0 < loss < 20
    full = tmp_path / "full"  # the continual fold, added into the base's weights
    result = CliRunner().invoke(
        main, ["merge-adapters", str(out / "merge-continual.yaml"), str(full), "--output", "full"]
    )
    assert result.exit_code == 0, result.output
    folded = transformers.AutoModelForCausalLM.from_pretrained(full)
    assert 0 < resolution_loss(folded, val_sets(options)["csharp"]) < 20
    bad = CliRunner().invoke(main, ["train-lm-adapters", str(tmp_path / "nope"), str(out)])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


@needs_data
def test_train_lm_command(tmp_path: Path, data_dir: Path) -> None:
    from click.testing import CliRunner

    from splice.cli import main

    tiny = [
        "--hidden",
        "32",
        "--layers",
        "1",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--intermediate",
        "64",
        "--seq-len",
        "64",
        "--batch-size",
        "2",
        "--threads",
        "1",
    ]
    args = ["train-lm", "--out", str(tmp_path / "lm"), "--data", str(data_dir),
            "--tokenizer", TOKENIZER, "--steps", "4", "--eval-every", "2",
            "--val-sequences", "4", *tiny]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    evals = [line for line in result.output.splitlines() if "val loss" in line]
    assert len(evals) == 4  # steps 0, 2, 4 and the summary line
    assert (
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "lm").config.hidden_size == 32
    )
    for bad in (["--lr", "-1"], ["--tokenizer", str(tmp_path / "none.json")], ["--heads", "3"]):
        result = CliRunner().invoke(main, [*args, *bad])
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
