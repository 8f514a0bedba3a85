-- Redis Cluster routing, pure (no I/O): a key's hash slot (CRC16-XMODEM of its hash tag, or of the
-- whole key, mod 16384, as the Redis Cluster specification defines it), the slot map read from a
-- CLUSTER SLOTS reply, the node that serves a slot, and the target of a MOVED or ASK redirection.
-- Every key one of the hot path's scripts touches shares its shard's tag ({s<n>}), so a script
-- goes to the one node serving that tag's slot.
local bit = require "bit"

local band, bxor, lshift, rshift = bit.band, bit.bxor, bit.lshift, bit.rshift
local byte = string.byte
local find = string.find
local match = string.match
local sub = string.sub
local sort = table.sort
local tonumber = tonumber

local _M = {}

_M.SLOTS = 16384

-- CRC16-XMODEM (polynomial 0x1021, initial value 0), by a table of the 256 byte values.
local TABLE = {}
for i = 0, 255 do
    local crc = lshift(i, 8)
    for _ = 1, 8 do
        if band(crc, 0x8000) ~= 0 then
            crc = bxor(lshift(crc, 1), 0x1021)
        else
            crc = lshift(crc, 1)
        end
    end
    TABLE[i] = band(crc, 0xFFFF)
end

function _M.crc16(s)
    local crc = 0
    for i = 1, #s do
        crc = band(bxor(lshift(crc, 8), TABLE[bxor(rshift(crc, 8), byte(s, i))]), 0xFFFF)
    end
    return crc
end

-- What of a key is hashed: what stands between its first "{" and the next "}", when that is not
-- empty; else the whole key.
function _M.hash_tag(key)
    local open = find(key, "{", 1, true)
    if open then
        local close = find(key, "}", open + 1, true)
        if close and close > open + 1 then
            return sub(key, open + 1, close - 1)
        end
    end
    return key
end

function _M.key_slot(key)
    return _M.crc16(_M.hash_tag(key)) % _M.SLOTS
end

-- The slot map of a CLUSTER SLOTS reply ({{first, last, {host, port, id, …}, replicas…}, …}):
-- ranges sorted by their first slot, each with its master's "host:port".
function _M.slot_map(reply)
    local ranges = {}
    for _, entry in ipairs(reply) do
        local master = entry[3]
        ranges[#ranges + 1] = { first = tonumber(entry[1]), last = tonumber(entry[2]),
                                node = master[1] .. ":" .. tonumber(master[2]) }
    end
    sort(ranges, function(a, b) return a.first < b.first end)
    return ranges
end

-- The "host:port" serving `slot` in `map`, or nil when no range holds it (a map being resharded).
function _M.node_for(map, slot)
    local low, high = 1, #map
    while low <= high do
        local middle = rshift(low + high, 1)
        local range = map[middle]
        if slot < range.first then
            high = middle - 1
        elseif slot > range.last then
            low = middle + 1
        else
            return range.node
        end
    end
    return nil
end

-- A redirection in an error reply: "MOVED <slot> <host:port>" (the slot has moved: refresh the
-- map) or "ASK <slot> <host:port>" (ask that node once, after ASKING). Returns the kind, the slot
-- and the node, or nil for any other error.
function _M.redirection(err)
    if type(err) ~= "string" then
        return nil
    end
    local kind, slot, node = match(err, "^(%u+) (%d+) (%S+:%d+)$")
    if kind ~= "MOVED" and kind ~= "ASK" then
        return nil
    end
    return kind, tonumber(slot), node
end

return _M
