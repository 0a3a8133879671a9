"""TLS that renews itself (issue #22): cert-manager with one ClusterIssuer from config, a
Certificate for every ingress host (unless its ``tlsSecret`` overrides it), the DNS-01 key scoped
to one hosted zone, and the private CA. The objects' validity against cert-manager's CRDs at
v1.19.1 and checkov run over every object in tests/test_kubernetes_objects.py and
tests/test_checkov.py; the bad issuer configs are tests/fixtures/invalid/homelab-tls-*.yaml."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from components.aws.acme_dns_user import dns01_policy
from components.base.x509_ca import ca_from_seed
from components.kube.ingress import ANNOTATIONS, IngressTls, declare_certificate, tls_secret_name
from components.platform import cert_manager
from stacks.config.tls import LETS_ENCRYPT
from stacks.tls import acme_zone_error
from tests.test_kubernetes_objects import crd_charts, problems_of
from tests.upstream_data import UPSTREAM, find_crd, plain_object
from tools.offline import REPO_ROOT, StackRun

RELEASE = "kubernetes:helm.sh/v3:Release"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
ISSUER = "kubernetes:cert-manager.io/v1:ClusterIssuer"
SECRET = "kubernetes:core/v1:Secret"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
ZONE = "Z0123456789ABCDEFGHIJ"
FIXTURE = "homelab-tls-private-ca"


def _values(run: StackRun, name: str) -> dict[str, Any]:
    return run.one(RELEASE, name).plain_inputs["values"]


def ingress_hosts(run: StackRun) -> dict[str, tuple[str, str | None]]:
    """host -> (namespace, TLS secret) of every ingress the run declares or a chart renders."""
    hosts: dict[str, tuple[str, str | None]] = {}

    def add(namespace: str, ingress: dict[str, Any], host: str) -> None:
        tls = ingress.get("tls") or [{}]
        hosts[host] = (namespace, tls[0].get("secretName"))

    for reg in run.by_type(INGRESS):
        obj = reg.plain_inputs
        for rule in obj["spec"]["rules"]:
            add(obj["metadata"]["namespace"], obj["spec"], rule["host"])
    for reg in run.by_type(RELEASE):
        release = reg.plain_inputs
        values = release["values"]
        chart_ingresses = {
            "jupyterhub": values.get("ingress"),
            "kube-prometheus-stack": values.get("grafana", {}).get("ingress"),
        }
        ingress = chart_ingresses.get(release["chart"])
        if ingress:
            for host in ingress["hosts"]:
                add(release["namespace"], ingress, host)
        if release["chart"] == "rancher":
            hosts[values["hostname"]] = (
                release["namespace"],
                values["ingress"]["tls"]["secretName"],
            )
    return hosts


def certificates(run: StackRun) -> dict[str, dict[str, Any]]:
    """host -> its Certificate."""
    found = {}
    for reg in run.by_type(CERTIFICATE):
        obj = reg.plain_inputs
        (host,) = obj["spec"]["dnsNames"]
        assert host not in found, f"two Certificates for {host}"
        found[host] = obj
    return found


def test_the_plan_lists_cert_manager_the_issuer_and_a_certificate_per_ingress(
    homelab_run: StackRun,
) -> None:
    release = homelab_run.one(RELEASE, "cert-manager-release").plain_inputs
    assert (release["chart"], release["version"], release["namespace"]) == (
        "cert-manager",
        "v1.19.1",
        "cert-manager",
    )
    assert release["values"]["crds"] == {"enabled": True, "keep": True}
    (issuer,) = [r.plain_inputs for r in homelab_run.by_type(ISSUER)]
    assert issuer["metadata"]["name"].startswith("hybridgpu-acme-")
    hosts = ingress_hosts(homelab_run)
    assert set(hosts) == {"chat.lab.example", "jupyter.lab.example", "grafana.lab.example"}
    certs = certificates(homelab_run)
    assert set(certs) == set(hosts)
    for host, (namespace, secret) in hosts.items():
        spec = certs[host]["spec"]
        assert certs[host]["metadata"]["namespace"] == namespace, host
        assert spec["secretName"] == secret, f"{host}: the Ingress serves another Secret"
        assert spec["issuerRef"] == {
            "name": issuer["metadata"]["name"],
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }


def test_certificates_wait_for_the_issuer(homelab_run: StackRun) -> None:
    issuer = homelab_run.one(ISSUER, "cert-manager-issuer")
    release = homelab_run.one(RELEASE, "cert-manager-release")
    assert release.urn in issuer.dependencies
    for cert in homelab_run.by_type(CERTIFICATE):
        assert issuer.urn in cert.dependencies, cert.name


def test_the_acme_issuer_answers_dns01_in_the_configured_zone(homelab_run: StackRun) -> None:
    acme = homelab_run.one(ISSUER, "cert-manager-issuer").plain_inputs["spec"]["acme"]
    assert acme["server"] == LETS_ENCRYPT
    assert acme["email"] == "ops@example.com"
    (solver,) = acme["solvers"]
    route53 = solver["dns01"]["route53"]
    assert route53["hostedZoneID"] == ZONE
    assert route53["secretAccessKeySecretRef"]["name"] == cert_manager.ROUTE53_SECRET
    values = _values(homelab_run, "cert-manager-release")
    assert values["dns01RecursiveNameserversOnly"] is True


def test_the_dns01_key_stays_secret_end_to_end(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    assert "acmeDns01SecretAccessKey" in aws_gpu_run.secret_exports
    secret = homelab_run.one(SECRET, "cert-manager-route53-credentials")
    assert secret.plain_inputs["metadata"]["namespace"] == cert_manager.NAMESPACE
    assert "stringData" in secret.secret_inputs or {
        "stringData.access-key-id",
        "stringData.secret-access-key",
    } <= set(secret.secret_inputs), secret.secret_inputs
    key = aws_gpu_run.one("aws:iam/accessKey:AccessKey", "acme-dns01-key")
    assert key.plain_inputs["user"].startswith("acme-dns01")


def policy_problems(document: dict[str, Any], zone: str) -> list[str]:
    """Anything the DNS-01 key may do beyond challenge records in ``zone``."""
    problems = []
    allowed = {
        "route53:ChangeResourceRecordSets": [f"arn:aws:route53:::hostedzone/{zone}"],
        "route53:GetChange": ["arn:aws:route53:::change/*"],
        "route53:ListHostedZonesByName": ["*"],
    }
    for st in document["Statement"]:
        if "NotAction" in st or "NotResource" in st or st["Effect"] != "Allow":
            problems.append(f"statement {st.get('Sid')}: not a plain Allow")
            continue
        for action in st["Action"]:
            if st["Resource"] != allowed.get(action):
                problems.append(f"{action} on {st['Resource']}")
            if action == "route53:ChangeResourceRecordSets":
                condition = st.get("Condition", {})
                types = condition.get("ForAllValues:StringEquals", {})
                if types.get("route53:ChangeResourceRecordSetsRecordTypes") != ["TXT"]:
                    problems.append(f"record types not limited to TXT: {condition}")
    return problems


def test_the_dns01_policy_allows_only_that_hosted_zone(aws_gpu_run: StackRun) -> None:
    policy = aws_gpu_run.one("aws:iam/userPolicy:UserPolicy", "acme-dns01-policy").plain_inputs
    assert policy["user"].startswith("acme-dns01")
    document = json.loads(policy["policy"])
    assert policy_problems(document, ZONE) == []
    changes = [s for s in document["Statement"] if "ChangeResourceRecordSets" in str(s["Action"])]
    assert [s["Resource"] for s in changes] == [[f"arn:aws:route53:::hostedzone/{ZONE}"]]
    # ... and the check can fail: another zone, or every zone.
    assert policy_problems(document, "ZOTHER")
    widened = json.loads(dns01_policy("*", "eu-west-1"))
    assert any("hostedzone/*" in p for p in policy_problems(widened, ZONE))
    users = [r.name for r in aws_gpu_run.by_type("aws:iam/user:User")]
    assert users.count("acme-dns01") == 1
    attached = [
        r
        for r in aws_gpu_run.by_type("aws:iam/userPolicyAttachment:UserPolicyAttachment")
        if str(r.plain_inputs.get("user", "")).startswith("acme-dns01")
    ]
    assert attached == []


def test_the_webhook_stays_reachable_from_the_api_server(homelab_run: StackRun) -> None:
    """The namespace denies ingress by default; the API server (host network, matched by no
    selector) must still reach the webhook's port, which the chart leaves at 10250."""
    policies = {
        r.plain_inputs["metadata"]["name"]: r.plain_inputs["spec"]
        for r in homelab_run.by_type(POLICY)
        if r.plain_inputs["metadata"]["namespace"] == cert_manager.NAMESPACE
    }
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    webhook = policies["allow-from-api-server"]
    assert webhook["podSelector"]["matchLabels"] == cert_manager.WEBHOOK_PODS
    (rule,) = webhook["ingress"]
    assert "from" not in rule
    assert rule["ports"] == [{"protocol": "TCP", "port": 10250}]
    chart_values = yaml.safe_load(
        (UPSTREAM / "charts" / "cert-manager-v1.19.1" / "values.yaml").read_text()
    )
    assert chart_values["webhook"]["securePort"] == cert_manager.WEBHOOK_PORT


