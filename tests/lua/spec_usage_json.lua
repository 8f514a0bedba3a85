-- usage_json.lua: decodes usage objects exactly as cjson does, in and outside its subset.
local usage_json = require "tollgate.usage_json"
local cjson = require "cjson.safe"
local t = require "runner"

local tests = {}

local OBJECTS = {
    openai = [[{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}]],
    anthropic = [[{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":4,
        "cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},
        "output_tokens":7,"service_tier":"standard","server_tool_use":null}]],
    spaced = '{ "a" : 1 ,\n\t"b" :{ } , "c":{"d" : -2.5e3 } }\r\n',
    empty = "{}",
    literals = '{"a":true,"b":false,"c":null,"d":"text"}',
    numbers = '{"a":0,"b":-0,"c":1.5,"d":1E2,"e":12345678901234,"f":-7,"g":3e0,"h":2.50}',
    big_numbers = '{"a":9007199254740993,"b":123456789012345678901234,"c":9007199254740991}',
    array = '{"a":[1,2],"b":3}',
    escaped_string = '{"a":"x\\"y","b":1}',
    escaped_key = '{"a\\u0062":1}',
    duplicate_key = '{"a":1,"a":2}',
}

for name, text in pairs(OBJECTS) do
    tests["decodes like cjson, " .. name] = function()
        local start, finish = text:find("{", 1, true), #text
        while text:sub(finish, finish) ~= "}" do finish = finish - 1 end
        t.eq(usage_json.decode(text, start, finish), cjson.decode(text:sub(start, finish)))
    end
end

tests["an object inside a larger text decodes alone"] = function()
    local text = '{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4},"z":[]}'
    local start = text:find('{"prompt', 1, true)
    t.eq(usage_json.decode(text, start, text:find("}", start, true)),
        { prompt_tokens = 3, completion_tokens = 4 })
end

tests["invalid objects decode to nil"] = function()
    for _, text in ipairs({ '{"a":}', '{"a" 1}', '{"a":1,}', "{a:1}", '{"a":tru}', '{"a":1 "b":2}' }) do
        t.eq(usage_json.decode(text, 1, #text), nil, text)
    end
end

return tests
