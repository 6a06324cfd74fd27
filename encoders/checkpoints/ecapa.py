"""Published ECAPA-TDNN files -> the state dict of encoders/{torch,jax}/ecapa.py's backbone (WeSpeaker's names).

WeSpeaker's avg_model.pt (torch.save of the training model's state dict, without a DataParallel prefix) holds the
speaker model under its own names plus the training classifier `projection.*` (ArcMargin class centres), dropped
here.

SpeechBrain's embedding_model.ckpt (speechbrain.lobes.models.ECAPA_TDNN) is renamed by the table below. Its design
differs from WeSpeaker's in three places, so its embeddings cannot be reproduced, only its frame-level layers:
- SpeechBrain's Res2Net block passes its first channel group through and convolves the others; WeSpeaker's passes
  the last: the same function up to a rotation of the groups, applied here to the 1x1 convs around the block
  (exact);
- SpeechBrain normalises the aggregated features (mfa.norm, a BatchNorm after the ReLU) and the attention's hidden
  layer (asp.tdnn: conv, ReLU, BatchNorm before tanh); WeSpeaker has neither, so they are dropped (noted);
- its global-context std in the pooling is the biased one (WeSpeaker's is unbiased, torch.var).
Its convolutions pad by reflection (WeSpeaker's by zeros), which changes the frames near either end.
"""

from __future__ import annotations

import numpy as np

SCALE = 8  # Res2Net groups in both implementations


def speechbrain_names() -> dict[str, str]:
    """SpeechBrain ECAPA_TDNN module path -> WeSpeaker module path (each followed by .weight, .bias, ...)."""
    names = {"blocks.0.conv.conv": "layer1.conv", "blocks.0.norm.norm": "layer1.bn"}
    for i in (1, 2, 3):
        sb, ws = f"blocks.{i}", f"layer{i + 1}.se_res2block"
        names |= {
            f"{sb}.tdnn1.conv.conv": f"{ws}.0.conv",
            f"{sb}.tdnn1.norm.norm": f"{ws}.0.bn",
            f"{sb}.tdnn2.conv.conv": f"{ws}.2.conv",
            f"{sb}.tdnn2.norm.norm": f"{ws}.2.bn",
            f"{sb}.se_block.conv1.conv": f"{ws}.3.linear1",
            f"{sb}.se_block.conv2.conv": f"{ws}.3.linear2",
        }
        for j in range(SCALE - 1):
            names |= {
                f"{sb}.res2net_block.blocks.{j}.conv.conv": f"{ws}.1.convs.{j}",
                f"{sb}.res2net_block.blocks.{j}.norm.norm": f"{ws}.1.bns.{j}",
            }
    return names | {
        "mfa.conv.conv": "conv",
        "asp.tdnn.conv.conv": "pool.linear1",
        "asp.conv.conv": "pool.linear2",
        "asp_bn.norm": "bn",
        "fc.conv": "linear",
    }


DROPPED = {
    "mfa.norm.norm": "SpeechBrain's BatchNorm of the aggregated frame features (mfa.norm), which WeSpeaker lacks",
    "asp.tdnn.norm.norm": "SpeechBrain's BatchNorm in the pooling's attention (asp.tdnn.norm), which WeSpeaker lacks",
}


def rotate_groups(value: np.ndarray, axis: int) -> np.ndarray:
    """Move Res2Net group g + 1 to place g along `axis` (and group 0 last): SpeechBrain's group order to WeSpeaker's."""
    groups = np.split(value, SCALE, axis)
    return np.concatenate([*groups[1:], groups[0]], axis)


def from_speechbrain(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """SpeechBrain's ECAPA_TDNN state dict -> WeSpeaker's names and layouts."""
    names = speechbrain_names()
    out, dropped, unknown = {}, set(), []
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module in DROPPED:
            dropped.add(module)
            continue
        if module not in names:
            unknown.append(key)
            continue
        target = names[module]
        if target.endswith((".3.linear1", ".3.linear2")) or target == "linear":
            value = value[..., 0] if leaf == "weight" else value  # 1x1 Conv1d (O, I, 1) -> Linear (O, I)
        if target.endswith(".0.conv") or (target.endswith(".0.bn") and leaf != "num_batches_tracked"):
            value = rotate_groups(value, 0)  # the outputs that the Res2Net block splits
        if target.endswith(".2.conv") and leaf == "weight":
            value = rotate_groups(value, 1)  # the inputs that it concatenates
        out[f"{target}.{leaf}"] = value
    if unknown:
        raise KeyError(f"keys of no SpeechBrain ECAPA_TDNN part: {unknown}")
    notes = ["renamed SpeechBrain ECAPA_TDNN to WeSpeaker's names; Res2Net groups rotated to WeSpeaker's order"]
    notes += [f"dropped {DROPPED[m]}: the embeddings differ from SpeechBrain's" for m in sorted(dropped)]
    return out, notes


def adapt(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """WeSpeaker's avg_model.pt or SpeechBrain's embedding_model.ckpt -> the backbone's state dict, and notes
    (`shapes` is not needed: the names say everything)."""
    if "blocks.0.conv.conv.weight" in state:
        return from_speechbrain(state)
    projection = sorted(k for k in state if k.startswith("projection."))
    notes = [f"dropped WeSpeaker's training classifier {', '.join(projection)}"] if projection else []
    return {k: v for k, v in state.items() if not k.startswith("projection.")}, notes
