"""Export a Hugging Face causal LM to ONNX with its key/value cache as inputs and outputs.

One graph serves both the prompt (past length 0) and decoding (one token at a time):

- inputs ``input_ids``, ``attention_mask`` (batch, past + sequence), ``position_ids`` (batch,
  sequence), ``past_key_values.{i}.key`` / ``.value`` (batch, kv_heads, past, head_dim);
- outputs ``logits`` (batch, sequence, vocab), ``present.{i}.key`` / ``.value`` (the past with
  this call's keys and values appended), ``query.{i}`` (batch, heads, sequence, head_dim: the
  rotated queries each layer read, for the cache methods that weigh entries by attention).

The export traces :class:`_FlatCache`, a wrapper that takes the cache as flat tensors and builds
the transformers cache object, with ``torch.onnx.export(dynamo=True)`` (torch.export); batch,
sequence and past length are dynamic. The float32 graph is checked against PyTorch (prefill and
a decoding step with the cache, :data:`TOLERANCE`), then its MatMul weights are quantized to int8
for serving (``model.onnx``; the float32 graph stays as ``model.fp32.onnx``). ``lm.json`` records
what serving needs (:mod:`splice.models.serving.lm`), so it never parses a transformers config.

Works for Llama-architecture models and their relatives (Mistral, Qwen2), whatever their size.
The graph is traced with eager attention (:func:`load_causal_lm`), through
:func:`_recording_attention`, which records the queries it reads.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from splice.models.serving.lm import (
    FP32_FILE,
    LM_FORMAT,
    MODEL_FILE,
    SPEC_FILE,
    TOKENIZER_FILE,
    key_name,
    present_name,
    query_name,
    value_name,
)
from splice.models.serving.prompt import DEFAULT_BUDGET, LM_SPECIAL_TOKENS, LMTokenizer
from torch import nn

#: The largest |ONNX - PyTorch| logit difference the export accepts (float32 graph).
TOLERANCE = 1e-4


@dataclass(frozen=True)
class LMExportOptions:
    """How :func:`export_lm` exports."""

    #: Quantize the MatMul weights to int8 for serving (``model.onnx``); else ``model.onnx`` is
    #: the float32 graph.
    quantize: bool = True
    #: Keep the float32 graph as ``model.fp32.onnx`` beside the int8 one (parity tests).
    keep_fp32: bool = True
    #: The resolution prompt's token budget recorded in ``lm.json`` (None: the sequence length
    #: the model was trained on, from its ``report.json``, else :data:`DEFAULT_BUDGET`).
    budget: int | None = None
    opset: int = 18
    #: Check the float32 graph against PyTorch (raise ValueError beyond :data:`TOLERANCE`).
    check: bool = True


@dataclass
class LMExportReport:
    """What :func:`export_lm` wrote and how closely onnxruntime matched PyTorch."""

    out_dir: Path
    model: Path
    fp32: Path | None
    #: Largest |onnxruntime - PyTorch| over logits and presents: prompt, then one decoding step.
    prefill_diff: float
    decode_diff: float
    seconds: float


#: The attention implementation :func:`export_onnx_graph` traces (registered on first use).
RECORDING_ATTENTION = "splice_recording"
#: The queries the layers read during one :class:`_FlatCache` call, in layer order.
_RECORDED: list[torch.Tensor] = []


def _recording_attention(module: nn.Module, query: torch.Tensor, *args, **kwargs):
    """The model's own eager attention (its module's ``eager_attention_forward``), with the
    (rotated) ``query`` it reads recorded in :data:`_RECORDED`."""
    _RECORDED.append(query)
    eager = sys.modules[type(module).__module__].eager_attention_forward
    return eager(module, query, *args, **kwargs)


def _use_recording_attention(model: nn.Module) -> None:
    """Run ``model`` with :func:`_recording_attention`, masked as eager attention is (an
    implementation transformers does not know gets the 2-D padding mask as it is, not causal)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(RECORDING_ATTENTION, _recording_attention)
    AttentionMaskInterface.register(RECORDING_ATTENTION, eager_mask)
    model.set_attn_implementation(RECORDING_ATTENTION)


