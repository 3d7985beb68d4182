"""The streaming merge driver: plan every output tensor from the file headers, then read, merge
and write one tensor at a time.

``merge(config, out_dir)`` takes a mergekit configuration (path, YAML text, dict or
:class:`~splice.models.merging.config.MergeConfig`) and writes a Hugging Face model folder:
safetensors shards (with an index when there are several), ``config.json`` and the tokenizer
files.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from splice.models.merging import workspace
from splice.models.merging.config import ConfigError, MergeConfig, ModelEntry, lookup, parse_config
from splice.models.merging.finite import NonFiniteLog
from splice.models.merging.io import (
    DEFAULT_SHARD_SIZE,
    ModelReader,
    OutputSpec,
    ShardWriter,
    dtype_name,
    parse_dtype,
    parse_size,
)
from splice.models.merging.output import TOKENIZER_FILES, staged_output
from splice.models.merging.registry import (
    MergeMethod,
    TensorInputs,
    all_parameter_names,
    get_method,
)

#: ``<prefix>.<container>.<index>.<rest>``: the layer index of a tensor name.
LAYER_RE = re.compile(r"^(.*?\b(?:layers|h|blocks|layer|block))\.(\d+)\.(.+)$")
#: Non-layer tensors that sit before the layers (taken from the first slice).
PRE_LAYER_RE = re.compile(r"embed|wte|wpe|word_embeddings")
__all__ = ["TOKENIZER_FILES", "MergeReport", "merge"]
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


@dataclass
class Source:
    """One input of an output tensor: which model, which tensor, which parameter chain."""

    model: str
    tensor: str
    chain: list[Mapping[str, Any]]


@dataclass
class TensorPlan:
    """How one output tensor is made."""

    name: str
    shape: tuple[int, ...]
    sources: list[Source]
    base: Source | None
    t: float | None
    global_chain: list[Mapping[str, Any]]
    copy_only: bool = False


@dataclass
class MergeReport:
    """What a merge wrote."""

    out_dir: Path
    method: str
    tensors: int
    shards: list[Path]
    seconds: float
    layers: int | None = None
    warnings: list[str] = field(default_factory=list)


def layer_of(name: str) -> tuple[str, int, str] | None:
    """``(prefix, index, rest)`` of a layer tensor name, or None."""
    match = LAYER_RE.match(name)
    return (match.group(1), int(match.group(2)), match.group(3)) if match else None


def read_model_config(path: Path) -> dict[str, Any]:
    """The model's ``config.json`` ({} if absent); a ValueError names a file that is not JSON."""
    file = path / "config.json"
    if not file.exists():
        return {}
    try:
        config = json.loads(file.read_text())
    except ValueError as exc:  # also not UTF-8
        raise ValueError(f"{file}: not a JSON model configuration ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{file}: not a JSON model configuration (no mapping)")
    return config


