import json
from pathlib import Path

import pytest
import torch

from ltlib.core.errors import ConfigError
from ltlib.runs.config import PROFILES, RECIPES, RunConfig, make_config
from ltlib.runs.stage2 import STAGE2_RECIPES, make_stage2


def test_defaults_resolve_from_dataset():
    cfg = RunConfig()
    assert cfg.n_max == 6000 and cfg.crop_padding == 2
    assert RunConfig(dataset="cifar100_lt").crop_padding == 4


def test_quick_profile_matches_the_pilot():
    cfg = make_config("quick")
    assert (cfg.n_max, cfg.width, cfg.epochs, cfg.batch_size, cfg.val_split) == (1000, 0.5, 30, 128, "unused")
    assert cfg.precision == "fp32" and cfg.channels_last  # bf16 shifted results in one recipe: a switch


def test_paper_recipes():
    wb = make_config("paper", "wb", "cifar100_lt")
    assert (wb.model, wb.epochs, wb.batch_size, wb.lr, wb.weight_decay, wb.schedule, wb.subset) == \
        ("resnet34_wb", 320, 64, 0.01, 5e-3, "cosine_epoch_start", "first")
    ce = make_config("paper", "ce", "cifar10_lt")
    assert (ce.model, ce.epochs, ce.lr, ce.weight_decay, ce.schedule, ce.warmup_epochs) == \
        ("resnet32", 200, 0.1, 2e-4, "warmup_multistep", 5)


def test_cifar100_quick_uses_holdout_validation():
    # at n_max = 500 the head class has no unused images left
    assert make_config("quick", dataset="cifar100_lt").val_split == "holdout"


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="fashion_mnist_lt"):
        make_config("quick", dataset="fmnist")
    with pytest.raises(ConfigError, match="smoke"):
        make_config("fast")
    with pytest.raises(ConfigError, match="resnet32"):
        make_config("quick", model="vit")
    with pytest.raises(ConfigError, match="Valid fields"):
        make_config("quick", learning_rate=0.1)


@pytest.mark.parametrize("bad", [0.9, -5, "100", float("nan")])
def test_bad_imbalance_factor(bad):
    with pytest.raises(ConfigError, match="imbalance_factor"):
        make_config("quick", imbalance_factor=bad)


def test_imbalance_factor_one_is_a_balanced_control():
    config = make_config("quick", imbalance_factor=1, n_max=248)
    assert config.imbalance_factor == 1 and config.n_max == 248


def test_unset_imbalance_factor_is_100():
    assert make_config("quick", imbalance_factor=None).imbalance_factor == 100.0


@pytest.mark.parametrize("field,value,why", [
    ("epochs", 0, "positive"), ("epochs", 2.5, "must be int"), ("lr", -0.1, "positive"),
    ("momentum", 1.0, r"\[0, 1\)"), ("weight_decay", -1e-4, ">= 0"), ("precision", "fp16", "not one of"),
    ("n_max", 7000, "1..6000"), ("warmup_epochs", 30, "epochs=30"), ("flip", "yes", "must be bool"),
    ("val_split", "test", "not one of"),
])
def test_impossible_values_name_the_field(field, value, why):
    with pytest.raises(ConfigError, match=rf"RunConfig\.{field}.*{why}|{why}.*{field}"):
        make_config("quick", **{field: value})


def test_hash_is_stable_and_ignores_labels():
    a = make_config("quick", name="a")
    assert a.hash() == make_config("quick", name="b").hash()
    assert a.hash() == RunConfig.from_dict(a.to_dict()).hash()
    assert a.hash() != a.replace(seed=1).hash()
    assert a.hash() != a.replace(weight_decay=0.0).hash()
    assert a.run_name == f"a-{a.hash()}" and len(a.hash()) == 10


def test_registries_describe_themselves():
    for registry in (PROFILES, RECIPES):
        assert all(name in registry.describe() for name in registry)


def _recipe_hashes() -> dict[str, str]:
    """Every recipe at every profile on three data sets, each stage-2 recipe on top of it, and the series' method
    variants on the quick weight-balancing recipe: their run hashes (or the error a combination raises)."""
    out = {}
    for profile in ("smoke", "quick", "paper"):
        for recipe in RECIPES:
            for dataset in ("fashion_mnist_lt", "cifar100_lt", "cifar10_lt"):
                key = f"{profile}/{recipe}/{dataset}"
                config = make_config(profile, recipe, dataset)
                out[key] = config.hash()
                for second in STAGE2_RECIPES:
                    out[f"{key}/stage2-{second}"] = make_stage2(config, second).hash()
    base = make_config("quick", "wb")
    variants = dict(sam=dict(step="sam"), asam=dict(step="asam", rho=0.5), imbsam=dict(step="imbsam"),
                    imbsam_rho0=dict(step="imbsam", rho=0.0), imbsam_x1=dict(step="imbsam", imbsam_tail_factor=1.0),
                    ccsam=dict(step="ccsam", mixing="mixup"), cmo=dict(mixing="cmo"), bs=dict(loss="bs"),
                    ldam_drw=dict(loss="ldam", reweight="drw", classifier="normed"), ce_drw=dict(reweight="drw"),
                    focal=dict(loss="focal"), mixup=dict(mixing="mixup"))
    out.update({f"quick/wb+{k}": base.replace(**v).hash() for k, v in variants.items()})
    return out


