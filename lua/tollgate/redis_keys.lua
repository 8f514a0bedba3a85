-- Redis key names, hot-path side: every key the gateway's Lua and its Redis scripts touch is
-- named here (a script gets its keys in KEYS, made by these functions: Redis Cluster needs them
-- declared). The control plane's twin is control_plane/hot/redis_keys.py; both follow
-- docs/internals.md.
local _M = {}

local PREFIX = "tg:"

-- The shard's hash tag, which every key of an account's hot state carries.
local function tag(shard)
    return PREFIX .. "{s" .. shard .. "}:"
end

function _M.apikey(key_hash)
    return PREFIX .. "apikey:" .. key_hash
end

function _M.model(name)
    return PREFIX .. "model:" .. name
end

function _M.provider(name)
    return PREFIX .. "provider:" .. name
end

_M.MODELS = PREFIX .. "models"

-- A node's route health states (health.lua), by route id.
function _M.route_health(node_id)
    return PREFIX .. "route_health:" .. node_id
end

function _M.account(shard, account_id)
    return tag(shard) .. "acct:" .. account_id
end

function _M.key_state(shard, key_id)
    return tag(shard) .. "key:" .. key_id
end

function _M.lease(shard, key_id)
    return tag(shard) .. "lease:" .. key_id
end

function _M.leases(shard)
    return tag(shard) .. "leases"
end

function _M.usage_stream(shard)
    return tag(shard) .. "usage"
end

function _M.rate_limit(shard, key_id)
    return tag(shard) .. "rl:" .. key_id
end

-- Set once a settlement batch is applied (the settle script), so it applies once.
function _M.batch(shard, batch_id)
    return tag(shard) .. "batch:" .. batch_id
end

-- A member of the leases zset (not a key): the key, its account and the node that holds the
-- lease.
function _M.lease_member(key_id, account_id, node)
    return key_id .. "|" .. account_id .. "|" .. node
end

return _M
