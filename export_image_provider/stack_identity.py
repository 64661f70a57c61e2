"""StackIdentity: a random id that tells this stack's export tasks from any other's.

Project, stack and resource names are not unique across state backends: two
engineers with a ``dev`` stack of one project each, in one AWS account, would
otherwise resume (and destroy) each other's export tasks. So the first
ImageExport of a program registers one hidden ``StackIdentity`` resource, whose
create draws a random id once; it lives in this stack's state, and every export
task of the stack carries it as a tag (``lifecycle.STACK_TAG``). It survives an
interrupted ``up`` (it is created before any export, which depends on it) and is
deleted with the stack, so ``destroy`` then ``up`` starts afresh.
"""

from __future__ import annotations

import uuid
from typing import Any

import pulumi
import pulumi.dynamic

RESOURCE_NAME = "export-image-provider-stack-identity"


class StackIdentityProvider(pulumi.dynamic.ResourceProvider):
    """Draws the id at create; nothing to read, update or delete in AWS."""

    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        identity = uuid.uuid4().hex
        return pulumi.dynamic.CreateResult(identity, {"identity": identity})

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        return pulumi.dynamic.ReadResult(id_, {"identity": props.get("identity") or id_})


class StackIdentity(pulumi.dynamic.Resource, module="export_image_provider", name="StackIdentity"):
    """The stack's identity for its export tasks; one per program, made by :func:`stack_identity`."""

    identity: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(StackIdentityProvider(), name, {"identity": None}, opts)


_BY_RUN: list[tuple[tuple[Any, Any], StackIdentity]] = []


def stack_identity() -> pulumi.Output[str]:
    """This program run's StackIdentity output, registering the resource on first use.

    Keyed by the run (its root stack resource and resource monitor), so an
    Automation API process that runs programs many times, or unit tests under
    ``set_mocks``, register it once per run.
    """
    from pulumi.runtime import settings

    run = (settings.get_root_resource(), settings.SETTINGS.monitor)
    for known, identity in _BY_RUN:
        if known[0] is run[0] and known[1] is run[1]:
            return identity.identity
    identity = StackIdentity(RESOURCE_NAME)
    _BY_RUN[:] = [(run, identity)]
    return identity.identity
