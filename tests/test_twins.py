"""Every torch part has a jax twin with the same file name, class and function names and parameters.

Read from the source (ast), so the test needs neither framework: a torch file's public classes and
functions, and each class's public methods, must exist in the jax file of the same name with the same
parameter names, kinds and defaults. The jax side may add `rngs` (NNX modules take their random
streams that way), annotations may differ (torch.Tensor / jax.Array), and torch's `forward` is jax's
`__call__`.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ("encoders", "fusion", "losses", "research")
# Modules share their keyword arguments so that one config builds either backend. The trainers' files
# (research/) share names; their signatures may differ where the frameworks do (a torch device, a jax mesh).
SAME_SIGNATURES = ("encoders", "fusion", "losses")

# Files that exist on one side only, each with the reason.
ONE_SIDED = {
    # torch builds in what these give jax: layers with torch's semantics and initialisation.
    "encoders/jax/layers.py",
    # Weight conversion between the twins: it needs both sides' conventions, and lives in jax/.
    "encoders/jax/convert.py",
}
_BERT = (
    "Attention",
    "Embeddings",
    "Encoder",
    "Intermediate",
    "Layer",
    "Model",
    "Output",
    "SelfAttention",
    "SelfOutput",
)


# Names defined on one side only, each with the reason.
def _methods(*classes: str) -> set[str]:
    """A class with its __init__ and __call__, as the twin walk names them."""
    return {f"{c}{m}" for c in classes for m in ("", ".__init__", ".__call__")}


ONE_SIDED_NAMES: dict[str, set[str]] = {
    # torch's F.scaled_dot_product_attention is a fused kernel; jax writes the attention and its backward out.
    "encoders/jax/blocks.py": {"attention"},
    # torchaudio provides the window, the filterbank and the masking that jax's front end writes out.
    "encoders/jax/frontend.py": {"hann_window", "linspace", "mask_along_axis", "mel_filterbank"},
    # torch wraps transformers' BertModel (and keeps a frozen one in eval mode by overriding train());
    # transformers ships no Flax model, so jax writes the BERT, its loader, and freezes by making it Buffers.
    "encoders/torch/text_hf.py": {"TextHf.train"},
    "encoders/jax/text_hf.py": {f"Bert{part}{method}" for part in _BERT for method in ("", ".__init__", ".__call__")}
    | {"frozen", "load_pretrained"},
    # timm and torchvision give torch the published backbones; jax writes them out with the same parameter names.
    "encoders/jax/vit.py": _methods("Attention", "Mlp", "Block", "PatchEmbed", "VisionTransformer") | {"linear"},
    "encoders/jax/mobilevit.py": _methods("ConvNormAct", "BottleneckBlock", "MobileVitBlock", "ByobNet") | {"conv"},
    "encoders/jax/resnet.py": _methods("BasicBlock", "Bottleneck", "ResNet") | {"conv", "downsample"},
    "encoders/jax/vgg.py": _methods("VGG") | {"initialised"},
    # optax scales the encoders' updates through a mask of the parameter tree; torch gives them their own groups.
    "research/jax/trainer.py": {"make_train_step", "train_state", "in_encoders"},
    # A published checkpoint is a torch file (safetensors or a weights_only pickle): jax reads it with torch's reader.
    "research/torch/weights.py": {"read"},
    # torch all-gathers the batch across ranks by hand; jax's shard_map gathers inside block_loss.
    "losses/torch/sharded.py": {"gather_batch"},
    "losses/jax/sharded.py": {"ShardedHead.block_loss"},
    # jax arrays live on a mesh: moving them to and from the host, padding to the compiled batch shape.
    "research/jax/checkpoint.py": {"host"},
    "research/jax/predict.py": {"forward", "pad", "replicate", "to_numpy"},
    # torch places the model on run.device (checked before training, research/validate.py); jax uses every
    # device it sees.
    "research/torch/predict.py": {"pick_device", "device_problem"},
    # bf16 compute is torch.autocast in torch; jax casts the matmul inputs itself (and normalises by hand).
    # NNX splits a model into params, RNG streams and the rest; the rest (variables) is checkpointed. NNX modules take
    # their RNG streams as an argument (seeded_rngs: a run's); torch draws from its global generator.
    "research/jax/model.py": {"autocast", "normalize", "seeded_rngs", "variables"},
    # The jax step is built once per run and jit-compiled (make_train_step returns it; torch runs its
    # train_step eagerly); the train-state pytree has no torch counterpart; a torch rank reads its part of
    # the global batch (rank_batch), jax lays the whole batch over the mesh; torch's ranks load the data in
    # turn (load_splits) and its epoch-loop step closes over the eager train_step (make_step).
    "research/torch/trainer.py": {"train_step", "rank_batch", "load_splits", "make_step"},
    # torch's process group: a World per rank and explicit collectives; jax's mesh spans every device of every
    # host, and XLA inserts the collectives (make_mesh, place lay arrays out on it).
    "research/torch/distributed.py": {"World", "World.is_main", "barrier", "broadcast", "close", "describe"}
    | {"gather_predictions", "mean", "per_rank_batch", "wrap"},
    "research/jax/distributed.py": {"make_mesh", "place"},
    # Sharded centres: a torch rank holds its block of every head for the whole run (ShardedStream), so DDP,
    # clipping and checkpoints need rank-aware helpers; jax wraps the plain heads inside its traced step only
    # (StepHead, step_heads) and lays the centres and their Adam moments out with shardings.
    "research/torch/sharding.py": {"ShardedStream", "ShardedStream.__call__", "ShardedStream.__init__"}
    | {"ShardedStream.block", "ShardedStream.replicated", "ShardedStream.scores", "ShardedStream.train"}
    | {"block_sizes", "clip_grad_norm", "full_state", "ignore_blocks", "own_state", "shard_heads", "sharded_streams"},
    "research/jax/sharding.py": {"StepHead", "StepHead.__call__", "StepHead.__init__", "StepHead.scores"}
    | {"state_shardings", "step_heads"},
}
# Twins whose functions share names but not all parameters, with the reason.
NAMES_ONLY = {
    # Sharded centres: a torch rank builds only its block (offset, classes) and reduces over a process
    # group with torch's global generator for sampling; the jax head holds all centres, shard_map splits
    # them over a mesh axis, and sampling and the state it updates travel as arguments (key, lamb, bias).
    "losses/torch/sharded.py",
}


def pairs() -> list[tuple[Path, Path]]:
    found = []
    for tree in TREES:
        for side, other in (("torch", "jax"), ("jax", "torch")):
            for path in sorted((ROOT / tree / side).glob("*.py")):
                twin = ROOT / tree / other / path.name
                if path.name != "__init__.py" and (side == "torch" or not twin.exists()):
                    found.append((path, twin) if side == "torch" else (twin, path))
    return found


def signature(node: ast.FunctionDef) -> list[tuple[str, str, str]]:
    """(kind, name, default source) of each parameter, without `self` and `rngs`."""
    a = node.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + a.defaults
    params = [("positional", p.arg, d) for p, d in zip(positional, defaults, strict=True)]
    params += [("keyword", p.arg, d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
    params += [(kind, v.arg, None) for kind, v in (("*args", a.vararg), ("**kwargs", a.kwarg)) if v is not None]
    return [(k, n, ast.unparse(d) if d is not None else "") for k, n, d in params if n not in ("self", "cls", "rngs")]


def public(path: Path) -> dict[str, ast.AST]:
    """Top-level public classes and functions of a file, and `Class.method` for public methods."""
    names: dict[str, ast.AST] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            names[node.name] = node
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__init__"):
                    names[f"{node.name}.{'__call__' if item.name == 'forward' else item.name}"] = item
                if isinstance(item, ast.FunctionDef) and item.name == "__call__":
                    names[f"{node.name}.__call__"] = item
    return names


@pytest.mark.parametrize("torch_path, jax_path", pairs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_twin_exists_and_matches(torch_path, jax_path):
    rel = {p: str(p.relative_to(ROOT)) for p in (torch_path, jax_path)}
    missing = [p for p in (torch_path, jax_path) if not p.exists()]
    if missing:
        present = jax_path if missing == [torch_path] else torch_path
        assert rel[present] in ONE_SIDED, f"{rel[missing[0]]} is missing: the twin of {rel[present]}"
        return
    torch_names, jax_names = public(torch_path), public(jax_path)
    allowed = ONE_SIDED_NAMES.get(rel[torch_path], set()) | ONE_SIDED_NAMES.get(rel[jax_path], set())
    only_torch = sorted(set(torch_names) - set(jax_names) - allowed)
    only_jax = sorted(set(jax_names) - set(torch_names) - allowed)
    assert not only_torch and not only_jax, f"{rel[torch_path]} only: {only_torch}; {rel[jax_path]} only: {only_jax}"
    for name in sorted(set(torch_names) & set(jax_names)):
        t, j = torch_names[name], jax_names[name]
        assert type(t) is type(j), f"{name} is a {type(t).__name__} in torch, a {type(j).__name__} in jax"
        checked = torch_path.relative_to(ROOT).parts[0] in SAME_SIGNATURES and rel[torch_path] not in NAMES_ONLY
        if isinstance(t, ast.FunctionDef) and checked:
            assert signature(t) == signature(j), f"{name}: torch {signature(t)} != jax {signature(j)}"


def test_the_walk_finds_a_missing_twin_and_a_changed_signature(tmp_path):
    torch_file, jax_file = tmp_path / "a_torch.py", tmp_path / "a_jax.py"
    torch_file.write_text("class Head:\n    def forward(self, x, labels, keep=None): ...\ndef loss(x, *, m=0.5): ...\n")
    jax_file.write_text("class Head:\n    def __call__(self, x, labels, keep=None): ...\ndef loss(x, *, m=0.4): ...\n")
    t, j = public(torch_file), public(jax_file)
    assert set(t) == set(j) == {"Head", "Head.__call__", "loss"}
    assert signature(t["Head.__call__"]) == signature(j["Head.__call__"])
    assert signature(t["loss"]) != signature(j["loss"])
