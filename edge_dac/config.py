"""Typed, validated YAML configs.

Every config section is a pydantic model with ``extra="forbid"`` so that a typo is an error,
not a silently ignored key; a key given twice in one mapping is refused too (plain YAML would keep
the last). Validation errors become one ``ConfigError`` line naming the file, the key path and
what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from edge_dac.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _describe(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The allowed keys at ``loc`` (for 'unknown key' errors)."""
    cls: Any = model_cls
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return ""
        annotation = field.annotation
        cls = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if cls is None:
            return ""
    fields = getattr(cls, "model_fields", None)
    return ", ".join(sorted(fields)) if fields else ""


def format_validation_error(source: str, model_cls: type[BaseModel], error: ValidationError) -> str:
    """One line: ``source: key 'a.b': problem (allowed: ...)`` for the first error, plus a count."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc) or "<root>"
    if first["type"] == "extra_forbidden":
        allowed = _describe(model_cls, loc)
        message = f"{source}: unknown key '{key}'" + (f" (allowed keys: {allowed})" if allowed else "")
    else:
        message = f"{source}: key '{key}': {first['msg'].removeprefix('Value error, ')}"  # a validator's own words
        if first.get("input") is not None and first["type"] != "missing":
            message += f" (got {first['input']!r})"
    more = len(error.errors()) - 1
    if more:
        message += f"; and {more} more problem{'s' if more > 1 else ''}"
    return message


def validate_config(data: Any, model_cls: type[ModelT], source: str = "<config>") -> ModelT:
    """Validate a parsed mapping against ``model_cls``; raise ``ConfigError`` with one line."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values at the top level")
    try:
        return model_cls.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(source, model_cls, error)) from None


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(f"duplicate key {key!r} at line {line} (first at line {first_line})")
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping: plain YAML keeps the last
    value without a word, so the first (often the one a person edited) would be silently ignored."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor`` is not a duplicate
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(key, line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: the base class reports it
                pass
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing or malformed file, or a key given twice, is a ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (pass an existing YAML file)")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except DuplicateKeyError as error:
        raise ConfigError(f"{path}: {error}; keep one of them") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None


def load_config(path: str | Path, model_cls: type[ModelT]) -> ModelT:
    """Load a YAML file into a validated ``model_cls`` instance."""
    return validate_config(load_yaml(path), model_cls, source=str(path))
