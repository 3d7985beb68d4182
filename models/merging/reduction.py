"""The configuration and method registry shared by ``merge-experts`` and ``merge-layers``.

Both take one model and make it smaller with calibration text::

    model: path/to/model              # a local Hugging Face causal LM folder with its tokenizer
    method: mc_smoe                   # a method of the family (experts or layers)
    num_experts: 4                    # experts per MoE layer to keep (num_layers: layers to keep)
    calibration: {path: DIR_OR_SHARD, tokens: 65536, seq_len: 512}
    parameters: {...}                 # the method's own, declared once on its class
    dtype: float32                    # of the written weights (default: the model's)

Unknown keys, unknown methods and unknown method parameters are refused by name. A method is a
subclass of :class:`ReductionMethod` registered in its family's :class:`Registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from splice.models.merging.calibration import DEFAULT_SEQ_LEN, DEFAULT_TOKENS, Calibration
from splice.models.merging.config import ConfigError, load_yaml

CALIBRATION_KEYS = {"path", "tokens", "seq_len"}
DTYPES = ("float32", "bfloat16", "float16")


class ReductionMethod:
    """One way of shrinking a model: a ``name`` and its ``parameters`` with their defaults."""

    name: ClassVar[str]
    #: Whether the method runs the model on calibration text.
    needs_calibration: ClassVar[bool] = True
    parameters: ClassVar[dict[str, Any]] = {}

    def __init__(self, **given: Any) -> None:
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            allowed = ", ".join(sorted(self.parameters)) or "none"
            raise ConfigError(
                f"parameters: unknown key {unknown[0]!r} for {self.name} (allowed: {allowed})"
            )
        self.params = {**self.parameters, **given}


M = TypeVar("M", bound=ReductionMethod)


class Registry(Generic[M]):
    """A family's methods by name."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.methods: dict[str, type[M]] = {}

    def register(self, cls: type[M]) -> type[M]:
        self.methods[cls.name] = cls
        return cls

    def get(self, name: str, **params: Any) -> M:
        if name not in self.methods:
            raise ConfigError(
                f"method: unknown {self.family} method {name!r} "
                f"(known: {', '.join(sorted(self.methods))})"
            )
        return self.methods[name](**params)


@dataclass
class ReductionConfig:
    """A parsed configuration: the model, the method, the target count and the calibration."""

    model: Path
    method: str
    target: int
    calibration: Calibration | None
    parameters: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None


def parse_reduction(
    source: str | Path | Mapping[str, Any], count_key: str, registry: Registry[Any]
) -> ReductionConfig:
    """Read and check a configuration whose target count is under ``count_key``."""
    from splice.models.merging.calibration import load_texts

    data, folder = load_yaml(source)
    allowed = {"model", "method", count_key, "calibration", "parameters", "dtype"}
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"configuration: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
            )
    for key in ("model", "method", count_key):
        if key not in data:
            raise ConfigError(f"configuration: missing {key!r}")
    model = data["model"]
    if not isinstance(model, str) or not model:
        raise ConfigError("model: expected a path to a local model folder")
    path = Path(model).expanduser()
    if not path.is_absolute() and folder is not None:
        path = folder / path
    if not (path / "config.json").is_file():
        raise ConfigError(f"model: {model} is not a model folder (no config.json)")
    target = data[count_key]
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ConfigError(f"{count_key}: expected a positive whole number, not {target!r}")
    params = data.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise ConfigError("parameters: expected a mapping")
    method = registry.get(str(data["method"]), **params)  # refuses unknown names and keys
    dtype = data.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    calibration = None
    given = data.get("calibration")
    if given is not None:
        if not isinstance(given, Mapping):
            raise ConfigError("calibration: expected a mapping with 'path'")
        for key in given:
            if key not in CALIBRATION_KEYS:
                raise ConfigError(
                    f"calibration: unknown key {key!r} "
                    f"(allowed: {', '.join(sorted(CALIBRATION_KEYS))})"
                )
        if "path" not in given:
            raise ConfigError("calibration: missing 'path'")
        source_path = Path(str(given["path"])).expanduser()
        if not source_path.is_absolute() and folder is not None:
            source_path = folder / source_path
        numbers = {"tokens": DEFAULT_TOKENS, "seq_len": DEFAULT_SEQ_LEN}
        for key in numbers:
            value = given.get(key, numbers[key])
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ConfigError(f"calibration.{key}: expected a whole number of at least 2")
            numbers[key] = value
        try:
            texts = load_texts(source_path)
        except (ValueError, OSError) as exc:
            raise ConfigError(str(exc)) from None
        calibration = Calibration(texts, numbers["tokens"], numbers["seq_len"])
    elif method.needs_calibration:
        raise ConfigError(f"calibration: {method.name} needs calibration text ('calibration.path')")
    return ReductionConfig(
        model=path,
        method=method.name,
        target=target,
        calibration=calibration,
        parameters=method.params,
        dtype=dtype,
    )


#: The report of a reduction, written beside the weights.
REPORT = "splice-reduction.json"


def write_reduced(
    model: Any,
    source: Path,
    out_dir: str | Path,
    report: Mapping[str, Any],
    *,
    dtype: str | None = None,
    shard_size: str = "2GB",
    force: bool = False,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Save the reduced ``model`` (``save_pretrained``, safetensors, ``dtype`` if given) with the
    tokenizer files of ``source`` and ``report`` as :data:`REPORT` into ``out_dir``, staged and
    moved into place (:mod:`~splice.models.merging.output`). ``extra``: more safetensors files,
    by name, of tensors."""
    import json
    import shutil

    import torch
    from splice.models.merging.output import TOKENIZER_FILES, staged_output

    with staged_output(out_dir, [("model", source)], force) as stage:
        if dtype is not None:
            model = model.to(getattr(torch, dtype))
        model.save_pretrained(stage, safe_serialization=True, max_shard_size=shard_size)
        for name in TOKENIZER_FILES:
            if (source / name).is_file() and not (source / name).is_symlink():
                shutil.copyfile(source / name, stage / name)
        if extra:
            from safetensors.torch import save_file

            for name, tensors in extra.items():
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(stage / name))
        (stage / REPORT).write_text(json.dumps(dict(report), indent=2) + "\n")
    return Path(out_dir).resolve()


def load_for(cfg: ReductionConfig, needs_calibration: bool, device: str = "cpu") -> tuple[Any, Any]:
    """The configuration's model (float32, eval mode, on ``device``) and its calibration chunks
    ``(n, seq)`` (None when the method does not run the model)."""
    from splice.models.merging.calibration import load_causal_lm, model_chunks

    model, tokenizer = load_causal_lm(cfg.model, device)
    if not needs_calibration:
        return model, None
    if cfg.calibration is None:
        raise ConfigError("calibration: this method needs calibration text ('calibration.path')")
    return model, model_chunks(model, tokenizer, cfg.calibration)


def publish(
    model: Any,
    cfg: ReductionConfig,
    out_dir: str | Path,
    report: Any,
    started: float,
    *,
    shard_size: str = "2GB",
    force: bool = False,
) -> None:
    """Write the reduced ``model`` with ``report`` (a dataclass with ``out_dir`` and ``seconds``,
    both filled in here: the folder as the writer resolves it, the time since ``started``)."""
    import time
    from dataclasses import asdict

    report.out_dir = str(Path(out_dir).expanduser().resolve())
    report.seconds = time.monotonic() - started
    write_reduced(
        model, cfg.model, out_dir, asdict(report), dtype=cfg.dtype, shard_size=shard_size,
        force=force,
    )  # fmt: skip
    report.seconds = time.monotonic() - started
