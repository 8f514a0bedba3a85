-- A tiny spec runner for the pure Lua modules, run inside nginx's LuaJIT (init_by_lua, see
-- tests/test_lua_units.py). A spec file returns a table name -> function; a test fails by raising
-- an error. Prints `ok <spec>::<name>` or `FAIL <spec>::<name>: <message>` (message lines after the
-- first prefixed with "  | ") to stderr, then raises an error when any test failed.
local cjson = require "cjson.safe"

local find = string.find

local _M = {}

local fixtures_dir, fixture_files

-- Deep equality of plain values and tables (numbers compared with ==, so 5 == 5LL).
local function same(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then
        return a == b
    end
    for k, v in pairs(a) do
        if not same(v, b[k]) then return false end
    end
    for k in pairs(b) do
        if a[k] == nil then return false end
    end
    return true
end

function _M.show(v)
    if type(v) == "string" then
        return string.format("%q", v)
    end
    if type(v) ~= "table" then
        return tostring(v)
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
    local parts = {}
    for _, k in ipairs(keys) do
        parts[#parts + 1] = tostring(k) .. "=" .. _M.show(v[k])
    end
    return "{" .. table.concat(parts, ", ") .. "}"
end

-- Raises unless actual equals expected (deeply); `what` names the value in the message.
function _M.eq(actual, expected, what)
    if not same(actual, expected) then
        error((what and what .. ": " or "") .. "expected " .. _M.show(expected) .. ", got "
            .. _M.show(actual), 2)
    end
end

function _M.truthy(v, what)
    if not v then
        error((what or "value") .. " is " .. tostring(v), 2)
    end
end

function _M.read(path)
    local f = assert(io.open(path, "rb"))
    local data = f:read("*a")
    f:close()
    return data
end

-- Golden provider answers (tests/fixtures): data file names, their bytes and their sidecars.
function _M.fixture_files()
    return fixture_files
end

function _M.fixture(file)
    local stem = file:match("^(.*)%.[^.]+$")
    local expected = assert(cjson.decode(_M.read(fixtures_dir .. "/" .. stem .. ".expected.json")))
    return _M.read(fixtures_dir .. "/" .. file), expected, stem
end

local function report(line, message)
    local first, rest = message:match("^([^\n]*)\n?(.*)$")
    io.stderr:write(line, first, "\n")
    for l in rest:gmatch("[^\n]+") do
        io.stderr:write("  | ", l, "\n")
    end
end

-- Runs every test of every spec (module names), sorted by name. With `list` set, only prints
-- `test <spec>::<name>` lines.
function _M.run(specs, dir, files, list)
    fixtures_dir, fixture_files = dir, files
    local failed, passed = 0, 0
    for _, spec in ipairs(specs) do
        local ok, tests = pcall(require, spec)
        if not ok or type(tests) ~= "table" then
            failed = failed + 1
            report("FAIL " .. spec .. "::(load): ", tostring(tests))
        else
            local names = {}
            for name in pairs(tests) do names[#names + 1] = name end
            table.sort(names)
            for _, name in ipairs(names) do
                local id = spec .. "::" .. name
                if find(name, ": ", 1, true) then
                    failed = failed + 1
                    report("FAIL " .. id .. ": ", "test names must not contain ': ' (it ends the name)")
                elseif list then
                    io.stderr:write("test ", id, "\n")
                else
                    local tok, err = xpcall(tests[name], debug.traceback)
                    if tok then
                        passed = passed + 1
                        io.stderr:write("ok ", id, "\n")
                    else
                        failed = failed + 1
                        report("FAIL " .. id .. ": ", tostring(err))
                    end
                end
            end
        end
    end
    io.stderr:write(string.format("done %d passed, %d failed\n", passed, failed))
    if failed > 0 then
        error(failed .. " Lua test(s) failed", 0)
    end
end

return _M
