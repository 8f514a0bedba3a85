-- Per-key rate limits (requests and tokens per minute; the account's defaults apply to keys
-- without their own), checked in Redis so they hold across workers and gateway nodes. Keys
-- without limits never reach this module.
local keys = require "tollgate.keys"
local redis = require "tollgate.redis"
local scripts = require "tollgate.scripts"

local ngx = ngx
local ceil = math.ceil

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
function _M.take(key, tokens)
    local red, err = redis.connect()
    if not red then
        return nil, err
    end
    local res, eerr = redis.eval(red, scripts.rate_limit, 1, keys.tag(key.shard) .. "rl:" .. key.id,
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

return _M
