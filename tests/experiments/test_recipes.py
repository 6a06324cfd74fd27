"""docs/recipes.md run as written: each recipe's ```bash block, taken from the page, runs with bash at the tiny scale
the page gives for CI ($TINY), on fixture copies of the datasets in their native layouts (tests/data/layouts.py;
MUSAN and RIRS_NOISES as the augmentation tests write them). The outputs are checked, not just the exit status:
score files and score.py's numbers, the LM stage's record, the subject means against NumPy, the tables."""

import csv
import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from experiments.configs import preset
from research import sweeps
from research.config_parse import to_dict
from research.data import manifest
from tests.data import layouts
from tests.data.test_augment import write_sounds

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "recipes.md"


def blocks() -> dict[str, str]:
    """Each ```bash block of docs/recipes.md under the `## ` heading it follows."""
    found, heading = {}, None
    for part in re.split(r"^(## .*|```bash\n(?:.*\n)*?```)$", PAGE.read_text(), flags=re.M):
        if part.startswith("## "):
            heading = part[3:]
        elif part.startswith("```bash"):
            found[heading] = part[len("```bash\n") : -len("```")]
    return found


def tiny() -> str:
    """The page's CI value of $TINY: the indented lines after '... sets `TINY` to'."""
    text = PAGE.read_text().split("sets `TINY` to\n\n", 1)[1]
    return " ".join(line.strip() for line in text.split("\n\n", 1)[0].splitlines())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """The recipes' data variables: a fixture of every dataset in its native layout (and MUSAN, RIRS_NOISES)."""
    root = tmp_path_factory.mktemp("datasets")
    layouts.voxceleb1(root / "VoxCeleb1")
    with pytest.MonkeyPatch.context() as patch:  # a second VoxCeleb2 test person: the val split verifies two people
        patch.setattr(layouts, "VOX2", layouts.VOX2 + [("id09998", "n009998", "Fifth_Person", "f", "test")])
        layouts.voxceleb2(root / "VoxCeleb2")
    with pytest.MonkeyPatch.context() as patch:  # a person in every part: two people to match in val and test
        parts = ("training", "validation", "test")
        more = [(f"Cz3nVqJxh9k.00{k}.mp4", "Cz3nVqJxh9k", part, "1", "2", "6") for k, part in enumerate(parts, 1)]
        patch.setattr(layouts, "VIDEOS", layouts.VIDEOS + more)
        layouts.firstimpressions(root / "FirstImpressions")
    # 18 more training people (and 1 test person in VGGFace2): open val splits of two people to verify
    people = [(f"id2{k:04d}", f"n1{k:05d}", f"Person_{k}", "mf"[k % 2], "dev" if k < 18 else "test") for k in range(19)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layouts, "VOX2", layouts.VOX2 + people)
        layouts.vggface2(root / "VGGFace2")
        patch.setattr(layouts, "VOX1", layouts.VOX1 + [(v, name, g, "UK", "dev") for v, _, name, g, _ in people[:18]])
        layouts.voxceleb1(root / "VoxCeleb1-many")
        for _, name, *_ in layouts.VOX1:  # VGGFace images of every VoxCeleb1 person
            for image in ("00000001", "00000002"):
                layouts.write_face(root / "VGGFace" / name / f"{image}.jpg", (0, 0, 48, 40), layouts.face_colour(name))
    musan, rirs = write_sounds(root)
    folders = {"VOX1": "VoxCeleb1", "VOX2": "VoxCeleb2", "VGGFACE2": "VGGFace2", "VGGFACE": "VGGFace",
               "FI": "FirstImpressions", "VOX1_MANY": "VoxCeleb1-many"}  # fmt: skip
    return {k: str(root / v) for k, v in folders.items()} | {"MUSAN": str(musan), "RIRS": str(rirs)}


def run(heading: str, data: dict[str, str], out: Path, **env: str) -> str:
    """Run the block under `heading` with bash (stopping at the first failing command); its stdout."""
    variables = data | {"OUT": str(out), "TINY": tiny(), "SEEDS": "0"} | env
    # One thread a process: on a shared 2-core machine torch's two OpenMP threads can spin against other processes
    # (the same tiny matching run measured 2.2 s and 16-56 s of training and evaluation; 2.1-2.3 s with one thread).
    variables["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", blocks()[heading]], cwd=ROOT,
                          env=os.environ | variables, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def record(run_dir: Path) -> dict:
    found = json.loads((run_dir / "record.json").read_text())
    assert found["status"] == "finished", found["error"]
    return found


def table_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_the_page_has_a_block_per_recipe():
    assert [h.split(": ")[-1] for h in blocks()] == [
        "`vox_resnet34` and `vox_ecapa`", "`vggface2_iresnet50`", "`fame_match`", "`first_impressions_age`",
    ]  # fmt: skip


def test_vox_ecapa_is_vox_resnet34_with_another_backbone():
    """As WeSpeaker's ecapa_tdnn.yaml differs from its resnet.yaml in the model only. CI runs the speaker block once,
    with RECIPE=vox_resnet34 and its real backbone (docs/recipes.md: RECIPE=vox_ecapa ran end to end outside CI;
    ecapa_c512 itself is tested in tests/encoders/), and leaves the speaker backbone to the preset."""
    resnet, ecapa = to_dict(preset("vox_resnet34")), to_dict(preset("vox_ecapa"))
    differ = {(s, k) for s in resnet for k in resnet[s] if resnet[s][k] != ecapa[s][k]}
    assert differ == {("model", "voice"), ("model", "dim")}
    assert (ecapa["model"]["voice"], ecapa["model"]["dim"]) == ("ecapa_c512", 192)
    assert not any(flag.startswith(("--model.voice=", "--model.dim=")) for flag in tiny().split())


