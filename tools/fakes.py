"""What real providers would compute, faked deterministically for the offline runs: resource
outputs (ids, IPs, ARNs, command stdout, random bytes, timestamps) and invoke results (AMI and
AZ lookups, caller identity). Every value is a pure function of the resource's type and name,
so two runs produce byte-identical inputs downstream."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tools.values import unwrap

MOCK_ACCOUNT_ID = "123456789012"
MOCK_TIME = "2026-01-01T00:00:00Z"
UNOFFERED_TYPES: set[str] = set()
SPOT_PRICES: dict[str, str] = {}
"""Current spot price (USD/h) per instance type a test sets; others cost 0.2000."""
"""Instance types the mocked EC2 reports as not offered (tests add to it)."""


def digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _mock_ip(prefix: str, *parts: str) -> str:
    """A stable address in a documentation range (RFC 5737) derived from the parts."""
    value = int(digest(*parts)[:4], 16)
    return f"{prefix}.{value % 254 + 1}"


def _sample_kubeconfig(name: str) -> str:
    """What ``cat /etc/rancher/k3s/k3s.yaml`` prints on a fresh k3s server (fake credentials)."""
    fake = base64.b64encode(f"mock-{name}".encode()).decode()
    return (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {fake}\n"
        "    server: https://127.0.0.1:6443\n"
        "  name: default\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: default\n"
        "    user: default\n"
        "  name: default\n"
        "current-context: default\n"
        "kind: Config\n"
        "preferences: {}\n"
        "users:\n"
        "- name: default\n"
        "  user:\n"
        f"    client-certificate-data: {fake}\n"
        f"    client-key-data: {fake}\n"
    )


def computed_outputs(  # noqa: PLR0912 - one branch per resource type
    typ: str, name: str, inputs: Mapping[str, Any], stack: str, incarnation: int = 0
) -> dict[str, Any]:
    """Outputs a real provider would compute for this resource type."""
    resource_digest = digest(stack, typ, name)
    plain = unwrap(dict(inputs))
    if typ == "aws:ec2/instance:Instance":
        return {
            "publicIp": _mock_ip("198.51.100", stack, name),
            "privateIp": plain.get("privateIp") or _mock_ip("10.100.1", stack, name),
            "arn": f"arn:aws:ec2:us-west-2:{MOCK_ACCOUNT_ID}:instance/i-{resource_digest[:17]}",
            "primaryNetworkInterfaceId": f"eni-{resource_digest[:17]}",
            "instanceState": "running",
        }
    if typ == "aws:ec2/spotInstanceRequest:SpotInstanceRequest":
        return {
            "spotInstanceId": f"i-{resource_digest[:17]}",
            "publicIp": _mock_ip("198.51.100", stack, name),
            "privateIp": plain.get("privateIp") or _mock_ip("10.100.1", stack, name),
            "rootBlockDevice": {
                **plain.get("rootBlockDevice", {}),
                "volumeId": f"vol-{resource_digest[:17]}",
            },
            "spotRequestState": "active",
        }
    if typ == "aws:ec2/eip:Eip":
        return {
            "publicIp": _mock_ip("203.0.113", stack, name),
            "allocationId": f"eipalloc-{resource_digest[:17]}",
        }
    if typ == "aws:ec2/keyPair:KeyPair":
        return {
            "keyName": plain.get("keyName")
            or f"{plain.get('keyNamePrefix', name)}{resource_digest[:8]}"
        }
    if typ == "aws:s3/bucket:Bucket":
        bucket = plain.get("bucket") or f"{plain.get('bucketPrefix', name)}{resource_digest[:12]}"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "region": "us-west-2"}
    if typ in (
        "aws:iam/role:Role",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:iam/policy:Policy",
        "aws:iam/user:User",
    ):
        kind = typ.rsplit(":", maxsplit=1)[-1].lower()
        resource_name = plain.get("name") or f"{name}-{resource_digest[:7]}"
        return {
            "name": resource_name,
            "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:{kind}/{resource_name}",
        }
    if typ == "aws:iam/accessKey:AccessKey":
        # A computed secret (40 characters, like AWS's); the id is the access key id.
        return {"secret": f"mock{resource_digest[:36]}"}
    if typ in ("aws:rolesanywhere/trustAnchor:TrustAnchor", "aws:rolesanywhere/profile:Profile"):
        # arn:aws:rolesanywhere:region:account:trust-anchor/<uuid> (profile/<uuid>)
        kind = "trust-anchor" if typ.endswith("TrustAnchor") else "profile"
        uuid = f"{resource_digest[:8]}-{resource_digest[8:12]}-{resource_digest[12:16]}-" + (
            f"{resource_digest[16:20]}-{resource_digest[20:32]}"
        )
        return {"arn": f"arn:aws:rolesanywhere:us-west-2:{MOCK_ACCOUNT_ID}:{kind}/{uuid}"}
    if typ.startswith("aws:"):
        return {"arn": f"arn:aws:mock:us-west-2:{MOCK_ACCOUNT_ID}:{name}"}
    if typ in ("command:remote:Command", "command:local:Command"):
        create = str(plain.get("create", ""))
        if "/etc/rancher/k3s/k3s.yaml" in create or PRINTS_KUBECONFIG in create:
            stdout = _sample_kubeconfig(name)
        elif PRINTS_JOIN_TOKEN in create:
            # K10<sha256 of the cluster CA>::server:<password> (https://docs.k3s.io/cli/token).
            stdout = f"K10{digest('ca', name)}::server:mock{digest('token', name)[:24]}\n"
        elif "sha256sum" in create:
            stdout = digest(stack, name, "sha256sum") + "\n"
        else:
            stdout = f"mock stdout of {name}"
        return {"stdout": stdout, "stderr": ""}
    if typ == "random:index/randomBytes:RandomBytes":
        raw = hashlib.sha256(f"{stack}/{name}".encode()).digest()
        length = int(plain.get("length", 32))
        data = (raw * (length // len(raw) + 1))[:length]
        return {"base64": base64.b64encode(data).decode(), "hex": data.hex()}
    if typ == "random:index/randomPassword:RandomPassword":
        return {"result": f"mock{resource_digest[: int(plain.get('length', 32)) - 4]}"}
    if typ == "time:index/rotating:Rotating":
        return {"rfc3339": MOCK_TIME}
    if typ == "time:index/static:Static":
        return {"rfc3339": MOCK_TIME}
    if typ.startswith("proxmoxve:"):
        return {"vmId": plain.get("vmId", 100)} if "vm" in typ.lower() else {}
    if typ.startswith("kubernetes:") and isinstance(plain.get("metadata"), dict):
        # The API server assigns every object a uid; a re-created object gets a new one.
        return {"metadata": {**plain["metadata"], "uid": _mock_uid(stack, typ, name, incarnation)}}
    return {}


def _mock_uid(stack: str, typ: str, name: str, incarnation: int) -> str:
    h = digest(stack, typ, name, str(incarnation))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


PRINTS_KUBECONFIG = "# hybridgpu: prints a kubeconfig"
"""Marker line of scripts whose stdout is a kubeconfig (components/k3s/scripts)."""
PRINTS_JOIN_TOKEN = "# hybridgpu: prints the cluster join token"  # noqa: S105 - a marker
"""Marker line of the script that prints a k3s server's secure join token."""


