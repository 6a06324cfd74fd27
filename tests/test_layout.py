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


# The import graph is layered: experiments/ and benchmarks/ on top, research/ below them, the model libraries
# (encoders/, fusion/, losses/) at the bottom. What the model libraries may import from research/, each with
# the reason; nothing else of research/ (its config, data, trainers) is theirs to import.
PACKAGES = ("research", "encoders", "fusion", "losses", "experiments", "benchmarks")
LIBRARIES = ("encoders", "fusion", "losses")
ALLOWED_FROM_RESEARCH = {
    # The package root (empty): Python runs it before any module of research/.
    "research",
    # The module path as registry (`build(package, backend, name)`), framework-free: each package root's build.
    "research.registry",
}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file (also inside functions, and under TYPE_CHECKING),
    with the packages Python runs on the way (importing a.b.c runs a and a.b)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    found = set()
    for target in targets:
        while target and target not in known:  # `import research.data.loader` -> the module; `numpy` -> ""
            target = target.rpartition(".")[0]
        parts = target.split(".") if target else []
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in found if m in known and m != name and not name.startswith(f"{m}.")}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle():
    assert circles(import_graph()) == []


@pytest.mark.parametrize("library", LIBRARIES)
def test_model_libraries_import_from_research_only_the_allowed_modules(library):
    graph = import_graph()
    upward = {
        name: sorted(t for t in targets if t.split(".")[0] == "research" and t not in ALLOWED_FROM_RESEARCH)
        for name, targets in graph.items()
        if name.split(".")[0] == library
    }
    assert {name: found for name, found in upward.items() if found} == {}


def test_the_graph_rules_detect_a_circle_and_an_upward_import(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    (tmp_path / "m.py").write_text("import research.data.loader\n\ndef f():\n    from research.jax import model\n")
    names = {"research", "research.data", "research.data.loader", "research.jax", "research.jax.model"}
    known = dict.fromkeys(names, Path())
    assert imported_modules("encoders.jax.m", tmp_path / "m.py", known) == names
