"""battery_fl.flower.settings: one name and one default per federation setting, taken from
the core (the same as battery_fl.Simulation's)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import battery_fl
from battery_fl.flower import FederationSettings
from battery_fl.flower.settings import (
    SHARED_SETTINGS,
    STRATEGIES,
    model_from_config,
    model_to_config,
)


def _core(key: str) -> object:
    value: object = battery_fl.Simulation.default_config()
    for part in key.split("."):
        assert isinstance(value, dict)
        value = value[part]
    return value


@pytest.mark.parametrize("field", SHARED_SETTINGS)
def test_shared_defaults_are_the_core_defaults(field: str) -> None:
    default = {f.name: f.default for f in dataclasses.fields(FederationSettings)}[field]
    assert default == _core(SHARED_SETTINGS[field]), field
    assert getattr(FederationSettings(), field) == default


def test_every_core_setting_flower_has_is_shared() -> None:
    """A settings field named like a core federation setting takes its default from it
    (``secure_aggregation`` is a switch here, a settings table or ``None`` in the core)."""
    defaults = battery_fl.Simulation.default_config()
    core = set(defaults) | {f"server_{k}" for k in defaults["server_optimizer"]}
    fields = {f.name for f in dataclasses.fields(FederationSettings)}
    assert fields & core - {"secure_aggregation"} <= set(SHARED_SETTINGS)
    assert FederationSettings().secure_aggregation is (defaults["secure_aggregation"] is not None)
    assert FederationSettings().strategy == "fed_prox"
    assert FederationSettings().proximal_mu_for_clients() == _core("proximal_mu")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_are_the_core_names(strategy: str) -> None:
    settings = FederationSettings(strategy=strategy)
    assert settings.aggregator().name == strategy
    mean_based = battery_fl.strategy_needs_only_the_sum(strategy)
    assert mean_based is (strategy not in ("fed_median", "fed_trimmed_avg"))
    if not mean_based:
        for private in ({"secure_aggregation": True}, {"dp_clipping_norm": 1.0}):
            with pytest.raises(battery_fl.ConfigError):
                FederationSettings(strategy=strategy, **private)


def test_neighbours_is_the_core_spelling() -> None:
    settings = FederationSettings.from_run_config({"secagg-neighbours": 5})
    assert settings.secagg_neighbours == 5
    assert settings.to_run_config()["secagg-neighbours"] == 5
    with pytest.raises(battery_fl.ConfigError) as info:
        FederationSettings.from_run_config({"secagg-neighbors": 5})
    assert info.value.field == "secagg-neighbors"
    with pytest.raises(battery_fl.ConfigError):
        FederationSettings(strategy="fedavg")


def test_personalization_settings_reach_the_run_config() -> None:
    """``personalization`` and its knobs are core settings; ``personal-epochs = 0`` stands for
    the core's ``None`` (``local-epochs``), since TOML has no null."""
    settings = FederationSettings.from_run_config(
        {
            "personalization": "ditto",
            "ditto-lambda": 0.5,
            "personal-epochs": 0,
            "validation-fraction": 0.5,
            "choice-margin": 0.5,
        }
    )
    assert settings.choice_margin == 0.5
    assert (settings.personalization, settings.ditto_lambda, settings.personal_epochs) == (
        "ditto",
        0.5,
        None,
    )
    flat = settings.to_run_config()
    assert flat["personal-epochs"] == 0 and FederationSettings.from_run_config(flat) == settings
    assert FederationSettings.from_run_config({"personal-epochs": 2}).personal_epochs == 2
    # every mode the core knows, `auto_head` the last added, and only those
    assert battery_fl.flower.settings.PERSONALIZATIONS == battery_fl._core.PERSONALIZATIONS
    for mode in ("none", "fine_tune", "head", "ditto", "auto", "auto_head"):
        assert FederationSettings.from_run_config({"personalization": mode}).personalization == mode
    bad = [
        {"personalization": "everyone"},
        {"ditto-lambda": -1.0},
        {"personal-epochs": -1},
        {"validation-fraction": 0.75},
        {"choice-margin": -1.0},
        {"auto-margin": 0.1},  # renamed: refused, not ignored
        # the core checks these (check_federation_config), named by run-config key
        {"trimmed-beta": 0.6, "strategy": "fed_trimmed_avg"},
        {"server-beta1": 1.0, "strategy": "fed_adam"},
        {"proximal-mu": -0.5},
    ]
    for run_config in bad:
        with pytest.raises(battery_fl.ConfigError) as info:
            FederationSettings.from_run_config(run_config)
        assert info.value.field == next(iter(run_config)), run_config  # type: ignore[attr-defined]


