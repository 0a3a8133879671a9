"""hybridgpu's CrossGuard policy pack: the security and cost rules, checked by the engine at
every preview and up (``--policy-pack policy``), all mandatory.

Rules are plain functions over :class:`resources.Resource` (``aws_rules``, ``s3_rules``,
``kube_rules``, ``secret_rules``); ``pack`` turns them into pulumi_policy policies. The package
imports nothing of the Pulumi program: it runs in its own virtualenv (``policy/venv``).
"""
