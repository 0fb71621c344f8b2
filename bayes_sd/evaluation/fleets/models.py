"""Named model shapes for the out-of-family fleets: verifiers and standalone drafters with the figures of
their public configurations, EAGLE-style heads cut from a target, and the n-gram drafter."""

from __future__ import annotations

from .shapes import ModelShape

__all__ = ["VERIFIERS", "STANDALONE_DRAFTERS", "FAMILY_DRAFTERS", "eagle_head", "ngram_drafter", "verifier"]

_HF = "public config.json on the Hugging Face Hub"

#: Verifier shapes (numbers from each model's public configuration; the names are labels).
VERIFIERS: dict[str, ModelShape] = {
    s.name: s
    for s in (
        ModelShape("llama3.1-8b", layers=32, hidden_size=4096, heads=32, kv_heads=8, head_dim=128, ffn_size=14336,
                   vocab_size=128256, source=f"meta-llama/Llama-3.1-8B {_HF}"),
        ModelShape("llama3.1-70b", layers=80, hidden_size=8192, heads=64, kv_heads=8, head_dim=128, ffn_size=28672,
                   vocab_size=128256, source=f"meta-llama/Llama-3.1-70B {_HF}"),
        ModelShape("qwen2.5-14b", layers=48, hidden_size=5120, heads=40, kv_heads=8, head_dim=128, ffn_size=13824,
                   vocab_size=152064, source=f"Qwen/Qwen2.5-14B {_HF}"),
        ModelShape("qwen2.5-32b", layers=64, hidden_size=5120, heads=40, kv_heads=8, head_dim=128, ffn_size=27648,
                   vocab_size=152064, source=f"Qwen/Qwen2.5-32B {_HF}"),
        ModelShape("mixtral-8x7b", layers=32, hidden_size=4096, heads=32, kv_heads=8, head_dim=128, ffn_size=0,
                   vocab_size=32000, experts=8, experts_per_token=2, expert_ffn_size=14336,
                   source=f"mistralai/Mixtral-8x7B-v0.1 {_HF}"),
        ModelShape("qwen3-30b-a3b", layers=48, hidden_size=2048, heads=32, kv_heads=4, head_dim=128, ffn_size=0,
                   vocab_size=151936, experts=128, experts_per_token=8, expert_ffn_size=768,
                   source=f"Qwen/Qwen3-30B-A3B {_HF}"),
        ModelShape("qwen1.5-moe-a2.7b", layers=24, hidden_size=2048, heads=16, kv_heads=16, head_dim=128, ffn_size=0,
                   vocab_size=151936, experts=60, experts_per_token=4, expert_ffn_size=1408, shared_experts=1,
                   shared_expert_ffn_size=5632, source=f"Qwen/Qwen1.5-MoE-A2.7B {_HF}"),
        ModelShape("gpt-oss-20b", layers=24, hidden_size=2880, heads=64, kv_heads=8, head_dim=64, ffn_size=0,
                   vocab_size=201088, experts=32, experts_per_token=4, expert_ffn_size=2880,
                   expert_bytes_per_param=0.53,  # MXFP4: 4 bits plus one 8-bit scale per 32 values
                   source=f"openai/gpt-oss-20b {_HF}"),
        ModelShape("qwen3-235b-a22b", layers=94, hidden_size=4096, heads=64, kv_heads=4, head_dim=128, ffn_size=0,
                   vocab_size=151936, experts=128, experts_per_token=8, expert_ffn_size=1536,
                   bytes_per_param=1.0, kv_bytes_per_value=1.0,  # served in fp8 (weights and KV cache)
                   source=f"Qwen/Qwen3-235B-A22B {_HF}, fp8"),
    )
}

