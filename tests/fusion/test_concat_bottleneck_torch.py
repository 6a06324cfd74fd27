"""Feature-level (concat: add / mul / concat) and bottleneck fusion in torch: shapes, missing modalities
(every subset finite; an absent modality's inputs change nothing), the feature rules against a NumPy
computation of their definitions, the bottleneck's exchange (none before fusion_from_layer is reached,
some from layer 0), and a training step of the assembled model."""

import itertools

import numpy as np
import pytest
import torch
from scipy.special import erf

import fusion
from encoders import EncoderOutput
from research.config import Config
from research.config_parse import apply_overrides
from research.data.loader import load
from research.torch.model import build_model
from research.torch.predict import to_device

B, D, H, LAYERS = 8, 16, 2, 2
N = {"face": 5, "text": 3, "voice": 7}  # tokens per modality; the lengths differ on purpose
MODS = ("voice", "face", "text")  # deliberately unsorted
RULES = ("add", "mul", "concat")
# Every subset of the three modalities, one per sample (sample 0: none present, 7: all).
SUBSETS = np.array(list(itertools.product([False, True], repeat=3)))  # (8, 3), columns sorted(N)
PRESENT = {m: torch.tensor(SUBSETS[:, i]) for i, m in enumerate(sorted(N))}


def concat(rule: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return fusion.build("torch", "concat", dim=D, modalities=MODS, combine_features=rule)


def bottleneck(fusion_from_layer: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = dict(layers=LAYERS, heads=H, dropout=0.0, bottleneck_tokens=2, fusion_from_layer=fusion_from_layer)
    return fusion.build("torch", "bottleneck", dim=D, modalities=MODS, **kwargs)


MODULES = {f"concat-{r}": lambda r=r: concat(r) for r in RULES} | {
    f"bottleneck-{f}": lambda f=f: bottleneck(f) for f in range(LAYERS + 1)
}


def random_outputs(seed: int = 0) -> dict[str, EncoderOutput]:
    """Tokens with a valid prefix of random length >= 1 per sample."""
    gen = torch.Generator().manual_seed(seed)
    outputs = {}
    for m in sorted(N):
        lengths = torch.randint(1, N[m] + 1, (B,), generator=gen)
        mask = torch.arange(N[m])[None, :] < lengths[:, None]  # (B, N)
        outputs[m] = EncoderOutput(torch.randn(B, N[m], D, generator=gen), mask, torch.randn(B, D, generator=gen))
    return outputs


def replace_rows(out: EncoderOutput, rows: torch.Tensor, seed: int) -> EncoderOutput:
    """out with tokens, mask and pooled of the given rows (B,) bool replaced by new, huge random values."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.where(rows[:, None, None], 100 * torch.randn(out.tokens.shape, generator=gen), out.tokens)
    mask = torch.where(rows[:, None], torch.rand(out.mask.shape, generator=gen) < 0.5, out.mask)
    pooled = torch.where(rows[:, None], 100 * torch.randn(out.pooled.shape, generator=gen), out.pooled)
    return EncoderOutput(tokens, mask, pooled)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_shapes_and_finite_gradients_with_every_subset_missing(name):
    module = MODULES[name]()
    outputs = random_outputs()
    leaves = [t.requires_grad_() for o in outputs.values() for t in (o.tokens, o.pooled)]
    out = module(outputs, PRESENT)
    assert module.streams == tuple(out) == ("fused",) and not module.learns_combination
    assert out["fused"].shape == (B, D) and torch.isfinite(out["fused"]).all()
    out["fused"].pow(2).sum().backward()
    for pname, p in module.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), pname
    for t in leaves:
        assert t.grad is None or torch.isfinite(t.grad).all()
    lp = torch.randn(B, 5).log_softmax(-1)
    assert module.combine({"fused": lp}, {"fused": torch.ones(B, dtype=torch.bool)}) is lp


@pytest.mark.parametrize("name", sorted(MODULES))
def test_output_does_not_depend_on_dict_order(name):
    module = MODULES[name]().eval()
    outputs = random_outputs()
    a = module(outputs, PRESENT)["fused"]
    b = module(dict(reversed(outputs.items())), dict(reversed(PRESENT.items())))["fused"]
    assert torch.equal(a, b)


@pytest.mark.parametrize("missing", sorted(N))
@pytest.mark.parametrize("name", sorted(MODULES))
def test_missing_modality_is_ignored(name, missing):
    """Changing a modality's tokens, mask and pooled where it is absent changes no output bit."""
    module = MODULES[name]().eval()
    outputs = random_outputs()
    before = module(outputs, PRESENT)["fused"]
    changed = dict(outputs, **{missing: replace_rows(outputs[missing], ~PRESENT[missing], seed=7)})
    assert torch.equal(module(changed, PRESENT)["fused"], before)
    # The test can fail: the same change where the modality is present does change the output.
    changed = dict(outputs, **{missing: replace_rows(outputs[missing], PRESENT[missing], seed=7)})
    assert not torch.equal(module(changed, PRESENT)["fused"], before)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_gradients_reach_every_parameter(name):
    module = MODULES[name]()
    module(random_outputs(), {m: torch.ones(B, dtype=torch.bool) for m in N})["fused"].sin().sum().backward()
    for pname, p in module.named_parameters():
        # Without a fusion layer the bottleneck tokens are never read: no gradient is the right answer.
        unused = name == f"bottleneck-{LAYERS}" and pname == "bottleneck"
        assert (p.grad is None) == unused and (unused or p.grad.abs().sum() > 0), pname


def reference_features(pooled: np.ndarray, rule: str) -> np.ndarray:
    """Per sample, from the definitions: mean / product / slots-with-flags of the present pooled vectors."""
    rows = []
    for b, present in enumerate(SUBSETS):
        vectors = [pooled[i][b] for i in np.flatnonzero(present)]
        if rule == "add":
            rows.append(np.mean(vectors, 0) if vectors else np.zeros(D))
        elif rule == "mul":
            rows.append(np.prod(vectors, 0) if vectors else np.ones(D))
        else:
            slots = [np.append(pooled[i][b] if present[i] else np.zeros(D), float(present[i])) for i in range(3)]
            rows.append(np.concatenate(slots))
    return np.stack(rows)


def reference_mlp(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """LN -> Linear -> exact GELU -> Linear in NumPy, with the module's weights."""
    w = {k: v.double().numpy() for k, v in module.state_dict().items()}
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w["mlp.0.weight"] + w["mlp.0.bias"]
    h = x @ w["mlp.1.weight"].T + w["mlp.1.bias"]
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    return h @ w["mlp.3.weight"].T + w["mlp.3.bias"]


@pytest.mark.parametrize("rule", RULES)
def test_feature_rules_equal_their_definition(rule):
    module = concat(rule).double().eval()
    torch.nn.init.normal_(module.mlp[0].weight)  # LN affine away from (1, 0), so it is checked too
    torch.nn.init.normal_(module.mlp[0].bias)
    outputs = {m: o._replace(pooled=o.pooled.double()) for m, o in random_outputs().items()}
    outputs["voice"] = replace_rows(outputs["voice"], ~PRESENT["voice"], seed=3)  # absent: huge values
    pooled = np.stack([outputs[m].pooled.numpy() for m in sorted(N)])  # (M, B, D)
    got = module(outputs, PRESENT)["fused"].detach().numpy()
    np.testing.assert_allclose(got, reference_mlp(module, reference_features(pooled, rule)), rtol=0, atol=1e-10)


def test_unknown_feature_rule_and_bad_bottleneck_settings_are_errors():
    with pytest.raises(ValueError, match="combine_features"):
        concat("max")
    for tokens, start in [(0, 0), (2, -1), (2, LAYERS + 1)]:
        with pytest.raises(ValueError, match="fusion_from_layer"):
            fusion.build(
                "torch",
                "bottleneck",
                dim=D,
                modalities=MODS,
                layers=LAYERS,
                heads=H,
                dropout=0.0,
                bottleneck_tokens=tokens,
                fusion_from_layer=start,
            )


@pytest.mark.parametrize("fusion_from_layer", range(LAYERS + 1))
def test_bottleneck_exchanges_only_with_two_fusion_layers(fusion_from_layer):
    """Changing the face tokens changes face's stream; the other streams change only when the bottleneck
    carries it to them: written in layer l, read in layer l + 1, so only from layer 0 of 2 layers."""
    module = bottleneck(fusion_from_layer).eval()
    present = {m: torch.ones(B, dtype=torch.bool) for m in N}
    outputs = random_outputs()
    before = module.stream_states(outputs, present)  # (B, M, D), sorted: face, text, voice
    changed = dict(outputs, face=replace_rows(outputs["face"], torch.ones(B, dtype=torch.bool), 5))
    after = module.stream_states(changed, present)
    assert (after[:, 0] - before[:, 0]).abs().min() > 0
    others = (after[:, 1:] - before[:, 1:]).abs()
    if fusion_from_layer >= LAYERS - 1:
        assert torch.equal(after[:, 1:], before[:, 1:])
    else:
        assert (others.amax(-1) > 1e-4).all()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    args = [
        f"--data.root={root}",
        "--data.synthetic.identities=4",
        "--data.synthetic.samples_per_identity=4",
        "--data.synthetic.missing=0.3",
        "--data.voice_seconds=0.3",
        "--data.image_size=16",
        "--modalities=face,voice",
        "--model.dim=16",
        "--model.heads=2",
        "--model.layers=1",
        "--model.fusion_layers=2",
        "--model.dropout=0",
        "--model.spec_augment=false",
    ]
    splits = load(apply_overrides(Config(), args).data)
    batch = next(splits.train.batches(8, shuffle=True, seed=0, epoch=1, train=True))
    return args, splits, to_device(batch, torch.device("cpu"))


@pytest.mark.parametrize(
    "args",
    [*(["--fusion=concat", f"--model.combine_features={r}"] for r in RULES), ["--fusion=bottleneck"]],
    ids=["concat-add", "concat-mul", "concat-concat", "bottleneck"],
)
def test_training_step_of_the_assembled_model(tiny_data, args):
    """One AdamW step of the model that research/torch/model.py assembles, on a batch with missing
    modalities: finite loss and gradients, every fusion parameter updated, and the loss goes down."""
    base, splits, batch = tiny_data
    cfg = apply_overrides(Config(), [*base, *args])
    torch.manual_seed(0)
    model = build_model(cfg, len(splits.classes["identity"]), splits.vocab_size, None).train()
    assert not batch["face_present"].all() or not batch["voice_present"].all()
    start = {k: v.detach().clone() for k, v in model.fusion.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = model(batch)["loss"]
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    with torch.no_grad():
        after = model(batch)["loss"]
    assert torch.isfinite(loss) and after < loss
    for k, v in model.fusion.named_parameters():
        assert not torch.equal(v, start[k]), k
