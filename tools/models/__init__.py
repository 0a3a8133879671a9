"""``./dev models``: publish Ollama models to the aws-gpu stack's S3 model bucket, list them,
remove them and verify the bucket, keeping the exact layout Ollama reads from its models directory.

- :mod:`tools.models.layout`: Ollama's names, paths and manifests (pure, no AWS).
- :mod:`tools.models.bucket`: the bucket under its prefix (boto3; transfers by its manager).
- :mod:`tools.models.commands`: push, list, rm, verify.
- :mod:`tools.models.cli`: arguments, the stack's outputs, credentials (optionally an assumed
  uploader role), errors and exit codes.
"""
