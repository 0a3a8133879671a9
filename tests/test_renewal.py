"""Renewal under a plain `pulumi up` (no refresh): the program decides, from the clock and an
anchor kept in state, when a certificate is re-issued (components/base/renewal.py); the new
certificates reach every node by the paths that deliver them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from components.base.renewal import window_validity
from components.nebula.pki import parse_cert_pem
from tools.fakes import MOCK_TIME
from tools.offline import StackRun, run_stack

ANCHOR = datetime.fromisoformat(MOCK_TIME.replace("Z", "+00:00"))
CONTROL_CERT = "/hybridgpu/aws-gpu/control-node/files/nebula/host.crt"


def test_a_window_gives_the_same_validity_until_the_next_one() -> None:
    first = window_validity(anchor=ANCHOR, now=ANCHOR, validity_days=365, renew_before_days=30)
    assert first.window == 0
    assert first.not_before == ANCHOR - timedelta(hours=1)  # back-dated for a slow clock
    assert first.not_after == ANCHOR + timedelta(days=365)
    same = window_validity(
        anchor=ANCHOR, now=ANCHOR + timedelta(days=334), validity_days=365, renew_before_days=30
    )
    assert same == first, "every `up` inside the window changes nothing"
    renewed = window_validity(
        anchor=ANCHOR, now=ANCHOR + timedelta(days=335), validity_days=365, renew_before_days=30
    )
    assert renewed.window == 1
    assert renewed.not_after == ANCHOR + timedelta(days=335 + 365)
    # A clock a moment before the anchor (stamped after the program read it) is window 0.
    early = window_validity(
        anchor=ANCHOR, now=ANCHOR - timedelta(seconds=5), validity_days=365, renew_before_days=30
    )
    assert early == first
    with pytest.raises(ValueError, match="renew_before_days"):
        window_validity(anchor=ANCHOR, now=ANCHOR, validity_days=30, renew_before_days=30)


@pytest.mark.parametrize("day", [0, 1, 100, 334, 335, 700, 3000])
def test_every_up_leaves_at_least_the_renewal_margin(day: int) -> None:
    now = ANCHOR + timedelta(days=day)
    validity = window_validity(anchor=ANCHOR, now=now, validity_days=365, renew_before_days=30)
    assert validity.not_before <= now
    assert validity.not_after - now >= timedelta(days=30)


def _host_certs(run: StackRun) -> dict[str, str]:
    return {
        reg.name: run.outputs_of("hybridgpu:nebula:NebulaHost", reg.name)["certPem"]
        for reg in run.by_type("hybridgpu:nebula:NebulaHost")
    }


def _parameter(run: StackRun, name: str) -> str:
    (reg,) = [
        r for r in run.by_type("aws:ssm/parameter:Parameter") if r.plain_inputs["name"] == name
    ]
    return reg.plain_inputs["value"]


def test_340_days_later_a_plain_up_renews_every_certificate_and_delivers_it() -> None:
    day0 = ANCHOR
    day340 = ANCHOR + timedelta(days=340)
    aws0, home0 = run_stack("aws-gpu", now=day0), run_stack("homelab", now=day0)
    aws100 = run_stack("aws-gpu", now=ANCHOR + timedelta(days=100))
    assert _host_certs(aws100) == _host_certs(aws0), "an up inside the window changes nothing"
    aws340, home340 = run_stack("aws-gpu", now=day340), run_stack("homelab", now=day340)

    before = {**_host_certs(aws0), **_host_certs(home0)}
    after = {**_host_certs(aws340), **_host_certs(home340)}
    assert set(before) == set(after)
    assert len(after) == 1 + 7  # the AWS control node and every homelab VM
    for name, pem in after.items():
        old, new = parse_cert_pem(before[name]).details, parse_cert_pem(pem).details
        assert new.not_after > old.not_after, name
        assert new.not_after - day340 >= timedelta(days=30), name
        assert new.not_before <= day340, name
        assert new.public_key == old.public_key, f"{name}: renewal keeps the node's key"

    # The control node gets it through its published files, and the apply over SSH runs again.
    assert _parameter(aws340, CONTROL_CERT) == after["control-node-nebula"]
    assert _parameter(aws0, CONTROL_CERT) == before["control-node-nebula"]
    apply0 = aws0.one("command:remote:Command", "control-node-apply")
    apply340 = aws340.one("command:remote:Command", "control-node-apply")
    assert apply0.plain_inputs["triggers"] != apply340.plain_inputs["triggers"]
    # ... without touching the instances (nothing that would stop, start or replace them).
    for typ in ("aws:ec2/instance:Instance", "aws:ec2/spotInstanceRequest:SpotInstanceRequest"):
        assert [r.plain_inputs for r in aws0.by_type(typ)] == [
            r.plain_inputs for r in aws340.by_type(typ)
        ]
    # Every homelab VM gets it through its SSH install, whose stdin (the files) changed: an
    # update that runs the install again (pulumi-command runs `update` on any input change).
    for reg in home340.by_type("command:remote:Command"):
        if not reg.name.endswith("-nebula-install"):
            continue
        old = home0.one("command:remote:Command", reg.name)
        assert old.plain_inputs["stdin"] != reg.plain_inputs["stdin"], reg.name
        assert old.plain_inputs["create"] == reg.plain_inputs["create"], reg.name
