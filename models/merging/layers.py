"""Merging or dropping a causal LM's decoder layers: fewer layers, same architecture.

``splice merge-layers CONFIG.yaml OUT_DIR`` (:func:`merge_layers`) reads a local Hugging Face
causal LM whose decoder layers are ``model.model.layers``, reduces them to ``num_layers`` with the
configured method and writes a model that transformers loads with that many layers
(:func:`~splice.models.merging.reduction.write_reduced`). :func:`reduce_layers` does the same on
a model already in memory.

A merge of layers is a weighted sum of their parameters (same names, float64, back to the
layer's dtype) written into the earliest of them; the others are removed. After every change the
model is made whole again (:class:`LayerStack`): ``config.num_hidden_layers``, every ``layer_idx``
renumbered, per-layer configuration lists (``layer_types``, ...) shortened.

Methods (one class each, parameters declared once):

* ``shortgpt`` (ShortGPT): drop the layers of lowest Block Influence, ``1 - mean cos(in, out)``.
* ``laco`` (LaCo): collapse ``C`` consecutive layers into ``θ_l + Σ (θ_{l+k} - θ_l)`` when the
  final hidden states stay cosine-similar, greedily from the back.
* ``average``: 0.5 / 0.5 averages of adjacent pairs from the back; no calibration.
* ``mka`` (MKA): merge the adjacent pair whose diffusion-map embeddings of their outputs share
  the most information (matrix-based, ``I(A;B) / sqrt(I(A;A) I(B;B))``: our reading of the
  paper's normalized pairwise information), weighted by that similarity; repeat.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from splice.models.merging.config import ConfigError
from splice.models.merging.reduction import ReductionConfig, ReductionMethod, Registry

#: Chunks of calibration text per forward pass.
BATCH = 4
#: Configuration lists with one entry per layer (shortened to the kept layers).
PER_LAYER_LISTS = ("layer_types", "no_rope_layers")
#: Configuration lists of layer indices (renumbered to the kept layers).
INDEX_LISTS = ("mlp_only_layers",)
#: Information below this counts as none (a constant layer output).
TINY = 1e-9

LAYER_METHODS: Registry[LayerMethod] = Registry("layer")


# --- the steps and the report --------------------------------------------------------------------


@dataclass
class LayerStep:
    """One change: ``merge`` (the layers at ``positions`` into the first, with ``weights``) or
    ``drop``; ``positions`` index the model right before the step, ``sources`` are the original
    layers each of them held, ``score`` the method's reason (similarity, Block Influence)."""

    action: str
    positions: list[int]
    sources: list[list[int]]
    weights: list[float] | None = None
    score: float | None = None


@dataclass
class LayerReport:
    """What :func:`merge_layers` did."""

    method: str
    layers_before: int
    layers_after: int
    parameters_before: int
    parameters_after: int
    steps: list[LayerStep] = field(default_factory=list)
    #: For each layer of the result, the original layers merged into it.
    sources: list[list[int]] = field(default_factory=list)
    calibration_tokens: int = 0
    seconds: float = 0.0
    out_dir: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


# --- model surgery -------------------------------------------------------------------------------


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """``model.model.layers``, or a ``ValueError`` naming what is missing."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError("merge-layers: the model has no model.model.layers (a ModuleList)")
    return layers


def combine(layers: list[torch.nn.Module], weights: list[float]) -> torch.nn.Module:
    """A copy of ``layers[0]`` holding ``Σ weights[i] * layers[i]`` of every floating-point
    parameter and buffer (computed in float64); other tensors are the first layer's."""
    states = [layer.state_dict() for layer in layers]
    first = states[0]
    for state in states[1:]:
        if state.keys() != first.keys() or any(state[k].shape != first[k].shape for k in first):
            raise ValueError(
                "merge-layers: the layers to merge differ in parameter names or shapes"
            )
    merged = {}
    for name, tensor in first.items():
        if not tensor.is_floating_point():
            merged[name] = tensor.clone()
            continue
        total = torch.zeros_like(tensor, dtype=torch.float64)
        for weight, state in zip(weights, states, strict=True):
            total.add_(state[name].to(torch.float64), alpha=float(weight))
        merged[name] = total.to(tensor.dtype)
    out = copy.deepcopy(layers[0])
    out.load_state_dict(merged)
    return out


