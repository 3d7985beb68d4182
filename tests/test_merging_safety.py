"""The merging commands never destroy a model and answer bad input with one line.

Small models written as real safetensors folders; every command runs through the real CLI
(click's runner in process, and a subprocess for the exit status and stderr as a shell sees
them).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from click.testing import CliRunner, Result  # noqa: E402
from splice.models.merging import linear, merge  # noqa: E402
from splice.models.merging.finite import SHOWN, NonFiniteLog, count_nonfinite  # noqa: E402
from splice.models.merging.io import ModelReader, write_tensors  # noqa: E402
from splice.models.merging.output import MANIFEST  # noqa: E402

from splice.cli import main  # noqa: E402

NAMES = ["model.embed_tokens.weight", *(f"model.layers.{i}.mlp.up_proj.weight" for i in range(3))]
NAMES.append("model.norm.weight")
SHAPES = {n: (16, 8) for n in NAMES} | {"model.norm.weight": (8,)}
LORA = "base_model.model.model.layers.0.mlp.up_proj"


def _write_model(path: Path, seed: int, nan: bool = False) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {name: torch.randn(shape, generator=gen) for name, shape in SHAPES.items()}
    if nan:
        state["model.layers.1.mlp.up_proj.weight"][0, 0] = float("nan")
        state["model.layers.2.mlp.up_proj.weight"][1] = float("inf")
    write_tensors(path, state.items())
    (path / "config.json").write_text(json.dumps({"num_hidden_layers": 3}))
    (path / "tokenizer_config.json").write_text("{}")
    return state


def _write_adapter(path: Path, seed: int, nan: bool = False) -> None:
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 8, generator=gen), torch.randn(16, 2, generator=gen)
    if nan:
        a[0, 0] = float("nan")
    write_tensors(path, [(f"{LORA}.lora_A.weight", a), (f"{LORA}.lora_B.weight", b)],
                  stem="adapter_model")  # fmt: skip
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["up_proj"]}
    (path / "adapter_config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("safety")
    paths = {name: root / name for name in ("base", "m0", "m1", "nan", "a0", "a1", "anan")}
    for seed, name in enumerate(("base", "m0", "m1")):
        _write_model(paths[name], seed)
    _write_model(paths["nan"], 7, nan=True)
    _write_adapter(paths["a0"], 10)
    _write_adapter(paths["a1"], 11)
    _write_adapter(paths["anan"], 12, nan=True)
    return paths


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the hash of its bytes (links as their target)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(folder))] = "-> " + os.readlink(path)
        elif path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _config(tmp_path: Path, data: dict, name: str = "merge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _linear(models: dict[str, Path], w0: float = 0.5, w1: float = 0.5) -> dict:
    return {"merge_method": "linear", "models": [
        {"model": str(models["m0"]), "parameters": {"weight": w0}},
        {"model": str(models["m1"]), "parameters": {"weight": w1}}]}  # fmt: skip


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _refused(result: Result, needle: str) -> None:
    """Exit 1 with one ``Error:`` line holding ``needle``, no traceback, no other exception."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert needle in errors[0], result.output


def _read(folder: Path) -> dict[str, torch.Tensor]:
    reader = ModelReader(folder)
    try:
        return {name: reader.read(name).clone() for name in reader.names()}
    finally:
        reader.close()


# --- the output is never an input --------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "needle"),
    [
        (lambda m, t: m["m0"], "is the model"),
        (lambda m, t: m["m1"], "is the model"),
        (lambda m, t: m["base"], "is the model"),
        (lambda m, t: t / "link", "is the model"),  # a link to m1
        (lambda m, t: m["m0"] / "sub", "is inside the model"),
        (lambda m, t: m["m0"].parent, "contains the model"),
    ],
)
def test_an_output_that_is_an_input_is_refused(models, tmp_path, out, needle) -> None:
    (tmp_path / "link").symlink_to(models["m1"], target_is_directory=True)
    cfg = {"merge_method": "task_arithmetic", "base_model": str(models["base"]),
           "models": [{"model": str(models["m0"])}, {"model": str(models["m1"])}]}  # fmt: skip
    before = _digest(models["m0"].parent)
    result = _run("merge-weights", _config(tmp_path, cfg), out(models, tmp_path))
    _refused(result, needle)
    assert _digest(models["m0"].parent) == before


