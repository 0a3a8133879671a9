"""``./dev models`` as the operator runs it (``python -m tools.models`` in a process of its own)
against a real moto server on loopback: the stack's outputs, the assumed uploader role, the error
messages and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacks.outputs import AWS_GPU_OUTPUTS
from tests.backup_store import run_module
from tests.moto_server import MotoServer
from tests.ollama_models import two_models
from tools.models import cli
from tools.models.commands import Console
from tools.offline import StackRun

PREFIX = "ollama/"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
    yield server
    server.stop()


def fake_pulumi(bin_dir: Path, outputs: dict[str, object]) -> Path:
    """A `pulumi` that answers `stack output --json` with ``outputs`` and logs its arguments."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / "pulumi.args"
    script = bin_dir / "pulumi"
    script.write_text(
        f'#!/bin/sh\necho "$*" >> "{log}"\ncat <<\'EOF\'\n{json.dumps(outputs)}\nEOF\n'
    )
    script.chmod(0o755)
    return log


def run_cli(
    *args: str, env: dict[str, str], models_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    if models_dir is not None:
        env = {**env, "OLLAMA_MODELS": str(models_dir)}
    return run_module("tools.models", *args, env=env)


def test_the_outputs_read_are_in_the_stack_contract() -> None:
    declared = {spec.name for spec in AWS_GPU_OUTPUTS}
    assert {
        cli.BUCKET_OUTPUT,
        cli.PREFIX_OUTPUT,
        cli.REGION_OUTPUT,
        cli.UPLOADER_ROLE_OUTPUT,
    } <= declared


def test_the_stack_outputs_name_the_tree_the_gpu_node_mounts(aws_gpu_run: StackRun) -> None:
    """What the command reads from the outputs is the bucket and prefix the PV mounts."""
    target = cli.target_from_outputs(aws_gpu_run.exports, "aws-gpu")
    volume = aws_gpu_run.exports["modelsVolume"]
    assert target.bucket == aws_gpu_run.exports["modelBucketName"]
    assert volume["spec"]["csi"]["volumeAttributes"]["bucketName"] == target.bucket
    assert f"prefix {target.prefix}" in volume["spec"]["mountOptions"]
    assert target.prefix == "ollama/"
    assert target.region == aws_gpu_run.exports["region"]
    assert target.role_arn == aws_gpu_run.exports["modelUploaderRoleArn"]
    assert str(target.role_arn).startswith("arn:aws:iam::123456789012:role/model-uploader-role-")


def test_push_list_verify_rm_through_the_stack_outputs(moto: MotoServer, tmp_path: Path) -> None:
    moto.create_bucket("stack-models")
    two_models(tmp_path / "models")
    bin_dir = tmp_path / "bin"
    args_log = fake_pulumi(
        bin_dir,
        {
            "modelBucketName": "stack-models",
            "modelsPrefix": f"s3://stack-models/{PREFIX}",
            "region": "us-west-2",
            "kubeconfig": "[secret]",
        },
    )
    env = moto.env() | {"PATH": f"{bin_dir}:/usr/bin:/bin"}

    pushed = run_cli("push", "tiny:1b", env=env, models_dir=tmp_path / "models")
    assert pushed.returncode == 0, pushed.stderr
    assert "manifest tiny:1b: written" in pushed.stderr
    run_cli("push", "team/other:2b", env=env, models_dir=tmp_path / "models")
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:3]] == [
        "team/other:2b",
        "tiny:1b",
    ]
    verified = run_cli("verify", "--sha256", env=env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip().endswith("sizes and sha256 checked: OK")
    removed = run_cli("rm", "tiny:1b", env=env)
    assert removed.returncode == 0, removed.stderr
    assert "kept, used by team/other:2b" in removed.stderr
    keys = {
        item["Key"] for item in moto.client("s3").list_objects_v2(Bucket="stack-models")["Contents"]
    }
    assert f"{PREFIX}manifests/registry.ollama.ai/team/other/2b" in keys
    assert f"{PREFIX}manifests/registry.ollama.ai/library/tiny/1b" not in keys
    assert set(args_log.read_text().splitlines()) == {"stack output --json --stack aws-gpu"}


def test_verify_exits_non_zero_naming_the_missing_blob(moto: MotoServer, tmp_path: Path) -> None:
    moto.create_bucket("verify-models")
    tiny, _ = two_models(tmp_path)
    target = ("--bucket", "verify-models", "--prefix", PREFIX)
    assert run_cli("push", "tiny:1b", *target, env=moto.env(), models_dir=tmp_path).returncode == 0
    weights = list(tiny.blobs)[1]
    moto.client("s3").delete_object(Bucket="verify-models", Key=f"{PREFIX}blobs/{weights}")

    verified = run_cli("verify", *target, env=moto.env())

    assert verified.returncode == 1
    assert f"BAD tiny:1b: blob {weights} is missing" in verified.stdout


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("model-not-local", "model ghost:7b not found locally: no manifest "),
        ("bucket-missing", "bucket 'no-such-bucket' does not exist"),
        ("no-credentials", "no AWS credentials found"),
        ("no-pulumi", "the pulumi CLI is not on PATH: pass --bucket and --prefix"),
        ("bad-name", "namespace 'my.team' is not valid for Ollama"),
        ("bad-prefix", "prefix 'ollama' is not a key prefix ending in '/'"),
        ("stack-not-deployed", "has no output modelsPrefix"),
    ],
)
def test_errors_are_clear_and_exit_non_zero(
    moto: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    message: str,
) -> None:
    """In this process (``cli.main``, the very entry point) to keep the tier fast."""
    if case == "model-not-local":
        moto.create_bucket("errors-models")
    two_models(tmp_path / "models")
    target = ["--bucket", "errors-models", "--prefix", PREFIX]
    env = moto.env() | {"OLLAMA_MODELS": str(tmp_path / "models")}
    args = ["push", "tiny:1b", *target]
    if case == "model-not-local":
        args = ["push", "ghost:7b", *target]
    elif case == "bucket-missing":
        args = ["push", "tiny:1b", "--bucket", "no-such-bucket"]
    elif case == "no-credentials":
        env = moto.env(key=None) | {"OLLAMA_MODELS": str(tmp_path / "models")}
    elif case == "no-pulumi":
        args, env = ["list"], env | {"PATH": str(tmp_path / "empty")}
    elif case == "bad-name":
        args = ["push", "my.team/tiny:1b", *target]
    elif case == "bad-prefix":
        args = ["list", "--bucket", "errors-models", "--prefix", "ollama"]
    elif case == "stack-not-deployed":
        fake_pulumi(tmp_path / "bin", {})
        args, env = ["list"], env | {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    err_stream = io.StringIO()
    status = cli.main(args, Console(out=io.StringIO(), err=err_stream, bars=False))

    assert status == 1
    err = err_stream.getvalue()
    assert err.startswith("models: error: ")
    assert message in err


# ---------------------------------------------------------------------------------------------
# The uploader role: assumed through STS, against moto with IAM enforcement on
# ---------------------------------------------------------------------------------------------

ACCOUNT = "123456789012"
BUCKET = "role-models"


def _iam_setup(moto: MotoServer) -> tuple[tuple[str, str], str]:
    """An operator user who may only assume the uploader role, and that role, which alone may
    use the bucket. Returns the operator's key and the role's ARN."""
    iam = moto.client("iam")
    user_arn = iam.create_user(UserName="operator")["User"]["Arn"]
    role_arn = iam.create_role(
        RoleName="model-uploader",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    iam.put_user_policy(
        UserName="operator",
        PolicyName="assume-uploader",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}
                ],
            }
        ),
    )
    iam.put_role_policy(
        RoleName="model-uploader",
        PolicyName="bucket",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "s3:*",
                        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
                    }
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    moto.create_bucket(BUCKET)
    return (key["AccessKeyId"], key["SecretAccessKey"]), role_arn


