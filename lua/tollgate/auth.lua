-- The client's API key: taken from `Authorization: Bearer` or `x-api-key`, surrounding
-- whitespace removed, looked up by its SHA-256 (catalog.api_key).
local catalog = require "tollgate.catalog"
local errors = require "tollgate.errors"

local ngx_var = ngx.var

local _M = {}

-- The token of "Bearer <token>" with surrounding whitespace removed. Anchored patterns with
-- `%S+` first: a lazy `(.-)%s*$` retries the rest of the line at every byte (~2 µs a key).
local function bearer_token(header)
    return header:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
        or header:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(.-)%s*$")
end

local function trimmed(value)
    return value:match("^%s*(%S+)%s*$") or value:match("^%s*(.-)%s*$")
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
        key = trimmed(key)
        if key ~= "" then
            return key
        end
    end
    return nil
end

-- The active key record, or nil after answering 401 (or 503 when Redis is unreachable).
function _M.authenticate(protocol)
    local token = client_token()
    if not token then
        return nil, errors.fail("missing_api_key", protocol)
    end
    local key, err = catalog.api_key(token)
    if key == nil then
        return nil, errors.unavailable(protocol, err)
    end
    if not key or not key.active then
        return nil, errors.fail("invalid_api_key", protocol)
    end
    return key
end

return _M
