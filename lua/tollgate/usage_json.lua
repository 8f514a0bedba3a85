-- Decodes a usage object: JSON objects whose values are numbers, nested objects, literals and
-- strings, without escapes, which is what providers report usage as. Scanning it in Lua costs a
-- fraction of cjson.decode, whose C calls and table growth dominate for such small objects;
-- anything outside that subset (arrays, escapes) is left to cjson. Pure: no ngx I/O.
local cjson = require "cjson.safe"
local new_tab = require "table.new"

local byte = string.byte
local find = string.find
local sub = string.sub
local tonumber = tonumber

local _M = {}

local SPACE, TAB, NEWLINE, RETURN = byte(" \t\n\r", 1, 4)
local QUOTE, COLON, COMMA = byte('":,', 1, 3)
local OPEN_BRACE, CLOSE_BRACE = byte("{}", 1, 2)
local MINUS, PLUS, DOT, ZERO, NINE = byte("-+.09", 1, 5)
local LOWER_E, UPPER_E = byte("eE", 1, 2)
local LOWER_T, LOWER_F, LOWER_N = byte("tfn", 1, 3)

local LITERALS = { [LOWER_T] = { "true", true }, [LOWER_F] = { "false", false }, [LOWER_N] = { "null", cjson.null } }

-- The position of the first byte at or after `i` that is not JSON whitespace.
local function skip_space(text, i)
    local c = byte(text, i)
    while c == SPACE or c == NEWLINE or c == RETURN or c == TAB do
        i = i + 1
        c = byte(text, i)
    end
    return i
end
_M.skip_space = skip_space

local function is_number_byte(c)
    return (c >= ZERO and c <= NINE) or c == DOT or c == MINUS or c == PLUS or c == LOWER_E
        or c == UPPER_E
end

-- The string starting at the quote at `i` and the position after it, or nil (decode has ruled
-- out escapes).
local function plain_string(text, i)
    local close = find(text, '"', i + 1, true)
    if not close then
        return nil
    end
    return sub(text, i + 1, close - 1), close + 1
end

local EXACT = 2 ^ 53

local parse_object

-- The value at `i` and the position after it, or nil when it is outside the subset.
local function parse_value(text, i)
    local c = byte(text, i)
    if c == OPEN_BRACE then
        return parse_object(text, i)
    elseif c == QUOTE then
        return plain_string(text, i)
    elseif c and ((c >= ZERO and c <= NINE) or c == MINUS) then
        local j = i + 1
        if c ~= MINUS then -- an integer, the usual figure, is summed up as it is read
            local n = c - ZERO
            c = byte(text, j)
            while c and c >= ZERO and c <= NINE do
                n = n * 10 + (c - ZERO)
                j = j + 1
                c = byte(text, j)
            end
            if c ~= DOT and c ~= LOWER_E and c ~= UPPER_E and n < EXACT then
                return n, j
            end
        end
        c = byte(text, j)
        while c and is_number_byte(c) do
            j = j + 1
            c = byte(text, j)
        end
        local n = tonumber(sub(text, i, j - 1))
        if not n then
            return nil
        end
        return n, j
    end
    local literal = c and LITERALS[c]
    if literal and sub(text, i, i + #literal[1] - 1) == literal[1] then
        return literal[2], i + #literal[1]
    end
    return nil
end

-- The object at `i` ("{") and the position after its "}", or nil.
parse_object = function(text, i)
    local obj = new_tab(0, 8) -- sized for a usage object: no rehash while it fills
    i = skip_space(text, i + 1)
    if byte(text, i) == CLOSE_BRACE then
        return obj, i + 1
    end
    while true do
        if byte(text, i) ~= QUOTE then
            return nil
        end
        local key
        key, i = plain_string(text, i)
        if not key then
            return nil
        end
        i = skip_space(text, i)
        if byte(text, i) ~= COLON then
            return nil
        end
        local value
        value, i = parse_value(text, skip_space(text, i + 1))
        if value == nil then
            return nil
        end
        obj[key] = value
        i = skip_space(text, i)
        local c = byte(text, i)
        if c == CLOSE_BRACE then
            return obj, i + 1
        elseif c ~= COMMA then
            return nil
        end
        i = skip_space(text, i + 1)
    end
end

-- The object text[start..finish] ("{" to its "}"), decoded; nil when it is not valid JSON.
function _M.decode(text, start, finish)
    local escape = find(text, "\\", start, true)
    if not escape or escape > finish then
        local obj, after = parse_object(text, start)
        if obj and after == finish + 1 then
            return obj
        end
    end
    return cjson.decode(sub(text, start, finish))
end

return _M
