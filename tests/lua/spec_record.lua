-- record.lua: the usage record, packed in control_plane/hot/usage_records.py RECORD_FIELDS order.
local node = require "tollgate.node"
local record = require "tollgate.record"
local t = require "runner"

-- usage_records.py RECORD_FIELDS
local RECORD_FIELDS = { "rid", "ts", "acct", "key", "model", "umodel", "provider", "pv", "ep", "stream",
    "status", "basis", "in", "cr", "cw", "cw1h", "out", "rsn", "cost", "ms", "ttfb", "node", "hold", "over",
    "asked", "route", "cv", "pcost", "tries", "failed" }

local function split(line)
    local values = {}
    for v in (line .. "\t"):gmatch("([^\t]*)\t") do
        values[#values + 1] = v
    end
    return values
end

-- The state gateway.lua keeps of an admitted request, every value distinct.
local function state()
    return {
        rid = "0123456789abcdef0000000000000007", key = { id = "41", acct = "42", shard = 1 },
        model = { name = "gpt-x" }, asked = "gpt-alias",
        route = { id = 44, provider = "openai-main", upstream_model = "gpt-x-2025", cost = { version = 45 } },
        ep = { name = "chat.completions" }, stream = true, hold = 5000000, ttfb = 0.25, tries = 3,
        failed = { 503, 429 },
    }
end

local function packed(st, tokens, basis, charge, over, provider_cost)
    node.id = "gw1-0123abcd-ef45"
    local values = split(record.pack(st, 200, tokens, basis, charge, over, 43, provider_cost or 0, 1700000000.123,
        812))
    local named = {}
    for i, name in ipairs(record.FIELDS) do
        named[name] = values[i]
    end
    return values, named
end

local tests = {}

tests["the fields are usage_records.py RECORD_FIELDS"] = function()
    t.eq(record.FIELDS, RECORD_FIELDS)
end

tests["a record packs every value under its field"] = function()
    local values, named = packed(state(), { ["in"] = 11, cr = 12, cw = 13, cw1h = 14, out = 15, rsn = 16 },
        "provider", 4000000, 1234, 3000000)
    t.eq(#values, #record.FIELDS, "values")
    t.eq(named, {
        rid = "0123456789abcdef0000000000000007", ts = "1700000000123", acct = "42", key = "41",
        model = "gpt-x", umodel = "gpt-x-2025", provider = "openai-main", pv = "43",
        ep = "chat.completions", stream = "1", status = "200", basis = "provider",
        ["in"] = "11", cr = "12", cw = "13", cw1h = "14", out = "15", rsn = "16",
        cost = "4000000", ms = "812", ttfb = "250", node = "gw1-0123abcd-ef45", hold = "5000000",
        over = "1234", asked = "gpt-alias", route = "44", cv = "45", pcost = "3000000", tries = "3",
        failed = "503,429",
    })
end

tests["a record with nothing to bill counts no tokens"] = function()
    local st = state()
    st.stream, st.ttfb, st.tries, st.failed = false, nil, 1, nil
    local _, named = packed(st, nil, "none", 0, 0)
    t.eq({ named.tries, named.failed }, { "1", "" }, "one attempt, none failed")
    for _, name in ipairs({ "in", "cr", "cw", "cw1h", "out", "rsn", "cost", "over", "pcost" }) do
        t.eq(named[name], "0", name)
    end
    t.eq(named.stream, "0", "stream")
    t.eq(named.ttfb, "812", "ttfb without a first byte is the whole time")
end

tests["numbers are packed as integers without exponent"] = function()
    local st = state()
    st.hold = 2 ^ 53
    local _, named = packed(st, { ["in"] = 100000000, cr = 0, cw = 0, cw1h = 0, out = 0, rsn = 0 },
        "invalid", 2 ^ 53, 0)
    t.eq(named.hold, "9007199254740992", "hold")
    t.eq(named.cost, "9007199254740992", "cost")
    t.eq(named["in"], "100000000", "in")
end

return tests
