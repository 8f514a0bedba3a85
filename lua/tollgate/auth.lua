-- The client's API key: taken from `Authorization: Bearer` or `x-api-key`, surrounding
-- whitespace removed, looked up by its SHA-256 (catalog.api_key).
local catalog = require "tollgate.catalog"
local errors = require "tollgate.errors"

local ngx_var = ngx.var
local ngx_now = ngx.now
local byte = string.byte
local sub = string.sub
local lower = string.lower

local _M = {}

local SPACE, TAB, NEWLINE, RETURN = byte(" \t\n\r", 1, 4)

local function is_space(c)
    return c == SPACE or c == TAB or c == NEWLINE or c == RETURN
end

-- `value` from byte `first` on, without surrounding whitespace (byte checks from both ends: a
-- pattern would test every byte of the key).
local function trimmed(value, first)
    local last = #value
    while first <= last and is_space(byte(value, first)) do
        first = first + 1
    end
    while last >= first and is_space(byte(value, last)) do
        last = last - 1
    end
    if first == 1 and last == #value then
        return value
    end
    return sub(value, first, last)
end

-- The token of "Bearer <token>" (scheme in any case, surrounding whitespace removed), or nil.
local function bearer_token(header)
    local first = 1
    while is_space(byte(header, first)) do
        first = first + 1
    end
    if lower(sub(header, first, first + 5)) ~= "bearer" or not is_space(byte(header, first + 6)) then
        return nil
    end
    return trimmed(header, first + 7)
end

local function client_token()
    local header = ngx_var.http_authorization
    if header then
        local token = bearer_token(header)
        if token and token ~= "" then
            return token
        end
    end
    local key = ngx_var.http_x_api_key
    if key then
        key = trimmed(key, 1)
        if key ~= "" then
            return key
        end
    end
    return nil
end

-- The active key record, or nil after answering 401 (also for a key past its expiry or of a
-- suspended account; 503 when Redis is unreachable).
function _M.authenticate(protocol)
    local token = client_token()
    if not token then
        return nil, errors.fail("missing_api_key", protocol)
    end
    local key, err = catalog.api_key(token)
    if key == nil then
        return nil, errors.unavailable(protocol, err)
    end
    if key and key.suspended then
        return nil, errors.fail("account_suspended", protocol)
    end
    if not key or not key.active then
        return nil, errors.fail("invalid_api_key", protocol)
    end
    local expires = key.expires
    if expires and ngx_now() >= expires then
        return nil, errors.fail("api_key_expired", protocol)
    end
    return key
end

return _M
