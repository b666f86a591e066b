"""Sharpness analysis (notebook 06): the curvature routines on known matrices, the perturbation and
landscape invariants, per-scope weights, determinism, and the series catalogue notebook 06 loads."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import ltlib.analysis.sharpness as S
from ltlib.runs.config import make_config
from ltlib.data.longtail import class_groups
from ltlib.core.errors import ConfigError
from ltlib.runs.experiment import load_data, run_dir
from ltlib.models import build_model
from ltlib.report.series import HEADLINE_MODELS, SMOKE_MODELS, select, series_configs

COUNTS = [40, 20, 12, 6, 3]


def _symmetric(eigenvalues, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T, q


def _quadratic(a):
    """Parameters split over two tensors (as a model's are) and loss 1/2 w^T A w + b^T w."""
    n = a.shape[0]
    w1 = nn.Parameter(torch.randn(n // 2, dtype=torch.float64))
    w2 = nn.Parameter(torch.randn(n - n // 2, dtype=torch.float64))
    b = torch.randn(n, dtype=torch.float64)

    def loss():
        w = torch.cat([w1, w2])
        return 0.5 * w @ a @ w + b @ w
    return [w1, w2], loss


def test_power_iteration_finds_the_top_eigenvalue_and_vector_of_a_known_quadratic():
    a, q = _symmetric([7.0, 3.0, 2.5, 1.0, 0.5, -0.2, 0.1, 0.05])
    params, loss = _quadratic(a)
    eig = S.top_eigenvalue(S.closure_hvp(loss, params), params, iters=200, tol=1e-10,
                           generator=torch.Generator().manual_seed(1))
    assert eig.converged
    assert eig.value == pytest.approx(7.0, rel=1e-6)
    vector = torch.cat([v.flatten() for v in eig.vector])
    assert abs(float(vector @ q[:, 0])) == pytest.approx(1.0, abs=1e-6)


def test_hutchinson_is_exact_on_a_diagonal_and_within_its_error_on_a_dense_matrix():
    diag = torch.diag(torch.tensor([3.0, -1.0, 0.5, 2.0, 7.0, 0.25], dtype=torch.float64))
    params, loss = _quadratic(diag)
    est = S.hutchinson_trace(S.closure_hvp(loss, params), params, samples=3, generator=torch.Generator().manual_seed(0))
    assert est.value == pytest.approx(11.75, abs=1e-12)          # v^T D v = tr(D) for every +-1 vector

    a, _ = _symmetric(list(np.linspace(-1, 4, 40)), seed=3)
    params, loss = _quadratic(a)
    samples = 400
    est = S.hutchinson_trace(S.closure_hvp(loss, params), params, samples=samples,
                             generator=torch.Generator().manual_seed(0))
    off = a - torch.diag(torch.diag(a))
    sd = math.sqrt(2 * float((off ** 2).sum()) / samples)       # the estimator's exact standard deviation
    assert abs(est.value - float(torch.trace(a))) < 4 * sd       # tolerance: 4 standard deviations
    assert est.std_error == pytest.approx(sd, rel=0.3)


def test_bad_iteration_counts_raise():
    a, _ = _symmetric([1.0, 2.0])
    params, loss = _quadratic(a)
    hvp = S.closure_hvp(loss, params)
    with pytest.raises(ValueError, match="iters"):
        S.top_eigenvalue(hvp, params, iters=0)
    with pytest.raises(ValueError, match="samples"):
        S.hutchinson_trace(hvp, params, samples=0)


def _model(classifier="linear", seed=0):
    torch.manual_seed(seed)
    model = build_model("resnet20", len(COUNTS), in_channels=1, width=0.25, classifier=classifier)
    model.train()
    with torch.no_grad():                                # non-trivial BN statistics, as after training
        model(torch.randn(64, 1, 10, 10))
    return model


def _probe(batch_size=500, scale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    inputs = torch.randn(len(labels), 1, 10, 10, generator=gen) + labels.view(-1, 1, 1, 1) * 0.3
    return S.Probe(inputs, labels, tuple(f"class{c}" for c in range(len(COUNTS))),
                   class_groups(np.array([150, 120, 60, 30, 10])), S.ScaledCrossEntropy(scale), batch_size)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_sigma_zero_changes_nothing_and_every_analysis_puts_the_weights_back():
    model, probe = _model(), _probe()
    before = _state(model)
    table = S.perturbation_spread(model, probe, [0.0, 0.5], draws=3, seed=1)
    zero = table[table["sigma"] == 0]
    assert (zero["loss_increase"] == 0).all() and (zero["accuracy_drop"] == 0).all()
    assert (table[table["sigma"] == 0.5]["loss_increase"].abs() > 0).any()
    S.hessian_by_group(model, probe, max_images=30, iters=3, samples=2)
    S.landscape_1d(model, probe, {"r": S.random_directions(model, 1)[0]}, [-0.5, 0.5])
    assert _same_state(model, before)                  # weights and BN running statistics, bit for bit
    assert model.training                              # the mode it came in with


def test_landscapes_at_the_origin_equal_the_models_loss():
    model, probe = _model(), _probe()
    losses, correct = S.probe_outputs(model, probe)
    d1, d2 = S.random_directions(model, 2, seed=4)
    grid = S.landscape_2d(model, probe, d1, d2, [-0.2, 0.0, 0.2])
    assert grid["loss"][1, 1] == pytest.approx(float(losses.mean()), rel=1e-6)
    assert grid["accuracy"][1, 1] == pytest.approx(100 * float(correct.mean()))
    assert grid["loss"].shape == (3, 3) and not np.allclose(grid["loss"], grid["loss"][1, 1])
    line = S.landscape_1d(model, probe, {"d1": d1}, [0.0])
    assert line.set_index("scope").loc["overall", "loss"] == pytest.approx(float(losses.mean()), rel=1e-6)


def test_per_class_losses_average_to_the_overall_loss_with_the_probe_counts():
    model, probe = _model(), _probe()
    losses, _ = S.probe_outputs(model, probe)
    means = S.scope_means(losses, probe)
    counts = np.array(COUNTS, dtype=float)
    per_class = np.array([means[f"class{c}"] for c in range(len(COUNTS))])
    assert float(per_class @ counts / counts.sum()) == pytest.approx(means["overall"], rel=1e-6)
    for group, members in zip(("many", "medium", "few"), probe.groups.members):
        members = list(members)
        expected = per_class[members] @ counts[members] / counts[members].sum()
        assert means[group] == pytest.approx(float(expected), rel=1e-6)


def test_bn_folding_does_not_change_the_measured_losses():
    model, probe = _model(), _probe()
    folded, _ = S.probe_outputs(model, probe, fold_bn=True)
    plain, _ = S.probe_outputs(model, probe, fold_bn=False)
    torch.testing.assert_close(folded, plain, rtol=1e-4, atol=1e-5)


def test_filter_normalised_directions_have_the_weights_filter_norms():
    model = _model("normed")
    params = S.select_params(model, "weights")
    assert all(p.tensor.dim() > 1 for p in params)
    head = [p for p in params if p.name == "classifier.weight"][0]
    assert head.filter_dim == 1                        # the cosine head stores in x out: filters are columns
    d = S.random_direction(params, torch.Generator().manual_seed(0), "filter")
    for p, t in zip(params, d):
        other = [k for k in range(t.dim()) if k != p.filter_dim]
        torch.testing.assert_close(torch.linalg.vector_norm(t, dim=other),
                                   torch.linalg.vector_norm(p.tensor.detach(), dim=other), rtol=1e-5, atol=1e-6)
    d = S.random_direction(params, torch.Generator().manual_seed(0), "layer")
    for p, t in zip(params, d):
        assert float(t.norm()) == pytest.approx(float(p.tensor.detach().norm()), rel=1e-5)
    assert {p.name for p in S.select_params(model, "classifier")} == {"classifier.weight"}
    assert len(S.select_params(model, "all")) > len(params)
    with pytest.raises(ConfigError, match="parameter set"):
        S.select_params(model, "everything")
    with pytest.raises(ConfigError, match="direction normalisation"):
        S.random_direction(params, torch.Generator(), "unit")


def test_analyses_are_deterministic_given_a_seed():
    model, probe = _model(), _probe()
    a = S.perturbation_spread(model, probe, [0.3], draws=2, seed=5)
    b = S.perturbation_spread(model, probe, [0.3], draws=2, seed=5)
    c = S.perturbation_spread(model, probe, [0.3], draws=2, seed=6)
    assert a.equals(b) and not a["loss"].equals(c["loss"])
    h1 = S.hessian_by_group(model, probe, max_images=30, iters=4, samples=2, seed=2)
    h2 = S.hessian_by_group(model, probe, max_images=30, iters=4, samples=2, seed=2)
    assert h1.drop(columns="seconds").equals(h2.drop(columns="seconds"))


def test_batched_hessian_vector_products_equal_the_single_batch_graph():
    model, probe = _model().eval(), _probe()
    params = S.select_params(model, "weights")
    tensors = [p.tensor for p in params]
    gen = torch.Generator().manual_seed(0)
    u = [torch.randn(t.shape, generator=gen) for t in tensors]
    v = [torch.randn(t.shape, generator=gen) for t in tensors]
    whole = S.model_hvp(model, probe, params)(v)
    batched = S.model_hvp(model, _probe(batch_size=7), params)(v)
    for x, y in zip(whole, batched):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)
    hu = S.model_hvp(model, probe, params)(u)
    uhv = sum(float((a * b).sum()) for a, b in zip(u, whole))
    vhu = sum(float((a * b).sum()) for a, b in zip(v, hu))
    assert uhv == pytest.approx(vhu, rel=1e-3)          # the Hessian is symmetric


def test_hessian_by_group_reports_every_scope_and_refuses_unknown_ones():
    model, probe = _model(), _probe()
    table = S.hessian_by_group(model, probe, scopes=("overall", "few", "class0"), max_images=30, iters=5, samples=3)
    assert list(table["scope"]) == ["overall", "few", "class0"]
    assert list(table["images"]) == [30, COUNTS[4], 30]      # few: class 4 alone (strict groups)
    assert table["top_eigenvalue"].notna().all() and table["trace"].notna().all()
    with pytest.raises(ValueError, match="unknown scope"):
        S.hessian_by_group(model, probe, scopes=("tail",))


def test_the_ascent_direction_raises_the_loss_and_imbsam_uses_only_the_tail():
    model, probe = _model(), _probe()
    sam = S.ascent_direction(model, probe)
    tail = S.ascent_direction(model, probe, classes=[3, 4])
    line = S.landscape_1d(model, probe, {"sam": sam, "tail": tail}, [0.0, 1e-3])
    overall = line[line["scope"] == "overall"].pivot(index="alpha", columns="direction", values="loss")
    assert overall.loc[1e-3, "sam"] > overall.loc[0.0, "sam"]
    few = line[line["scope"] == "few"].pivot(index="alpha", columns="direction", values="loss")
    assert few.loc[1e-3, "tail"] > few.loc[0.0, "tail"]
    assert not all(torch.allclose(a, b) for a, b in zip(sam, tail))
    with pytest.raises(ValueError, match="no images"):
        S.ascent_direction(model, probe.subset(probe.labels < 2), classes=[4])


def test_ascent_landscapes_span_steps_of_sams_length():
    """The x axis of an ascent landscape is in steps of norm rho: at ``steps`` = k the weights moved by k * rho
    along the filter-normalised ascent direction (a slip to alpha itself, or to another unit, fails)."""
    from types import SimpleNamespace
    from ltlib.analysis.sharpness.directions import direction_norm

    model, probe = _model(), _probe()
    settings = S.analysis_settings("smoke", alpha_points=5, ascent_rho=0.05, ascent_steps=4.0)
    fake_run = SimpleNamespace(metrics={"class_counts": [150, 120, 60, 30, 10]})
    table = S.ascent_landscapes(fake_run, model, probe, settings, eta=20)
    assert set(table["direction"]) == {"SAM ascent", "ImbSAM ascent"}
    sam = table[(table["direction"] == "SAM ascent") & (table["scope"] == "overall")]
    assert sam["steps"].tolist() == pytest.approx([-4, -2, 0, 2, 4])
    moved = sam["alpha"].to_numpy() * direction_norm(S.ascent_direction(model, probe))
    assert moved == pytest.approx(sam["steps"].to_numpy() * 0.05, rel=1e-5)
    losses, _ = S.probe_outputs(model, probe)
    assert sam.set_index("steps").loc[0.0, "loss"] == pytest.approx(float(losses.mean()), rel=1e-6)
    assert sam["loss"].iloc[-1] > sam["loss"].iloc[2]          # uphill along the ascent direction
    with pytest.raises(ConfigError, match="ascent_rho"):
        S.analysis_settings("smoke", ascent_rho=0.0)


def test_the_analysis_loss_scales_a_cosine_head_by_ldam_s():
    base = make_config("smoke", "cmo")
    assert S.analysis_loss(base).scale == 1.0
    assert S.analysis_loss(base.replace(loss="ldam", classifier="normed", ldam_s=16.0)).scale == 16.0
    logits, labels = torch.tensor([[0.1, -0.1]]), torch.tensor([0])
    assert float(S.ScaledCrossEntropy(16.0)(logits, labels)) == pytest.approx(math.log1p(math.exp(-3.2)), rel=1e-5)


def test_make_probe_caps_images_per_class_and_checks_its_arguments(fake_fmnist):
    config = make_config("smoke", "ce", test_per_class=None)
    data = load_data(config)
    probe = S.make_probe(data, config, per_class=15, seed=0)
    expected = np.minimum(data.class_counts, 15)
    assert torch.bincount(probe.labels, minlength=data.num_classes).tolist() == expected.tolist()
    assert probe.inputs.dtype == torch.float32 and "at most 15 per class" in probe.description
    again = S.make_probe(data, config, per_class=15, seed=0)
    assert torch.equal(probe.inputs, again.inputs)
    assert len(S.make_probe(data, config, split="test")) == len(data.test)
    with pytest.raises(ConfigError, match="split"):
        S.make_probe(data, config, split="holdout")
    with pytest.raises(ConfigError, match="per_class"):
        S.make_probe(data, config, per_class=0)


def test_series_configs_are_the_notebooks_runs():
    """Notebook 06 loads what notebooks 01-05 cached: the quick-profile names and hashes must be theirs."""
    configs = series_configs("quick")
    names = {label: run_dir(c).name for label, c in configs.items()}
    assert names["01 CE, WD"] == "01-wb-wd0.005-ab63e83b35"
    assert names["03 SGD"] == "03-sgd-ac26f483ff"
    assert names["02 WB (WD + stage 2)"] == "stage2-wb-d36b02d69c"
    assert names["04 CC-SAM stages 1 + 2"] == "04-s2-ccsam-48724c43fb"
    assert names["05 CE"] == "05-ce-f1c429886c"
    assert names["05 LDAM-DRW"] == "05-ldam-drw-265d974f14"
    assert list(select(configs, ["05 CE", "01 CE, WD"])) == ["05 CE", "01 CE, WD"]
    assert set(HEADLINE_MODELS) <= set(configs) and set(SMOKE_MODELS) <= set(configs)
    with pytest.raises(ConfigError, match="Valid labels"):
        select(configs, ["LDAM"])


class SmoothNet(nn.Module):
    """Conv, BN and tanh: twice differentiable everywhere, so a finite difference checks the Hessian (a ReLU
    network's kinks are invisible to the Hessian but not to a finite difference)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.classifier = nn.Linear(4, len(COUNTS))
        self.bn.running_mean.uniform_(-0.5, 0.5)
        self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.classifier(torch.tanh(self.bn(self.conv(x))).mean((2, 3)))


def test_the_filter_scaled_hessian_is_d_h_d_and_matches_a_finite_difference():
    from ltlib.analysis.sharpness.analysis import _scaled, filter_scales

    model, probe = SmoothNet().eval().double(), _probe()
    probe = S.Probe(probe.inputs.double(), probe.labels, probe.class_names, probe.groups, probe.loss_fn)
    params = S.select_params(model)
    hvp = S.model_hvp(model, probe, params)
    gen = torch.Generator().manual_seed(0)
    u = [torch.randn(p.tensor.shape, generator=gen, dtype=torch.float64) for p in params]
    d = [s * x for s, x in zip(filter_scales(params), u)]
    dhd = sum(float((a * b).sum()) for a, b in zip(d, hvp(d)))
    dhd_scaled = sum(float((a * b).sum()) for a, b in zip(u, _scaled(hvp, filter_scales(params))(u)))
    assert dhd_scaled == pytest.approx(dhd, rel=1e-9)        # u^T (D H D) u = d^T H d

    def loss(c):
        with S.displaced(params, [d], [c]):
            return float(S.probe_outputs(model, probe, fold_bn=False)[0].mean())
    eps = 1e-4
    finite = (loss(eps) + loss(-eps) - 2 * loss(0.0)) / eps ** 2
    assert finite == pytest.approx(dhd, rel=1e-2)
    table = S.hessian_by_group(model, probe, scopes=("overall",), max_images=None, iters=3, samples=2, scale="filter")
    assert table["scale"].tolist() == ["filter"]
    with pytest.raises(ValueError, match="Hessian scale"):
        S.hessian_by_group(model, probe, scale="unit")


def _same_numbers(a, b):
    return np.allclose(a.select_dtypes("number").to_numpy(float), b.select_dtypes("number").to_numpy(float),
                       equal_nan=True)


def test_analyse_run_caches_beside_the_run_and_fills_the_table(fake_fmnist, exp_dir):
    from ltlib.runs.experiment import run

    config = make_config("smoke", "ce", test_per_class=None, epochs=1)
    trained = run(config, progress=False)
    settings = S.analysis_settings("smoke", probe_per_class=10)
    first = S.analyse_run(trained, settings, ascent_eta=20)
    cached = list(trained.path.glob("sharpness-*.json"))
    assert len(cached) == 1
    again = S.analyse_run(trained, settings, ascent_eta=20)
    assert _same_numbers(first.spread, again.spread)
    assert _same_numbers(first.hessian.drop(columns="seconds"), again.hessian.drop(columns="seconds"))
    assert set(first.landscape["direction"]) == {"random", "SAM ascent", "ImbSAM ascent"}
    cached[0].write_text("{truncated")
    with pytest.warns(UserWarning, match="damaged"):
        redone = S.analyse_run(trained, settings, ascent_eta=20)
    assert _same_numbers(first.spread, redone.spread)
    assert S.analyse_run(trained, settings, ascent_eta=20).probe == first.probe       # rewritten whole
    assert set(first.hessian["scale"]) == {"none", "filter"}
    table = S.sharpness_table({"a": first, "b": again}, {"a": trained, "b": trained}, settings.report_sigma)
    assert {"test few", "Δloss", "spread", "λ", "λ~ few", "tr~"} <= set(table.columns)
    assert table.loc["a", "test overall"] == pytest.approx(trained.result()["overall"])
    with pytest.raises(ConfigError, match="report_sigma"):
        S.analysis_settings("smoke", sigmas=[0.3])
    with pytest.raises(ConfigError, match="unknown analysis setting"):
        S.analysis_settings("quick", sigma=[0.1])


def test_model_curvature_matches_the_dense_hessian_of_a_small_network():
    from ltlib.analysis.sharpness.analysis import _scaled, filter_scales

    model, probe = SmoothNet().eval().double(), _probe()
    probe = S.Probe(probe.inputs.double(), probe.labels, probe.class_names, probe.groups, probe.loss_fn)
    params = S.select_params(model)
    hvp = S.model_hvp(model, probe, params)
    shapes = [p.tensor.shape for p in params]
    sizes = [p.tensor.numel() for p in params]

    def dense(op):
        cols = []
        for i in range(sum(sizes)):
            e = torch.zeros(sum(sizes), dtype=torch.float64)
            e[i] = 1
            cols.append(torch.cat([h.flatten() for h in op([t.view(s) for t, s in zip(e.split(sizes), shapes)])]))
        return torch.stack(cols, 1)

    like = [p.tensor for p in params]
    for op in (hvp, _scaled(hvp, filter_scales(params))):
        h = dense(op)
        torch.testing.assert_close(h, h.T, rtol=1e-8, atol=1e-10)
        eigenvalues = torch.linalg.eigvalsh(h)
        top = eigenvalues[eigenvalues.abs().argmax()]
        eig = S.top_eigenvalue(op, like, iters=500, tol=1e-12, generator=torch.Generator().manual_seed(0))
        assert eig.value == pytest.approx(float(top), rel=1e-6)
        trace = S.hutchinson_trace(op, like, samples=200, generator=torch.Generator().manual_seed(0))
        assert abs(trace.value - float(torch.trace(h))) < 4 * trace.std_error + 1e-9


def test_the_training_loss_probe_is_the_runs_criterion_with_its_final_drw_weights(fake_fmnist):
    """The probe's training loss is PyTorch's weighted CE with the DRW weights (1 - b) / (1 - b^n_c), summing to C,
    computed here by hand. Planted slip caught (shown failing; the earlier version, which took its weights from
    effective_number_weights itself, passed on it): inverse-frequency weights in place of effective numbers."""
    import torch.nn.functional as F

    from hand_oracles import effective_number_weights_by_hand
    from ltlib.runs.stage2 import make_stage2

    config = make_config("smoke", "cmo", test_per_class=None, reweight="drw")
    data = load_data(config)
    probe = S.make_probe(data, config, per_class=15, loss="train", batch_size=40)     # several batches
    model = build_model("resnet20", data.num_classes, in_channels=1, width=0.25).eval()
    losses, _ = S.probe_outputs(model, probe, fold_bn=False)
    with torch.no_grad():
        logits = model(probe.inputs)
    w = effective_number_weights_by_hand(data.class_counts.tolist(), config.drw_beta)
    expected = F.cross_entropy(logits, probe.labels, weight=w.float())                # PyTorch's weighted mean
    assert float(losses.mean()) == pytest.approx(float(expected), rel=1e-5)
    assert "training loss" in probe.description

    ldam = config.replace(loss="ldam", classifier="normed", reweight="none")
    train = S.make_probe(data, ldam, per_class=15, loss="train")
    predict = S.make_probe(data, ldam, per_class=15)
    cosine = torch.tensor([[0.2, 0.1], [0.1, 0.2]])
    labels = torch.tensor([0, 1])
    assert bool((train.loss_fn(cosine, labels) > predict.loss_fn(cosine, labels)).all())   # the margin costs
    with pytest.raises(ConfigError, match="stage-1"):
        S.make_probe(data, make_stage2(config, "crt"), loss="train")
    with pytest.raises(ConfigError, match="probe loss"):
        S.make_probe(data, config, loss="test")
