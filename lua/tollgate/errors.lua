-- Answers an error in the caller's protocol shape, from the shared catalogue (errors.json).
local cjson = require "cjson.safe"

local ngx = ngx
local ngx_say = ngx.say
local ngx_exit = ngx.exit
local gsub = string.gsub

local _M = {}

local catalogue

function _M.load(path)
    local f, err = io.open(path, "r")
    if not f then
        error("failed to open error catalogue " .. path .. ": " .. tostring(err))
    end
    catalogue = assert(cjson.decode(f:read("*a")), "error catalogue is not valid JSON")
    f:close()
end

local function render(template, vars)
    return (gsub(template, "{([%w_]+)}", function(name)
        local v = vars and vars[name]
        if v == nil then
            return ""
        end
        return tostring(v)
    end))
end

-- Body and status for `code` in `protocol` ("openai" or "anthropic").
function _M.build(code, protocol, vars)
    local entry = catalogue[code]
    if not entry then
        error("unknown error code " .. tostring(code), 2)
    end
    local message = render(entry.message, vars)
    local body
    if protocol == "anthropic" then
        body = { type = "error", error = { type = entry.anthropic_type, message = message } }
    else
        body = { error = { message = message, type = entry.openai_type, param = cjson.null, code = code } }
    end
    return entry.status, cjson.encode(body)
end

-- Sends the error and ends the request (content-generating phases: access, content).
function _M.respond(code, protocol, vars, headers)
    local status, body = _M.build(code, protocol, vars)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    if headers then
        for name, value in pairs(headers) do
            ngx.header[name] = value
        end
    end
    ngx_say(body)
    return ngx_exit(status)
end

-- respond() with the request id filled in, for messages that quote it.
function _M.fail(code, protocol, vars)
    vars = vars or {}
    vars.request_id = ngx.var.tg_request_id
    return _M.respond(code, protocol, vars)
end

-- 503: Redis (the billing store) cannot be reached; nothing is admitted unbilled.
function _M.unavailable(protocol, err)
    ngx.log(ngx.ERR, "gateway unavailable: ", err)
    return _M.fail("gateway_unavailable", protocol)
end

return _M