#: Small standalone drafters, by tokenizer family of the verifiers they can serve.
STANDALONE_DRAFTERS: dict[str, ModelShape] = {
    s.name: s
    for s in (
        ModelShape("llama3.2-1b", layers=16, hidden_size=2048, heads=32, kv_heads=8, head_dim=64, ffn_size=8192,
                   vocab_size=128256, tied_embeddings=True, source=f"meta-llama/Llama-3.2-1B {_HF}"),
        ModelShape("qwen2.5-0.5b", layers=24, hidden_size=896, heads=14, kv_heads=2, head_dim=64, ffn_size=4864,
                   vocab_size=151936, tied_embeddings=True, source=f"Qwen/Qwen2.5-0.5B {_HF}"),
        ModelShape("qwen3-0.6b", layers=28, hidden_size=1024, heads=16, kv_heads=8, head_dim=128, ffn_size=3072,
                   vocab_size=151936, tied_embeddings=True, source=f"Qwen/Qwen3-0.6B {_HF}"),
        ModelShape("tiny-4l", layers=4, hidden_size=1536, heads=12, kv_heads=4, head_dim=128, ffn_size=4096,
                   vocab_size=151936, tied_embeddings=True, source="invented: a 4-block distilled drafter"),
    )
}

#: Tokenizer family of each verifier: which standalone drafters can propose its tokens.
FAMILY_DRAFTERS: dict[str, tuple[str, ...]] = {
    "llama3.1-8b": ("llama3.2-1b",), "llama3.1-70b": ("llama3.2-1b",),
    "qwen2.5-14b": ("qwen2.5-0.5b", "tiny-4l"), "qwen2.5-32b": ("qwen2.5-0.5b", "tiny-4l"),
    "qwen3-30b-a3b": ("qwen3-0.6b", "tiny-4l"), "qwen1.5-moe-a2.7b": ("qwen2.5-0.5b", "tiny-4l"),
    "qwen3-235b-a22b": ("qwen3-0.6b", "tiny-4l"),
    "mixtral-8x7b": (), "gpt-oss-20b": (),
}


def eagle_head(target: ModelShape, layers: int = 1, draft_vocab: int = 32000) -> ModelShape:
    """An EAGLE-style draft head on ``target``: ``layers`` decoder blocks of the target's width,
    a fusion of three target feature vectors into one (``3 hidden x hidden``), and an LM head over a
    reduced draft vocabulary (EAGLE-3 style).

    Parameters
    ----------
    target : ModelShape
        The verifier the head reads features from.
    layers : int, default 1
        Decoder blocks of the head (1-4).
    draft_vocab : int, default 32000
        Tokens of its LM head.

    Returns
    -------
    ModelShape
        Dense, ``kind="eagle"``, named ``eagle-<target>`` (``eagle-<L>l-<target>`` for more than one block).
    """
    ffn = target.ffn_size or 4 * target.hidden_size
    name = f"eagle-{target.name}" if layers == 1 else f"eagle-{layers}l-{target.name}"
    return ModelShape(name, layers=layers, hidden_size=target.hidden_size, heads=target.heads,
                      kv_heads=target.kv_heads, head_dim=target.head_dim, ffn_size=min(ffn, 4 * target.hidden_size),
                      vocab_size=draft_vocab, input_projection_size=3 * target.hidden_size * target.hidden_size,
                      bytes_per_param=2.0, kind="eagle", source=f"EAGLE-3 style head on {target.name}")


def ngram_drafter(lookup_seconds_per_sequence: float = 25e-6) -> ModelShape:
    """The model-free n-gram (prompt lookup) drafter: no weights, a CPU lookup per sequence per step.

    Parameters
    ----------
    lookup_seconds_per_sequence : float, default 25e-6
        CPU time to match the last tokens against the sequence's history and copy ``k`` tokens, s.

    Returns
    -------
    ModelShape
        ``kind="ngram"``, named ``ngram``.
    """
    return ModelShape("ngram", layers=0, hidden_size=0, heads=0, kv_heads=0, head_dim=0, ffn_size=0, vocab_size=0,
                      kind="ngram", lookup_seconds_per_sequence=lookup_seconds_per_sequence,
                      source="prompt-lookup n-gram drafting (no model)")


def verifier(name: str) -> ModelShape:
    """The verifier preset named ``name`` (one of :data:`VERIFIERS`).

    Parameters
    ----------
    name : str
        A key of :data:`VERIFIERS`.

    Returns
    -------
    ModelShape

    Raises
    ------
    KeyError
        For an unknown name; the message lists the presets.
    """
    try:
        return VERIFIERS[name]
    except KeyError:
        raise KeyError(f"unknown verifier {name!r}; presets: {', '.join(VERIFIERS)}") from None
