-- usage.lua: each provider dialect into the disjoint classes of docs/internals.md.
local usage = require "tollgate.usage"
local usage_json = require "tollgate.usage_json"
local cjson = require "cjson.safe"
local t = require "runner"

-- The classes of a sequence of usage objects (JSON text, as the provider sent them, decoded as
-- the gateway decodes whole answers' usage).
local function classes(format, objects)
    local acc = {}
    for _, text in ipairs(objects) do
        usage.observe(acc, format, usage_json.decode(text, 1, #text))
    end
    return usage.classes(acc, format)
end

local function c(t_in, cr, cw, cw1h, out, rsn)
    return { ["in"] = t_in, cr = cr, cw = cw, cw1h = cw1h, out = out, rsn = rsn }
end

-- { name, format, { usage objects in the order received }, expected classes }
local CASES = {
    -- OpenAI chat / completions / embeddings
    { "openai prompt includes cached and completion includes reasoning", "openai", {
        [[{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150,
        "prompt_tokens_details":{"cached_tokens":40,"audio_tokens":0},
        "completion_tokens_details":{"reasoning_tokens":20,"audio_tokens":0}}]] }, c(60, 40, 0, 0, 30, 20) },
    { "openai without details", "openai",
        { '{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}' }, c(10, 0, 0, 0, 5, 0) },
    { "openai embeddings report prompt tokens only", "openai",
        { '{"prompt_tokens":8,"total_tokens":8}' }, c(8, 0, 0, 0, 0, 0) },
    { "openai null details count as absent", "openai", {
        [[{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
        "prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":null}}]] },
        c(10, 0, 0, 0, 5, 0) },
    { "openai with only completion_tokens", "openai", { '{"completion_tokens":5}' }, c(0, 0, 0, 0, 5, 0) },
    { "an empty openai usage object is all zeros", "openai", { "{}" }, c(0, 0, 0, 0, 0, 0) },
    { "an empty anthropic usage object is all zeros", "anthropic", { "{}" }, c(0, 0, 0, 0, 0, 0) },
    { "negative, string and boolean counts are ignored", "openai",
        { '{"prompt_tokens":-5,"completion_tokens":"7","total_tokens":true}' }, c(0, 0, 0, 0, 0, 0) },
    { "cumulative usage objects keep the largest figure per field", "openai", {
        '{"prompt_tokens":41,"completion_tokens":1,"total_tokens":42}',
        '{"prompt_tokens":41,"completion_tokens":3,"total_tokens":44}',
        '{"prompt_tokens":41,"completion_tokens":2,"total_tokens":43}' }, c(41, 0, 0, 0, 3, 0) },
    { "reasoning above completion clamps output to zero", "openai", {
        '{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"completion_tokens_details":{"reasoning_tokens":9}}' },
        c(10, 0, 0, 0, 0, 9) },
    { "cached above prompt clamps uncached input to zero", "openai", {
        '{"prompt_tokens":10,"completion_tokens":1,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":12}}' },
        c(0, 12, 0, 0, 1, 0) },

    -- DeepSeek
    { "deepseek hit and miss with prompt_tokens", "openai", {
        [[{"prompt_tokens":1187,"completion_tokens":958,"total_tokens":2145,
        "prompt_tokens_details":{"cached_tokens":1152},"completion_tokens_details":{"reasoning_tokens":790},
        "prompt_cache_hit_tokens":1152,"prompt_cache_miss_tokens":35}]] }, c(35, 1152, 0, 0, 168, 790) },
    { "deepseek hit and miss without prompt_tokens", "openai", {
        '{"completion_tokens":10,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}' },
        c(36, 64, 0, 0, 10, 0) },

    -- xAI, Gemini: reasoning reported apart from completion
    { "xai reasoning apart from completion (total = prompt + completion + reasoning)", "openai", {
        [[{"prompt_tokens":164,"completion_tokens":61,"total_tokens":602,
        "prompt_tokens_details":{"text_tokens":164,"audio_tokens":0,"image_tokens":0,"cached_tokens":128},
        "completion_tokens_details":{"reasoning_tokens":377,"audio_tokens":0,
        "accepted_prediction_tokens":0,"rejected_prediction_tokens":0},"num_sources_used":0}]] },
        c(36, 128, 0, 0, 61, 377) },
    { "xai cumulative chunks through the reasoning phase", "openai", {
        '{"prompt_tokens":164,"completion_tokens":0,"total_tokens":224,"completion_tokens_details":{"reasoning_tokens":60}}',
        '{"prompt_tokens":164,"completion_tokens":0,"total_tokens":541,"completion_tokens_details":{"reasoning_tokens":377}}',
        '{"prompt_tokens":164,"completion_tokens":61,"total_tokens":602,"completion_tokens_details":{"reasoning_tokens":377}}' },
        c(164, 0, 0, 0, 61, 377) },
    { "top-level reasoning_tokens (vLLM style) is read", "openai", {
        '{"prompt_tokens":18,"completion_tokens":40,"total_tokens":58,"reasoning_tokens":30}' },
        c(18, 0, 0, 0, 10, 30) },
    -- Gemini's OpenAI-compatible endpoint reports no reasoning field: its thinking tokens show only
    -- as total_tokens - prompt_tokens - completion_tokens, and Google bills them as output.
    { "gemini thoughts counted only in total_tokens are billed as reasoning", "openai", {
        '{"completion_tokens":356,"prompt_tokens":1043,"total_tokens":2211}' }, c(1043, 0, 0, 0, 356, 812) },

    -- OpenAI Responses
    { "responses input and output details", "responses", {
        [[{"input_tokens":9871,"input_tokens_details":{"cached_tokens":4096},"output_tokens":1203,
        "output_tokens_details":{"reasoning_tokens":896},"total_tokens":11074}]] }, c(5775, 4096, 0, 0, 307, 896) },
    { "responses with null details", "responses", {
        '{"input_tokens":12,"input_tokens_details":null,"output_tokens":3,"output_tokens_details":null,"total_tokens":15}' },
        c(12, 0, 0, 0, 3, 0) },

    -- Anthropic
    { "anthropic input excludes cache reads and writes, with 5m and 1h tiers", "anthropic", {
        [[{"input_tokens":1021,"cache_creation_input_tokens":3583,"cache_read_input_tokens":20480,
        "cache_creation":{"ephemeral_5m_input_tokens":1536,"ephemeral_1h_input_tokens":2047},
        "output_tokens":733,"service_tier":"standard"}]] }, c(1021, 20480, 1536, 2047, 733, 0) },
    { "anthropic cache write without breakdown is the default tier", "anthropic", {
        '{"input_tokens":88,"cache_creation_input_tokens":2950,"output_tokens":3}' }, c(88, 0, 2950, 0, 3, 0) },
    { "anthropic cache write the breakdown does not cover is the default tier", "anthropic", {
        [[{"input_tokens":1,"cache_creation_input_tokens":1000,
        "cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":600},"output_tokens":1}]] },
        c(1, 0, 400, 600, 1, 0) },
    { "anthropic message_start then a message_delta with output only", "anthropic", {
        '{"input_tokens":88,"cache_creation_input_tokens":2950,"cache_read_input_tokens":0,"output_tokens":3}',
        '{"output_tokens":1024}' }, c(88, 0, 2950, 0, 1024, 0) },
    { "anthropic message_delta with cumulative input and output", "anthropic", {
        '{"input_tokens":2095,"cache_creation_input_tokens":0,"cache_read_input_tokens":14336,"output_tokens":1}',
        '{"input_tokens":2095,"cache_creation_input_tokens":0,"cache_read_input_tokens":14336,"output_tokens":412}' },
        c(2095, 14336, 0, 0, 412, 0) },
    { "anthropic null cache fields count as absent", "anthropic", {
        [[{"input_tokens":5,"cache_creation_input_tokens":null,"cache_read_input_tokens":null,
        "cache_creation":null,"output_tokens":2}]] }, c(5, 0, 0, 0, 2, 0) },
}

local tests = {}

for _, case in ipairs(CASES) do
    local name, format, objects, expected = case[1], case[2], case[3], case[4]
    tests[name] = function()
        t.eq(classes(format, objects), expected)
    end
end

tests["null usage is not observed"] = function()
    local acc = {}
    t.eq(usage.observe(acc, "openai", cjson.null), false, "observe(null)")
    t.eq(usage.observe(acc, "anthropic", cjson.null), false, "observe(null)")
    t.eq(usage.classes(acc, "openai"), nil, "classes")
end

tests["a usage that is not an object is not observed"] = function()
    local acc = {}
    t.eq(usage.observe(acc, "openai", "12"), false, "string")
    t.eq(usage.observe(acc, "openai", 12), false, "number")
    t.eq(usage.observe(acc, "openai", nil), false, "nil")
    t.eq(usage.classes(acc, "openai"), nil, "classes")
end

tests["no usage seen gives nil classes for every format"] = function()
    for _, format in ipairs({ "openai", "responses", "anthropic" }) do
        t.eq(usage.classes({}, format), nil, format)
    end
end

return tests
