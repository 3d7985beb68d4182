"""mergekit-compatible merge configurations: parsing, validation and parameter resolution.

A configuration is mergekit's YAML (``merge_method``, ``models`` or ``slices``, ``base_model``,
``parameters``, ``dtype``, ``out_dtype``, ``tokenizer_source``). Parameter values are scalars,
gradients (a list of numbers, interpolated over the layers with ``t = layer / (layers - 1)``;
tensors outside the layers take the first value) or filter lists (``[{filter: self_attn,
value: ...}, {value: ...}]``: the first entry whose filter is a substring of the tensor name,
or that has no filter, applies). Unknown keys are refused with a message naming them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TOP_KEYS = {
    "merge_method",
    "models",
    "slices",
    "base_model",
    "parameters",
    "dtype",
    "out_dtype",
    "tokenizer_source",
    "name",
}
UNSUPPORTED_KEYS = {
    "tokenizer": "use tokenizer_source (base or a model path)",
    "chat_template": "copy the chat template with the tokenizer files instead",
    "modules": "modular (multi-module) merges are not supported",
    "architecture": "architectures are read from the models' config.json",
}
MODEL_KEYS = {"model", "parameters"}
SOURCE_KEYS = {"model", "layer_range", "parameters"}
SLICE_KEYS = {"sources", "parameters"}
FILTER_KEYS = {"filter", "value"}


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the offending key."""


@dataclass
class ModelEntry:
    """One entry of ``models`` (or a slice source: then ``layer_range`` is set)."""

    model: str
    parameters: dict[str, Any] = field(default_factory=dict)
    layer_range: tuple[int, int] | None = None


@dataclass
class SliceEntry:
    """One entry of ``slices``."""

    sources: list[ModelEntry]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class MergeConfig:
    """A validated configuration (model references are still as written)."""

    merge_method: str
    models: list[ModelEntry] | None = None
    slices: list[SliceEntry] | None = None
    base_model: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    source_dir: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def model_refs(self) -> list[str]:
        """Every model reference, base first, without repeats."""
        refs: list[str] = [self.base_model] if self.base_model else []
        entries = self.models or [s for sl in self.slices or [] for s in sl.sources]
        for entry in entries:
            if entry.model not in refs:
                refs.append(entry.model)
        return refs

    def resolve_path(self, ref: str) -> Path:
        """A model reference as a local directory (cwd first, then the config's folder)."""
        path = Path(ref).expanduser()
        if not path.is_absolute() and not path.exists() and self.source_dir is not None:
            candidate = self.source_dir / path
            if candidate.exists():
                return candidate
        return path


