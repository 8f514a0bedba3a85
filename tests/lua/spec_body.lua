-- body.lua: textual edits of a client's JSON request body.
local body = require "tollgate.body"
local cjson = require "cjson.safe"
local t = require "runner"

local function count(s, plain)
    local n, pos = 0, 1
    while true do
        local _, e = s:find(plain, pos, true)
        if not e then return n end
        n, pos = n + 1, e + 1
    end
end

-- What the gateway passes for a body: the decoded stream_options (nil when absent, or null).
local function ask_usage(raw)
    local so = cjson.decode(raw).stream_options
    local out, err = body.request_stream_usage(raw, so)
    t.truthy(out, "edited body (" .. tostring(err) .. ")")
    return out
end

-- The edited body asks for usage: valid JSON with one stream_options holding include_usage = true.
local function check_asks_usage(out)
    local decoded = cjson.decode(out)
    t.truthy(decoded, "valid JSON: " .. out)
    t.eq(count(out, '"stream_options"'), 1, "stream_options keys in " .. out)
    t.eq(count(out, '"include_usage"'), 1, "include_usage keys in " .. out)
    t.eq(decoded.stream_options.include_usage, true, "include_usage in " .. out)
end

local UNTOUCHED = '{"model":"m","temperature":0.70,"seed":12345678901234567890,"stream":true,'
    .. '"messages":[{"role":"user","content":"caf\\u00e9 — 日本語 \\"stream_options\\""}],"tools":[]}'

-- request_stream_usage: { name, body, the edited body exactly (nil: only checked to ask for usage) }
local USAGE_CASES = {
    { "stream_options absent is added first",
        '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}',
        '{"stream_options":{"include_usage":true},"model":"gpt-4o-mini","stream":true,'
            .. '"messages":[{"role":"user","content":"hi"}]}' },
    { "stream_options absent in a pretty-printed body", '\n  {\n  "model": "gpt-4o-mini",\n  "stream": true\n}\n' },
    { "include_usage false is turned true", '{"model":"m","stream":true,"stream_options":{"include_usage":false}}',
        '{"model":"m","stream":true,"stream_options":{"include_usage":true}}' },
    { "include_usage false with spaces is turned true",
        '{"model":"m","stream":true,"stream_options": { "include_usage" : false } }' },
    { "stream_options {} gets include_usage", '{"model":"m","stream":true,"stream_options":{}}',
        '{"model":"m","stream":true,"stream_options":{"include_usage":true}}' },
    { "stream_options with only whitespace inside gets include_usage",
        '{"model":"m","stream":true,"stream_options": {  \n }}' },
    { "stream_options with other keys keeps them",
        '{"model":"m","stream":true,"stream_options":{"include_obfuscation":false,"continuous_usage_stats":true}}',
        '{"model":"m","stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false,'
            .. '"continuous_usage_stats":true}}' },
    { "the rest of the body is left byte for byte", UNTOUCHED,
        '{"stream_options":{"include_usage":true},' .. UNTOUCHED:sub(2) },
    { "strings ending in escaped backslashes before stream_options are skipped whole",
        [[{"model":"m","messages":[{"content":"a\\\\","x":"b\\\"c\\"}],"stream":true,"stream_options":{"include_usage":false}}]],
        [[{"model":"m","messages":[{"content":"a\\\\","x":"b\\\"c\\"}],"stream":true,"stream_options":{"include_usage":true}}]] },
    -- A client may send the field as null; the gateway then passes nil.
    { "stream_options null asks for usage", '{"model":"m","stream":true,"stream_options":null}' },
    { "include_usage null asks for usage", '{"model":"m","stream":true,"stream_options":{"include_usage":null}}' },
}

local tests = {}

for _, case in ipairs(USAGE_CASES) do
    local name, raw, expected = case[1], case[2], case[3]
    tests[name] = function()
        local out = ask_usage(raw)
        check_asks_usage(out)
        if expected then
            t.eq(out, expected, "edited body")
        end
    end
end

tests["include_usage inside a nested object is not the one edited"] = function()
    local raw = '{"model":"m","stream_options":{"extra":{"include_usage":false},"include_usage":false}}'
    t.eq(ask_usage(raw), '{"model":"m","stream_options":{"extra":{"include_usage":false},"include_usage":true}}')
end

tests["include_usage twice or escaped in stream_options is an error"] = function()
    for _, raw in ipairs({
        '{"model":"m","stream_options":{"include_usage":true,"include_usage":false}}',
        '{"model":"m","stream_options":{"include\\u005fusage":false}}',
    }) do
        local out, err = body.request_stream_usage(raw, cjson.decode(raw).stream_options)
        t.eq(out, nil, raw)
        t.eq(err, "stream_options has include_usage more than once, or spelled with escapes: send it once, plainly")
    end
end

tests["stream_options that is not an object is an error"] = function()
    local out, err = body.request_stream_usage('{"model":"m","stream_options":[]}', {})
    t.eq(out, nil, "body")
    t.eq(err, "stream_options must be an object", "error")
end

-- replace_model: { name, body, the name the client used, to, expected body (nil: not found) }
local REPLACE_CASES = {
    { "replace_model with hyphens", '{"model":"gpt-4o-mini","messages":[]}', "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18", '{"model":"gpt-4o-mini-2024-07-18","messages":[]}' },
    { "replace_model with spaces around the colon", '{\n  "model" : "gpt-4o-mini",\n  "n": 1\n}',
        "gpt-4o-mini", "o4-mini", '{\n  "model" : "o4-mini",\n  "n": 1\n}' },
    { "replace_model with a slash and a colon", '{"stream":true,"model":"deepseek/deepseek-chat:free"}',
        "deepseek/deepseek-chat:free", "deepseek-chat", '{"stream":true,"model":"deepseek-chat"}' },
    { "replace_model with a dot", '{"model":"claude-3.5"}', "claude-3.5", "claude-3-5-sonnet-20241022",
        '{"model":"claude-3-5-sonnet-20241022"}' },
    { "replace_model with pattern characters in both names", '{"model":"a+b(c)[d]^$?*%"}',
        "a+b(c)[d]^$?*%", "x%1y%%z", '{"model":"x%1y%%z"}' },
    { "replace_model leaves a quoted mention in a message alone",
        '{"messages":[{"role":"user","content":"say \\"model\\": \\"gpt-4o-mini\\""}],"model":"gpt-4o-mini"}',
        "gpt-4o-mini", "o4-mini",
        '{"messages":[{"role":"user","content":"say \\"model\\": \\"gpt-4o-mini\\""}],"model":"o4-mini"}' },
    { "replace_model edits the top-level model, not metadata before it",
        '{"metadata":{"model":"gpt-4o-mini"},"model":"gpt-4o-mini"}', "gpt-4o-mini", "o4-mini",
        '{"metadata":{"model":"gpt-4o-mini"},"model":"o4-mini"}' },
    -- PHP's json_encode, among others, writes "/" as "\/" by default.
    { "replace_model finds a name written with an escaped slash", '{"model":"deepseek\\/deepseek-chat:free"}',
        "deepseek/deepseek-chat:free", "deepseek-chat", '{"model":"deepseek-chat"}' },
    { "replace_model without a model field", '{"messages":[]}', "m", "x", nil },
}

for _, case in ipairs(REPLACE_CASES) do
    local name, raw, to, expected = case[1], case[2], case[4], case[5]
    tests[name] = function()
        local out, err = body.replace_model(raw, to)
        t.eq(out, expected, "body")
        if expected == nil then
            t.eq(err, "model field not found", "error")
        end
    end
end

return tests
