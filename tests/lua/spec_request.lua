-- request.lua: the deciding fields of a client's body, read as the provider reads them.
local cjson = require "cjson.safe"
local request = require "tollgate.request"
local endpoints = require "tollgate.endpoints"
local t = require "runner"

local CHAT = endpoints.BY_PATH["/v1/chat/completions"]
local COMPLETIONS = endpoints.BY_PATH["/v1/completions"]
local MESSAGES = endpoints.BY_PATH["/v1/messages"]
local RESPONSES = endpoints.BY_PATH["/v1/responses"]
local EMBEDDINGS = endpoints.BY_PATH["/v1/embeddings"]
local MODEL = { name = "m", max_output = 64000, max_input = 200000 }

local function output(ep, raw)
    return request.output(ep, cjson.decode(raw), MODEL)
end

local tests = {}

tests["without a maximum the model's own maximum is held"] = function()
    t.eq({ output(CHAT, '{"model":"m"}') }, { 64000, 1 })
    t.eq({ output(MESSAGES, '{"model":"m","max_tokens":null}') }, { 64000, 1 })
end

tests["the largest output field of the endpoint is held, times the choices"] = function()
    t.eq({ output(CHAT, '{"max_tokens":100,"max_completion_tokens":300,"n":4}') }, { 300, 4 })
    t.eq({ output(RESPONSES, '{"max_output_tokens":32000,"max_tokens":64001}') }, { 32000, 1 }, "not its field")
    t.eq({ output(MESSAGES, '{"max_tokens":1e3}') }, { 1000, 1 }, "1e3 is 1000")
    t.eq({ output(MESSAGES, '{"max_tokens":64000.0}') }, { 64000, 1 }, "64000.0 is 64000")
    t.eq({ output(EMBEDDINGS, '{"max_tokens":5,"n":9}') }, { 0, 1 }, "embeddings: no output")
end

tests["completions hold best_of choices for every prompt"] = function()
    t.eq({ output(COMPLETIONS, '{"prompt":"a","max_tokens":10,"n":2,"best_of":5}') }, { 10, 5 })
    t.eq({ output(COMPLETIONS, '{"prompt":["a","b","c"],"max_tokens":10,"n":2}') }, { 10, 6 })
    t.eq({ output(COMPLETIONS, '{"prompt":[1,2,3],"max_tokens":10}') }, { 10, 1 }, "one token array")
    t.eq({ output(COMPLETIONS, '{"prompt":[[1,2],[3]],"max_tokens":10}') }, { 10, 2 }, "two token arrays")
    local ok, err = output(COMPLETIONS, '{"prompt":"a","n":3,"best_of":2}')
    t.eq(ok, nil)
    t.eq(err, "'best_of' (2) must be at least 'n' (3).")
end

local BAD = {
    { '{"max_tokens":1.5}', "'max_tokens' must be an integer from 1 to 64000 (model 'm' produces at most 64000 output tokens); got 1.5." },
    { '{"max_tokens":0}', "got 0." },
    { '{"max_tokens":-1}', "got -1." },
    { '{"max_tokens":64001}', "got 64001." },
    { '{"max_tokens":1e308}', "got 1e+308." },
    { '{"max_tokens":9223372037}', "got 9223372037." },
    { '{"max_tokens":4611686019}', "got 4611686019." },
    { '{"max_tokens":"100"}', "got a string." },
    { '{"max_tokens":true}', "got a boolean." },
    { '{"max_tokens":[1]}', "got an array or an object." },
    { '{"max_completion_tokens":{}}', "got an array or an object." },
    { '{"n":0}', "'n' must be an integer from 1 to 128; got 0." },
    { '{"n":129}', "got 129." },
    { '{"n":2.5}', "got 2.5." },
}

