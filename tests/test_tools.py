"""``@function_tool``: schemas from signatures, docstrings, and argument validation."""

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional, Union

import pytest

import trio_playout as tp
from trio_playout import FunctionTool, RunContext, function_tool
from trio_playout._exceptions import (
    InvalidToolArguments,
    PlayoutError,
    ToolDefinitionError,
    ToolError,
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


def props(tool: FunctionTool) -> dict[str, Any]:
    return tool.parameters_schema["properties"]


# --------------------------------------------------------------------------- schemas

def test_bare_decorator_builds_a_function_tool() -> None:
    @function_tool
    async def lookup(ctx: RunContext, city: str) -> str:
        """Look up the weather."""
        return city

    assert isinstance(lookup, FunctionTool)
    assert lookup.name == "lookup"
    assert lookup.description == "Look up the weather."
    assert lookup.interruptible is True
    assert lookup.fn.__name__ == "lookup"
    assert "lookup" in repr(lookup)
    assert lookup.parameters_schema == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }


def test_to_schema() -> None:
    @function_tool
    async def t(ctx: RunContext, x: int) -> None:
        """Do it."""

    assert t.to_schema() == {"name": "t", "description": "Do it.", "parameters": t.parameters_schema}
    json.dumps(t.to_schema())  # serialisable as an LLM needs


def test_public_names() -> None:
    assert tp.function_tool is function_tool
    assert tp.FunctionTool is FunctionTool
    assert tp.InvalidToolArguments is InvalidToolArguments
    assert tp.ToolDefinitionError is ToolDefinitionError


def test_simple_types() -> None:
    @function_tool
    async def t(ctx: RunContext, s: str, i: int, f: float, b: bool) -> None:
        pass

    assert props(t) == {
        "s": {"type": "string"},
        "i": {"type": "integer"},
        "f": {"type": "number"},
        "b": {"type": "boolean"},
    }
    assert t.parameters_schema["required"] == ["s", "i", "f", "b"]


def test_containers() -> None:
    @function_tool
    async def t(ctx: RunContext, a: list[int], b: list, c: dict, d: dict[str, int],
                e: tuple[str, ...], f: list[list[str]]) -> None:
        pass

    assert props(t) == {
        "a": {"type": "array", "items": {"type": "integer"}},
        "b": {"type": "array"},
        "c": {"type": "object"},
        "d": {"type": "object", "additionalProperties": {"type": "integer"}},
        "e": {"type": "array", "items": {"type": "string"}},
        "f": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
    }


def test_literal_and_enum() -> None:
    @function_tool
    async def t(ctx: RunContext, mode: Literal["fast", "slow"], color: Color, level: Level) -> None:
        pass

    assert props(t) == {
        "mode": {"enum": ["fast", "slow"]},
        "color": {"enum": ["red", "green"]},
        "level": {"enum": [1, 2]},
    }


