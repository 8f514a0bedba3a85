"""The one error catalogue (errors.json) against every place that answers an error: the Lua modules
(lua/**/*.lua: each call of an errors.lua entry point, and the codes of nginx's own errors), the
control plane (control_plane/**/*.py: each ApiError, and the Werkzeug status map), and README.md's
table. A code raised must be in the catalogue, with the placeholders its template names; a code
in the catalogue must be raised somewhere; the README lists each one, with its status."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from control_plane.api import HTTP_ERRORS
from control_plane.api.errors import ApiError, render

REPO = Path(__file__).resolve().parent.parent
CATALOGUE = {code: entry for code, entry in json.loads((REPO / "errors.json").read_text()).items()
             if not code.startswith("_")}
ERRORS_LUA = REPO / "lua" / "tollgate" / "errors.lua"
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")


def placeholders(code: str) -> set[str]:
    return set(PLACEHOLDER.findall(CATALOGUE[code]["message"]))


# --- Lua -----------------------------------------------------------------------------------------

LUA_TOKEN = re.compile(r"""(?P<comment>--\[(?P<ceq>=*)\[.*?\](?P=ceq)\]|--[^\n]*)
                          |\[(?P<seq>=*)\[.*?\](?P=seq)\]|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'""",
                       re.DOTALL | re.VERBOSE)
LUA_STRING = re.compile(r""""((?:\\.|[^"\\])*)"|'((?:\\.|[^'\\])*)'""")
OPENERS, CLOSERS = "([{", ")]}"


def lua_code(path: Path) -> str:
    """The file without its comments (newlines kept, so offsets still give line numbers)."""
    return LUA_TOKEN.sub(lambda m: "\n" * m.group(0).count("\n") if m.group("comment") else m.group(0),
                         path.read_text())


def lua_arguments(text: str, start: int) -> list[str]:
    """The top-level arguments of the call whose '(' is just before `start`."""
    args, depth, begin, i = [], 0, start, start
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = LUA_STRING.match(text, i).end()
            continue
        if c in OPENERS:
            depth += 1
        elif c in CLOSERS:
            if depth == 0:
                args.append(text[begin:i].strip())
                return [a for a in args if a]
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[begin:i].strip())
            begin = i + 1
        i += 1
    raise AssertionError(f"unclosed call at offset {start}")


def lua_literals(expression: str) -> list[str]:
    return [dq or sq for dq, sq in LUA_STRING.findall(expression)]


def lua_code_literals(expression: str) -> list[str]:
    """The strings a code expression may yield: `why == "key_limit" and "a" or "b"` yields a, b."""
    compared = re.compile(rf"(?:[=~]=\s*(?:{LUA_STRING.pattern}))|(?:(?:{LUA_STRING.pattern})\s*[=~]=)")
    return lua_literals(compared.sub("", expression))


def lua_table_keys(expression: str) -> set[str] | None:
    """The keys of a table constructor `{ a = …, b = … }`; None for any other expression."""
    if not (expression.startswith("{") and expression.endswith("}")):
        return None
    fields = lua_arguments(expression[1:-1] + ")", 0)
    return {m.group(1) for m in (re.match(r"(\w+)\s*=(?!=)", f) for f in fields) if m}


# errors.lua's entry points are its functions whose first parameter is the code.
ENTRY_POINTS = set(re.findall(r"function _M\.(\w+)\(code\b", ERRORS_LUA.read_text()))
# Inside errors.lua, where a code is not a literal: an entry point passing on its own `code`, and
# the error location's code, from the tables nginx_lua_codes() reads.
FORWARDED_IN_ERRORS_LUA = re.compile(r"code$|nginx_error_code\(")


def lua_calls():
    """(place, entry point, code expression, vars expression or None) of every call of an entry
    point in lua/, through `require "tollgate.errors"` (or _M in errors.lua) and local aliases."""
    for path in sorted((REPO / "lua").rglob("*.lua")):
        text = lua_code(path)
        modules = set(re.findall(r"""local\s+(\w+)\s*=\s*require\s*\(?\s*["']tollgate\.errors["']""", text))
        if path == ERRORS_LUA:
            modules.add("_M")
        if not modules:
            continue
        callees = {f"{module}.{entry}": entry for module in modules for entry in ENTRY_POINTS}
        for names, values in re.findall(r"local\s+([\w\s,]+?)\s*=\s*([^\n]+)", text):
            for name, value in zip(names.split(","), values.split(","), strict=False):
                if value.strip() in callees:
                    callees[name.strip()] = callees[value.strip()]
        pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(c) for c in callees) + r")\s*\(")
        for match in pattern.finditer(text):
            if text[:match.start()].rstrip().endswith("function"):
                continue  # the definition, not a call
            args = lua_arguments(text, match.end())
            place = f"{path.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 1}"
            yield place, path, callees[match.group(1)], args[0], args[2] if len(args) > 2 else None