def test_clients_per_round_and_max_delta_norm_are_the_cores_settings() -> None:
    """``clients-per-round = 0`` stands for the core's ``None`` (every node); the core checks
    it against the nodes (``min-nodes``), and it does not mix with Flower's ``fraction-train``."""
    settings = FederationSettings.from_run_config({"clients-per-round": 2, "min-nodes": 3})
    assert settings.clients_per_round == 2 and settings.core_config()["clients_per_round"] == 2
    assert FederationSettings.from_run_config(settings.to_run_config()) == settings
    assert FederationSettings.from_run_config({"clients-per-round": 0}).clients_per_round is None
    assert FederationSettings().clients_per_round is None
    # max-delta-norm likewise (0: no bound); a server under secure aggregation cannot check it
    # (the bound is the strategy's, on each update: the aggregator, which also applies released
    # means, carries none, as the Simulation's)
    bounded = FederationSettings.from_run_config({"max-delta-norm": 2.5})
    assert bounded.max_delta_norm == 2.5 and bounded.core_config()["max_delta_norm"] == 2.5
    assert bounded.aggregator().to_json() == FederationSettings().aggregator().to_json()
    assert FederationSettings.from_run_config({"max-delta-norm": 0}).max_delta_norm is None
    for bad in (
        {"clients-per-round": 4, "min-nodes": 3},
        {"clients-per-round": -1},
        {"fraction-train": 0.5, "clients-per-round": 1},
        {"max-delta-norm": 1.0, "secure-aggregation": True},
        {"max-delta-norm": -1.0},
    ):
        with pytest.raises(battery_fl.ConfigError) as info:
            FederationSettings.from_run_config(bad)
        assert info.value.field == next(iter(bad)), bad  # type: ignore[attr-defined]


def test_dp_secagg_and_interval_defaults_come_from_the_core() -> None:
    settings = battery_fl.flower.FederationSettings()
    dp_defaults = battery_fl.dp.default_config()
    secagg_defaults = battery_fl.secagg.default_config()
    assert (settings.dp_mode, settings.dp_target_delta) == (
        dp_defaults["mode"],
        dp_defaults["target_delta"],
    )
    assert (settings.secagg_clipping_range, settings.secagg_modulus_bits) == (
        secagg_defaults["clipping_range"],
        secagg_defaults["modulus_bits"],
    )
    assert settings.interval_coverage == battery_fl._core.DEFAULT_COVERAGE
    with pytest.raises(battery_fl.ConfigError):
        battery_fl.flower.FederationSettings(interval_coverage=1.0)


def test_a_preset_gives_the_nodes_the_cores_recipe() -> None:
    """``batlinet-preset = "matr"`` builds the recipe the main job trains on MATR (the core's
    ``BatLiNetPreset::Matr``); ``model.*`` and ``featurizer.*`` still override it, and the
    model that travels to the nodes is that one."""
    settings = FederationSettings.from_run_config(
        {"batlinet-preset": "matr", "model.epochs": 5, "featurizer.interp-dim": 50}
    )
    model = settings.build_model()
    preset = battery_fl.batlinet_preset("matr")
    assert model.config["inter_features"] == preset["model"]["inter_features"]
    assert model.config["input_channels"] == [1] and model.config["epochs"] == 5
    assert model.featurizer.first_cycle == preset["featurizer"]["first_cycle"]
    assert model.input_shape == (1, preset["featurizer"]["cycles"], 50)
    sent = model_to_config(model)
    travelled = model_from_config(sent["model"], sent["featurizer"])
    assert travelled.config == model.config and travelled.input_shape == model.input_shape
    # the default preset is the library's defaults
    default = FederationSettings().build_model().config
    assert default == battery_fl.BatLiNet(progress=False).config
    with pytest.raises(battery_fl.ConfigError) as info:
        FederationSettings.from_run_config({"batlinet-preset": "severson"})
    assert info.value.field == "batlinet-preset"  # type: ignore[attr-defined]


def test_the_strategys_default_rule_is_the_cores_and_its_nodes_get_the_term() -> None:
    """``BatteryFlStrategy()`` aggregates with the core's default strategy (FedProx) and sends
    the nodes its proximal term, unless the run's config already carries one."""
    from flwr.app import ArrayRecord, ConfigRecord
    from flwr.clientapp import ClientApp

    from battery_fl.flower import BatteryFlStrategy, LocalGrid

    core = battery_fl.Simulation.default_config()
    strategy = BatteryFlStrategy(min_train_nodes=2, min_available_nodes=2)
    assert strategy.aggregator.name == core["strategy"] == "fed_prox"
    grid = LocalGrid(ClientApp(), {1: {}, 2: {}})
    arrays = ArrayRecord([np.zeros(2)])
    sent = list(strategy.configure_train(1, arrays, ConfigRecord({}), grid))
    assert len(sent) == 2
    assert all(m.content["config"]["proximal-mu"] == core["proximal_mu"] for m in sent)
    ours = list(strategy.configure_train(2, arrays, ConfigRecord({"proximal-mu": 0.5}), grid))
    assert all(m.content["config"]["proximal-mu"] == 0.5 for m in ours)
    plain = BatteryFlStrategy(battery_fl.FedAvg(), min_train_nodes=2, min_available_nodes=2)
    sent = list(plain.configure_train(1, arrays, ConfigRecord({}), grid))
    assert all("proximal-mu" not in m.content["config"] for m in sent)
