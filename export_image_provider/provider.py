"""ImageExportProvider: Pulumi's property dicts in, an ExportSpec to the lifecycle, outputs back.

The provider object is pickled into the stack's state and unpickled in the
dynamic-provider process, so it holds nothing but configuration read there
(``configure``): no clients, sessions or credentials. boto3 is imported only by
the operations that call AWS, keeping ``check`` and ``diff`` (all that a preview
with no changes runs) free of its import time.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from .process import OneLineError, PartialCreate, current_urn, log, partial_state_supported, resource_name
from .workers import prepare_provider_process
from .spec import REPLACE_PROPERTIES, UPDATE_PROPERTIES, ExportSpec, normalize, to_spec, validate

OBJECT_PROPERTIES = ("s3_object_size", "s3_etag", "s3_version_id", "s3_last_modified")
OUTPUT_PROPERTIES = ("export_image_task_id", "status", "status_message", "progress", "s3_key", "s3_uri",
                     *OBJECT_PROPERTIES)
# Inputs that change only how the provider behaves, never the task: updated in place.
BEHAVIOUR_PROPERTIES = ("wait_for_completion", "timeout_minutes", "existing_task_id")
# The provider's own bookkeeping (lifecycle.identity_tags): a change re-tags the task in place.
IDENTITY_PROPERTIES = ("resource_key", "stack_identity")
_ACCOUNT_LOCK = threading.Lock()


def _is_unknown(value: Any) -> bool:
    """Preview's values not known until apply: the engine's sentinel string, or pulumi.dynamic's Unknown."""
    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


# Lines that repeat while an operation runs: shown on the resource's row, not kept in Diagnostics.
_EPHEMERAL = re.compile(r": (waiting for a free export slot|export-ami-\S+ active\b)")


def _log(line: str) -> None:
    """A lifecycle line on its resource's row, starting with the resource's name; progress is ephemeral."""
    name = resource_name(current_urn())
    if name and not line.startswith(f"{name}:"):
        line = f"{name}: {line}"
    log(line, ephemeral=bool(_EPHEMERAL.search(line)))


@contextmanager
def _one_line() -> Iterator[None]:
    """Let an AWS or lifecycle failure leave as its one readable line, without any traceback."""
    from .aws import ExportError
    from .lifecycle import ExportFailed

    try:
        yield
    except (ExportFailed, ExportError) as failure:
        raise OneLineError(str(failure)) from None


def _comparable(name: str, value: Any) -> Any:
    if name == "disk_image_format" and isinstance(value, str):
        return value.upper()
    if name == "s3_prefix":
        return value or ""
    if name in ("description", "region"):
        return value or None
    if name == "tags":
        return dict(value or {})
    return value


def _recorded_image(props: Mapping[str, Any]) -> Any:
    """The image the state last saw (an ``S3Object``), or None for an export not seen completed."""
    if not props.get("s3_etag"):
        return None
    from .image import S3Object

    return S3Object(
        size=int(props.get("s3_object_size") or 0),
        etag=props["s3_etag"],
        version_id=props.get("s3_version_id") or None,
        last_modified=props.get("s3_last_modified") or "",
    )


