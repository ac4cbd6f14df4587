from __future__ import annotations

import torch

from dyn.setups.huang2024.data import make_data
from dyn.setups.huang2024.model import PatchReLUEncoder


def test_data_follow_the_paper_model(tiny):
    cfg = tiny(n=400, d=300, sigma_xi=2.0, sigma_eps=0.3)
    data = make_data(cfg)
    x, xt, xa = data.inputs(), data.inputs_tilde(), data.augmented()
    assert x.shape == (400, 2, 300)
    assert set(data.y.tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(x[:, 0], data.y[:, None] * data.mu)          # patch 1 = y mu  (eq. 1)
    torch.testing.assert_close(xt[:, 0], data.y[:, None] * data.mu_tilde)   # shared labels (eq. 2)
    torch.testing.assert_close(xa[:, 1], data.xi + data.eps)                # [y mu, xi + eps] (eq. 5)
    assert abs(data.xi.std().item() - 2.0) < 0.05 and abs(data.eps.std().item() - 0.3) < 0.01
    # modality noises are independent: empirical correlation near 0
    corr = torch.corrcoef(torch.stack([data.xi.flatten(), data.xi_tilde.flatten()]))[0, 1]
    assert abs(corr.item()) < 0.01
    assert data.mu.norm().item() == cfg.mu_norm and data.mu[cfg.mu_axis] == cfg.mu_norm
    # negatives: exactly the opposite-label samples
    assert torch.equal(data.negatives, data.y[:, None] != data.y[None, :])


def test_data_deterministic_and_fixed_m_negatives(tiny):
    a, b = make_data(tiny(seed=3)), make_data(tiny(seed=3))
    assert torch.equal(a.xi, b.xi) and torch.equal(a.y, b.y)
    assert not torch.equal(a.xi, make_data(tiny(seed=4)).xi)
    data = make_data(tiny(n=30, negatives=4))
    assert (data.negatives.sum(1) == 4).all()
    assert not (data.negatives & (data.y[:, None] == data.y[None, :])).any()


def test_redrawn_augmentation_changes_eps_only(tiny):
    data = make_data(tiny())
    xi, eps = data.xi.clone(), data.eps.clone()
    data.redraw_augmentation()
    assert torch.equal(xi, data.xi) and not torch.equal(eps, data.eps)


def test_encoder_is_shared_patch_relu_without_bias():
    enc = PatchReLUEncoder(d=7, m=3, sigma0=0.5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert [n for n, _ in enc.named_parameters()] == ["weight"]
    x = torch.randn(4, 2, 7, dtype=torch.float64)
    w = enc.weight.detach()
    expected = torch.relu(x[:, 0] @ w.T) + torch.relu(x[:, 1] @ w.T)  # eq. 3, same filter on both patches
    torch.testing.assert_close(enc(x), expected)
    big = PatchReLUEncoder(d=400, m=300, sigma0=0.5, generator=torch.Generator().manual_seed(0))
    assert abs(big.weight.std().item() - 0.5) < 0.01 and abs(big.weight.mean().item()) < 0.01