def nginx_lua_codes() -> dict[str, int | None]:
    """{code: the status nginx raised} of nginx's own errors (errors.lua's error location): its
    NGINX_ERRORS table, whose status is the answer's; UPSTREAM_ERRORS and nginx_error_code()'s
    fallbacks, whose answer takes the catalogue's status (None)."""
    text = lua_code(ERRORS_LUA)
    codes = {}
    for table in ("NGINX_ERRORS", "UPSTREAM_ERRORS"):
        body = re.search(rf"local {table} = (\{{.*?\}})", text, re.DOTALL)
        assert body, f"errors.lua has no {table} table"
        for status, code in re.findall(r'\[(\d+)\]\s*=\s*"(\w+)"', body.group(1)):
            codes[code] = int(status) if table == "NGINX_ERRORS" else None
    function = re.search(r"local function nginx_error_code\(.*?\nend\n", text, re.DOTALL)
    assert function, "errors.lua has no nginx_error_code()"
    for code in lua_literals(function.group(0)):
        if re.fullmatch(r"[a-z][a-z0-9_]*", code):
            codes.setdefault(code, None)
    return codes


def lua_codes() -> dict[str, list[str]]:
    """{code: places} of the codes the Lua side answers with."""
    found: dict[str, list[str]] = {}
    for place, path, _entry, code_arg, _vars in lua_calls():
        for code in lua_code_literals(code_arg):
            found.setdefault(code, []).append(place)
    for code in nginx_lua_codes():
        found.setdefault(code, []).append("lua/tollgate/errors.lua (nginx's own errors)")
    return found


def test_the_lua_walk_finds_the_calls_it_must():
    """The walk sees through `local fail = errors.fail` and a code chosen by `and`/`or`."""
    codes = lua_codes()
    for code in ("missing_api_key", "invalid_parameter", "insufficient_balance", "key_limit_reached",
                 "gateway_unavailable", "bad_request", "control_plane_unavailable"):
        assert code in codes, code
    assert {"fail", "respond", "build"} <= ENTRY_POINTS


def test_every_code_the_lua_side_raises_is_in_the_catalogue_with_its_placeholders():
    problems = []
    for place, path, entry, code_arg, vars_arg in lua_calls():
        codes = lua_code_literals(code_arg)
        if not codes:
            if not (path == ERRORS_LUA and FORWARDED_IN_ERRORS_LUA.match(code_arg)):
                problems.append(f"{place}: the code is not a literal: {code_arg}")
            continue
        given = lua_table_keys(vars_arg) if vars_arg else set()
        for code in codes:
            if code not in CATALOGUE:
                problems.append(f"{place}: {code!r} is not in errors.json")
            elif given is not None:
                needed = placeholders(code) - ({"request_id"} if entry == "fail" else set())
                if given - placeholders(code) or needed - given:
                    problems.append(f"{place}: {code!r} is given {sorted(given)}, its message names "
                                    f"{sorted(placeholders(code))}")
    for code, status in nginx_lua_codes().items():
        if code not in CATALOGUE:
            problems.append(f"errors.lua (nginx's own errors): {code!r} is not in errors.json")
        elif status is not None and CATALOGUE[code]["status"] != status:
            problems.append(f"errors.lua: nginx's {status} is answered as {code!r}, "
                            f"whose status is {CATALOGUE[code]['status']}")
    assert not problems, "\n".join(problems)


# --- Python --------------------------------------------------------------------------------------