class _FlatCache(nn.Module):
    """The causal LM with the cache as flat tensors in and out (key, value per layer), and the
    queries each layer read when the model runs :func:`_recording_attention`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        params = inspect.signature(model.forward).parameters
        # transformers 5.x renamed ``past_key_values`` to ``cache``
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: tuple[torch.Tensor, ...],
    ) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        _RECORDED.clear()
        cache = DynamicCache(
            list(zip(past[0::2], past[1::2], strict=True)), config=self.model.config
        )
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            **{self.cache_arg: cache},
        )
        cache = getattr(out, "cache", None) or out.past_key_values
        queries = list(_RECORDED)
        _RECORDED.clear()
        return (out.logits, *_flat(cache), *queries)


def _flat(cache) -> list[torch.Tensor]:
    """Key, value of every layer of a transformers cache object."""
    if hasattr(cache, "layers"):
        return [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return [
        t for i in range(len(cache.key_cache)) for t in (cache.key_cache[i], cache.value_cache[i])
    ]


@dataclass(frozen=True)
class _Shape:
    """The cache geometry of a model."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, config) -> _Shape:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        return cls(config.num_hidden_layers, kv, head_dim, config.vocab_size)

    def inputs(self, batch: int, seq: int, past: int, seed: int) -> tuple:
        """Random inputs to trace with."""
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, self.vocab, (batch, seq), generator=g)
        mask = torch.ones(batch, past + seq, dtype=torch.long)
        pos = torch.arange(past, past + seq)[None].expand(batch, seq).contiguous()
        cache = tuple(
            torch.randn(batch, self.kv_heads, past, self.head_dim, generator=g)
            for _ in range(2 * self.layers)
        )
        return ids, mask, pos, cache


