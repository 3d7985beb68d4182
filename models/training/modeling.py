"""``SpliceMergeModel``: MergeBERT's merge-pattern classifier over four aligned token sequences.

Each example holds four sequences (a|o, o|a, b|o, o|b). A token's input is the sum of its token,
position and edit-type embeddings, plus (by default) an embedding of its sequence's role. One
shared encoder reads each sequence on its own; each is pooled to one vector; a learned
softmax-weighted sum of the four vectors goes through dropout and a linear layer to one logit per
merge pattern.

Pooling is the masked mean of the encoder's last hidden states, not the first token: our
sequences have no [CLS] token of their own (a sequence starts with whatever code precedes the
conflict), the tokens that matter (the edits) can sit anywhere, and a mean gives each of them a
direct gradient path, which helps a small model trained from scratch. An empty sequence (a side
that deleted everything) pools to the zero vector.

Telling ours from theirs. With one shared encoder and MergeBERT's four scalar weights (equal at
the start), the sum is symmetric in the two sides: "only ours inserted" and "only theirs
inserted" look alike until the weights drift apart. Two small changes break the symmetry: the
role embedding, and one softmax weight per (sequence, feature) instead of per sequence (MergeBERT's
scalars are the special case of equal columns). On a synthetic rule that needs the side (see
tests/test_model.py) the tiny model reached 100% validation accuracy within 6 epochs with both,
and plateaued at 77% for 8+ epochs with scalar weights (with or without the role embedding).

The encoder body is either a small pre-LN transformer (below) or, with ``config.body``, a local
Hugging Face encoder that gets its own input embeddings plus our edit-type (and role) embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from splice.models.training.configuration import SpliceConfig
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

try:  # transformers >= 5: init functions that skip weights already loaded
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init

#: Added to the attention scores of padding keys (finite, so an all-padding row stays NaN-free).
_MASKED = -1e9


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key padding bias."""

    def __init__(self, config: SpliceConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_dropout

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """x (N, L, H), key_bias (N, 1, 1, L) additive -> (N, L, H)."""
        n, length, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=-1)
        q, k, v = (t.view(n, length, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(n, length, hidden))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: SpliceConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.GELU(),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.ln_1(x), key_bias))
        return x + self.dropout(self.mlp(self.ln_2(x)))


class TransformerBody(nn.Module):
    """The built-in encoder: token + position embeddings, pre-LN blocks, a final LayerNorm."""

    def __init__(self, config: SpliceConfig) -> None:
        super().__init__()
        self.token_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size)

    def forward(
        self, input_ids: torch.Tensor, extra_embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """input_ids (N, L), extra_embeds (N, L, H), attention_mask (N, L) -> (N, L, H)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.token_embeddings(input_ids) + self.position_embeddings(positions) + extra_embeds
        x = self.dropout(x)
        key_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * _MASKED
        for block in self.blocks:
            x = block(x, key_bias)
        return self.ln_f(x)


def any_correct_loss(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """-log(sum of softmax probabilities over the valid patterns), a weighted mean over examples.

    An example's weight is the mean class weight of its valid patterns (1 without weights);
    examples with no valid pattern weigh 0.
    """
    valid = labels > 0
    has_valid = valid.any(dim=-1)
    valid = valid | ~has_valid[:, None]  # keeps empty rows finite; they get weight 0 below
    log_total = torch.logsumexp(logits, dim=-1)
    log_valid = torch.logsumexp(logits.masked_fill(~valid, float("-inf")), dim=-1)
    weights = has_valid.to(logits.dtype)
    if class_weights is not None:
        valid_f = valid.to(logits.dtype)
        weights = weights * (valid_f @ class_weights.to(logits)) / valid_f.sum(dim=-1)
    return ((log_total - log_valid) * weights).sum() / weights.sum().clamp(min=1e-6)


class SpliceMergePreTrainedModel(PreTrainedModel):
    """Ties :class:`SpliceConfig` to Hugging Face's save/load machinery."""

    config_class = SpliceConfig
    base_model_prefix = "splice"
    main_input_name = "input_ids"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SpliceMergeModel):
            init.zeros_(module.sequence_logits)


class SpliceMergeModel(SpliceMergePreTrainedModel):
    """Classifies a token conflict into merge patterns from its four aligned sequences."""

    def __init__(self, config: SpliceConfig) -> None:
        super().__init__(config)
        pretrained_body = None
        if config.body is None:
            self.encoder: nn.Module = TransformerBody(config)
        else:
            if config.body_config is None:  # first build: read the local encoder once
                pretrained_body = AutoModel.from_pretrained(config.body, local_files_only=True)
                config.body_config = pretrained_body.config.to_dict()
            body_config = AutoConfig.for_model(**config.body_config)
            config.hidden_size = body_config.hidden_size
            config.vocab_size = body_config.vocab_size
            self.encoder = AutoModel.from_config(body_config)
        self.edit_embeddings = nn.Embedding(
            config.num_edit_types, config.hidden_size, padding_idx=0
        )
        self.sequence_embeddings = (
            nn.Embedding(config.num_sequences, config.hidden_size)
            if config.sequence_embeddings
            else None
        )
        # one softmax weight per (sequence, feature); zeros = MergeBERT's equal start
        self.sequence_logits = nn.Parameter(torch.zeros(config.num_sequences, config.hidden_size))
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()
        if pretrained_body is not None:
            self.encoder.load_state_dict(pretrained_body.state_dict())

    def encode(
        self, input_ids: torch.Tensor, edit_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, S, L) ids, edit types and mask -> pooled encodings (B, S, H)."""
        b, s, length = input_ids.shape
        ids = input_ids.reshape(b * s, length)
        mask = attention_mask.reshape(b * s, length)
        edits = self.edit_embeddings(edit_ids).view(b * s, length, -1)
        if self.sequence_embeddings is not None:  # which of a|o, o|a, b|o, o|b this is
            roles = self.sequence_embeddings(torch.arange(s, device=input_ids.device))
            edits = edits + roles.repeat(b, 1)[:, None, :]
        if self.config.body is None:
            hidden = self.encoder(ids, edits, mask)
        else:
            # an all-padding row would give some attention implementations NaNs: let it see all
            body_mask = torch.where(mask.any(dim=-1, keepdim=True), mask, torch.ones_like(mask))
            embeds = self.encoder.get_input_embeddings()(ids) + edits
            hidden = self.encoder(inputs_embeds=embeds, attention_mask=body_mask)[0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return pooled.view(b, s, -1)

    def forward(
        self,
        input_ids: torch.Tensor,
        edit_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        **kwargs: object,
    ) -> SequenceClassifierOutput:
        """Logits (B, num_labels); with multi-hot ``labels`` (B, num_labels) also the loss."""
        pooled = self.encode(input_ids, edit_ids, attention_mask)
        weights = torch.softmax(self.sequence_logits, dim=0)
        h = (pooled * weights[None]).sum(dim=1)
        logits = self.classifier(self.dropout(h))
        loss = None
        if labels is not None:
            cw = self.config.class_weights
            cw_t = torch.tensor(cw, device=logits.device) if cw is not None else None
            loss = any_correct_loss(logits, labels, cw_t)
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoModel.register(SpliceConfig, SpliceMergeModel, exist_ok=True)
