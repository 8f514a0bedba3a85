-- Answers an error in the caller's protocol shape, from the shared catalogue (errors.json).
local cjson = require "cjson.safe"
local config = require "tollgate.config"
local endpoints = require "tollgate.endpoints"
local text = require "tollgate.text"

local ngx = ngx
local ngx_var = ngx.var
local ngx_say = ngx.say
local ngx_exit = ngx.exit
local concat = table.concat
local find = string.find
local gsub = string.gsub
local match = string.match
local sub = string.sub
local tostring = tostring
local type = type

local REPLACEMENT = text.REPLACEMENT
local sequence_at = text.sequence_at

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

-- A value quoted in a message keeps at most this many characters; "…" marks the cut. The
-- gateway's own sentences (`detail`, which may quote a model's name) get more room.
local QUOTE_MAX = 256
local DETAIL_MAX = 1024

-- `value` as a message quotes it: valid UTF-8 (ill-formed bytes become U+FFFD) and at most
-- `most` characters. Control characters are left to cjson, which escapes them. (A client's
-- model name or path is echoed: the body must stay valid JSON, and short.)
local function quotable(value, most)
    if not find(value, "[\128-\255]") then
        if #value <= most then
            return value
        end
        return sub(value, 1, most) .. "…"
    end
    local out, i, len = {}, 1, #value
    while i <= len do
        if #out == most then
            out[#out + 1] = "…"
            break
        end
        local n, valid = sequence_at(value, i)
        out[#out + 1] = valid and sub(value, i, i + n - 1) or REPLACEMENT
        i = i + n
    end
    return concat(out)
end

local function render(template, vars)
    return (gsub(template, "{([%w_]+)}", function(name)
        local v = vars and vars[name]
        if v == nil then
            return ""
        end
        if type(v) == "string" then
            return quotable(v, name == "detail" and DETAIL_MAX or QUOTE_MAX)
        end
        return tostring(v)
    end))
end

-- Status, body and message for `code` in `protocol` ("openai" or "anthropic").
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
    return entry.status, cjson.encode(body), message
end

local noted = function() end

-- `note(code, message)` is called with each error respond() answers, before it is sent: the
-- gateway keeps a request's error for its usage record.
function _M.on_respond(note)
    noted = note
end

-- Sends the error and ends the request (content-generating phases: access, content).
function _M.respond(code, protocol, vars, headers)
    local status, body, message = _M.build(code, protocol, vars)
    noted(code, message)
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
function _M.fail(code, protocol, vars, headers)
    vars = vars or {}
    vars.request_id = ngx.var.tg_request_id
    return _M.respond(code, protocol, vars, headers)
end

-- The request line as the client sent it, split: method and target (path and query). Either is
-- "" when nginx could not parse the line (the error is then about the line itself).
local function request_line()
    local target = ngx_var.request_uri
    local line = ngx_var.request or ""
    local method, raw_target = match(line, "^(%S+)%s+(%S+)")
    return method or match(line, "^%S+") or "", target or raw_target or ""
end

-- The catalogue code of each status nginx raises itself: at parsing (400, 414, 431: headers
-- over the buffers, nginx's 494; 501, 505; 405 for TRACE), at the body (413), when a handler
-- fails (500), for an internal path asked from outside (404), and when an upstream fails (502,
-- 503, 504: the provider's for the metered API, else the control plane's).
local NGINX_ERRORS = {
    [400] = "bad_request", [404] = "path_not_found", [405] = "method_not_supported",
    [413] = "body_too_large", [414] = "uri_too_long", [431] = "headers_too_large",
    [500] = "internal_error", [501] = "transfer_encoding_not_supported",
    [505] = "http_version_not_supported",
}
local UPSTREAM_ERRORS = {
    [502] = "provider_unreachable", [503] = "provider_unreachable", [504] = "provider_timeout",
}

local function nginx_error_code(status, path)
    local upstream = UPSTREAM_ERRORS[status]
    if upstream then
        return sub(path, 1, 4) == "/v1/" and upstream or "control_plane_unavailable"
    end
    return NGINX_ERRORS[status] or "internal_error"
end

-- The error nginx raised, in the protocol's shape of the path. error_page sends each status
-- above to one internal location (not a named one: nginx cannot redirect a request whose line
-- did not parse to a named location), which keeps the status nginx raised.
function _M.nginx_error()
    local method, target = request_line()
    local path = match(target, "^[^?]*")
    return _M.fail(nginx_error_code(ngx.status, path), endpoints.protocol_of(path), {
        method = method, path = path, hint = endpoints.hint(path), limit = config.get().max_body_bytes,
    })
end

-- 503: Redis (the billing store) cannot be reached; nothing is admitted unbilled.
function _M.unavailable(protocol, err)
    ngx.log(ngx.ERR, "gateway unavailable: ", err)
    return _M.fail("gateway_unavailable", protocol)
end

return _M
