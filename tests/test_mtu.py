"""The MTU plan (stacks/config/mtu.py): each leg of the path from a homelab pod to Ollama on AWS
computed from config, every inner packet fitting its outer path."""

from __future__ import annotations

import pytest

from stacks.config import mtu, parse_project


def test_the_default_plan_fits_every_leg_with_the_numbers_of_the_readme() -> None:
    project = parse_project({})
    assert project.nebula.mtu == 1300
    legs = {leg.name: leg for leg in mtu.mtu_plan(project.nebula.mtu)}
    assert {n: (leg.inner_mtu + leg.overhead, leg.outer_mtu) for n, leg in legs.items()} == {
        "nebula": (1360, 1460),
        "liqo-wireguard": (1300, 1300),
        "liqo-geneve-homelab": (1290, 1450),
        "liqo-geneve-aws": (1290, 8951),
    }
    assert all(leg.fits for leg in legs.values())
    assert project.liqo_mtu == 1240


@pytest.mark.parametrize("value", range(1200, 1480, 4))
def test_exactly_the_allowed_range_fits(value: int) -> None:
    low, high = mtu.ALLOWED_NEBULA_MTU
    assert (low, high) == (1260, 1400)
    assert (mtu.mtu_problems(value) == []) == (low <= value <= high)


def test_a_misfit_names_the_leg() -> None:
    (problem,) = mtu.mtu_problems(1420)
    assert problem.startswith(
        "Nebula's UDP on the internet: 1420 + 60 bytes of headers exceed 1460"
    )
    assert "Liqo WireGuard" in mtu.mtu_problems(1250)[0]
