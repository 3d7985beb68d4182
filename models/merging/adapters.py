"""Merging PEFT LoRA adapters in the space of their weight deltas.

Each adapter's module contributes ``delta = scale * B @ A`` (``scale = lora_alpha / r``, or
``/ sqrt(r)`` with rsLoRA; transposed for ``fan_in_fan_out`` layers). The deltas of a module are
merged exactly with any registered method (task-vector methods see a zero base), one module at
a time, and the result is either re-factored into a LoRA of a chosen rank by truncated SVD (the
relative Frobenius reconstruction error of every module is reported) or added to the base
model's weights (what ``merge_and_unload`` would write).

MergeRepair's two scenarios are the two modes: ``simultaneous`` (all adapters at once, e.g.
equal-weight averaging) and ``continual`` (an ordered fold: adapter 1 with 2, the result with 3,
...; at step ``k`` the running merge has weight ``previous_weight`` of adapter ``k``, default 1).

Configuration (YAML)::

    merge_method: linear            # any method of the registry
    base_model: path/to/base        # needed for output: full
    mode: simultaneous              # or continual
    output: lora                    # or full
    rank: 16                        # lora output; default: the sum of the input ranks
    models:
      - model: path/to/adapter1
        parameters: {weight: 0.5}
      - model: path/to/adapter2
        parameters: {weight: 0.5}
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from splice.models.merging.config import ConfigError, MergeConfig, lookup, parse_config
from splice.models.merging.engine import (
    _check_method,
    check_device,
    layer_count,
    layer_of,
    read_model_config,
    tensor_seed,
)
from splice.models.merging.finite import NonFiniteLog, count_nonfinite
from splice.models.merging.io import (
    DEFAULT_SHARD_SIZE,
    ModelReader,
    OutputSpec,
    ShardWriter,
    dtype_name,
    parse_dtype,
    parse_size,
    read_safetensors_header,
)
from splice.models.merging.output import TOKENIZER_FILES, staged_output
from splice.models.merging.registry import MergeMethod, TensorInputs, get_method

ADAPTER_KEYS = {"mode", "output", "rank"}
LORA_RE = re.compile(r"^(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$")
PEFT_PREFIX = "base_model.model."


@dataclass
class LoraAdapter:
    """A PEFT LoRA adapter: its config and, per module, ``(A, B)`` (as stored)."""

    path: Path
    config: dict[str, Any]
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def load(cls, path: str | Path) -> LoraAdapter:
        """Read ``adapter_config.json`` and ``adapter_model.safetensors`` (or ``.bin``)."""
        path = Path(path)
        if not path.is_dir():
            raise ValueError(f"adapter {path}: not a directory (a local PEFT adapter folder)")
        config_file = path / "adapter_config.json"
        if not config_file.exists():
            raise ValueError(f"adapter {path}: no adapter_config.json")
        try:
            config = json.loads(config_file.read_text())
        except ValueError as exc:  # also not UTF-8
            raise ValueError(f"{config_file}: not JSON ({exc})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{config_file}: not a JSON mapping")
        if config.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"adapter {path}: peft_type {config.get('peft_type')} is not LORA")
        if config.get("use_dora"):
            raise ValueError(f"adapter {path}: DoRA adapters are not supported")
        reader = ModelReader.__new__(ModelReader)
        reader.path, reader.infos, reader._bin, reader._handles = path, {}, {}, {}
        file = path / "adapter_model.safetensors"
        if file.exists():
            reader.infos, _ = read_safetensors_header(file)
            reader.format = "safetensors"
        elif (path / "adapter_model.bin").exists():
            reader.format = "bin"
            state = reader._load_bin(path / "adapter_model.bin")
            from splice.models.merging.io import TensorInfo

            for name, tensor in state.items():
                reader.infos[name] = TensorInfo(
                    name, tensor.dtype, tuple(tensor.shape), path / "adapter_model.bin"
                )
        else:
            raise ValueError(f"adapter {path}: no adapter_model.safetensors")
        parts: dict[str, dict[str, torch.Tensor]] = {}
        try:
            for name in reader.names():
                match = LORA_RE.match(name)
                if not match:
                    raise ValueError(
                        f"adapter {path}: tensor {name} is not a LoRA A/B weight "
                        "(modules_to_save, embeddings and DoRA are not supported)"
                    )
                parts.setdefault(match.group(1), {})[match.group(2)] = reader.read(name)
        finally:
            reader.close()
        modules = {}
        for module, ab in parts.items():
            if set(ab) != {"A", "B"}:
                raise ValueError(f"adapter {path}: module {module} lacks lora_A or lora_B")
            modules[module] = (ab["A"], ab["B"])
        return cls(path, config, modules)

    def _pattern(self, table: str, module: str, default: float) -> float:
        for pattern, value in (self.config.get(table) or {}).items():
            if re.match(rf"(.*\.)?{pattern}$", module):
                return float(value)
        return float(default)

    def scale(self, module: str) -> float:
        """``lora_alpha / r`` of ``module`` (``/ sqrt(r)`` with rsLoRA), patterns applied."""
        rank = self._pattern("rank_pattern", module, self.config.get("r", 8))
        alpha = self._pattern("alpha_pattern", module, self.config.get("lora_alpha", rank))
        return alpha / math.sqrt(rank) if self.config.get("use_rslora") else alpha / rank

    def delta(self, module: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``scale * B @ A`` of ``module`` in the base weight's layout."""
        a, b = self.modules[module]
        delta = (b.to(dtype) @ a.to(dtype)) * self.scale(module)
        return delta.T if self.config.get("fan_in_fan_out") else delta

    def rank(self, module: str) -> int:
        """The stored rank of ``module``."""
        return int(self.modules[module][0].shape[0])


