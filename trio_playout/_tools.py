"""Function tools: ``@function_tool``, JSON schemas from signatures, argument checks.

A tool is ``async def tool(ctx: RunContext, **arguments)``; the context is optional.
The decorator reads the signature and docstring to build what an LLM needs: name,
description and a JSON schema of the parameters. The same schema is used to check
what the LLM sends, and the checked JSON values are then converted to the annotated
Python types (enum members, also inside lists, dicts and unions), so a malformed
call becomes one error output the LLM can read, never a crash.

The context parameter is the one annotated :class:`RunContext` (any position, by
keyword unless it is positional-only and first), or else an unannotated first
parameter named ``ctx`` or ``context``. It is never part of the schema; a tool
without one is called without it.

What the LLM reads when a call fails: the message of a :class:`ToolError` the tool
raised, or of the argument check; any other exception gives a generic message (the
exception may hold secrets) and is logged with its traceback.
"""

from __future__ import annotations

import collections.abc as abc
import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar, Union, overload

from ._context import RunContext
from ._exceptions import InvalidToolArguments, ToolDefinitionError

__all__ = ["FunctionTool", "function_tool"]

ToolFn = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=ToolFn)

_SIMPLE: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _schema_for(tp: Any, where: str) -> dict[str, Any]:
    if tp is inspect.Parameter.empty or tp is Any:
        return {}
    if tp in _SIMPLE:
        return {"type": _SIMPLE[tp]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        inner = [_schema_for(a, where) for a in members]
        schema: dict[str, Any] = inner[0] if len(inner) == 1 else {"anyOf": inner}
        if len(members) < len(args):
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema
    if tp is list or origin in (list, tuple, abc.Sequence):
        item = args[0] if (args and args[-1] is not Ellipsis) or len(args) == 2 else None
        return {"type": "array", **({"items": _schema_for(item, where)} if item is not None else {})}
    if tp is dict or origin in (dict, abc.Mapping):
        value_schema = _schema_for(args[1], where) if len(args) == 2 else {}
        return {"type": "object", **({"additionalProperties": value_schema} if value_schema else {})}
    raise ToolDefinitionError(f"{where}: unsupported parameter type {tp!r}")


Converter = Callable[[Any], Any]


def _converter_for(tp: Any) -> Converter | None:
    """How to turn a JSON value that passed the schema check into ``tp``; None: as is.

    It follows :func:`_schema_for` type by type, so every value the schema admits
    converts: enum members are built from their values wherever they sit (a list
    item, a dict value, a union member).
    """
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_type = tp
        return lambda value: enum_type(value)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        members = [(m, _schema_for(m, "?"), _converter_for(m)) for m in args if m is not type(None)]
        if all(conv is None for _, _, conv in members):
            return None

        def convert_union(value: Any) -> Any:
            if value is None:
                return None
            for _, schema, conv in members:
                if _check(value, schema) is None:  # the first member that admits it
                    return value if conv is None else conv(value)
            return value

        return convert_union
    if origin in (list, tuple, abc.Sequence) and args:
        item = args[0] if (args[-1] is not Ellipsis) or len(args) == 2 else None
        item_conv = _converter_for(item) if item is not None else None
        if item_conv is None:
            return None
        return lambda value: [item_conv(v) for v in value]
    if origin in (dict, abc.Mapping) and len(args) == 2:
        value_conv = _converter_for(args[1])
        if value_conv is None:
            return None
        return lambda value: {k: value_conv(v) for k, v in value.items()}
    return None


def _param_docs(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into the description and per-argument texts."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            head, rest = lines[:i], lines[i + 1 :]
            break
    else:
        return doc.strip(), {}
    params: dict[str, str] = {}
    current: str | None = None
    for line in rest:
        m = re.match(r"^\s+(\w+)\s*(?:\([^)]*\))?:\s*(.*)$", line)
        if line.strip() and not line[0].isspace():
            break  # the next section (Returns:, Raises:, ...)
        if m and (current is None or len(line) - len(line.lstrip()) <= 4):
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif current and line.strip():
            params[current] += " " + line.strip()
        elif not line.strip() and current:
            continue
        elif line.strip():
            break
    return "\n".join(head).strip(), params


class FunctionTool:
    """A tool the LLM can call. Build it with :func:`function_tool`.

    ``interruptible=False`` protects every call of the tool: an interrupt of its
    speech, forced or not, never cancels it; it runs to completion and its result is
    recorded. A call can also protect itself with ``ctx.disallow_interruptions()``.

    :attr:`context_parameter` names the parameter that receives the
    :class:`RunContext` (None: the tool takes none); call the tool with :meth:`call`.
    """

    def __init__(self, fn: ToolFn, *, name: str | None = None, description: str | None = None,
                 interruptible: bool = True) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise ToolDefinitionError(f"{fn!r} must be an async function: async def tool(ctx, ...)")
        self.fn = fn
        self.name = name or fn.__name__
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ToolDefinitionError(f"tool name {self.name!r} must match [A-Za-z0-9_-]{{1,64}}")
        self.interruptible = interruptible
        doc_description, param_docs = _param_docs(inspect.getdoc(fn) or "")
        self.description = description if description is not None else doc_description
        self.context_parameter: str | None = None
        self._context_positional = False
        self._converters: dict[str, Converter] = {}
        self.parameters_schema = self._build_schema(fn, param_docs)

    def __repr__(self) -> str:
        return f"<FunctionTool {self.name} interruptible={self.interruptible}>"

    @staticmethod
    def _hints(fn: ToolFn) -> dict[str, Any]:
        try:
            return typing.get_type_hints(fn)
        except Exception as exc:
            raise ToolDefinitionError(f"cannot resolve the annotations of {fn.__name__}: {exc}") from exc

    def _find_context(self, params: list[inspect.Parameter],
                      hints: dict[str, Any]) -> inspect.Parameter | None:
        annotated = [p for p in params if _is_context_type(hints.get(p.name, p.annotation))]
        if len(annotated) > 1:
            names = ", ".join(p.name for p in annotated)
            raise ToolDefinitionError(f"{self.name}: more than one RunContext parameter ({names})")
        if annotated:
            return annotated[0]
        first = params[0] if params else None
        if (first is not None and first.name in ("ctx", "context") and first.annotation is first.empty
                and first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD)):
            return first
        return None

    def _build_schema(self, fn: ToolFn, docs: dict[str, str]) -> dict[str, Any]:
        params = list(inspect.signature(fn).parameters.values())
        hints = self._hints(fn)
        ctx = self._find_context(params, hints)
        if ctx is not None:
            if ctx.kind is ctx.POSITIONAL_ONLY and ctx is not params[0]:
                raise ToolDefinitionError(f"{self.name}: a positional-only RunContext must come first")
            if ctx.kind in (ctx.VAR_POSITIONAL, ctx.VAR_KEYWORD):
                raise ToolDefinitionError(f"{self.name}: the RunContext must be a named parameter")
            self.context_parameter = ctx.name
            self._context_positional = ctx.kind is ctx.POSITIONAL_ONLY
        properties: dict[str, Any] = {}
        required: list[str] = []
        for p in params:
            if p is ctx:
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise ToolDefinitionError(f"{self.name}: parameter {p.name!r} must be passable by keyword")
            hint = hints.get(p.name, p.annotation)
            schema = dict(_schema_for(hint, f"{self.name}.{p.name}"))
            converter = _converter_for(hint)
            if converter is not None:
                self._converters[p.name] = converter
            if p.name in docs:
                schema["description"] = docs[p.name]
            if p.default is p.empty:
                required.append(p.name)
            elif isinstance(p.default, (str, int, float, bool, type(None))):
                schema["default"] = p.default
            properties[p.name] = schema
        return {"type": "object", "properties": properties, "required": required,
                "additionalProperties": False}

    def to_schema(self) -> dict[str, Any]:
        """The tool as LLM providers describe functions: name, description, parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters_schema}

    def parse_arguments(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Decode, check and convert the LLM's arguments; raise :class:`InvalidToolArguments`.

        The result holds the annotated Python values (enum members where the
        signature has enums, also inside containers and unions), ready for :meth:`call`.
        """
        if isinstance(arguments, str):
            try:
                decoded = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidToolArguments(f"arguments of {self.name} are not valid JSON: {exc}") from None
        else:
            decoded = dict(arguments)
        if not isinstance(decoded, dict):
            raise InvalidToolArguments(f"arguments of {self.name} must be a JSON object")
        props = self.parameters_schema["properties"]
        unknown = sorted(set(decoded) - set(props))
        if unknown:
            raise InvalidToolArguments(f"{self.name} has no parameter(s) {', '.join(unknown)}")
        missing = [p for p in self.parameters_schema["required"] if p not in decoded]
        if missing:
            raise InvalidToolArguments(f"{self.name} is missing required parameter(s) {', '.join(missing)}")
        for key, value in decoded.items():
            problem = _check(value, props[key])
            if problem:
                raise InvalidToolArguments(f"{self.name}: parameter {key!r} {problem}")
            converter = self._converters.get(key)
            if converter is not None:
                try:
                    decoded[key] = converter(value)
                except (TypeError, ValueError) as exc:  # the check passed, so a schema gap
                    raise InvalidToolArguments(
                        f"{self.name}: parameter {key!r} cannot be converted: {exc}") from None
        return decoded

    def call(self, ctx: RunContext, arguments: Mapping[str, Any]) -> Awaitable[Any]:
        """Call the tool with parsed ``arguments``, passing ``ctx`` only if it takes one."""
        if self.context_parameter is None:
            return self.fn(**arguments)
        if self._context_positional:
            return self.fn(ctx, **arguments)
        return self.fn(**{self.context_parameter: ctx}, **arguments)


def _is_context_type(annotation: Any) -> bool:
    candidate = typing.get_origin(annotation) or annotation
    return isinstance(candidate, type) and issubclass(candidate, RunContext)


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _check(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Why ``value`` does not match ``schema`` (the subset the decorator emits), or None."""
    if "anyOf" in schema:
        if any(_check(value, s) is None for s in schema["anyOf"]):
            return None
        return f"does not match any allowed type (got {value!r})"
    if "enum" in schema and not any(
        value == allowed and isinstance(value, bool) == isinstance(allowed, bool)
        for allowed in schema["enum"]
    ):
        return f"must be one of {schema['enum']!r} (got {value!r})"
    kind = schema.get("type")
    if kind is not None and not _JSON_TYPES[kind](value):
        return f"must be of type {kind} (got {type(value).__name__})"
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            problem = _check(item, schema["items"])
            if problem:
                return f"item {i} {problem}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        for key, item in value.items():
            problem = _check(item, schema["additionalProperties"])
            if problem:
                return f"value of {key!r} {problem}"
    return None


@overload
def function_tool(fn: F, /) -> FunctionTool: ...
@overload
def function_tool(
    *, name: str | None = None, description: str | None = None, interruptible: bool = True
) -> Callable[[F], FunctionTool]: ...
def function_tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    interruptible: bool = True,
) -> FunctionTool | Callable[[F], FunctionTool]:
    """Turn ``async def tool(ctx: RunContext, **arguments)`` into a :class:`FunctionTool`.

    Use bare (``@function_tool``) or with options
    (``@function_tool(interruptible=False)``). The docstring is the description the
    LLM reads; an ``Args:`` section describes each parameter. The context parameter
    is optional (see the module docstring for how it is found).

    What the tool returns becomes the call's output. To tell the LLM why a call
    failed, raise :class:`~trio_playout.ToolError` with the message it should read;
    any other exception reaches the LLM only as a generic "internal error" message
    (exceptions can carry secrets) and is logged with its traceback.
    """
    if fn is not None:
        return FunctionTool(fn, name=name, description=description, interruptible=interruptible)

    def decorate(f: F) -> FunctionTool:
        return FunctionTool(f, name=name, description=description, interruptible=interruptible)

    return decorate
