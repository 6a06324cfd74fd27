"""The model card of a dry run (`--run.dry_run=true`): the configured model built in the chosen backend (published
weights loaded, so a bad weight file fails here too), its trainable parameters per part and its forward FLOPs
per sample, printed and written to RUN_DIR/model.json, without training. ablate.py's `--params` column reads the
same counts from each run's summary (`params`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import ModuleType

from research.config import MODALITIES, Config
from research.data.loader import load

PARTS = (*MODALITIES, "fusion", "heads")
FLOP_BATCH = 2  # samples of the batch whose forward is counted (FLOPs per sample do not depend on it)


def model_card(cfg: Config, backend: ModuleType) -> tuple[dict, list[str]]:
    """({"params": {part: N, ..., "total": N}, "flops_per_sample": N}, notes of the weight files)."""
    data = dataclasses.replace(cfg.data, cache=False, batch_size=FLOP_BATCH)  # the manifest; one batch decoded
    splits = load(data)
    device = backend.place(cfg.run.device)
    model, notes = backend.new_model(cfg, splits)
    report = backend.parameter_report(model)
    params = {part: report.get(f"params/{part}", 0) for part in PARTS} | {"total": report["params"]}
    flops = backend.flops_per_sample(model, splits.train, dataclasses.replace(cfg, data=data), device)
    return {"params": params, "flops_per_sample": flops}, notes


def card_table(cfg: Config, card: dict) -> str:
    """The card as a small table: a line per part, then the total and the FLOPs."""
    m = cfg.model
    names = {"face": m.face, "voice": m.voice, "text": m.text, "fusion": m.fusion, "heads": cfg.loss.name}
    lines = [f"model card ({cfg.run.backend} backend)", f"  {'part':<7} {'module':<17} {'parameters':>13}"]
    for part in PARTS:
        if part in m.modalities or part in ("fusion", "heads"):
            lines.append(f"  {part:<7} {names[part]:<17} {card['params'][part]:>13,}")
    lines.append(f"  {'total':<7} {'':<17} {card['params']['total']:>13,}")
    lines.append(f"  forward FLOPs per sample: {card['flops_per_sample'] / 1e9:.3f} G")
    return "\n".join(lines)


def write_card(run_dir: Path, card: dict) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "model.json"
    path.write_text(json.dumps(card, indent=1) + "\n")
    return path
