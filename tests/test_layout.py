"""The layout rule that tells a reader where they are: framework imports only under torch/ and jax/."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = {"torch": "torch", "torchaudio": "torch", "jax": "jax", "flax": "jax", "optax": "jax"}


def python_files() -> list[Path]:
    skip = {".git", ".cache", "runs", "build", ".venv"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def imported_frameworks(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {FRAMEWORKS[n.split(".")[0]] for n in names if n.split(".")[0] in FRAMEWORKS}
    return found


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_framework_imports_live_under_their_folder(path):
    """Tests are the one exception: a test file names its framework (`test_fusion_torch.py`) instead,
    because a tests/.../torch/ folder could shadow the framework on sys.path. A jax test may also import
    torch: the torch twin is the reference its parity tests compare with."""
    rel = path.relative_to(ROOT)
    frameworks = imported_frameworks(path)
    for framework in frameworks:
        if rel.parts[0] == "tests":
            named = framework in path.stem or (framework == "torch" and "jax" in frameworks and "jax" in path.stem)
            assert named, f"{rel} imports {framework}: name it *_{framework}.py"
        else:
            assert framework in rel.parts[:-1], f"{rel} imports {framework} outside a {framework}/ folder"


def test_the_rule_detects_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\nfrom torch import nn\n")
    assert imported_frameworks(bad) == {"torch"}
