-- Keys, models and providers as the control plane published them to Redis, cached per worker
-- for at most `config_ttl` seconds so a revocation or a price change lands within that time.
local cjson = require "cjson.safe"
local lrucache = require "resty.lrucache"
local config = require "tollgate.config"
local cost = require "tollgate.cost"
local hash = require "tollgate.hash"
local redis = require "tollgate.redis"
local redis_keys = require "tollgate.redis_keys"
local usage_classes = require "tollgate.usage_classes"

local ngx_null = ngx.null
local tonumber = tonumber
local type = type
local floor = math.floor

local _M = {}

-- One cache per kind, so a lookup builds no key string.
local caches = {
    key = assert(lrucache.new(20000)), model = assert(lrucache.new(5000)),
    provider = assert(lrucache.new(1000)), names = assert(lrucache.new(1)),
}

-- fetch(red, name) returns the value (false when absent), or nil and an error.
local function cached(cache, name, fetch)
    local hit = cache:get(name)
    if hit ~= nil then
        return hit
    end
    local red, err = redis.connect()
    if not red then
        return nil, err
    end
    local value, ferr = fetch(red, name)
    if value == nil then
        red:close()
        return nil, ferr
    end
    redis.release(red)
    cache:set(name, value, config.get().config_ttl)
    return value
end

-- The set of names a key may use from its `models` field (a JSON array of names), or nil when the
-- key may use every model. A list that is not one allows nothing.
local function allowed_models(field)
    if field == ngx_null then
        return nil
    end
    local set = {}
    local list = cjson.decode(field)
    if type(list) == "table" then
        for i = 1, #list do
            if type(list[i]) == "string" then
                set[list[i]] = true
            end
        end
    end
    return set
end

local function fetch_key(red, token)
    local res, err = red:hmget(redis_keys.apikey(hash.sha256_hex(token)), "id", "acct", "shard", "status",
        "rpm", "tpm", "capfb", "models", "exp")
    if not res then
        return nil, "failed to read api key: " .. tostring(err)
    end
    if res[1] == ngx_null then
        return false
    end
    return {
        id = res[1], acct = res[2], shard = tonumber(res[3]), active = res[4] == "active",
        -- the key's account is suspended by an admin (the key itself is active)
        suspended = res[4] == "suspended",
        rpm = tonumber(res[5]) or 0, tpm = tonumber(res[6]) or 0,
        -- a fallback costs the key at most what the first route would have (hold.lua)
        cap_fallback = res[7] == "1",
        models = allowed_models(res[8]), -- nil: every model
        expires = tonumber(res[9]), -- unix seconds; nil: never
    }
end

-- Whether `key` may use the model asked for as `name`, which is `model_name` (the asked name or
-- the model's must be in the key's list).
function _M.allowed(key, name, model_name)
    local models = key.models
    return not models or models[name] == true or models[model_name] == true
end

local function fetch_json(redis_key)
    return function(red, name)
        local res, err = red:get(redis_key(name))
        if not res then
            return nil, "failed to read " .. name .. ": " .. tostring(err)
        end
        if res == ngx_null then
            return false
        end
        local decoded = cjson.decode(res)
        if not decoded then
            return nil, "unreadable config for " .. name
        end
        return decoded
    end
end

-- A published model's figures must be within cost.lua's bounds, or no request is admitted to it.
local function token_count(v)
    return type(v) == "number" and v >= 1 and v <= cost.MAX_TOKENS and v == floor(v)
end

local DEFAULT_MAX_INPUT = 200000 -- for a model published before it had one

local function valid_price(price)
    if type(price) ~= "table" then
        return false
    end
    for i = 1, #usage_classes do
        local p = price[usage_classes[i].price]
        if type(p) ~= "number" or p < 0 or p > cost.MAX_PRICE or p ~= floor(p) then
            return false
        end
    end
    return true
end

local function whole(v, least, most)
    return type(v) == "number" and v >= least and v <= most and v == floor(v)
end

local function valid_routes(routes)
    if type(routes) ~= "table" or routes[1] == nil then
        return false
    end
    for i = 1, #routes do
        local r = routes[i]
        if type(r) ~= "table" or not whole(r.id, 1, 2 ^ 31) or type(r.provider) ~= "string"
                or type(r.upstream_model) ~= "string" or not whole(r.priority, -2 ^ 31, 2 ^ 31)
                or not whole(r.weight, 1, 1000) or not valid_price(r.cost) or not whole(r.cost.version, 1, 2 ^ 53) then
            return false
        end
    end
    return true
end

-- The statuses a model's requests fall back on (besides an unreachable or silent provider), as
-- a set: the ones nginx.conf's @attempt location intercepts, at most.
local RETRYABLE = { [429] = true, [500] = true, [502] = true, [503] = true, [504] = true, [529] = true }

local function retry_set(list)
    if type(list) ~= "table" then
        return nil
    end
    local set = {}
    for i = 1, #list do
        if not RETRYABLE[list[i]] then
            return nil
        end
        set[list[i]] = true
    end
    return set
end

local function checked_model(name, model)
    model.max_input = model.max_input or DEFAULT_MAX_INPUT
    model.retry_set = retry_set(model.retry_on)
    if not (token_count(model.max_output) and token_count(model.max_input) and valid_price(model.price)
            and valid_routes(model.routes) and model.retry_set and type(model.at_cost) == "boolean") then
        return nil, "model " .. name .. " is published with a maximum output or input, prices, routes or"
            .. " fallback statuses outside the bounds: publish it again"
    end
    return model
end

local fetch_model_json = fetch_json(redis_keys.model)

local function fetch_model(red, name)
    local model, err = fetch_model_json(red, name)
    if not model then
        return model, err
    end
    return checked_model(name, model)
end
local fetch_provider = fetch_json(redis_keys.provider)

-- The key record for a plaintext key (cached under the key itself, in worker memory only).
function _M.api_key(token)
    return cached(caches.key, token, fetch_key)
end

function _M.model(name)
    return cached(caches.model, name, fetch_model)
end

function _M.provider(name)
    return cached(caches.provider, name, fetch_provider)
end

local function fetch_names(red)
    local res, err = red:smembers(redis_keys.MODELS)
    if not res then
        return nil, "failed to read model list: " .. tostring(err)
    end
    table.sort(res)
    return res
end

-- Every published model name, sorted.
function _M.model_names()
    return cached(caches.names, "", fetch_names)
end

return _M