@pytest.mark.parametrize(("which", "output"), [("a0", "lora"), ("a1", "lora"), ("base", "full")])
def test_merge_adapters_refuses_an_input_as_output(models, tmp_path, which, output) -> None:
    cfg = {"merge_method": "linear", "base_model": str(models["base"]), "output": output,
           "models": [{"model": str(models["a0"])}, {"model": str(models["a1"])}]}  # fmt: skip
    before = _digest(models[which])
    result = _run("merge-adapters", _config(tmp_path, cfg), models[which])
    _refused(result, "would destroy that model")
    assert _digest(models[which]) == before


# --- written whole or not at all; a second merge replaces the first --------------------------


def test_a_failed_merge_leaves_the_output_as_it_was(models, tmp_path) -> None:
    out = tmp_path / "out"
    assert _run("merge-weights", _config(tmp_path, _linear(models)), out).exit_code == 0
    before = _digest(out)
    # the last layer's weights sum to zero: the merge fails after earlier tensors were written
    bad = _linear(models)
    bad["models"][1]["parameters"]["weight"] = [
        {"filter": "layers.2", "value": -0.5}, {"value": 0.5}]  # fmt: skip
    result = _run("merge-weights", _config(tmp_path, bad, "bad.yaml"), out, "--shard-size", "600")
    _refused(result, "model.layers.2.mlp.up_proj.weight")
    assert _digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "merge.yaml", "out"]


@pytest.mark.parametrize("sizes", [("600", "1GB", "1000"), ("1GB", "600", "1GB")])
def test_merging_twice_into_one_folder_loads_the_new_model_only(models, tmp_path, sizes) -> None:
    out = tmp_path / "out"
    (out).mkdir()
    (out / "notes.txt").write_text("mine")  # not the merge's: kept
    a, b = _read(models["m0"]), _read(models["m1"])
    for k, size in enumerate(sizes):
        w0 = 0.1 * (k + 1)
        cfg = _config(tmp_path, _linear(models, w0, 1 - w0), f"c{k}.yaml")
        if k == 0:  # a folder no merge wrote needs --force
            _refused(_run("merge-weights", cfg, out, "--shard-size", size), "--force")
            result = _run("merge-weights", cfg, out, "--shard-size", size, "--force")
        else:
            result = _run("merge-weights", cfg, out, "--shard-size", size)
        assert result.exit_code == 0, result.output
        got = _read(out)
        for name in NAMES:
            assert torch.equal(got[name], linear([a[name], b[name]], [w0, 1 - w0])), (k, name)
        manifest = json.loads((out / MANIFEST).read_text())["files"]
        weights = sorted(p.name for p in out.iterdir() if "safetensors" in p.name)
        assert weights == sorted(f for f in manifest if "safetensors" in f)
        assert ("model.safetensors" in weights) == (size == "1GB")
        assert ("model.safetensors.index.json" in weights) == (size != "1GB")
        assert (out / "notes.txt").read_text() == "mine"


def test_force_replaces_model_files_and_never_writes_through_a_link(models, tmp_path) -> None:
    precious = tmp_path / "precious.safetensors"
    precious.write_bytes(b"not to be overwritten")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").symlink_to(precious)
    (out / "pytorch_model.bin").write_bytes(b"stale")
    (out / "model-00001-of-00009.safetensors").write_bytes(b"stale")
    (out / "keep.md").write_text("kept")
    result = _run("merge-weights", _config(tmp_path, _linear(models)), out, "--force")
    assert result.exit_code == 0, result.output
    assert precious.read_bytes() == b"not to be overwritten"
    assert not (out / "model.safetensors").is_symlink()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "keep.md", "model.safetensors", MANIFEST,
                     "tokenizer_config.json"]  # fmt: skip


