"""Run a Pulumi program under the SDK's mock engine and record everything it registers.

One implementation serves ``gpu-fleet plan`` and the tests. The recording monitor keeps,
per resource: type, logical name, parent, provider, inputs (secrets kept marked), the
outputs the mocks returned and the resource options (protect, ignoreChanges,
replaceOnChanges, retainOnDelete, deleteBeforeReplace, dependencies, custom timeouts).
Data-source calls are answered per provider and region (see ``mock_outputs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import rpc
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.settings import SETTINGS, set_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from . import mock_outputs, sdk_imports

# The offline engine only (never a real `pulumi up`): before a program imports the provider
# SDKs, make their subpackages load just the resource modules it uses.
sdk_imports.install()

SECRET_MARK = "[secret]"
STACK_REFERENCE = "pulumi:pulumi:StackReference"


def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def reveal(value: Any) -> Any:
    """``value`` with every secret wrapper removed (for assertions on secret contents)."""
    if rpc.is_rpc_secret(value):
        return reveal(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def masked(value: Any) -> Any:
    """``value`` with every secret replaced by ``[secret]`` (for display)."""
    if rpc.is_rpc_secret(value):
        return SECRET_MARK
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


@dataclass
class ResourceRecord:
    """One registered resource, as the engine would have seen it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    inputs: dict
    outputs: dict
    id: str = ""
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    depends_on: list[str] = field(default_factory=list)
    custom_timeouts: dict[str, str] = field(default_factory=dict)

    @property
    def plain_inputs(self) -> dict:
        return reveal(self.inputs)

    @property
    def provider_urn(self) -> str:
        return self.provider.rsplit("::", 1)[0] if self.provider else ""


@dataclass
class CallRecord:
    token: str
    provider: str
    args: dict


@dataclass
class Recording:
    """Everything one program run registered, in registration order."""

    stack: str
    resources: list[ResourceRecord] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def of_type(self, type_: str) -> list[ResourceRecord]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> ResourceRecord:
        found = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_)]
            raise KeyError(f"{len(found)} {type_} named {name!r}; have {names}")
        return found[0]

    def by_urn(self, urn: str) -> ResourceRecord:
        return next(r for r in self.resources if r.urn == urn)

    def provider_of(self, rec: ResourceRecord) -> Optional[ResourceRecord]:
        """The explicit provider resource ``rec`` uses, or None for a default provider."""
        if not rec.provider:
            return None
        urn = rec.provider_urn
        found = next((r for r in self.resources if r.urn == urn), None)
        if found is None or "::default" in urn.split("::")[-1]:
            return None
        return found

    def children_of(self, rec: ResourceRecord) -> list[ResourceRecord]:
        return [r for r in self.resources if r.parent == rec.urn]

    def kubernetes_objects(self) -> list[tuple[ResourceRecord, dict]]:
        """Every Kubernetes object (not Helm releases) as a manifest with secrets revealed."""
        out = []
        for r in self.resources:
            manifest = mock_outputs.kubernetes_manifest(r.type, r.name, r.plain_inputs)
            if manifest is not None:
                out.append((r, manifest))
        return out


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: "FleetMocks", recording: Recording):
        super().__init__(mocks)
        self.recording = recording

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        state = self.resources[response.urn]
        timeouts = request.customTimeouts
        self.recording.resources.append(
            ResourceRecord(
                urn=response.urn,
                type=request.type,
                name=request.name,
                custom=bool(request.custom),
                parent=request.parent,
                provider=request.provider,
                inputs=rpc.deserialize_properties(request.object),
                outputs=dict(state.state),
                id=state.id or "",
                protect=bool(request.protect),
                ignore_changes=list(request.ignoreChanges),
                replace_on_changes=list(request.replaceOnChanges),
                retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                depends_on=list(request.dependencies),
                custom_timeouts={k: v for k, v in (("create", timeouts.create), ("update", timeouts.update), ("delete", timeouts.delete)) if v},
            )
        )
        return response


