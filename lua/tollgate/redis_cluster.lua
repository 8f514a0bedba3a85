-- The hot path on a Redis Cluster (TOLLGATE_REDIS_CLUSTER): a client that sends each command to
-- the master serving its key's slot. Commands are called as on a single client (red:hmget(key,
-- …), redis.eval's evalsha with its first key), so no caller knows which Redis it runs on. The
-- slot map (cluster_slots.lua) is read per worker from CLUSTER SLOTS, asked of the nodes it names
-- and then the seed nodes, and read again after a MOVED, a node that cannot be reached, or a
-- CLUSTERDOWN; an ASK is followed once, after ASKING. A request whose node is down is answered
-- as when the one Redis is down (503) until the cluster has promoted a replica.
local cluster_slots = require "tollgate.cluster_slots"

local ngx = ngx
local find = string.find
local match = string.match
local pairs = pairs
local setmetatable = setmetatable
local tonumber = tonumber

local _M = {}

local REFRESH_GAP_SECONDS = 0.1 -- at most ten CLUSTER SLOTS a second per worker, even when stale
local WAIT_FOR_MAP_SECONDS = 1

-- What this worker knows of a cluster, by its config table: the slot map (nil before the first
-- CLUSTER SLOTS), whether to read it again before the next command, and when it last did.
local known = setmetatable({}, { __mode = "k" })

local function cluster_of(conf)
    local cluster = known[conf]
    if not cluster then
        cluster = { map = nil, stale = true, refreshed_at = 0 }
        known[conf] = cluster
    end
    return cluster
end

local function node_address(node)
    local host, port = match(node, "^(.*):(%d+)$")
    return host, tonumber(port)
end

local function ask_slots(self, node)
    local red, err = self.open(self.conf, node_address(node))
    if not red then
        return nil, err
    end
    local reply, cerr = red:cluster("slots")
    if type(reply) ~= "table" or #reply == 0 then
        red:close()
        return nil, cerr or "an empty slot map"
    end
    red:set_keepalive(60000, 16)
    return cluster_slots.slot_map(reply)
end

-- Asks the nodes of the current map, then the seeds, for the slot map.
local function read_map(self, cluster)
    local tried, last_err = {}, "no seed node"
    local function try(node)
        if tried[node] then
            return false
        end
        tried[node] = true
        local fresh, err = ask_slots(self, node)
        if fresh then
            cluster.map, cluster.stale = fresh, false
            return true
        end
        last_err = node .. ": " .. tostring(err)
        return false
    end
    for _, range in ipairs(cluster.map or {}) do
        if try(range.node) then
            return
        end
    end
    for _, seed in ipairs(self.conf.cluster) do
        if try(seed) then
            return
        end
    end
    ngx.log(ngx.WARN, "redis cluster: no node gave its slot map: ", last_err)
end

-- Reads the slot map again, from the nodes of the current map, then the seeds. One request of
-- the worker reads it; the others meanwhile use the map they have, or, having none yet, wait
-- for it (at most WAIT_FOR_MAP_SECONDS).
local function refresh(self)
    local cluster, now = self.cluster, ngx.now()
    if cluster.reading then
        local waited = 0
        while cluster.reading and not cluster.map and waited < WAIT_FOR_MAP_SECONDS do
            ngx.sleep(0.002)
            waited = waited + 0.002
        end
        return
    end
    if now - cluster.refreshed_at < REFRESH_GAP_SECONDS then
        return
    end
    cluster.refreshed_at, cluster.reading = now, true
    local ok, err = pcall(read_map, self, cluster)
    cluster.reading = false
    if not ok then
        ngx.log(ngx.ERR, "redis cluster: failed to read the slot map: ", err)
    end
end

local Router = {}

-- The router's connection to `node`, opened on first use.
local function connection(self, node)
    local red = self.nodes[node]
    if red then
        return red
    end
    local err
    red, err = self.open(self.conf, node_address(node))
    if not red then
        self.cluster.stale = true
        return nil, err
    end
    self.nodes[node] = red
    return red
end

local function drop(self, node)
    local red = self.nodes[node]
    if red then
        red:close()
        self.nodes[node] = nil
    end
end

-- Runs a command on `node`. A failed socket (res nil) is closed; after it, a redirection, a
-- cluster without a quorum or a slot being migrated, the map is read again.
local function attempt(self, node, command, ...)
    local red, err = connection(self, node)
    if not red then
        return nil, err
    end
    local res
    res, err = red[command](red, ...)
    if res == nil then
        drop(self, node)
        self.cluster.stale = true
    elseif res == false and (find(err, "^MOVED ") or find(err, "^CLUSTERDOWN") or find(err, "^TRYAGAIN")) then
        self.cluster.stale = true
    end
    return res, err
end

-- Sends `command` (arguments `...`, first key `key`) to the node serving the key's slot, and
-- follows one redirection.
local function node_of(self, key)
    local map = self.cluster.map
    return map and cluster_slots.node_for(map, cluster_slots.key_slot(key))
end

local function send(self, command, key, ...)
    if self.cluster.stale then
        refresh(self)
    end
    local node = node_of(self, key)
    if not node then
        self.cluster.stale = true
        return nil, "redis cluster: no node serves the slot of " .. key
    end
    local res, err = attempt(self, node, command, ...)
    if res ~= false then
        return res, err
    end
    local kind, _, target = cluster_slots.redirection(err)
    if not kind then
        return res, err
    end
    if kind == "ASK" then
        local red, cerr = connection(self, target)
        if not red then
            return nil, cerr
        end
        local asked, aerr = red:asking()
        if not asked then
            drop(self, target)
            return nil, aerr
        end
    end
    return attempt(self, target, command, ...)
end

-- A script routes by its first key (sha or source, nkeys, key1, …); every other command has
-- its key first.
function Router.evalsha(self, sha, nkeys, key, ...)
    return send(self, "evalsha", key, sha, nkeys, key, ...)
end

function Router.eval(self, src, nkeys, key, ...)
    return send(self, "eval", key, src, nkeys, key, ...)
end

-- Waits until a replica has what this client last wrote on the node serving `key` (WAIT), so
-- a master that fails right after cannot take it with it; returns how many replicas have it.
function Router.replicate(self, key, timeout_ms)
    local node = node_of(self, key)
    local red = node and self.nodes[node]
    if not red then
        return 0
    end
    return red:wait(1, timeout_ms) or 0
end

function Router.set_keepalive(self, idle_ms, size)
    for node, red in pairs(self.nodes) do
        red:set_keepalive(idle_ms, size)
        self.nodes[node] = nil
    end
end

function Router.close(self)
    for node in pairs(self.nodes) do
        drop(self, node)
    end
end

local RouterMeta = {
    __index = function(_, command)
        local method = Router[command]
        if not method then
            method = function(self, key, ...)
                return send(self, command, key, key, ...)
            end
            Router[command] = method
        end
        return method
    end,
}

-- A client for the cluster of `conf` (config.redis with `cluster`); `open(conf, host, port)`
-- returns a client connected to one node (redis.lua: timeouts, AUTH), or nil, err.
function _M.client(conf, open)
    return setmetatable({ conf = conf, open = open, cluster = cluster_of(conf), nodes = {} }, RouterMeta)
end

return _M
