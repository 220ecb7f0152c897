"""The allocator policy while models run (battery_fl_core::runtime)."""

import pytest

import battery_fl


def test_memory_policy_is_retain_by_default_and_can_be_turned_off():
    assert battery_fl.memory_policy() == "retain"
    try:
        battery_fl.set_memory_policy("system")
        assert battery_fl.memory_policy() == "system"
    finally:
        battery_fl.set_memory_policy("retain")
    with pytest.raises(battery_fl.ConfigError, match="policy"):
        battery_fl.set_memory_policy("always")  # type: ignore[arg-type]
