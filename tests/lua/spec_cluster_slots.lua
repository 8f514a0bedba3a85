-- cluster_slots.lua: hash slots as Redis Cluster computes them (the figures are CLUSTER KEYSLOT's
-- answers from a redis-server 7.0 in cluster mode), the slot map, redirections.
local slots = require "tollgate.cluster_slots"
local t = require "runner"

local tests = {}

tests["CRC16-XMODEM of the standard check string"] = function()
    t.eq(slots.crc16("123456789"), 0x31C3)
    t.eq(slots.crc16(""), 0)
end

tests["a key's slot is CLUSTER KEYSLOT's"] = function()
    t.eq(slots.key_slot("foo"), 12182)
    t.eq(slots.key_slot("123456789"), 12739)
    t.eq(slots.key_slot(""), 0)
    t.eq(slots.key_slot("tg:apikey:ab12"), 3058)
end

tests["a hash tag decides the slot (its first {…} that is not empty)"] = function()
    t.eq(slots.key_slot("{user1000}.following"), 3443)
    t.eq(slots.key_slot("{user1000}.followers"), 3443)
    t.eq(slots.key_slot("foo{}{bar}"), 8363)     -- an empty first tag: the whole key
    t.eq(slots.key_slot("foo{{bar}}zap"), 4015)  -- the tag is "{bar"
    t.eq(slots.key_slot("foo{bar}{zap}"), 5061)  -- the tag is "bar"
end

tests["a shard's keys share their slot"] = function()
    t.eq(slots.key_slot("tg:{s0}:usage"), 11097)
    t.eq(slots.key_slot("tg:{s3}:acct:42"), 6970)
    t.eq(slots.key_slot("tg:{s3}:key:41"), 6970)
    t.eq(slots.key_slot("tg:{s3}:leases"), 6970)
end

tests["the slot map names each range's master; a slot outside every range has none"] = function()
    local map = slots.slot_map({
        { 10923, 16383, { "10.0.0.3", 7002, "c" }, { "10.0.0.6", 7005, "f" } },
        { 0, 5460, { "10.0.0.1", 7000, "a" }, { "10.0.0.4", 7003, "d" } },
        { 5461, 10922, { "10.0.0.2", "7001", "b" } },
    })
    t.eq(map[1].first, 0)
    t.eq(slots.node_for(map, 0), "10.0.0.1:7000")
    t.eq(slots.node_for(map, 5460), "10.0.0.1:7000")
    t.eq(slots.node_for(map, 5461), "10.0.0.2:7001")
    t.eq(slots.node_for(map, 11097), "10.0.0.3:7002")
    t.eq(slots.node_for(map, 16383), "10.0.0.3:7002")
    t.eq(slots.node_for(slots.slot_map({ { 0, 99, { "h", 1 } } }), 100), nil)
end

tests["MOVED and ASK redirections, and nothing else"] = function()
    local kind, slot, node = slots.redirection("MOVED 3999 127.0.0.1:6381")
    t.eq(kind, "MOVED"); t.eq(slot, 3999); t.eq(node, "127.0.0.1:6381")
    kind, slot, node = slots.redirection("ASK 11097 10.0.0.2:7001")
    t.eq(kind, "ASK"); t.eq(slot, 11097); t.eq(node, "10.0.0.2:7001")
    t.eq(slots.redirection("ERR unknown command"), nil)
    t.eq(slots.redirection("MOVED 3999"), nil)
    t.eq(slots.redirection(nil), nil)
end

return tests