class FleetMocks(pulumi_mocks.Mocks):
    """Mocks that answer like the clouds would, per provider region.

    ``stack_outputs`` maps a StackReference name (``org/project/stack``) to that stack's
    outputs, with ``secret_outputs`` naming the secret ones.
    """

    def __init__(self, recording: Recording, config: dict[str, str],
                 stack_outputs: Optional[dict[str, tuple[dict, set[str]]]] = None):
        self.recording = recording
        self.config = config
        self.stack_outputs = stack_outputs or {}

    def _provider_inputs(self, provider_ref: str) -> dict:
        urn = provider_ref.rsplit("::", 1)[0] if provider_ref else ""
        rec = next((r for r in self.recording.resources if r.urn == urn), None)
        return rec.plain_inputs if rec else {}

    def _context(self, provider_ref: str, package: str) -> mock_outputs.Context:
        inputs = self._provider_inputs(provider_ref)
        region = inputs.get("region") or self.config.get(f"{package}:region", "")
        project = inputs.get("project") or self.config.get(f"{package}:project", "")
        return mock_outputs.Context(region=region, project=project, stack=self.recording.stack)

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        if args.typ == STACK_REFERENCE:
            ref = args.inputs["name"]
            if ref not in self.stack_outputs:
                raise mock_outputs.MockError(f"stack reference {ref!r}: no such stack was planned")
            outputs, secret = self.stack_outputs[ref]
            return f"{ref}-id", {"name": ref, "outputs": outputs, "secretOutputNames": sorted(secret)}
        package = args.typ.split(":", 1)[0]
        if args.typ.startswith("pulumi:providers:"):
            package = args.typ.rsplit(":", 1)[1]
        ctx = self._context(args.provider or "", package)
        state = dict(args.inputs)
        state.update(mock_outputs.computed(args.typ, args.name, args.inputs, ctx))
        return state.get("id") or f"{args.name}-id", state

    def call(self, args: pulumi_mocks.MockCallArgs):
        self.recording.calls.append(CallRecord(args.token, args.provider or "", dict(args.args)))
        package = args.token.split(":", 1)[0]
        return mock_outputs.call(args.token, args.args, self._context(args.provider or "", package))


class _WarningCollector(logging.Handler):
    def __init__(self, recording: Recording):
        super().__init__(level=logging.WARNING)
        self.recording = recording

    def emit(self, record: logging.LogRecord) -> None:
        self.recording.warnings.append(record.getMessage())


def install(recording: Recording, config: dict[str, Any], secret_keys: tuple[str, ...] = (),
            stack_outputs: Optional[dict[str, tuple[dict, set[str]]]] = None,
            project: str = "gpu-fleet") -> FleetMocks:
    """Point the Pulumi runtime at recording mocks (process-global: call per run/test).

    ``config`` maps full keys (``gpu-fleet:fleet``) to values; objects are JSON-encoded
    as the CLI would pass them.
    """
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    pulumi.runtime.set_all_config(encoded, list(secret_keys))
    mocks = FleetMocks(recording, encoded, stack_outputs)
    logger = logging.getLogger(f"gpu-fleet.engine.{recording.stack}")
    logger.handlers[:] = [_WarningCollector(recording)]
    logger.propagate = False
    # A fresh root Stack per run, so exports of one run never leak into the next.
    set_root_resource(None)
    pulumi.runtime.set_mocks(mocks, project=project, stack=recording.stack, preview=False,
                             monitor=_RecordingMonitor(mocks, recording), logger=logger)
    return mocks


@contextlib.contextmanager
def _no_stack_traces() -> Iterator[None]:
    """The SDK walks the Python stack (reading source lines) for every resource to send the
    engine its source position (pulumi 3.272.0, runtime/resource.py ``_get_stack_trace``);
    the recording keeps none, and the walk was a tenth of a plan's CPU."""
    original = pulumi_resource._get_stack_trace
    pulumi_resource._get_stack_trace = source_pb2.StackTrace
    try:
        yield
    finally:
        pulumi_resource._get_stack_trace = original


def run(program: Callable[[], None], recording: Recording) -> Recording:
    """Run ``program`` against the installed mocks; fills ``recording.stack_outputs``."""
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()

    async def body():
        program()
        root = pulumi.runtime.get_root_resource()
        names = list(root.outputs)
        outs = [pulumi.Output.from_input(root.outputs[n]) for n in names]
        values = await asyncio.gather(*(o.future() for o in outs))
        secrets = await asyncio.gather(*(o.is_secret() for o in outs))
        for n, v, s in zip(names, values, secrets):
            recording.stack_outputs[n] = v
            if s:
                recording.secret_outputs.add(n)

    with _no_stack_traces():
        _sync_await(run_pulumi_func(body))
    return recording
