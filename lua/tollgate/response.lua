-- Reads a provider's answer as it streams through the body filter: finds the usage, and for
-- OpenAI streams whose usage chunk the gateway asked for on the client's behalf, removes that
-- chunk and the `"usage":null` fields so the client sees what the provider would have sent it.
-- Pure: no ngx I/O.
local cjson = require "cjson.safe"
local ffi = require "ffi"
local MAX_TOKENS = require("tollgate.cost").MAX_TOKENS
local string_buffer = require "string.buffer"
local sse = require "tollgate.sse"
local usage = require "tollgate.usage"
local usage_classes = require "tollgate.usage_classes"
local usage_json = require "tollgate.usage_json"

local decode = cjson.decode
local null = cjson.null
local find = string.find
local sub = string.sub
local byte = string.byte
local gsub = string.gsub
local rep = string.rep
local concat = table.concat
local C = ffi.C
local cast = ffi.cast
local charp = ffi.typeof("const char *")
local new_buffer = string_buffer.new
local event_end_of = sse.event_end_of
local new_tab = require "table.new"
local type = type
local next = next

ffi.cdef [[
int memcmp(const void *s1, const void *s2, size_t n);
]]

local _M = {}

local MAX_EVENT = 4 * 1024 * 1024      -- an event larger than this is skipped, not read
local LARGE_EVENT = 64 * 1024          -- a partial event past this is collected, not re-read
local EVENT_END_MAX = 3                -- bytes of an event end ("\r\n\r\n") before its last
local MAX_WHOLE_BODY = 1024 * 1024     -- non-streamed answers up to this size are kept whole
local TAIL = 64 * 1024                 -- larger ones: only their tail is searched for usage
local MAX_ERROR_BODY = 64 * 1024       -- an answer without usage up to this size is read for an error

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

