"""Every response loss declares a search space beside its defaults, and the space holds the paper's settings."""

import pytest

from kdlab.errors import ConfigError
from kdlab.losses import build, loss_names, search_space

# the papers' (or their released code's) settings, written out here rather than read from the code, so a changed
# default or a trimmed space fails this test
PAPER_SETTINGS = {
    "kd": [{"temperature": 4.0, "alpha": 0.9}],  # CRD's CIFAR-100 KD setting
    "tllm": [{"temperature": 4.0, "alpha": 0.9}],
    "ats": [{"tau_gt": 4.0, "tau_other": 2.0, "alpha": 0.5}],  # the authors' demo
    "isats": [{"tau_gt": 4.0, "tau_min": 1.0, "alpha": 0.5}],
    "dkd": [{"beta": 8.0, "temperature": 4.0}, {"beta": 0.5, "temperature": 1.0}],  # CIFAR-100, ImageNet
    "dist": [{"temperature": 1.0, "beta": 2.0, "gamma": 2.0}, {"temperature": 4.0, "beta": 2.0, "gamma": 2.0}],
    "logit_std": [{"temperature": 2.0, "kd_weight": 9.0}, {"temperature": 3.0, "kd_weight": 9.0}],
    "ctkd": [{"curriculum_fraction": 10 / 240, "alpha": 0.9}],  # 10 of 240 epochs, CE 0.1 / KD 0.9
}
# losses with nothing to tune: the no-teacher baseline, and the nasty teacher's own objective (not a student method)
UNTUNED = {"ce", "nasty"}


def test_every_loss_is_either_tuned_or_declared_untuned():
    assert set(loss_names()) == set(PAPER_SETTINGS) | UNTUNED


@pytest.mark.parametrize("name", sorted(PAPER_SETTINGS))
def test_space_contains_the_papers_settings(name):
    space = search_space(name)
    for setting in PAPER_SETTINGS[name]:
        assert space.contains(setting), f"{name}: {setting} not in {space.describe()}"


@pytest.mark.parametrize("name", sorted(PAPER_SETTINGS))
def test_space_contains_the_losss_own_defaults_and_every_point_builds(name):
    space = search_space(name)
    defaults = build(name).hyperparams
    assert space.contains({key: defaults[key] for key in space.keys})
    assert set(space.keys) <= set(defaults)  # every key is an option of the loss
    for point in space.grid():
        build(name, **point)  # valid hyperparameters, checked by the loss itself


@pytest.mark.parametrize("name", sorted(UNTUNED))
def test_untuned_losses_have_the_one_point_space(name):
    assert search_space(name).grid() == [{}]


def test_ats_keeps_its_rule_and_the_symmetric_control_uses_the_same_values():
    ats, symmetric = search_space("ats"), search_space("ats", "symmetric")
    assert all(p["tau_gt"] > p["tau_other"] for p in ats.grid())
    assert all(p["tau_gt"] == p["tau_other"] for p in symmetric.grid())
    assert ats.values == symmetric.values  # same candidate values: the asymmetry is the only difference
    assert (ats.size(), symmetric.size()) == (18, 12)
    assert symmetric.contains({"tau_gt": 2.0, "tau_other": 2.0, "alpha": 0.5})  # the demo's tau_other, both sides
    with pytest.raises(ConfigError, match="loss 'ats' has no control space 'reverse'. Allowed: symmetric"):
        search_space("ats", "reverse")


def test_isats_space_keeps_the_grid_below_tau_gt():
    assert all(p["tau_min"] < p["tau_gt"] for p in search_space("isats").grid())


def test_every_tuned_space_fits_an_equal_budget_of_twelve():
    # the smallest spaces have 12 points: a 12-trial budget runs every method's full grid or a sample of it
    sizes = {name: search_space(name).size() for name in PAPER_SETTINGS}
    sizes["ats_symmetric"] = search_space("ats", "symmetric").size()
    assert min(sizes.values()) == 12
