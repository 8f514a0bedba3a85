-- sse.lua: events split off a byte buffer, and the data / name of one event.
local sse = require "tollgate.sse"
local t = require "runner"

-- Splits `buf` at every event end: the complete events and the rest, as the response parser does.
local function split(buf, events)
    local event_end = sse.event_end_of(buf)
    local pos = 1
    while true do
        local e = event_end(buf, pos)
        if not e then
            return buf:sub(pos)
        end
        events[#events + 1] = buf:sub(pos, e)
        pos = e + 1
    end
end

local function collect(buf)
    local events = {}
    local rest = split(buf, events)
    return events, rest
end

-- Feeds `chunks` one after another as the response parser does; returns all events.
local function stream(chunks)
    local events, rest = {}, ""
    for _, chunk in ipairs(chunks) do
        rest = split(rest .. chunk, events)
    end
    return events, rest
end

local tests = {}

tests["LF events are split at blank lines, the rest kept"] = function()
    local events, rest = collect("data: a\n\ndata: b\n\ndata: c")
    t.eq(events, { "data: a\n\n", "data: b\n\n" }, "events")
    t.eq(rest, "data: c", "rest")
end

tests["CRLF events are split at blank lines"] = function()
    local events, rest = collect("event: x\r\ndata: 1\r\n\r\nevent: y\r\ndata: 2\r\n\r\n")
    t.eq(events, { "event: x\r\ndata: 1\r\n\r\n", "event: y\r\ndata: 2\r\n\r\n" }, "events")
    t.eq(rest, "", "rest")
end

tests["a buffer without a complete event comes back whole"] = function()
    local events, rest = collect("data: {\"a\":1}\n")
    t.eq(#events, 0, "events")
    t.eq(rest, "data: {\"a\":1}\n", "rest")
end

tests["an empty buffer gives no events and an empty rest"] = function()
    local events, rest = collect("")
    t.eq(#events, 0, "events")
    t.eq(rest, "", "rest")
end

tests["CRLF blank line split across chunks at every position"] = function()
    local text = "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\nevent: message_stop\r\ndata: {}\r\n\r\n"
    for i = 1, #text - 1 do
        local events, rest = stream({ text:sub(1, i), text:sub(i + 1) })
        t.eq(events, { "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n",
            "event: message_stop\r\ndata: {}\r\n\r\n" }, "split at " .. i)
        t.eq(rest, "", "rest at " .. i)
    end
end

tests["one byte at a time gives the same events as the whole buffer"] = function()
    local text = ": keep-alive\n\ndata: {\"x\":\"naïve 日本語 🎉\"}\n\ndata: [DONE]\n\n"
    local bytes = {}
    for i = 1, #text do bytes[i] = text:sub(i, i) end
    t.eq(stream(bytes), (collect(text)), "events")
end

tests["event ends are found from the given position on, LF or CRLF"] = function()
    for _, buf in ipairs({ "data: 1\n\ndata: 2\n\n", "data: 1\r\n\r\ndata: 2\r\n\r\n" }) do
        local event_end = sse.event_end_of(buf)
        local first = event_end(buf, 1)
        t.eq(buf:sub(1, first), buf:sub(1, #buf / 2), "first event")
        t.eq(event_end(buf, first + 1), #buf, "second event")
        t.eq(event_end(buf, #buf + 1), nil, "past the end")
    end
end

tests["parse gives the data and the event name"] = function()
    local data, name = sse.parse("event: message_delta\ndata: {\"type\":\"message_delta\"}\n\n")
    t.eq(data, "{\"type\":\"message_delta\"}", "data")
    t.eq(name, "message_delta", "name")
end

tests["parse handles CRLF lines"] = function()
    local data, name = sse.parse("event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n")
    t.eq(data, "{\"type\": \"ping\"}", "data")
    t.eq(name, "ping", "name")
end

tests["parse of a single data line, LF or CRLF, gives its data without the line ending"] = function()
    t.eq(sse.parse("data: {\"a\":1}\n\n"), "{\"a\":1}", "LF")
    t.eq(sse.parse("data: {\"a\":1}\r\n\r\n"), "{\"a\":1}", "CRLF")
    t.eq(sse.parse("data: {\"a\":1}\r\n\n"), "{\"a\":1}", "CRLF then LF")
end

tests["parse joins several data lines with LF"] = function()
    t.eq(sse.parse("data: {\"a\":\ndata: 1}\n\n"), "{\"a\":\n1}", "data")
end

tests["parse accepts data without a space after the colon"] = function()
    t.eq(sse.parse("data:{\"a\":1}\n\n"), "{\"a\":1}", "data")
end

tests["parse keeps only one leading space of the value"] = function()
    t.eq(sse.parse("data:  x\n\n"), " x", "data")
end

tests["parse ignores comment lines and unknown fields"] = function()
    local data, name = sse.parse(": keep-alive\nid: 7\nretry: 1000\ndata: [DONE]\n\n")
    t.eq(data, "[DONE]", "data")
    t.eq(name, nil, "name")
end

tests["parse of a comment-only event has no data"] = function()
    t.eq(sse.parse(": keep-alive\n\n"), nil, "data")
end

tests["parse keeps colons inside the value"] = function()
    t.eq(sse.parse("data: {\"t\":\"a: b\"}\n\n"), "{\"t\":\"a: b\"}", "data")
end

return tests