def provider_id(typ: str, plain: Mapping[str, Any]) -> str | None:
    """Ids a provider derives from inputs (so a changed input changes the id, as for real)."""
    if typ in ("proxmoxve:download/file:File", "proxmoxve:index/fileLegacy:FileLegacy"):
        # <datastore>:<content type>/<file name>: bpg/terraform-provider-proxmox@v0.111.1
        # fwprovider/nodes/resource_download_file.go (plan.ID) and proxmoxtf/resource/file.go
        # (fileVolumeID).
        raw = plain.get("sourceRaw")
        file_name = plain.get("fileName") or (raw.get("fileName") if isinstance(raw, dict) else "")
        content = plain.get("contentType", "snippets")
        return f"{plain.get('datastoreId')}:{content}/{file_name}"
    if typ == "proxmoxve:index/vmLegacy:VmLegacy" and plain.get("vmId") is not None:
        # A VM's id is its VM id (proxmoxtf/resource/vm/vm.go: d.SetId(strconv.Itoa(vmID))), so
        # a VM replaced under the same VM id keeps its id.
        return str(int(plain["vmId"]))
    return None


def mock_call(function: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Results of invokes (data sources) the program uses."""
    if function == "aws:ec2/getAmi:getAmi":
        key = json.dumps(unwrap(dict(args)), sort_keys=True)
        return {"id": f"ami-{digest(key)[:17]}", "name": "mock-ami", "architecture": "x86_64"}
    if function == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {
            "names": ["us-west-2a", "us-west-2b", "us-west-2c"],
            "zoneIds": ["usw2-az1", "usw2-az2", "usw2-az3"],
        }
    if function == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": MOCK_ACCOUNT_ID,
            "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/mock",
            "userId": "MOCK",
        }
    if function == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
        # Every type is offered everywhere, except what a test names in UNOFFERED_TYPES.
        filters = {f["name"]: f["values"] for f in unwrap(args.get("filters", []))}
        types = [t for t in filters.get("instance-type", []) if t not in UNOFFERED_TYPES]
        return {"instanceTypes": types, "locations": filters.get("location", [])}
    if function == "aws:ec2/getSpotPrice:getSpotPrice":
        return {
            "instanceType": args.get("instanceType"),
            "availabilityZone": args.get("availabilityZone"),
            "spotPrice": SPOT_PRICES.get(str(args.get("instanceType")), "0.2000"),
            "spotPriceTimestamp": "2026-01-01T00:00:00Z",
        }
    if function == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
    if function == "aws:index/getRegion:getRegion":
        return {"name": "us-west-2", "region": "us-west-2"}
    return {}
