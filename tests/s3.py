"""An S3-compatible object store on 127.0.0.1 for tests (moto's server), reached the way users reach
S3: pyarrow.fs / boto3 with ``AWS_ENDPOINT_URL`` pointing at it. No traffic leaves the machine."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_EC2_METADATA_DISABLED": "true"}


def _complete_multipart_root_tag() -> None:
    """moto 5.2.1 answers CompleteMultipartUpload with the root tag CompleteMultipartUploadResponse instead of
    S3's CompleteMultipartUploadResult (getmoto/moto#10055); pyarrow's S3 (Ray Train's checkpoints, copy_files)
    checks that tag and fails every multipart upload. Rename it in this process's server."""
    from moto.s3.responses import S3Response

    post = S3Response._key_response_post
    if getattr(post, "_splavu_fixed", False):
        return

    def fixed(self, *args, **kwargs):
        out = post(self, *args, **kwargs)
        if isinstance(out, tuple) and len(out) == 3 and isinstance(out[2], (str, bytes)):
            body = out[2]
            bad, good = "CompleteMultipartUploadResponse", "CompleteMultipartUploadResult"
            body = body.replace(bad, good) if isinstance(body, str) else body.replace(bad.encode(), good.encode())
            out = (out[0], out[1], body)
        return out

    fixed._splavu_fixed = True
    S3Response._key_response_post = fixed


@contextmanager
def s3_server() -> Iterator[str]:
    """Start moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    _complete_multipart_root_tag()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in ENV.items()
                                                        if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
                        region_name=ENV["AWS_DEFAULT_REGION"])


def upload_folder(endpoint: str, folder: Path, bucket: str, prefix: str) -> str:
    """Copy a local folder to s3://bucket/prefix (bucket created when missing); returns the URI."""
    s3 = client(endpoint)
    if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=bucket)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return f"s3://{bucket}/{prefix}"


def environment(endpoint: str) -> dict[str, str]:
    """What a process needs in its environment to use the test store as its S3."""
    return {**ENV, "AWS_ENDPOINT_URL": endpoint}


def use(monkeypatch, endpoint: str) -> None:
    for k, v in environment(endpoint).items():
        monkeypatch.setenv(k, v)
    os.environ.pop("AWS_PROFILE", None)
