"""NebulaCa: the mesh certificate authority, kept in Pulumi state.

The signing key is derived from a ``random.RandomBytes`` seed (protected: a new seed is a new CA
and every node would have to be re-keyed at once). The certificate's validity comes from the
stack's renewal clock (components/lifecycle/renewal.py), so the same state and window always give
the same CA and ``pulumi up`` twice changes nothing. In the next window the CA certificate is
re-issued for the same key; nodes then trust a bundle of the new and the previous certificate, so
host certificates signed by either verify while nodes are updated one by one (a stopped GPU
worker included).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_random as random

from components.base.renewal import Validity
from components.nebula.pki import NebulaCa as CaMaterial
from components.nebula.pki import ca_from_seed


@dataclass(frozen=True)
class NebulaCaArgs:
    ca_name: str
    validity: pulumi.Input[Validity]
    """This window's validity of the CA certificate."""
    previous_validity: pulumi.Input[Validity | None] = None
    """The previous window's, while certificates it signed may still be on nodes."""


class NebulaCa(pulumi.ComponentResource):
    cert_pem: pulumi.Output[str]
    """The current CA certificate (public): the issuer of new host certificates."""
    bundle_pem: pulumi.Output[str]
    """Every CA certificate a node must trust: current first, then the previous one (public)."""
    key_pem: pulumi.Output[str]
    """CA signing key. Secret."""
    fingerprint: pulumi.Output[str]

    def __init__(self, name: str, args: NebulaCaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hybridgpu:nebula:NebulaCa", name, None, opts)
        seed = random.RandomBytes(
            f"{name}-key-seed", length=32, opts=pulumi.ResourceOptions(parent=self, protect=True)
        )

        def issue(seed_b64: str, validity: Validity | None) -> CaMaterial | None:
            if validity is None:
                return None
            return ca_from_seed(
                base64.b64decode(seed_b64), args.ca_name, validity.not_before, validity.not_after
            )

        current = pulumi.Output.all(seed.base64, args.validity).apply(lambda v: issue(*v))
        previous = pulumi.Output.all(seed.base64, args.previous_validity).apply(lambda v: issue(*v))

        def require(material: CaMaterial | None) -> CaMaterial:
            assert material is not None  # the current validity is never None
            return material

        material = current.apply(require)
        # The certificates and fingerprint are public even though they derive from the seed.
        self.cert_pem = pulumi.Output.unsecret(material.apply(lambda m: m.cert_pem))
        self.fingerprint = pulumi.Output.unsecret(material.apply(lambda m: m.fingerprint))
        self.bundle_pem = pulumi.Output.unsecret(
            pulumi.Output.all(material, previous).apply(
                lambda pair: "".join(m.cert_pem for m in pair if m is not None)
            )
        )
        self.key_pem = pulumi.Output.secret(material.apply(lambda m: m.key_pem))
        self.register_outputs(
            {
                "certPem": self.cert_pem,
                "bundlePem": self.bundle_pem,
                "keyPem": self.key_pem,
                "fingerprint": self.fingerprint,
            }
        )