for _, case in ipairs(BAD) do
    tests["refused " .. case[1]:gsub(": ", ":")] = function()
        local ok, err = output(CHAT, case[1])
        t.eq(ok, nil, "refused")
        t.eq(err:sub(-#case[2]), case[2], "message")
    end
end

tests["more output tokens than one request may hold are refused"] = function()
    local ok, err = request.output(COMPLETIONS, cjson.decode('{"max_tokens":64000,"best_of":20,"prompt":'
        .. '[' .. string.rep('"a",', 99) .. '"a"]}'), MODEL)
    t.eq(ok, nil)
    t.eq(err, "This request may produce 2000 choices of 64000 output tokens: more than the 100000000"
        .. " output tokens one request may hold. Lower max_tokens or the number of choices.")
end

tests["stream must be a boolean"] = function()
    t.eq(request.stream(cjson.decode('{"stream":true}')), true)
    t.eq(request.stream(cjson.decode('{"stream":null}')), false)
    t.eq(request.stream(cjson.decode('{}')), false)
    t.eq({ request.stream(cjson.decode('{"stream":"true"}')) }, { nil, "'stream' must be true or false; got a string." })
    t.eq({ request.stream(cjson.decode('{"stream":1}')) }, { nil, "'stream' must be true or false; got 1." })
end

local AMBIGUOUS = {
    { '{"model":"m","stream_options":{"include_usage":true},"stream_options":{"include_usage":false}}',
        "names more than once the field 'stream_options'" },
    { '{"model":"m","stream\\u005foptions":{"include_usage":false}}', "spells with escapes the field 'stream_options'" },
    { '{"model":"a","model":"b"}', "names more than once the field 'model'" },
    { '{"model":"m","max_tokens":1,"max_tokens":100000}', "names more than once the field 'max_tokens'" },
    { '{"model":"m","n":1,"\\u006e":128}', "spells with escapes the field 'n'" },
    { '{"model":"m", "n" :1 ,\n "n": 2}', "names more than once the field 'n'" },
}

for _, case in ipairs(AMBIGUOUS) do
    tests["ambiguous " .. case[1]:gsub(": ", ":")] = function()
        local message = request.ambiguous(case[1], cjson.decode(case[1]))
        t.truthy(message, "refused")
        t.eq(message, "The request body " .. case[2] .. ": send each field once, with its name written plainly.")
    end
end

local PLAIN = {
    '{"model":"m","messages":[{"role":"user","content":"\\"model\\": \\"n\\""}]}',
    '{"model":"m","tools":[{"function":{"parameters":{"properties":{"n":{},"max_tokens":{}}}}}],"n":2,"max_tokens":5}',
    '{"model":"m","messages":[{"content":"caf\\u00e9"}],"metadata":{"model":"x","model":"y"}}',
    '{"model":"m","temperature":1,"temperature":2}',
    '{"model":"m","messages":[{"content":"say \\"n"}],"n":1}',
}

for _, raw in ipairs(PLAIN) do
    tests["not ambiguous " .. raw:gsub(": ", ":")] = function()
        t.eq(request.ambiguous(raw, cjson.decode(raw)), nil)
    end
end

tests["input held at the body's bytes, or the context window when the provider adds input"] = function()
    local plain = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    t.eq(request.input_tokens(plain, MODEL), #plain)
    for _, raw in ipairs({
        '{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]}',
        '{"model":"m","input":"go on","previous_response_id":"resp_1"}',
        '{"model":"m","messages":[{"content":[{"type":"document","source":{"type":"file","file_id":"f_1"}}]}]}',
        '{"model":"m","tools":[{"type":"web_search_20250305","name":"web_search"}]}',
        '{"model":"m","tools":[{"type":"mcp","server_url":"https://mcp.example"}]}',
        '{"model":"m","input":"go on","conversation":"conv_1"}',
        '{"model":"m","tools":[{"type":"web_fetch_20250910","name":"web_fetch"}]}',
        '{"model":"m","tools":[{"type":"file_search","vector_store_ids":["vs_1"]}]}',
        '{"model":"m","tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}',
        '{"model":"m","tools":[{"type":"code_execution_20250522","name":"code_execution"}]}',
        '{"model":"m","mcp_servers":[{"type":"url","url":"https://mcp.example"}]}',
    }) do
        t.eq(request.input_tokens(raw, MODEL), 200000, raw)
    end
    -- The words in text, not as the markers' quoted names: the body's bytes.
    for _, raw in ipairs({
        '{"model":"m","messages":[{"role":"user","content":"my url, a curl\\"url\\" and mcp"}]}',
        '{"model":"m","messages":[{"role":"user","content":"urls","name":"file_ids"}]}',
    }) do
        t.eq(request.input_tokens(raw, MODEL), #raw, raw)
    end
    local big = '{"model":"m","previous_response_id":"r","input":"' .. string.rep("a", 300000) .. '"}'
    t.eq(request.input_tokens(big, MODEL), #big, "a body larger than the window")
end

return tests
