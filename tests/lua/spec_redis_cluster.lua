-- redis_cluster.lua: which node each command goes to, and what the client does on MOVED, ASK,
-- CLUSTERDOWN and a failed socket. The nodes are stand-ins that answer as Redis does
-- (CLUSTER SLOTS' reply shape; errors as the clients return them: false and the message for an
-- error reply, nil and the reason for a failed socket); every command each one got is kept.
local redis_cluster = require "tollgate.redis_cluster"
local t = require "runner"

local tests = {}

-- Slots 0-8191 on :7001, 8192-16383 on :7002 ("tg:{s0}:usage" is in 11097, "tg:{s3}:…" in 6970).
local SLOTS = { { 0, 8191, { "127.0.0.1", 7001, "a" } }, { 8192, 16383, { "127.0.0.1", 7002, "b" } } }
local S0, S3 = "tg:{s0}:usage", "tg:{s3}:acct:42"

-- A cluster of stand-in nodes by port: answers[port](command, ...) returns what the node answers.
local function cluster(answers)
    local sent, opened = {}, {}
    local function open(_, host, port)
        t.eq(host, "127.0.0.1")
        local answer = answers[port]
        if not answer then
            return nil, "failed to connect to redis: connection refused"
        end
        opened[#opened + 1] = port
        local node = { closed = false }
        setmetatable(node, { __index = function(_, command)
            return function(_, ...)
                sent[#sent + 1] = port .. " " .. command .. " " .. table.concat({ ... }, " ")
                if command == "cluster" then
                    return answers.slots or SLOTS
                end
                return answer(command, ...)
            end
        end })
        node.close = function() node.closed = true end
        node.set_keepalive = function() end
        return node
    end
    local conf = { cluster = { "127.0.0.1:7001" } }
    return function() return redis_cluster.client(conf, open) end, sent, opened
end

-- Past the gap the client keeps between two reads of the map (nginx's clock, read again).
local function after_the_gap()
    local start = ngx.now()
    repeat
        ngx.update_time()
    until ngx.now() - start > 0.1
end

local function ok(command, key)
    return command .. ":" .. key
end

tests["a command goes to the master of its key's slot, read from a seed's CLUSTER SLOTS"] = function()
    local client, sent = cluster({ [7001] = ok, [7002] = ok })
    local red = client()
    t.eq(red:hget(S0, "bal"), "hget:" .. S0)
    t.eq(red:hget(S3, "bal"), "hget:" .. S3)
    t.eq(sent, { "7001 cluster slots", "7002 hget " .. S0 .. " bal", "7001 hget " .. S3 .. " bal" })
end

tests["a script goes to the master of its first key"] = function()
    local client, sent = cluster({ [7001] = ok, [7002] = function(command, sha) return command .. ":" .. sha end })
    t.eq(client():evalsha("abc", 2, S0, "tg:{s0}:batch:1", "node"), "evalsha:abc")
    t.eq(sent[#sent], "7002 evalsha abc 2 " .. S0 .. " tg:{s0}:batch:1 node")
end

tests["MOVED is followed to the node it names, and the map is read again before the next command"] = function()
    local client, sent = cluster({
        [7001] = ok,
        [7002] = function() return false, "MOVED 11097 127.0.0.1:7001" end,
    })
    local red = client()
    t.eq(red:get(S0), "get:" .. S0)
    t.eq(sent, { "7001 cluster slots", "7002 get " .. S0, "7001 get " .. S0 })
    after_the_gap()
    red:get(S3)
    t.eq(sent[4], "7001 cluster slots")
end

tests["ASK is followed once, after ASKING, and the map is kept"] = function()
    local client, sent = cluster({
        [7001] = function(command) return command == "asking" and "OK" or "from 7001" end,
        [7002] = function() return false, "ASK 11097 127.0.0.1:7001" end,
    })
    local red = client()
    t.eq(red:get(S0), "from 7001")
    t.eq(sent, { "7001 cluster slots", "7002 get " .. S0, "7001 asking ", "7001 get " .. S0 })
    after_the_gap()
    red:get(S3)
    t.eq(sent[5], "7001 get " .. S3) -- no CLUSTER SLOTS again
end

tests["another error reply is the caller's, the map is kept"] = function()
    local client, sent = cluster({ [7001] = ok, [7002] = function() return false, "NOSCRIPT No matching script" end })
    local res, err = client():evalsha("abc", 1, S0)
    t.eq(res, false)
    t.eq(err, "NOSCRIPT No matching script")
    t.eq(#sent, 2)
end

tests["a failed socket closes that connection and the map is read again"] = function()
    local client, sent = cluster({ [7001] = ok, [7002] = function() return nil, "closed" end })
    local red = client()
    local res, err = red:get(S0)
    t.eq(res, nil)
    t.eq(err, "closed")
    after_the_gap()
    red:get(S3)
    t.eq(sent[#sent - 1], "7001 cluster slots")
end

tests["CLUSTERDOWN is the caller's error, and the map is read again"] = function()
    local client, sent = cluster({ [7001] = ok, [7002] = function() return false, "CLUSTERDOWN The cluster is down" end })
    local red = client()
    local _, err = red:get(S0)
    t.eq(err, "CLUSTERDOWN The cluster is down")
    after_the_gap()
    red:get(S3)
    t.eq(sent[#sent - 1], "7001 cluster slots")
end

tests["a node that cannot be reached is an error, and the seeds are asked when the map's nodes fail"] = function()
    local client, sent = cluster({ [7001] = ok })
    local red = client()
    local res, err = red:get(S0)
    t.eq(res, nil)
    t.eq(err, "failed to connect to redis: connection refused")
    t.eq(sent, { "7001 cluster slots" })
end

tests["no node knows a slot map, so the command fails without a node"] = function()
    local client = cluster({ [7001] = ok, slots = {} })
    local res, err = client():get(S0)
    t.eq(res, nil)
    t.eq(err, "redis cluster: no node serves the slot of " .. S0)
end

tests["WAIT goes to the node the key's write went to"] = function()
    local client, sent = cluster({ [7001] = ok, [7002] = function(command) return command == "wait" and 1 or "OK" end })
    local red = client()
    red:hset(S0, "bal", 5)
    t.eq(red:replicate(S0, 100), 1)
    t.eq(sent[#sent], "7002 wait 1 100")
    t.eq(red:replicate(S3, 100), 0) -- nothing written on that node through this client
end

return tests