def sliding_window(config) -> int | None:
    """The attention window of a model whose layers attend within one (Mistral), else None.

    The graph is traced for caches shorter than the window (no cropping), so serving keeps
    within it: ``lm.json`` gives the smaller of the window and the model's positions."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if window and (types is None or any("sliding" in t for t in types)):
        return int(window)
    return None


def input_names(layers: int) -> list[str]:
    names = ["input_ids", "attention_mask", "position_ids"]
    return names + [n for i in range(layers) for n in (key_name(i), value_name(i))]


def output_names(layers: int) -> list[str]:
    presents = [present_name(i, k) for i in range(layers) for k in ("key", "value")]
    return ["logits", *presents, *(query_name(i) for i in range(layers))]


def load_causal_lm(model_dir: str | Path, attention: str = "eager") -> nn.Module:
    """The float32 causal LM of ``model_dir`` in eval mode.

    Eager attention exports to plain MatMul, Add and Softmax; the sdpa export guards every
    attention matrix against NaN (Where, IsNaN), which took a fifth of a 1,024-token prefill
    on CPU (int8: 1,012 against 792 ms in onnxruntime's profile; outputs equal within 5e-6)."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation=attention)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{model_dir}: cannot load a causal LM ({exc})") from None
    return model.float().eval()


def export_onnx_graph(model: nn.Module, path: Path, opset: int = 18) -> None:
    """Trace ``model`` (a causal LM) into the float32 graph at ``path`` (module doc); the model
    is left running :func:`_recording_attention` (the same arithmetic as eager)."""
    _use_recording_attention(model)
    shape = _Shape.of(model.config)
    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("sequence", min=1)
    window = sliding_window(model.config)
    past = torch.export.Dim("past", min=0, max=window - 1 if window else None)
    dynamic = (
        {0: batch, 1: seq},
        {0: batch, 1: torch.export.Dim.AUTO},
        {0: batch, 1: seq},
        tuple({0: batch, 2: past} for _ in range(2 * shape.layers)),
    )
    # traced with sizes other than 0 and 1 so that no dimension is specialised
    example = shape.inputs(batch=2, seq=3, past=4, seed=0)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter and deprecation chatter
        torch.onnx.export(
            _FlatCache(model).eval(),
            example,
            str(path),
            input_names=input_names(shape.layers),
            output_names=output_names(shape.layers),
            dynamic_shapes=dynamic,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    _name_total_axis(path)


def _name_total_axis(path: Path) -> None:
    """Call the attention mask's second axis ``total`` (torch.export names it ``s<n>``)."""
    import onnx

    graph = onnx.load(str(path))
    for value in graph.graph.input:
        if value.name == "attention_mask":
            value.type.tensor_type.shape.dim[1].dim_param = "total"
    onnx.save(graph, str(path))


def sample_ids(tokenizer_path: Path, vocab: int) -> list[int]:
    """Real code as the model's tokens (this module's source): parity is checked on what the
    model reads, where random ids would test rows of the embedding that never trained."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tokenizer_path)).encode(Path(__file__).read_text()).ids
    return [i for i in ids if i < vocab]


def parity(model: nn.Module, onnx_path: Path, ids: list[int]) -> tuple[float, float]:
    """Largest |onnxruntime - PyTorch| over all outputs at attended positions: on two rows of
    ``ids`` (the first right-padded; past 0), then on one decoding step that takes their cache.
    Logits and presents are compared with the model under plain eager attention, the queries
    with what :func:`_recording_attention` records."""
    import onnxruntime as ort

    shape = _Shape.of(model.config)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = input_names(shape.layers)
    wrapper = _FlatCache(model)
    cached = 1 + 2 * shape.layers  # logits and the presents come first

    def reference(inputs: tuple) -> list[np.ndarray]:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.set_attn_implementation("eager")
            plain = [t.numpy() for t in wrapper(*inputs)]
            _use_recording_attention(model)
            recorded = [t.numpy() for t in wrapper(*inputs)]
        return plain[:cached] + recorded[cached:]

    def run(inputs: tuple) -> tuple[float, list[np.ndarray]]:
        ids, mask, pos, cache = inputs
        feeds = dict(zip(names, [t.numpy() for t in (ids, mask, pos, *cache)], strict=True))
        got = session.run(None, feeds)
        want = reference(inputs)
        total = mask.numpy().astype(bool)  # padded positions are never read: not compared
        query = total[:, total.shape[1] - ids.shape[1] :]
        if len(got) != len(want):
            raise ValueError(f"the graph has {len(got)} outputs, the model {len(want)}")
        diffs = [np.abs(got[0] - want[0])[query]]
        for g, w in zip(got[1:cached], want[1:cached], strict=True):
            diffs.append(np.abs(g - w).transpose(0, 2, 1, 3)[total])  # (batch, heads, total, d)
        for g, w in zip(got[cached:], want[cached:], strict=True):
            diffs.append(np.abs(g - w).transpose(0, 2, 1, 3)[query])  # (batch, heads, seq, d)
        return max(float(d.max()) for d in diffs), got[:cached]

    n = 24
    ids = list(ids) if len(ids) >= 2 * n + 2 else [i % shape.vocab for i in range(2 * n + 2)]
    rows = torch.tensor([ids[:n], ids[-n - 1 : -1]])
    mask = torch.ones(2, n, dtype=torch.long)
    mask[0, -3:] = 0
    pos = torch.arange(n)[None].expand(2, n).contiguous()
    empty = tuple(
        torch.zeros(2, shape.kv_heads, 0, shape.head_dim) for _ in range(2 * shape.layers)
    )
    prefill_diff, got = run((rows, mask, pos, empty))
    step_ids = torch.tensor([[ids[n - 3]], [ids[-1]]])
    step_mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
    step_pos = mask.sum(dim=1, keepdim=True)
    presents = tuple(torch.from_numpy(a) for a in got[1:])
    decode_diff, _ = run((step_ids, step_mask, step_pos, presents))
    return prefill_diff, decode_diff


def fold_transposed_weights(path: Path, out_path: Path) -> int:
    """Write ``path`` with every Transpose of a weight replaced by the transposed weight, so
    that the quantizer sees the output layer's MatMul weight (a tied embedding is exported as
    Transpose(embedding) -> MatMul); the number of weights folded."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    weights = {w.name: w for w in graph.initializer}
    folded = []
    for node in graph.node:
        if node.op_type != "Transpose" or node.input[0] not in weights:
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        array = numpy_helper.to_array(weights[node.input[0]])
        graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(array.transpose(perm)), node.output[0])
        )
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    onnx.save(model, str(out_path))
    return len(folded)


