-- The client's request: its endpoint and body (the steps that read them answer the client's
-- errors themselves), and the fields of the body that the gateway decides on, read as the
-- provider reads them and checked before they touch money: each named once and plainly,
-- integers within bounds. Only endpoint(), read() and decide() do ngx I/O.
local cjson = require "cjson.safe"
local body = require "tollgate.body"
local cost = require "tollgate.cost"
local endpoints = require "tollgate.endpoints"
local errors = require "tollgate.errors"

local ngx_var = ngx.var
local req = ngx.req
local decode = cjson.decode
local null = cjson.null
local find = string.find
local floor = math.floor
local format = string.format
local type = type

local fail = errors.fail

local _M = {}

-- The top-level fields the gateway reads. A body that names one of them twice, or spells it with
-- escapes, is refused: JSON readers disagree on duplicates (most take the last, some the first),
-- and a textual edit of the body would miss an escaped name.
local DECIDING = { "model", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "max_output_tokens", "n", "best_of" }
local DECIDING_SET = {}
for i = 1, #DECIDING do
    DECIDING_SET[DECIDING[i]] = true
end

local MAX_N = 128      -- OpenAI's bound on `n`
local MAX_BEST_OF = 20 -- and on `best_of`

-- The metered endpoint the request is for; or nil after answering 404 (no such path) or 405.
function _M.endpoint()
    local uri = ngx_var.uri
    local ep = endpoints.BY_PATH[uri]
    if not ep then
        return nil, fail("path_not_found", endpoints.protocol_of(uri),
            { method = req.get_method(), path = uri, hint = endpoints.hint(uri) })
    end
    if req.get_method() ~= "POST" then
        return nil, fail("method_not_allowed", ep.protocol, { path = uri, method = req.get_method(), allowed = "POST" })
    end
    return ep
end

-- The body as nginx received it (in memory, or in a file when it was larger than the buffer).
local function received_body()
    req.read_body()
    local raw = req.get_body_data()
    if raw then
        return raw
    end
    local path = req.get_body_file()
    if not path then
        return nil
    end
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    raw = f:read("*a")
    f:close()
    return raw
end

-- A problem with the body's deciding fields (a message for the client), or nil.
function _M.ambiguous(raw, parsed)
    local name, why = body.ambiguous_field(raw, parsed, DECIDING, DECIDING_SET)
    if not name then
        return nil
    end
    return format("The request body %s '%s': send each field once, with its name written plainly.",
        why == "repeated" and "names more than once the field" or "spells with escapes the field", name)
end

-- The body, raw and decoded: a JSON object whose deciding fields are unambiguous; or nil after
-- answering 400.
function _M.read(protocol)
    local raw = received_body()
    if not raw or raw == "" then
        return nil, fail("invalid_request", protocol, { detail = "The request body is empty: send a JSON object." })
    end
    local parsed, jerr = decode(raw)
    if parsed == nil then
        return nil, fail("malformed_json", protocol, { detail = jerr })
    end
    if type(parsed) ~= "table" or parsed[1] ~= nil then
        return nil, fail("invalid_request", protocol, { detail = "The request body must be a JSON object." })
    end
    local ambiguous = _M.ambiguous(raw, parsed)
    if ambiguous then
        return nil, fail("invalid_parameter", protocol, { detail = ambiguous })
    end
    return raw, parsed
end

local KINDS = { string = "a string", boolean = "a boolean", table = "an array or an object" }

local function shown(v)
    if type(v) == "number" then
        return format("%.17g", v)
    end
    return KINDS[type(v)] or type(v)
end

local function bad_integer(name, low, high, v, why)
    return format("'%s' must be an integer from %d to %d%s; got %s.", name, low, high, why or "", shown(v))
end

-- The integer field `name` from `low` to `high` (nil when absent or null), or nil and false.
-- JSON has one number type: 1000, 1e3 and 1000.0 are the same integer.
local function integer(parsed, name, low, high)
    local v = parsed[name]
    if v == nil or v == null then
        return nil
    end
    if type(v) ~= "number" or v ~= floor(v) or v < low or v > high then
        return nil, false
    end
    return v
end

-- integer(), or nil and the message saying what `name` must be.
local function checked_integer(parsed, name, low, high)
    local v, ok = integer(parsed, name, low, high)
    if ok == false then
        return nil, bad_integer(name, low, high, parsed[name])
    end
    return v
