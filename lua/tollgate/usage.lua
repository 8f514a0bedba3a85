-- Reads token usage from each provider dialect and turns it into Tollgate's disjoint usage
-- classes (usage_classes.lua; each finisher below spells them all out, which spec_usage_classes checks).
-- Pure: no ngx I/O.
--
-- observe(acc, format, usage_object) merges one usage object as the provider reported it;
-- classes(acc, format) gives the final disjoint counts, or nil when no usage was seen.
local null = require("cjson.safe").null
local usage_classes = require "tollgate.usage_classes"

local _M = {}

local floor = math.floor
local MAX_TOKENS = require("tollgate.cost").MAX_TOKENS

-- A token figure as a provider reported it: an integer from 0 to MAX_TOKENS, nil when absent
-- or null. Anything else marks the usage invalid (`acc.invalid`) and is kept clamped into the
-- bounds, so the record still holds figures SQL can store.
local function figure(acc, v)
    if v == nil or v == null then
        return nil
    end
    if type(v) == "number" and v >= 0 and v <= MAX_TOKENS and v == floor(v) then
        return v
    end
    acc.invalid = true
    if type(v) ~= "number" or v ~= v or v < 0 then
        return 0
    end
    if v > MAX_TOKENS then
        return MAX_TOKENS
    end
    return floor(v)
end

local function field(acc, obj, a, b)
    if type(obj) ~= "table" then
        return nil
    end
    local v = obj[a]
    if b then
        if type(v) ~= "table" then
            return nil
        end
        v = v[b]
    end
    return figure(acc, v)
end

-- Later usage objects of one stream are cumulative: keep the largest figure per field.
-- `acc.reported` counts the figures seen.
local function keep(acc, name, v)
    if v then
        acc.reported = acc.reported + 1
        if acc[name] == nil or v > acc[name] then
            acc[name] = v
        end
    end
end

local observers = {}

-- OpenAI chat/completions/embeddings and its dialects (DeepSeek, xAI, Gemini, ...).
observers.openai = function(acc, u)
    keep(acc, "prompt", field(acc, u, "prompt_tokens"))
    keep(acc, "completion", field(acc, u, "completion_tokens"))
    keep(acc, "total", field(acc, u, "total_tokens"))
    keep(acc, "cached", field(acc, u, "prompt_tokens_details", "cached_tokens"))
    keep(acc, "cached", field(acc, u, "prompt_cache_hit_tokens"))            -- DeepSeek
    keep(acc, "miss", field(acc, u, "prompt_cache_miss_tokens"))             -- DeepSeek
    keep(acc, "reasoning", field(acc, u, "completion_tokens_details", "reasoning_tokens"))
    keep(acc, "reasoning", field(acc, u, "reasoning_tokens"))
end

-- OpenAI Responses API.
observers.responses = function(acc, u)
    keep(acc, "prompt", field(acc, u, "input_tokens"))
    keep(acc, "completion", field(acc, u, "output_tokens"))
    keep(acc, "total", field(acc, u, "total_tokens"))
    keep(acc, "cached", field(acc, u, "input_tokens_details", "cached_tokens"))
    keep(acc, "reasoning", field(acc, u, "output_tokens_details", "reasoning_tokens"))
end

-- Anthropic Messages (also DeepSeek's Anthropic-compatible API).
observers.anthropic = function(acc, u)
    keep(acc, "input", field(acc, u, "input_tokens"))
    keep(acc, "cache_read", field(acc, u, "cache_read_input_tokens"))
    keep(acc, "cache_write", field(acc, u, "cache_creation_input_tokens"))
    keep(acc, "cw5m", field(acc, u, "cache_creation", "ephemeral_5m_input_tokens"))
    keep(acc, "cw1h", field(acc, u, "cache_creation", "ephemeral_1h_input_tokens"))
    keep(acc, "output", field(acc, u, "output_tokens"))
end

-- Merges a usage object into `acc` (false when it is not an object). `acc.reported` counts the
-- token figures it held, so a caller can tell usage from another object under a "usage" key.
function _M.observe(acc, format, u)
    if type(u) ~= "table" or u == null then
        return false
    end
    acc.seen = true
    acc.reported = acc.reported or 0
    observers[format](acc, u)
    return true
end

local function clamp(v)
    if v < 0 then return 0 end
    return v
end

local finishers = {}

-- prompt includes cached; completion includes reasoning unless total says it was reported
-- apart (xAI, Gemini: total = prompt + completion + reasoning).
finishers.openai = function(acc)
    local prompt = acc.prompt or 0
    local completion = acc.completion or 0
    local cached = acc.cached or 0
    local reasoning = acc.reasoning or 0
    if acc.prompt == nil and acc.miss then
        prompt = acc.miss + cached
    end
    local out
    if reasoning > 0 and acc.total and acc.total == prompt + completion + reasoning then
        out = completion
    elseif reasoning == 0 and acc.total and acc.total > prompt + completion then
        -- Gemini reports thinking tokens in total_tokens only: the surplus is reasoning.
        out, reasoning = completion, acc.total - prompt - completion
    else
        out = clamp(completion - reasoning)
    end
    return { ["in"] = clamp(prompt - cached), cr = cached, cw = 0, cw1h = 0, out = out, rsn = reasoning }
end

finishers.responses = finishers.openai

-- input_tokens excludes cache reads and writes. The 5-minute and 1-hour write tiers are priced
-- apart when the answer breaks them down; what the breakdown does not cover is default tier.
finishers.anthropic = function(acc)
    local cw_total = acc.cache_write or 0
    local cw1h = acc.cw1h or 0
    local cw5m = acc.cw5m or 0
    if cw5m + cw1h < cw_total then
        cw5m = cw_total - cw1h
    end
    return {
        ["in"] = acc.input or 0, cr = acc.cache_read or 0, cw = cw5m, cw1h = cw1h,
        out = acc.output or 0, rsn = 0,
    }
end

-- A fresh count of every usage class, all 0.
function _M.zero()
    local t = {}
    for i = 1, #usage_classes do
        t[usage_classes[i].field] = 0
    end
    return t
end

function _M.classes(acc, format)
    if not acc.seen then
        return nil
    end
    return finishers[format](acc)
end

return _M