def test_a_previous_output_is_replaced_without_force(models, tmp_path) -> None:
    out = tmp_path / "out"
    merge(_linear(models, 0.2, 0.8), out)
    (out / "model.safetensors").unlink()
    (out / "model.safetensors").symlink_to(models["m0"] / "model.safetensors")
    before = _digest(models["m0"])
    merge(_linear(models, 0.3, 0.7), out)
    assert _digest(models["m0"]) == before
    a, b, got = _read(models["m0"]), _read(models["m1"]), _read(out)
    assert all(torch.equal(got[n], linear([a[n], b[n]], [0.3, 0.7])) for n in NAMES)


# --- NaN and Inf -------------------------------------------------------------------------


def test_nan_and_inf_are_warned_about_by_tensor(models, tmp_path) -> None:
    cfg = {"merge_method": "linear", "models": [{"model": str(models["m0"])},
                                                {"model": str(models["nan"])}]}  # fmt: skip
    result = _run("merge-weights", _config(tmp_path, cfg), tmp_path / "out")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warned) == 2, result.output
    assert "model.layers.1.mlp.up_proj.weight" in warned[0] and "1 in model" in warned[0]
    assert "model.layers.2.mlp.up_proj.weight" in warned[1] and "8 in the merged" in warned[1]
    clean = _run("merge-weights", _config(tmp_path, _linear(models), "c.yaml"), tmp_path / "o2")
    assert clean.exit_code == 0 and "warning" not in clean.output
    with pytest.warns(UserWarning) as record:
        report = merge(cfg, tmp_path / "o3")
    assert [str(w.message) for w in record] == report.warnings == [w[9:] for w in warned]


def test_a_merge_that_makes_nan_from_finite_inputs_is_warned(models, tmp_path) -> None:
    cfg = _linear(models, 1.0, float("inf"))
    result = _run("merge-weights", _config(tmp_path, cfg), tmp_path / "out")
    assert result.exit_code == 0
    assert sum("in the merged tensor" in line for line in result.output.splitlines()) == 5


def test_nan_adapters_are_warned_and_a_lora_of_nan_refused(models, tmp_path) -> None:
    cfg = {"merge_method": "linear", "base_model": str(models["base"]),
           "models": [{"model": str(models["a0"])}, {"model": str(models["anan"])}]}  # fmt: skip
    path = _config(tmp_path, cfg)
    lora = _run("merge-adapters", path, tmp_path / "lora")
    _refused(lora, "non-finite")
    assert "warning: tensor model.layers.0.mlp.up_proj.weight" in lora.output
    assert not (tmp_path / "lora").exists()
    full = _run("merge-adapters", path, tmp_path / "full", "--output", "full")
    assert full.exit_code == 0, full.output
    assert "in the merged weight" in full.output


def test_nonfinite_counting() -> None:
    big = torch.full((4096,), 60000.0, dtype=torch.float16)  # its fp16 sum overflows
    assert count_nonfinite(big) == 0
    assert count_nonfinite(torch.tensor([1.0, float("nan"), -float("inf")])) == 2
    assert count_nonfinite(torch.tensor([1, 2])) == 0
    log = NonFiniteLog()
    for i in range(SHOWN + 5):
        log.check(f"t{i}", "model x", torch.tensor([float("nan")]))
    lines = log.lines()
    assert len(lines) == SHOWN + 1 and lines[-1].endswith("in 5 more tensors")


# --- bad input: one line, exit 1 -----------------------------------------------------------


