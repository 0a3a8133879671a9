"""``./dev models push NAME[:TAG] | list | rm NAME[:TAG] | verify [--sha256]``.

The bucket and prefix come from the aws-gpu stack's outputs (``pulumi stack output --json``), or
from ``--bucket``/``--prefix``. Credentials are the user's usual AWS ones (environment, profile,
SSO); with ``--role-arn``, or when the stack exports ``modelUploaderRoleArn``, the command
assumes that role through STS first (credentials refreshed before they expire, so a long upload
outlives the one-hour session). For a role that requires MFA, configure it as a profile
(``role_arn`` + ``mfa_serial``) and pass ``--profile``: botocore prompts and refreshes.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from boto3.exceptions import S3UploadFailedError
from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)
from pydantic import ValidationError

from stacks.config.aws_gpu import ModelStoreSettings
from tools.models.bucket import BucketError, ModelBucket
from tools.models.commands import CommandError, Console, list_models, push, remove, verify
from tools.models.layout import LayoutError, ModelName, default_models_dir

DEFAULT_STACK = "aws-gpu"
# aws-gpu outputs read here (declared in stacks/outputs.py).
BUCKET_OUTPUT = "modelBucketName"
PREFIX_OUTPUT = "modelsPrefix"
REGION_OUTPUT = "region"
# Optional: the role that alone may write the bucket, once the stack creates it.
UPLOADER_ROLE_OUTPUT = "modelUploaderRoleArn"
S3_URL = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<prefix>.*)$")
EXIT_FAILURE = 1


class UsageError(RuntimeError):
    """The target or credentials cannot be worked out."""


@dataclass(frozen=True)
class Target:
    bucket: str
    prefix: str
    region: str | None
    role_arn: str | None


def stack_outputs(stack: str) -> dict[str, Any]:
    try:
        result = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--stack", stack],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except FileNotFoundError:
        raise UsageError(
            "the pulumi CLI is not on PATH: pass --bucket and --prefix (the aws-gpu outputs "
            f"{BUCKET_OUTPUT} and {PREFIX_OUTPUT})"
        ) from None
    if result.returncode != 0:
        raise UsageError(
            f"`pulumi stack output --stack {stack}` failed: {result.stderr.strip()}; pass "
            "--stack, or --bucket and --prefix"
        )
    return json.loads(result.stdout)


def target_from_outputs(outputs: Mapping[str, Any], stack: str) -> Target:
    url = outputs.get(PREFIX_OUTPUT)
    match = S3_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise UsageError(
            f"stack '{stack}' has no output {PREFIX_OUTPUT} of the form s3://bucket/prefix/ "
            f"(got {url!r}); deploy the aws-gpu stack, or pass --bucket and --prefix"
        )
    bucket = outputs.get(BUCKET_OUTPUT)
    if bucket is not None and bucket != match["bucket"]:
        raise UsageError(f"stack '{stack}': {BUCKET_OUTPUT} {bucket!r} differs from {url!r}")
    return Target(
        bucket=match["bucket"],
        prefix=match["prefix"],
        region=outputs.get(REGION_OUTPUT),
        role_arn=outputs.get(UPLOADER_ROLE_OUTPUT) or None,
    )


def resolve_target(args: argparse.Namespace) -> Target:
    if args.bucket:
        prefix = args.prefix if args.prefix is not None else ModelStoreSettings().prefix
        target = Target(args.bucket, prefix, args.region, args.role_arn)
    else:
        if args.prefix is not None:
            raise UsageError("--prefix needs --bucket")
        target = target_from_outputs(stack_outputs(args.stack), args.stack)
        target = Target(
            target.bucket,
            target.prefix,
            args.region or target.region,
            args.role_arn or target.role_arn,
        )
    try:
        ModelStoreSettings(prefix=target.prefix)  # the rule of hybridgpu:modelStore.prefix
    except ValidationError:
        raise UsageError(
            f"prefix {target.prefix!r} is not a key prefix ending in '/' (or empty), as "
            "hybridgpu:modelStore.prefix allows"
        ) from None
    return target


class _AssumedRoleProvider(CredentialProvider):
    METHOD = "hybridgpu-assume-role"

    def __init__(self, credentials: RefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    # botocore's stubs type the base method's return as Literal[True]; providers return credentials.
    def load(self) -> RefreshableCredentials:  # pyright: ignore[reportIncompatibleMethodOverride]
        return self._credentials


def session_for(*, profile: str | None, region: str | None, role_arn: str | None) -> boto3.Session:
    """The user's session, or one that assumes ``role_arn`` with it (refreshing as needed)."""
    base = boto3.Session(profile_name=profile, region_name=region)
    if not role_arn:
        return base
    sts = base.client("sts")
    user = re.sub(r"[^\w+=,.@-]", "-", getpass.getuser())
    session_name = f"hybridgpu-models-{user}"[:64]

    def assume() -> dict[str, str]:
        credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].astimezone(UTC).isoformat(),
        }

    refreshable = RefreshableCredentials.create_from_metadata(
        metadata=assume(), refresh_using=assume, method=_AssumedRoleProvider.METHOD
    )
    assumed = botocore.session.Session(profile=profile)
    assumed.register_component(
        "credential_provider", CredentialResolver([_AssumedRoleProvider(refreshable)])
    )
    return boto3.Session(botocore_session=assumed, region_name=region)


