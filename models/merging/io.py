"""Lazy reading of Hugging Face checkpoints and streaming writing of safetensors shards.

Reading parses the safetensors headers only; a tensor's bytes are read (``readinto``, straight
into the tensor's storage) when it is asked for and freed when it is dropped, so a merge never
holds a whole model, and the input files' pages stay in the page cache rather than in the
process (a memory map would count every page touched towards the resident set). ``.bin``
checkpoints are loaded with ``torch.load(weights_only=True, mmap=True)``: tensors only, never
arbitrary pickled objects.

Writing knows every output tensor's name, dtype and shape before the merge starts, so each shard
header is written first and the tensors are appended as they are produced: no shard is ever
buffered in memory.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

SAFE_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in SAFE_DTYPES.items()}

#: Config spellings of dtypes (mergekit's and transformers').
DTYPE_ALIASES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
    "fp64": torch.float64,
}

#: Default output shard size: writing streams, so this bounds file size, not memory.
DEFAULT_SHARD_SIZE = 2 * 1000**3


def parse_dtype(name: str | None, key: str = "dtype") -> torch.dtype | None:
    """A torch dtype from a config spelling (``None`` passes through)."""
    if name is None:
        return None
    try:
        return DTYPE_ALIASES[str(name).lower().removeprefix("torch.")]
    except KeyError:
        known = ", ".join(sorted(DTYPE_ALIASES))
        raise ValueError(f"{key}: unknown dtype {name!r} (known: {known})") from None


def dtype_name(dtype: torch.dtype) -> str:
    """The transformers spelling of ``dtype`` (``torch.bfloat16`` -> ``bfloat16``)."""
    return str(dtype).removeprefix("torch.")


def parse_size(size: str | int) -> int:
    """Bytes from ``1000000``, ``"500MB"``, ``"2GB"``, ``"1GiB"`` (also mergekit's ``"5B"``)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*", str(size).lower())
    if not match:
        raise ValueError(f"shard size: cannot parse {size!r} (e.g. 500MB, 2GB, 1GiB)")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit]
    if str(size).strip().lower().endswith("b") and not unit and not binary:
        power = 3  # mergekit: "5B" means five billion bytes
    value = int(float(number) * base**power)
    if value <= 0:
        raise ValueError(f"shard size must be positive, got {size!r}")
    return value


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives and what it is, from the file headers."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path
    start: int = 0
    end: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data."""
        return self.end - self.start


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors of one safetensors file (absolute offsets) and its metadata.

    A ValueError names the file when it is not safetensors or is truncated: the header must be
    JSON within the file and every tensor's bytes must fit its shape and lie within the file.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError(f"{path}: not a safetensors file (truncated: {size} bytes)")
            (length,) = struct.unpack("<Q", head)
            if length > size - 8:
                raise ValueError(
                    f"{path}: not a safetensors file, or truncated (a {length}-byte header in "
                    f"a {size}-byte file)"
                )
            blob = handle.read(length)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(blob)
    except ValueError:  # also not UTF-8
        raise ValueError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (its header is not a mapping)")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + length
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        infos[name] = _tensor_info(path, name, entry, data_start, size)
    return infos, metadata


def _tensor_info(path: Path, name: str, entry: Any, data_start: int, size: int) -> TensorInfo:
    """One header entry, checked against the file's size."""
    try:
        dtype_key, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        ok = all(isinstance(x, int) and x >= 0 for x in [*shape, start, end]) and start <= end
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{path}: tensor {name}: not a valid safetensors header entry")
    if dtype_key not in SAFE_DTYPES:
        raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype_key}")
    dtype = SAFE_DTYPES[dtype_key]
    count = 1
    for dim in shape:
        count *= dim
    if end - start != count * torch.empty((), dtype=dtype).element_size():
        raise ValueError(
            f"{path}: tensor {name}: {end - start} bytes do not hold {dtype_key} {list(shape)}"
        )
    if data_start + end > size:
        raise ValueError(
            f"{path}: truncated: tensor {name} ends at byte {data_start + end}, the file at "
            f"byte {size}"
        )
    return TensorInfo(name, dtype, tuple(shape), path, data_start + start, data_start + end)


