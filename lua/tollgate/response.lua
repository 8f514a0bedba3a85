-- Reads a provider's answer as it streams through the body filter: finds the usage, and for
-- OpenAI streams whose usage chunk the gateway asked for on the client's behalf, removes that
-- chunk and the `"usage":null` fields so the client sees what the provider would have sent it.
-- Pure: no ngx I/O.
local cjson = require "cjson.safe"
local sse = require "tollgate.sse"
local usage = require "tollgate.usage"

local decode = cjson.decode
local null = cjson.null
local find = string.find
local sub = string.sub
local byte = string.byte
local gsub = string.gsub
local concat = table.concat
local clear = require "table.clear"
local type = type
local next = next

local _M = {}

local MAX_EVENT = 4 * 1024 * 1024      -- an unterminated event larger than this stops parsing
local MAX_WHOLE_BODY = 1024 * 1024     -- non-streamed answers up to this size are decoded whole
local TAIL = 64 * 1024                 -- larger ones: only their tail is searched for usage

-- Where each format keeps its usage in a decoded JSON object (stream event or whole answer),
-- and whether that usage is the answer's final figure. Anthropic's message_start carries the
-- input side only; the closing message_delta has the final counts.
local locate = {
    openai = function(obj)
        return obj.usage, true
    end,
    responses = function(obj)
        local r = obj.response
        if type(r) == "table" then
            return r.usage, true
        end
        return obj.usage, true
    end,
    anthropic = function(obj)
        local m = obj.message
        if type(m) == "table" and m.usage ~= nil then
            return m.usage, false
        end
        return obj.usage, true
    end,
}

function _M.new(format, is_stream, strip)
    strip = strip and is_stream and format == "openai"
    return {
        format = format, stream = is_stream, strip = strip, out = strip and {} or nil,
        acc = {}, rest = nil, parts = nil, size = 0, broken = false, bytes = 0, events = 0,
        final = false,
    }
end

local function observe(st, obj, whole)
    if type(obj) ~= "table" then
        return nil
    end
    local u, final = locate[st.format](obj)
    if u ~= nil and u ~= null and usage.observe(st.acc, st.format, u) then
        st.final = st.final or final or whole
    end
    return u
end

local function without_null_usage(ev)
    local out, n = gsub(ev, ',%s*"usage"%s*:%s*null', "", 1)
    if n == 0 then
        out = gsub(ev, '"usage"%s*:%s*null%s*,?', "", 1)
    end
    return out
end

local COMPACT_NULL = '"usage":null'
local NULL_TAIL = 'usage":null' -- searched without its quote: '"' is everywhere in JSON
local QUOTE = byte('"')

-- Whether an event has a `"usage"` key (plain finds for `usage"`, then the quote before it).
local function has_usage_key(ev)
    local pos = 1
    while true do
        local s = find(ev, 'usage"', pos, true)
        if not s then
            return false
        end
        if byte(ev, s - 1) == QUOTE then
            return true
        end
        pos = s + 1
    end
end
local COMMA = byte(",")

-- One complete SSE event: note its usage; in strip mode return what the client gets.
local function on_event(st, ev, out)
    st.events = st.events + 1
    -- The common case, an OpenAI chunk with compact `"usage":null`: nothing to decode.
    local s = find(ev, NULL_TAIL, 1, true)
    if s and byte(ev, s - 1) == QUOTE then
        s = s - 1
        if out then
            if byte(ev, s - 1) == COMMA then
                out[#out + 1] = sub(ev, 1, s - 2)
                out[#out + 1] = sub(ev, s + #COMPACT_NULL)
            else
                out[#out + 1] = without_null_usage(ev)
            end
        end
        return
    end
    if not has_usage_key(ev) then
        if out then out[#out + 1] = ev end
        return
    end
    local data = sse.parse(ev)
    local obj = data and data ~= "[DONE]" and decode(data)
    local u = obj and observe(st, obj)
    if not out then
        return
    end
    if u == null then
        out[#out + 1] = without_null_usage(ev)
    elseif type(u) == "table" and type(obj.choices) == "table" and next(obj.choices) == nil then
        return -- the usage-only chunk the client did not ask for
    else
        out[#out + 1] = ev
    end
end

local function feed_stream(st, chunk, eof)
    local rest = st.rest
    local buf = (rest and rest ~= "") and (rest .. chunk) or chunk
    local out = st.out
    if not st.broken then
        st.rest = sse.each_event(buf, on_event, st, out)
        if #st.rest > MAX_EVENT then
            st.broken = true
        end
    end
    if not out then
        return nil
    end
    if st.broken then
        out[#out + 1] = st.rest or chunk
        st.rest = nil
    elseif eof and st.rest ~= "" then
        out[#out + 1] = st.rest
        st.rest = nil
    end
    local n = #out
    local result = n == 1 and out[1] or (n == 2 and out[1] .. out[2]) or concat(out)
    clear(out)
    return result
end

-- Finds the last `"usage": {...}` object in a text and decodes it (for answers too large to
-- decode whole). Usage objects hold numbers and nested objects only, so braces balance.
local function last_usage_object(text)
    local pos, last = 1, nil
    while true do
        local s, e = find(text, '"usage"%s*:%s*{', pos)
        if not s then break end
        last, pos = e, e + 1
    end
    if not last then
        return nil
    end
    local depth, i = 0, last
    while i <= #text do
        local c = sub(text, i, i)
        if c == "{" then
            depth = depth + 1
        elseif c == "}" then
            depth = depth - 1
            if depth == 0 then
                return decode(sub(text, last, i))
            end
        end
        i = i + 1
    end
    return nil
end

local function feed_whole(st, chunk, eof)
    if chunk ~= "" then
        st.parts = st.parts or {}
        st.parts[#st.parts + 1] = chunk
        st.size = st.size + #chunk
        if st.size > MAX_WHOLE_BODY and #st.parts > 1 then
            local joined = concat(st.parts)
            st.parts = { sub(joined, -TAIL) }
            st.truncated = true
        end
    end
    if eof and st.parts then
        local text = concat(st.parts)
        st.parts = nil
        if st.truncated then
            local u = last_usage_object(text)
            if u and usage.observe(st.acc, st.format, u) then
                st.final = true
            end
        else
            observe(st, decode(text), true)
        end
    end
    return nil
end

-- Feeds one body chunk. Returns the replacement chunk, or nil to pass it through unchanged.
function _M.feed(st, chunk, eof)
    st.bytes = st.bytes + #chunk
    if st.stream then
        return feed_stream(st, chunk, eof)
    end
    return feed_whole(st, chunk, eof)
end

-- The disjoint usage classes seen so far (nil when none), and whether they are the provider's
-- final figures.
function _M.usage(st)
    return usage.classes(st.acc, st.format), st.final
end

-- Estimated usage of an answer that ended before its final usage: what the provider reported so
-- far, the input at about 4 bytes a token, and one output token per event (or per 4 bytes of a
-- non-streamed answer) received.
function _M.estimate(st, request_bytes)
    local t = usage.classes(st.acc, st.format)
        or { ["in"] = 0, cr = 0, cw = 0, cw1h = 0, out = 0, rsn = 0 }
    if t["in"] + t.cr + t.cw + t.cw1h == 0 then
        t["in"] = math.ceil(request_bytes / 4)
    end
    local received = st.stream and st.events or math.ceil(st.bytes / 4)
    if t.out + t.rsn < received then
        t.out = received - t.rsn
    end
    return t
end

return _M