def weight_name(module: str) -> str:
    """The base model's weight of an adapter module (``base_model.model.`` dropped)."""
    return module.removeprefix(PEFT_PREFIX) + ".weight"


@dataclass
class AdapterReport:
    """What an adapter merge wrote."""

    out_dir: Path
    method: str
    mode: str
    output: str
    modules: int
    rank: int | None
    errors: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def max_error(self) -> float:
        """Largest relative Frobenius reconstruction error (0 for full output)."""
        return max(self.errors.values(), default=0.0)

    @property
    def mean_error(self) -> float:
        """Mean relative Frobenius reconstruction error."""
        return sum(self.errors.values()) / len(self.errors) if self.errors else 0.0


def refactor(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Truncated SVD ``delta ~ B @ A`` of rank ``rank``: ``(A, B, relative Frobenius error)``."""
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    r = max(1, min(rank, s.numel()))
    root = s[:r].sqrt()
    b = u[:, :r] * root
    a = root[:, None] * vh[:r]
    total = float(s.square().sum())
    error = math.sqrt(float(s[r:].square().sum()) / total) if total > 0 else 0.0
    return a, b, error


def _parse(config: str | Path | Mapping[str, Any]) -> tuple[MergeConfig, dict, list[float]]:
    from splice.models.merging.config import load_yaml

    data, folder = (dict(config), None) if isinstance(config, Mapping) else load_yaml(config)
    extra = {k: data.pop(k) for k in list(data) if k in ADAPTER_KEYS}
    if "slices" in data:
        raise ConfigError("slices: adapters are merged with 'models' only")
    previous: list[float] = []
    for i, entry in enumerate(data.get("models") or []):
        params = entry.get("parameters") if isinstance(entry, Mapping) else None
        value = params.pop("previous_weight", 1.0) if isinstance(params, dict) else 1.0
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"models[{i}].parameters.previous_weight: expected a number, got {value!r}"
            )
        previous.append(float(value))
    base = data.pop("base_model", None)
    cfg = parse_config(data)
    cfg.source_dir = folder
    cfg.base_model = base
    mode = extra.get("mode", "simultaneous")
    if mode not in ("simultaneous", "continual"):
        raise ConfigError(f"mode: expected simultaneous or continual, got {mode!r}")
    output = extra.get("output", "lora")
    if output not in ("lora", "full"):
        raise ConfigError(f"output: expected lora or full, got {output!r}")
    if output == "full" and not base:
        raise ConfigError("base_model: output full needs the base model's directory")
    rank = extra.get("rank")
    if rank is not None and (not isinstance(rank, int) or rank < 1):
        raise ConfigError(f"rank: expected a positive integer, got {rank!r}")
    return cfg, {"mode": mode, "output": output, "rank": rank}, previous


class _DeltaMerger:
    """Merges one module's deltas with the configured method and mode."""

    def __init__(
        self,
        cfg: MergeConfig,
        method: MergeMethod,
        adapters: list[LoraAdapter],
        mode: str,
        previous: list[float],
        layers: int,
        seed: int,
        device: torch.device,
        nonfinite: NonFiniteLog | None = None,
    ) -> None:
        self.cfg, self.method, self.adapters = cfg, method, adapters
        self.mode, self.previous, self.layers = mode, previous, layers
        self.seed, self.device = seed, device
        self.nonfinite = nonfinite if nonfinite is not None else NonFiniteLog()

    def _params(self, index: int, name: str, t: float | None) -> dict[str, Any]:
        assert self.cfg.models is not None
        chain = [self.cfg.models[index].parameters, self.cfg.parameters]
        return {k: lookup(k, chain, d, name, t) for k, d in self.method.model_params.items()}

    def _call(
        self, name: str, deltas: list[torch.Tensor], params: list[dict], t: float | None
    ) -> torch.Tensor:
        globals_ = {
            k: lookup(k, [self.cfg.parameters], d, name, t)
            for k, d in self.method.global_params.items()
        }
        generator = torch.Generator(device=self.device)
        generator.manual_seed(tensor_seed(self.seed, name))
        base: torch.Tensor | None = torch.zeros_like(deltas[0])
        tensors = deltas
        if self.method.name == "slerp":
            base, tensors, params = deltas[0], deltas[1:], params[1:]
        elif (
            not (self.method.requires_base or self.method.drop_base_from_models)
            or self.method.name == "nuslerp"
        ):
            base = None
        inputs = TensorInputs(tensors, base, params, globals_, generator, name)
        try:
            return self.method.merge_tensor(inputs).float()
        except (ValueError, RuntimeError, TypeError) as exc:  # TypeError: a parameter's type
            raise ValueError(f"module {name}: {exc}") from exc

    def merge(self, module: str) -> torch.Tensor:
        """The merged delta of ``module`` (float32); adapters lacking it contribute zeros."""
        name = weight_name(module)
        parts = layer_of(name)
        t = None if parts is None else (parts[1] / (self.layers - 1) if self.layers > 1 else 0.0)
        shape = next(a.delta(module).shape for a in self.adapters if module in a.modules)
        deltas = [
            (a.delta(module) if module in a.modules else torch.zeros(shape)).to(self.device)
            for a in self.adapters
        ]
        params = [self._params(i, name, t) for i in range(len(deltas))]
        if self.mode == "simultaneous" or len(deltas) == 1:
            return self._call(name, deltas, params, t)
        running = deltas[0]
        for k in range(1, len(deltas)):
            step = [dict(params[k], weight=self.previous[k]), params[k]]
            if "weight" not in self.method.model_params:
                step = [dict(params[k]), params[k]]
            running = self._call(f"{name}#step{k}", [running, deltas[k]], step, t)
        return running

    def checked(self, module: str) -> torch.Tensor:
        """:meth:`merge` on the CPU, its NaN/Inf values counted."""
        delta = self.merge(module).cpu()
        self.nonfinite.check(weight_name(module), "the merged delta", delta)
        return delta


def merge_adapters(
    config: str | Path | Mapping[str, Any],
    out_dir: str | Path,
    *,
    seed: int = 0,
    rank: int | None = None,
    output: str | None = None,
    shard_size: str | int = DEFAULT_SHARD_SIZE,
    device: str = "cpu",
    force: bool = False,
) -> AdapterReport:
    """Merge the LoRA adapters of ``config`` into ``out_dir`` (a PEFT adapter or a full model).

    ``rank`` and ``output`` override the configuration's ``rank`` / ``output``. ``out_dir``
    and ``force`` as in :func:`~splice.models.merging.engine.merge`: never an input, written
    into a fresh folder and moved into place. NaN/Inf values in the adapters, the merged deltas
    or the written weights are warned about by name (a LoRA output refuses a non-finite delta:
    it cannot be factored).
    """
    start = time.perf_counter()
    cfg, extra, previous = _parse(config)
    if rank is not None:
        extra["rank"] = rank
    if output is not None:
        extra["output"] = output
        if output == "full" and not cfg.base_model:
            raise ConfigError("base_model: output full needs the base model's directory")
    method = get_method(cfg.merge_method)
    checked = MergeConfig(
        cfg.merge_method, models=cfg.models, base_model="<zero base>", parameters=cfg.parameters
    )
    if method.name == "slerp":  # between the first adapter and the second
        checked.base_model = cfg.models[0].model if cfg.models else None
    if extra["mode"] == "continual" and cfg.models and len(cfg.models) > 2:
        checked.models = cfg.models[:2]
    _check_method(checked, method)
    assert cfg.models is not None
    dev = check_device(device)
    size = parse_size(shard_size)
    adapters = [LoraAdapter.load(cfg.resolve_path(m.model)) for m in cfg.models]
    nonfinite = NonFiniteLog()
    for entry, adapter in zip(cfg.models, adapters, strict=True):
        for module, (a, b) in adapter.modules.items():
            nonfinite.check(weight_name(module), f"adapter {entry.model} (lora_A)", a)
            nonfinite.check(weight_name(module), f"adapter {entry.model} (lora_B)", b)
    modules = list(dict.fromkeys(m for a in adapters for m in a.modules))
    base_dir = cfg.resolve_path(cfg.base_model) if cfg.base_model else None
    base_config = read_model_config(base_dir) if base_dir else {}
    layers = layer_count(base_config, [weight_name(m) for m in modules])
    if base_dir is not None and not base_dir.is_dir():
        raise ValueError(f"base_model {cfg.base_model}: not a directory")
    merger = _DeltaMerger(
        cfg, method, adapters, extra["mode"], previous, layers, seed, dev, nonfinite
    )
    out = Path(out_dir)
    inputs = [("adapter", a.path) for a in adapters]
    if base_dir is not None:
        inputs.append(("base model", base_dir))
    report = AdapterReport(out, method.name, extra["mode"], extra["output"], len(modules), None)
    try:
        with staged_output(out, inputs, force) as stage:
            if extra["output"] == "lora":
                _write_lora(cfg, adapters, modules, merger, extra["rank"], stage, report)
            else:
                assert base_dir is not None
                _write_full(cfg, base_dir, modules, merger, size, stage)
    finally:
        report.warnings = nonfinite.lines([weight_name(m) for m in modules])
        for line in report.warnings:
            warnings.warn(line, stacklevel=2)
    report.seconds = time.perf_counter() - start
    return report


def _write_lora(
    cfg: MergeConfig,
    adapters: list[LoraAdapter],
    modules: list[str],
    merger: _DeltaMerger,
    rank: int | None,
    out: Path,
    report: AdapterReport,
) -> None:
    first = adapters[0]
    stored = next(iter(first.modules.values()))[0].dtype
    out_dtype = parse_dtype(cfg.out_dtype, "out_dtype") or parse_dtype(cfg.dtype) or stored
    if rank is None:
        rank = max(sum(a.rank(m) for a in adapters if m in a.modules) for m in modules)
    fan = bool(first.config.get("fan_in_fan_out"))
    specs, shapes = [], {}
    for module in modules:
        shape = next(a.delta(module).shape for a in adapters if module in a.modules)
        out_f, in_f = (shape[1], shape[0]) if fan else (shape[0], shape[1])
        r = max(1, min(rank, out_f, in_f))
        shapes[module] = r
        specs.append(OutputSpec(f"{module}.lora_A.weight", out_dtype, (r, in_f)))
        specs.append(OutputSpec(f"{module}.lora_B.weight", out_dtype, (out_f, r)))
    writer = ShardWriter(out, specs, shard_size=2**62, stem="adapter_model")
    for module in modules:
        delta = merger.checked(module)
        bad = count_nonfinite(delta)
        if bad:
            raise ValueError(
                f"module {module}: the merged delta holds {bad} non-finite values (NaN/Inf); "
                "it cannot be factored into a LoRA (output full writes the weights as they are)"
            )
        if fan:
            delta = delta.T
        a, b, error = refactor(delta, shapes[module])
        report.errors[module] = error
        writer.write(f"{module}.lora_A.weight", a.to(out_dtype).contiguous())
        writer.write(f"{module}.lora_B.weight", b.to(out_dtype).contiguous())
    writer.finish()
    report.rank = rank
    config = dict(first.config)
    targets = sorted({m.rsplit(".", 1)[-1] for m in modules})
    config.update(
        r=rank,
        lora_alpha=rank,
        rank_pattern={},
        alpha_pattern={},
        use_rslora=False,
        target_modules=targets,
    )
    if cfg.base_model:
        config["base_model_name_or_path"] = cfg.base_model
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _write_full(
    cfg: MergeConfig,
    base_dir: Path,
    modules: list[str],
    merger: _DeltaMerger,
    shard_size: int,
    out: Path,
) -> None:
    reader = ModelReader(base_dir)
    try:
        by_weight = {weight_name(m): m for m in modules}
        missing = [w for w in by_weight if w not in reader.infos]
        if missing:
            raise ValueError(
                f"base model {base_dir} lacks the adapted weights: {', '.join(missing[:5])}"
            )
        out_dtype = parse_dtype(cfg.out_dtype, "out_dtype")
        specs = []
        for name in reader.names():
            info = reader.infos[name]
            dtype = out_dtype if out_dtype and info.dtype.is_floating_point else info.dtype
            specs.append(OutputSpec(name, dtype, info.shape))
        writer = ShardWriter(out, specs, shard_size)
        for spec in specs:
            tensor = reader.read(spec.name)
            merger.nonfinite.check(spec.name, f"base model {cfg.base_model}", tensor)
            if spec.name in by_weight:
                delta = merger.checked(by_weight[spec.name])
                if tuple(delta.shape) != tuple(tensor.shape):
                    raise ValueError(
                        f"tensor {spec.name}: delta shape {list(delta.shape)} differs from the "
                        f"base weight's {list(tensor.shape)}"
                    )
                tensor = (tensor.float() + delta).to(spec.dtype)
                merger.nonfinite.check(spec.name, "the merged weight", tensor)
            writer.write(spec.name, tensor.to(spec.dtype))
        writer.finish()
    finally:
        reader.close()
    config = read_model_config(base_dir)
    if config:
        dtype = parse_dtype(cfg.out_dtype, "out_dtype")
        if dtype is not None:
            config["dtype"] = dtype_name(dtype)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for file in (*TOKENIZER_FILES, "generation_config.json"):
        if (base_dir / file).exists():
            shutil.copy2(base_dir / file, out / file)
