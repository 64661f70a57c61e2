"""Pulumi's property values and names to the core's plain dicts and back.

The schema names properties in camelCase, as every Pulumi package does; the
core (spec.py, provider.py) speaks snake_case. Only top-level names are
translated: tag keys are the user's and pass through as they are. Values cross
as plain Python: secrets are unwrapped (the core never stores credentials in a
resource's properties), unknowns become the engine's sentinel the core already
recognises, and numbers become what the core expects (Pulumi sends floats).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

INTEGER_PROPERTIES = ("progress", "s3_object_size")


def camel(name: str) -> str:
    """``s3_object_size`` -> ``s3ObjectSize``."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def snake(name: str) -> str:
    """``s3ObjectSize`` -> ``s3_object_size`` (the inverse of :func:`camel` for the core's names)."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def to_python(value: Any) -> Any:
    """A PropertyValue as plain Python: secrets unwrapped, unknowns as the engine's sentinel string."""
    from pulumi.provider.experimental.property_value import Computed, PropertyValue
    from pulumi.runtime.rpc import UNKNOWN

    if isinstance(value, PropertyValue):
        value = value.value
    if isinstance(value, Computed):
        return UNKNOWN
    if isinstance(value, Mapping):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    return value


def from_python(value: Any, secret: bool = False) -> Any:
    """Plain Python as a PropertyValue (ints as floats, which is all Pulumi's wire format has).

    An unknown stays the engine's sentinel string: that string is how the wire says unknown, and the
    SDK's PropertyValue cannot marshal its own Computed (3.260).
    """
    from pulumi.provider.experimental.property_value import PropertyValue

    if isinstance(value, PropertyValue):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return PropertyValue(value, is_secret=secret)
    if isinstance(value, int):
        return PropertyValue(float(value), is_secret=secret)
    if isinstance(value, Mapping):
        return PropertyValue({str(k): from_python(v) for k, v in value.items()}, is_secret=secret)
    if isinstance(value, (list, tuple)):
        return PropertyValue([from_python(v) for v in value], is_secret=secret)
    raise TypeError(f"cannot send {type(value).__name__} {value!r} to the engine")


def inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's camelCase property map as the core's snake_case dict."""
    out = {snake(k): to_python(v) for k, v in props.items()}
    for name in INTEGER_PROPERTIES:
        if isinstance(out.get(name), float):
            out[name] = int(out[name])
    return out


def outputs(props: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """The core's snake_case dict as the engine's camelCase property map; ``None`` values are left out."""
    skip = set(drop)
    return {camel(k): from_python(v) for k, v in props.items() if v is not None and k not in skip and not k.startswith("__")}
