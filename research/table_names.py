"""How tables print: the paper names of config keys, metrics and values (VALUE_NAMES, COLUMN_NAMES, a
labels file on top: Names) and the metrics shown in percent. The LaTeX and Markdown tables and the chart use
them; the CSV keeps the config's own values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PERCENT = ("eer", "dcf")  # metrics the LaTeX, Markdown and chart show in percent (the records hold fractions)


def in_percent(metric: str) -> bool:
    """EER and detection costs print in percent (x 100)."""
    return any(word in metric for word in PERCENT)


# Paper names of the project's known config values, per key; a list value (modalities) is named part by
# part, joined by " + ". Values not listed here print as they are; `--labels FILE` adds or overrides names.
VALUE_NAMES: dict[str, dict[str, str]] = {
    "loss.name": {
        "softmax": "Softmax",
        "sphereface": "SphereFace",
        "sphereface_r": "SphereFace-R",
        "sphereface2": "SphereFace2",
        "cosface": "CosFace",
        "arcface": "ArcFace",
        "mask_proxy": "Mask Proxy",
        "contrastive": "Contrastive",
        "triplet": "Triplet",
        "cross_modal": "Cross-modal",
    },
    "model.fusion": {
        "early": "Early",
        "stack": "Channel stacking",
        "cross_attn": "Cross-attention",
        "late": "Late",
        "gated": "Gated",
        "concat": "Feature fusion",
        "bottleneck": "Bottleneck",
        "ensemble": "Ensemble (separately trained)",
    },
    "model.modalities": {"face": "Face", "voice": "Voice", "text": "Text"},
    "model.combine": {"mean": "Mean", "product": "Product", "learned": "Learned"},
    "model.combine_features": {"add": "Add", "mul": "Multiply", "concat": "Concatenate"},
    "model.face": {"face_cnn": "CNN", "face_vit": "ViT"},
    "model.voice": {"voice_ecapa": "ECAPA-TDNN", "voice_vit": "ViT"},
    "model.text": {"text_tiny": "Tiny transformer", "text_hf": "MiniLM"},
    "loss.cross_modal.kind": {"infonce": "InfoNCE (CLIP)", "sigmoid": "Sigmoid (SigLIP)"},
}
# Column headers of the known keys; other keys print as their last dotted part, capitalised.
COLUMN_NAMES = {
    "loss.name": "Loss",
    "loss.{loss.name}.margin": "Margin",
    "model.fusion": "Fusion",
    "model.modalities": "Modalities",
    "model.combine": "Combination",
    "model.combine_features": "Feature combination",
    "model.dim": "Width",
    "optim.lr": "Learning rate",
    "data.synthetic.noise": "Noise",
    "data.synthetic.missing": "Missing",
    "data.synthetic.carry": "Label carried by",
    "data.synthetic.identities": "People",
    "loss.cross_modal.kind": "Cross-modal loss",
    "loss.identity_weight": "Identity-head weight",
}


@dataclass
class Names:
    """How keys, metrics and values print in the LaTeX and Markdown tables and the chart (the CSV keeps the
    config's own values). `columns`: key or metric -> header; `values`: key -> {value: name}."""

    columns: dict[str, str] = field(default_factory=lambda: dict(COLUMN_NAMES))
    values: dict[str, dict[str, str]] = field(default_factory=lambda: {k: dict(v) for k, v in VALUE_NAMES.items()})

    def update(self, labels: dict[str, Any]) -> None:
        """Add a labels file's names: {"columns": {key: header}, "values": {key: {value: name}}}."""
        self.columns |= {str(k): str(v) for k, v in (labels.get("columns") or {}).items()}
        for key, names in (labels.get("values") or {}).items():
            self.values.setdefault(str(key), {}).update({str(v): str(n) for v, n in names.items()})

    def column(self, key: str) -> str:
        return self.columns.get(key) or re.sub(r"\{[^}]*\}", "", key).split(".")[-1].capitalize()

    def value(self, key: str, text: str) -> str:
        names = self.values.get(key, {})
        parts = text.split("+")
        if text not in names and len(parts) > 1 and all(part in names for part in parts):
            return " + ".join(names[part] for part in parts)
        return names.get(text, text)