def test_every_ingress_has_the_shared_shape(homelab_run: StackRun) -> None:
    (webui,) = [r.plain_inputs for r in homelab_run.by_type(INGRESS)]
    assert webui["metadata"]["annotations"] == ANNOTATIONS
    assert _values(homelab_run, "monitoring-release")["grafana"]["ingress"]["annotations"] == (
        ANNOTATIONS
    )
    assert _values(homelab_run, "jupyterhub-release")["ingress"]["annotations"] == ANNOTATIONS


# --- the private CA (valid fixture homelab-tls-private-ca) ---


@pytest.fixture(scope="module")
def private_ca_run(valid_fixture_runs: dict[str, StackRun]) -> StackRun:
    return valid_fixture_runs[FIXTURE]


def test_the_private_ca_signs_every_certificate_and_is_exported(private_ca_run: StackRun) -> None:
    issuer = private_ca_run.one(ISSUER, "cert-manager-issuer").plain_inputs
    assert issuer["spec"] == {"ca": {"secretName": cert_manager.CA_SECRET}}
    secret = private_ca_run.one(SECRET, "cert-manager-ca")
    data = secret.plain_inputs
    assert data["type"] == "kubernetes.io/tls"
    assert data["metadata"]["namespace"] == cert_manager.NAMESPACE
    assert any(path.startswith("stringData") for path in secret.secret_inputs)
    cert = x509.load_pem_x509_certificate(data["stringData"]["tls.crt"].encode())
    key = serialization.load_pem_private_key(data["stringData"]["tls.key"].encode(), None)
    assert cert.public_key() == key.public_key()
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert cert.subject.rfc4514_string() == "CN=Example Lab CA"
    assert private_ca_run.exports["tlsCaCert"] == data["stringData"]["tls.crt"]
    assert "tlsCaCert" not in private_ca_run.secret_exports
    seed = private_ca_run.one("random:index/randomBytes:RandomBytes", "cert-manager-ca-key-seed")
    assert seed.protect
    assert not list(private_ca_run.by_type("aws:iam/user:User"))
    assert not [r for r in private_ca_run.by_type(SECRET) if "route53" in r.name]


