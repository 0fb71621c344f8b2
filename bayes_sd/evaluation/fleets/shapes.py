"""Transformer shapes: what one forward pass reads and computes, from the model's configuration.

A decoder block is attention (projections Q, K, V, O, then the scores against the KV cache) and a
feed-forward network (gated: gate, up and down projections). From the configuration numbers alone:

- parameters of the attention projections per block: ``hidden * head_dim * (2 heads + 2 kv_heads)``
  (Q and O are ``heads`` wide, K and V ``kv_heads`` wide: grouped-query attention);
- parameters of a gated FFN of width ``F``: ``3 * hidden * F`` (gate, up, down);
- a matrix-vector product costs 2 FLOPs per parameter per token (a multiply and an add), so the
  projections cost ``2 * params`` FLOPs per token;
- attention scores: each query token meets each context token in every head twice (``q . k`` and
  the weighted sum of ``v``), ``4 * heads * head_dim`` FLOPs per (query, context) pair and block;
- the KV cache holds ``2 * kv_heads * head_dim`` values per token and block (a K and a V vector per
  KV head), each read once per pass by the sequence that owns it.

Mixture-of-experts blocks replace the FFN by ``experts`` small FFNs of which a router picks
``experts_per_token`` per token (plus ``shared_experts`` every token uses). A pass reads the weights
of only the experts some token of the pass routes to. Routers are not uniform: an expert's
popularity depends on the data, so :class:`ExpertRouting` draws a skewed per-expert popularity per
run (Dirichlet) and counts the experts a pass of ``T`` tokens touches from it.

The presets copy public ``config.json`` numbers of well-known models; the models' names are labels
for those shapes, and the drafters' acceptance is invented by :mod:`.workloads`, not measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import ndtr

__all__ = ["ModelShape", "ExpertRouting"]


@dataclass(frozen=True)
class ModelShape:
    """The shape of a dense or mixture-of-experts transformer (or an n-gram drafter, without weights).

    Parameters
    ----------
    name : str
        Label written to ``runs.verifier`` / ``runs.drafter`` and ``models.name``.
    layers : int
        Transformer blocks.
    hidden_size : int
        Width of the residual stream.
    heads, kv_heads, head_dim : int
        Query heads, key/value heads (grouped-query attention: ``kv_heads <= heads``), width of a head.
    ffn_size : int
        Intermediate width of the dense (gated) FFN; used by the blocks that are not MoE.
    vocab_size : int
        Vocabulary (width of the LM head).
    experts : int, default 0
        Routed experts per MoE block (0: dense).
    experts_per_token : int, default 0
        Routed experts each token uses (top-k).
    shared_experts : int, default 0
        Experts every token uses, besides the routed ones.
    expert_ffn_size : int, default 0
        Intermediate width of one routed expert.
    shared_expert_ffn_size : int, default 0
        Intermediate width of one shared expert (0: as a routed expert).
    moe_layers : int or None, default None
        Blocks with an MoE FFN (None: all blocks when ``experts > 0``).
    tied_embeddings : bool, default False
        The LM head reuses the input embedding (its parameters counted once).
    input_projection_size : int, default 0
        Extra input parameters (an EAGLE head's fusion of target features, ``k * hidden -> hidden``).
    bytes_per_param : float, default 2.0
        Bytes per weight (bf16: 2).
    expert_bytes_per_param : float or None, default None
        Bytes per routed-expert weight when quantised differently (MXFP4: 0.53); None: ``bytes_per_param``.
    kv_bytes_per_value : float, default 2.0
        Bytes per KV-cache value (bf16: 2).
    kind : {"model", "eagle", "ngram"}, default "model"
        A standalone model, a head on the target's features, or a model-free n-gram lookup.
    lookup_seconds_per_sequence : float, default 0.0
        CPU time of an n-gram lookup per sequence and step, s (``kind == "ngram"`` only).
    source : str
        Where the configuration numbers come from.
    """

    name: str
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0
    expert_ffn_size: int = 0
    shared_expert_ffn_size: int = 0
    moe_layers: int | None = None
    tied_embeddings: bool = False
    input_projection_size: int = 0
    bytes_per_param: float = 2.0
    expert_bytes_per_param: float | None = None
    kv_bytes_per_value: float = 2.0
    kind: str = "model"
    lookup_seconds_per_sequence: float = 0.0
    source: str = ""

    def __post_init__(self):
        if self.kind not in ("model", "eagle", "ngram"):
            raise ValueError(f"ModelShape {self.name!r}: kind must be 'model', 'eagle' or 'ngram', got {self.kind!r}")
        if self.kind != "ngram" and min(self.layers, self.hidden_size, self.heads, self.kv_heads, self.head_dim) < 1:
            raise ValueError(f"ModelShape {self.name!r}: layers, widths and heads must be positive")
        if self.experts and not 1 <= self.experts_per_token <= self.experts:
            raise ValueError(f"ModelShape {self.name!r}: experts_per_token must be in 1..experts")
        if self.heads % max(self.kv_heads, 1):
            raise ValueError(f"ModelShape {self.name!r}: heads must be a multiple of kv_heads "
                             "(grouped-query attention)")

    # ---- structure -------------------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        """Whether some blocks route tokens to experts."""
        return self.experts > 0

    @property
    def has_weights(self) -> bool:
        """False for the model-free n-gram drafter."""
        return self.kind != "ngram"

    @property
    def n_moe_layers(self) -> int:
        """Blocks with an MoE FFN."""
        if not self.is_moe:
            return 0
        return self.layers if self.moe_layers is None else self.moe_layers

    @property
    def n_dense_layers(self) -> int:
        """Blocks with a dense FFN."""
        return self.layers - self.n_moe_layers

    @property
    def attention_params_per_layer(self) -> int:
        """Q, K, V, O projections of one block: ``hidden * head_dim * (2 heads + 2 kv_heads)``."""
        return self.hidden_size * self.head_dim * (2 * self.heads + 2 * self.kv_heads)

    @property
    def expert_params(self) -> int:
        """One routed expert (a gated FFN): ``3 * hidden * expert_ffn_size``."""
        return 3 * self.hidden_size * self.expert_ffn_size

    @property
    def shared_expert_params(self) -> int:
        """All shared experts of one block."""
        width = self.shared_expert_ffn_size or self.expert_ffn_size
        return self.shared_experts * 3 * self.hidden_size * width

    @property
    def lm_head_params(self) -> int:
        """The LM head: ``vocab * hidden``."""
        return self.vocab_size * self.hidden_size if self.has_weights else 0

    @property
    def dense_gemm_params(self) -> int:
        """Weights every token of a pass multiplies, LM head and routed experts excluded: attention
        projections, dense FFNs, shared experts, routers, an EAGLE head's input fusion."""
        if not self.has_weights:
            return 0
        dense_ffn = self.n_dense_layers * 3 * self.hidden_size * self.ffn_size
        moe_always = self.n_moe_layers * (self.shared_expert_params + self.hidden_size * self.experts)
        return self.layers * self.attention_params_per_layer + dense_ffn + moe_always + self.input_projection_size

    @property
    def routed_expert_params(self) -> int:
        """All routed experts of all MoE blocks."""
        return self.n_moe_layers * self.experts * self.expert_params

    @property
    def total_params(self) -> int:
        """Parameters of the model (input embedding counted; once when tied), for ``models.params_b``."""
        if not self.has_weights:
            return 0
        embedding = self.vocab_size * self.hidden_size if self.kind == "model" else 0
        head = 0 if (self.tied_embeddings and self.kind == "model") else self.lm_head_params
        return self.dense_gemm_params + self.routed_expert_params + embedding + head

    @property
    def active_params_per_token(self) -> int:
        """Parameters one token multiplies: dense part, its ``experts_per_token`` experts per MoE block, LM head."""
        return self.dense_gemm_params + self.n_moe_layers * self.experts_per_token * self.expert_params \
            + self.lm_head_params

    # ---- per-pass quantities ---------------------------------------------------------------------------------
    @property
    def dense_weight_bytes(self) -> float:
        """Bytes of the weights every pass reads whatever its tokens (dense GEMMs), bytes."""
        return self.dense_gemm_params * self.bytes_per_param

    @property
    def lm_head_bytes(self) -> float:
        """Bytes of the LM head, read once per pass that needs logits."""
        return self.lm_head_params * self.bytes_per_param

    @property
    def expert_bytes(self) -> float:
        """Bytes of one routed expert of one block."""
        per_param = self.bytes_per_param if self.expert_bytes_per_param is None else self.expert_bytes_per_param
        return self.expert_params * per_param

    @property
    def weight_bytes(self) -> float:
        """Bytes of all weights held in memory (embedding included), bytes."""
        per_param = self.bytes_per_param if self.expert_bytes_per_param is None else self.expert_bytes_per_param
        return (self.total_params - self.routed_expert_params) * self.bytes_per_param \
            + self.routed_expert_params * per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token of context holds over all blocks: ``2 * kv_heads * head_dim * layers`` values."""
        if not self.has_weights:
            return 0.0
        return 2.0 * self.kv_heads * self.head_dim * self.layers * self.kv_bytes_per_value

    @property
    def attention_flops_per_pair(self) -> float:
        """FLOPs of one (query token, context token) pair over all blocks: ``4 * heads * head_dim * layers``."""
        if not self.has_weights:
            return 0.0
        return 4.0 * self.heads * self.head_dim * self.layers

    @property
    def activation_bytes_per_token(self) -> float:
        """Activations one token writes and reads between the kernels of a pass (inputs and outputs of each
        projection, bf16), bytes; small next to the weights except in long prefills."""
        if not self.has_weights:
            return 0.0
        width = self.ffn_size if self.n_dense_layers else (self.expert_ffn_size * max(self.experts_per_token, 1))
        per_layer = 6 * self.hidden_size + 2 * self.head_dim * (self.heads + self.kv_heads) + 3 * width
        return 2.0 * per_layer * self.layers

    def flops_per_token(self, context_tokens: float = 0.0) -> float:
        """FLOPs one token costs in a pass: ``2 * active params`` (a multiply and an add per weight) plus
        attention against ``context_tokens`` of context (``attention_flops_per_pair`` each).

        Parameters
        ----------
        context_tokens : float, default 0
            Tokens of context the token attends to.

        Returns
        -------
        float
            FLOPs.
        """
        return 2.0 * self.active_params_per_token + self.attention_flops_per_pair * context_tokens

    def weight_bytes_per_pass(self, tokens: int, routing: ExpertRouting | None = None) -> float:
        """Weight bytes a pass over ``tokens`` tokens reads: the dense weights and the LM head always,
        and in each MoE block only the experts some token of the pass routes to.

        Parameters
        ----------
        tokens : int
            Tokens in the pass.
        routing : ExpertRouting, optional
            The run's expert popularity (default: uniform routing).

        Returns
        -------
        float
            Bytes.
        """
        dense = self.dense_weight_bytes + self.lm_head_bytes
        if not self.is_moe or tokens <= 0:
            return dense
        routing = routing or ExpertRouting.uniform(self.experts, self.experts_per_token)
        active = float(routing.expected_active_experts(np.array([tokens]))[0])
        return dense + self.n_moe_layers * active * self.expert_bytes

    @property
    def models_row(self) -> dict:
        """The MODELS table row (params in billions)."""
        return {"name": self.name, "params_b": round(self.total_params / 1e9, 3), "layers": max(self.layers, 1),
                "hidden_size": self.hidden_size if self.has_weights else np.nan,
                "experts": float(self.experts) if self.is_moe else np.nan,
                "experts_per_token": float(self.experts_per_token) if self.is_moe else np.nan}

    def with_(self, **changes) -> ModelShape:
        """A copy with some fields changed.

        Parameters
        ----------
        **changes
            Fields and their new values.

        Returns
        -------
        ModelShape
        """
        return replace(self, **changes)


@dataclass(frozen=True)
class ExpertRouting:
    """Per-expert routing popularity of an MoE model in one run, for a few representative blocks.

    Each block's router sends a token to ``top_k`` distinct experts; expert ``e`` of block ``l`` is
    picked with marginal probability ``q[l, e]`` (the inclusion probabilities, summing to ``top_k``
    over experts), derived from a popularity vector drawn per run from a Dirichlet distribution
    (skew: smaller ``concentration`` = more imbalance). Tokens are routed independently, so in a pass
    of ``T`` tokens expert ``e`` receives ``m ~ Binomial(T, q)`` tokens and is untouched with
    probability ``(1 - q)^T``.

    Parameters
    ----------
    inclusion : numpy.ndarray
        ``(blocks, experts)`` marginal probabilities that a token uses each expert.
    top_k : int
        Routed experts per token.
    """

    inclusion: np.ndarray = field(repr=False)
    top_k: int = 1

    @classmethod
    def uniform(cls, experts: int, top_k: int) -> ExpertRouting:
        """Every expert equally popular: ``q = top_k / experts``.

        Parameters
        ----------
        experts, top_k : int
            Routed experts per block and per token.

        Returns
        -------
        ExpertRouting
            One block.
        """
        return cls(np.full((1, experts), top_k / experts), top_k)

    @classmethod
    def from_popularity(cls, popularity: np.ndarray, top_k: int) -> ExpertRouting:
        """Inclusion probabilities from per-block popularity vectors (rows summing to 1).

        Picking ``top_k`` distinct experts with probabilities proportional to popularity includes an
        expert with probability about ``top_k * p`` while that is small, and never above 1: we scale,
        cap at 0.98 and rescale the rest until the row sums to ``top_k``.

        Parameters
        ----------
        popularity : array_like
            ``(blocks, experts)`` or ``(experts,)`` popularity (normalised here).
        top_k : int
            Routed experts per token.

        Returns
        -------
        ExpertRouting
        """
        p = np.atleast_2d(np.asarray(popularity, dtype="float64"))
        p = p / p.sum(axis=1, keepdims=True)
        q = top_k * p
        for _ in range(20):
            capped = q >= 0.98
            q = np.where(capped, 0.98, q)
            free = top_k - q.sum(axis=1, keepdims=True)
            rest = np.where(capped, 0.0, q)
            q = np.where(capped, 0.98, rest * (1.0 + free / np.maximum(rest.sum(axis=1, keepdims=True), 1e-12)))
            if not (q > 0.98 + 1e-12).any():
                break
        return cls(np.minimum(q, 0.98), top_k)

    @classmethod
    def draw(cls, rng: np.random.Generator, experts: int, top_k: int, concentration: float,
             blocks: int = 8, base: np.ndarray | None = None, run_concentration: float | None = None) -> ExpertRouting:
        """Draw a skewed popularity for ``blocks`` representative blocks.

        Parameters
        ----------
        rng : numpy.random.Generator
            Random source.
        experts, top_k : int
            Routed experts per block and per token.
        concentration : float
            Dirichlet concentration per expert (``inf``: uniform; 1: strongly skewed; the coefficient
            of variation of the popularity is about ``1 / sqrt(concentration)``).
        blocks : int, default 8
            Blocks sampled (each with its own popularity); the pass averages over them.
        base : numpy.ndarray, optional
            ``(blocks, experts)`` popularity of the model on this workload; when given, the run's
            popularity is drawn around it with ``Dirichlet(run_concentration * base)`` (server state,
            batch mix), instead of from scratch.
        run_concentration : float, optional
            Concentration of the run-level draw around ``base`` (default 2000: a few % of jitter).

        Returns
        -------
        ExpertRouting
        """
        if base is not None:
            c = 2000.0 if run_concentration is None else run_concentration
            pop = np.vstack([rng.dirichlet(np.maximum(c * row, 1e-3)) for row in base])
        elif np.isinf(concentration):
            pop = np.full((blocks, experts), 1.0 / experts)
        else:
            pop = rng.dirichlet(np.full(experts, float(concentration)), size=blocks)
        return cls.from_popularity(pop, top_k)

    @property
    def popularity(self) -> np.ndarray:
        """``(blocks, experts)`` inclusion probabilities divided by ``top_k``."""
        return self.inclusion / self.top_k

    def expected_active_experts(self, tokens: np.ndarray) -> np.ndarray:
        """Mean experts per block that at least one of ``tokens`` tokens routes to.

        An expert is idle when every token passes it by: ``E[active] = sum_e 1 - (1 - q_e)^T``,
        averaged over the sampled blocks. Uniform routing gives ``E (1 - (1 - top_k/E)^T)``; a skewed
        popularity touches fewer experts for the same ``T`` (popular experts are shared).

        Parameters
        ----------
        tokens : array_like
            Tokens in the pass.

        Returns
        -------
        numpy.ndarray
            Experts, same shape as ``tokens``.
        """
        t = np.asarray(tokens, dtype="float64")
        log_idle = np.log1p(-self.inclusion)  # (blocks, experts)
        idle = np.exp(log_idle[None, :, :] * t.reshape(-1, 1, 1))
        return (1.0 - idle).sum(axis=2).mean(axis=1).reshape(t.shape)

    def expected_padded_rows(self, tokens: np.ndarray, tile: int) -> np.ndarray:
        """Mean GEMM rows per block the grouped expert kernel computes for ``tokens`` tokens.

        Each active expert's token count ``m`` is padded to a multiple of ``tile``: the kernel does
        ``tile * ceil(m / tile)`` rows. ``E[ceil(m / tile)] = P(m > 0) + sum_{j>=1} P(m > j tile)``,
        with ``P(m > 0) = 1 - (1 - q)^T`` exactly and the tail terms from a normal approximation of
        ``Binomial(T, q)`` (terms more than 6 sd below the mean count 1, more than 6 sd above it 0).

        Parameters
        ----------
        tokens : array_like
            Tokens in the pass.
        tile : int
            M-tile of the expert kernel, tokens.

        Returns
        -------
        numpy.ndarray
            Rows (token slots), same shape as ``tokens``.
        """
        t = np.asarray(tokens, dtype="float64").reshape(-1, 1, 1)
        q = self.inclusion[None, :, :]
        mean = t * q
        sd = np.sqrt(np.maximum(mean * (1.0 - q), 1e-12))
        tiles = 1.0 - np.exp(np.log1p(-q) * t)
        # Terms with j * tile far below the mean are 1 and far above it 0: sum only a window of +-6 sd.
        first = np.maximum(1.0, np.floor((mean - 6.0 * sd) / tile))
        tiles = tiles + (first - 1.0)
        width = int(np.ceil(12.0 * float(sd.max()) / tile)) + 2 if sd.size else 1
        for offset in range(width):
            j = first + offset
            tiles = tiles + ndtr((mean - j * tile - 0.5) / sd)
        return (tile * tiles).sum(axis=2).mean(axis=1).reshape(np.shape(tokens))