def load_yaml(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """The configuration as a dict (from a path, YAML text or a dict) and its folder."""
    if isinstance(source, Mapping):
        return dict(source), None
    import yaml

    path = Path(source)
    is_file = "\n" not in str(source) and path.exists()
    where = str(path) if is_file else "configuration"
    try:
        text = path.read_text() if is_file else str(source)
        data = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {_yaml_problem(exc)}") from None
    folder: Path | None = path.resolve().parent if is_file else None
    if not isinstance(data, dict):
        raise ConfigError("configuration: expected a mapping at the top level")
    return data, folder


def _yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: what, and where (line and column, from 1)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return problem


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in data:
        if key in allowed:
            continue
        hint = UNSUPPORTED_KEYS.get(key) if where == "configuration" else None
        detail = f" ({hint})" if hint else f" (allowed: {', '.join(sorted(allowed))})"
        raise ConfigError(f"{where}: unknown or unsupported key {key!r}{detail}")


def _model_ref(value: Any, where: str) -> str:
    if isinstance(value, Mapping):
        if set(value) - {"model"}:
            raise ConfigError(f"{where}: only 'model' is supported in a model reference")
        value = value.get("model")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a model path")
    if "+" in value and not Path(value).exists():
        raise ConfigError(f"{where}: 'model+lora' references are not supported ({value!r})")
    return value


def _check_value(value: Any, where: str, allow_filters: bool = True) -> None:
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            if not allow_filters:
                raise ConfigError(f"{where}: filter lists cannot be nested")
            for i, entry in enumerate(value):
                _check_keys(entry, FILTER_KEYS, f"{where}[{i}]")
                if "value" not in entry:
                    raise ConfigError(f"{where}[{i}]: missing 'value'")
                _check_value(entry["value"], f"{where}[{i}].value", allow_filters=False)
            return
        if value and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return
    raise ConfigError(f"{where}: expected a number, a gradient list or a filter list")


def _params(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of parameters")
    for key, item in value.items():
        _check_value(item, f"{where}.{key}")
    return dict(value)


def parse_config(source: str | Path | Mapping[str, Any] | MergeConfig) -> MergeConfig:
    """Parse and validate a configuration (structure only; methods check their parameters)."""
    if isinstance(source, MergeConfig):
        return source
    data, folder = load_yaml(source)
    _check_keys(data, TOP_KEYS, "configuration")
    method = data.get("merge_method")
    if not isinstance(method, str):
        raise ConfigError("merge_method: required (e.g. linear, ties, slerp)")
    if ("models" in data) == ("slices" in data):
        raise ConfigError("models / slices: give exactly one of the two")
    cfg = MergeConfig(merge_method=method, source_dir=folder, raw=data)
    if data.get("base_model") is not None:
        cfg.base_model = _model_ref(data["base_model"], "base_model")
    cfg.parameters = _params(data.get("parameters"), "parameters")
    for key in ("dtype", "out_dtype", "tokenizer_source"):
        if data.get(key) is not None:
            if not isinstance(data[key], str):
                raise ConfigError(f"{key}: expected a string")
            setattr(cfg, key, data[key])
    if "models" in data:
        if not isinstance(data["models"], list) or not data["models"]:
            raise ConfigError("models: expected a non-empty list")
        cfg.models = []
        for i, entry in enumerate(data["models"]):
            where = f"models[{i}]"
            if isinstance(entry, str):
                entry = {"model": entry}
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{where}: expected a mapping with 'model'")
            _check_keys(entry, MODEL_KEYS, where)
            cfg.models.append(
                ModelEntry(
                    _model_ref(entry.get("model"), f"{where}.model"),
                    _params(entry.get("parameters"), f"{where}.parameters"),
                )
            )
    else:
        if not isinstance(data["slices"], list) or not data["slices"]:
            raise ConfigError("slices: expected a non-empty list")
        cfg.slices = []
        for i, slice_ in enumerate(data["slices"]):
            where = f"slices[{i}]"
            if not isinstance(slice_, Mapping):
                raise ConfigError(f"{where}: expected a mapping with 'sources'")
            _check_keys(slice_, SLICE_KEYS, where)
            sources = slice_.get("sources")
            if not isinstance(sources, list) or not sources:
                raise ConfigError(f"{where}.sources: expected a non-empty list")
            entries = []
            for j, src in enumerate(sources):
                swhere = f"{where}.sources[{j}]"
                if not isinstance(src, Mapping):
                    raise ConfigError(f"{swhere}: expected a mapping with 'model'")
                _check_keys(src, SOURCE_KEYS, swhere)
                lr = src.get("layer_range")
                if (
                    not isinstance(lr, list)
                    or len(lr) != 2
                    or not all(isinstance(x, int) for x in lr)
                    or not 0 <= lr[0] < lr[1]
                ):
                    raise ConfigError(f"{swhere}.layer_range: expected [start, end), start < end")
                entries.append(
                    ModelEntry(
                        _model_ref(src.get("model"), f"{swhere}.model"),
                        _params(src.get("parameters"), f"{swhere}.parameters"),
                        (lr[0], lr[1]),
                    )
                )
            lengths = {e.layer_range[1] - e.layer_range[0] for e in entries if e.layer_range}
            if len(lengths) > 1:
                raise ConfigError(f"{where}.sources: layer ranges of different lengths")
            cfg.slices.append(SliceEntry(entries, _params(slice_.get("parameters"), where)))
    return cfg


def gradient_value(values: Sequence[float], t: float | None) -> float:
    """A gradient at ``t`` (piecewise linear over evenly spaced anchors); ``t=None`` -> first."""
    if len(values) == 1 or t is None:
        return float(values[0])
    anchors = np.linspace(0.0, 1.0, len(values))
    return float(np.interp(t, anchors, np.asarray(values, dtype=np.float64)))


_MISSING = object()


def resolve_value(value: Any, tensor_name: str, t: float | None) -> Any:
    """One parameter value for one tensor; ``_MISSING`` when no filter entry applies."""
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        for entry in value:
            pattern = entry.get("filter")
            if pattern is None or str(pattern) in tensor_name:
                return resolve_value(entry["value"], tensor_name, t)
        return _MISSING
    if isinstance(value, list):
        return gradient_value(value, t)
    return value


def lookup(
    key: str,
    chain: Sequence[Mapping[str, Any]],
    default: Any,
    tensor_name: str,
    t: float | None,
) -> Any:
    """The first value of ``key`` along ``chain`` (most specific first) that applies."""
    for params in chain:
        if key in params:
            value = resolve_value(params[key], tensor_name, t)
            if value is not _MISSING:
                return value
    return default
