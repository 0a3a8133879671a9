"""Typed stack configuration: the one import point for the stack modules.

Two kinds of keys (project namespace ``hybridgpu``):

* Project-wide simple keys (the network plan, versions, Nebula tunables). They are declared with
  a type, description and default in ``Pulumi.yaml`` so both stacks see the same plan; the models
  repeat the defaults because the mock runtime does not apply ``Pulumi.yaml`` defaults (a test
  keeps the two in step).
* One structured object per stack (``hybridgpu:aws``, ``hybridgpu:homelab``) in
  ``Pulumi.<stack>.yaml``, plus secrets that are only ever read with the secret getters.

Every check runs before the first resource is registered. A failure raises :class:`ConfigError`
whose message names the config key, the bad value and what is allowed.

Modules, by concern: ``fields`` (namespace, reusable field types, the model base), ``errors``
(how problems are reported), ``project`` (project-wide keys), ``aws_gpu`` and ``homelab`` (each
stack's object; ``homelab_apps`` holds the homelab's app and platform sections), ``loading``
(reading ``pulumi.Config``, secrets, whole-stack configs).
"""

from stacks.config.aws_gpu import (
    AmiSelector,
    AwsSettings,
    GpuWorkerSettings,
    ModelBucketSettings,
    parse_aws,
)
from stacks.config.errors import ConfigError
from stacks.config.fields import PROJECT, key
from stacks.config.homelab import GpuWorkerVm, HomelabSettings, parse_homelab
from stacks.config.loading import (
    AWS_GPU_SECRET_KEYS,
    HOMELAB_SECRET_KEYS,
    KNOWN_STACKS,
    ROLE_KEY,
    STACK_AWS_GPU,
    STACK_HOMELAB,
    AwsGpuConfig,
    AwsGpuSecrets,
    HomelabConfig,
    HomelabSecrets,
    load_aws_gpu_config,
    load_homelab_config,
    stack_role,
)
from stacks.config.project import PROJECT_KEYS, ProjectSettings, parse_project

__all__ = [
    "AWS_GPU_SECRET_KEYS",
    "HOMELAB_SECRET_KEYS",
    "KNOWN_STACKS",
    "PROJECT",
    "PROJECT_KEYS",
    "ROLE_KEY",
    "STACK_AWS_GPU",
    "STACK_HOMELAB",
    "AmiSelector",
    "AwsGpuConfig",
    "AwsGpuSecrets",
    "AwsSettings",
    "ConfigError",
    "GpuWorkerSettings",
    "GpuWorkerVm",
    "HomelabConfig",
    "HomelabSecrets",
    "HomelabSettings",
    "ModelBucketSettings",
    "ProjectSettings",
    "key",
    "load_aws_gpu_config",
    "load_homelab_config",
    "parse_aws",
    "parse_homelab",
    "parse_project",
    "stack_role",
]
