-- cost.lua: Σ tokens × price / 1e6, exact in doubles within the bounds, rounded half-up once;
-- the worst case rounded up; the output tokens a balance affords.
local cost = require "tollgate.cost"
local t = require "runner"

-- A price table with every field (nano-USD per 1M tokens); `p` overrides some.
local function price(p)
    local base = { input = 0, cached_input = 0, cache_write = 0, cache_write_1h = 0, output = 0, reasoning = 0 }
    for k, v in pairs(p or {}) do base[k] = v end
    return base
end

local function tokens(p)
    local base = { ["in"] = 0, cr = 0, cw = 0, cw1h = 0, out = 0, rsn = 0 }
    for k, v in pairs(p or {}) do base[k] = v end
    return base
end

local tests = {}

tests["exactly half a nano rounds up"] = function()
    t.eq(cost.cost(tokens({ ["in"] = 1 }), price({ input = 500000 })), 1, "0.5")
    t.eq(cost.cost(tokens({ ["in"] = 3 }), price({ input = 500000 })), 2, "1.5")
    t.eq(cost.cost(tokens({ ["in"] = 7777 }), price({ input = 37500000 })), 291638, "291637.5")
end

tests["fractions below a half round down and above a half round up"] = function()
    t.eq(cost.cost(tokens({ ["in"] = 1 }), price({ input = 499999 })), 0, "0.499999")
    t.eq(cost.cost(tokens({ cr = 1 }), price({ cached_input = 18750000 + 250000 })), 19, "19.0")
    t.eq(cost.cost(tokens({ cr = 1 }), price({ cached_input = 18750000 })), 19, "18.75")
    t.eq(cost.cost(tokens({ cr = 5 }), price({ cached_input = 18750000 })), 94, "93.75")
    t.eq(cost.cost(tokens({ cr = 3 }), price({ cached_input = 18750000 })), 56, "56.25")
end

tests["rounded once over the sum, not per class"] = function()
    -- 0.4 + 0.4 per class would round to 0 + 0; the sum 0.8 rounds to 1.
    t.eq(cost.cost(tokens({ ["in"] = 1, out = 1 }), price({ input = 400000, output = 400000 })), 1)
    -- 0.5 + 0.5 per class would round to 1 + 1; the sum is exactly 1.
    t.eq(cost.cost(tokens({ ["in"] = 1, out = 1 }), price({ input = 500000, output = 500000 })), 1)
end

tests["every class is charged at its own price"] = function()
    local p = price({ input = 1000000, cached_input = 2000000, cache_write = 3000000, cache_write_1h = 4000000,
        output = 5000000, reasoning = 6000000 })
    t.eq(cost.cost(tokens({ ["in"] = 1, cr = 10, cw = 100, cw1h = 1000, out = 10000, rsn = 100000 }), p),
        1 + 20 + 300 + 4000 + 50000 + 600000)
end

tests["zero, absent and negative counts cost nothing"] = function()
    local p = price({ input = 3000000000, output = 15000000000 })
    t.eq(cost.cost(tokens(), p), 0, "zeros")
    t.eq(cost.cost({}, p), 0, "absent")
    t.eq(cost.cost({ ["in"] = -10, out = 2 }, p), 30000, "negative")
end

tests["the cost is a plain Lua number"] = function()
    t.eq(type(cost.cost(tokens({ out = 3 }), price({ output = 1000000 }))), "number")
    t.eq(type(cost.worst_case(3, 4, price({ input = 1, output = 1 }))), "number")
end

tests["ten million tokens at $600 per million without overflow"] = function()
    -- 1e7 × 6e11 = 6e18 < 2^63: $6,000 exactly.
    t.eq(cost.cost(tokens({ out = 10000000 }), price({ output = 600000000000 })), 6000000000000)
    -- o1-pro: 1e7 in at $150 and 1e7 out at $600: 7.5e18 < 2^63, cost $7,500.
    t.eq(cost.cost(tokens({ ["in"] = 10000000, out = 10000000 }),
        price({ input = 150000000000, output = 600000000000 })), 7500000000000)
end

tests["large counts stay exact below 2^53 nano"] = function()
    -- 9,999,999 tokens at $599.999999/M: 5999999390000.001 nano → 5999999390000
    t.eq(cost.cost(tokens({ rsn = 9999999 }), price({ reasoning = 599999999000 })), 5999999390000)
    t.eq(cost.cost(tokens({ rsn = 9999999, ["in"] = 1 }), price({ reasoning = 599999999000, input = 500000 })),
        5999999390001)
end

tests["counts and prices decoded from JSON (doubles) are accepted"] = function()
    local cjson = require "cjson.safe"
    local p = cjson.decode('{"input":3000000000,"cached_input":300000000,"cache_write":3750000000,'
        .. '"cache_write_1h":6000000000,"output":15000000000,"reasoning":15000000000}')
    local u = cjson.decode('{"in":1021,"cr":20480,"cw":1536,"cw1h":2047,"out":733,"rsn":0}')
    t.eq(cost.cost(u, p), 38244000)