def test_a_manual_tls_secret_overrides_the_certificate(private_ca_run: StackRun) -> None:
    hosts = ingress_hosts(private_ca_run)
    assert hosts["chat.lab.example"] == ("open-webui", "chat-manual-tls")
    certs = certificates(private_ca_run)
    assert "chat.lab.example" not in certs
    assert set(certs) == set(hosts) - {"chat.lab.example"}
    for host, (_, secret) in hosts.items():
        if host in certs:
            assert certs[host]["spec"]["secretName"] == secret


def test_rancher_serves_the_issuers_certificate_and_trusts_the_ca(
    private_ca_run: StackRun,
) -> None:
    values = _values(private_ca_run, "rancher-release")
    assert values["ingress"]["tls"] == {"source": "secret", "secretName": "tls-rancher-ingress"}
    assert values["privateCA"] is True
    cert = certificates(private_ca_run)["rancher.lab.example"]
    assert cert["metadata"]["namespace"] == "cattle-system"
    assert cert["spec"]["secretName"] == "tls-rancher-ingress"
    ca = private_ca_run.one(SECRET, "rancher-ca").plain_inputs
    assert ca["metadata"]["name"] == "tls-ca"
    assert ca["stringData"]["cacerts.pem"] == private_ca_run.exports["tlsCaCert"]
    release = private_ca_run.one(RELEASE, "rancher-release")
    assert private_ca_run.one(SECRET, "rancher-ca").urn in release.dependencies
    # One cert-manager for the cluster: Rancher no longer installs its own.
    charts = [r.plain_inputs["chart"] for r in private_ca_run.by_type(RELEASE)]
    assert charts.count("cert-manager") == 1


