-- The built-in sandbox provider: answers in OpenAI's and Anthropic's wire formats, offline,
-- with deterministic usage derived from the request, so a fresh install can be tried at once.
local cjson = require "cjson.safe"

local ngx = ngx
local concat = table.concat
local format = string.format

local _M = {}

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
        ngx.say(cjson.encode({
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
        id, created, cjson.encode(model))
    event(head .. '[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]' .. usage_field .. "}")
    for i = 1, #p.text do
        local piece = (i > 1 and " " or "") .. p.text[i]
        event(head .. '[{"index":0,"delta":{"content":' .. cjson.encode(piece)
            .. '},"logprobs":null,"finish_reason":null}]' .. usage_field .. "}")
    end
    event(head .. '[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]' .. usage_field .. "}")
    if include_usage then
        event(head .. '[],"usage":' .. cjson.encode(openai_usage(p)) .. "}")
    end
    event("[DONE]")
end

local function anthropic_usage(p, output)
    return {
        input_tokens = p.prompt - p.cached, cache_creation_input_tokens = 0,
        cache_read_input_tokens = p.cached, output_tokens = output,
    }
end

local function messages()
    local raw, parsed = read()
    local p = plan(raw, parsed, 24)
    local id = "msg_sandbox" .. ngx.crc32_short(raw)
    local model = parsed.model
    if parsed.stream ~= true then
        ngx.header["Content-Type"] = "application/json"
        ngx.say(cjson.encode({
            id = id, type = "message", role = "assistant", model = model,
            content = { { type = "text", text = concat(p.text, " ") } },
            stop_reason = "end_turn", stop_sequence = cjson.null,
            usage = anthropic_usage(p, p.words),
        }))
        return
    end
    ngx.header["Content-Type"] = "text/event-stream; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache"
    event(cjson.encode({ type = "message_start", message = {
        id = id, type = "message", role = "assistant", model = model, content = {},
        stop_reason = cjson.null, stop_sequence = cjson.null, usage = anthropic_usage(p, 1),
    } }), "message_start")
    event('{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}', "content_block_start")
    event('{"type": "ping"}', "ping")
    for i = 1, #p.text do
        local piece = (i > 1 and " " or "") .. p.text[i]
        event('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
            .. cjson.encode(piece) .. "}}", "content_block_delta")
    end
    event('{"type":"content_block_stop","index":0}', "content_block_stop")
    event('{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":'
        .. p.words .. "}}", "message_delta")
    event('{"type":"message_stop"}', "message_stop")
end

local ROUTES = {
    ["/sandbox/openai/v1/chat/completions"] = chat_completions,
    ["/sandbox/anthropic/v1/messages"] = messages,
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