def test_optional_and_unions() -> None:
    @function_tool
    async def t(ctx: RunContext, a: Optional[int], b: str | None = None,  # noqa: UP045
                c: Union[int, str] = 1, d: int | str | None = None) -> None:  # noqa: UP007
        pass

    p = props(t)
    assert p["a"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert p["b"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert p["c"] == {"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 1}
    assert p["d"] == {"anyOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"type": "null"}],
                      "default": None}
    assert t.parameters_schema["required"] == ["a"]  # Optional without default is still required


def test_defaults_make_parameters_optional() -> None:
    @function_tool
    async def t(ctx: RunContext, a: int, b: int = 3, c: str = "x", d: float = 0.5, e: bool = False,
                f: list[int] = [], g: Color = Color.RED) -> None:  # noqa: B006
        pass

    p = props(t)
    assert t.parameters_schema["required"] == ["a"]
    assert "default" not in p["a"]
    assert p["b"]["default"] == 3
    assert p["c"]["default"] == "x"
    assert p["d"]["default"] == 0.5
    assert p["e"]["default"] is False
    # non-scalar defaults are not advertised (the Python default still applies)
    assert "default" not in p["f"]
    assert "default" not in p["g"]


def test_keyword_only_parameters_are_fine() -> None:
    @function_tool
    async def t(ctx: RunContext, *, a: int, b: int = 0) -> None:
        pass

    assert list(props(t)) == ["a", "b"]
    assert t.parameters_schema["required"] == ["a"]


def test_unannotated_and_any_parameters_accept_anything() -> None:
    @function_tool
    async def t(ctx, a, b: Any) -> None:  # type: ignore[no-untyped-def]
        pass

    assert props(t) == {"a": {}, "b": {}}
    assert t.parse_arguments({"a": [1], "b": {"x": None}}) == {"a": [1], "b": {"x": None}}


def test_no_parameters_besides_ctx() -> None:
    @function_tool
    async def ping(ctx: RunContext) -> str:
        return "pong"

    assert ping.parameters_schema == {"type": "object", "properties": {}, "required": [],
                                      "additionalProperties": False}
    assert ping.parse_arguments("") == {}
    assert ping.parse_arguments("  ") == {}
    assert ping.parse_arguments("{}") == {}


def test_string_annotations_are_resolved() -> None:
    @function_tool
    async def t(ctx: "RunContext", a: "int", b: "list[str]") -> None:
        pass

    assert props(t) == {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}}}


# --------------------------------------------------------------------------- docstrings

def test_docstring_args_become_descriptions() -> None:
    @function_tool
    async def book(ctx: RunContext, city: str, nights: int = 1, smoking: bool = False) -> None:
        """Book a hotel room.

        Use this when the user asks for a room.

        Args:
            city: The city to book in.
            nights (int): How many nights,
                at least one.
            smoking: Whether smoking is allowed.
        """

    assert book.description == "Book a hotel room.\n\nUse this when the user asks for a room."
    p = props(book)
    assert p["city"]["description"] == "The city to book in."
    assert p["nights"]["description"] == "How many nights, at least one."
    assert p["smoking"]["description"] == "Whether smoking is allowed."
    assert p["nights"]["type"] == "integer"
    assert p["nights"]["default"] == 1


@pytest.mark.parametrize("header", ["Args:", "Arguments:", "Parameters:"])
def test_docstring_section_headers(header: str) -> None:
    async def t(ctx: RunContext, x: int) -> None:
        pass

    t.__doc__ = f"Do t.\n\n{header}\n    x: the x\n"
    tool = function_tool(t)
    assert tool.description == "Do t."
    assert props(tool)["x"]["description"] == "the x"


def test_docstring_without_args_section() -> None:
    @function_tool
    async def t(ctx: RunContext, x: int) -> None:
        """Just a description.

        Second paragraph.
        """

    assert t.description == "Just a description.\n\nSecond paragraph."
    assert "description" not in props(t)["x"]


def test_no_docstring_gives_empty_description() -> None:
    @function_tool
    async def t(ctx: RunContext) -> None:
        pass

    assert t.description == ""


def test_docs_for_unknown_parameters_are_ignored() -> None:
    @function_tool
    async def t(ctx: RunContext, x: int) -> None:
        """Do t.

        Args:
            ctx: the run context
            y: not a parameter
            x: the x
        """

    assert props(t) == {"x": {"type": "integer", "description": "the x"}}


def test_returns_section_does_not_leak_into_last_parameter() -> None:
    @function_tool
    async def t(ctx: RunContext, a: int, b: str) -> str:
        """Do t.

        Args:
            a: the a
            b: the b

        Returns:
            the answer
        """
        return b

    assert props(t)["a"]["description"] == "the a"
    assert props(t)["b"]["description"] == "the b"


# --------------------------------------------------------------------------- options

def test_name_and_description_overrides() -> None:
    @function_tool(name="get-weather_2", description="Weather now.")
    async def weather(ctx: RunContext, city: str) -> None:
        """Docstring description.

        Args:
            city: the city
        """

    assert weather.name == "get-weather_2"
    assert weather.description == "Weather now."
    assert props(weather)["city"]["description"] == "the city"  # Args still parsed
    assert weather.to_schema()["name"] == "get-weather_2"


def test_empty_description_override_is_kept() -> None:
    @function_tool(description="")
    async def t(ctx: RunContext) -> None:
        """Docstring."""

    assert t.description == ""


@pytest.mark.parametrize("interruptible", [True, False])
def test_interruptible_flag(interruptible: bool) -> None:
    @function_tool(interruptible=interruptible)
    async def t(ctx: RunContext) -> None:
        pass

    assert t.interruptible is interruptible
    assert f"interruptible={interruptible}" in repr(t)


def test_decorator_with_options_and_no_options_call() -> None:
    async def t(ctx: RunContext) -> None:
        pass

    assert function_tool()(t).name == "t"
    assert function_tool(t).interruptible is True


# --------------------------------------------------------------------------- definition errors

def test_tool_definition_error_is_a_type_error_and_playout_error() -> None:
    assert issubclass(ToolDefinitionError, TypeError)
    assert issubclass(ToolDefinitionError, PlayoutError)


def test_sync_function_is_rejected() -> None:
    def t(ctx: RunContext) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="async"):
        function_tool(t)


