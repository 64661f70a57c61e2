"""A local stand-in for EC2 ExportImage: moto (EC2, S3, IAM, STS) plus export tasks.

``start_emulator()`` serves it in-process and ``python -m
export_image_provider.emulator`` as a process; ``seed.seed()`` creates AMIs, a
bucket and the vmimport role in it. Names are imported lazily so that ``seed``
(boto3 only) does not pull in moto.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EmulatorConfig",
    "MotoConflictError",
    "RunningEmulator",
    "check_actions_free",
    "install",
    "progress_at",
    "start_emulator",
]

_HOMES = {
    "EmulatorConfig": "config",
    "progress_at": "curve",
    "MotoConflictError": "server",
    "RunningEmulator": "server",
    "check_actions_free": "server",
    "install": "server",
    "start_emulator": "server",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{_HOMES[name]}")
    return getattr(module, name)
