-- Text the gateway writes from values it did not make (a client's model name, a provider's error
-- message): valid UTF-8 always, so the JSON answers, the usage stream and the usage journal (read
-- as UTF-8 by the control plane) stay readable. Pure: no ngx I/O.
local byte = string.byte
local concat = table.concat
local find = string.find
local sub = string.sub

local _M = {}

_M.REPLACEMENT = "\239\191\189" -- U+FFFD
local REPLACEMENT = _M.REPLACEMENT

-- The UTF-8 sequence at byte `i` of `s`: its length and whether it is well-formed (RFC 3629: no
-- overlong forms, no surrogates, nothing above U+10FFFF). An ill-formed one is its longest
-- well-formed beginning, at least one byte, which becomes one U+FFFD: the Unicode standard's
-- recommended practice, as Python's decode(errors="replace") does.
function _M.sequence_at(s, i)
    local c = byte(s, i)
    if c < 0x80 then
        return 1, true
    end
    local n, low, high
    if c >= 0xC2 and c <= 0xDF then
        n, low, high = 2, 0x80, 0xBF
    elseif c == 0xE0 then
        n, low, high = 3, 0xA0, 0xBF
    elseif c == 0xED then
        n, low, high = 3, 0x80, 0x9F
    elseif c >= 0xE1 and c <= 0xEF then
        n, low, high = 3, 0x80, 0xBF
    elseif c == 0xF0 then
        n, low, high = 4, 0x90, 0xBF
    elseif c >= 0xF1 and c <= 0xF3 then
        n, low, high = 4, 0x80, 0xBF
    elseif c == 0xF4 then
        n, low, high = 4, 0x80, 0x8F
    else
        return 1, false
    end
    local b = byte(s, i + 1)
    if not b or b < low or b > high then
        return 1, false
    end
    for k = 2, n - 1 do
        b = byte(s, i + k)
        if not b or b < 0x80 or b > 0xBF then
            return k, false
        end
    end
    return n, true
end
local sequence_at = _M.sequence_at

-- `value` as one value of a tab-separated, one-a-line usage record (record.lua): valid UTF-8
-- (ill-formed bytes become U+FFFD), every control character (C0 — tab, newline, CR, NUL — DEL and
-- C1) a space, and at most `most` bytes, cut before the first character that does not fit whole.
function _M.field(value, most)
    if not find(value, "[%z\1-\31\127-\255]") then
        return #value <= most and value or sub(value, 1, most)
    end
    local out, size, i, len = {}, 0, 1, #value
    while i <= len do
        local c = byte(value, i)
        local n, piece = 1, nil
        if c < 0x20 or c == 0x7F then
            piece = " "
        elseif c < 0x80 then
            piece = sub(value, i, i)
        else
            local valid
            n, valid = sequence_at(value, i)
            if not valid then
                piece = REPLACEMENT
            elseif c == 0xC2 and byte(value, i + 1) < 0xA0 then
                piece = " " -- C1: U+0080 to U+009F
            else
                piece = sub(value, i, i + n - 1)
            end
        end
        size = size + #piece
        if size > most then
            break
        end
        out[#out + 1] = piece
        i = i + n
    end
    return concat(out)
end

return _M
