"""NebulaCa: the mesh certificate authority, kept in Pulumi state.

The signing key is derived from a ``random.RandomBytes`` seed and the validity window from a
``time.Rotating`` timestamp, both persisted in state: the same state always gives the same CA,
so ``pulumi up`` twice changes nothing. When the rotation date passes (``validity_days -
renew_before_days`` after issue) the next ``pulumi up`` issues a fresh CA certificate for the same
key, early enough that every host certificate it signs still fits inside its lifetime.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta

import pulumi
import pulumi_random as random
import pulumiverse_time as time

from components.nebula.pki import NebulaCa as CaMaterial
from components.nebula.pki import ca_from_seed


def parse_rfc3339(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class NebulaCaArgs:
    ca_name: str
    validity_days: int
    renew_before_days: int
    """Re-issue the CA this many days before it expires (at least one host-cert lifetime)."""


class NebulaCa(pulumi.ComponentResource):
    cert_pem: pulumi.Output[str]
    """CA certificate (public)."""
    key_pem: pulumi.Output[str]
    """CA signing key. Secret."""
    fingerprint: pulumi.Output[str]

    def __init__(self, name: str, args: NebulaCaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hybridgpu:nebula:NebulaCa", name, None, opts)
        if args.renew_before_days >= args.validity_days:
            raise ValueError(
                f"NebulaCa {name}: renew_before_days ({args.renew_before_days}) must be below "
                f"validity_days ({args.validity_days})"
            )
        child = pulumi.ResourceOptions(parent=self)
        seed = random.RandomBytes(f"{name}-key-seed", length=32, opts=child)
        issued = time.Rotating(
            f"{name}-validity",
            rotation_days=args.validity_days - args.renew_before_days,
            opts=child,
        )

        def issue(values: list[str]) -> CaMaterial:
            seed_b64, not_before = values
            start = parse_rfc3339(not_before)
            return ca_from_seed(
                base64.b64decode(seed_b64),
                args.ca_name,
                start,
                start + timedelta(days=args.validity_days),
            )

        material = pulumi.Output.all(seed.base64, issued.rfc3339).apply(issue)
        # The certificate and fingerprint are public even though they derive from the seed.
        self.cert_pem = pulumi.Output.unsecret(material.apply(lambda m: m.cert_pem))
        self.fingerprint = pulumi.Output.unsecret(material.apply(lambda m: m.fingerprint))
        self.key_pem = pulumi.Output.secret(material.apply(lambda m: m.key_pem))
        self.register_outputs(
            {"certPem": self.cert_pem, "keyPem": self.key_pem, "fingerprint": self.fingerprint}
        )
