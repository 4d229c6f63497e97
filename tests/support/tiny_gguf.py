"""A tiny randomly initialised llama model written as a GGUF file at test time, for llama.cpp's
OpenAI-compatible server (tests/engines/test_llama_cpp_server.py): meaningless text, but a real model that
the real server loads, tokenizes for and samples from under its JSON-schema grammar.

Its vocabulary is SentencePiece-style: the three specials, the 256 byte-fallback tokens, the space
marker and printable ASCII. Under a grammar a random model picks about evenly among the allowed
tokens, so a JSON string could run on to `max_tokens`; the weights are biased so that it does not:
every embedding carries a constant in dimension 0 (the rest is small noise), which after the final
norm is about the same for every position, and the output rows read that dimension to lift the
logits of `"` (strings end after a few characters) and of the end token (the answer ends when the
JSON does), and to sink the byte tokens (llama-cpp-python's grammar lets raw control bytes into
strings, which strict JSON refuses).
"""

from pathlib import Path

import gguf
import numpy as np

EMBEDDING, LAYERS, HEADS, FEED_FORWARD, CONTEXT = 64, 2, 4, 128, 2048
QUOTE_BONUS, END_BONUS, BYTE_PENALTY = 2.0, 1.0, -15.0
"""Logit offsets; the quote's stays under ln(20) so the server's default min_p=0.05 keeps other tokens."""
SPACE = "\u2581"  # SentencePiece's space marker
END_ID = 2


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = [("<unk>", gguf.TokenType.UNKNOWN), ("<s>", gguf.TokenType.CONTROL), ("</s>", gguf.TokenType.CONTROL)]
    tokens += [(f"<0x{byte:02X}>", gguf.TokenType.BYTE) for byte in range(256)]
    tokens += [(piece, gguf.TokenType.NORMAL) for piece in [SPACE, *map(chr, range(0x21, 0x7F))]]
    scores = [0.0] * (3 + 256) + [-float(rank) for rank in range(1, len(tokens) - 3 - 256 + 1)]
    return [text for text, _ in tokens], scores, [int(kind) for _, kind in tokens]


def write_tiny_llama(path: Path, seed: int = 0) -> None:
    tokens, scores, kinds = _vocabulary()
    rng = np.random.default_rng(seed)

    def noise(*shape: int, std: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(EMBEDDING // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(kinds)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(END_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(True)

    # numpy shapes are (out, in): GGUF stores the dimensions reversed, as llama.cpp expects them
    embeddings = noise(len(tokens), EMBEDDING)
    embeddings[:, 0] = 1.0
    writer.add_tensor("token_embd.weight", embeddings)
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        for norm in ("attn_norm", "ffn_norm"):
            writer.add_tensor(f"{block}.{norm}.weight", np.ones(EMBEDDING, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", noise(EMBEDDING, EMBEDDING))
        writer.add_tensor(f"{block}.ffn_gate.weight", noise(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{block}.ffn_up.weight", noise(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{block}.ffn_down.weight", noise(EMBEDDING, FEED_FORWARD))
    writer.add_tensor("output_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
    output = noise(len(tokens), EMBEDDING, std=0.1)
    normed = float(np.sqrt(EMBEDDING))  # dimension 0 after the final norm
    output[:, 0] = [BYTE_PENALTY / normed if kind in (gguf.TokenType.BYTE, gguf.TokenType.UNKNOWN) or index == 1
                    else 0.0 for index, kind in enumerate(kinds)]
    output[tokens.index('"'), 0] = QUOTE_BONUS / normed
    output[END_ID, 0] = END_BONUS / normed
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