end

-- Whether the answer is asked for as a stream, or nil and a message.
function _M.stream(parsed)
    local v = parsed.stream
    if v == nil or v == null or v == false then
        return false
    end
    if v == true then
        return true
    end
    return nil, format("'stream' must be true or false; got %s.", shown(v))
end

-- How many answers a completions request asks for: one per prompt when `prompt` is an array of
-- prompts (strings or token arrays), one for a string or a single token array.
local function prompt_count(prompt)
    if type(prompt) ~= "table" then
        return 1
    end
    local n = #prompt
    if n == 0 or type(prompt[1]) == "number" then
        return 1
    end
    return n
end

-- Markers of input a provider may fetch or keep beyond the request body: media and documents by
-- URL, uploaded files, earlier responses and conversations kept by the provider, server-side tools
-- whose results are input (search, fetch, code execution, MCP servers).
local BEYOND_BODY = { '"url"', '"file_id"', '"previous_response_id"', '"conversation"', "web_search",
    "web_fetch", "file_search", "code_interpreter", "code_execution", '"mcp' }

-- The input tokens a request may cost: every body byte a token, or, when the provider may add
-- input of its own (BEYOND_BODY), at least the model's context window.
function _M.input_tokens(raw, model)
    local n = #raw
    for i = 1, #BEYOND_BODY do
        if find(raw, BEYOND_BODY[i], 1, true) then
            local window = model.max_input
            return n > window and n or window
        end
    end
    return n
end

-- Fan-out: how many choices of up to max_tokens each the answer may hold.
local fan_outs = {
    n = function(parsed)
        local n, err = checked_integer(parsed, "n", 1, MAX_N)
        if err then
            return nil, err
        end
        return n or 1
    end,
    completions = function(parsed)
        local n, err = checked_integer(parsed, "n", 1, MAX_N)
        if err then
            return nil, err
        end
        local best_of, berr = checked_integer(parsed, "best_of", 1, MAX_BEST_OF)
        if berr then
            return nil, berr
        end
        n = n or 1
        if best_of and best_of < n then
            return nil, format("'best_of' (%d) must be at least 'n' (%d).", best_of, n)
        end
        return (best_of or n) * prompt_count(parsed.prompt)
    end,
}

-- The output tokens a request may cost: the most per choice and the number of choices, or nil
-- and a message. Without a maximum in the body, the model's own maximum; one above it is
-- refused (the provider would refuse it, or produce more than was held).
function _M.output(ep, parsed, model)
    if ep.no_output then
        return 0, 1
    end
    local model_max = model.max_output
    local per_choice
    local fields = ep.output_fields
    for i = 1, #fields do
        local name = fields[i]
        local v, ok = integer(parsed, name, 1, model_max)
        if ok == false then
            return nil, bad_integer(name, 1, model_max, parsed[name],
                format(" (model '%s' produces at most %d output tokens)", model.name, model_max))
        end
        if v and (not per_choice or v > per_choice) then
            per_choice = v
        end
    end
    per_choice = per_choice or model_max
    local fan_out = 1
    if ep.fan_out then
        local err
        fan_out, err = fan_outs[ep.fan_out](parsed)
        if not fan_out then
            return nil, err
        end
    end
    if per_choice * fan_out > cost.MAX_TOKENS then
        return nil, format("This request may produce %d choices of %d output tokens: more than the %d"
            .. " output tokens one request may hold. Lower max_tokens or the number of choices.",
            fan_out, per_choice, cost.MAX_TOKENS)
    end
    return per_choice, fan_out
end

-- What the answer may be: whether it streams, and (metered endpoints) the most output tokens per
-- choice and the number of choices (0 and 1 for an unbilled endpoint); or nil after answering
-- 400.
function _M.decide(ep, parsed, model, protocol)
    local is_stream, serr = _M.stream(parsed)
    if serr then
        return nil, fail("invalid_parameter", protocol, { detail = serr })
    end
    if ep.unbilled then
        return is_stream, 0, 1
    end
    local per_choice, fan_out = _M.output(ep, parsed, model)
    if not per_choice then
        return nil, fail("invalid_parameter", protocol, { detail = fan_out })
    end
    return is_stream, per_choice, fan_out
end

return _M
