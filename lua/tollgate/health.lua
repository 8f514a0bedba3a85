-- Route health, shared by the workers of a node (the `tollgate_routes` dict). A route that fails
-- `route_fails` times within `route_fail_window_seconds` cools for `route_cooldown_seconds`
-- (a 429's Retry-After cools it at once, for at least that long; a refused provider key at once
-- too); then it is half-open: one request at a time may try it, and its first success makes it
-- healthy again, a failure cools it again. Changes are mirrored to Redis
-- (tg:route_health:<node>, for `tollgate route list`).
local cjson = require "cjson.safe"
local config = require "tollgate.config"
local metrics = require "tollgate.metrics"
local node = require "tollgate.node"
local redis = require "tollgate.redis"
local redis_keys = require "tollgate.redis_keys"

local ngx = ngx
local tostring = tostring

local _M = {}

local dict = ngx.shared.tollgate_routes

local FAILS = "f:"     -- failures within the window
local COOLING = "c:"   -- cooling: its value is the state's JSON (what Redis gets)
local HALF_OPEN = "h:" -- cooled once: waits for a success
local PROBE = "p:"     -- the one request trying a half-open route
local PROBE_SECONDS = 60
local MAX_RETRY_AFTER = 3600
local MIRROR_SECONDS = 86400 -- the Redis hash outlives its last change by a day

-- "ok", "cooling" or "half_open".
function _M.state(id)
    if dict:get(COOLING .. id) then
        return "cooling"
    end
    if dict:get(HALF_OPEN .. id) then
        return "half_open"
    end
    return "ok"
end

-- Whether this request may be the one that tries half-open route `id`.
function _M.take_probe(id)
    return dict:add(PROBE .. id, true, PROBE_SECONDS) == true
end

local function mirror(premature, id, value)
    if premature then
        return
    end
    local red, err = redis.connect()
    if not red then
        ngx.log(ngx.WARN, "route health not mirrored to Redis: ", err)
        return
    end
    local name = redis_keys.route_health(node.id)
    if value then
        red:hset(name, id, value)
        red:expire(name, MIRROR_SECONDS)
    else
        red:hdel(name, id)
    end
    redis.release(red)
end

local function publish(id, value)
    local ok, err = ngx.timer.at(0, mirror, tostring(id), value)
    if not ok then
        ngx.log(ngx.WARN, "route health not mirrored to Redis: ", err)
    end
end

local function cool(id, seconds, state, status, fails)
    local value = cjson.encode({ state = state, until_ms = math.floor((ngx.now() + seconds) * 1000),
        fails = fails, status = status })
    dict:set(COOLING .. id, value, seconds)
    dict:set(HALF_OPEN .. id, true)
    dict:delete(FAILS .. id)
    dict:delete(PROBE .. id)
    metrics.route_cooled(id)
    publish(id, value)
end

-- An attempt on route `id` failed with `status` (502/504 too when it could not be reached or did
-- not answer); `retry_after` is the provider's Retry-After in seconds, if any; `probe` whether it
-- was the half-open route's trial.
function _M.failed(id, status, retry_after, probe)
    local conf = config.get()
    local fails = dict:incr(FAILS .. id, 1, 0, conf.route_fail_window_seconds) or 1
    local seconds = 0
    if probe or fails >= conf.route_fails then
        seconds = conf.route_cooldown_seconds
    end
    -- A provider's figure: only whole seconds of at least 1 count (an HTTP-date, "nan", a
    -- negative or tiny figure is ignored), and at most an hour.
    if status == 429 and retry_after and retry_after >= 1 and retry_after > seconds then
        seconds = retry_after < MAX_RETRY_AFTER and math.floor(retry_after) or MAX_RETRY_AFTER
    end
    if seconds > 0 then
        cool(id, seconds, "cooling", status, fails)
    end
end

-- The provider refused the route's key (401, 403): cooled at once, shown as refused.
function _M.refused(id, status)
    cool(id, config.get().route_cooldown_seconds, "refused", status, 1)
end

-- An attempt on route `id` was answered: a half-open route is healthy again.
function _M.succeeded(id)
    if dict:get(HALF_OPEN .. id) then
        dict:delete(HALF_OPEN .. id)
        dict:delete(PROBE .. id)
        dict:delete(FAILS .. id)
        publish(id, nil)
    end
end

return _M
