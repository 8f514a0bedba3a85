-- Cost arithmetic in 64-bit integers: prices are nano-USD per million tokens, costs nano-USD.
-- Pure: no ngx I/O.
local _M = {}

local PER = 1000000LL

-- {record field, price field} for every usage class (docs/internals.md).
_M.CLASSES = {
    { "in", "input" },
    { "cr", "cached_input" },
    { "cw", "cache_write" },
    { "cw1h", "cache_write_1h" },
    { "out", "output" },
    { "rsn", "reasoning" },
}
local CLASSES = _M.CLASSES

local EXACT = 2 ^ 53

-- Σ tokens × price / 1e6, rounded half-up once. Returns a Lua number (exact below 2^53 nano-USD).
-- Doubles are exact while every product and the sum stay below 2^53 (the usual case, and much
-- cheaper than boxed 64-bit integers); larger figures take the int64 path.
function _M.cost(tokens, price)
    local sum = 0
    for i = 1, #CLASSES do
        local n = tokens[CLASSES[i][1]]
        if n and n > 0 then
            local product = n * price[CLASSES[i][2]]
            if product >= EXACT then
                sum = nil
                break
            end
            sum = sum + product
        end
    end
    if sum and sum < EXACT then
        local q = math.floor(sum / 1e6)
        local r = sum - q * 1e6
        if r * 2 >= 1e6 then
            q = q + 1
        end
        return q
    end
    local total = 0LL
    for i = 1, #CLASSES do
        local n = tokens[CLASSES[i][1]]
        if n and n > 0 then
            total = total + (0LL + n) * price[CLASSES[i][2]]
        end
    end
    local q, r = total / PER, total % PER
    if r * 2 >= PER then
        q = q + 1
    end
    return tonumber(q)
end

-- Worst-case cost of a request: every input byte a token at the dearest input class, plus
-- `max_output` tokens at the dearer of output and reasoning. Rounded up.
function _M.worst_case(input_tokens, max_output, price)
    local in_price = price.input
    if price.cache_write > in_price then in_price = price.cache_write end
    if price.cache_write_1h > in_price then in_price = price.cache_write_1h end
    if price.cached_input > in_price then in_price = price.cached_input end
    local out_price = price.output
    if price.reasoning > out_price then out_price = price.reasoning end
    local total = (0LL + input_tokens) * in_price + (0LL + max_output) * out_price
    local q = total / PER
    if total % PER ~= 0 then
        q = q + 1
    end
    return tonumber(q)
end

return _M
