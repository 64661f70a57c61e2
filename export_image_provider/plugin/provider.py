"""The plugin's Provider: each engine request mapped onto :class:`ImageExportProvider`, nothing decided here.

``pulumi.provider.experimental.Provider`` hands over property values with
camelCase names; values.py turns them into the snake_case dicts the dynamic
resource's provider takes, and its answers back. What differs from the dynamic
front door is only what the engine gives a real plugin: the provider config
(region, credentials as secrets, and the stack's identity, drawn once in
CheckConfig and kept in the provider's state instead of a hidden
``StackIdentity`` resource), ``customTimeouts`` (the timeout of Create and
Update bounds the wait, as ``timeout_minutes`` does), ``pulumi import``
(imports.py), and requests served on threads of the plugin's own pool, each
bound to its resource's URN so that its lines land on that resource's row.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pulumi.provider.experimental import provider as api
from pulumi.provider.experimental.property_value import PropertyValue

from ..process import OneLineError, PartialCreate, cancel, serving
from ..provider import ImageExportProvider
from ..spec import DEFAULT_TIMEOUT_MINUTES
from . import imports, values
from .schema import SECRET_CONFIG, schema_json

STACK_IDENTITY = "stackIdentity"  # the provider input CheckConfig draws (see stack_identity.py for why)
_NOT_CONFIG = (STACK_IDENTITY, "version", "pluginDownloadURL")
WORKERS = 64  # a create holds its thread for the whole export


def resource_key(urn: str) -> str:
    """``project/stack/name``, what the dynamic resource tags its tasks with, from ``urn:pulumi:STACK::PROJECT::TYPE::NAME``."""
    head, project, _type, name = urn.split("::", 3)
    return f"{project}/{head.rsplit(':', 1)[-1]}/{name}"


def _secret_names(props: Mapping[str, PropertyValue]) -> set[str]:
    return {values.snake(k) for k, v in props.items() if isinstance(v, PropertyValue) and v.contains_secret()}


def _answer(outs: Mapping[str, Any], secrets: set[str]) -> dict[str, PropertyValue]:
    """Outputs for the engine, the inputs that came as secrets kept secret."""
    answer = values.outputs(outs)
    return {k: v.with_secret(True) if values.snake(k) in secrets else v for k, v in answer.items()}


def _ours(problem: Exception) -> str:
    """stack_config.py's line about ``aws:KEY``, about the plugin's ``export-image:KEY``."""
    return str(problem).replace("aws:", "export-image:")


class ExportImagePlugin(api.Provider):
    """``export-image:index:ImageExport`` on the SDK's provider interface."""

    def __init__(self) -> None:
        self.core = ImageExportProvider()
        self.stack_identity: str | None = None
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="export-image")

    async def _run(self, urn: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a thread of the plugin's pool, its lines bound to ``urn``."""
        def bound() -> Any:
            with serving(urn):
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(self.pool, bound)

    # -- the package and its provider config ------------------------------------------

    async def get_schema(self, request: api.GetSchemaRequest) -> api.GetSchemaResponse:
        return api.GetSchemaResponse(schema=schema_json())

    async def check_config(self, request: api.CheckRequest) -> api.CheckResponse:
        """The config as given, credentials marked secret, and the stack's identity: the old one, or a new one."""
        from ..stack_config import StackConfigError, read_stack_config

        news = dict(request.new_inputs)
        old = request.old_inputs.get(STACK_IDENTITY)
        news[STACK_IDENTITY] = old if old is not None and old.value else PropertyValue(uuid.uuid4().hex)
        for key in SECRET_CONFIG:
            if key in news:
                news[key] = news[key].with_secret(True)
        try:
            read_stack_config(self._aws_config(news))
        except StackConfigError as problem:
            return api.CheckResponse(inputs=news, failures=[api.CheckFailure("", _ours(problem))])
        return api.CheckResponse(inputs=news)

    async def diff_config(self, request: api.DiffRequest) -> api.DiffResponse:
        """A config change updates the provider in place; its resources are not replaced for it.

        An identity drawn now (the provider in the state has none: ``pulumi import`` records the
        default provider without one) is a change too: the engine configures a provider it deems
        unchanged with its old inputs, and the identity would never reach the resources.
        """
        olds, news = values.inputs(request.old_state), values.inputs(request.new_inputs)
        changed = sorted(k for k in olds.keys() | news.keys() if olds.get(k) != news.get(k))
        return api.DiffResponse(changes=bool(changed), diffs=[values.camel(k) for k in changed])

    @staticmethod
    def _aws_config(config: Mapping[str, Any]) -> dict[str, Any]:
        """``export-image:KEY`` as stack_config.py reads ``aws:KEY``: the same keys, the same refusals."""
        return {f"aws:{key}": values.to_python(value) for key, value in config.items()
                if key not in _NOT_CONFIG and values.to_python(value) is not None}

    async def configure(self, request: api.ConfigureRequest) -> api.ConfigureResponse:
        from ..stack_config import StackConfigError, read_stack_config

        config = {key.rsplit(":", 1)[-1]: value for key, value in request.variables.items()}
        config.update(request.args)
        try:
            self.core.stack_config = read_stack_config(self._aws_config(config))
        except StackConfigError as problem:
            raise OneLineError(_ours(problem)) from None
        self.core.config_region = self.core.stack_config.region
        identity = values.to_python(config.get(STACK_IDENTITY))
        self.stack_identity = identity if isinstance(identity, str) else None
        return api.ConfigureResponse(accept_secrets=True, supports_preview=False)

    async def cancel(self) -> None:
        cancel()

    # -- the resource -----------------------------------------------------------------

    def _props(self, urn: str, props: Mapping[str, PropertyValue]) -> dict[str, Any]:
        """The resource's inputs as the core takes them, with the identity the dynamic resource gives its own."""
        return {**values.inputs(props), "resource_key": resource_key(urn), "stack_identity": self.stack_identity}

    async def check(self, request: api.CheckRequest) -> api.CheckResponse:
        news = self._props(request.urn, request.new_inputs)
        result = self.core.check({}, news)
        unread = imports.unread(news)  # an import's check: what AWS does not tell is not missing
        failures = [api.CheckFailure(values.camel(f.property), f.reason)
                    for f in result.failures or [] if f.property not in unread]
        return api.CheckResponse(inputs=_answer(result.inputs, _secret_names(request.new_inputs)), failures=failures)

    async def diff(self, request: api.DiffRequest) -> api.DiffResponse:
        news = values.inputs(request.new_inputs)
        olds = imports.as_read(values.inputs(request.old_state), news)
        replaces, updates = self.core.changes(request.resource_id, olds, news)
        result = self.core.diff_result(olds, replaces, updates)
        detail = {values.camel(name): api.PropertyDiff(api.PropertyDiffKind.UPDATE_REPLACE, True) for name in replaces}
        detail.update({values.camel(name): api.PropertyDiff(api.PropertyDiffKind.UPDATE, True)
                       for name in updates if values.camel(name) not in detail})
        return api.DiffResponse(
            changes=result.changes,
            replaces=[values.camel(name) for name in replaces],
            stables=[values.camel(name) for name in result.stables or []],
            delete_before_replace=result.delete_before_replace,
            diffs=list(detail),
            detailed_diff=detail,
        )

    @staticmethod
    def _bounded(props: dict[str, Any], timeout: float) -> dict[str, Any]:
        """``props`` whose ``timeout_minutes`` also honours the engine's customTimeouts (``timeout`` s, 0: none)."""
        if timeout and 0 < timeout / 60 < float(props.get("timeout_minutes") or DEFAULT_TIMEOUT_MINUTES):
            return {**props, "timeout_minutes": timeout / 60}
        return props

    async def create(self, request: api.CreateRequest) -> api.CreateResponse:
        props = values.inputs(request.properties)
        secrets = _secret_names(request.properties)
        restore = {"timeout_minutes": props.get("timeout_minutes")}
        bounded = self._bounded(props, request.timeout)
        try:
            result = await self._run(request.urn, self.core.create, bounded)
        except PartialCreate as partial:
            message = str(partial)
            if bounded is not props:  # say which limit the user set
                minutes = f"timeout_minutes ({bounded['timeout_minutes']:g})"
                message = message.replace(minutes, f"customTimeouts.create ({request.timeout:g}s)", 1)
            raise PartialCreate(message, partial.id, _answer({**partial.outputs, **restore}, secrets)) from None
        return api.CreateResponse(resource_id=result.id, properties=_answer({**result.outs, **restore}, secrets))

    async def read(self, request: api.ReadRequest) -> api.ReadResponse:
        if not request.properties:  # pulumi import: the id is all the engine has
            inputs, outputs = await self._run(request.urn, self._import, request.resource_id)
            return api.ReadResponse(request.resource_id, values.outputs(outputs), values.outputs(inputs))
        props = values.inputs(request.properties)
        result = await self._run(request.urn, self.core.read, request.resource_id, imports.with_stand_ins(props))
        if not result.id:
            return api.ReadResponse()
        outs = imports.without_stand_ins(result.outs, props)
        return api.ReadResponse(result.id, _answer(outs, _secret_names(request.properties)), dict(request.inputs))

    def _import(self, task_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        from ..provider import _one_line

        with _one_line():
            return imports.read_for_import(task_id, self.core._gateway(None))

    async def update(self, request: api.UpdateRequest) -> api.UpdateResponse:
        olds = values.inputs(request.olds)
        news = self._bounded(values.inputs(request.news), request.timeout)
        result = await self._run(request.urn, self._update, request.resource_id, olds, news)
        outs = {**result.outs, "timeout_minutes": values.inputs(request.news).get("timeout_minutes")}
        return api.UpdateResponse(properties=_answer(outs, _secret_names(request.news)))

    def _update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> Any:
        """The core's update; an export adopted by ``pulumi import`` is claimed with it, as a create claims its own."""
        result = self.core.update(id_, olds, news)
        if not olds.get("resource_key"):
            from ..ownership import claim

            claim(id_, self.core._gateway(olds.get("region")))
        return result

    async def delete(self, request: api.DeleteRequest) -> None:
        props = imports.with_stand_ins(values.inputs(request.properties))
        await self._run(request.urn, self.core.delete, request.resource_id, self._bounded(props, request.timeout))

