-- A provider's error answer (a status from 400 on that reaches the client), read for the usage
-- record: the code and the message the client got. OpenAI's shape is {"error": {"message",
-- "type", "code", ...}}, Anthropic's {"type": "error", "error": {"type", "message"}}. Whatever
-- else a provider sends (not JSON, cut at the gateway's limit, values that are no strings) gives
-- nil. Pure: no ngx I/O.
local cjson = require "cjson.safe"

local decode = cjson.decode
local floor = math.floor
local format = string.format
local type = type

local _M = {}

-- The most of an error body the gateway keeps to read it (gateway.lua's body filter).
_M.MAX_BYTES = 65536

-- A code that is a string, or an integral number (some providers send their HTTP status).
local function code_text(v)
    if type(v) == "string" and v ~= "" then
        return v
    end
    if type(v) == "number" and v == floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 then
        return format("%d", v)
    end
    return nil
end

-- The error's code (its `code`, else its `type`) and message, each nil when the body has none.
function _M.read(body)
    local doc = decode(body)
    if type(doc) ~= "table" then
        return nil, nil
    end
    local err = doc.error
    if type(err) == "string" then -- {"error": "message"}, as some OpenAI-compatible servers answer
        return nil, err
    end
    if type(err) ~= "table" then
        return nil, nil
    end
    local message = err.message
    return code_text(err.code) or code_text(err.type), type(message) == "string" and message or nil
end

return _M
