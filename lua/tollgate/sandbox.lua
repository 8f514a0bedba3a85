-- The built-in sandbox provider: answers in OpenAI's and Anthropic's wire formats, offline,
-- with deterministic usage derived from the request, so a fresh install can be tried at once.
local cjson = require "cjson.safe"
local ffi = require "ffi"

local ngx = ngx
local concat = table.concat
local format = string.format

local _M = {}

-- Debian's lua-cjson encodes an empty table as {}; EMPTY marks where an empty array belongs.
local EMPTY = "\0tollgate-empty-array\0"

local function encode(value)
    return (cjson.encode(value):gsub('"\\u0000tollgate%-empty%-array\\u0000"', "[]"))
end

local WORDS = {
    "Tollgate", "sandbox", "answer:", "every", "token", "here", "is", "counted", "and",
    "billed", "at", "the", "provider's", "exact", "price,", "to", "the", "nano-dollar.",
}

-- Deterministic usage: prompt from the body size, a cache hit for long prompts, the answer
-- as long as max_tokens allows (at most 24 words), reasoning for models named *reason*.
local function plan(raw, parsed, default_words)
    local prompt = math.max(1, math.ceil(#raw / 4))
    local cached = prompt >= 128 and math.floor(prompt / 128) * 64 or 0
    local limit = tonumber(parsed.max_tokens or parsed.max_completion_tokens or parsed.max_output_tokens)
    local reasoning = tostring(parsed.model or ""):find("reason", 1, true) and 16 or 0
    local words = default_words
    if limit then
        words = math.max(1, math.min(words, math.floor(limit) - reasoning))
    end
    local text = {}
    for i = 1, words do
        text[i] = WORDS[(i - 1) % #WORDS + 1]
    end
    return { prompt = prompt, cached = cached, words = words, reasoning = reasoning, text = text }
end

local function read()
    ngx.req.read_body()
    local raw = ngx.req.get_body_data() or ""
    local parsed = cjson.decode(raw)
    if type(parsed) ~= "table" then
        ngx.status = 400
        ngx.header["Content-Type"] = "application/json"
        ngx.say('{"error":{"message":"sandbox: body is not a JSON object","type":"invalid_request_error","param":null,"code":null}}')
        return ngx.exit(400)
    end
    return raw, parsed
end

local function event(data, name)
    if name then
        ngx.print("event: ", name, "\ndata: ", data, "\n\n")
    else
        ngx.print("data: ", data, "\n\n")
    end
    ngx.flush(true)
end

local function openai_usage(p)
    return {
        prompt_tokens = p.prompt, completion_tokens = p.words + p.reasoning,
        total_tokens = p.prompt + p.words + p.reasoning,
        prompt_tokens_details = { cached_tokens = p.cached, audio_tokens = 0 },
        completion_tokens_details = { reasoning_tokens = p.reasoning, audio_tokens = 0,
            accepted_prediction_tokens = 0, rejected_prediction_tokens = 0 },
    }
end

local function chat_completions()
    local raw, parsed = read()
    local p = plan(raw, parsed, 24)
    local id = "chatcmpl-sandbox" .. ngx.crc32_short(raw)
    local created = ngx.time()
    local model = parsed.model
    if parsed.stream ~= true then
        ngx.header["Content-Type"] = "application/json"
        ngx.say(encode({
            id = id, object = "chat.completion", created = created, model = model,
            choices = { { index = 0, message = { role = "assistant", content = concat(p.text, " ") },
                finish_reason = "stop", logprobs = cjson.null } },
            usage = openai_usage(p), system_fingerprint = "fp_sandbox",
        }))
        return
    end
    local include_usage = type(parsed.stream_options) == "table" and parsed.stream_options.include_usage == true
    ngx.header["Content-Type"] = "text/event-stream; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache"
    local usage_field = include_usage and ',"usage":null' or ""
    local head = format('{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,"system_fingerprint":"fp_sandbox","choices":',
        id, created, encode(model))
    event(head .. '[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]' .. usage_field .. "}")
    for i = 1, #p.text do
        local piece = (i > 1 and " " or "") .. p.text[i]
        event(head .. '[{"index":0,"delta":{"content":' .. encode(piece)
            .. '},"logprobs":null,"finish_reason":null}]' .. usage_field .. "}")
    end
    event(head .. '[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]' .. usage_field .. "}")
    if include_usage then
        event(head .. '[],"usage":' .. encode(openai_usage(p)) .. "}")
    end
    event("[DONE]")
end

-- Anthropic: a prompt that asks for caching (cache_control) writes half of itself to the
-- cache, in the 1-hour tier when it asks for ttl 1h; long prompts also read from it.
local function anthropic_usage(p, raw, output)
    local write = raw:find('"cache_control"', 1, true) and math.floor(p.prompt / 2) or 0
    local one_hour = raw:find('"ttl"%s*:%s*"1h"') and write or 0
    return {
        input_tokens = p.prompt - p.cached - write, cache_creation_input_tokens = write,
        cache_read_input_tokens = p.cached, output_tokens = output,
        cache_creation = { ephemeral_5m_input_tokens = write - one_hour, ephemeral_1h_input_tokens = one_hour },
    }
end

local function messages()
    local raw, parsed = read()
    local p = plan(raw, parsed, 24)
    local id = "msg_sandbox" .. ngx.crc32_short(raw)
    local model = parsed.model
    if parsed.stream ~= true then
        ngx.header["Content-Type"] = "application/json"
        ngx.say(encode({
            id = id, type = "message", role = "assistant", model = model,
            content = { { type = "text", text = concat(p.text, " ") } },
            stop_reason = "end_turn", stop_sequence = cjson.null,
            usage = anthropic_usage(p, raw, p.words),
        }))
        return
    end
    ngx.header["Content-Type"] = "text/event-stream; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache"
    event(encode({ type = "message_start", message = {
        id = id, type = "message", role = "assistant", model = model, content = EMPTY,
        stop_reason = cjson.null, stop_sequence = cjson.null, usage = anthropic_usage(p, raw, 1),
    } }), "message_start")
    event('{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}', "content_block_start")
    event('{"type": "ping"}', "ping")
    for i = 1, #p.text do
        local piece = (i > 1 and " " or "") .. p.text[i]
        event('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
            .. encode(piece) .. "}}", "content_block_delta")
    end
    event('{"type":"content_block_stop","index":0}', "content_block_stop")
    event('{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":'
        .. p.words .. "}}", "message_delta")
    event('{"type":"message_stop"}', "message_stop")
end

local function sse_headers()
    ngx.header["Content-Type"] = "text/event-stream; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache"
end

local function completions()
    local raw, parsed = read()
    local p = plan(raw, parsed, 24)
    local id = "cmpl-sandbox" .. ngx.crc32_short(raw)
    local base = { id = id, object = "text_completion", created = ngx.time(), model = parsed.model }
    local usage = { prompt_tokens = p.prompt, completion_tokens = p.words, total_tokens = p.prompt + p.words }
    if parsed.stream ~= true then
        base.choices = { { text = concat(p.text, " "), index = 0, logprobs = cjson.null, finish_reason = "stop" } }
        base.usage = usage
        ngx.header["Content-Type"] = "application/json"
        return ngx.say(encode(base))
    end
    local include_usage = type(parsed.stream_options) == "table" and parsed.stream_options.include_usage == true
    sse_headers()
    for i = 1, #p.text do
        base.choices = { { text = (i > 1 and " " or "") .. p.text[i], index = 0, logprobs = cjson.null,
            finish_reason = i == #p.text and "stop" or cjson.null } }
        base.usage = include_usage and cjson.null or nil
        event(encode(base))
    end
    if include_usage then
        base.choices = EMPTY
        base.usage = usage
        event(encode(base))
    end
    event("[DONE]")
end

local function responses_usage(p)
    return {
        input_tokens = p.prompt, input_tokens_details = { cached_tokens = p.cached },
        output_tokens = p.words + p.reasoning, output_tokens_details = { reasoning_tokens = p.reasoning },
        total_tokens = p.prompt + p.words + p.reasoning,
    }
end

local function responses()
    local raw, parsed = read()
    local p = plan(raw, parsed, 24)
    local id = "resp_sandbox" .. ngx.crc32_short(raw)
    local item_id = "msg_sandbox" .. ngx.crc32_short(raw)
    local text = concat(p.text, " ")
    local function response(status, with_output, usage)
        return {
            id = id, object = "response", created_at = ngx.time(), status = status, model = parsed.model,
            output = with_output and { { type = "message", id = item_id, status = "completed", role = "assistant",
                content = { { type = "output_text", text = text, annotations = EMPTY } } } }
                or EMPTY,
            usage = usage or cjson.null, error = cjson.null, incomplete_details = cjson.null,
            parallel_tool_calls = true, tool_choice = "auto", tools = EMPTY,
        }
    end
    if parsed.stream ~= true then
        ngx.header["Content-Type"] = "application/json"
        return ngx.say(encode(response("completed", true, responses_usage(p))))
    end
    sse_headers()
    local seq = 0
    local function emit(name, body)
        body.type, body.sequence_number = name, seq
        seq = seq + 1
        event(encode(body), name)
    end
    emit("response.created", { response = response("in_progress", false) })
    emit("response.in_progress", { response = response("in_progress", false) })
    emit("response.output_item.added", { output_index = 0, item = { type = "message", id = item_id,
        status = "in_progress", role = "assistant", content = EMPTY } })
    emit("response.content_part.added", { item_id = item_id, output_index = 0, content_index = 0,
        part = { type = "output_text", text = "", annotations = EMPTY } })
    for i = 1, #p.text do
        emit("response.output_text.delta", { item_id = item_id, output_index = 0, content_index = 0,
            delta = (i > 1 and " " or "") .. p.text[i] })
    end
    emit("response.output_text.done", { item_id = item_id, output_index = 0, content_index = 0, text = text })
    emit("response.completed", { response = response("completed", true, responses_usage(p)) })
end

local function embeddings()
    local raw, parsed = read()
    local inputs = type(parsed.input) == "table" and parsed.input or { parsed.input or "" }
    local data, prompt = {}, 0
    for i, input in ipairs(inputs) do
        local text = type(input) == "string" and input or encode(input)
        prompt = prompt + math.max(1, math.ceil(#text / 4))
        local vector = {}
        for d = 1, 8 do
            vector[d] = ((ngx.crc32_short(text .. d) % 2000) - 1000) / 1000
        end
        local embedding = vector
        if parsed.encoding_format == "base64" then
            embedding = ngx.encode_base64(ffi.string(ffi.new("float[8]", vector), 32))
        end
        data[i] = { object = "embedding", index = i - 1, embedding = embedding }
    end
    ngx.header["Content-Type"] = "application/json"
    ngx.say(encode({ object = "list", data = data, model = parsed.model,
        usage = { prompt_tokens = prompt, total_tokens = prompt } }))
end

local function count_tokens()
    local raw, parsed = read()
    local p = plan(raw, parsed, 1)
    ngx.header["Content-Type"] = "application/json"
    ngx.say(encode({ input_tokens = p.prompt }))
end

local ROUTES = {
    ["/sandbox/openai/v1/chat/completions"] = chat_completions,
    ["/sandbox/openai/v1/completions"] = completions,
    ["/sandbox/openai/v1/responses"] = responses,
    ["/sandbox/openai/v1/embeddings"] = embeddings,
    ["/sandbox/anthropic/v1/messages"] = messages,
    ["/sandbox/anthropic/v1/messages/count_tokens"] = count_tokens,
}

function _M.serve()
    local handler = ROUTES[ngx.var.uri]
    if not handler then
        ngx.status = 404
        ngx.header["Content-Type"] = "application/json"
        ngx.say('{"error":{"message":"sandbox: no such endpoint","type":"invalid_request_error","param":null,"code":null}}')
        return
    end
    return handler()
end

return _M
