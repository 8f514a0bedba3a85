-- Textual edits of a client's JSON request body. Re-encoding would change what the client sent
-- (number precision, empty arrays turning into objects), so the gateway edits the bytes it must
-- and leaves the rest untouched. Pure: no ngx I/O.
local cjson = require "cjson.safe"
local usage_json = require "tollgate.usage_json"

local null = cjson.null

local find = string.find
local sub = string.sub
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

local skip_space = usage_json.skip_space
local COLON, COMMA, OPEN_BRACE, CLOSE_BRACE = byte(":,{}", 1, 4)

-- End of the value starting at `i` (the body is valid JSON: cjson decoded it).
local function value_end(raw, i)
    local first = byte(raw, i)
    if first == QUOTE then
        return string_end(raw, i)
    end
    if OPEN[first] then
        return composite_end(raw, i)
    end
    return (find(raw, "[,}%]%s]", i) or (#raw + 1)) - 1
end

-- Calls visit(key, value_start, value_end) for each key of the object whose "{" is at `open`,
-- in order, with the key as written between its quotes (escapes undecoded); stops when visit
-- returns true.
local function each_key(raw, open, visit)
    local i = skip_space(raw, open + 1)
    if byte(raw, i) == CLOSE_BRACE then
        return
    end
    while byte(raw, i) == QUOTE do
        local e = string_end(raw, i)
        local colon = e and skip_space(raw, e + 1)
        if not colon or byte(raw, colon) ~= COLON then
            return
        end
        local vs = skip_space(raw, colon + 1)
        local ve = value_end(raw, vs)
        if not ve or visit(sub(raw, i + 1, e - 1), vs, ve) then
            return
        end
        i = skip_space(raw, ve + 1)
        if byte(raw, i) ~= COMMA then
            return
        end
        i = skip_space(raw, i + 1)
    end
end

-- Where the body's top-level object starts (its "{").
local function top_open(raw)
    return find(raw, "{", 1, true)
end

-- Span of the value of key `name` of the object at `open` (its own key, never a nested one),
-- or nil.
local function value_of(raw, open, name)
    local vs, ve
    each_key(raw, open, function(key, s, e)
        if key == name then
            vs, ve = s, e
            return true
        end
    end)
    return vs, ve
end

local function top_level_value(raw, name)
    return value_of(raw, top_open(raw), name)
end

-- The first key of `names` (a set) that the object at `open` holds more than once, or spells
-- with escapes (which every JSON reader decodes, but which a textual edit would miss), and
-- which of the two: nil when there is none. Other keys may repeat.
local function ambiguous_key(raw, open, names)
    local seen, found, why = {}, nil, nil
    each_key(raw, open, function(key)
        if find(key, "\\", 1, true) then
            local decoded = cjson.decode('"' .. key .. '"')
            if decoded and names[decoded] then
                found, why = decoded, "escaped"
                return true
            end
        elseif names[key] then
            if seen[key] then
                found, why = key, "repeated"
                return true
            end
            seen[key] = true
        end
    end)
    return found, why
end

-- '"name"' for a name, made once.
local QUOTED = setmetatable({}, { __index = function(quoted, name)
    local q = '"' .. name .. '"'
    quoted[name] = q
    return q
end })

-- ambiguous_key for the body's top level and the names `list` (the same as the set `names`),
-- when it may find one: a body without "\u" escapes that writes each name `parsed` (the body,
-- decoded) holds once cannot hold a name twice or escaped, and needs no walk over its keys.
function _M.ambiguous_field(raw, parsed, list, names)
    if not find(raw, "\\u", 1, true) then
        local once = true
        for i = 1, #list do
            local name = list[i]
            if parsed[name] ~= nil then
                local quoted = QUOTED[name]
                local s = find(raw, quoted, 1, true)
                if s and find(raw, quoted, s + 1, true) then
                    once = false
                    break
                end
            end
        end
        if once then
            return nil
        end
    end
    return ambiguous_key(raw, top_open(raw), names)
end

local INCLUDE_USAGE = { include_usage = true }

-- Asks an OpenAI chat/completions stream for its usage chunk. `stream_options` is the decoded
-- field: nil when absent, cjson null, or a table; the body holds it at most once, unescaped
-- (ambiguous_field). Returns the new body, or nil and an error.
function _M.request_stream_usage(raw, stream_options)
    -- Absent (the common case): added first in the object, with no scan of the body.
    if stream_options == nil then
        local s = top_open(raw)
        return sub(raw, 1, s) .. '"stream_options":{"include_usage":true},' .. sub(raw, s + 1)
    end
    local vs, ve = top_level_value(raw, "stream_options")
    if stream_options == null then
        return sub(raw, 1, vs - 1) .. '{"include_usage":true}' .. sub(raw, ve + 1)
    end
    if type(stream_options) ~= "table" or byte(raw, vs) ~= OPEN_BRACE then
        return nil, "stream_options must be an object"
    end
    local name = ambiguous_key(raw, vs, INCLUDE_USAGE)
    if name then
        return nil, "stream_options has include_usage more than once, or spelled with escapes: send it once, plainly"
    end
    local us, ue = value_of(raw, vs, "include_usage")
    if us then
        return sub(raw, 1, us - 1) .. "true" .. sub(raw, ue + 1)
    end
    local inner = byte(raw, skip_space(raw, vs + 1)) == CLOSE_BRACE and "" or ","
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
