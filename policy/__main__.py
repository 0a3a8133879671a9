"""What the Pulumi engine runs for ``--policy-pack policy`` (with ``policy/venv``'s Python)."""

from hybridgpu_policy.pack import serve

serve()
