"""Each storage class binds a throwaway claim (and, for classes binding on first consumer, a
throwaway pod mounts it); both are deleted whatever happens."""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from components.kube.charts import BUSYBOX_IMAGE
from tools.verify.api import VerifyError
from tools.verify.site import (
    FAIL,
    PASS,
    VERIFY_LABEL,
    VERIFY_NAMESPACE,
    Result,
    Site,
)


def _claim(name: str, storage_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": dict([VERIFY_LABEL])},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": "1Mi"}},
        },
    }


def _consumer(name: str, claim: str) -> dict[str, Any]:
    """A pod that only mounts the claim: classes binding on first consumer need one."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict([VERIFY_LABEL])},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "mount",
                    "image": BUSYBOX_IMAGE,
                    "command": ["true"],
                    "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                    "resources": {"limits": {"cpu": "50m", "memory": "16Mi"}},
                }
            ],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def make_storage_check(storage_class: dict[str, Any]) -> Callable[[Site], Result]:
    name = storage_class["metadata"]["name"]
    wait_for_consumer = storage_class.get("volumeBindingMode") == "WaitForFirstConsumer"

    def check(site: Site) -> Result:
        suffix = f"{int(time.time()) % 100000}-{os.getpid() % 1000}"
        claim = f"hybridgpu-verify-{name}-{suffix}"[:63].rstrip("-")
        base = f"/api/v1/namespaces/{VERIFY_NAMESPACE}"
        # The claim is gone afterwards; the provisioner's events about it stay for an hour.
        investigate = site.kubectl(
            f"-n {VERIFY_NAMESPACE} get events --field-selector involvedObject.name={claim}"
        )
        with _cleanup(site, [f"{base}/pods/{claim}", f"{base}/persistentvolumeclaims/{claim}"]):
            site.kube.request("POST", f"{base}/persistentvolumeclaims", _claim(claim, name))
            if wait_for_consumer:
                site.kube.request("POST", f"{base}/pods", _consumer(claim, claim))
            # Half the bound: the claim (and pod) must still be deleted within it.
            deadline = time.monotonic() + site.timeout / 2
            phase = ""
            while True:
                phase = site.kube.get(f"{base}/persistentvolumeclaims/{claim}")["status"].get(
                    "phase", ""
                )
                if phase == "Bound" or time.monotonic() >= deadline:
                    break
                time.sleep(1.0)
            why = "" if phase == "Bound" else _last_event(site, claim)
        check_name = f"storage-{name}"
        if phase != "Bound":
            waited = site.timeout / 2
            return Result(
                site.name,
                check_name,
                FAIL,
                f"throwaway claim stayed {phase or 'unknown'} for {waited:.0f} s{why}",
                investigate,
            )
        return Result(site.name, check_name, PASS, "a throwaway claim bound (deleted)", investigate)

    check.__dict__["label"] = f"storage-{name}"
    return check


def _last_event(site: Site, claim: str) -> str:
    """``: <message>`` of the newest event about the claim (the provisioner's reason), or ''."""
    path = f"/api/v1/namespaces/{VERIFY_NAMESPACE}/events?fieldSelector=" + urllib.parse.quote(
        f"involvedObject.name={claim}"
    )
    try:
        events = site.kube.get(path)["items"]
    except (VerifyError, KeyError, TypeError):
        return ""
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return f": {events[-1].get('message', '').strip()}" if events else ""


@contextmanager
def _cleanup(site: Site, paths: list[str]) -> Iterator[None]:
    try:
        yield
    finally:
        for path in paths:
            with suppress(VerifyError):  # never created (404) or already gone
                site.kube.request("DELETE", path)