def test_lambda_and_async_generator_are_rejected() -> None:
    async def gen(ctx: RunContext):  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(ToolDefinitionError, match="async"):
        function_tool(gen)
    with pytest.raises(ToolDefinitionError):
        function_tool(lambda ctx: None)  # type: ignore[arg-type]


def test_tool_without_context_parameter() -> None:
    # Issue 7 item 8: livekit allows tools without a context; the first parameter
    # is then an ordinary argument, never the RunContext.
    @function_tool
    async def get_time(city: str) -> str:
        return city

    assert get_time.context_parameter is None
    assert props(get_time) == {"city": {"type": "string"}}
    assert get_time.parameters_schema["required"] == ["city"]

    @function_tool
    async def t() -> None:
        pass

    assert t.context_parameter is None and props(t) == {}


def test_context_found_by_annotation_in_any_position() -> None:
    @function_tool
    async def a(city: str, ctx: RunContext) -> None:
        pass

    @function_tool
    async def b(city: str, *, run: RunContext) -> None:
        pass

    @function_tool
    async def c(run: "RunContext", /, city: str) -> None:
        pass

    assert (a.context_parameter, b.context_parameter, c.context_parameter) == ("ctx", "run", "run")
    for tool in (a, b, c):
        assert props(tool) == {"city": {"type": "string"}}
        # The LLM cannot pass something in place of the context.
        expect_invalid({"city": "x", tool.context_parameter: 1}, "no parameter(s)", tool=tool)


def test_unannotated_first_ctx_or_context_is_the_context() -> None:
    @function_tool
    async def a(ctx, city: str) -> None:  # type: ignore[no-untyped-def]
        pass

    @function_tool
    async def b(context, city: str) -> None:  # type: ignore[no-untyped-def]
        pass

    assert (a.context_parameter, b.context_parameter) == ("ctx", "context")
    assert props(a) == props(b) == {"city": {"type": "string"}}


def test_other_unannotated_first_parameter_is_an_argument() -> None:
    @function_tool
    async def t(c, city: str) -> None:  # type: ignore[no-untyped-def]
        pass

    assert t.context_parameter is None
    assert list(props(t)) == ["c", "city"]


def test_two_context_parameters_are_rejected() -> None:
    async def t(a: RunContext, b: RunContext) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="more than one RunContext"):
        function_tool(t)


def test_positional_only_context_must_come_first() -> None:
    async def t(x: int, ctx: RunContext, /) -> None:
        pass

    with pytest.raises(ToolDefinitionError):
        function_tool(t)


