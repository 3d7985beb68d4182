"""``SpliceConfig``: the hyper-parameters of the merge-pattern classifier (``splice-merge``)."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

#: Edit types of the aligned sequences (the ``edit_ids`` values).
EDIT_TYPES = ("pad", "equal", "insert", "delete", "replace")


class SpliceConfig(PretrainedConfig):
    """Configuration of :class:`splice.models.training.modeling.SpliceMergeModel`.

    ``body`` is None for the built-in pre-LN transformer, or the path (or cached name) of a local
    Hugging Face encoder used as the encoder body. ``body_config`` is filled in from that encoder
    when the model is first built, so a saved model can be rebuilt without the original files.
    ``attention_dropout`` (on the built-in body's attention probabilities) is off by default: it
    cost about 10% of CPU training throughput.
    ``class_weights`` (one per label, or None) weigh the loss against label imbalance.
    ``sequence_embeddings`` adds a learned embedding of the sequence's role (a|o, o|a, b|o, o|b)
    to every token: without it the shared encoder cannot tell ours from theirs, and a weighted sum
    that starts with equal weights is symmetric in the two sides.
    """

    model_type = "splice-merge"

    def __init__(
        self,
        vocab_size: int = 8192,
        hidden_size: int = 192,
        num_layers: int = 3,
        num_heads: int = 4,
        intermediate_size: int | None = None,
        max_position: int = 128,
        num_edit_types: int = len(EDIT_TYPES),
        num_labels: int = 10,
        num_sequences: int = 4,
        sequence_embeddings: bool = True,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        body: str | None = None,
        body_config: dict[str, Any] | None = None,
        class_weights: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size or 4 * hidden_size
        self.max_position = max_position
        self.num_edit_types = num_edit_types
        self.num_sequences = num_sequences
        self.sequence_embeddings = sequence_embeddings
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.body = body
        self.body_config = body_config
        self.class_weights = list(class_weights) if class_weights is not None else None
        super().__init__(num_labels=num_labels, pad_token_id=pad_token_id, **kwargs)
        if self.class_weights is not None and len(self.class_weights) != self.num_labels:
            raise ValueError(f"class_weights needs {self.num_labels} values")
        if body is None and hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of {num_heads} heads")


AutoConfig.register(SpliceConfig.model_type, SpliceConfig, exist_ok=True)