def _truncate(models: dict[str, Path], tmp_path: Path, keep: int | None, data: bytes = b"") -> str:
    bad = tmp_path / "bad"
    bad.mkdir()
    raw = (models["m1"] / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(raw[:keep] if keep is not None else data)
    return str(bad)


def _with_model(models: dict[str, Path], other: str) -> dict:
    return {"merge_method": "linear",
            "models": [{"model": str(models["m0"])}, {"model": other}]}  # fmt: skip


BAD_INPUTS = {
    "invalid yaml": (lambda m, t: "merge_method: linear\nmodels: [\n", "invalid YAML"),
    "yaml list": (lambda m, t: "- 1\n- 2\n", "mapping"),
    "weight null": (
        lambda m, t: {
            **_linear(m),
            "models": [
                {"model": str(m["m0"]), "parameters": {"weight": None}},
                {"model": str(m["m1"])},
            ],
        },
        "model.embed_tokens.weight",
    ),  # fmt: skip
    "weight text": (
        lambda m, t: {
            **_linear(m),
            "models": [
                {"model": str(m["m0"]), "parameters": {"weight": "abc"}},
                {"model": str(m["m1"])},
            ],
        },
        "'abc'",
    ),  # fmt: skip
    "dtype number": (lambda m, t: {**_linear(m), "dtype": 5}, "dtype"),
    "missing model": (lambda m, t: _with_model(m, str(t / "nowhere")), "nowhere"),
    "header cut": (lambda m, t: _with_model(m, _truncate(m, t, 100)), "truncated"),
    "eight bytes short": (lambda m, t: _with_model(m, _truncate(m, t, 5)), "truncated"),
    "data cut": (lambda m, t: _with_model(m, _truncate(m, t, -10)), "truncated"),
    "huge header": (
        lambda m, t: _with_model(m, _truncate(m, t, None, struct.pack("<Q", 2**40) + b"{}")),
        "not a safetensors file",
    ),
    "not json": (
        lambda m, t: _with_model(m, _truncate(m, t, None, struct.pack("<Q", 4) + b"abcd")),
        "not JSON",
    ),
    "bad config.json": (
        lambda m, t: {
            **_linear(m),
            "base_model": _broken_config(m, t),
            "merge_method": "task_arithmetic",
        },
        "config.json",
    ),  # fmt: skip
}


def _broken_config(models: dict[str, Path], tmp_path: Path) -> str:
    folder = tmp_path / "broken"
    folder.mkdir()
    for file in models["base"].iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / "config.json").write_text("{num_hidden_layers: 3")
    return str(folder)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_one_line(models, tmp_path, case) -> None:
    make, needle = BAD_INPUTS[case]
    data = make(models, tmp_path)
    path = tmp_path / "merge.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    result = _run("merge-weights", path, tmp_path / "out")
    _refused(result, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("out", "needle"),
    [("missing/out", "does not exist"), ("file/out", "is not a folder")],
)
def test_an_output_without_a_parent_folder_is_refused(models, tmp_path, out, needle) -> None:
    (tmp_path / "file").write_text("x")
    result = _run("merge-weights", _config(tmp_path, _linear(models)), tmp_path / out)
    _refused(result, needle)
    assert not (tmp_path / "missing").exists()


def test_bad_adapter_input_gets_one_line(models, tmp_path) -> None:
    cases = [
        ({"models": [{"model": str(models["a0"]), "parameters": {"previous_weight": "x"}}]},
         "previous_weight"),
        ({"models": [{"model": str(tmp_path / "nowhere")}]}, "nowhere"),
        ({"output": "full", "base_model": str(tmp_path / "nobase"),
          "models": [{"model": str(models["a0"])}]}, "nobase"),
    ]  # fmt: skip
    for k, (data, needle) in enumerate(cases):
        path = _config(tmp_path, {"merge_method": "linear", **data}, f"c{k}.yaml")
        _refused(_run("merge-adapters", path, tmp_path / "out"), needle)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{r: 2")
    path = _config(tmp_path, {"merge_method": "linear", "models": [str(broken)]}, "b.yaml")
    _refused(_run("merge-adapters", path, tmp_path / "out"), "adapter_config.json")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_device_gets_one_line(models, tmp_path) -> None:
    result = _run("merge-weights", _config(tmp_path, _linear(models)), tmp_path / "o", "--device",
                  "cuda")  # fmt: skip
    _refused(result, "no CUDA device")


def test_the_command_in_a_subprocess(models, tmp_path) -> None:
    """As a shell sees it: exit 1, one stderr line, no traceback; the model intact."""
    before = _digest(models["m0"])
    cases = [
        (_config(tmp_path, _linear(models)), models["m0"]),
        (tmp_path / "bad.yaml", tmp_path / "out"),
    ]
    (tmp_path / "bad.yaml").write_text("merge_method: [\n")
    for config, out in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "splice", "merge-weights", str(config), str(out)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert _digest(models["m0"]) == before