async def test_call_passes_the_context_only_where_declared() -> None:
    got: list[tuple[str, Any]] = []
    marker: Any = object()

    @function_tool
    async def none(city: str) -> None:
        got.append(("none", city))

    @function_tool
    async def kw(city: str, *, ctx: RunContext) -> None:
        got.append(("kw", (city, ctx)))

    @function_tool
    async def pos(ctx: RunContext, /, city: str) -> None:
        got.append(("pos", (city, ctx)))

    for tool in (none, kw, pos):
        await tool.call(marker, tool.parse_arguments({"city": "Paris"}))
    assert got == [("none", "Paris"), ("kw", ("Paris", marker)), ("pos", ("Paris", marker))]


def test_star_args_first_is_rejected() -> None:
    async def t(*args: Any) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="'args'"):
        function_tool(t)


def test_var_positional_is_rejected() -> None:
    async def t(ctx: RunContext, *args: int) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="'args'"):
        function_tool(t)


def test_var_keyword_is_rejected() -> None:
    async def t(ctx: RunContext, **kwargs: int) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="'kwargs'"):
        function_tool(t)


def test_positional_only_parameter_is_rejected() -> None:
    async def t(ctx: RunContext, x: int, /) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="'x'"):
        function_tool(t)


@pytest.mark.parametrize("name", ["", "has space", "dot.name", "x" * 65, "ünicode", "semi;colon"])
def test_bad_names_are_rejected(name: str) -> None:
    async def t(ctx: RunContext) -> None:
        pass

    if name == "":
        # an empty override falls back to the function's name
        assert function_tool(name=name)(t).name == "t"
        return
    with pytest.raises(ToolDefinitionError, match="must match"):
        function_tool(name=name)(t)


def test_longest_allowed_name() -> None:
    async def t(ctx: RunContext) -> None:
        pass

    assert function_tool(name="x" * 64)(t).name == "x" * 64


class Custom:
    pass


@pytest.mark.parametrize("annotation", [bytes, set[int], Custom, complex, frozenset, list[bytes],
                                        Optional[Custom], tuple])  # noqa: UP045
def test_unsupported_types_are_rejected(annotation: Any) -> None:
    async def t(ctx: RunContext, x: int) -> None:
        pass

    t.__annotations__["x"] = annotation
    with pytest.raises(ToolDefinitionError, match=r"t\.x: unsupported parameter type"):
        function_tool(t)


def test_unresolvable_annotation_is_rejected() -> None:
    async def t(ctx: RunContext, x: "NoSuchType") -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(ToolDefinitionError, match="cannot resolve"):
        function_tool(t)


def test_abstract_sequence_and_mapping_are_supported() -> None:
    @function_tool
    async def t(ctx: RunContext, xs: Sequence[int], m: Mapping[str, int]) -> None:
        pass

    assert props(t) == {"xs": {"type": "array", "items": {"type": "integer"}},
                        "m": {"type": "object", "additionalProperties": {"type": "integer"}}}


# --------------------------------------------------------------------------- parse_arguments

@function_tool
async def everything(
    ctx: RunContext,
    s: str,
    i: int = 0,
    f: float = 0.0,
    b: bool = False,
    ints: list[int] = [],  # noqa: B006
    d: dict = {},  # noqa: B006
    mode: Literal["fast", "slow"] = "fast",
    color: Color = Color.RED,
    level: Level = Level.LOW,
    maybe: Optional[int] = None,  # noqa: UP045
) -> None:
    """Takes everything."""


def test_invalid_tool_arguments_tree() -> None:
    assert issubclass(InvalidToolArguments, ToolError)
    assert issubclass(InvalidToolArguments, PlayoutError)


def test_valid_json_string() -> None:
    got = everything.parse_arguments(
        '{"s": "hi", "i": 3, "f": 1.5, "b": true, "ints": [1, 2], "d": {"k": [1]}, "mode": "slow", '
        '"maybe": 7}'
    )
    assert got == {"s": "hi", "i": 3, "f": 1.5, "b": True, "ints": [1, 2], "d": {"k": [1]},
                   "mode": "slow", "maybe": 7}


