"""Where prepared shards go: a local folder or an `s3://bucket/prefix` (endpoint from
`S3_ENDPOINT_URL`, as mosaicml-streaming reads it). Paths below are relative to the root, with `/`.

Local writes are atomic (write to a temporary name, then rename), so a killed job never leaves a
half-written file under its final name.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from data_pipeline.errors import DataError


def is_remote(url: str) -> bool:
    return url.startswith("s3://")


def join_url(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


class LocalDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = str(self.root)

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def read_text(self, rel: str) -> str:
        return (self.root / rel).read_text()

    def write_text(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    def list(self, rel_dir: str) -> list[str]:
        """Names directly under a folder (empty when it does not exist)."""
        path = self.root / rel_dir
        return sorted(os.listdir(path)) if path.is_dir() else []

    def publish(self, local_path: Path, rel: str) -> None:
        """Move a finished file or folder from the staging area to its final name."""
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_dir():
            shutil.rmtree(dest)  # left by a run killed after the move but before its done-marker
        os.replace(local_path, dest)


class S3Prefix:
    def __init__(self, url: str):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"bad S3 URL {url!r}: expected s3://bucket/prefix")
        self.url, self.bucket, self.prefix = url.rstrip("/"), bucket, prefix.strip("/")
        self._client = None

    @property
    def client(self):
        if self._client is None:  # created lazily: a boto3 client must not cross a fork
            import boto3

            self._client = boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL"))
        return self._client

    def __getstate__(self):
        return {**self.__dict__, "_client": None}

    def _key(self, rel: str) -> str:
        return "/".join(p for p in (self.prefix, rel.strip("/")) if p)

    def exists(self, rel: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(rel))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def read_text(self, rel: str) -> str:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(rel))["Body"].read().decode()

    def write_text(self, rel: str, text: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=text.encode())

    def list(self, rel_dir: str) -> list[str]:
        from botocore.exceptions import ClientError

        prefix = self._key(rel_dir).rstrip("/") + "/" if self._key(rel_dir) else ""
        names: set[str] = set()
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                names.update(o["Key"][len(prefix):] for o in page.get("Contents", []))
                names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchBucket":
                endpoint = os.environ.get("S3_ENDPOINT_URL", "the default AWS endpoint")
                raise DataError(f"S3 bucket '{self.bucket}' of {self.url} does not exist at {endpoint}") from None
            raise
        return sorted(names)

    def publish(self, local_path: Path, rel: str) -> None:
        files = [local_path] if local_path.is_file() else sorted(p for p in local_path.rglob("*") if p.is_file())
        for f in files:
            sub = rel if f == local_path else f"{rel}/{f.relative_to(local_path).as_posix()}"
            self.client.upload_file(str(f), self.bucket, self._key(sub))
        shutil.rmtree(local_path) if local_path.is_dir() else local_path.unlink()


def open_destination(url: str):
    return S3Prefix(url) if is_remote(url) else LocalDir(url)
