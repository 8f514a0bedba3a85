-- Redis key names, hot-path side; the control plane's twin is control_plane/redis_keys.py and
-- both follow docs/internals.md.
local _M = {}

local PREFIX = "tg:"

function _M.tag(shard)
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

function _M.account(shard, account_id)
    return _M.tag(shard) .. "acct:" .. account_id
end

function _M.key_state(shard, key_id)
    return _M.tag(shard) .. "key:" .. key_id
end

function _M.lease(shard, key_id)
    return _M.tag(shard) .. "lease:" .. key_id
end

function _M.leases(shard)
    return _M.tag(shard) .. "leases"
end

function _M.usage_stream(shard)
    return _M.tag(shard) .. "usage"
end

return _M