def test_valid_mapping_is_copied() -> None:
    args = {"s": "hi"}
    got = everything.parse_arguments(args)
    assert got == {"s": "hi"}
    got["s"] = "changed"
    assert args == {"s": "hi"}


def test_defaults_are_not_filled_in() -> None:
    # the Python defaults apply when the tool is called with these keywords
    assert everything.parse_arguments('{"s": ""}') == {"s": ""}


def test_enum_values_are_converted() -> None:
    got = everything.parse_arguments({"s": "x", "color": "green", "level": 2})
    assert got["color"] is Color.GREEN
    assert got["level"] is Level.HIGH


def test_optional_none_is_accepted() -> None:
    assert everything.parse_arguments('{"s": "x", "maybe": null}') == {"s": "x", "maybe": None}


def test_int_is_a_number() -> None:
    got = everything.parse_arguments('{"s": "x", "f": 2}')
    assert got["f"] == 2


def expect_invalid(args: Any, *fragments: str, tool: FunctionTool = everything) -> InvalidToolArguments:
    with pytest.raises(InvalidToolArguments) as info:
        tool.parse_arguments(args)
    msg = str(info.value)
    assert tool.name in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert isinstance(info.value, ToolError)
    assert isinstance(info.value, PlayoutError)
    return info.value


@pytest.mark.parametrize("text", ['{"s": ', "{'s': 'x'}", "nope", '{"s": "x"} trailing'])
def test_invalid_json(text: str) -> None:
    err = expect_invalid(text, "not valid JSON")
    assert err.__cause__ is None
    assert err.__suppress_context__


@pytest.mark.parametrize("text", ["[1, 2]", '"s"', "3", "null", "true"])
def test_non_object_json(text: str) -> None:
    expect_invalid(text, "must be a JSON object")


def test_unknown_parameters_are_named() -> None:
    expect_invalid({"s": "x", "zeta": 1, "alpha": 2}, "no parameter(s) alpha, zeta")


def test_missing_required_parameter_is_named() -> None:
    expect_invalid("{}", "missing required parameter(s) s")
    expect_invalid({"i": 1}, "missing required parameter(s) s")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ({"s": 1}, ("'s'", "type string", "int")),
        ({"s": None}, ("'s'", "type string")),
        ({"s": "x", "i": True}, ("'i'", "type integer", "bool")),  # bool is not int
        ({"s": "x", "i": 1.5}, ("'i'", "type integer", "float")),
        ({"s": "x", "i": "1"}, ("'i'", "type integer", "str")),
        ({"s": "x", "f": "1.5"}, ("'f'", "type number")),
        ({"s": "x", "f": False}, ("'f'", "type number", "bool")),
        ({"s": "x", "b": 1}, ("'b'", "type boolean")),
        ({"s": "x", "b": "true"}, ("'b'", "type boolean")),
        ({"s": "x", "ints": 1}, ("'ints'", "type array")),
        ({"s": "x", "ints": [1, "2"]}, ("'ints'", "item 1", "type integer")),
        ({"s": "x", "ints": [1, True]}, ("'ints'", "item 1", "type integer", "bool")),
        ({"s": "x", "d": []}, ("'d'", "type object")),
        ({"s": "x", "mode": "medium"}, ("'mode'", "must be one of", "medium")),
        ({"s": "x", "color": "blue"}, ("'color'", "must be one of", "blue")),
        ({"s": "x", "color": "RED"}, ("'color'", "must be one of")),  # names are not values
        ({"s": "x", "level": 3}, ("'level'", "must be one of")),
        ({"s": "x", "maybe": "7"}, ("'maybe'", "does not match any allowed type")),
        ({"s": "x", "maybe": 1.5}, ("'maybe'", "does not match any allowed type")),
    ],
)
def test_wrong_types(args: dict[str, Any], fragments: tuple[str, ...]) -> None:
    expect_invalid(args, *fragments)
    expect_invalid(json.dumps(args), *fragments)