end

tests["worst case rounds any fraction up"] = function()
    t.eq(cost.worst_case(1, 0, price({ input = 1 })), 1, "1e-6 nano")
    t.eq(cost.worst_case(0, 1, price({ output = 1000001 })), 2, "1.000001")
    t.eq(cost.worst_case(2, 0, price({ input = 500000 })), 1, "exactly 1")
    t.eq(cost.worst_case(0, 0, price({ input = 5, output = 5 })), 0, "nothing")
end

tests["worst case takes the dearest input class and the dearer output class"] = function()
    local p = price({ input = 3000000000, cached_input = 300000000, cache_write = 3750000000,
        cache_write_1h = 6000000000, output = 15000000000, reasoning = 15000000000 })
    t.eq(cost.worst_case(1000, 100, p), 1000 * 6000 + 100 * 15000)
    p.reasoning = 20000000000
    t.eq(cost.worst_case(1000, 100, p), 1000 * 6000 + 100 * 20000)
    p.cached_input = 7000000000 -- unusual, but the worst case must still cover it
    t.eq(cost.worst_case(1000, 0, p), 1000 * 7000)
end

tests["worst case of a 10 MB body at $150 per million plus 100k output at $600"] = function()
    t.eq(cost.worst_case(10000000, 100000, price({ input = 150000000000, output = 600000000000 })),
        1500000000000 + 60000000000)
end

tests["the bounds themselves are exact, 10^8 tokens of every class at $10,000 per million"] = function()
    local max = cost.MAX_TOKENS
    local p = price({ input = cost.MAX_PRICE, cached_input = cost.MAX_PRICE, cache_write = cost.MAX_PRICE,
        cache_write_1h = cost.MAX_PRICE, output = cost.MAX_PRICE, reasoning = cost.MAX_PRICE })
    -- 6 × 1e8 × $10,000 / 1e6 = $6,000,000 = 6e15 nano.
    t.eq(cost.cost(tokens({ ["in"] = max, cr = max, cw = max, cw1h = max, out = max, rsn = max }), p),
        6000000000000000)
    -- One nano-USD below a whole price: 1e8 × 9999999999999 / 1e6 = 999999999999900 exactly.
    t.eq(cost.cost(tokens({ out = max }), price({ output = cost.MAX_PRICE - 1 })), 999999999999900)
    -- 99,999,999 × 9,999,999,999,999 / 1e6 = 999,999,989,999,900.000001 → ...900
    t.eq(cost.cost(tokens({ out = max - 1 }), price({ output = cost.MAX_PRICE - 1 })), 999999989999900)
    -- 99,999,999 × 1,500,001 / 1e6 = 150000098.499998500… → 150000098
    t.eq(cost.cost(tokens({ out = max - 1 }), price({ output = 1500001 })), 150000098)
end

tests["the worst case at the bounds is exact"] = function()
    local p = price({ input = cost.MAX_PRICE, output = cost.MAX_PRICE - 1 })
    -- 1e8 × 1e13 / 1e6 + 1e8 × (1e13 − 1) / 1e6 = 1e15 + 999999999999900
    t.eq(cost.worst_case(cost.MAX_TOKENS, cost.MAX_TOKENS, p), 1999999999999900)
    -- 3 × 1 / 1e6 rounds up to 1; 99,999,999 × 1,500,001 / 1e6 = 150000098.4999985 → 150000099
    t.eq(cost.worst_case(3, 0, price({ input = 1 })), 1)
    t.eq(cost.worst_case(0, cost.MAX_TOKENS - 1, price({ output = 1500001 })), 150000099)
end

tests["affordable output tokens are the most whose worst case fits"] = function()
    -- $1 / $2 per 1M; 400 input bytes cost 400 nano; each output token 2000 nano.
    local p = price({ input = 1000000000, output = 2000000000 })
    t.eq(cost.affordable(10000000, 400, 1, p, 64000), 4800, "$0.01: (10,000,000 - 400,000) / 2,000")
    t.eq(cost.worst_case(400, 4800, p) <= 10000000, true, "4800 fits")
    t.eq(cost.worst_case(400, 4801, p) > 10000000, true, "4801 does not")
    t.eq(cost.affordable(10000000, 400, 128, p, 64000), 37, "128 choices: 4800 / 128 = 37.5")
    t.eq(cost.affordable(399999, 400, 1, p, 64000), 0, "not even the input")
    t.eq(cost.affordable(10000000000, 400, 1, p, 64000), 64000, "capped at the model's maximum")
    t.eq(cost.affordable(0, 400, 1, price({ input = 1000000000 }), 64000), 0, "free output, input unpaid")
    t.eq(cost.affordable(400000, 400, 1, price({ input = 1000000000 }), 64000), 64000, "free output")
end

return tests