def test_the_uploader_role_is_assumed_for_the_bucket(tmp_path: Path) -> None:
    moto = MotoServer(tmp_path / "iam-moto.log")
    try:
        operator_key, role_arn = _iam_setup(moto)
        assert role_arn == f"arn:aws:iam::{ACCOUNT}:role/model-uploader"
        moto.enforce_iam()
        two_models(tmp_path / "models")
        env = moto.env(key=operator_key)
        target = ["--bucket", BUCKET, "--prefix", PREFIX]

        # The operator's own identity may not use the bucket...
        denied = run_cli("push", "tiny:1b", *target, env=env, models_dir=tmp_path / "models")
        assert denied.returncode == 1
        assert f"access denied to bucket '{BUCKET}'" in denied.stderr

        # ...the role it assumes may.
        pushed = run_cli(
            "push", "tiny:1b", *target, "--role-arn", role_arn,
            env=env, models_dir=tmp_path / "models",
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr

        # The stack's modelUploaderRoleArn output is used without --role-arn.
        bin_dir = tmp_path / "bin"
        fake_pulumi(
            bin_dir,
            {
                "modelBucketName": BUCKET,
                "modelsPrefix": f"s3://{BUCKET}/{PREFIX}",
                "region": "us-west-2",
                cli.UPLOADER_ROLE_OUTPUT: role_arn,
            },
        )
        verified = run_cli("verify", env=env | {"PATH": f"{bin_dir}:/usr/bin:/bin"})
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.strip() == "1 models, 4 blobs, sizes checked: OK"

        # A role the operator may not assume: a clear error, not a traceback.
        other = run_cli(
            "list", *target, "--role-arn", f"arn:aws:iam::{ACCOUNT}:role/nobody", env=env
        )
        assert other.returncode == 1
        assert "models: error: AWS refused AssumeRole" in other.stderr
    finally:
        moto.stop()
