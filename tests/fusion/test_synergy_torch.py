"""Synergy: the label is (a + b) mod K, with a readable only from the face tokens and b only from the
voice tokens. Either modality alone carries no information about the label, so fusion that mixes
modalities before the decision (early, cross_attn) can learn it and late fusion cannot.

Measured (benchmarks/torch/statistical_margins.py --checks synergy_early,synergy_cross_attn,synergy_late_mean,
synergy_late_product; seed 0 at 2 and 1 threads and OMP_NUM_THREADS=1, seeds 1-3): early and cross_attn 1.000
every time; late fusion 0.316 (mean) and 0.322 (product) at seed 0 whatever the thread count, 0.332-0.412 over
seeds 1-3. The thread count does not move these results; the smallest margin, 0.038, is late fusion at seed 3.
"""

import pytest
import torch
import torch.nn.functional as F

import fusion
from encoders import EncoderOutput

pytestmark = pytest.mark.statistical
K, D = 3, 32
LEARNED, NEAR_CHANCE = 0.9, 0.45  # test accuracy; chance is 1/3
STEPS = 80
N = {"face": 6, "text": 4, "voice": 8}


def sample(n: int, gen: torch.Generator, table: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor]:
    """n samples: face tokens = table_face[a] + noise, voice = table_voice[b] + noise, text = noise."""
    a, b = torch.randint(K, (n,), generator=gen), torch.randint(K, (n,), generator=gen)
    centre = {"face": table["face"][a], "voice": table["voice"][b], "text": torch.zeros(n, D)}
    outputs = {}
    for m, count in N.items():
        tokens = centre[m][:, None] + 0.5 * torch.randn(n, count, D, generator=gen)  # (n, N, D)
        outputs[m] = EncoderOutput(tokens, torch.ones(n, count, dtype=torch.bool), tokens.mean(1))
    return outputs, (a + b) % K


def train_and_test(name: str, seed: int = 0, **kwargs) -> float:
    """Test accuracy of the fusion module + one linear head per stream after a short training."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    table = {m: torch.randn(K, D, generator=gen) for m in ("face", "voice")}
    module = fusion.build("torch", name, dim=D, modalities=tuple(N), **kwargs)
    heads = torch.nn.ModuleDict({s: torch.nn.Linear(D, K) for s in module.streams})
    params = [*module.parameters(), *heads.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    present = {m: torch.ones(64, dtype=torch.bool) for m in N}
    for _ in range(STEPS):
        outputs, y = sample(64, gen, table)
        streams = module(outputs, present)
        loss = sum(F.cross_entropy(heads[s](z), y) for s, z in streams.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
    outputs, y = sample(512, gen, table)
    present = {m: torch.ones(512, dtype=torch.bool) for m in N}
    with torch.no_grad():
        streams = module.eval()(outputs, present)
        log_probs = {s: heads[s](z).log_softmax(-1) for s, z in streams.items()}
        decision = module.combine(log_probs, present)
    return (decision.argmax(-1) == y).float().mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["early", "cross_attn"])
def test_token_fusion_learns_synergy(name):
    assert train_and_test(name, layers=1, heads=4, dropout=0.0) > LEARNED


@pytest.mark.slow
@pytest.mark.parametrize("combine", ["mean", "product"])
def test_late_fusion_cannot_learn_synergy(combine):
    assert train_and_test("late", combine=combine) < NEAR_CHANCE
