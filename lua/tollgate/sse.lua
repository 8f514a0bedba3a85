-- Server-sent events: where each event of a byte buffer ends, and what one event carries.
-- Events end at an empty line (LF or CRLF line endings). Pure: no ngx I/O.
local find = string.find
local sub = string.sub
local byte = string.byte
local gmatch = string.gmatch

local LF, CR = 10, 13

local _M = {}

-- The end of the first empty line at or after `pos` (the second LF of "\n\n", "\r\n\r\n",
-- "\n\r\n" or "\r\n\n"), or nil. Plain finds only: a pattern such as "\r?\n\r?\n" costs
-- a match attempt at every byte, several microseconds per event.
local function event_end(buf, pos)
    while true do
        local lf = find(buf, "\n", pos, true)
        if not lf then
            return nil
        end
        local c = byte(buf, lf + 1)
        if c == LF then
            return lf + 1
        end
        if c == CR and byte(buf, lf + 2) == LF then
            return lf + 2
        end
        pos = lf + 1
    end
end

-- The end of the first "\n\n" at or after `pos`: event_end for a buffer without CR, one plain
-- find and no loop (a Lua loop here keeps LuaJIT from compiling the caller's loop over events).
local function lf_event_end(buf, pos)
    local lf = find(buf, "\n\n", pos, true)
    return lf and lf + 1
end

-- The event_end function for `buf`: the plain one unless `buf` holds a CR.
function _M.event_end_of(buf)
    return find(buf, "\r", 1, true) and event_end or lf_event_end
end

local DATA = "data: "

-- The data of one raw event (several data lines joined by "\n") and its event name.
function _M.parse(raw)
    -- The common shape, one "data: " line and nothing else, without patterns.
    if sub(raw, 1, 6) == DATA then
        local lf = find(raw, "\n", 7, true)
        local after = byte(raw, lf + 1)
        if after == nil or (after == LF or after == CR) and event_end(raw, lf) == #raw then
            return sub(raw, 7, byte(raw, lf - 1) == CR and lf - 2 or lf - 1), nil
        end
    end
    local data, name
    for line in gmatch(raw, "([^\r\n]*)\r?\n") do
        local field, value = line:match("^([%w_]+):? ?(.*)$")
        if field == "data" then
            data = data and (data .. "\n" .. value) or value
        elseif field == "event" then
            name = value
        end
    end
    return data, name
end

return _M