@pytest.mark.slow
def test_speaker_recipe_trains_fine_tunes_embeds_and_scores_vox1(data, tmp_path):
    recipe = "vox_resnet34"
    stdout = run("Speaker verification: `vox_resnet34` and `vox_ecapa`", data, tmp_path, RECIPE=recipe)
    stage1, lm = record(tmp_path / "runs" / recipe), record(tmp_path / "runs" / f"{recipe}-lm")
    augment = stage1["config"]["data"]["augment"]
    assert (augment["musan"], augment["rirs"]) == (data["MUSAN"], data["RIRS"]) and augment["noise_prob"] == 0.3
    assert stage1["config"]["data"]["speed_perturb_labels"]
    assert (stage1["config"]["loss"]["arcface"]["scale"], stage1["config"]["loss"]["arcface"]["margin"]) == (32.0, 0.2)
    assert (stage1["config"]["model"]["voice"], stage1["config"]["model"]["dim"]) == ("resnet34_speaker", 256)
    assert lm["config"]["loss"]["arcface"]["margin"] == 0.5  # the LM stage: margin 0.5 from the whole stage-1 run
    assert lm["config"]["model"]["init_model"] == str(tmp_path / "runs" / recipe)
    assert lm["config"]["optim"]["lr"] == pytest.approx(stage1["config"]["optim"]["lr"] * 1e-3)

    out = tmp_path / "runs" / f"{recipe}-lm"
    rows = {r.id: r for r in manifest.read(tmp_path / "vox2_vox1.csv")}
    train, means = load_file(str(out / "vox2_dev.safetensors")), load_file(str(out / "vox2_dev_speakers.safetensors"))
    assert {rows[k].open_split for k in train} == {"train"}
    vox2_dev = [v for v, _, _, _, part in layouts.VOX2 if part == "dev"]
    assert sorted(means) == vox2_dev  # the whole of vox2_dev trains (--val-fraction 0): WeSpeaker's cohort
    for subject, mean in means.items():  # the AS-norm cohort: each speaker's mean embedding (WeSpeaker's vector_mean)
        np.testing.assert_allclose(mean, np.mean([v for k, v in train.items() if rows[k].subject == subject], axis=0))
    vox1 = load_file(str(out / "vox1.safetensors"))
    assert sorted(vox1) == sorted(k for k, r in rows.items() if r.open_split == "test")

    for name, trials in (("veri_test2", 4), ("list_test_all2", 2)):  # the fixture's Vox1-O and Vox1-E
        result = json.loads((out / f"{name}.json").read_text())
        assert result["trials"] == trials and result["skipped"] == 0
        assert all(0 <= result[k] <= 1 and math.isfinite(result[k]) for k in ("eer", "min_dcf_0.01", "min_dcf_0.05"))
        scores = (out / f"{name}.scores").read_text().splitlines()
        assert len(scores) == trials and all(math.isfinite(float(line.split()[2])) for line in scores)
    table = (out / "vox1.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| veri_test2 | ") and table[3].startswith("| list_test_all2 | ")
    assert table[2] in stdout


@pytest.mark.slow
def test_face_recipe_trains_on_vggface2_and_makes_its_table(data, tmp_path):
    run("Face recognition: `vggface2_iresnet50`", data, tmp_path)
    found = record(tmp_path / "runs" / "vggface2_iresnet50-0")
    assert found["config"]["loss"]["arcface"]["scale"] == 64.0
    assert found["config"]["data"]["augment"]["flip_prob"] == 0.5
    (row,) = table_rows(tmp_path / "tables" / "vggface2_iresnet50.csv")
    assert float(row["test/eer mean"]) == found["summary"]["test/eer"] and 0 <= found["summary"]["test/eer"] <= 1


@pytest.mark.slow
def test_matching_recipe_trains_on_vox1_faces_and_voices_and_makes_its_table(data, tmp_path):
    run("Face-voice matching: `fame_match`", data, tmp_path, VOX1=data["VOX1_MANY"])
    found = record(tmp_path / "runs" / "fame_match-0")
    assert found["config"]["model"]["task"] == "match" and found["config"]["loss"]["identity_weight"] == 1.0
    (row,) = table_rows(tmp_path / "tables" / "fame_match.csv")
    eer = found["summary"]["test/crossmodal/eer"]
    assert float(row["test/crossmodal/eer mean"]) == eer and 0 <= eer <= 1 and math.isfinite(eer)


def test_the_age_sweep_file_is_the_grid_of_the_age_block():
    block = blocks()["Age group on First Impressions: `first_impressions_age`"]
    rows = re.search(r"ROWS=\$\{ROWS:-(.*)\}", block).group(1).split()
    sweep = sweeps.load_sweep(ROOT / "experiments" / "sweeps" / "first_impressions_age.yaml")
    assert sweep["parameters"]["model.modalities"]["values"] == rows
    assert sweep["parameters"]["run.seed"]["values"] == [0, 1, 2]
    assert "--config=first_impressions_age" in sweep["command"]


@pytest.mark.slow
def test_age_recipe_trains_on_first_impressions_and_makes_its_table(data, tmp_path):
    run("Age group on First Impressions: `first_impressions_age`", data, tmp_path, ROWS="face,voice,text")
    found = record(tmp_path / "runs" / "first_impressions_age-face,voice,text-0")
    assert found["config"]["data"]["target"] == "age" and found["config"]["loss"]["class_weights"] == "balanced"
    (row,) = table_rows(tmp_path / "tables" / "first_impressions_age.csv")
    assert float(row["test/acc mean"]) == found["summary"]["test/acc"]