def check_device(device: str) -> torch.device:
    """``device`` as a torch device; a ValueError when it does not exist here."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r}: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device}: no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def layer_count(config: Mapping[str, Any], names: Sequence[str]) -> int:
    """Number of layers: from the config (also a nested ``text_config``) or the names."""
    for scope in (config, config.get("text_config") or {}):
        for key in LAYER_COUNT_KEYS:
            if isinstance(scope.get(key), int):
                return int(scope[key])
    indices = [p[1] for p in map(layer_of, names) if p]
    return max(indices) + 1 if indices else 0


def tensor_seed(seed: int, name: str) -> int:
    """A per-tensor seed, independent of the order tensors are merged in."""
    return (seed * 0x9E3779B1 + zlib.crc32(name.encode())) % (2**63 - 1)


class Planner:
    """Builds the :class:`TensorPlan` list of a configuration and checks shapes and names."""

    def __init__(self, cfg: MergeConfig, method: MergeMethod, readers: dict[str, ModelReader]):
        self.cfg = cfg
        self.method = method
        self.readers = readers
        self.errors: list[str] = []
        self.layers_out: int | None = None
        self.layer_map: list[tuple[str, int]] = []  # output layer -> (model, source layer)

    def _chain(self, entry: ModelEntry, slice_params: Mapping[str, Any]) -> list[Mapping]:
        return [entry.parameters, slice_params, self.cfg.parameters]

    def _check(self, model: str, tensor: str, shape: tuple[int, ...], out: str) -> None:
        info = self.readers[model].infos.get(tensor)
        if info is None:
            self.errors.append(f"tensor {tensor} is missing from model {model}")
        elif info.shape != shape:
            self.errors.append(
                f"tensor {out}: shape {list(info.shape)} in {model} (as {tensor}) differs "
                f"from {list(shape)}"
            )

    def _split(self, entries: list[ModelEntry]) -> tuple[list[ModelEntry], ModelEntry | None]:
        base = self.cfg.base_model
        base_entry = next((e for e in entries if e.model == base), None)
        if base is not None and base_entry is None:
            base_entry = ModelEntry(base, {})
        models = entries
        if self.method.drop_base_from_models and base is not None:
            models = [e for e in entries if e.model != base]
        return models, base_entry

    def _make(
        self,
        out: str,
        entries: list[ModelEntry],
        names: list[str],
        slice_params: Mapping[str, Any],
        t: float | None,
    ) -> TensorPlan:
        """Plan ``out`` from ``entries`` whose tensor names are ``names`` (same order)."""
        by_model = dict(zip([e.model for e in entries], names, strict=True))
        models, base_entry = self._split(entries)
        ref_model, ref_name = (
            (base_entry.model, by_model.get(base_entry.model, names[0]))
            if base_entry is not None
            else (entries[0].model, names[0])
        )
        ref_info = self.readers[ref_model].infos.get(ref_name)
        if ref_info is None:
            self.errors.append(f"tensor {ref_name} is missing from model {ref_model}")
            shape: tuple[int, ...] = ()
        else:
            shape = ref_info.shape
        sources = [Source(e.model, by_model[e.model], self._chain(e, slice_params)) for e in models]
        base = None
        uses_base = self.method.requires_base or self.method.drop_base_from_models
        if base_entry is not None and uses_base:
            base = Source(
                base_entry.model,
                by_model.get(base_entry.model, names[0]),
                self._chain(base_entry, slice_params),
            )
        for src in [*sources, *([base] if base else [])]:
            self._check(src.model, src.tensor, shape, out)
        copy_only = ref_info is not None and not ref_info.dtype.is_floating_point
        return TensorPlan(
            out, shape, sources, base, t, [slice_params, self.cfg.parameters], copy_only
        )

    def plan(self) -> list[TensorPlan]:
        """All output tensors in writing order (pre-layer, layers, post-layer)."""
        if self.cfg.models is not None:
            plans = self._plan_models(self.cfg.models)
        else:
            plans = self._plan_slices()
        if self.errors:
            shown = "\n  ".join(self.errors[:20])
            more = f"\n  ... and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
            raise ValueError(f"the models do not match:\n  {shown}{more}")
        return plans

    def _plan_models(self, entries: list[ModelEntry]) -> list[TensorPlan]:
        ref = self.cfg.base_model or entries[0].model
        reader = self.readers[ref]
        names = reader.names()
        layers = layer_count(read_model_config(reader.path), names)
        self.layers_out = layers
        for entry in entries:
            extra = set(self.readers[entry.model].infos) - set(names)
            for name in sorted(extra)[:5]:
                self.errors.append(f"tensor {name} of model {entry.model} is missing from {ref}")
        keyed = []
        for order, name in enumerate(names):
            parts = layer_of(name)
            if parts is None:
                group, t = (0 if PRE_LAYER_RE.search(name) else 2), None
                index = 0
            else:
                group, index = 1, parts[1]
                t = index / (layers - 1) if layers > 1 else 0.0
            keyed.append(((group, index, order), name, t))
        keyed.sort(key=lambda item: item[0])
        return [self._make(name, entries, [name] * len(entries), {}, t) for _, name, t in keyed]

    def _plan_slices(self) -> list[TensorPlan]:
        slices = self.cfg.slices or []
        pre: list[TensorPlan] = []
        body: list[TensorPlan] = []
        post: list[TensorPlan] = []
        offset = 0
        for k, slice_ in enumerate(slices):
            sources = slice_.sources
            needs = self.cfg.base_model and self.method.requires_base
            if needs and all(s.model != self.cfg.base_model for s in sources):
                raise ConfigError(
                    f"slices[{k}].sources: the base_model {self.cfg.base_model!r} must be "
                    "one of the sources of every slice"
                )
            for s in sources:
                reader = self.readers[s.model]
                total = layer_count(read_model_config(reader.path), reader.names())
                assert s.layer_range is not None
                if s.layer_range[1] > total:
                    raise ConfigError(
                        f"slices[{k}]: layer_range {list(s.layer_range)} exceeds the {total} "
                        f"layers of {s.model}"
                    )
            first = sources[0]
            assert first.layer_range is not None
            length = first.layer_range[1] - first.layer_range[0]
            by_layer: dict[int, list[tuple[str, str, str]]] = {}
            for name in self.readers[first.model].names():
                parts = layer_of(name)
                if parts:
                    by_layer.setdefault(parts[1], []).append(parts)
            for j in range(length):
                t = j / (length - 1) if length > 1 else 0.0
                src_layer = first.layer_range[0] + j
                self.layer_map.append((first.model, src_layer))
                for prefix, _, rest in by_layer.get(src_layer, []):
                    out = f"{prefix}.{offset + j}.{rest}"
                    names = [
                        f"{prefix}.{s.layer_range[0] + j}.{rest}"  # type: ignore[index]
                        for s in sources
                    ]
                    body.append(self._make(out, sources, names, slice_.parameters, t))
            offset += length
        self.layers_out = offset
        for which, slice_ in ((0, slices[0]), (1, slices[-1])):
            ref = slice_.sources[0].model
            for name in self.readers[ref].names():
                if layer_of(name) is not None:
                    continue
                is_pre = bool(PRE_LAYER_RE.search(name))
                if is_pre != (which == 0):
                    continue
                plan = self._make(
                    name, slice_.sources, [name] * len(slice_.sources), slice_.parameters, None
                )
                (pre if is_pre else post).append(plan)
        return pre + body + post


def _check_method(cfg: MergeConfig, method: MergeMethod) -> list[str]:
    """Structural checks of the method against the configuration; returns warnings."""
    notes: list[str] = []
    name = cfg.merge_method
    if method.requires_base and not cfg.base_model:
        raise ConfigError(f"base_model: merge_method {name} needs a base_model")
    groups = [cfg.models] if cfg.models is not None else [s.sources for s in cfg.slices or []]
    for k, entries in enumerate(groups):
        assert entries is not None
        count = len(entries)
        if method.drop_base_from_models and cfg.base_model:
            count = len([e for e in entries if e.model != cfg.base_model])
        where = "models" if cfg.models is not None else f"slices[{k}].sources"
        if count < method.min_models:
            raise ConfigError(
                f"{where}: merge_method {name} needs at least {method.min_models} model(s)"
                + (" besides the base_model" if method.drop_base_from_models else "")
            )
        if method.max_models is not None and count > method.max_models:
            raise ConfigError(
                f"{where}: merge_method {name} takes at most {method.max_models} model(s)"
                + (" besides the base_model" if method.drop_base_from_models else "")
            )
    known_here = set(method.model_params) | set(method.global_params)
    known_any = all_parameter_names() | {"int8_mask", "normalize", "rescale"}
    blocks: list[tuple[str, Mapping[str, Any]]] = [("parameters", cfg.parameters)]
    for i, entry in enumerate(cfg.models or []):
        blocks.append((f"models[{i}].parameters", entry.parameters))
    for k, slice_ in enumerate(cfg.slices or []):
        blocks.append((f"slices[{k}].parameters", slice_.parameters))
        for j, src in enumerate(slice_.sources):
            blocks.append((f"slices[{k}].sources[{j}].parameters", src.parameters))
    for where, params in blocks:
        for key in params:
            if key in known_here:
                continue
            if key in known_any:
                notes.append(f"{where}.{key}: not used by merge_method {name}")
                continue
            raise ConfigError(
                f"{where}.{key}: unknown parameter for merge_method {name} "
                f"(it reads: {', '.join(sorted(known_here)) or 'none'})"
            )
    return notes


def _resolve(plan: TensorPlan, method: MergeMethod) -> tuple[list[dict], dict]:
    model_params = []
    for src in plan.sources:
        model_params.append(
            {
                key: lookup(key, src.chain, default, plan.name, plan.t)
                for key, default in method.model_params.items()
            }
        )
    params = {
        key: lookup(key, plan.global_chain, default, plan.name, plan.t)
        for key, default in method.global_params.items()
    }
    return model_params, params


def _write_metadata(
    cfg: MergeConfig,
    planner: Planner,
    readers: dict[str, ModelReader],
    out_dir: Path,
    out_dtype: torch.dtype | None,
) -> None:
    ref = cfg.base_model or cfg.model_refs()[0]
    if cfg.slices is not None:
        ref = cfg.slices[0].sources[0].model
    config = read_model_config(readers[ref].path)
    if config:
        if cfg.slices is not None and planner.layers_out is not None:
            scope = config.get("text_config") if "text_config" in config else config
            old = layer_count(scope, [])
            for key in LAYER_COUNT_KEYS:
                if key in scope:
                    scope[key] = planner.layers_out
            types = scope.get("layer_types")
            if isinstance(types, list) and len(types) == old:
                scope["layer_types"] = [
                    read_model_config(readers[m].path).get("layer_types", types)[i]
                    for m, i in planner.layer_map
                ]
        if out_dtype is not None:
            for key in ("torch_dtype", "dtype"):
                if key in config or key == "dtype":
                    config[key] = dtype_name(out_dtype)
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = readers[ref].path / "generation_config.json"
    if gen.exists():
        shutil.copy2(gen, out_dir / gen.name)
    tok_dir = tokenizer_dir(cfg, readers)
    for file in TOKENIZER_FILES:
        if (tok_dir / file).exists():
            shutil.copy2(tok_dir / file, out_dir / file)


def tokenizer_dir(cfg: MergeConfig, readers: Mapping[str, ModelReader]) -> Path:
    """The folder the tokenizer files are copied from (``tokenizer_source``)."""
    source = cfg.tokenizer_source
    if source in (None, "base"):
        return readers[cfg.base_model or cfg.model_refs()[0]].path
    if source == "union":
        raise ConfigError("tokenizer_source: 'union' is not supported (use base or a model)")
    tok_dir = cfg.resolve_path(source)
    if not tok_dir.is_dir():
        raise ConfigError(f"tokenizer_source: {source!r} is not a model directory")
    return tok_dir


ProgressCallback = Callable[[int, int, str], None]


def merge(
    config: str | Path | Mapping[str, Any] | MergeConfig,
    out_dir: str | Path,
    *,
    seed: int = 0,
    shard_size: str | int = DEFAULT_SHARD_SIZE,
    device: str = "cpu",
    progress: bool | ProgressCallback = False,
    threads: int | None = 1,
    force: bool = False,
) -> MergeReport:
    """Run a mergekit-style configuration and write the merged model to ``out_dir``.

    ``out_dir`` must not be, contain or lie inside an input model; the model is written into a
    fresh folder next to it and moved into place at the end (see
    :mod:`~splice.models.merging.output`; ``force`` replaces the model files of a non-empty
    folder that no merge wrote). Tensors holding NaN or Inf (inputs or results) are warned
    about, by name, with :func:`warnings.warn` and in the report.

    ``progress``: True for a progress bar (one step per tensor), or a callback
    ``(done, total, tensor_name)``. ``threads``: torch's intra-op threads during the merge
    (None: leave torch's setting). Meanwhile one thread reads the next tensor's inputs and
    another writes the previous result.
    """
    start = time.perf_counter()
    cfg = parse_config(config)
    method = get_method(cfg.merge_method)
    notes = _check_method(cfg, method)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    work_dtype = parse_dtype(cfg.dtype, "dtype")
    out_dtype = parse_dtype(cfg.out_dtype, "out_dtype") or work_dtype
    dev = check_device(device)
    size = parse_size(shard_size)
    readers: dict[str, ModelReader] = {}
    try:
        for ref in cfg.model_refs():
            readers[ref] = ModelReader(cfg.resolve_path(ref))
        planner = Planner(cfg, method, readers)
        plans = planner.plan()
        inputs = [("model", reader.path) for reader in readers.values()]
        inputs.append(("tokenizer source", tokenizer_dir(cfg, readers)))
        out = Path(out_dir)
        specs = []
        for plan in plans:
            ref = plan.base if plan.base is not None else plan.sources[0]
            stored = readers[ref.model].infos[ref.tensor].dtype
            dtype = stored if plan.copy_only else (out_dtype or stored)
            specs.append(OutputSpec(plan.name, dtype, plan.shape))
        with staged_output(out, inputs, force) as stage:
            nonfinite = NonFiniteLog()
            shards = _run(plans, specs, method, readers, stage, size, work_dtype, dev, seed,
                          progress, threads, nonfinite)  # fmt: skip
            _write_metadata(cfg, planner, readers, stage, out_dtype)
    finally:
        for reader in readers.values():
            reader.close()
    found = nonfinite.lines([plan.name for plan in plans])
    for line in found:
        warnings.warn(line, stacklevel=2)
    return MergeReport(
        out, cfg.merge_method, len(plans), [out / shard.name for shard in shards],
        time.perf_counter() - start, planner.layers_out, [*notes, *found],
    )  # fmt: skip


def _run(
    plans: Sequence[TensorPlan],
    specs: Sequence[OutputSpec],
    method: MergeMethod,
    readers: dict[str, ModelReader],
    stage: Path,
    shard_size: int,
    work_dtype: torch.dtype | None,
    dev: torch.device,
    seed: int,
    progress: bool | ProgressCallback,
    threads: int | None,
    nonfinite: NonFiniteLog,
) -> list[Path]:
    """The merge loop: read (one tensor ahead), merge, write (one tensor behind) into
    ``stage``; returns the shard paths."""
    writer = ShardWriter(stage, specs, shard_size)
    callback = _progress(progress, len(plans))
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    pool = _BufferPool()
    try:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="splice-merge-read") as prefetch,
            ThreadPoolExecutor(1, thread_name_prefix="splice-merge-write") as background,
            workspace.active(),
        ):
            pending = (
                prefetch.submit(_read_inputs, plans[0], readers, pool, nonfinite) if plans else None
            )
            written: Future[None] | None = None
            for done, (plan, spec) in enumerate(zip(plans, specs, strict=True)):
                callback(done, len(plans), plan.name)
                assert pending is not None
                raw, buffers = pending.result()
                pending = (
                    prefetch.submit(_read_inputs, plans[done + 1], readers, pool, nonfinite)
                    if done + 1 < len(plans)
                    else None
                )
                result = _merge_one(plan, method, raw, work_dtype, dev, seed)
                del raw
                if written is not None:
                    written.result()  # one tensor being written at a time
                written = background.submit(
                    _write,
                    writer,
                    plan.name,
                    result.to("cpu", spec.dtype),
                    pool,
                    buffers,
                    nonfinite,
                )
                del result
            if written is not None:
                written.result()
        callback(len(plans), len(plans), "")
    finally:
        torch.set_num_threads(previous_threads)
        getattr(callback, "close", lambda: None)()
    return writer.finish()


class _BufferPool:
    """Byte buffers for the tensors read, by size, handed back once a tensor is written: the
    next tensor of that size is read into warm pages instead of freshly faulted ones."""

    def __init__(self) -> None:
        self._free: dict[int, list[torch.Tensor]] = {}
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> torch.Tensor:
        with self._lock:
            free = self._free.get(nbytes)
            if free:
                return free.pop()
        return torch.empty(nbytes, dtype=torch.uint8)

    def give(self, buffers: Sequence[torch.Tensor]) -> None:
        with self._lock:
            for buf in buffers:
                self._free.setdefault(buf.numel(), []).append(buf)


def _write(
    writer: ShardWriter,
    name: str,
    tensor: torch.Tensor,
    pool: _BufferPool,
    buffers: Sequence[torch.Tensor],
    nonfinite: NonFiniteLog,
) -> None:
    """Write one merged tensor (on the writer thread), then hand its input buffers back (the
    result may live in one of them). Its NaN/Inf values are counted first."""
    nonfinite.check(name, "the merged tensor", tensor)
    writer.write(name, tensor)
    del tensor
    pool.give(buffers)


def _read_inputs(
    plan: TensorPlan,
    readers: dict[str, ModelReader],
    pool: _BufferPool,
    nonfinite: NonFiniteLog,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The stored tensors ``plan`` needs (sources, then the base; or the one it copies) and
    the pool buffers holding them, their NaN/Inf values counted. Runs on the prefetch thread,
    one tensor ahead."""
    if plan.copy_only:
        sources = [plan.base or plan.sources[0]]
    else:
        sources = [*plan.sources, *([plan.base] if plan.base is not None else [])]
    tensors, buffers = [], []
    for src in sources:
        reader = readers[src.model]
        info = reader.info(src.tensor)
        buf = pool.take(info.nbytes) if reader.format == "safetensors" and info.nbytes else None
        tensors.append(reader.read(src.tensor, buf))
        nonfinite.check(plan.name, f"model {src.model}", tensors[-1])
        if buf is not None:
            buffers.append(buf)
    return tensors, buffers


def _merge_one(
    plan: TensorPlan,
    method: MergeMethod,
    raw: list[torch.Tensor],
    work_dtype: torch.dtype | None,
    device: torch.device,
    seed: int,
) -> torch.Tensor:
    """Merge one planned tensor from its stored inputs (see :func:`_read_inputs`)."""

    def prepare(tensor: torch.Tensor) -> torch.Tensor:
        if work_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(work_dtype)
        return tensor.to(device)

    if plan.copy_only:
        return prepare(raw[0])
    model_params, params = _resolve(plan, method)
    generator = torch.Generator(device=device)
    generator.manual_seed(tensor_seed(seed, plan.name))
    count = len(plan.sources)
    inputs = TensorInputs(
        tensors=[prepare(t) for t in raw[:count]],
        base=prepare(raw[count]) if plan.base is not None else None,
        model_params=model_params,
        params=params,
        generator=generator,
        name=plan.name,
        owned=True,
    )
    try:
        return method.merge_tensor(inputs)
    except (ValueError, RuntimeError, TypeError) as exc:  # TypeError: a parameter's type
        raise ValueError(f"tensor {plan.name}: {exc}") from exc


def _progress(progress: bool | ProgressCallback, total: int) -> ProgressCallback:
    if callable(progress):
        return progress
    if not progress:
        return lambda done, total, name: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]merging"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        transient=False,
    )
    bar.start()
    task = bar.add_task("", total=total)

    def update(done: int, total: int, name: str) -> None:
        bar.update(task, completed=done, description=name)

    update.close = bar.stop  # type: ignore[attr-defined]
    return update
