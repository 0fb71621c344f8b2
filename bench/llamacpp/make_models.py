"""Tiny random-weight llama-architecture GGUF models for a REAL speculative llama.cpp sweep on a CPU.

A target model and drafters made of the target's first blocks (same embedding, final norm and
head, same vocabulary), so the drafters' proposals agree with the target's greedy choices part of
the time: the acceptance llama.cpp measures is real, set by how much the target's later blocks
move the logits (``--late-scale`` shrinks their output projections: a larger acceptance). The
weights are random, so the texts are gibberish; the latencies are real CPU measurements of real
llama.cpp speculative decoding. Same ``--seed``, same files.

Also writes ``prompts.jsonl``: prompts of pseudo-words from the vocabulary (one token each), the
GuideLLM ``json_file`` data of the sweep.

Needs the ``gguf`` package (``pip install gguf``; not a bayes_sd dependency).

    python bench/llamacpp/make_models.py --out sweep-llamacpp/models

Defaults: a 466 M-parameter target (16 blocks, width 1536, FFN 4096, vocabulary 4096, f16) and
drafters of its first 1 and 2 blocks (41 M and 69 M parameters with the shared embedding and head).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SYLLABLES = ["ka", "to", "mi", "ra", "su", "ne", "lo", "pi", "de", "fu", "go", "ba", "ve", "zu", "ri", "ho",
             "na", "te", "mo", "li", "sa", "ku", "je", "wa", "po", "di", "ye", "cu", "xe", "qi", "ne", "vo"]


def vocabulary(size: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """SentencePiece-style pieces closed under llama.cpp's merges, and the words a prompt uses.

    <unk>, <s>, </s>, the 256 byte tokens, the letters, the syllables, "▁" + syllable, and
    words of two or three syllables ("▁" + syllables); each word is reachable by merging
    pieces that are in the vocabulary (syllable pairs, then the "▁"-prefixed stem plus a
    syllable), so it tokenizes to one token. Returns (vocabulary, words without the "▁").
    """
    syllables = sorted(set(SYLLABLES))
    letters = sorted({c for s in syllables for c in s})
    pieces = ["▁"] + letters + syllables + ["▁" + s for s in syllables]
    stems = ["▁" + a + b for a in syllables for b in syllables]
    n_long = size - 259 - len(pieces) - len(stems)
    longs = sorted({"▁" + "".join(rng.choice(syllables, 3)) for _ in range(4 * n_long)})
    longs = sorted(rng.choice(longs, n_long, replace=False)) if n_long > 0 else []
    vocab = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces + stems + list(longs)
    return vocab[:size], [w[1:] for w in stems + list(longs)]


def write_model(path: Path, *, blocks: list[dict], shared: dict, cfg: dict, vocab: list[str]) -> None:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(path.stem)
    w.add_context_length(cfg["context"])
    w.add_embedding_length(cfg["hidden"])
    w.add_block_count(len(blocks))
    w.add_feed_forward_length(cfg["ffn"])
    w.add_head_count(cfg["heads"])
    w.add_head_count_kv(cfg["kv_heads"])
    w.add_rope_dimension_count(cfg["hidden"] // cfg["heads"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_token_list(vocab)
    w.add_token_scores([0.0] * 259 + [float(len(t)) for t in vocab[259:]])  # longer pieces merge first
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    w.add_token_types(types + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (len(vocab) - 259))
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_tensor("token_embd.weight", shared["embd"])
    w.add_tensor("output_norm.weight", shared["norm"])
    w.add_tensor("output.weight", shared["head"])
    for i, b in enumerate(blocks):
        for name, array in b.items():
            w.add_tensor(f"blk.{i}.{name}.weight", array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for target.gguf, draft-L<n>.gguf, prompts.jsonl")
    ap.add_argument("--layers", type=int, default=16, help="target blocks (default 16)")
    ap.add_argument("--hidden", type=int, default=1536, help="embedding width (default 1536)")
    ap.add_argument("--ffn", type=int, default=4096, help="feed-forward width (default 4096)")
    ap.add_argument("--heads", type=int, default=16, help="attention heads (default 16)")
    ap.add_argument("--vocab", type=int, default=4096, help="vocabulary size (default 4096)")
    ap.add_argument("--drafters", default="1,2", help="blocks of each drafter, comma-separated (default 1,2)")
    ap.add_argument("--second-scale", type=float, default=0.3,
                    help="scale of the second block's output projections (default 0.3): the one-block drafter "
                         "misses it and is accepted less than the two-block one")
    ap.add_argument("--late-scale", type=float, default=0.05,
                    help="scale of the output projections of the later blocks (default 0.05): smaller, they move "
                         "the logits less and every drafter is accepted more")
    ap.add_argument("--prompts", type=int, default=400, help="prompts written (default 400)")
    ap.add_argument("--prompt-words", type=int, default=64, help="pseudo-words (tokens) per prompt (default 64)")
    ap.add_argument("--output-tokens", type=int, default=32,
                    help="output tokens per request, GuideLLM's output_tokens_count (default 32; with ignore_eos)")
    ap.add_argument("--seed", type=int, default=20261205)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    h, f, v = args.hidden, args.ffn, args.vocab
    vocab, words = vocabulary(v, rng)
    cfg = {"context": 4096, "hidden": h, "ffn": f, "heads": args.heads, "kv_heads": args.heads}

    def mat(rows, cols, scale=1.0):  # GGUF stores (out, in) as numpy (rows=out, cols=in)
        return (rng.standard_normal((rows, cols), dtype=np.float32) * scale / np.sqrt(cols)).astype(np.float16)

    shared = {"embd": (rng.standard_normal((v, h), dtype=np.float32)).astype(np.float16),
              "norm": np.ones(h, np.float32), "head": mat(v, h, 4.0)}
    blocks = []
    for i in range(args.layers):
        s = 1.0 if i == 0 else args.second_scale if i == 1 else args.late_scale
        blocks.append({"attn_norm": np.ones(h, np.float32), "attn_q": mat(h, h), "attn_k": mat(h, h),
                       "attn_v": mat(h, h), "attn_output": mat(h, h, s), "ffn_norm": np.ones(h, np.float32),
                       "ffn_gate": mat(f, h), "ffn_up": mat(f, h), "ffn_down": mat(h, f, s)})
    params = sum(a.size for b in blocks for a in b.values()) + sum(a.size for a in shared.values())
    write_model(out / "target.gguf", blocks=blocks, shared=shared, cfg=cfg, vocab=vocab)
    made = {"target.gguf": {"blocks": args.layers, "params": int(params)}}
    for n in (int(x) for x in args.drafters.split(",")):
        name = f"draft-L{n}.gguf"
        write_model(out / name, blocks=blocks[:n], shared=shared, cfg=cfg, vocab=vocab)
        made[name] = {"blocks": n, "params": int(sum(a.size for b in blocks[:n] for a in b.values())
                                                  + sum(a.size for a in shared.values()))}
    with open(out / "prompts.jsonl", "w") as fh:
        for _ in range(args.prompts):
            fh.write(json.dumps({"prompt": " ".join(rng.choice(words, args.prompt_words)),
                                 "output_tokens_count": args.output_tokens}) + "\n")
    (out / "models.json").write_text(json.dumps({"args": vars(args), "models": made}, indent=2) + "\n")
    for name, m in made.items():
        print(f"{name}: {m['blocks']} blocks, {m['params'] / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()
