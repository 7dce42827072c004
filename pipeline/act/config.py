"""The actions file (`CX_ACTIONS`): which webhooks get which signals, filters and caps.

```yaml
delivery:                       # optional; these are the defaults
  timeout: 10s                  # per attempt
  attempts: 6                   # first try + 5 retries, then the dead letter
  backoff: 1s                   # first retry delay; doubles, full jitter
  backoff_max: 60s
  dedupe_horizon: 7d            # a re-sent signal_id within it is not delivered again
signals:
  cart.abandoned:
    frequency_cap: 24h          # at most one per customer per 24 h and webhook (optional)
    webhooks:
      - name: reminders         # unique; names the delivery state and metrics
        url: https://crm.example/hooks/cart
        secret_env: CRM_SECRET  # or `secret: ...` inline
        max_age: 1h             # older signals are skipped as stale (default 1h)
        channels: [web, mobile_app]   # default: every channel
```

A mistake stops the start with the file, line and key that is wrong (PyYAML node marks).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pipeline.settings import parse_duration
from schemas.envelope import Channel
from schemas.signals import SIGNAL_TYPES

SignalType = Literal.__getitem__(SIGNAL_TYPES)  # type: ignore[attr-defined]
"""One of the contract's signal types (a typo is caught at start, with its line)."""

Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class ActionsError(ValueError):
    """The actions file cannot be used; the message names the file, line and key."""


class Webhook(BaseModel):
    """One HTTP receiver of one signal type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    secret: Annotated[str, Field(min_length=16, repr=False)]
    max_age: Duration = 3600.0
    channels: frozenset[Channel] | None = None

    @model_validator(mode="before")
    @classmethod
    def _secret_from_env(cls, data: Any) -> Any:
        """`secret_env: NAME` keeps the secret out of the file (and out of git)."""
        if isinstance(data, dict) and "secret_env" in data:
            data = dict(data)
            name = data.pop("secret_env")
            if "secret" in data:
                raise ValueError("give either secret or secret_env, not both")
            if not isinstance(name, str) or name not in os.environ:
                raise ValueError(f"secret_env: environment variable {name!r} is not set")
            data["secret"] = os.environ[name]
        return data

    def accepts_channel(self, channel: Channel) -> bool:
        return self.channels is None or channel in self.channels


class SignalActions(BaseModel):
    """What to do with one signal type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frequency_cap: Duration | None = None
    webhooks: Annotated[tuple[Webhook, ...], Field(min_length=1)]


class DeliveryPolicy(BaseModel):
    """Retry budget shared by every webhook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Duration = 10.0
    attempts: Annotated[int, Field(ge=1, le=100)] = 6
    backoff: Duration = 1.0
    backoff_max: Duration = 60.0
    dedupe_horizon: Duration = 7 * 86400.0


class Actions(BaseModel):
    """The whole actions file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delivery: DeliveryPolicy = DeliveryPolicy()
    signals: dict[SignalType, SignalActions]

    @model_validator(mode="after")
    def _unique_names(self) -> Actions:
        names = [hook.name for hook in self.webhooks()]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"webhook names must be unique: {', '.join(repeated)}")
        return self

    def webhooks(self) -> list[Webhook]:
        return [hook for actions in self.signals.values() for hook in actions.webhooks]

    def targets(self) -> list[tuple[str, Webhook, float | None]]:
        """(signal_type, webhook, frequency cap) for every configured delivery."""
        return [
            (signal_type, hook, actions.frequency_cap)
            for signal_type, actions in self.signals.items()
            for hook in actions.webhooks
        ]


def load_actions(path: Path) -> Actions:
    """Parse and validate the actions file, or raise `ActionsError` naming line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ActionsError(f"{path}: cannot read the actions file: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ActionsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ActionsError(f"{path}: must be a mapping with a `signals:` key")
    try:
        return Actions.model_validate(data)
    except ValidationError as exc:
        raise ActionsError(_describe(path, root, exc)) from None


def _describe(path: Path, root: yaml.Node | None, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [part for part in error["loc"] if not _is_pydantic_branch(part)]
        node = _node_at(root, loc)
        line = f"line {node.start_mark.line + 1}" if node is not None else "?"
        key = ".".join(str(part) for part in loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{path}:{line}: {key}: {message}")
    return "invalid actions file:\n  " + "\n  ".join(lines)


def _is_pydantic_branch(part: Any) -> bool:
    """pydantic adds validator names such as `function-before[...]` to a loc."""
    return isinstance(part, str) and bool(re.match(r"^[a-z-]+\[.*\]$", part))


def _node_at(node: yaml.Node | None, loc: list[Any]) -> yaml.Node | None:
    """The deepest YAML node along `loc` (its mark is where the user must look)."""
    key_node: yaml.Node | None = None
    for part in loc:
        child = None
        if part == "[key]":  # the mapping key itself is wrong (e.g. an unknown signal type)
            return key_node
        if isinstance(node, yaml.MappingNode):
            key_node, child = next(
                ((key, value) for key, value in node.value if key.value == part), (None, None)
            )
            if child is None:  # a missing key: point at the mapping that lacks it
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            return node
        node = child
    return node
