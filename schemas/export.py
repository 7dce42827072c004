"""JSON Schema export, so producers in any language can validate before they send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.registry import MODELS_OF_TOPIC, TOPICS
from schemas.signals import SIGNAL_MODELS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _union_schema(
    title: str,
    description: str,
    models: tuple[type[BaseModel], ...],
    discriminator: str = "event_type",
) -> dict[str, Any]:
    """A oneOf over `models` with shared $defs and an OpenAPI-style discriminator hint."""
    refs, top = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/$defs/{model}"
    )
    mapping = {
        model.model_fields[discriminator].annotation.__args__[0]: refs[(model, "validation")][
            "$ref"
        ]  # type: ignore[union-attr]
        for model in models
    }
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$defs": top["$defs"],
        "title": title,
        "description": description,
        "type": "object",
        "required": [discriminator],
        "oneOf": [refs[(model, "validation")] for model in models],
        "discriminator": {"propertyName": discriminator, "mapping": mapping},
    }


def _dump(schema: dict[str, Any]) -> str:
    """Deterministic text: sorted keys, indent 2, trailing newline (so a diff means a change)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def json_schemas() -> dict[str, str]:
    """File name -> schema text: one file per topic, `event.json` for all event types, and
    `signals.json` for the pipeline's own output topic `cx.signals`."""
    texts = {
        f"{topic}.json": _dump(
            _union_schema(
                f"cx.{topic} event",
                f"A record value on topic cx.{topic} (schema_version 1).",
                MODELS_OF_TOPIC[topic],
            )
        )
        for topic in TOPICS
    }
    every = tuple(model for topic in TOPICS for model in MODELS_OF_TOPIC[topic])
    texts["event.json"] = _dump(
        _union_schema("cx event", "Any cx-pipeline event (schema_version 1).", every)
    )
    texts["signals.json"] = _dump(
        _union_schema(
            "cx.signals signal",
            "A record value on topic cx.signals, written by the pipeline (schema_version 1).",
            SIGNAL_MODELS,
            discriminator="signal_type",
        )
    )
    return texts


def export_json_schemas(directory: Path) -> list[Path]:
    """Write the schemas into `directory` (created if needed); returns the written paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written