def python_calls():
    """(place, code expression, keyword names) of every ApiError(...) in control_plane/."""
    for path in sorted((REPO / "control_plane").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "ApiError":
                assert node.args, f"{path}:{node.lineno}: ApiError without a code"
                yield f"{path.relative_to(REPO)}:{node.lineno}", node.args[0], {k.arg for k in node.keywords}


def python_codes() -> dict[str, list[str]]:
    """{code: places} of the codes the control plane answers with."""
    found: dict[str, list[str]] = {}
    for place, code_arg, _keywords in python_calls():
        if isinstance(code_arg, ast.Constant):
            found.setdefault(code_arg.value, []).append(place)
    for status, code in HTTP_ERRORS.items():
        found.setdefault(code, []).append(f"control_plane/api/__init__.py: HTTP_ERRORS[{status}]")
    return found


def test_every_code_the_control_plane_raises_is_in_the_catalogue_with_its_placeholders():
    problems = []
    for place, code_arg, keywords in python_calls():
        if not (isinstance(code_arg, ast.Constant) and isinstance(code_arg.value, str)):
            if "HTTP_ERRORS" not in ast.unparse(code_arg):
                problems.append(f"{place}: the code is not a literal: {ast.unparse(code_arg)}")
        elif code_arg.value not in CATALOGUE:
            problems.append(f"{place}: {code_arg.value!r} is not in errors.json")
        elif keywords != placeholders(code_arg.value):
            problems.append(f"{place}: {code_arg.value!r} is given {sorted(keywords)}, its message names "
                            f"{sorted(placeholders(code_arg.value))}")
    for status, code in HTTP_ERRORS.items():
        if code not in CATALOGUE:
            problems.append(f"HTTP_ERRORS: {code!r} is not in errors.json")
        elif CATALOGUE[code]["status"] != status:
            problems.append(f"HTTP_ERRORS: Werkzeug's {status} is answered as {code!r}, "
                            f"whose status is {CATALOGUE[code]['status']}")
    assert not problems, "\n".join(problems)


def test_an_unknown_code_cannot_be_raised():
    with pytest.raises(KeyError):
        ApiError("no_such_code")


# --- The catalogue -------------------------------------------------------------------------------

def test_every_entry_is_complete():
    for code, entry in CATALOGUE.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code), code
        assert set(entry) == {"status", "openai_type", "anthropic_type", "message"}, code
        assert isinstance(entry["status"], int) and 400 <= entry["status"] <= 599, code
        assert all(isinstance(entry[k], str) and entry[k] for k in ("openai_type", "anthropic_type", "message")), code


def test_every_catalogue_code_is_raised_somewhere():
    used = set(lua_codes()) | set(python_codes())
    assert sorted(set(CATALOGUE) - used) == [], "catalogue entries no code raises"


def test_a_template_is_filled_as_errors_lua_fills_it():
    assert render("{path} does not accept {method}; use {allowed}.", {"path": "/api/healthz", "method": "POST"}) == (
        "/api/healthz does not accept POST; use .")
    assert render("up to {limit} bytes", {"limit": 1_048_576}) == "up to 1048576 bytes"
    assert render("'{model}'", {"model": "é" * 300}) == "'" + "é" * 256 + "…'"
    assert render("{detail}", {"detail": "x" * 1025}) == "x" * 1024 + "…"
    assert render("{detail}", {"detail": "x" * 1024}) == "x" * 1024


@pytest.mark.parametrize("method, path, status, code, message", [
    ("GET", "/api/nothing-here", 404, "path_not_found", "No endpoint at GET /api/nothing-here."),
    ("POST", "/api/healthz", 405, "method_not_allowed", "/api/healthz does not accept POST; use GET."),
])
def test_werkzeug_errors_are_answered_from_the_catalogue(client, method, path, status, code, message):
    response = client.open(path, method=method)
    assert (response.status_code, response.json) == (status, {"error": {
        "message": message, "type": "invalid_request_error", "param": None, "code": code}})


# --- README.md -----------------------------------------------------------------------------------

def readme_error_rows() -> list[list[str]]:
    """The cells of each row of the table in README.md's section Errors."""
    section = re.search(r"^## Errors\n(.*?)(?=^## )", (REPO / "README.md").read_text(), re.DOTALL | re.MULTILINE)
    assert section, "README.md has no section Errors"
    lines = [line for line in section.group(1).splitlines() if line.startswith("|")]
    assert len(lines) > 2 and re.fullmatch(r"\|(\s*-+\s*\|)+", lines[1]), "the section has no table"
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:2] == ["status", "code"], header
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))] for line in lines[2:]]


def test_the_readme_table_lists_every_catalogue_code_with_its_status():
    listed = {}
    for status, code, *rest in readme_error_rows():
        if status == "4xx/5xx":
            continue  # the provider's own errors, passed through
        match = re.fullmatch(r"`([a-z0-9_]+)`", code)
        assert match, f"a row's code is not one `code`: {code!r}"
        assert match.group(1) not in listed, f"{code} is listed twice"
        assert all(rest), f"{code} has an empty cell"
        listed[match.group(1)] = status
    assert sorted(set(listed) - set(CATALOGUE)) == [], "README rows the catalogue lacks"
    assert sorted(set(CATALOGUE) - set(listed)) == [], "catalogue codes the README lacks"
    assert {code: int(status) for code, status in listed.items()} == {
        code: entry["status"] for code, entry in CATALOGUE.items()}