def test_cert_manager_keeps_the_release_rancher_installed(private_ca_run: StackRun) -> None:
    """Until issue #22, Rancher's component installed cert-manager: the alias keeps that Helm
    release instead of replacing it (a second "cert-manager" release would collide)."""
    release = private_ca_run.one(RELEASE, "cert-manager-release")
    assert any(
        alias.endswith(
            "hybridgpu:platform:Rancher$kubernetes:helm.sh/v3:Release::rancher-cert-manager"
        )
        for alias in release.aliases
    ), release.aliases


def test_the_private_ca_is_the_same_for_the_same_seed_and_window() -> None:
    seed = bytes(range(32))
    start, end = datetime(2027, 1, 1, tzinfo=UTC), datetime(2037, 1, 1, tzinfo=UTC)
    first = ca_from_seed(seed, "lab CA", start, end)
    assert ca_from_seed(seed, "lab CA", start, end) == first
    renewed = ca_from_seed(seed, "lab CA", datetime(2036, 1, 1, tzinfo=UTC), end.replace(2046))
    assert renewed.key_pem == first.key_pem
    assert renewed.cert_pem != first.cert_pem
    cert = x509.load_pem_x509_certificate(first.cert_pem.encode())
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    digest = cert.signature_hash_algorithm
    assert digest is not None
    public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(digest))
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    other = ca_from_seed(bytes(32), "lab CA", start, end)
    assert other.key_pem != first.key_pem
    with pytest.raises(ValueError, match="need at least 32"):
        ca_from_seed(b"short", "lab CA", start, end)


def test_without_an_issuer_or_with_a_manual_secret_there_is_no_certificate() -> None:
    tls = IngressTls(issuer="hybridgpu")
    parent: Any = None  # never used: nothing is declared
    for given, manual in ((tls, "mine"), (None, None), (IngressTls(issuer=None), None)):
        assert (
            declare_certificate(
                "x",
                app="app",
                namespace="ns",
                hostname="h.example",
                tls=given,
                manual_secret=manual,
                parent=parent,
            )
            is None
        )
    assert tls_secret_name("app", tls, None) == "app-tls"
    assert tls_secret_name("app", tls, "mine") == "mine"
    assert tls_secret_name("app", None, None) is None


