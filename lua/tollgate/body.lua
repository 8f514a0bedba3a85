-- Textual edits of a client's JSON request body. Re-encoding would change what the client sent
-- (number precision, empty arrays turning into objects), so the gateway edits the bytes it must
-- and leaves the rest untouched. Pure: no ngx I/O.
local null = require("cjson.safe").null

local find = string.find
local sub = string.sub
local gsub = string.gsub
local byte = string.byte

local _M = {}

local QUOTE, BACKSLASH = byte('"'), byte("\\")
local OPEN = { [byte("{")] = true, [byte("[")] = true }
local CLOSE = { [byte("}")] = true, [byte("]")] = true }

-- End of the JSON string starting at the quote at `i`: the next quote not escaped by an odd
-- number of backslashes (plain finds: a character-class pattern costs a match attempt a byte).
local function string_end(raw, i)
    local j = i
    while true do
        j = find(raw, '"', j + 1, true)
        if not j then
            return nil
        end
        local k = j - 1
        while byte(raw, k) == BACKSLASH do
            k = k - 1
        end
        if (j - 1 - k) % 2 == 0 then
            return j
        end
    end
end

-- End of the object or array starting at `i`.
local function composite_end(raw, i)
    local depth = 0
    while true do
        local c = byte(raw, i)
        if c == QUOTE then
            i = string_end(raw, i)
            if not i then
                return nil
            end
        elseif OPEN[c] then
            depth = depth + 1
        elseif CLOSE[c] then
            depth = depth - 1
            if depth == 0 then
                return i
            end
        end
        i = find(raw, '[{}%[%]"]', i + 1)
        if not i then
            return nil
        end
    end
end

-- Span of the value of top-level key `name` (the object's own key, never a nested one), or nil.
local function top_level_value(raw, name)
    local depth, i = 0, 1
    while true do
        i = find(raw, '[{}%[%]"]', i)
        if not i then
            return nil
        end
        local c = byte(raw, i)
        if c == QUOTE then
            local e = string_end(raw, i)
            if not e then
                return nil
            end
            if depth == 1 and sub(raw, i + 1, e - 1) == name then
                local _, colon = find(raw, "^%s*:%s*", e + 1)
                if colon then
                    local vs = colon + 1
                    local first = byte(raw, vs)
                    if first == QUOTE then
                        return vs, string_end(raw, vs)
                    end
                    if OPEN[first] then
                        return vs, composite_end(raw, vs)
                    end
                    local ve = (find(raw, "[,}%s]", vs) or (#raw + 1)) - 1
                    return vs, ve
                end
            end
            i = e + 1
        else
            depth = depth + (OPEN[c] and 1 or -1)
            i = i + 1
        end
    end
end

-- Asks an OpenAI chat/completions stream for its usage chunk. `stream_options` is the decoded
-- field: nil when absent, cjson null, or a table. Returns the new body, or nil and an error.
function _M.request_stream_usage(raw, stream_options)
    -- Absent (the common case): added first in the object, with no scan of the body.
    local vs, ve
    if stream_options ~= nil then
        vs, ve = top_level_value(raw, "stream_options")
    end
    if stream_options == nil or stream_options == null or not vs then
        if vs then
            return sub(raw, 1, vs - 1) .. '{"include_usage":true}' .. sub(raw, ve + 1)
        end
        local s = find(raw, "{", 1, true)
        return sub(raw, 1, s) .. '"stream_options":{"include_usage":true},' .. sub(raw, s + 1)
    end
    if type(stream_options) ~= "table" then
        return nil, "stream_options must be an object"
    end
    local value = sub(raw, vs, ve)
    if byte(value, 1) ~= byte("{") then
        return nil, "stream_options must be an object"
    end
    if stream_options.include_usage ~= nil then
        local out, n = gsub(value, '("include_usage"%s*:%s*)[%a]+', "%1true", 1)
        if n == 1 then
            return sub(raw, 1, vs - 1) .. out .. sub(raw, ve + 1)
        end
    end
    local inner = find(value, "^{%s*}$") and "" or ","
    return sub(raw, 1, vs) .. '"include_usage":true' .. inner .. sub(raw, vs + 1)
end

-- Replaces the value of the top-level "model" with `to` (a plain, JSON-safe name).
function _M.replace_model(raw, to)
    local vs, ve = top_level_value(raw, "model")
    if not vs then
        return nil, "model field not found"
    end
    return sub(raw, 1, vs - 1) .. '"' .. to .. '"' .. sub(raw, ve + 1)
end

return _M
