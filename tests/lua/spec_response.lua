-- response.lua over every golden provider answer (tests/fixtures), split at every byte.
local response = require "tollgate.response"
local cost = require "tollgate.cost"
local t = require "runner"

local concat = table.concat
local sub = string.sub
local find = string.find

-- Feeds `chunks` to a new parser, eof on the last one (or on an extra empty chunk); returns the
-- parser and the bytes the client would get.
local function feed_all(expected, chunks, strip, eof_apart, declared)
    local st = response.new(expected.format, expected.stream, strip, declared)
    local out = {}
    for i, chunk in ipairs(chunks) do
        local replaced = response.feed(st, chunk, i == #chunks and not eof_apart)
        out[#out + 1] = replaced == nil and chunk or replaced
    end
    if eof_apart then
        out[#out + 1] = response.feed(st, "", true) or ""
    end
    return st, concat(out)
end

local function check_usage(st, expected, where)
    local tokens, final = response.usage(st)
    t.eq(tokens, expected.usage, where .. ": usage")
    t.eq(final, true, where .. ": final")
    t.eq(cost.cost(tokens, expected.price), expected.cost, where .. ": cost")
end

local function bytes_of(data)
    local chunks = {}
    for i = 1, #data do
        chunks[i] = sub(data, i, i)
    end
    return chunks
end

local function chunked(data, size)
    local chunks = {}
    for i = 1, #data, size do
        chunks[#chunks + 1] = sub(data, i, i + size - 1)
    end
    return chunks
end

local function replace_plain(s, from, to)
    local out, pos = {}, 1
    while true do
        local a, b = find(s, from, pos, true)
        if not a then break end
        out[#out + 1] = sub(s, pos, a - 1) .. to
        pos = b + 1
    end
    out[#out + 1] = sub(s, pos)
    return concat(out)
end

-- What a client that did not ask for usage gets: the provider's stream without the usage-only
-- chunk and without the `"usage":null` fields.
local function without_requested_usage(data)
    local out, pos = {}, 1
    while pos <= #data do
        local _, e = find(data, "\n\n", pos, true)
        e = e or #data
        local event = sub(data, pos, e)
        pos = e + 1
        if not (find(event, '"choices":[]', 1, true) and find(event, '"usage":{', 1, true)) then
            out[#out + 1] = replace_plain(event, ',"usage":null', "")
        end
    end
    return concat(out)
end

local tests = {}

for _, file in ipairs(t.fixture_files()) do
    local data, expected, stem = t.fixture(file)

    tests[stem .. ", usage and cost, split in two at every byte"] = function()
        for i = 1, #data - 1 do
            local st, out = feed_all(expected, { sub(data, 1, i), sub(data, i + 1) })
            check_usage(st, expected, "split at " .. i)
            t.eq(out == data, true, "split at " .. i .. ": bytes passed through unchanged")
        end
    end

    tests[stem .. ", usage and cost, one byte per chunk"] = function()
        local st, out = feed_all(expected, bytes_of(data))
        check_usage(st, expected, "1-byte chunks")
        t.eq(out == data, true, "1-byte chunks: bytes passed through unchanged")
    end

    tests[stem .. ", usage and cost, whole answer then an empty last chunk"] = function()
        local st = feed_all(expected, { data }, false, true)
        check_usage(st, expected, "whole")
    end

    if expected.stream and expected.format == "openai" then
        local want = without_requested_usage(data)

        tests[stem .. ", strip mode, split in two at every byte"] = function()
            for i = 1, #data - 1 do
                local st, out = feed_all(expected, { sub(data, 1, i), sub(data, i + 1) }, true)
                check_usage(st, expected, "strip, split at " .. i)
                t.eq(out, want, "strip, split at " .. i .. ": client bytes")
            end
        end

        tests[stem .. ", strip mode, one byte per chunk"] = function()
            local st, out = feed_all(expected, bytes_of(data), true)
            check_usage(st, expected, "strip, 1-byte chunks")
            t.eq(out, want, "strip, 1-byte chunks: client bytes")
        end

        tests[stem .. ", strip mode keeps a declared length with a trailing comment"] = function()
            for _, size in ipairs({ 1, 7, 64, #data }) do
                local st, out = feed_all(expected, chunked(data, size), true, false, #data)
                check_usage(st, expected, "declared, " .. size .. "-byte chunks")
                t.eq(#out, #data, size .. "-byte chunks: length")
                local padding = sub(out, #want + 1)
                t.eq(sub(out, 1, #want), want, size .. "-byte chunks: events")
                local ok = padding == "" and #want == #data or find(padding, "^:? *\n$") ~= nil
                t.eq(ok, true, size .. "-byte chunks: padding [" .. padding .. "]")
            end
        end
    end
end

-- Answers that end before their final usage.

tests["anthropic stream cut after message_start gives its input usage, not final"] = function()
    local data, expected = t.fixture("anthropic_stream.sse")
    local cut = find(data, "event: content_block_start", 1, true) - 1
    local st = feed_all(expected, { sub(data, 1, cut) })
    local tokens, final = response.usage(st)
    t.eq(not final, true, "not final")
    t.eq(tokens, { ["in"] = 2095, cr = 14336, cw = 1843, cw1h = 0, out = 1, rsn = 0 }, "usage")
end

tests["openai stream cut before its usage chunk has no usage and an estimate by events"] = function()
    local data, expected = t.fixture("openai_chat_stream.sse")
    local cut = find(data, '"choices":[]', 1, true)
    cut = find(sub(data, 1, cut), "\n\n[^\n]*$") + 1
    local st = feed_all(expected, { sub(data, 1, cut) })
    local tokens, final = response.usage(st)
    t.eq(tokens, nil, "usage")
    t.eq(not final, true, "not final")
    local events = select(2, sub(data, 1, cut):gsub("\n\n", ""))
    t.eq(response.estimate(st, 400), { ["in"] = 100, cr = 0, cw = 0, cw1h = 0, out = events, rsn = 0 },
        "estimate")
end

tests["stream with no usage at all has usage nil"] = function()
    local data = 'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,'
        .. '"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    local st = feed_all({ format = "openai", stream = true }, { data })
    t.eq(response.usage(st), nil, "usage")
end

tests["non-streamed answer that is not JSON has usage nil"] = function()
    local st = feed_all({ format = "openai", stream = false }, { "<html>bad gateway</html>" })
    t.eq(response.usage(st), nil, "usage")
end

tests["non-streamed answer whose tool input has a \"usage\" object has the answer's usage read"] = function()
    local data = '{"id":"msg_1","type":"message","content":[{"type":"tool_use","id":"t1","name":"log",'
        .. '"input":{"usage":{"kind":"daily","items":[1,2]}}}],"stop_reason":"tool_use",'
        .. '"usage":{"input_tokens":12,"output_tokens":7},"extra":{"usage":{"note":"x"}}}'
    for _, size in ipairs({ 1, 7, #data }) do
        local st = feed_all({ format = "anthropic", stream = false }, chunked(data, size))
        local tokens, final = response.usage(st)
        t.eq(tokens, { ["in"] = 12, cr = 0, cw = 0, cw1h = 0, out = 7, rsn = 0 }, size .. ": usage")
        t.eq(final, true, size .. ": final")
    end
end

tests["non-streamed pretty-printed answer has its usage read"] = function()
    local data = '{\n  "object": "chat.completion",\n  "choices": [],\n  "usage" :\r\n {\n'
        .. '    "prompt_tokens": 19,\n    "completion_tokens": 10,\n    "total_tokens": 29,\n'
        .. '    "prompt_tokens_details": {\n      "cached_tokens": 4\n    }\n  }\n}\n'
    local st = feed_all({ format = "openai", stream = false }, { data })
    t.eq(response.usage(st), { ["in"] = 15, cr = 4, cw = 0, cw1h = 0, out = 10, rsn = 0 }, "usage")
end

tests["non-streamed answer with an empty usage object is final with zero tokens"] = function()
    local st = feed_all({ format = "openai", stream = false }, { '{"choices":[],"usage":{}}' })
    local tokens, final = response.usage(st)
    t.eq(tokens, { ["in"] = 0, cr = 0, cw = 0, cw1h = 0, out = 0, rsn = 0 }, "usage")
    t.eq(final, true, "final")
end

-- Large answers.

local function big_chat_answer(size)
    return '{"id":"chatcmpl-big","object":"chat.completion","choices":[{"index":0,"message":'
        .. '{"role":"assistant","content":"' .. string.rep("é", size / 2) .. '"},"finish_reason":"stop"}],'
        .. '"usage":{"prompt_tokens":1200,"completion_tokens":300000,"total_tokens":301200,'
        .. '"prompt_tokens_details":{"cached_tokens":1024},'
        .. '"completion_tokens_details":{"reasoning_tokens":0}}}\n'
end

tests["non-streamed answer over 1 MiB has its usage read from its tail"] = function()
    local data = big_chat_answer(3 * 1024 * 1024)
    for _, size in ipairs({ 8192, 65536, 1000003 }) do
        local st = feed_all({ format = "openai", stream = false }, chunked(data, size))
        local tokens, final = response.usage(st)
        t.eq(tokens, { ["in"] = 176, cr = 1024, cw = 0, cw1h = 0, out = 300000, rsn = 0 },
            size .. "-byte chunks: usage")
        t.eq(final, true, size .. "-byte chunks: final")
    end
end

tests["non-streamed anthropic answer over 1 MiB has its nested cache_creation read"] = function()
    local data = '{"id":"msg_big","type":"message","role":"assistant","model":"claude-sonnet-4-5",'
        .. '"content":[{"type":"text","text":"' .. string.rep("日本", 300000) .. '"}],'
        .. '"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":10,'
        .. '"cache_creation_input_tokens":300,"cache_read_input_tokens":20,"cache_creation":'
        .. '{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":64000,'
        .. '"service_tier":"standard"}}'
    local st = feed_all({ format = "anthropic", stream = false }, chunked(data, 16384))
    local tokens, final = response.usage(st)
    t.eq(tokens, { ["in"] = 10, cr = 20, cw = 100, cw1h = 200, out = 64000, rsn = 0 }, "usage")
    t.eq(final, true, "final")
end

-- An event larger than the parser's limit (4 MiB) passes on unread; the events after it are read.
local HUGE_EVENT = 'data: {"choices":[{"index":0,"delta":{"content":"' .. string.rep("a", 5 * 1024 * 1024)
    .. '"}}],"usage":null}\n\n'
local USAGE_AFTER = 'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n'
local DONE = 'data: [DONE]\n\n'

for _, size in ipairs({ 4096, 65536, 1000003 }) do
    tests["the usage after an oversized event is read, in " .. size .. "-byte chunks"] = function()
        local chunks = chunked(HUGE_EVENT .. USAGE_AFTER .. DONE, size)
        local st, out = feed_all({ format = "openai", stream = true }, chunks)
        local tokens, final = response.usage(st)
        t.eq(tokens, { ["in"] = 1, cr = 0, cw = 0, cw1h = 0, out = 2, rsn = 0 }, "usage")
        t.eq(final, true, "final")
        t.eq(response.skipped(st), true, "skipped")
        t.eq(out == HUGE_EVENT .. USAGE_AFTER .. DONE, true, "the client gets the stream unchanged")
    end
end

tests["strip mode passes an oversized event on unread and strips the usage chunk after it"] = function()
    local chunks = chunked(HUGE_EVENT, 65536)
    chunks[#chunks + 1] = USAGE_AFTER .. DONE
    local st, out = feed_all({ format = "openai", stream = true }, chunks, true)
    t.eq(#out, #HUGE_EVENT + #DONE, "client bytes")
    t.eq(out == HUGE_EVENT .. DONE, true, "the oversized event as it came, then [DONE]")
    t.eq(select(2, response.usage(st)), true, "final usage")
end

tests["an event end split between chunks after an oversized event is found"] = function()
    local data = HUGE_EVENT:sub(1, -3) .. "\r\n\r\n" .. USAGE_AFTER
    local split_at = #data - #USAGE_AFTER - 2 -- between the two CRLFs
    local st = feed_all({ format = "openai", stream = true },
        { data:sub(1, 4 * 1024 * 1024 + 10), data:sub(4 * 1024 * 1024 + 11, split_at), data:sub(split_at + 1) })
    t.eq(select(2, response.usage(st)), true, "final usage")
    t.eq(st.events, 2, "events")
end

tests["a large event below the limit, in small chunks, is read whole"] = function()
    local large = 'data: {"choices":[{"index":0,"delta":{"content":"' .. string.rep("b", 3 * 1024 * 1024)
        .. '"}}],"usage":null}\n\n'
    local data = large .. USAGE_AFTER .. DONE
    local st, out = feed_all({ format = "openai", stream = true }, chunked(data, 4096), true)
    t.eq(response.skipped(st), false, "not skipped")
    t.eq(st.events, 3, "events")
    t.eq(select(2, response.usage(st)), true, "final usage")
    t.eq(out == large:gsub(',"usage":null', "") .. DONE, true, "strip mode edits the large event and drops the usage chunk")
end

tests["an estimate counts an oversized event at 4 bytes a token"] = function()
    local st = feed_all({ format = "openai", stream = true }, chunked(HUGE_EVENT, 65536))
    local tokens = response.estimate(st, 400)
    t.eq(tokens.out, 1 + math.ceil(#HUGE_EVENT / 4), "output estimate")
    t.eq(tokens["in"], 100, "input estimate")
end

tests["a non-streamed error answer without usage is failed"] = function()
    local st = feed_all({ format = "openai", stream = false },
        { '{"error":{"message":"overloaded","type":"server_error"}}' })
    t.eq(response.usage(st), nil, "usage")
    t.eq(response.failed(st), true, "failed")
    local ant = feed_all({ format = "anthropic", stream = false },
        { '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}' })
    t.eq(response.failed(ant), true, "anthropic failed")
end

tests["a stream that opens with an error event is failed"] = function()
    local st = feed_all({ format = "anthropic", stream = true },
        { 'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n' })
    t.eq(response.failed(st), true, "failed")
    local ok = feed_all({ format = "openai", stream = true },
        { 'data: {"choices":[{"delta":{"content":"the \\"error\\": x"}}]}\n\n' })
    t.eq(response.failed(ok), false, "a content event is no error")
    local created = feed_all({ format = "responses", stream = true },
        { 'event: response.created\ndata: {"type":"response.created","response":{"error":null}}\n\n' })
    t.eq(response.failed(created), false, "response.created with error null is no error")
    local openai = feed_all({ format = "openai", stream = true },
        { 'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n' })
    t.eq(response.failed(openai), true, "an OpenAI error event")
end

tests["provider figures that are no token counts mark the usage invalid, clamped"] = function()
    local cases = {
        { '{"prompt_tokens":-5,"completion_tokens":10}', { ["in"] = 0, out = 10 } },
        { '{"prompt_tokens":5,"completion_tokens":10.5}', { ["in"] = 5, out = 10 } },
        { '{"prompt_tokens":5,"completion_tokens":1e12}', { ["in"] = 5, out = 100000000 } },
        { '{"prompt_tokens":"5","completion_tokens":1e300}', { ["in"] = 0, out = 100000000 } },
        { '{"prompt_tokens":5,"completion_tokens":true}', { ["in"] = 5, out = 0 } },
    }
    for _, case in ipairs(cases) do
        local st = feed_all({ format = "openai", stream = false }, { '{"choices":[],"usage":' .. case[1] .. '}' })
        local tokens, final, invalid = response.usage(st)
        t.eq(invalid, true, case[1] .. ": invalid")
        t.eq(tokens["in"], case[2]["in"], case[1] .. ": in")
        t.eq(tokens.out, case[2].out, case[1] .. ": out")
    end
    local st = feed_all({ format = "openai", stream = false },
        { '{"choices":[],"usage":{"prompt_tokens":100000000,"completion_tokens":0,"cached":null}}' })
    t.eq(select(3, response.usage(st)), false, "the bound itself is valid")
end

return tests
