-- Textual edits of a client's JSON request body. Re-encoding would change what the client sent
-- (number precision, empty arrays turning into objects), so the gateway edits the bytes it must
-- and leaves the rest untouched. Pure: no ngx I/O.
local find = string.find
local sub = string.sub
local gsub = string.gsub

local _M = {}

local function escape_pattern(s)
    return (gsub(s, "[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- Asks an OpenAI chat/completions stream for its usage chunk.
-- `stream_options` is the decoded field (nil when absent). Returns the new body.
function _M.request_stream_usage(raw, stream_options)
    if stream_options == nil then
        local s = find(raw, "{", 1, true)
        return sub(raw, 1, s) .. '"stream_options":{"include_usage":true},' .. sub(raw, s + 1)
    end
    if stream_options.include_usage == false then
        local out = gsub(raw, '"include_usage"%s*:%s*false', '"include_usage":true', 1)
        return out
    end
    local s, e = find(raw, '"stream_options"%s*:%s*{')
    if not s then
        return nil, "stream_options is not an object"
    end
    return sub(raw, 1, e) .. '"include_usage":true' .. (find(raw, "^%s*}", e + 1) and "" or ",")
        .. sub(raw, e + 1)
end

-- Replaces the top-level "model" value `from` with `to` (both plain, already JSON-safe names).
function _M.replace_model(raw, from, to)
    local pattern = '("model"%s*:%s*)"' .. escape_pattern(from) .. '"'
    local out, n = gsub(raw, pattern, '%1"' .. gsub(to, "%%", "%%%%") .. '"', 1)
    if n == 0 then
        return nil, "model field not found"
    end
    return out
end

return _M
