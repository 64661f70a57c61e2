"""Drive ``python -m pulumi.dynamic`` over gRPC the way the Pulumi engine does.

The engine starts the dynamic-provider shim (``pulumi-resource-pulumi-python``),
which runs ``python -u -m pulumi.dynamic`` in the project's virtualenv; the
process prints its port, and the engine sends Configure, then Check, Diff,
Create, Read, Update and Delete with the serialized provider in ``__provider``.
Used where a test needs the real provider server (its thread pool, its
serialization) without a whole ``pulumi up``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

TYPE = "pulumi-python:dynamic/export_image_provider:ImageExport"


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(props, {}))
    finally:
        loop.close()


def _dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {k: v for k, v in rpc.deserialize_properties(struct).items() if k != "__provider"}


class DynamicProviderProcess:
    """One ``python -m pulumi.dynamic`` process and a gRPC stub to it."""

    def __init__(self, provider: Any, env: dict[str, str] | None = None, engine: str | None = None) -> None:
        """``engine``: the engine address the CLI would pass (see tests/test_interrupt.py's FakeEngine)."""
        self.serialized = serialize_provider(provider)
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic", *([engine] if engine else [])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline().strip())
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)

    def _props(self, props: dict[str, Any]) -> struct_pb2.Struct:
        return _struct({**props, "__provider": self.serialized})

    def configure(self, config: dict[str, str]) -> None:
        self.stub.Configure(provider_pb2.ConfigureRequest(args=_struct(config), variables=config))

    def check(self, news: dict[str, Any], olds: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Any]]:
        response = self.stub.Check(
            provider_pb2.CheckRequest(urn=self.urn("r"), olds=self._props(olds or {}), news=self._props(news))
        )
        return _dict(response.inputs), list(response.failures)

    def create(self, name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        response = self.stub.Create(provider_pb2.CreateRequest(urn=self.urn(name), properties=self._props(props)))
        return response.id, _dict(response.properties)

    def read(self, name: str, id_: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        response = self.stub.Read(provider_pb2.ReadRequest(id=id_, urn=self.urn(name), properties=self._props(props)))
        return response.id, _dict(response.properties)

    def delete(self, name: str, id_: str, props: dict[str, Any]) -> None:
        self.stub.Delete(provider_pb2.DeleteRequest(id=id_, urn=self.urn(name), properties=self._props(props)))

    @staticmethod
    def urn(name: str) -> str:
        return f"urn:pulumi:test::proj::{TYPE}::{name}"

    def close(self) -> None:
        self.channel.close()
        self.proc.kill()
        self.proc.wait()