class ImageExportProvider(ResourceProvider):
    """The dynamic provider behind :class:`export_image_provider.ImageExport`."""

    serialize_as_secret_always = False

    def __getstate__(self) -> dict[str, Any]:
        """Nothing: what ``configure`` learnt belongs to one provider process, not to state."""
        return {}

    def __setstate__(self, _state: dict[str, Any]) -> None:
        pass

    def configure(self, req: ConfigureRequest) -> None:
        """Read stack config (``stack_config.KEYS`` decides each ``aws:`` key); in Pulumi's provider
        process, also widen its pool and honour Cancel (workers.py). A key it cannot honour fails every
        operation with its line.
        """
        from .stack_config import KEYS, NAMESPACE, StackConfigError, read_stack_config

        for warning in prepare_provider_process():
            log(f"export-image-provider: {warning}", severity="WARNING")
        raw = getattr(req.config, "_props", None)  # the whole bag; pulumi.dynamic.Config has no public iterator
        if not isinstance(raw, Mapping):
            raw = {NAMESPACE + k: v for k in KEYS if (v := req.config.get(NAMESPACE + k)) is not None}
        try:
            self.stack_config = read_stack_config(raw)
        except StackConfigError as problem:
            raise OneLineError(str(problem)) from None
        self.config_region = self.stack_config.region

    def _auth(self) -> Any:
        from .aws import AwsAuth
        from .stack_config import StackConfig

        config = getattr(self, "stack_config", None) or StackConfig()
        return AwsAuth(config.profile, config.access_key, config.secret_key, config.token,
                       config.assume_roles, config.sts_region)

    def _check_account(self, gateway: Any) -> None:
        """Once per provider process, before its first AWS call: are these credentials valid, for an allowed account?

        pulumi-aws validates credentials with STS unless ``aws:skipCredentialsValidation``;
        ``aws:allowedAccountIds``/``aws:forbiddenAccountIds`` need the account either way.
        """
        config = getattr(self, "stack_config", None)
        if config is None or getattr(self, "account_checked", False):
            return
        if config.skip_credentials_validation and not config.checks_account:
            return
        with _ACCOUNT_LOCK:
            if getattr(self, "account_checked", False):
                return
            problem = config.account_problem(gateway.account_id)
            if problem:
                raise OneLineError(problem)
            self.account_checked = True

    def _default_region(self) -> str | None:
        """The region a resource without ``region`` uses, when known without boto3."""
        return (
            getattr(self, "config_region", None)
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
        )

    def _gateway(self, region: str | None) -> Any:
        from .aws import AwsGateway, resolve_region

        gateway = AwsGateway(resolve_region(region or self._default_region(), self._auth()), self._auth())
        self._check_account(gateway)
        return gateway

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = normalize(news)
        failures = [CheckFailure(p.property, p.reason) for p in validate(inputs, _is_unknown)]
        return CheckResult(inputs, failures)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return self.diff_result(olds, *self.changes(id_, olds, news))

    @staticmethod
    def diff_result(olds: Mapping[str, Any], replaces: list[str], updates: list[str]) -> DiffResult:
        """The engine's answer for :meth:`changes`' ``replaces`` and ``updates`` (the plugin details them too)."""
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            stables=(["export_image_task_id", "s3_key", "s3_uri"]
                     + (list(OBJECT_PROPERTIES) if olds.get("status") == "completed" else [])) if not replaces else [],
            # An export that may still run holds AWS's one-active-export-per-AMI slot and a region
            # slot: cancel it first, or the replacement waits behind an export about to be deleted.
            # Also said with no replaces, for the engine's forced replacements (up --replace).
            delete_before_replace=olds.get("status") != "completed",
        )

    def changes(self, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """The inputs whose change replaces the export, and those updated in place (the plugin shows each)."""
        replaces = []
        for name in REPLACE_PROPERTIES:
            new = news.get(name)
            if name == "region" and not new:
                new = self._default_region()
                if new is None:
                    continue
            if _is_unknown(new) or _comparable(name, new) != _comparable(name, olds.get(name)):
                replaces.append(name)
        adopted = news.get("existing_task_id")
        if adopted and (_is_unknown(adopted) or adopted != (olds.get("export_image_task_id") or id_)):
            replaces.append("existing_task_id")
        updates = [
            name
            for name in UPDATE_PROPERTIES + BEHAVIOUR_PROPERTIES + IDENTITY_PROPERTIES
            if _is_unknown(news.get(name)) or _comparable(name, news.get(name)) != _comparable(name, olds.get(name))
        ]
        return replaces, updates

    def create(self, props: dict[str, Any]) -> CreateResult:
        from .lifecycle import ExportIncomplete, create_export
        from .ownership import claim

        spec = to_spec(props)
        with _one_line():
            gateway = self._gateway(spec.region)
            try:
                state = create_export(spec, gateway, _log)
            except ExportIncomplete as incomplete:
                if incomplete.state is None or not partial_state_supported():
                    raise
                # The engine will keep this resource (partial state): the task is now owned.
                claim(incomplete.state.task_id, gateway)
                outputs = self._outputs(props, spec, gateway.region, incomplete.state)
                if "__provider" in props:  # the dynamic provider's own key; the plugin has none
                    outputs["__provider"] = props["__provider"]
                raise PartialCreate(str(incomplete), incomplete.state.task_id, outputs) from None
        return CreateResult(state.task_id, self._outputs(props, spec, gateway.region, state))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        from .lifecycle import read_export

        spec = to_spec(props)
        with _one_line():
            gateway = self._gateway(props.get("region"))
            state = read_export(spec, id_, gateway, props.get("tags") or {}, _recorded_image(props), _log)
        if state is None:
            return ReadResult("", {})
        return ReadResult(id_, self._outputs(props, spec, gateway.region, state))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        from .lifecycle import ExportState, update_export

        spec = to_spec(news)
        with _one_line():
            gateway = self._gateway(olds.get("region"))
            waited = update_export(spec, id_, olds.get("tags") or {}, olds.get("status"), gateway, _log)
        state = ExportState(
            task_id=id_,
            status=olds.get("status") or "",
            status_message=olds.get("status_message"),
            progress=olds.get("progress"),
            s3_key=olds.get("s3_key") or spec.s3_key(id_),
            tags=dict(spec.tags),
            s3_object=_recorded_image(olds),
        )
        if waited is not None:
            state = dataclasses.replace(waited, tags=dict(spec.tags))
        return UpdateResult(self._outputs(news, spec, gateway.region, state))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        from .lifecycle import delete_export

        spec = to_spec(props)
        with _one_line():
            delete_export(spec, id_, self._gateway(props.get("region")), _log, _recorded_image(props))

    @staticmethod
    def _outputs(inputs: Mapping[str, Any], spec: ExportSpec, region: str, state: Any) -> dict[str, Any]:
        outs = normalize({k: v for k, v in inputs.items() if not k.startswith("__")})
        outs.update(
            region=region,
            tags=dict(state.tags),
            export_image_task_id=state.task_id,
            status=state.status,
            status_message=state.status_message,
            progress=state.progress,
            s3_key=state.s3_key,
            s3_uri=f"s3://{spec.s3_bucket}/{state.s3_key}",
        )
        image = state.s3_object
        outs.update(
            s3_object_size=image.size if image else None,
            s3_etag=image.etag if image else None,
            s3_version_id=image.version_id if image else None,
            s3_last_modified=image.last_modified if image else None,
        )
        return outs
