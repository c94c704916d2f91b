"""scaleinv.torch.testing: the assertions pass on homogeneous torch modules, fail (naming the
group) on non-homogeneous ones, and agree with the JAX twins (scaleinv.homogeneity /
scaleinv.testing) on the same function and parameters."""
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: the scaleinv[torch] extra (torch==2.13.0) "
                                            "is needed for the scaleinv.torch tests")
from hypothesis import given  # noqa: E402

from scaleinv.torch.homogeneity import estimate_degree, as_function, module_params  # noqa: E402
from scaleinv.torch.testing import (assert_euler_identity, assert_homogeneous, assert_scale_invariant_loss,  # noqa: E402
                                    group_names, params_like, scale_lists)


def _mlp(bias=False, act=None, dtype=torch.float64):
    torch.manual_seed(0)
    act = act or torch.nn.ReLU()
    return torch.nn.Sequential(torch.nn.Linear(4, 6, bias=bias), act, torch.nn.Linear(6, 3, bias=bias)).to(dtype)


X = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


class SILoss(torch.nn.Module):
    """A scale-invariant loss in the linear weights: LayerNorm (no affine, eps = 0: torch's default
    eps = 1e-5 breaks the invariance at small scales) after each linear map."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.l1 = torch.nn.Linear(4, 6, bias=False)
        self.l2 = torch.nn.Linear(6, 3, bias=False)
        self.head = torch.nn.Linear(3, 1)

    def forward(self, x):
        h = torch.nn.functional.gelu(torch.nn.functional.layer_norm(self.l1(x), (6,), eps=0.0))
        h = torch.nn.functional.layer_norm(self.l2(h), (3,), eps=0.0)
        return torch.mean(self.head(h) ** 2)


@given(p=params_like(_mlp()))
def test_relu_mlp_is_2_homogeneous_jointly_and_1_per_layer(p):
    m = _mlp()
    assert_homogeneous(m, {"all": 2, "layer0": 1, "layer2": 1}, {"all": None, "layer0": "0", "layer2": "2"},
                       inputs=(X,), params=p)


@given(names=group_names(_mlp()), cs=scale_lists())
def test_bias_free_linear_net_degree_is_number_of_selected_layers(names, cs):
    # a deep-linear net: degree = number of scaled layers (ReLU would break it on negative pre-activations)
    m = _mlp(act=torch.nn.Identity())
    assert_homogeneous(m, len(names), names, inputs=(X,), scales=cs)


def test_failures_name_the_group():
    with pytest.raises(AssertionError, match="group 'all': expected degree 2, fitted slope"):
        assert_homogeneous(_mlp(act=torch.nn.GELU()), 2, inputs=(X,))
    with pytest.raises(AssertionError, match="group '0.weight'"):
        assert_homogeneous(_mlp(bias=True), 1, "0.weight", inputs=(X,))   # W x + b: not homogeneous in W alone
    assert_homogeneous(_mlp(bias=True), 1, "2", inputs=(X,))              # last layer: 1 in (W, b) jointly
    with pytest.raises(ValueError, match="selects no parameter"):
        assert_homogeneous(_mlp(), 1, "nope", inputs=(X,))


def test_scale_invariant_loss_and_euler():
    m = SILoss().double()
    assert_scale_invariant_loss(m, ["l1", "l2"], inputs=(X,))
    assert_scale_invariant_loss(m, "l1", inputs=(X,))
    with pytest.raises(AssertionError):
        assert_scale_invariant_loss(m, "head", inputs=(X,))
    loss3 = lambda p: torch.sum(p["w"] ** 3)  # noqa: E731
    assert_euler_identity(loss3, 3.0, params={"w": torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)})
    with pytest.raises(AssertionError, match="Euler identity"):
        assert_euler_identity(loss3, 2.0, params={"w": torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)})


def test_float32_tolerances():
    m = _mlp(dtype=torch.float32)
    assert_homogeneous(m, 2, inputs=(X.float(),))


def test_same_fit_as_the_jax_estimate():
    """The same ReLU MLP in JAX and torch (same float64 weights): identical fitted slopes/residuals
    up to rounding (both use scaleinv.homogeneity.fit_log_log)."""
    import jax
    import jax.numpy as jnp

    from scaleinv.homogeneity import estimate_degree as jax_estimate

    m = _mlp(act=torch.nn.GELU())  # not homogeneous: the fitted slope is a non-trivial number
    p = module_params(m)
    tr = estimate_degree(as_function(m, (X,)), p, group="0", rtol=1e-9)
    with jax.enable_x64(True):
        jp = {k: jnp.asarray(v.numpy()) for k, v in p.items()}
        xj = jnp.asarray(X.numpy())

        def f(q):
            h = jax.nn.gelu(xj @ q["0.weight"].T, approximate=False)
            return h @ q["2.weight"].T

        jr = jax_estimate(f, jp, mask={"0.weight": True, "2.weight": False}, rtol=1e-9)
    assert not tr.homogeneous and not jr.homogeneous
    assert tr.degree == pytest.approx(jr.degree, rel=1e-10)
    assert tr.residual == pytest.approx(jr.residual, rel=1e-8)


@given(p=params_like(_mlp(dtype=torch.float32), relative=True))
def test_params_like_relative_keeps_structure(p):
    base = module_params(_mlp(dtype=torch.float32))
    assert list(p) == list(base)
    for k in p:
        assert p[k].shape == base[k].shape and p[k].dtype == torch.float32
        rel = float(torch.linalg.norm(p[k] - base[k]) / torch.linalg.norm(base[k]))
        assert 0 < rel < 1.0  # ~0.1 * sqrt(numel)/sqrt(numel) relative perturbation
