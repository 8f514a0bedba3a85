"""The pure Lua modules (lua/tollgate/*.lua) under their specs (tests/lua/spec_*.lua), run through
nginx's own LuaJIT: a throwaway nginx whose init_by_lua runs tests/lua/runner.lua and exits.

`nginx -t` does not run init_by_lua with Debian's lua module, so nginx starts for real
(`daemon off; master_process off;`, no server) and init_by_lua ends the process with os.exit.
Each Lua test is its own pytest test: a first run only lists them, a second runs them all once.
"""
from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from simulator import iter_fixtures

from control_plane import money, usage_classes

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
LUA_SPECS = TESTS / "lua"
FIXTURES = TESTS / "fixtures"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULES = Path("/usr/lib/nginx/modules")

SPECS = sorted(p.stem for p in LUA_SPECS.glob("spec_*.lua"))
FIXTURE_FILES = list(iter_fixtures())

CONF = """\
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    lua_package_path "{repo}/lua/?.lua;{specs}/?.lua;/usr/share/lua/5.1/?.lua;;";
    init_by_lua_block {{
        local ok, err = pcall(require("runner").run, {spec_list}, "{fixtures}", {file_list}, {list})
        if not ok then io.stderr:write("runner: ", tostring(err), "\\n") end
        io.stderr:flush()
        os.exit(ok and 0 or 1)
    }}
}}
"""

LINE = re.compile(r"^(ok|FAIL|test) (\S+?::.+?)(?:: (.*))?$")


def lua_list(names) -> str:
    return "{" + ", ".join(json.dumps(n) for n in names) + "}"


def run_nginx(list_only: bool) -> tuple[int, str]:
    if not Path(NGINX).exists() or not (MODULES / "ngx_http_lua_module.so").exists():
        pytest.skip("nginx with the lua module is not installed")
    with tempfile.TemporaryDirectory(prefix="tollgate-lua-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(CONF.format(modules=MODULES, tmp=tmp, repo=REPO, specs=LUA_SPECS,
                                    fixtures=FIXTURES, spec_list=lua_list(SPECS),
                                    file_list=lua_list(FIXTURE_FILES),
                                    list="true" if list_only else "false"))
        proc = subprocess.run([NGINX, "-p", tmp, "-c", str(conf)], capture_output=True, text=True,
                              timeout=600)
        return proc.returncode, proc.stderr


def parse(stderr: str) -> dict[str, tuple[str, str]]:
    """test id -> (status, message) from the runner's lines; continuation lines join the message."""
    results: dict[str, tuple[str, str]] = {}
    last = None
    for line in stderr.splitlines():
        if line.startswith("  | ") and last:
            status, message = results[last]
            results[last] = (status, message + "\n" + line[4:])
            continue
        match = LINE.match(line)
        if match:
            last = match.group(2)
            results[last] = (match.group(1), match.group(3) or "")
    return results


@functools.lru_cache(maxsize=None)
def lua_results() -> tuple[int, str, dict[str, tuple[str, str]]]:
    code, stderr = run_nginx(list_only=False)
    return code, stderr, parse(stderr)


def lua_test_ids() -> list[str]:
    try:
        code, stderr = run_nginx(list_only=True)
    except pytest.skip.Exception:
        return ["(nginx missing)"]
    # Listed tests, and specs that failed to load (they show as a FAIL line).
    ids = [test_id for test_id, (status, _) in parse(stderr).items() if status in ("test", "FAIL")]
    return ids or [f"(no tests listed: exit {code}: {stderr.strip()[-500:]})"]


@pytest.mark.parametrize("test_id", lua_test_ids())
def test_lua(test_id):
    code, stderr, results = lua_results()
    if test_id not in results:
        pytest.fail(f"no result for {test_id}; nginx exited {code}:\n{stderr[-3000:]}")
    status, message = results[test_id]
    assert status == "ok", message


def test_lua_run_reports_every_listed_test():
    code, stderr, results = lua_results()
    failed = [test_id for test_id, (status, _) in results.items() if status == "FAIL"]
    assert "done " in stderr, f"the runner did not finish (exit {code}):\n{stderr[-3000:]}"
    assert (code == 0) == (not failed), f"exit {code} with failures {failed}"


@pytest.mark.parametrize("file", FIXTURE_FILES)
def test_fixture_cost_agrees_with_python(file):
    """Each sidecar's hand-computed cost is what control_plane/money.py charges for its usage."""
    expected = json.loads((FIXTURES / (file.rsplit(".", 1)[0] + ".expected.json")).read_text())
    assert expected["format"] in ("openai", "responses", "anthropic")
    assert set(expected["usage"]) == set(usage_classes.RECORD_FIELDS)
    assert money.cost_nano(expected["usage"], expected["price"]) == expected["cost"]