def quantize_int8(fp32_path: Path, out_path: Path) -> None:
    """Dynamic int8 quantization of the MatMul weights (onnxruntime), the output layer's too."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = out_path.with_suffix(".folded.onnx")
    fold_transposed_weights(fp32_path, folded)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process
    try:
        quantize_dynamic(
            str(folded), str(out_path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
        )
    finally:
        root.setLevel(level)
        folded.unlink(missing_ok=True)


def lm_spec(model: nn.Module, tokenizer_path: Path, budget: int, quantized: bool) -> dict:
    """The ``lm.json`` of ``model`` (see :class:`splice.models.serving.lm.LMSpec`)."""
    from tokenizers import Tokenizer

    config = model.config
    shape = _Shape.of(config)
    raw = Tokenizer.from_file(str(tokenizer_path))
    special = None
    if all(raw.token_to_id(t) is not None for t in LM_SPECIAL_TOKENS):
        ids = LMTokenizer(raw).special
        if max(vars(ids).values()) < shape.vocab:
            special = dict(vars(ids))
    eos = config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    bos = getattr(config, "bos_token_id", None)
    start = special["end"] if special else bos if bos is not None else eos
    return {
        "format": LM_FORMAT,
        "model_type": config.model_type,
        "layers": shape.layers,
        "kv_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "vocab_size": shape.vocab,
        "max_positions": min(
            int(config.max_position_embeddings), sliding_window(config) or 1 << 62
        ),
        "special": special,
        "start_id": start,
        "budget": budget,
        "quantized": quantized,
    }


def _quiet() -> None:
    """Silence the exporter's notes on missing torchvision ops and the loading progress bar."""
    import logging

    from transformers.utils import logging as hf_logging

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()


def trained_length(model_dir: Path) -> int:
    """The sequence length ``model_dir`` was trained on (its ``report.json``), else
    :data:`DEFAULT_BUDGET`: prompts longer than what training saw reach positions it never
    learned."""
    try:
        report = json.loads((model_dir / "report.json").read_text(encoding="utf-8"))
        return int(report["options"]["seq_len"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_BUDGET


def export_lm(
    model_dir: str | Path, out_dir: str | Path, options: LMExportOptions | None = None
) -> LMExportReport:
    """Export the causal LM of ``model_dir`` (a ``save_pretrained`` folder with
    ``tokenizer.json``) into ``out_dir``: ``model.onnx``, ``model.fp32.onnx`` (unless not kept),
    ``lm.json``, ``tokenizer.json``. Raises ValueError when the model cannot be loaded or
    onnxruntime and PyTorch disagree beyond :data:`TOLERANCE`."""
    options = options or LMExportOptions()
    started = time.perf_counter()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    tokenizer = model_dir / TOKENIZER_FILE
    if not tokenizer.is_file():
        raise ValueError(f"{model_dir}: no {TOKENIZER_FILE}")
    _quiet()
    model = load_causal_lm(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / FP32_FILE
    export_onnx_graph(model, fp32, opset=options.opset)
    prefill_diff = decode_diff = float("nan")
    if options.check:
        ids = sample_ids(tokenizer, _Shape.of(model.config).vocab)
        prefill_diff, decode_diff = parity(model, fp32, ids)
        if not max(prefill_diff, decode_diff) <= TOLERANCE:
            raise ValueError(
                f"ONNX and PyTorch differ by {max(prefill_diff, decode_diff):.2e} "
                f"(> {TOLERANCE:.0e})"
            )
    served = out_dir / MODEL_FILE
    if options.quantize:
        quantize_int8(fp32, served)
        if not options.keep_fp32:
            fp32.unlink()
    else:
        fp32.replace(served)
    kept = fp32 if fp32.exists() else None
    if tokenizer.resolve() != (out_dir / TOKENIZER_FILE).resolve():
        shutil.copyfile(tokenizer, out_dir / TOKENIZER_FILE)
    spec = lm_spec(model, tokenizer, options.budget or trained_length(model_dir), options.quantize)
    (out_dir / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return LMExportReport(
        out_dir=out_dir,
        model=served,
        fp32=kept,
        prefill_diff=prefill_diff,
        decode_diff=decode_diff,
        seconds=time.perf_counter() - started,
    )
