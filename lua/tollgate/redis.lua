-- One Redis client for the hot path: resty.redis on OpenResty, nginx.redis on Debian's packages.
-- Connections come from the cosocket pool and go back only after a clean exchange.
local ok, redis = pcall(require, "resty.redis")
if not ok then
    redis = require "nginx.redis"
end

local config = require "tollgate.config"
local redis_cluster = require "tollgate.redis_cluster"

-- Older clients (Debian's nginx.redis 0.27) have only set_timeout, and turn any unknown method
-- into a Redis command, so the method must be looked up without that fallback.
local HAS_SET_TIMEOUTS = rawget(redis, "set_timeouts") ~= nil

local _M = {}

local POOL_IDLE_MS = 60000
local POOL_SIZE = 256

-- A client connected to `host`:`port` (or the socket), authenticated and on its database; or
-- nil and "failed to connect to redis: <err>".
local function open(conf, host, port)
    local red = redis:new()
    if HAS_SET_TIMEOUTS then
        red:set_timeouts(conf.connect_timeout_ms, conf.send_timeout_ms, conf.read_timeout_ms)
    else
        red:set_timeout(conf.read_timeout_ms)
    end
    local ok, err
    if host then
        ok, err = red:connect(host, port)
    else
        ok, err = red:connect("unix:" .. conf.socket)
    end
    if not ok then
        return nil, "failed to connect to redis: " .. tostring(err)
    end
    -- TLS (rediss://): the handshake once a connection, the certificate verified for `host`
    -- against lua_ssl_trusted_certificate (nginx.conf). A pooled connection is already in TLS.
    if conf.tls and red:get_reused_times() == 0 then
        local session, tls_err = rawget(red, "_sock"):sslhandshake(nil, host, true)
        if not session then
            red:close()
            return nil, "failed to connect to redis: TLS: " .. tostring(tls_err)
        end
    end
    if conf.password and red:get_reused_times() == 0 then
        local res, auth_err = red:auth(conf.password)
        if not res then
            red:close()
            return nil, "failed to authenticate to redis: " .. tostring(auth_err)
        end
    end
    if conf.db and conf.db ~= 0 and red:get_reused_times() == 0 then
        local res, sel_err = red:select(conf.db)
        if not res then
            red:close()
            return nil, "failed to select redis db: " .. tostring(sel_err)
        end
    end
    return red
end

-- Returns a client, or nil and an error. On a Redis Cluster the client sends each command to
-- the node serving its key (redis_cluster.lua); callers see no difference.
function _M.connect()
    local conf = config.get().redis
    if conf.cluster then
        return redis_cluster.client(conf, open)
    end
    return open(conf, conf.host, conf.port)
end

local REPLICA_WAIT_MS = 100

-- On a Redis Cluster, waits (at most REPLICA_WAIT_MS) until a replica has the write just made to
-- `key`'s node: funds leased to this node must not come back to the account with a failed
-- master. One Redis: nothing to wait for.
function _M.replicate(red, key)
    if config.get().redis.cluster then
        red:replicate(key, REPLICA_WAIT_MS)
    end
end

function _M.release(red)
    red:set_keepalive(POOL_IDLE_MS, POOL_SIZE)
end

-- Runs a script by SHA, loading it on NOSCRIPT. `script` is {src = ..., sha = ...}.
function _M.eval(red, script, nkeys, ...)
    local res, err = red:evalsha(script.sha, nkeys, ...)
    if not res and err and err:find("NOSCRIPT", 1, true) then
        res, err = red:eval(script.src, nkeys, ...)
    end
    return res, err
end

return _M
