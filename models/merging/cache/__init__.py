"""KV-cache compression: eviction and merging methods over one layer's keys and values.

Numpy only: the serving path imports this package without torch. Each method is written
once, as a small class over numpy arrays (:mod:`.base`); the ways in are thin adapters:

* :func:`compress_layer` compresses one layer's arrays (batch 1); serving's
  ``KVCache.compressed`` calls it;
* :mod:`splice.models.merging.cache.hf` (imports torch and transformers, import it
  explicitly) is a transformers cache that compresses with any method during ``generate``.

Methods, and what they read besides keys and values (``query_use``):

==================  ==========  ========================================================
name                reads       does
==================  ==========  ========================================================
``streaming_llm``   keys        keeps sinks and the most recent entries
``random``          keys        keeps a random subset per head
``h2o``             queries     keeps heavy hitters and the most recent entries
``snapkv``          queries     keeps the entries an observation window attends, pooled
``kvmerger``        optional    merges runs of similar consecutive keys (Gaussian weights)
``cam``             queries     evicts as H2O, merges evicted values into the next kept
``ems``             queries     Global-Local score, head-wise evict-then-merge
==================  ==========  ========================================================

"queries" means the queries of the last positions (or aggregated attention scores); serving's
ONNX graph outputs each layer's queries (``query.{i}``), and a graph exported without them
runs only the methods that read keys (``kvmerger`` falls back to a key-only variant).

HOMER (hierarchical context merging) is a prefill procedure over the model, not a per-layer
method: :func:`splice.models.merging.cache.homer.hierarchical_prefill` (torch; import explicitly).
"""

from splice.models.merging.cache import (  # noqa: F401  (each module registers its method)
    cam,
    ems,
    h2o,
    kvmerger,
    random_eviction,
    snapkv,
    streaming_llm,
)
from splice.models.merging.cache.base import (
    CACHE_METHODS,
    Budget,
    CacheInputs,
    CacheMethod,
    Compressed,
    attention_scores,
    cache_method_names,
    get_cache_method,
    register_cache_method,
)
from splice.models.merging.cache.cam import CaM
from splice.models.merging.cache.ems import EMS
from splice.models.merging.cache.h2o import H2O
from splice.models.merging.cache.kvmerger import KVMerger
from splice.models.merging.cache.layer import compress_layer
from splice.models.merging.cache.random_eviction import RandomEviction
from splice.models.merging.cache.snapkv import SnapKV
from splice.models.merging.cache.streaming_llm import StreamingLLM

__all__ = [
    "CACHE_METHODS",
    "EMS",
    "H2O",
    "Budget",
    "CaM",
    "CacheInputs",
    "CacheMethod",
    "Compressed",
    "KVMerger",
    "RandomEviction",
    "SnapKV",
    "StreamingLLM",
    "attention_scores",
    "cache_method_names",
    "compress_layer",
    "get_cache_method",
    "register_cache_method",
]