def _common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes (after its name: ``push llama3.1:8b --bucket b``)."""
    common = argparse.ArgumentParser(add_help=False)
    target = common.add_argument_group("bucket (default: the aws-gpu stack's outputs)")
    target.add_argument("--stack", default=DEFAULT_STACK, help="aws-gpu stack to read outputs of")
    target.add_argument("--bucket", help="model bucket (instead of the stack's outputs)")
    target.add_argument(
        "--prefix", help="key prefix of the Ollama models tree, with --bucket (default 'ollama/')"
    )
    target.add_argument("--region", help="bucket region (default: the stack's, or AWS config)")
    access = common.add_argument_group("credentials (default: the usual AWS chain)")
    access.add_argument("--profile", help="AWS profile to use")
    access.add_argument(
        "--role-arn",
        help=f"role to assume for the bucket (default: the stack's {UPLOADER_ROLE_OUTPUT})",
    )
    return common


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="./dev models",
        description="Publish Ollama models to the aws-gpu stack's S3 model bucket.",
    )
    common = [_common_options()]
    commands = top.add_subparsers(dest="command", required=True)
    push_cmd = commands.add_parser(
        "push", parents=common, help="upload a local model: blobs, then its manifest"
    )
    push_cmd.add_argument("name", help="model name as Ollama takes it, e.g. llama3.1:8b")
    push_cmd.add_argument(
        "--models-dir",
        type=Path,
        help="local Ollama models directory (default: $OLLAMA_MODELS or ~/.ollama/models)",
    )
    list_cmd = commands.add_parser(
        "list", parents=common, help="models in the bucket, their sizes and shared blobs"
    )
    list_cmd.add_argument("--json", action="store_true", help="print JSON")
    rm_cmd = commands.add_parser(
        "rm", parents=common, help="remove a model: its manifest, then blobs no other model uses"
    )
    rm_cmd.add_argument("name")
    verify_cmd = commands.add_parser(
        "verify", parents=common, help="check every manifest's blobs in the bucket"
    )
    verify_cmd.add_argument(
        "--sha256", action="store_true", help="also download every blob and check its SHA-256"
    )
    return top


def run(args: argparse.Namespace, console: Console) -> int:
    name = ModelName.parse(args.name) if args.command in ("push", "rm") else None
    target = resolve_target(args)
    session = session_for(profile=args.profile, region=target.region, role_arn=target.role_arn)
    bucket = ModelBucket(session.client("s3"), target.bucket, target.prefix)
    if args.command == "push":
        assert name is not None
        push(bucket, args.models_dir or default_models_dir(), name, console)
    elif args.command == "list":
        list_models(bucket, console, as_json=args.json)
    elif args.command == "rm":
        assert name is not None
        remove(bucket, name, console)
    elif verify(bucket, console, sha256=args.sha256):
        return EXIT_FAILURE
    return 0


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = parser().parse_args(argv)
    console = console or Console()
    try:
        return run(args, console)
    except (CommandError, BucketError, UsageError, LayoutError) as error:
        console.say(f"models: error: {error}")
    except NoCredentialsError:
        console.say(
            "models: error: no AWS credentials found: configure them (`aws configure`, "
            "`aws sso login`, AWS_PROFILE or --profile)"
        )
    except NoRegionError:
        console.say("models: error: no AWS region: pass --region or configure one")
    except ProfileNotFound as error:
        console.say(f"models: error: {error}")
    except ClientError as error:
        operation = getattr(error, "operation_name", "request")
        console.say(f"models: error: AWS refused {operation}: {error}")
    except (BotoCoreError, S3UploadFailedError) as error:
        console.say(f"models: error: {error}")
    except OSError as error:  # a local file that cannot be read
        console.say(f"models: error: {error}")
    except KeyboardInterrupt:
        console.say("models: interrupted (push writes a model's manifest after all its blobs)")
        return 130
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
