-- Server-sent events: splits a byte buffer into complete events plus the unconsumed rest.
-- Events end at an empty line (LF or CRLF line endings). Pure: no ngx I/O.
local find = string.find
local sub = string.sub
local gmatch = string.gmatch

local _M = {}

-- Calls on_event(a, raw_event_text, b) for every complete event in `buf`; returns the rest.
function _M.each_event(buf, on_event, a, b)
    local pos = 1
    while true do
        local _, e = find(buf, "\r?\n\r?\n", pos)
        if not e then
            break
        end
        on_event(a, sub(buf, pos, e), b)
        pos = e + 1
    end
    if pos == 1 then
        return buf
    end
    return sub(buf, pos)
end

-- The data of one raw event (several data lines joined by "\n") and its event name.
function _M.parse(raw)
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
