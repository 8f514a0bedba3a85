-- record.lua: the usage record, packed in control_plane/hot/usage_records.py RECORD_FIELDS order.
local node = require "tollgate.node"
local record = require "tollgate.record"
local t = require "runner"

-- usage_records.py RECORD_FIELDS
local RECORD_FIELDS = { "rid", "ts", "acct", "key", "model", "umodel", "provider", "pv", "ep", "stream",
    "status", "basis", "in", "cr", "cw", "cw1h", "out", "rsn", "cost", "ms", "ttfb", "node", "hold", "over",
    "asked", "route", "cv", "pcost", "tries", "failed", "ecode", "emsg" }

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
        failed = "503,429", ecode = "", emsg = "",
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

tests["a failed request's record carries its error code and message"] = function()
    local st = state()
    st.ecode, st.emsg = "provider_error", "The provider of 'gpt-alias' answered 503 to every attempt (3)."
    local _, named = packed(st, nil, "none", 0, 0)
    t.eq({ named.status, named.ecode, named.emsg }, { "200", "provider_error", st.emsg })
end

tests["an error message keeps no tab, newline or control character, and at most 500 bytes"] = function()
    local st = state()
    st.ecode = "bad\tcode\n" .. string.rep("c", 100)
    st.emsg = "line one\nline two\ttabbed\r\0ends " .. string.rep("é", 300)
    local values, named = packed(st, nil, "none", 0, 0)
    t.eq(#values, #record.FIELDS, "values")
    t.eq(named.ecode, "bad code " .. string.rep("c", 55), "code cut to 64 bytes")
    local head = "line one line two tabbed  ends "
    -- 31 bytes of head, then as many two-byte é as fit in the 469 left: 234 (499 bytes in all)
    t.eq(named.emsg, head .. string.rep("é", 234), "message cut at a character, to at most 500 bytes")
end

-- The state of a request refused after authentication: what was known when it was refused.
local function refused(st)
    node.id = "gw1-0123abcd-ef45"
    local values = split(record.refused(st, st.status_sent, 1700000000.123, 3))
    local named = {}
    for i, name in ipairs(record.FIELDS) do
        named[name] = values[i]
    end
    return values, named
end

tests["a refused request's record charges, holds and attempts nothing, and names no provider"] = function()
    local values, named = refused({ rid = "r1", key = { id = "41", acct = "42" }, ep = { name = "messages" },
        model = { name = "gpt-x" }, asked = "gpt-alias", status_sent = 429, ttfb = 0.002,
        ecode = "rate_limit_exceeded", emsg = "Rate limit reached for this key (6 requests per minute)." })
    t.eq(#values, #record.FIELDS, "values")
    t.eq(named, {
        rid = "r1", ts = "1700000000123", acct = "42", key = "41", model = "gpt-x", umodel = "", provider = "",
        pv = "", ep = "messages", stream = "0", status = "429", basis = "refused",
        ["in"] = "0", cr = "0", cw = "0", cw1h = "0", out = "0", rsn = "0",
        cost = "0", ms = "3", ttfb = "2", node = "gw1-0123abcd-ef45", hold = "0", over = "0",
        asked = "gpt-alias", route = "0", cv = "0", pcost = "0", tries = "0", failed = "",
        ecode = "rate_limit_exceeded", emsg = "Rate limit reached for this key (6 requests per minute).",
    })
end

tests["a refused request for an unknown model records the name asked, made fit for the record, as no model"] = function()
    local _, named = refused({ rid = "r2", key = { id = "41", acct = "42" }, ep = { name = "chat.completions" },
        asked = "no\tsuch\nmodel\255" .. string.rep("m", 300), status_sent = 404, ecode = "model_not_found" })
    local expected = "no such model\239\191\189" .. string.rep("m", 184) -- 16 bytes, then 200 in all
    t.eq({ named.model, named.asked, named.ecode, named.emsg }, { "", expected, "model_not_found", "" })
end

tests["a refused request whose body named no model records none"] = function()
    local _, named = refused({ rid = "r3", key = { id = "41", acct = "42" }, ep = { name = "chat.completions" },
        asked = { "not", "a", "name" }, status_sent = 400, ecode = "missing_model" })
    t.eq({ named.model, named.asked }, { "", "" })
end

return tests
