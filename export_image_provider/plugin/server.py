"""``pulumi-resource-export-image``: the plugin's gRPC server, started by the engine.

The SDK's ``pulumi.provider.experimental`` serves a Provider through its
``ProviderServicer``, which answers every failure with the exception and its
traceback. Here a subclass answers the resource operations itself, so that

- a failure the user can act on (:class:`OneLineError`: AWS's refusal, a failed
  export, a timeout) is its one line, and only a bug keeps its traceback;
- a create that started its export and did not see it finish (customTimeouts,
  ``timeout_minutes``, Ctrl-C) is answered with ``ErrorResourceInitFailed``
  (process.py's :class:`PartialCreate`), so the engine keeps the task id in the
  state as partial state and the next ``up`` waits for that task;
- Cancel (the first Ctrl-C) stops every wait (process.cancel), and the engine is
  watched: once it is gone (kill -9) no export starts and the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from pulumi.provider.experimental import provider as api
from pulumi.provider.experimental.property_value import PropertyValue
from pulumi.provider.experimental.server import ProviderServicer
from pulumi.runtime import proto
from pulumi.runtime.proto import provider_pb2_grpc

from ..process import OneLineError, PartialCreate, init_failed_status, serve_plugin
from .provider import ExportImagePlugin
from .schema import VERSION

_DIFF_KINDS = {kind: getattr(proto.PropertyDiff, kind.name) for kind in api.PropertyDiffKind}


def _diff_request(request: Any) -> api.DiffRequest:
    return api.DiffRequest(request.urn, request.id, PropertyValue.unmarshal_map(request.olds),
                           PropertyValue.unmarshal_map(request.news), list(request.ignoreChanges))


class ExportImageServicer(ProviderServicer):
    """The SDK's servicer, with the resource operations answered as the engine needs them (module docstring).

    Each is answered here rather than by the SDK's method, which turns every exception into its
    message and traceback before an override could see it.
    """

    async def _answer(self, context: Any, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except PartialCreate as partial:
            status = init_failed_status(partial.id, PropertyValue.marshal_map(partial.outputs), str(partial),
                                        grpc.StatusCode.UNKNOWN.value[0], str(partial))
            await context.abort(grpc.StatusCode.UNKNOWN, str(partial), (("grpc-status-details-bin", status),))
        except OneLineError as error:
            await context.abort(grpc.StatusCode.UNKNOWN, str(error))
        except Exception as error:  # noqa: BLE001 - a bug: keep where it happened
            if isinstance(error, (asyncio.CancelledError, grpc.aio.AbortError)):
                raise
            await context.abort(grpc.StatusCode.UNKNOWN, f"{error}\n{traceback.format_exc()}")

    async def Configure(self, request, context):  # noqa: N802 - gRPC's names
        async def configure() -> Any:
            resp = await self._provider.configure(api.ConfigureRequest(
                dict(request.variables), PropertyValue.unmarshal_map(request.args), request.acceptSecrets,
                request.acceptResources))
            return proto.ConfigureResponse(acceptSecrets=resp.accept_secrets, supportsPreview=resp.supports_preview,
                                           acceptResources=resp.accept_resources, acceptOutputs=resp.accept_outputs)

        return await self._answer(context, configure)

    async def Check(self, request, context):  # noqa: N802
        async def check() -> Any:
            resp = await self._provider.check(api.CheckRequest(
                request.urn, PropertyValue.unmarshal_map(request.olds), PropertyValue.unmarshal_map(request.news),
                request.randomSeed))
            return proto.CheckResponse(
                inputs=PropertyValue.marshal_map(resp.inputs or {}),
                failures=[proto.CheckFailure(property=f.property, reason=f.reason) for f in resp.failures or []])

        return await self._answer(context, check)

    async def Diff(self, request, context):  # noqa: N802
        async def diff() -> Any:
            resp = await self._provider.diff(_diff_request(request))
            return proto.DiffResponse(
                replaces=resp.replaces, stables=resp.stables, deleteBeforeReplace=resp.delete_before_replace,
                changes=proto.DiffResponse.DIFF_SOME if resp.changes else proto.DiffResponse.DIFF_NONE,
                diffs=resp.diffs, hasDetailedDiff=True,
                detailedDiff={k: proto.PropertyDiff(kind=_DIFF_KINDS[v.kind], inputDiff=v.input_diff)
                              for k, v in resp.detailed_diff.items()},
            )

        return await self._answer(context, diff)

    async def DiffConfig(self, request, context):  # noqa: N802
        async def diff() -> Any:
            resp = await self._provider.diff_config(_diff_request(request))
            return proto.DiffResponse(
                changes=proto.DiffResponse.DIFF_SOME if resp.changes else proto.DiffResponse.DIFF_NONE,
                diffs=resp.diffs)

        return await self._answer(context, diff)

    async def Create(self, request, context):  # noqa: N802
        async def create() -> Any:
            resp = await self._provider.create(api.CreateRequest(
                request.urn, PropertyValue.unmarshal_map(request.properties), request.timeout, request.preview))
            return proto.CreateResponse(id=resp.resource_id, properties=PropertyValue.marshal_map(resp.properties))

        return await self._answer(context, create)

    async def Read(self, request, context):  # noqa: N802
        async def read() -> Any:
            resp = await self._provider.read(api.ReadRequest(
                request.urn, request.id, PropertyValue.unmarshal_map(request.properties),
                PropertyValue.unmarshal_map(request.inputs)))
            if not resp.resource_id:
                return proto.ReadResponse()
            return proto.ReadResponse(id=resp.resource_id, properties=PropertyValue.marshal_map(resp.properties),
                                      inputs=PropertyValue.marshal_map(resp.inputs))

        return await self._answer(context, read)

    async def Update(self, request, context):  # noqa: N802
        async def update() -> Any:
            resp = await self._provider.update(api.UpdateRequest(
                request.urn, request.id, PropertyValue.unmarshal_map(request.olds),
                PropertyValue.unmarshal_map(request.news), timeout=request.timeout,
                ignore_changes=list(request.ignoreChanges), preview=request.preview))
            return proto.UpdateResponse(properties=PropertyValue.marshal_map(resp.properties))

        return await self._answer(context, update)

    async def Delete(self, request, context):  # noqa: N802
        async def delete() -> Any:
            await self._provider.delete(api.DeleteRequest(
                request.urn, request.id, PropertyValue.unmarshal_map(request.properties), timeout=request.timeout))
            from google.protobuf import empty_pb2

            return empty_pb2.Empty()

        return await self._answer(context, delete)


def main() -> None:
    """The engine starts the plugin with its own address; the plugin answers with its port on stdout."""
    parser = argparse.ArgumentParser(prog="pulumi-resource-export-image", description=__doc__.split("\n")[0])
    parser.add_argument("engine", help="the Pulumi engine's gRPC address")
    known, _ = parser.parse_known_args()  # --logtostderr, -v=N, --tracing ...: the engine's, ignored
    serve_plugin(known.engine)

    async def serve() -> None:
        from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS

        server = grpc.aio.server(options=_GRPC_CHANNEL_OPTIONS)
        servicer = ExportImageServicer(sys.argv[1:], VERSION, ExportImagePlugin(), engine_address=known.engine)
        provider_pb2_grpc.add_ResourceProviderServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        await server.wait_for_termination()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