def test_every_recipes_hash_is_pinned():
    """Every cached run keeps its folder: the hashes of each recipe x profile x data set, with each stage-2 recipe,
    and of the series' method variants equal the ones the code computed before issue 22's refactoring
    (tests/pinned_hashes.json, commit ea438f6), but for the 67 that issue 25's recipe corrections changed on purpose;
    recipes added since add their own (its provenance lists both)."""
    pinned = json.loads((Path(__file__).parent / "pinned_hashes.json").read_text())["hashes"]
    assert _recipe_hashes() == pinned


def test_each_methods_fields_live_in_its_own_settings_block():
    """A method's fields are declared once, in its block (none in RunConfig's own body, none in two blocks), and its
    registry entry names the block the run setup reads."""
    from ltlib.data.mixing import MIXINGS
    from ltlib.data.strong import STRONG_AUGMENTS
    from ltlib.methods.losses import LOSSES
    from ltlib.methods.step import STEPS
    from ltlib.runs.config import BLOCKS

    names = [n for block in BLOCKS for n in block.block_fields()]
    assert len(names) == len(set(names))
    assert not set(names) & set(RunConfig.__annotations__)          # RunConfig's own fields are the common ones
    assert {"rho", "ccsam_radius", "cmo_prob", "mixup_alpha", "ldam_s", "focal_gamma", "drw_beta", "la_tau"} <= set(names)
    named = {e.info["settings"] for reg in (STEPS, LOSSES, MIXINGS, STRONG_AUGMENTS) for e in map(reg.entry, reg) if "settings" in e.info}
    assert named | {block for block in BLOCKS if block.__name__ == "DRWSettings"} == set(BLOCKS)


@pytest.mark.parametrize("change, used", [
    (dict(rho=0.5), dict(step="sam")), (dict(ccsam_radius=0.1), dict(step="ccsam")),
    (dict(cmo_prob=0.9), dict(mixing="cmo")), (dict(mixup_alpha=0.5), dict(mixing="mixup")),
    (dict(ldam_s=10.0), dict(loss="ldam", classifier="normed")), (dict(focal_gamma=2.0), dict(loss="focal")),
    (dict(drw_beta=0.99), dict(reweight="drw")), (dict(la_tau=1.5), dict(loss="la")),
])
def test_a_block_counts_toward_the_hash_only_where_the_run_uses_it(change, used):
    """The planted slip: a block hashed whether or not its method is used would move every cached run's folder."""
    base = make_config("quick", "wb")
    assert base.replace(**change).hash() == base.hash()
    with_method = base.replace(**used)
    assert with_method.replace(**change).hash() != with_method.hash()


def test_paper_recipes_follow_the_released_configs():
    """Issue 25's corrections: CC-SAM takes Cifar100.json on CIFAR-100 (f 0.5, stage-2 up_limit 0.3) and Cifar10.json
    elsewhere (f 0.3, up_limit 1.0); weight balancing reports as its released protocol (flip TTA, best epoch on test,
    as ImbSAM's); the ImbSAM recipe trains with the ImbSAM step. The CPU scales keep their values."""
    from ltlib.runs.stage2 import make_stage2
    for dataset, f, up in (("cifar100_lt", 0.5, 0.3), ("cifar10_lt", 0.3, 1.0), ("fashion_mnist_lt", 0.3, 1.0)):
        stage1 = make_config("paper", "ccsam", dataset)
        assert (stage1.ccsam_flat_ratio, make_stage2(stage1, "ccsam").up_limit) == (f, up)
    quick = make_config("quick", "ccsam", "cifar100_lt")
    assert (quick.ccsam_flat_ratio, make_stage2(quick, "ccsam").up_limit) == (0.3, 1.0)
    for recipe in ("wb", "imbsam"):
        paper = make_config("paper", recipe, "cifar100_lt")
        assert paper.tta and paper.select_on_test
        assert not make_config("quick", recipe).tta and not make_config("quick", recipe).select_on_test
    assert {make_config(profile, "imbsam").step for profile in ("paper", "quick", "smoke")} == {"imbsam"}


def test_stage2_starts_from_the_last_stage1_epoch_unless_told_best_test(fake_fmnist, exp_dir):
    """CC-SAM's code starts stage 2 from the best stage-1 epoch on the test set: a named option, off by default
    (the default's hash is the one it always had), refused unless the stage-1 run keeps that epoch."""
    from ltlib.core import io
    from ltlib.runs.experiment import run, stage1_model
    from ltlib.runs.stage2 import make_stage2
    stage1 = make_config("smoke", test_per_class=None, name="s1")
    assert make_stage2(stage1, "ccsam").start_from == "last"
    assert make_stage2(stage1, "ccsam", start_from="last").hash() == make_stage2(stage1, "ccsam").hash()
    with pytest.raises(ConfigError, match="select_on_test=True"):
        make_stage2(stage1, "ccsam", start_from="best_test")
    kept = stage1.replace(select_on_test=True)
    assert make_stage2(kept, "ccsam", start_from="best_test").hash() != make_stage2(kept, "ccsam").hash()
    first = run(kept, progress=False)
    best = io.load_checkpoint(first.path / "model.pt")["best_test_model"]
    model = stage1_model(first, "best_test")
    assert model is not first.model
    for name, value in model.state_dict().items():
        assert torch.equal(value, best[name]), name
    assert stage1_model(first) is first.model
    second = run(make_stage2(kept, "crt", start_from="best_test"), progress=False)
    assert second.config.start_from == "best_test"

