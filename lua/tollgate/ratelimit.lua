-- Per-key rate limits (requests and tokens per minute; the account's defaults apply to keys
-- without their own), checked in Redis so they hold across workers and gateway nodes. Keys
-- without limits cost nothing here.
local errors = require "tollgate.errors"
local redis = require "tollgate.redis"
local redis_keys = require "tollgate.redis_keys"
local scripts = require "tollgate.scripts"

local ngx = ngx
local ceil = math.ceil
local pairs = pairs

local _M = {}

-- "1s", "6m0s": OpenAI's duration format for the x-ratelimit-reset-* headers.
local function duration(ms)
    local s = ceil(ms / 1000)
    if s < 60 then
        return s .. "s"
    end
    return math.floor(s / 60) .. "m" .. (s % 60) .. "s"
end

-- Takes one request and `tokens` tokens from the key's buckets.
-- Returns the response headers to send and, when rejected, the seconds to wait; or nil, err.
local function take(key, tokens)
    local red, err = redis.connect()
    if not red then
        return nil, err
    end
    local res, eerr = redis.eval(red, scripts.rate_limit, 1, redis_keys.rate_limit(key.shard, key.id),
        math.floor(ngx.now() * 1000), key.rpm, key.tpm, tokens)
    if not res then
        red:close()
        return nil, eerr
    end
    redis.release(red)
    local headers = {}
    if key.rpm > 0 then
        headers["x-ratelimit-limit-requests"] = key.rpm
        headers["x-ratelimit-remaining-requests"] = math.max(res[3], 0)
        headers["x-ratelimit-reset-requests"] = duration(res[4])
    end
    if key.tpm > 0 then
        headers["x-ratelimit-limit-tokens"] = key.tpm
        headers["x-ratelimit-remaining-tokens"] = math.max(res[5], 0)
        headers["x-ratelimit-reset-tokens"] = duration(res[6])
    end
    if res[1] == 1 then
        return headers
    end
    local wait = math.max(1, ceil(res[2] / 1000))
    headers["Retry-After"] = wait
    return headers, wait
end

-- Admits a request of `body_bytes` bytes (about 4 a token) and up to `out_tokens` output tokens
-- under the key's limits, whose headers then go with the provider's answer; or answers 429 (503
-- when Redis cannot say) and returns nil.
function _M.admit(key, body_bytes, out_tokens, protocol)
    local rpm, tpm = key.rpm, key.tpm
    if rpm <= 0 and tpm <= 0 then
        return true
    end
    local headers, wait = take(key, ceil(body_bytes / 4) + out_tokens)
    if not headers then
        return nil, errors.unavailable(protocol, wait)
    end
    if wait then
        return nil, errors.respond("rate_limit_exceeded", protocol, { retry_after = wait,
            limit = (rpm > 0 and rpm .. " requests" or "")
                .. (rpm > 0 and tpm > 0 and ", " or "")
                .. (tpm > 0 and tpm .. " tokens" or "") .. " per minute" }, headers)
    end
    for name, value in pairs(headers) do
        ngx.header[name] = value -- kept on the provider's answer
    end
    return true
end

return _M