class LayerStack:
    """The decoder layers of a model being reduced: merges and drops, each recorded as a
    :class:`LayerStep` and installed at once (ModuleList, configuration, ``layer_idx``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.layers: list[torch.nn.Module] = list(decoder_layers(model))
        self.sources: list[list[int]] = [[i] for i in range(len(self.layers))]
        self.steps: list[LayerStep] = []
        count = len(self.layers)
        self._configs = [model.config]
        inner = getattr(model.model, "config", None)
        if inner is not None and inner is not model.config:
            self._configs.append(inner)
        self._per_layer: dict[str, list[Any]] = {}
        self._indices: dict[str, set[int]] = {}
        for key in PER_LAYER_LISTS:
            value = getattr(model.config, key, None)
            if isinstance(value, list | tuple) and len(value) == count:
                self._per_layer[key] = list(value)
        for key in INDEX_LISTS:
            value = getattr(model.config, key, None)
            if isinstance(value, list | tuple) and all(isinstance(i, int) for i in value):
                self._indices[key] = set(value)

    def __len__(self) -> int:
        return len(self.layers)

    def install(
        self, layers: list[torch.nn.Module] | None = None, origins: list[int] | None = None
    ) -> None:
        """Make the model hold ``layers`` (default: the stack's), each configured as the
        original layer in ``origins`` (default: the first of its sources)."""
        layers = self.layers if layers is None else layers
        origins = [s[0] for s in self.sources] if origins is None else origins
        self.model.model.layers = torch.nn.ModuleList(layers)
        for config in self._configs:
            config.num_hidden_layers = len(layers)
            for key, values in self._per_layer.items():
                setattr(config, key, [values[o] for o in origins])
            for key, indices in self._indices.items():
                setattr(config, key, [i for i, o in enumerate(origins) if o in indices])
        for index, layer in enumerate(layers):
            for module in layer.modules():
                if isinstance(getattr(module, "layer_idx", None), int):
                    module.layer_idx = index

    def _merged(self, start: int, weights: list[float]) -> tuple[list[torch.nn.Module], list[int]]:
        end = start + len(weights)
        merged = combine(self.layers[start:end], weights)
        layers = [*self.layers[:start], merged, *self.layers[end:]]
        origins = [s[0] for s in self.sources]
        return layers, [*origins[: start + 1], *origins[end:]]

    @contextmanager
    def trial(self, start: int, weights: list[float]) -> Iterator[torch.nn.Module]:
        """The model with the layers from ``start`` merged (as :meth:`merge`), for a measurement;
        the stack's own layers are installed again afterwards."""
        layers, origins = self._merged(start, weights)
        self.install(layers, origins)
        try:
            yield self.model
        finally:
            self.install()

    def merge(self, start: int, weights: list[float], score: float | None = None) -> None:
        """Merge ``len(weights)`` layers from ``start`` into the one at ``start``."""
        end = start + len(weights)
        self.steps.append(
            LayerStep(
                "merge",
                list(range(start, end)),
                [list(s) for s in self.sources[start:end]],
                [float(w) for w in weights],
                None if score is None else float(score),
            )
        )
        self.layers, _ = self._merged(start, weights)
        self.sources[start:end] = [sorted(i for s in self.sources[start:end] for i in s)]
        self.install()

    def drop(self, position: int, score: float | None = None) -> None:
        """Remove the layer at ``position``."""
        self.steps.append(
            LayerStep(
                "drop",
                [position],
                [list(self.sources[position])],
                score=None if score is None else float(score),
            )
        )
        del self.layers[position], self.sources[position]
        self.install()


# --- running the model ---------------------------------------------------------------------------


def _hidden(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple | list) else output


def _forward(model: torch.nn.Module, chunks: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """Run the decoder over ``chunks (n, seq)`` in batches: ``(first flat token, last hidden)``."""
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(chunks), BATCH):
            ids = chunks[start : start + BATCH].to(device)
            out = model.model(input_ids=ids, use_cache=False)
            yield start * chunks.shape[1], out.last_hidden_state


def token_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The cosine similarity of each token's vectors (last dimension), float64, flattened;
    a zero vector has similarity 0."""
    a = a.reshape(-1, a.shape[-1]).to(torch.float64)
    b = b.reshape(-1, b.shape[-1]).to(torch.float64)
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)


def block_influence(h_in: torch.Tensor, h_out: torch.Tensor) -> float:
    """ShortGPT's Block Influence of a layer: ``1 - mean over tokens of cos(h_in, h_out)``."""
    return 1.0 - float(token_cosines(h_in, h_out).mean())


def block_influences(model: torch.nn.Module, chunks: torch.Tensor) -> list[float]:
    """:func:`block_influence` of every decoder layer over the calibration tokens (each layer's
    input and raw output, captured by hooks)."""
    layers = decoder_layers(model)
    sums = [0.0] * len(layers)

    def hook_for(index: int):
        def hook(_m: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            sums[index] += float(token_cosines(_hidden(args, kwargs), _output(output)).sum())

        return hook

    hooks = [
        layer.register_forward_hook(hook_for(i), with_kwargs=True) for i, layer in enumerate(layers)
    ]
    try:
        for _ in _forward(model, chunks):
            pass
    finally:
        for h in hooks:
            h.remove()
    return [1.0 - s / chunks.numel() for s in sums]


def final_hidden(model: torch.nn.Module, chunks: torch.Tensor) -> list[torch.Tensor]:
    """The decoder's last hidden state (after its final norm) on each batch, on the CPU."""
    return [hidden.float().cpu() for _, hidden in _forward(model, chunks)]


def sample_positions(tokens: int, samples: int, seed: int) -> torch.Tensor:
    """``min(samples, tokens)`` distinct flat token positions, chosen with ``seed``, sorted."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(tokens, generator=gen)[:samples].sort().values


def layer_outputs(
    model: torch.nn.Module, chunks: torch.Tensor, positions: torch.Tensor
) -> list[torch.Tensor]:
    """Each decoder layer's raw output at the flat token ``positions``: ``(positions, hidden)``."""
    layers = decoder_layers(model)
    rows: list[list[torch.Tensor]] = [[] for _ in layers]
    picked = {"rows": positions}

    def hook_for(index: int):
        def hook(_m: torch.nn.Module, _args: tuple, output: Any) -> None:
            out = _output(output)
            rows[index].append(out.reshape(-1, out.shape[-1])[picked["rows"]].float().cpu())

        return hook

    hooks = [layer.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    per_batch = BATCH * chunks.shape[1]
    try:
        for start in range(0, chunks.numel(), per_batch):
            inside = positions[(positions >= start) & (positions < start + per_batch)]
            picked["rows"] = (inside - start).to(next(model.parameters()).device)
            batch = chunks[start // chunks.shape[1] : (start + per_batch) // chunks.shape[1]]
            for _ in _forward(model, batch):
                pass
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(r) for r in rows]


# --- MKA's similarity ----------------------------------------------------------------------------


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances of the rows of ``x``, float64, ``>= 0``."""
    x = x.to(torch.float64)
    norms = (x * x).sum(1)
    d2 = norms[:, None] + norms[None, :] - 2.0 * (x @ x.T)
    d2.fill_diagonal_(0.0)
    return d2.clamp_min_(0.0)


def median_bandwidth(d2: torch.Tensor) -> float:
    """The median of the distinct pairs' squared distances (the mean of the positive ones when
    that is 0; 0 when all points coincide)."""
    n = d2.shape[0]
    if n < 2:
        return 0.0
    i, j = torch.triu_indices(n, n, 1)
    pairs = d2[i, j]
    median = float(pairs.median())
    if median > 0:
        return median
    positive = pairs[pairs > 0]
    return float(positive.mean()) if len(positive) else 0.0


def gaussian_gram(x: torch.Tensor) -> torch.Tensor:
    """``exp(-d² / b)`` of the rows of ``x`` (``b``: :func:`median_bandwidth`; all ones when
    the points coincide)."""
    d2 = squared_distances(x)
    bandwidth = median_bandwidth(d2)
    if bandwidth <= 0:
        return torch.ones_like(d2)
    return torch.exp(-d2 / bandwidth)


def diffusion_embedding(x: torch.Tensor, components: int) -> torch.Tensor:
    """The diffusion map of the rows of ``x`` at time 1: Gaussian kernel (median bandwidth)
    normalized by rows into a Markov matrix ``P``; its right eigenvectors after the constant one,
    scaled by their eigenvalues, the ``min(components, n - 1)`` largest: ``(n, components)``,
    float64. Coinciding points give zeros."""
    n = x.shape[0]
    k = max(0, min(components, n - 1))
    d2 = squared_distances(x)
    bandwidth = median_bandwidth(d2)
    if bandwidth <= 0 or k == 0:
        return torch.zeros(n, k, dtype=torch.float64)
    kernel = torch.exp(-d2 / bandwidth)
    degree = kernel.sum(1)
    root = degree.sqrt()
    # P = D^-1 K is similar to the symmetric D^-1/2 K D^-1/2: same eigenvalues, and its right
    # eigenvectors are D^-1/2 times the symmetric one's (scaled so the trivial one is all ones).
    values, vectors = torch.linalg.eigh(kernel / (root[:, None] * root[None, :]))
    values, vectors = values.flip(0), vectors.flip(1)
    right = vectors / root[:, None] * degree.sum().sqrt()
    return right[:, 1 : k + 1] * values[1 : k + 1]


def matrix_entropy(gram: torch.Tensor) -> float:
    """Von Neumann (Rényi α=1) entropy of a PSD matrix normalized to unit trace, in nats."""
    gram = gram.to(torch.float64)
    values = torch.linalg.eigvalsh(gram / gram.trace()).clamp_min(0.0)
    values = values[values > 0]
    return float(-(values * values.log()).sum())


def mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """Matrix-based mutual information of two Gram matrices: ``H(A) + H(B) - H(A∘B)``."""
    return matrix_entropy(a) + matrix_entropy(b) - matrix_entropy(a * b)


def _normalized(i_ab: float, i_aa: float, i_bb: float) -> float:
    if i_aa <= TINY and i_bb <= TINY:
        return 1.0  # two constant outputs carry the same (no) information
    if i_aa <= TINY or i_bb <= TINY:
        return 0.0
    return min(1.0, max(0.0, i_ab / math.sqrt(i_aa * i_bb)))


def mka_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """The normalized information two embeddings ``(n, k)`` share, in ``[0, 1]``:
    ``I(A;B) / sqrt(I(A;A) I(B;B))`` of their :func:`gaussian_gram` matrices (1 for identical
    embeddings; near 0 for independent ones)."""
    ga, gb = gaussian_gram(a), gaussian_gram(b)
    return _normalized(
        mutual_information(ga, gb), mutual_information(ga, ga), mutual_information(gb, gb)
    )


def adjacent_similarities(embeddings: list[torch.Tensor]) -> list[float]:
    """:func:`mka_similarity` of each adjacent pair ``(l, l + 1)``."""
    grams = [gaussian_gram(e) for e in embeddings]
    selves = [mutual_information(g, g) for g in grams]
    return [
        _normalized(mutual_information(grams[i], grams[i + 1]), selves[i], selves[i + 1])
        for i in range(len(grams) - 1)
    ]


# --- the methods ---------------------------------------------------------------------------------


class LayerMethod(ReductionMethod):
    """Reduces a :class:`LayerStack` to ``target`` layers (calibration ``chunks (n, seq)``)."""

    def reduce(self, stack: LayerStack, chunks: torch.Tensor | None, target: int) -> None:
        raise NotImplementedError

    def _whole(self, key: str, least: int) -> int:
        value = self.params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"parameters.{key}: expected a whole number of at least {least}")
        return value


@LAYER_METHODS.register
class ShortGPT(LayerMethod):
    """Drop the layers of lowest Block Influence (computed once on the input model)."""

    name = "shortgpt"

    def reduce(self, stack: LayerStack, chunks: torch.Tensor | None, target: int) -> None:
        assert chunks is not None
        scores = block_influences(stack.model, chunks)
        # Lowest first; on equal scores the later layer goes first.
        order = sorted(range(len(scores)), key=lambda i: (scores[i], -i))
        for original in order[: len(stack) - target]:
            position = next(p for p, s in enumerate(stack.sources) if s == [original])
            stack.drop(position, scores[original])


def laco_weights(size: int) -> list[float]:
    """LaCo's ``θ_l + Σ_{k=1}^{C-1} (θ_{l+k} - θ_l)`` as weights of ``θ_l .. θ_{l+C-1}``."""
    return [2.0 - size] + [1.0] * (size - 1)


@LAYER_METHODS.register
class LaCo(LayerMethod):
    """Collapse runs of ``layers_per_merge`` layers, greedily from the back, while the final
    hidden states stay cosine-similar to the current model's."""

    name = "laco"
    parameters = {"layers_per_merge": 4, "threshold": 0.65, "interval": 2}

    def __init__(self, **given: Any) -> None:
        super().__init__(**given)
        self._whole("layers_per_merge", 2)
        self._whole("interval", 1)
        threshold = self.params["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ConfigError("parameters.threshold: expected a number (a cosine similarity)")

    def reduce(self, stack: LayerStack, chunks: torch.Tensor | None, target: int) -> None:
        assert chunks is not None
        size_max = int(self.params["layers_per_merge"])
        interval = int(self.params["interval"])
        threshold = float(self.params["threshold"])
        while len(stack) > target:
            reference = final_hidden(stack.model, chunks)
            best: tuple[float, int, int] | None = None
            accepted = False
            position = len(stack) - min(size_max, len(stack) - target + 1)
            while position >= 0 and len(stack) > target:
                size = min(size_max, len(stack) - target + 1)
                position = min(position, len(stack) - size)
                weights = laco_weights(size)
                with stack.trial(position, weights) as trial:
                    merged = final_hidden(trial, chunks)
                score = _mean_cosine(merged, reference)
                if best is None or score > best[0]:
                    best = (score, position, size)
                if score >= threshold:
                    stack.merge(position, weights, score)
                    accepted = True
                    reference = final_hidden(stack.model, chunks)
                    position -= interval
                else:
                    position -= 1
            if not accepted and best is not None:
                score, position, size = best
                stack.merge(position, laco_weights(size), score)


def _mean_cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    total = sum(float(token_cosines(x, y).sum()) for x, y in zip(a, b, strict=True))
    return total / sum(x.shape[0] * x.shape[1] for x in a)


@LAYER_METHODS.register
class Average(LayerMethod):
    """Average adjacent pairs from the back, ``(L-2, L-1), (L-4, L-3), ...``, 0.5 / 0.5."""

    name = "average"
    needs_calibration = False

    def reduce(self, stack: LayerStack, chunks: torch.Tensor | None, target: int) -> None:
        while len(stack) > target:
            position = len(stack) - 2
            while position >= 0 and len(stack) > target:
                stack.merge(position, [0.5, 0.5])
                position -= 2


@LAYER_METHODS.register
class MKA(LayerMethod):
    """Merge the most similar adjacent pair (manifold embeddings of the layers' outputs,
    normalized matrix-based information), weighted ``1/(1+S)`` and ``S/(1+S)``; repeat."""

    name = "mka"
    parameters = {"samples": 512, "components": 8, "seed": 0}

    def __init__(self, **given: Any) -> None:
        super().__init__(**given)
        self._whole("samples", 3)
        self._whole("components", 1)
        self._whole("seed", 0)

    def reduce(self, stack: LayerStack, chunks: torch.Tensor | None, target: int) -> None:
        assert chunks is not None
        positions = sample_positions(
            chunks.numel(), int(self.params["samples"]), int(self.params["seed"])
        )
        components = int(self.params["components"])
        while len(stack) > target:
            outputs = layer_outputs(stack.model, chunks, positions)
            embeddings = [diffusion_embedding(o, components) for o in outputs]
            scores = adjacent_similarities(embeddings)
            best = max(range(len(scores)), key=lambda i: (scores[i], i))  # ties: the back-most
            s = scores[best]
            stack.merge(best, [1.0 / (1.0 + s), s / (1.0 + s)], s)


# --- entry points --------------------------------------------------------------------------------


def reduce_layers(
    model: torch.nn.Module,
    chunks: torch.Tensor | None,
    method: LayerMethod | str,
    target: int,
) -> tuple[torch.nn.Module, list[LayerStep]]:
    """Reduce ``model``'s decoder layers to ``target`` in place with ``method`` (an instance or
    a name with default parameters); ``chunks (n, seq)``: calibration token ids."""
    if isinstance(method, str):
        method = LAYER_METHODS.get(method)
    count = len(decoder_layers(model))
    if not 1 <= target < count:
        raise ValueError(
            f"num_layers: expected 1 to {count - 1} (the model has {count}), not {target}"
        )
    if method.needs_calibration and chunks is None:
        raise ValueError(f"{method.name}: needs calibration chunks")
    was_training = model.training
    model.eval()
    stack = LayerStack(model)
    with torch.no_grad():
        method.reduce(stack, chunks, target)
    model.train(was_training)
    return model, stack.steps


def sources_after(count: int, steps: list[LayerStep]) -> list[list[int]]:
    """For each layer left after ``steps`` on ``count`` layers, the original layers in it."""
    sources = [[i] for i in range(count)]
    for step in steps:
        start, end = step.positions[0], step.positions[-1] + 1
        group = sorted(i for s in sources[start:end] for i in s)
        sources[start:end] = [] if step.action == "drop" else [group]
    return sources


def parse_layers(source: str | Path | Mapping[str, Any]) -> ReductionConfig:
    """A layers configuration, checked (``num_layers`` below the model's layer count)."""
    from splice.models.merging.reduction import parse_reduction

    cfg = parse_reduction(source, "num_layers", LAYER_METHODS)
    count = json.loads((cfg.model / "config.json").read_text()).get("num_hidden_layers")
    if isinstance(count, int) and not cfg.target < count:
        raise ConfigError(
            f"num_layers: expected 1 to {count - 1} (the model has {count} layers), "
            f"not {cfg.target}"
        )
    return cfg


def merge_layers(
    config: str | Path | Mapping[str, Any] | ReductionConfig,
    out_dir: str | Path,
    *,
    force: bool = False,
    device: str = "cpu",
    shard_size: str = "2GB",
) -> LayerReport:
    """Run a layers configuration (:mod:`~splice.models.merging.reduction`) into ``out_dir``."""
    from splice.models.merging.reduction import load_for, publish

    started = time.monotonic()
    cfg = config if isinstance(config, ReductionConfig) else parse_layers(config)
    method = LAYER_METHODS.get(cfg.method, **cfg.parameters)
    model, chunks = load_for(cfg, method.needs_calibration, device)
    before = len(decoder_layers(model))
    parameters_before = sum(p.numel() for p in model.parameters())
    model, steps = reduce_layers(model, chunks, method, cfg.target)
    report = LayerReport(
        method=method.name,
        layers_before=before,
        layers_after=len(decoder_layers(model)),
        parameters_before=parameters_before,
        parameters_after=sum(p.numel() for p in model.parameters()),
        steps=steps,
        sources=sources_after(before, steps),
        calibration_tokens=0 if chunks is None else chunks.numel(),
        parameters=dict(method.params),
    )
    publish(model, cfg, out_dir, report, started, shard_size=shard_size, force=force)
    return report