def test_an_issuer_zone_the_aws_key_cannot_write_is_refused_naming_the_key() -> None:
    assert acme_zone_error(ZONE, {"hostedZoneId": ZONE}) is None
    other = acme_zone_error(ZONE, {"hostedZoneId": "ZOTHER"})
    assert other is not None
    assert str(other).startswith("hybridgpu:homelab.tls.issuer.hostedZoneId:")
    assert "hybridgpu:aws.acmeDns01.hostedZoneId" in str(other)
    none = acme_zone_error(ZONE, {"hostedZoneId": None})
    assert none is not None
    assert "has no DNS-01 key" in str(none)


def test_certificates_and_issuers_validate_against_cert_managers_crds(
    homelab_run: StackRun, private_ca_run: StackRun
) -> None:
    """The same check tests/test_kubernetes_objects.py runs over every object, shown here for
    these kinds: the CRDs are cert-manager's at v1.19.1, and a broken object fails."""
    for label, run in (("homelab", homelab_run), (f"fixture {FIXTURE}", private_ca_run)):
        charts = crd_charts(label, run)
        objects = [plain_object(r) for r in (*run.by_type(CERTIFICATE), *run.by_type(ISSUER))]
        assert len(objects) >= 4
        for obj in objects:
            (crd,) = find_crd(charts, obj["apiVersion"], obj["kind"])
            assert crd.chart == "cert-manager v1.19.1"
            assert problems_of(obj, charts) == [], obj
    charts = crd_charts("homelab", homelab_run)
    broken = copy.deepcopy(plain_object(homelab_run.one(CERTIFICATE, "open-webui-certificate")))
    del broken["spec"]["issuerRef"]
    broken["spec"]["privateKey"]["algorithm"] = "DSA"
    problems = "\n".join(problems_of(broken, charts))
    assert "'issuerRef' is a required property" in problems
    assert "'DSA' is not one of" in problems


def test_the_readme_rotation_command_names_the_real_key(aws_gpu_run: StackRun) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### TLS certificates", 1)[1].split("\n## ", 1)[0]
    (urn,) = re.findall(r"'(urn:pulumi:aws-gpu::[^']+)'", section)
    key = aws_gpu_run.one("aws:iam/accessKey:AccessKey", "acme-dns01-key")
    assert urn == key.urn


def test_the_issuer_is_renamed_when_what_signs_changes() -> None:
    """A new issuerRef is what makes cert-manager re-issue at once (cert_manager.issuer_name)."""

    def acme(server: str, email: str = "ops@lab.example") -> cert_manager.AcmeRoute53:
        return cert_manager.AcmeRoute53(email, server, "Z0123456789ABCDEFGHIJ", "us-east-1", "", "")

    staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
    names = {
        "production": cert_manager.issuer_name(acme(LETS_ENCRYPT)),
        "staging": cert_manager.issuer_name(acme(staging)),
        "ca": cert_manager.issuer_name(cert_manager.PrivateCa("lab CA", None)),  # type: ignore[arg-type]
        "renamed ca": cert_manager.issuer_name(cert_manager.PrivateCa("new CA", None)),  # type: ignore[arg-type]
    }
    assert len(set(names.values())) == len(names), names
    # What does not change the signer keeps the name (and the certificates).
    assert cert_manager.issuer_name(acme(LETS_ENCRYPT, "other@lab.example")) == names["production"]
    for name in names.values():
        assert re.fullmatch(r"hybridgpu-(acme|ca)-[0-9a-f]{8}", name), name


def test_the_ca_seed_stays_whatever_the_issuer_type(
    homelab_run: StackRun, private_ca_run: StackRun
) -> None:
    """A protected resource the program stops declaring blocks the `up`: the seed is there with
    ACME too, so switching the issuer type is an ordinary update (and switching back brings the
    same CA back)."""
    acme_issuer = homelab_run.one(ISSUER, "cert-manager-issuer").plain_inputs
    assert "acme" in acme_issuer["spec"]
    seeds = [
        run.one("random:index/randomBytes:RandomBytes", "cert-manager-ca-key-seed")
        for run in (homelab_run, private_ca_run)
    ]
    assert all(seed.protect for seed in seeds)
    assert seeds[0].urn == seeds[1].urn