class ModelReader:
    """The tensors of one model directory (safetensors shards, or ``.bin`` weights only)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"model {path}: not a directory (local Hugging Face layout only)")
        self.infos: dict[str, TensorInfo] = {}
        self._bin: dict[Path, dict[str, torch.Tensor]] = {}
        self._handles: dict[Path, BinaryIO] = {}
        self.format = self._index()

    def _index(self) -> str:
        files = self._files("safetensors")
        if files:
            for file in files:
                infos, _ = read_safetensors_header(file)
                self.infos.update(infos)
            return "safetensors"
        files = self._files("bin")
        if not files:
            raise ValueError(f"model {self.path}: no *.safetensors or pytorch_model*.bin weights")
        for file in files:
            state = self._load_bin(file)
            for name, tensor in state.items():
                self.infos[name] = TensorInfo(name, tensor.dtype, tuple(tensor.shape), file)
        return "bin"

    def _files(self, kind: str) -> list[Path]:
        stem = "model" if kind == "safetensors" else "pytorch_model"
        index = self.path / f"{stem}.{kind}.index.json"
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                names = sorted(set(weight_map.values()))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ValueError(f"{index}: not a weight index (no valid weight_map)") from None
            files = [self.path / f for f in names if isinstance(f, str)]
            for file in files:
                if not file.is_file():
                    raise ValueError(f"{index}: lists {file.name}, which is missing")
            return files
        single = self.path / f"{stem}.{kind}"
        if single.exists():
            return [single]
        return sorted(self.path.glob(f"*.{kind}")) if kind == "safetensors" else []

    def _load_bin(self, file: Path) -> dict[str, torch.Tensor]:
        if file not in self._bin:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # pickled objects other than tensors land here
                raise ValueError(f"{file}: cannot load as weights only: {exc}") from None
            if not isinstance(state, dict):
                raise ValueError(f"{file}: not a state dict")
            self._bin[file] = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        return self._bin[file]

    def names(self) -> list[str]:
        """Tensor names in file order."""
        return list(self.infos)

    def info(self, name: str) -> TensorInfo:
        """The header entry of ``name``; a ValueError names the tensor and the model."""
        try:
            return self.infos[name]
        except KeyError:
            raise ValueError(f"tensor {name} is missing from model {self.path}") from None

    def read(self, name: str, out: torch.Tensor | None = None) -> torch.Tensor:
        """A CPU tensor with the data of ``name`` (its stored dtype): fresh, or read into
        ``out`` (a contiguous uint8 CPU tensor of at least the tensor's size in bytes)."""
        info = self.info(name)
        if self.format == "bin":
            return self._load_bin(info.file)[name].clone()
        if out is None or out.numel() < info.nbytes:
            out = torch.empty(info.nbytes, dtype=torch.uint8)
        out = out[: info.nbytes]
        handle = self._handles.get(info.file)
        if handle is None:
            handle = self._handles[info.file] = open(info.file, "rb")  # noqa: SIM115
        handle.seek(info.start)
        view = memoryview(out.numpy()) if info.nbytes else memoryview(b"")
        got = handle.readinto(view) if info.nbytes else 0
        if got != info.nbytes:
            raise ValueError(f"{info.file}: tensor {name} is truncated")
        return out.view(info.dtype).reshape(info.shape)

    def close(self) -> None:
        """Close the open files."""
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        self._bin.clear()


@dataclass(frozen=True)
class OutputSpec:
    """One tensor to write: name, dtype and shape."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of its data."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count * torch.empty((), dtype=self.dtype).element_size()


def plan_shards(specs: Sequence[OutputSpec], shard_size: int) -> list[list[OutputSpec]]:
    """Split ``specs`` (in order) into shards of at most ``shard_size`` bytes (one tensor over
    the size gets a shard of its own)."""
    shards: list[list[OutputSpec]] = [[]]
    used = 0
    for spec in specs:
        if shards[-1] and used + spec.nbytes > shard_size:
            shards.append([])
            used = 0
        shards[-1].append(spec)
        used += spec.nbytes
    return shards if shards[0] else []


def shard_names(count: int, stem: str = "model") -> list[str]:
    """``model.safetensors`` alone, else ``model-00001-of-0000N.safetensors`` ..."""
    if count == 1:
        return [f"{stem}.safetensors"]
    return [f"{stem}-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


class ShardWriter:
    """Writes planned tensors to safetensors shards as they come (in plan order)."""

    def __init__(
        self,
        out_dir: str | Path,
        specs: Sequence[OutputSpec],
        shard_size: int = DEFAULT_SHARD_SIZE,
        stem: str = "model",
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shards = plan_shards(specs, shard_size)
        self.files = shard_names(len(self.shards), stem)
        self.stem = stem
        self.metadata = {"format": "pt", **(metadata or {})}
        self._order = [(i, spec) for i, shard in enumerate(self.shards) for spec in shard]
        self._next = 0
        self._handle: BinaryIO | None = None
        self._shard = -1

    def _open(self, index: int) -> None:
        self._close()
        header: dict[str, Any] = {"__metadata__": self.metadata}
        offset = 0
        for spec in self.shards[index]:
            header[spec.name] = {
                "dtype": DTYPE_NAMES[spec.dtype],
                "shape": list(spec.shape),
                "data_offsets": [offset, offset + spec.nbytes],
            }
            offset += spec.nbytes
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self._handle = open(self.out_dir / self.files[index], "wb")  # noqa: SIM115
        self._handle.write(struct.pack("<Q", len(blob)))
        self._handle.write(blob)
        self._shard = index

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next planned tensor (its name, dtype and shape must match the plan)."""
        if self._next >= len(self._order):
            raise ValueError(f"tensor {name}: more tensors written than planned")
        index, spec = self._order[self._next]
        if spec.name != name:
            raise ValueError(f"tensor {name}: expected {spec.name} next")
        if tensor.dtype != spec.dtype or tuple(tensor.shape) != spec.shape:
            raise ValueError(
                f"tensor {name}: got {tensor.dtype} {tuple(tensor.shape)}, planned "
                f"{spec.dtype} {spec.shape}"
            )
        if index != self._shard:
            self._open(index)
        assert self._handle is not None
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        if data.numel():
            self._handle.write(memoryview(data.view(torch.uint8).numpy()))
        self._next += 1

    def finish(self) -> list[Path]:
        """Close the last shard, write the index (several shards); returns the shard paths."""
        self._close()
        if self._next != len(self._order):
            missing = self._order[self._next][1].name
            raise ValueError(f"merge stopped before tensor {missing} was written")
        if len(self.files) > 1:
            weight_map = {
                spec.name: self.files[i] for i, shard in enumerate(self.shards) for spec in shard
            }
            total = sum(spec.nbytes for shard in self.shards for spec in shard)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            path = self.out_dir / f"{self.stem}.safetensors.index.json"
            path.write_text(json.dumps(index, indent=2) + "\n")
        return [self.out_dir / f for f in self.files]


def write_tensors(
    out_dir: str | Path,
    tensors: Iterable[tuple[str, torch.Tensor]],
    shard_size: int = DEFAULT_SHARD_SIZE,
    stem: str = "model",
) -> list[Path]:
    """Write already computed tensors (small outputs, tests) with :class:`ShardWriter`."""
    items = list(tensors)
    specs = [OutputSpec(n, t.dtype, tuple(t.shape)) for n, t in items]
    writer = ShardWriter(out_dir, specs, shard_size, stem)
    for name, tensor in items:
        writer.write(name, tensor)
    return writer.finish()