-- A parser for one answer. `declared`: the Content-Length the provider gave a stream that strip
-- mode edits, whose end is then padded back to that length.
function _M.new(format, is_stream, strip, declared)
    strip = strip and is_stream and format == "openai"
    return {
        format = format, stream = is_stream, strip = strip, out = strip and new_buffer() or nil,
        acc = new_tab(0, 8), rest = "", large = nil, parts = nil, size = 0, skipping = false, skipped = 0, bytes = 0,
        events = 0, first = nil, final = false, failed = false, declared = strip and declared or nil,
        sent = 0,
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
local USAGE_KEY = 'usage"'
local QUOTE = byte('"')
local COMMA = byte(",")

-- Whether an event has a `"usage"` key (plain finds for `usage"`, then the quote before it).
local function has_usage_key(ev)
    local pos = 1
    while true do
        local s = find(ev, USAGE_KEY, pos, true)
        if not s then
            return false
        end
        if byte(ev, s - 1) == QUOTE then
            return true
        end
        pos = s + 1
    end
end

-- An event that names usage: its usage is noted; in strip mode, returns what the client gets
-- instead ("" for nothing), or nil to pass it on unchanged.
local function usage_event(st, ev, strip)
    -- An OpenAI chunk with compact `"usage":null`: nothing to decode.
    local s = find(ev, NULL_TAIL, 1, true)
    if s and byte(ev, s - 1) == QUOTE then
        if not strip then
            return nil
        end
        s = s - 1
        if byte(ev, s - 1) == COMMA then
            return sub(ev, 1, s - 2) .. sub(ev, s + #COMPACT_NULL)
        end
        return without_null_usage(ev)
    end
    if not has_usage_key(ev) then
        return nil
    end
    local data = sse.parse(ev)
    local obj = data and data ~= "[DONE]" and decode(data)
    local u = obj and observe(st, obj)
    if not strip then
        return nil
    end
    if u == null then
        return without_null_usage(ev)
    end
    if type(u) == "table" and type(obj.choices) == "table" and next(obj.choices) == nil then
        return "" -- the usage-only chunk the client did not ask for
    end
    return nil
end

-- How an OpenAI chunk ends when `"usage":null` is its last field, as OpenAI writes it: strip
-- mode cuts the field off and closes the object again, without reading the event.
local NULL_LAST = ',"usage":null}\n\n'
local NULL_LAST_LEN = #NULL_LAST
local CLOSE_EVENT = "}\n\n"

-- Reads the complete events of `buf`. Only events holding `usage"` are looked at (the buffer is
-- searched for it once, the next match kept), so most events cost the search for their end.
-- In strip mode, edited events go to `out` (a string.buffer) with the unchanged bytes before
-- them. Returns where the unfinished event starts and how far `buf` went to `out`.
local function scan_events(st, buf, out)
    local base = cast(charp, buf)
    local event_end = event_end_of(buf)
    local pos, copied = 1, 1
    local key_at = find(buf, USAGE_KEY, 1, true)
    while true do
        local e = event_end(buf, pos)
        if not e then
            break
        end
        st.events = st.events + 1
        if st.events == 1 and e - pos < MAX_ERROR_BODY then
            st.first = sub(buf, pos, e) -- read only if the stream ends without usage (failed())
        end
        if key_at and key_at <= e then
            local cut = e - NULL_LAST_LEN + 1
            if cut > pos and C.memcmp(base + cut - 1, NULL_LAST, NULL_LAST_LEN) == 0 then
                if out then
                    out:putcdata(base + copied - 1, cut - copied):put(CLOSE_EVENT)
                    copied = e + 1
                end
            else
                local replacement = usage_event(st, sub(buf, pos, e), out ~= nil)
                if replacement then
                    out:putcdata(base + copied - 1, pos - copied):put(replacement)
                    copied = e + 1
                end
            end
            key_at = find(buf, USAGE_KEY, e + 1, true)
        end
        pos = e + 1
    end
    return pos, copied
end

local feed_stream

-- Inside an event over MAX_EVENT: only its end is looked for (in its last bytes, kept in
-- `st.rest`, and the chunk), the bytes pass on unread, and reading goes on after it.
local function skip_oversized(st, chunk, eof)
    local tail = st.rest
    local joined = tail .. chunk
    local e = event_end_of(joined)(joined, 1)
    if not e then
        st.skipped = st.skipped + #chunk
        st.rest = sub(joined, -EVENT_END_MAX)
        return nil
    end
    local split = e - #tail -- the chunk's bytes up to the skipped event's end
    st.skipping, st.rest = false, ""
    st.skipped = st.skipped + split
    st.events = st.events + 1
    local after = sub(chunk, split + 1)
    local replaced = feed_stream(st, after, eof)
    if replaced == nil then
        return nil
    end
    return sub(chunk, 1, split) .. replaced
end

-- Starts skipping the event `rest` (over MAX_EVENT); returns what strip mode passes on of it.
local function start_skipping(st, rest)
    st.skipping, st.skipped = true, st.skipped + #rest
    st.rest = sub(rest, -EVENT_END_MAX)
    return rest
end

-- Inside a large event (over LARGE_EVENT, kept in the parts of `st.large`): the new chunk alone
-- is searched for its end, with the last bytes before it, instead of re-joining and re-reading
-- the whole event at every chunk. Returns true when the caller reads on (the event ended or the
-- stream did, st.rest holding the event), else false and what the client gets now.
local function grow_large_event(st, chunk, eof)
    local large = st.large
    local probe = large.tail .. chunk
    local ended = eof or event_end_of(probe)(probe, 1)
    large.n, large.size = large.n + 1, large.size + #chunk
    large[large.n] = chunk
    st.large = nil
    if ended then
        st.rest = concat(large, "", 1, large.n)
        return true
    end
    if large.size > MAX_EVENT then
        local event = start_skipping(st, concat(large, "", 1, large.n))
        return false, st.out and event or nil
    end
    large.tail = sub(probe, -EVENT_END_MAX)
    st.large = large
    return false, st.out and "" or nil -- strip mode holds an event back until it is complete
end

feed_stream = function(st, chunk, eof)
    if st.skipping then
        return skip_oversized(st, chunk, eof)
    end
    if st.large then
        local read_on, now = grow_large_event(st, chunk, eof)
        if not read_on then
            return now
        end
        chunk = "" -- already in st.rest
    end
    local rest = st.rest
    local buf = rest == "" and chunk or (rest .. chunk)
    local out = st.out
    local pos, copied = scan_events(st, buf, out)
    rest = pos == 1 and buf or sub(buf, pos)
    local oversized = #rest > MAX_EVENT
    if oversized then
        start_skipping(st, rest)
    elseif #rest > LARGE_EVENT and not eof then
        st.large = { rest, n = 1, size = #rest, tail = sub(rest, -EVENT_END_MAX) }
        st.rest = ""
    else
        st.rest = rest
    end
    if not out then
        return nil
    end
    if copied == 1 and rest == "" and buf == chunk then
        return nil -- complete events, none edited
    end
    out:putcdata(cast(charp, buf) + copied - 1, pos - copied)
    if oversized or eof then
        out:put(rest) -- an oversized or unterminated event goes on as it came
    end
    local text = out:tostring()
    out:reset()
    return text
end

-- A stream whose length the provider declared keeps it: the bytes strip mode cut are made up at
-- its end by an SSE comment line (":" and spaces), which clients skip.
local function keep_declared_length(st, text, eof)
    st.sent = st.sent + #text
    local short = st.bytes - st.sent
    if not eof or short <= 0 then
        return text
    end
    st.sent = st.bytes
    return text .. (short == 1 and "\n" or ":" .. rep(" ", short - 2) .. "\n")
end

local COLON, OPEN_BRACE = byte(":{", 1, 2)
local skip_space = usage_json.skip_space

-- Where the object value of a `"usage"` key starts (its "{"), for every such key in order.
local function usage_object_starts(text)
    local starts, pos = {}, 1
    while true do
        local s = find(text, 'usage"', pos, true)
        if not s then
            return starts
        end
        pos = s + 6
        if byte(text, s - 1) == QUOTE then
            local colon = skip_space(text, pos)
            if byte(text, colon) == COLON then
                local open = skip_space(text, colon + 1)
                if byte(text, open) == OPEN_BRACE then
                    starts[#starts + 1] = open
                end
            end
        end
    end
end

-- The object starting at `start`, decoded. Usage objects hold numbers and nested objects only,
-- so their braces balance; plain finds step from brace to brace.
local function object_at(text, start)
    local depth, i = 1, start
    local open = find(text, "{", i + 1, true)
    while true do
        local close = find(text, "}", i + 1, true)
        if not close then
            return nil
        end
        if open and open < close then
            depth, i = depth + 1, open
            open = find(text, "{", i + 1, true)
        else
            depth, i = depth - 1, close
            if depth == 0 then
                return usage_json.decode(text, start, close)
            end
        end
    end
end

-- Whether a decoded answer or event is an error: OpenAI's {"error": {...}} (not null: a Responses
-- event carries "error": null), Anthropic's and the Responses API's {"type": "error", ...}.
local function is_error(obj)
    if type(obj) ~= "table" then
        return false
    end
    local err = obj.error
    return (err ~= nil and err ~= null) or obj.type == "error"
end

-- Notes the usage of a whole (non-streamed) answer: the last `"usage"` object that reports
-- tokens in this format (else the last `"usage"` object). Providers put it at the top level,
-- after the content; decoding it alone keeps the cost independent of the answer's size (a long
-- completion, embedding vectors).
local function observe_answer(st, text)
    local starts = usage_object_starts(text)
    local last
    for i = #starts, 1, -1 do
        local u = object_at(text, starts[i])
        if type(u) == "table" then
            local acc = new_tab(0, 8)
            usage.observe(acc, st.format, u)
            if acc.reported > 0 then
                st.acc, st.final = acc, true
                return
            end
            last = last or u
        end
    end
    if last then
        st.final = usage.observe(st.acc, st.format, last)
    elseif #starts == 0 and #text <= MAX_ERROR_BODY then
        st.failed = is_error(decode(text))
    end
end

-- Collects a whole answer's chunks; returns the answer at its end (only the tail of a very
-- large one).
local function collect_whole(st, chunk, eof)
    local parts = st.parts
    if eof and not parts then
        return chunk -- the whole answer in one chunk: no copy
    end
    if chunk ~= "" then
        parts = parts or {}
        st.parts = parts
        parts[#parts + 1] = chunk
        st.size = st.size + #chunk
        if st.size > MAX_WHOLE_BODY and #parts > 1 then
            st.parts = { sub(concat(parts), -TAIL) }
        end
    end
    if eof then
        st.parts = nil
        return #parts == 1 and parts[1] or concat(parts) -- one chunk, the usual answer: no copy
    end
    return nil
end

-- Feeds one body chunk. Returns the replacement chunk (a string), or nil to pass it through
-- unchanged.
function _M.feed(st, chunk, eof)
    st.bytes = st.bytes + #chunk
    if st.stream then
        if st.declared then
            return keep_declared_length(st, feed_stream(st, chunk, eof) or chunk, eof)
        end
        return feed_stream(st, chunk, eof)
    end
    local text = collect_whole(st, chunk, eof)
    if text then
        observe_answer(st, text)
    end
    return nil
end

-- The disjoint usage classes seen so far (nil when none), whether they are the provider's final
-- figures, and whether the provider reported a figure that is not a valid token count.
function _M.usage(st)
    return usage.classes(st.acc, st.format), st.final, st.acc.invalid == true
end

-- Whether the answer is an error: an error object, or a stream whose first event is one.
function _M.failed(st)
    if st.stream then
        local data = st.first and sse.parse(st.first)
        return data ~= nil and is_error(decode(data))
    end
    return st.failed
end

-- Whether a stream had an event too large to read (skipped, so its usage, if any, is unknown).
function _M.skipped(st)
    return st.skipped > 0
end

-- The record fields of the usage classes on each side of a request (usage_classes.lua).
local SIDES = { input = {}, output = {} }
for i = 1, #usage_classes do
    local class = usage_classes[i]
    local fields = SIDES[class.side]
    fields[#fields + 1] = class.field
end

local function total(t, fields)
    local n = 0
    for i = 1, #fields do
        n = n + t[fields[i]]
    end
    return n
end

-- Estimated usage of an answer that ended before its final usage: what the provider reported so
-- far, the input (as uncached input) at about 4 bytes a token, and one output token per event
-- (4 bytes a token for events too large to read, and for a non-streamed answer) received, as
-- output. At most MAX_TOKENS a class.
function _M.estimate(st, request_bytes)
    local t = usage.classes(st.acc, st.format) or usage.zero()
    if total(t, SIDES.input) == 0 then
        t["in"] = math.ceil(request_bytes / 4)
    end
    local received = st.stream and st.events + math.ceil(st.skipped / 4) or math.ceil(st.bytes / 4)
    if received > MAX_TOKENS then
        received = MAX_TOKENS
    end
    local output = total(t, SIDES.output)
    if output < received then
        t.out = t.out + received - output
    end
    return t
end

return _M
