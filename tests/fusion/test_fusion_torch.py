"""Contract tests of the torch fusion modules: shapes, gradients, order invariance, masking of missing
modalities, and which modules mix modalities (all but late)."""

import numpy as np
import pytest
import torch

import fusion
from encoders import EncoderOutput

B, D = 4, 32
N = {"face": 5, "text": 3, "voice": 7}  # tokens per modality; the lengths differ on purpose
MODS = ("voice", "face", "text")  # deliberately unsorted
KWARGS = {
    "early": dict(layers=2, heads=4, dropout=0.0),
    "stack": dict(tokens=3),
    "cross_attn": dict(layers=2, heads=4, dropout=0.0),
    "gated": {},
    "late": dict(combine="learned"),
}
FUSED = ["early", "stack", "cross_attn", "gated"]
ALL = [*FUSED, "late"]


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return fusion.build("torch", name, dim=D, modalities=MODS, **KWARGS[name])


def random_output(m: str, gen: torch.Generator) -> EncoderOutput:
    """Tokens with a valid prefix of random length >= 1 per sample."""
    lengths = torch.randint(1, N[m] + 1, (B,), generator=gen)
    mask = torch.arange(N[m])[None, :] < lengths[:, None]  # (B, N)
    return EncoderOutput(torch.randn(B, N[m], D, generator=gen), mask, torch.randn(B, D, generator=gen))


def random_outputs(seed: int = 0) -> dict[str, EncoderOutput]:
    gen = torch.Generator().manual_seed(seed)
    return {m: random_output(m, gen) for m in sorted(N)}


def all_present() -> dict[str, torch.Tensor]:
    return {m: torch.ones(B, dtype=torch.bool) for m in N}


# Sample 0: all present; 1: voice missing; 2: only face; 3: face missing.
PATTERN = {
    "face": torch.tensor([True, True, True, False]),
    "text": torch.tensor([True, True, False, True]),
    "voice": torch.tensor([True, False, False, True]),
}


def replace_rows(out: EncoderOutput, rows: torch.Tensor, seed: int) -> EncoderOutput:
    """out with tokens, mask and pooled of the given rows (B,) bool replaced by new random values."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.where(rows[:, None, None], 100 * torch.randn(out.tokens.shape, generator=gen), out.tokens)
    mask = torch.where(rows[:, None], torch.rand(out.mask.shape, generator=gen) < 0.5, out.mask)
    pooled = torch.where(rows[:, None], 100 * torch.randn(out.pooled.shape, generator=gen), out.pooled)
    return EncoderOutput(tokens, mask, pooled)


@pytest.mark.parametrize("name", ALL)
def test_streams_and_shapes(name):
    module = build(name)
    out = module(random_outputs(), all_present())
    expected = tuple(sorted(N)) if name == "late" else ("fused",)
    assert module.streams == expected
    assert tuple(out) == expected
    for y in out.values():
        assert y.shape == (B, D) and torch.isfinite(y).all()
    assert module.learns_combination == (name == "late")


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter_and_input(name):
    module = build(name)
    outputs = random_outputs()
    leaves = [t.requires_grad_() for o in outputs.values() for t in (o.tokens, o.pooled)]
    out = module(outputs, all_present())
    gen = torch.Generator().manual_seed(1)
    loss = sum((y * torch.randn(y.shape, generator=gen)).sum() for y in out.values())
    # Random per-stream log-probabilities that depend on the streams, through the combination.
    log_probs = {s: torch.log_softmax(y[:, :5], -1) for s, y in out.items()}
    loss = loss + (module.combine(log_probs, all_present()) * torch.randn(B, 5, generator=gen)).sum()
    loss.backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    # Late reads only the pooled vectors, gated tokens and pooled, the others only the tokens.
    used = {"late": leaves[1::2], "gated": leaves}.get(name, leaves[0::2])
    for t in used:
        assert t.grad is not None and t.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
def test_output_does_not_depend_on_dict_order(name):
    module = build(name).eval()
    outputs = random_outputs()
    a = module(outputs, PATTERN)
    b = module(dict(reversed(outputs.items())), dict(reversed(PATTERN.items())))
    assert list(a) == list(b)
    for s in a:
        assert torch.equal(a[s], b[s])


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("missing", sorted(N))
def test_missing_modality_is_ignored(name, missing):
    """Changing a modality's tokens, mask and pooled where it is absent changes no output at all."""
    module = build(name).eval()
    outputs = random_outputs()
    before = module(outputs, PATTERN)
    changed = dict(outputs, **{missing: replace_rows(outputs[missing], ~PATTERN[missing], seed=7)})
    after = module(changed, PATTERN)
    for s in before:
        assert torch.equal(before[s], after[s]), s
    # The test can fail: the same change where the modality is present does change the output.
    changed = dict(outputs, **{missing: replace_rows(outputs[missing], PATTERN[missing], seed=7)})
    after = module(changed, PATTERN)
    assert any(not torch.equal(before[s], after[s]) for s in before)


