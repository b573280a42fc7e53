"""The JSON documents: how they are spelled, and the JSON Schema they follow (``files/schema.json``)."""

from __future__ import annotations

import json
from typing import Any


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def schema() -> dict[str, Any]:
    """The JSON Schema of the result documents (shipped as ``normstats/output/files/schema.json``)."""
    from importlib import resources

    return json.loads(resources.files("normstats.output.files").joinpath("schema.json").read_text(encoding="utf-8"))
