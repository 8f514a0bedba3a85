-- usage_classes.lua: the usage classes, defined once; every module that counts, prices, holds,
-- estimates or records tokens follows its table.
local cost = require "tollgate.cost"
local record = require "tollgate.record"
local response = require "tollgate.response"
local usage = require "tollgate.usage"
local usage_classes = require "tollgate.usage_classes"
local usage_json = require "tollgate.usage_json"
local t = require "runner"

-- The classes' record fields, as a set.
local function field_set()
    local set = {}
    for _, class in ipairs(usage_classes) do
        set[class.field] = true
    end
    return set
end

local function keys_of(tbl)
    local set = {}
    for k in pairs(tbl) do
        set[k] = true
    end
    return set
end

-- A price table with every class's price field at 0, `field` at `p`.
local function only(price_field, p)
    local price = {}
    for _, class in ipairs(usage_classes) do
        price[class.price] = 0
    end
    price[price_field] = p
    return price
end

local tests = {}

tests["the classes are docs/internals.md's, in record order"] = function()
    local rows = {}
    for i, class in ipairs(usage_classes) do
        rows[i] = { class.field, class.price, class.side }
    end
    t.eq(rows, {
        { "in", "input", "input" }, { "cr", "cached_input", "input" }, { "cw", "cache_write", "input" },
        { "cw1h", "cache_write_1h", "input" }, { "out", "output", "output" }, { "rsn", "reasoning", "output" },
    })
    for _, class in ipairs(usage_classes) do
        t.truthy(type(class.meaning) == "string" and class.meaning ~= "", class.field .. " has a meaning")
    end
end

tests["the file keeps one class a line in the format the control plane reads"] = function()
    local path = assert(package.searchpath("tollgate.usage_classes", package.path))
    local i = 0
    for line in t.read(path):gmatch("[^\n]+") do
        local field, price, side, meaning = line:match(
            '^    { field = "([^"]+)", price = "([^"]+)", side = "([^"]+)", meaning = "([^"]+)" },$')
        if field then
            i = i + 1
            t.eq({ field, price, side, meaning }, { usage_classes[i].field, usage_classes[i].price,
                usage_classes[i].side, usage_classes[i].meaning }, "line of class " .. i)
        end
    end
    t.eq(i, #usage_classes, "classes found in the file")
end

tests["every class is charged at its own price"] = function()
    for _, class in ipairs(usage_classes) do
        local tokens = usage.zero()
        tokens[class.field] = 1000000
        t.eq(cost.cost(tokens, only(class.price, 7000000)), 7000000, class.field)
        t.eq(cost.cost(tokens, only("input", 0)), 0, class.field .. " at no price")
    end
end

tests["the hold prices each class on its side"] = function()
    for _, class in ipairs(usage_classes) do
        local price = only(class.price, 5000000)
        local input_side = class.side == "input" and 5000000 or 0
        local output_side = class.side == "output" and 5000000 or 0
        t.eq(cost.worst_case(1000000, 0, price), input_side, class.field .. " as input")
        t.eq(cost.worst_case(0, 1000000, price), output_side, class.field .. " as output")
    end
end

tests["every dialect reports every class and no other"] = function()
    local objects = {
        openai = '{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}',
        responses = '{"input_tokens":10,"output_tokens":5,"total_tokens":15}',
        anthropic = '{"input_tokens":10,"output_tokens":5}',
    }
    for format, text in pairs(objects) do
        local acc = {}
        usage.observe(acc, format, usage_json.decode(text, 1, #text))
        t.eq(keys_of(usage.classes(acc, format)), field_set(), format)
    end
    t.eq(keys_of(usage.zero()), field_set(), "zero")
end

tests["an estimate counts every class"] = function()
    local st = response.new("openai", true, false)
    response.feed(st, 'data: {"choices":[]}\n\n', false)
    t.eq(keys_of(response.estimate(st, 40)), field_set(), "estimate")
end

tests["the record carries every class after basis, in order"] = function()
    local at
    for i, name in ipairs(record.FIELDS) do
        if name == "basis" then at = i end
    end
    for i, class in ipairs(usage_classes) do
        t.eq(record.FIELDS[at + i], class.field, "record field " .. (at + i))
    end
end

return tests