@pytest.mark.parametrize("name", ALL)
def test_single_present_modality_gives_finite_outputs_and_gradients(name):
    module = build(name)
    outputs = random_outputs()
    only = {"face": [0, 3], "text": [1], "voice": [2]}  # each sample has exactly one modality
    present = {m: torch.zeros(B, dtype=torch.bool) for m in N}
    for m, rows in only.items():
        present[m][rows] = True
    # Absent modalities carry an all-False token mask, as an encoder gives for a zeroed text.
    outputs = {m: o._replace(mask=o.mask & present[m][:, None]) for m, o in outputs.items()}
    leaves = [t.requires_grad_() for o in outputs.values() for t in (o.tokens, o.pooled)]
    out = module(outputs, present)
    sum(y.sum() for y in out.values()).backward()
    for y in out.values():
        assert torch.isfinite(y).all()
    for p in module.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
    for t in leaves:
        assert t.grad is None or torch.isfinite(t.grad).all()


def perturb(out: EncoderOutput, seed: int) -> EncoderOutput:
    return replace_rows(out, torch.ones(B, dtype=torch.bool), seed)._replace(mask=out.mask)


@pytest.mark.parametrize("name", FUSED)
def test_fusion_mixes_modalities(name):
    """The fused output is not a sum of per-modality functions: with face in {a1, a2} and voice in
    {b1, b2}, f(a1, b1) - f(a2, b1) - f(a1, b2) + f(a2, b2) != 0."""
    module = build(name).eval()
    base = random_outputs()
    a2, b2 = perturb(base["face"], 1), perturb(base["voice"], 2)

    def f(face, voice):
        return module(dict(base, face=face, voice=voice), all_present())["fused"]

    f11, f21, f12, f22 = f(base["face"], base["voice"]), f(a2, base["voice"]), f(base["face"], b2), f(a2, b2)
    assert (f21 - f11).abs().max() > 1e-3  # perturbing one modality changes the fused output
    interaction = f11 - f21 - f12 + f22
    assert interaction.abs().max() > 1e-3


def test_gated_conditions_on_the_other_modalities_pooled_vectors():
    """Voice's pooled vector enters only through FiLM of face and text: changing it changes the output."""
    module = build("gated").eval()
    base = random_outputs()
    changed = dict(base, voice=base["voice"]._replace(pooled=torch.randn(B, D)))
    assert (module(base, all_present())["fused"] - module(changed, all_present())["fused"]).abs().max() > 1e-3


def test_gated_alone_is_the_mean_of_valid_tokens():
    """With one modality present the FiLM is the identity and the gate weight is 1."""
    module = build("gated").eval()
    outputs = random_outputs()
    present = {m: torch.full((B,), m == "voice") for m in N}
    tokens, mask = outputs["voice"].tokens.numpy(), outputs["voice"].mask.numpy()
    expected = np.stack([tokens[b][mask[b]].mean(0) for b in range(B)])
    got = module(outputs, present)["fused"].detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_late_keeps_modalities_apart():
    module = build("late").eval()
    base = random_outputs()
    before = module(base, all_present())
    after = module(dict(base, face=perturb(base["face"], 3)), all_present())
    assert not torch.equal(before["face"], after["face"])
    for s in ("text", "voice"):
        assert torch.equal(before[s], after[s])
    # Through autograd: d stream_m / d inputs of another modality is exactly zero.
    outputs = random_outputs()
    for o in outputs.values():
        o.tokens.requires_grad_()
        o.pooled.requires_grad_()
    out = module(outputs, all_present())
    for s in out:
        for m, o in outputs.items():
            grads = torch.autograd.grad(out[s].sum(), [o.tokens, o.pooled], retain_graph=True, allow_unused=True)
            if m == s:
                assert grads[1] is not None and grads[1].abs().sum() > 0
            else:
                assert all(g is None or not g.any() for g in grads)
