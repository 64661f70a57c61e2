"""A model of the engine, driven by Hypothesis, hunting for operation orders that lose an image.

The engine sends the provider every order of create, replace (forced or by a
changed input, delete-before-replace when diff asks), update, refresh,
interruption and destroy. This state machine plays the engine for several
resources in two stacks that share project, stack and resource names (two
backends, one account), against the emulator over HTTP, and after every step
checks the promises the README makes:

* nothing a live resource reports is ever deleted by the provider;
* each live resource has exactly one claimed, live task: its own;
* no task is left that nothing owns, once no create of that resource is
  interrupted (an interrupted create's task waits for the next create of its
  resource, or its destroy);
* after destroy, nothing of the stack remains.

Each program runs with or without partial state, drawn once: with it, the
provider process answers an interrupted create with ``ErrorResourceInitFailed``
(process.PartialCreate) and the engine keeps the resource, not initialised,
with its task: the next ``up`` sends Update (or replaces), a replaced resource
waits in the state as pending delete until the next ``up`` deletes it, as
pulumi's deploy/step.go does. Without it (the engine gone, kill -9) nothing
records the task and the next create of the resource must resume it.

CI runs a bounded search (``MODEL_EXAMPLES``, default 6 programs of up to 12
steps); ``scripts/model-test`` runs a long one.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pulumi.dynamic import DiffResult

from export_image_provider import ImageExportProvider, process
from export_image_provider.ownership import CLAIM_TAG, RESOURCE_TAG, STACK_TAG
from export_image_provider.slots import queue_for
from test_provider import object_exists, world  # noqa: F401 - pytest fixture

STACKS = ("A", "B")
NAMES = ("r0", "r1")
FORMATS = ("VMDK", "RAW")
PREFIXES = ("a/", "b/")
EXPORT_SECONDS = 0.4
RETENTION_SECONDS = 600.0
INTERRUPT_MINUTES = 0.002  # 0.12 s: the create gives up while its task is still active
EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "6"))
STEPS = int(os.environ.get("MODEL_STEPS", "12"))


def tag_dict(record):
    return {t["Key"]: t["Value"] for t in record.get("Tags") or ()}


class EngineModel(RuleBasedStateMachine):
    """The engine's view (one state per stack) and the provider's effects in the emulator."""

    emulator = None
    images: dict[str, str] = {}
    bucket = ""

    def __init__(self) -> None:
        super().__init__()
        self.emulator.reset()
        self.emulator.set_config(export_seconds=EXPORT_SECONDS, expire_after_seconds=RETENTION_SECONDS)
        self.provider = ImageExportProvider()
        self.state: dict[tuple[str, str], dict] = {}
        self.interrupted: set[tuple[str, str]] = set()
        self.pending_delete: list[dict] = []
        self.gone_out_of_band: set[str] = set()
        self.partial_state = False

    @initialize(partial_state=st.booleans())
    def engine_keeps_partial_state(self, partial_state):
        """Whether an interrupted create answers with partial state (the engine is there to record it)."""
        self.partial_state = partial_state
        process._installed = [] if partial_state else None  # [] = the interceptor answers, nothing failed

    # --- the program and the engine -------------------------------------------------------
    def inputs(self, stack, name, fmt, prefix, tags, wait, timeout=1.0):
        raw = {"image_id": self.images[name], "disk_image_format": fmt, "s3_bucket": self.bucket,
               "s3_prefix": prefix, "tags": tags, "wait_for_completion": wait, "timeout_minutes": timeout,
               "resource_key": f"proj/dev/{name}", "stack_identity": stack}
        return {**self.provider.check({}, raw).inputs, "__provider": "the pickled provider"}  # as the engine sends

    def create(self, key, news, replacing=None) -> bool:
        """The engine's create step; ``replacing`` is the old state of a create-before-delete replacement."""
        try:
            created = self.provider.create(news)
        except process.PartialCreate as partial:
            assert self.partial_state, str(partial)
            assert "left running" in str(partial), str(partial)
            self.state[key] = {**partial.outputs, "id": partial.id, "init_failed": True}
            self.interrupted.discard(key)
            if replacing is not None:
                self.pending_delete.append(replacing)
            return False
        except Exception as error:  # noqa: BLE001 - the engine records a failed create as nothing
            assert "left running" in str(error) or "nothing was started" in str(error), str(error)
            self.interrupted.add(key)
            return False
        self.state[key] = {**created.outs, "id": created.id}
        self.interrupted.discard(key)
        return True

    def delete(self, key) -> None:
        old = self.state.pop(key)
        self.provider.delete(old["id"], old)
        self.interrupted.discard(key)

    def delete_pending(self) -> None:
        """Resources replaced by a create that ended in partial state: the next deployment deletes them first."""
        while self.pending_delete:
            old = self.pending_delete.pop(0)
            self.provider.delete(old["id"], old)

    def apply(self, key, news, forced=False) -> None:
        """What ``pulumi up`` does for one resource whose program says ``news``."""
        self.delete_pending()
        old = self.state.get(key)
        if old is None:
            self.create(key, news)
            return
        # A forced replacement (up --replace) never asks the provider: create-before-delete.
        diff = DiffResult(changes=True, replaces=["id"]) if forced else self.provider.diff(old["id"], old, news)
        if diff.replaces:
            if diff.delete_before_replace:
                self.delete(key)
                self.create(key, news)
            else:
                if self.create(key, news, replacing=old):
                    self.provider.delete(old["id"], old)
        elif diff.changes or old.get("init_failed"):  # a resource not initialised is always updated
            try:
                updated = self.provider.update(old["id"], old, news)
            except Exception as error:  # noqa: BLE001 - a failed update leaves the old state as it was
                assert "left running" in str(error), str(error)
                return
            self.state[key] = {**updated.outs, "id": old["id"]}

    # --- rules -----------------------------------------------------------------------------
    @rule(stack=st.sampled_from(STACKS), name=st.sampled_from(NAMES), fmt=st.sampled_from(FORMATS),
          prefix=st.sampled_from(PREFIXES), tags=st.sampled_from([{}, {"team": "a"}]), wait=st.booleans())
    def up(self, stack, name, fmt, prefix, tags, wait):
        self.apply((stack, name), self.inputs(stack, name, fmt, prefix, tags, wait))

    @rule(stack=st.sampled_from(STACKS), name=st.sampled_from(NAMES), fmt=st.sampled_from(FORMATS))
    def interrupted_up(self, stack, name, fmt):
        """An up killed or timed out while the export runs: the engine keeps the old state."""
        old = self.state.get((stack, name))
        prefix = old["s3_prefix"] if old else "a/"
        self.apply((stack, name), self.inputs(stack, name, fmt, prefix, {}, True, INTERRUPT_MINUTES))

    # Rules that act on a resource draw it from all of them and do nothing when the engine's state
    # has no such resource (or no completed image): what is in the state depends on timing (whether
    # an interrupted create had started its task), and Hypothesis needs draws that do not.
    @rule(stack=st.sampled_from(STACKS), name=st.sampled_from(NAMES))
    def forced_replace(self, stack, name):
        old = self.state.get((stack, name))
        if old is None:
            return
        self.apply((stack, name), self.inputs(stack, name, old["disk_image_format"], old["s3_prefix"], old["tags"],
                                              old["wait_for_completion"]), forced=True)

    @rule(stack=st.sampled_from(STACKS), name=st.sampled_from(NAMES))
    def refresh(self, stack, name):
        old = self.state.get((stack, name))
        if old is None:
            return
        read = self.provider.read(old["id"], old)
        if read.id:
            self.state[(stack, name)] = {**read.outs, "id": read.id}  # a read without init errors clears them
        else:
            del self.state[(stack, name)]

    @rule(stack=st.sampled_from(STACKS), name=st.sampled_from(NAMES))
    def destroy(self, stack, name):
        if (stack, name) in self.state:
            self.delete((stack, name))

    @rule(stack=st.sampled_from(STACKS), name=st.sampled_from(NAMES))
    def delete_object_out_of_band(self, stack, name):
        old = self.state.get((stack, name))
        if old is None or old["status"] != "completed":
            return
        self.emulator.client("s3").delete_object(Bucket=self.bucket, Key=old["s3_key"])
        self.gone_out_of_band.add(old["s3_key"])

    @rule()
    def time_passes(self):
        """Running exports finish; with enough of it, AWS forgets ended task records."""
        self.emulator.advance(RETENTION_SECONDS + 1)

    # --- invariants ------------------------------------------------------------------------
    def live_tasks(self, stack, name):
        """Tasks of this resource that hold an export: active, or completed with their image."""
        found = []
        for record in self.emulator.client("ec2").describe_export_image_tasks()["ExportImageTasks"]:
            tags = tag_dict(record)
            if tags.get(RESOURCE_TAG) != f"proj/dev/{name}" or tags.get(STACK_TAG) != stack:
                continue
            location = record["S3ExportLocation"]
            keys = [f"{location.get('S3Prefix', '')}{record['ExportImageTaskId']}.{f.lower()}" for f in FORMATS]
            if record["Status"] == "active" or (
                record["Status"] == "completed" and any(object_exists(self.emulator, self.bucket, k) for k in keys)
            ):
                found.append((record["ExportImageTaskId"], CLAIM_TAG in tags))
        return found

    @invariant()
    def nothing_a_live_resource_reports_is_deleted(self):
        for key, outs in [*self.state.items(), *(("pending delete", old) for old in self.pending_delete)]:
            if outs["status"] == "completed" and outs["s3_key"] not in self.gone_out_of_band:
                assert object_exists(self.emulator, self.bucket, outs["s3_key"]), f"{key}: image of {outs['id']} lost"

    @invariant()
    def one_task_per_resource_and_none_unowned(self):
        for stack in STACKS:
            for name in NAMES:
                live = self.live_tasks(stack, name)
                claimed = [task_id for task_id, is_claimed in live if is_claimed]
                outs = self.state.get((stack, name))
                mine = [outs["id"]] if outs and outs["s3_key"] not in self.gone_out_of_band else []
                mine += [old["id"] for old in self.pending_delete
                         if old["resource_key"] == f"proj/dev/{name}" and old["stack_identity"] == stack]
                assert set(claimed) <= set(mine), f"{stack}/{name}: claimed tasks {claimed}, state has {mine}"
                if (stack, name) not in self.interrupted:
                    unowned = [task_id for task_id, is_claimed in live if not is_claimed]
                    assert not unowned, f"{stack}/{name}: tasks nothing owns: {unowned}"

    @invariant()
    def no_create_is_left_waiting_for_a_slot(self):
        """Between steps nothing runs: an entry left in the region's slot queue would hold back every later create."""
        assert not queue_for(self.emulator.region)._waiting

    def teardown(self):
        """Destroy every stack; any task a create of it was interrupted with is resumed first."""
        try:
            self.delete_pending()
            for key in sorted(self.interrupted - set(self.state)):
                self.apply(key, self.inputs(*key, "VMDK", "a/", {}, True))
            for key in sorted(self.state):
                self.delete(key)
            for stack in STACKS:
                for name in NAMES:
                    assert not self.live_tasks(stack, name), f"{stack}/{name}: left after destroy"
        finally:
            process._installed = None
            super().teardown()


@pytest.fixture(scope="module")
def model_world(world, emulator):
    from export_image_provider.emulator.seed import seed

    EngineModel.emulator = emulator
    EngineModel.bucket = world["bucket"]
    EngineModel.images = {name: seed(emulator.url, "us-east-1", bucket=world["bucket"], prefix=f"model-{name}")[
        "image_id"] for name in NAMES}
    return world


def test_no_order_of_operations_breaks_the_invariants(model_world):
    EngineModel.TestCase.settings = settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )
    EngineModel.TestCase().runTest()
