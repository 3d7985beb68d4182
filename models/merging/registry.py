"""The registry of merge methods by name, and the base class every method derives from.

A method is a small class: its name, the parameters it reads (per model and global, with
defaults) and ``merge_tensor``, which merges one tensor from plain ``torch`` tensors. The
streaming driver (:mod:`splice.models.merging.engine`) resolves the parameters of each tensor
(scalars, per-layer gradients, filters) and calls it; nothing in a method knows about files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

#: Every registered method, by its mergekit name.
REGISTRY: dict[str, type[MergeMethod]] = {}


@dataclass
class TensorInputs:
    """What one tensor's merge receives: the models' tensors, the base tensor and parameters.

    ``model_params[i]`` holds the resolved per-model parameters of ``tensors[i]``; ``params``
    the resolved global ones; ``generator`` seeds the random methods (one per tensor, so a
    tensor's result does not depend on the order tensors are merged in). ``owned``: the
    tensors (and base) were read for this merge alone, so the method may overwrite them.
    """

    tensors: list[torch.Tensor]
    base: torch.Tensor | None = None
    model_params: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    generator: torch.Generator | None = None
    name: str = ""
    owned: bool = False


class MergeMethod:
    """Base class: subclasses set ``name``, the parameter tables and ``merge_tensor``."""

    name: ClassVar[str] = ""
    #: Per-model parameters (``models[i].parameters``) and their defaults.
    model_params: ClassVar[Mapping[str, Any]] = {}
    #: Global parameters (top-level ``parameters``) and their defaults.
    global_params: ClassVar[Mapping[str, Any]] = {}
    #: ``True``: needs ``base_model``; ``False``: must not have one; ``None``: optional.
    requires_base: ClassVar[bool | None] = None
    #: Bounds on the number of models besides the base (``None``: unbounded).
    min_models: ClassVar[int] = 1
    max_models: ClassVar[int | None] = None
    #: Whether the base model's own entry in ``models`` is dropped (task-vector methods).
    drop_base_from_models: ClassVar[bool] = False

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        """Merge one tensor; the result has the shape of the inputs."""
        raise NotImplementedError

    @classmethod
    def describe(cls) -> str:
        """One line: the first line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else cls.name


def register(cls: type[MergeMethod]) -> type[MergeMethod]:
    """Class decorator: add ``cls`` to :data:`REGISTRY` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"merge method {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> MergeMethod:
    """An instance of the method registered as ``name``; a ValueError lists the known ones."""
    _load_builtin_methods()
    try:
        return REGISTRY[name]()
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"merge_method: unknown method {name!r} (known: {known})") from None


def method_names() -> list[str]:
    """The names of all registered methods, sorted."""
    _load_builtin_methods()
    return sorted(REGISTRY)


def all_parameter_names() -> set[str]:
    """Every parameter name some registered method reads (to tell unused from unknown)."""
    _load_builtin_methods()
    names: set[str] = set()
    for cls in REGISTRY.values():
        names.update(cls.model_params)
        names.update(cls.global_params)
    return names


def _load_builtin_methods() -> None:
    from splice.models.merging import methods  # noqa: F401  (registers on import)


def base_and_other(inputs: TensorInputs, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The base tensor and the one other model's, for the two-model methods (ValueError
    otherwise)."""
    if inputs.base is None or len(inputs.tensors) != 1:
        raise ValueError(f"{method} needs a base model and exactly one other model")
    return inputs.base, inputs.tensors[0]


def required_param(inputs: TensorInputs, key: str, method: str) -> Any:
    """The global parameter ``key``, which has no default (ValueError when absent)."""
    value = inputs.params.get(key)
    if value is None:
        raise ValueError(f"{method}: parameter {key!r} is required")
    return value


def weights_of(inputs: TensorInputs, key: str = "weight") -> list[float]:
    """The per-model parameter ``key`` of every input tensor, as floats."""
    return [float(p[key]) for p in inputs.model_params]


def per_model(inputs: TensorInputs, key: str) -> list[Any]:
    """The per-model parameter ``key`` of every input tensor."""
    return [p[key] for p in inputs.model_params]


def check_same_shapes(tensors: Sequence[torch.Tensor], what: str = "tensors") -> None:
    """Raise ValueError unless all ``tensors`` have one shape."""
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"{what} have different shapes: {sorted(shapes)}")


MethodFactory = Callable[[], MergeMethod]