def test_nested_list_item_types() -> None:
    @function_tool
    async def grid(ctx: RunContext, rows: list[list[int]]) -> None:
        pass

    assert grid.parse_arguments('{"rows": [[1], [], [2, 3]]}') == {"rows": [[1], [], [2, 3]]}
    expect_invalid('{"rows": [[1], [2, "x"]]}', "item 1", "item 1", tool=grid)
    expect_invalid('{"rows": [1]}', "item 0", "type array", tool=grid)


def test_union_without_none() -> None:
    @function_tool
    async def t(ctx: RunContext, v: int | str) -> None:
        pass

    assert t.parse_arguments({"v": 1}) == {"v": 1}
    assert t.parse_arguments({"v": "1"}) == {"v": "1"}
    expect_invalid({"v": None}, "'v'", "does not match any allowed type", tool=t)
    expect_invalid({"v": True}, "'v'", "does not match", tool=t)


def test_first_problem_is_reported_for_missing_before_types() -> None:
    expect_invalid({"i": "bad"}, "missing required parameter(s) s")


def test_optional_enum_is_converted() -> None:
    @function_tool
    async def t(ctx: RunContext, color: Optional[Color] = None) -> None:  # noqa: UP045
        pass

    assert t.parse_arguments({"color": None}) == {"color": None}
    assert t.parse_arguments({"color": "red"})["color"] is Color.RED


def test_bool_does_not_match_integer_literal() -> None:
    @function_tool
    async def t(ctx: RunContext, n: Literal[1, 2]) -> None:
        pass

    expect_invalid({"n": True}, "'n'", tool=t)


# --------------------------------------------------------------------------- issue 7 item 1

def test_enums_inside_containers_and_unions_are_converted() -> None:
    @function_tool
    async def paint(ctx: RunContext, colors: list[Color], by_name: dict[str, Color],
                    one: Color | int, maybe: Optional[list[Level]] = None,  # noqa: UP045
                    grid: Sequence[Sequence[Color]] = ()) -> None:
        pass

    assert props(paint)["colors"] == {"type": "array", "items": {"enum": ["red", "green"]}}
    assert props(paint)["by_name"] == {"type": "object", "additionalProperties": {"enum": ["red", "green"]}}
    got = paint.parse_arguments('{"colors": ["red", "green"], "by_name": {"a": "green"}, "one": "red", '
                                '"maybe": [2], "grid": [["red"], []]}')
    assert got == {"colors": [Color.RED, Color.GREEN], "by_name": {"a": Color.GREEN}, "one": Color.RED,
                   "maybe": [Level.HIGH], "grid": [[Color.RED], []]}
    assert paint.parse_arguments({"colors": [], "by_name": {}, "one": 7, "maybe": None}) == {
        "colors": [], "by_name": {}, "one": 7, "maybe": None}
    expect_invalid({"colors": ["blue"], "by_name": {}, "one": 1}, "'colors'", "item 0", "must be one of",
                   tool=paint)
    expect_invalid({"colors": [], "by_name": {"a": "blue"}, "one": 1}, "'by_name'", "value of 'a'",
                   tool=paint)
    expect_invalid({"colors": [], "by_name": {}, "one": "blue"}, "'one'", "does not match", tool=paint)


def test_a_conversion_failure_is_an_invalid_arguments_error() -> None:
    class Odd(enum.Enum):
        A = "a"

        @classmethod
        def _missing_(cls, value: object) -> "Odd":
            raise TypeError("odd")

    @function_tool
    async def t(ctx: RunContext, o: list[Odd]) -> None:
        pass

    t.parameters_schema["properties"]["o"]["items"]["enum"].append("b")  # a schema wider than the type
    expect_invalid({"o": ["b"]}, "'o'", "cannot be converted", tool=t)
