-- Cost arithmetic: prices are nano-USD per million tokens, costs nano-USD. Pure: no ngx I/O.
--
-- Exact in plain Lua numbers (doubles) within the bounds below: a price p is split into whole
-- nano-USD per token a = floor(p / 1e6) and the rest b = p - a * 1e6, so that
-- Σ n × p / 1e6 = Σ n × a + (Σ n × b) / 1e6, and every product and sum stays below 2^53 (where
-- doubles hold integers exactly): n × a ≤ 1e8 × 1e7 = 1e15, n × b < 1e8 × 1e6 = 1e14, six
-- classes at most. Nothing can overflow or wrap: figures outside the bounds never get here
-- (usage.lua validates a provider's counts, request.lua a client's parameters, catalog.lua the
-- published prices).
local usage_classes = require "tollgate.usage_classes"

local floor = math.floor

local _M = {}

_M.MAX_TOKENS = 100000000     -- per usage class of one request (10^8)
_M.MAX_PRICE = 10000000000000 -- nano-USD per 1M tokens ($10,000), per class

local MILLION = 1000000

-- Each usage class's record field and price field, by class (usage_classes.lua).
local FIELDS, PRICES = {}, {}
for i, class in ipairs(usage_classes) do
    FIELDS[i], PRICES[i] = class.field, class.price
end
local CLASSES = #usage_classes

-- Σ tokens × price / 1e6, rounded half-up once. Counts are integers from 0 to MAX_TOKENS.
function _M.cost(tokens, price)
    local whole, rest = 0, 0
    for i = 1, CLASSES do
        local n = tokens[FIELDS[i]]
        if n and n > 0 then
            local p = price[PRICES[i]]
            local a = floor(p / MILLION)
            whole = whole + n * a
            rest = rest + n * (p - a * MILLION)
        end
    end
    local q = floor(rest / MILLION)
    if (rest - q * MILLION) * 2 >= MILLION then
        q = q + 1
    end
    return whole + q
end

-- The dearest price a request's input tokens can be charged at, and its output tokens: the
-- classes of each side in usage_classes.lua, spelled out (spec_usage_classes checks them).
local function dearest(price)
    local in_price = price.input
    if price.cache_write > in_price then in_price = price.cache_write end
    if price.cache_write_1h > in_price then in_price = price.cache_write_1h end
    if price.cached_input > in_price then in_price = price.cached_input end
    local out_price = price.output
    if price.reasoning > out_price then out_price = price.reasoning end
    return in_price, out_price
end

-- Worst-case cost of a request: `input_tokens` at the dearest input class plus `output_tokens`
-- at the dearer of output and reasoning, rounded up. Both counts from 0 to MAX_TOKENS.
function _M.worst_case(input_tokens, output_tokens, price)
    local in_price, out_price = dearest(price)
    local a_in, a_out = floor(in_price / MILLION), floor(out_price / MILLION)
    local whole = input_tokens * a_in + output_tokens * a_out
    local rest = input_tokens * (in_price - a_in * MILLION) + output_tokens * (out_price - a_out * MILLION)
    local q = floor(rest / MILLION)
    if rest > q * MILLION then
        q = q + 1
    end
    return whole + q
end

-- The most output tokens per choice that `available` nano-USD pays for, with `input_tokens` of
-- input and `fan_out` choices, capped at `cap` (0 when not even the input fits).
function _M.affordable(available, input_tokens, fan_out, price, cap)
    local in_price, out_price = dearest(price)
    if out_price == 0 then
        return _M.worst_case(input_tokens, 0, price) <= available and cap or 0
    end
    -- An estimate in doubles, then corrected against the exact worst case.
    local n = floor((available * MILLION - input_tokens * in_price) / out_price / fan_out)
    if n > cap then n = cap end
    if n < 0 then n = 0 end
    while n > 0 and _M.worst_case(input_tokens, n * fan_out, price) > available do
        n = n - 1
    end
    while n < cap and _M.worst_case(input_tokens, (n + 1) * fan_out, price) <= available do
        n = n + 1
    end
    if n == 0 and _M.worst_case(input_tokens, 0, price) > available then
        return 0
    end
    return n
end

return _M
