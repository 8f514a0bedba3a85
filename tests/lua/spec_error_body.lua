-- error_body.lua: a provider's error answer read for the usage record.
local error_body = require "tollgate.error_body"
local t = require "runner"

local function read(body)
    return { error_body.read(body) }
end

local tests = {}

tests["OpenAI's shape gives its code and message"] = function()
    t.eq(read('{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}'),
        { "rate_limit_exceeded", "Rate limit reached" })
end

tests["an OpenAI error without a code gives its type"] = function()
    t.eq(read('{"error":{"message":"Bad input","type":"invalid_request_error","param":null,"code":null}}'),
        { "invalid_request_error", "Bad input" })
end

tests["Anthropic's shape gives its type and message"] = function()
    t.eq(read('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'),
        { "overloaded_error", "Overloaded" })
end

tests["a numeric code is written as an integer"] = function()
    t.eq(read('{"error":{"message":"Busy","code":503}}'), { "503", "Busy" })
end

tests["an error that is a string is its message"] = function()
    t.eq(read('{"error":"model is loading"}'), { nil, "model is loading" })
end

tests["what is no error object gives nothing"] = function()
    for _, body in ipairs({ "", "<html>502 Bad Gateway</html>", '{"error":', "[1,2]", '{"error":[1]}',
            '{"error":{"message":{"nested":true},"code":{"x":1},"type":false}}', '{"error":{"code":1.5}}',
            string.rep("[", 5000) }) do
        t.eq(read(body), {}, body:sub(1, 40))
    end
end

tests["escapes are decoded, left for the record to make fit"] = function()
    t.eq(read('{"error":{"message":"a\\tb\\u0000c","code":"x\\ny"}}'), { "x\ny", "a\tb\0c" })
end

return tests
