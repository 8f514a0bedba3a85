-- The built-in sandbox provider: answers in OpenAI's and Anthropic's wire formats, offline,
-- with deterministic usage derived from the request, so a fresh install can be tried at once.
-- It answers only requests that carry the key of its provider as demo.py registers it (the
-- gateway puts it in place of the client's key), so it is reached through the gateway alone.
local ffi = require "ffi"
local catalog = require "tollgate.catalog"

-- A cjson instance of the sandbox's own (the gateway's keeps its settings): it refuses NaN,
-- Infinity and nesting deeper than an answer that echoes a request part can be encoded with.
local cjson = require("cjson.safe").new()
cjson.decode_invalid_numbers(false)
cjson.decode_max_depth(500)

local ngx = ngx
local concat = table.concat
local byte = string.byte
local sub = string.sub
local min = math.min
local max = math.max
local ceil = math.ceil
local null = cjson.null

local _M = {}

-- Debian's lua-cjson encodes an empty table as {}; EMPTY marks where an empty array belongs.
local EMPTY = "\0tollgate-empty-array\0"

local function encode(value)
    return (cjson.encode(value):gsub('"\\u0000tollgate%-empty%-array\\u0000"', "[]"))
end

-- The provider (control_plane/ops/demo.py) whose published key each protocol's requests must carry.
local PROVIDERS = { openai = "sandbox", anthropic = "sandbox-anthropic" }

local ERROR_TYPES = {
    [400] = { openai = "invalid_request_error", anthropic = "invalid_request_error" },
    [401] = { openai = "invalid_request_error", anthropic = "authentication_error", code = "invalid_api_key" },
    [404] = { openai = "invalid_request_error", anthropic = "not_found_error", code = "unknown_url" },
    [503] = { openai = "server_error", anthropic = "api_error" },
}

-- Ends the request with an error in the protocol's shape.
local function refuse(status, protocol, message)
    local kind = ERROR_TYPES[status]
    local body
    if protocol == "anthropic" then
        body = { type = "error", error = { type = kind.anthropic, message = "sandbox: " .. message } }
    else
        body = { error = { message = "sandbox: " .. message, type = kind.openai, param = null,
            code = kind.code or null } }
    end
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(encode(body))
    return ngx.exit(status)
end

local SENTENCE = {
    "Tollgate", "sandbox", "answer:", "every", "token", "here", "is", "counted", "and",
    "billed", "at", "the", "provider's", "exact", "price,", "to", "the", "nano-dollar.",
}
local ANSWER_WORDS = 24

-- An example value of a JSON schema: a const, the first enum value or alternative, required
-- properties only, minItems items, the minimum. Local $refs (#/$defs/…) are followed; `budget`
-- bounds the values made, so a self-referencing schema cannot keep the worker busy.
local MAX_DEPTH, MAX_ITEMS = 16, 8

local function example(schema, root, depth, budget)
    budget.left = budget.left - 1
    if type(schema) ~= "table" or depth > MAX_DEPTH or budget.left < 0 then
        return null
    end
    local ref = schema["$ref"]
    if type(ref) == "string" then
        local section, name = ref:match("^#/([^/]+)/([^/]+)$")
        local defs = section and root[section]
        return example(type(defs) == "table" and defs[name], root, depth + 1, budget)
    end
    if schema.const ~= nil then
        return schema.const
    end
    if type(schema.enum) == "table" and schema.enum[1] ~= nil then
        return schema.enum[1]
    end
    local alternatives = schema.anyOf or schema.oneOf or schema.allOf
    if type(alternatives) == "table" and alternatives[1] ~= nil then
        return example(alternatives[1], root, depth + 1, budget)
    end
    local kind = schema.type
    if type(kind) == "table" then
        kind = kind[1] == "null" and kind[2] or kind[1]
    end
    if kind == "object" or (kind == nil and type(schema.properties) == "table") then
        local value, properties = {}, type(schema.properties) == "table" and schema.properties or {}
        if type(schema.required) == "table" then
            for _, name in ipairs(schema.required) do
                if type(name) == "string" then
                    value[name] = example(properties[name], root, depth + 1, budget)
                end
            end
        end
        return value
    elseif kind == "array" then
        local items = {}
        for i = 1, min(tonumber(schema.minItems) or 0, MAX_ITEMS) do
            items[i] = example(schema.items, root, depth + 1, budget)
        end
        return #items > 0 and items or EMPTY
    elseif kind == "string" then
        return ("x"):rep(min(tonumber(schema.minLength) or 0, MAX_ITEMS))
    elseif kind == "integer" then
        return ceil(tonumber(schema.minimum) or 0)
    elseif kind == "number" then
        return tonumber(schema.minimum) or 0
    elseif kind == "boolean" then
        return false
    end
    return null
end

local function example_of(schema)
    return example(schema, type(schema) == "table" and schema or {}, 1, { left = 1000 })
end

local function last(list)
    return type(list) == "table" and list[#list] or nil
end

local function json_format(format)
    if type(format) ~= "table" then
        return nil
    end
    if format.type == "json_object" then
        return {}
    end
    if format.type == "json_schema" then
        local schema = type(format.json_schema) == "table" and format.json_schema.schema or format.schema
        return { schema = schema }
    end
    return nil
end

local function function_tools(tools, name_of, schema_of)
    local found = {}
    if type(tools) == "table" then
        for _, tool in ipairs(tools) do
            local name = type(tool) == "table" and name_of(tool)
            if type(name) == "string" then
                found[#found + 1] = { name = name, schema = schema_of(tool) }
            end
        end
    end
    return found
end

-- What a request asks of the sandbox, read per dialect: its function tools ({name, schema}),
-- whether its tool_choice requires a tool call (`required` true, or the name of the tool), whether
-- its last message is a tool result, and the JSON output format it asks for ({schema = …}; no
-- schema for json_object).
local asks = {}

asks.chat = function(parsed)
    local choice = parsed.tool_choice
    local message = last(parsed.messages)
    return {
        tools = function_tools(parsed.tools,
            function(t) return t.type == "function" and type(t["function"]) == "table" and t["function"].name end,
            function(t) return t["function"].parameters end),
        required = choice == "required" or (type(choice) == "table" and type(choice["function"]) == "table"
            and choice["function"].name),
        after_tool = type(message) == "table" and (message.role == "tool" or message.role == "function"),
        format = json_format(parsed.response_format),
    }
end

asks.responses = function(parsed)
    local choice = parsed.tool_choice
    local item = last(parsed.input)
    return {
        tools = function_tools(parsed.tools,
            function(t) return t.type == "function" and t.name end, function(t) return t.parameters end),
        required = choice == "required" or (type(choice) == "table" and choice.type == "function" and choice.name),
        after_tool = type(item) == "table" and type(item.type) == "string" and item.type:find("_output$") ~= nil,
        format = type(parsed.text) == "table" and json_format(parsed.text.format) or nil,
    }
end

local function has_tool_result(content)
    if type(content) == "table" then
        for _, block in ipairs(content) do
            if type(block) == "table" and block.type == "tool_result" then
                return true
            end
        end
    end
    return false
end

asks.anthropic = function(parsed)
    local choice = type(parsed.tool_choice) == "table" and parsed.tool_choice or {}
    local message = last(parsed.messages)
    local output = type(parsed.output_config) == "table" and parsed.output_config.format or parsed.output_format
    return {
        tools = function_tools(parsed.tools,
            function(t) return type(t.input_schema) == "table" and t.name end, function(t) return t.input_schema end),
        required = choice.type == "any" or (choice.type == "tool" and choice.name),
        after_tool = type(message) == "table" and has_tool_result(message.content),
        format = json_format(output),
    }
end

asks.plain = function()
    return { tools = {} }
end

-- The tool to call when tool_choice requires one: the one it names, else the first. None when
-- the choice is the model's (auto): agents (Claude Code, Codex) send their tools on every turn
-- and expect an answer; none after a tool result, so a loop that requires tools ends.
local function tool_to_call(ask)
    if not ask.required or ask.after_tool or not ask.tools[1] then
        return nil
    end
    for _, tool in ipairs(ask.tools) do
        if tool.name == ask.required then
            return tool
        end
    end
    return ask.tools[1]
end

-- `s` in pieces of about 16 bytes, never inside a UTF-8 character.
local function pieces_of(s)
    local pieces, first = {}, 1
    while first <= #s do
        local last_byte = min(first + 15, #s)
        while last_byte < #s and byte(s, last_byte + 1) >= 0x80 and byte(s, last_byte + 1) < 0xC0 do
            last_byte = last_byte + 1
        end
        pieces[#pieces + 1] = sub(s, first, last_byte)
        first = last_byte + 1
    end
    return pieces
end

-- The answer and its deterministic usage: prompt from the body size, a cache hit for long
-- prompts, reasoning for models named *reason*; output within max_tokens (reasoning included).
-- The answer is a call to a tool (`tool`, `input`, `arguments`), JSON text for a JSON format,
-- or else the sandbox sentence, one token a word; `pieces` is what a stream sends of it.
local function answer(raw, parsed, ask)
    local prompt = max(1, ceil(#raw / 4))
    local limit = tonumber(parsed.max_tokens or parsed.max_completion_tokens or parsed.max_output_tokens)
    limit = limit and max(1, math.floor(limit))
    local reasoning = tostring(parsed.model or ""):find("reason", 1, true) and 16 or 0
    if limit then
        reasoning = min(reasoning, limit - 1)
    end
    local room = limit and limit - reasoning or math.huge
    local a = { prompt = prompt, cached = prompt >= 128 and math.floor(prompt / 128) * 64 or 0,
        reasoning = reasoning }
    local words = {}
    for i = 1, min(ANSWER_WORDS, room) do
        words[i] = (i > 1 and " " or "") .. SENTENCE[(i - 1) % #SENTENCE + 1]
    end
    local tool = tool_to_call(ask)
    if tool then
        local input = example_of(tool.schema)
        a.tool, a.input = tool.name, type(input) == "table" and input or {}
        a.arguments = encode(a.input)
        a.pieces = pieces_of(a.arguments)
    elseif ask.format then
        a.text = encode(ask.format.schema and example_of(ask.format.schema) or { answer = concat(words) })
        a.pieces = pieces_of(a.text)
    else
        a.text, a.pieces, a.output = concat(words), words, #words
    end
    a.output = a.output or min(max(1, ceil(#(a.arguments or a.text) / 4)), room)
    return a
end

-- The request body, raw and decoded (a 400 when it is not a JSON object).
local function read(protocol)
    ngx.req.read_body()
    local raw = ngx.req.get_body_data() or ""
    local parsed = cjson.decode(raw)
    if type(parsed) ~= "table" then
        return refuse(400, protocol,
            "the body is not a JSON object (plain JSON: no NaN or Infinity, nested at most 500 deep)")
    end
    return raw, parsed
end

local function json_headers()
    ngx.header["Content-Type"] = "application/json"
end

local function sse_headers()
    ngx.header["Content-Type"] = "text/event-stream; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache"
end

local function event(data, name)
    if name then
        ngx.print("event: ", name, "\ndata: ", data, "\n\n")
    else
        ngx.print("data: ", data, "\n\n")
    end
    ngx.flush(true)
end

-- Ids unique per request (nginx's request id); the usage stays a function of the request.
local function new_id(prefix)
    return prefix .. ngx.var.request_id
end

-- OpenAI chat completions and completions --------------------------------------------------------

local function openai_usage(a)
    local completion = a.output + a.reasoning
    return {
        prompt_tokens = a.prompt, completion_tokens = completion, total_tokens = a.prompt + completion,
        prompt_tokens_details = { cached_tokens = a.cached, audio_tokens = 0 },
        completion_tokens_details = { reasoning_tokens = a.reasoning, audio_tokens = 0,
            accepted_prediction_tokens = 0, rejected_prediction_tokens = 0 },
    }
end

local function include_usage(parsed)
    return type(parsed.stream_options) == "table" and parsed.stream_options.include_usage == true
end

local function chat_completions()
    local raw, parsed = read("openai")
    local a = answer(raw, parsed, asks.chat(parsed))
    local call_id = new_id("call_")
    local base = { id = new_id("chatcmpl-"), object = "chat.completion", created = ngx.time(),
        model = parsed.model, system_fingerprint = "fp_sandbox" }
    local finish_reason = a.tool and "tool_calls" or "stop"
    if parsed.stream ~= true then
        base.choices = { { index = 0, finish_reason = finish_reason, logprobs = null, message = {
            role = "assistant", content = a.text or null, refusal = null, annotations = EMPTY,
            tool_calls = a.tool and { { id = call_id, type = "function",
                ["function"] = { name = a.tool, arguments = a.arguments } } } or nil,
        } } }
        base.usage = openai_usage(a)
        json_headers()
        return ngx.say(encode(base))
    end
    base.object = "chat.completion.chunk"
    local with_usage = include_usage(parsed)
    local function chunk(delta, finish)
        base.choices = { { index = 0, delta = delta, logprobs = null, finish_reason = finish or null } }
        base.usage = with_usage and null or nil
        event(encode(base))
    end
    sse_headers()
    if a.tool then
        chunk({ role = "assistant", content = null, refusal = null, tool_calls = { { index = 0, id = call_id,
            type = "function", ["function"] = { name = a.tool, arguments = "" } } } })
        for _, piece in ipairs(a.pieces) do
            chunk({ tool_calls = { { index = 0, ["function"] = { arguments = piece } } } })
        end
    else
        chunk({ role = "assistant", content = "", refusal = null })
        for _, piece in ipairs(a.pieces) do
            chunk({ content = piece })
        end
    end
    chunk({}, finish_reason)
    if with_usage then
        base.choices, base.usage = EMPTY, openai_usage(a)
        event(encode(base))
    end
    event("[DONE]")
end

local function completions()
    local raw, parsed = read("openai")
    local a = answer(raw, parsed, asks.plain())
    local base = { id = new_id("cmpl-"), object = "text_completion", created = ngx.time(), model = parsed.model }
    local usage = { prompt_tokens = a.prompt, completion_tokens = a.output, total_tokens = a.prompt + a.output }
    if parsed.stream ~= true then
        base.choices = { { text = a.text, index = 0, logprobs = null, finish_reason = "stop" } }
        base.usage = usage
        json_headers()
        return ngx.say(encode(base))
    end
    local with_usage = include_usage(parsed)
    sse_headers()
    for i, piece in ipairs(a.pieces) do
        base.choices = { { text = piece, index = 0, logprobs = null,
            finish_reason = i == #a.pieces and "stop" or null } }
        base.usage = with_usage and null or nil
        event(encode(base))
    end
    if with_usage then
        base.choices, base.usage = EMPTY, usage
        event(encode(base))
    end
    event("[DONE]")
end

-- OpenAI Responses ---------------------------------------------------------------------------------

local function responses_usage(a)
    return {
        input_tokens = a.prompt, input_tokens_details = { cached_tokens = a.cached, cache_write_tokens = 0 },
        output_tokens = a.output + a.reasoning, output_tokens_details = { reasoning_tokens = a.reasoning },
        total_tokens = a.prompt + a.output + a.reasoning,
    }
end

-- The output items of a Responses answer: a reasoning item for a model that reasons, then the
-- message or the function call. `done` is the item as it ends; `open` as output_item.added shows it.
local function response_items(a)
    local items = {}
    if a.reasoning > 0 then
        local reasoning = { id = new_id("rs_"), type = "reasoning", summary = EMPTY }
        items[1] = { done = reasoning, open = reasoning }
    end
    local id = new_id(a.tool and "fc_" or "msg_")
    if a.tool then
        local call_id = new_id("call_")
        items[#items + 1] = {
            done = { id = id, type = "function_call", status = "completed", call_id = call_id, name = a.tool,
                arguments = a.arguments },
            open = { id = id, type = "function_call", status = "in_progress", call_id = call_id, name = a.tool,
                arguments = "" },
        }
    else
        items[#items + 1] = {
            done = { id = id, type = "message", status = "completed", role = "assistant",
                content = { { type = "output_text", text = a.text, annotations = EMPTY, logprobs = EMPTY } } },
            open = { id = id, type = "message", status = "in_progress", role = "assistant", content = EMPTY },
        }
    end
    return items
end

local function responses()
    local raw, parsed = read("openai")
    local a = answer(raw, parsed, asks.responses(parsed))
    local items = response_items(a)
    local created = ngx.time()
    local response = {
        id = new_id("resp_"), object = "response", created_at = created, status = "in_progress",
        model = parsed.model, output = EMPTY, usage = null, error = null, incomplete_details = null,
        instructions = parsed.instructions or null, max_output_tokens = parsed.max_output_tokens or null,
        previous_response_id = parsed.previous_response_id or null, parallel_tool_calls = true,
        reasoning = { effort = null, summary = null }, store = parsed.store ~= false, background = false,
        temperature = 1, top_p = 1,
        text = type(parsed.text) == "table" and parsed.text or { format = { type = "text" } },
        tool_choice = parsed.tool_choice or "auto", tools = EMPTY, truncation = "disabled", user = null, metadata = {},
        service_tier = "default",
    }
    local function complete()
        local output = {}
        for i, item in ipairs(items) do
            output[i] = item.done
        end
        response.status, response.completed_at = "completed", ngx.time()
        response.output, response.usage = output, responses_usage(a)
        return response
    end
    if parsed.stream ~= true then
        json_headers()
        return ngx.say(encode(complete()))
    end
    sse_headers()
    local seq = 0
    local function emit(name, body)
        body.type, body.sequence_number = name, seq
        seq = seq + 1
        event(encode(body), name)
    end
    emit("response.created", { response = response })
    emit("response.in_progress", { response = response })
    for index0, item in ipairs(items) do
        local index, id = index0 - 1, item.done.id
        emit("response.output_item.added", { output_index = index, item = item.open })
        if item.done.type == "message" then
            local part = item.done.content[1]
            emit("response.content_part.added", { item_id = id, output_index = index, content_index = 0,
                part = { type = "output_text", text = "", annotations = EMPTY, logprobs = EMPTY } })
            for _, piece in ipairs(a.pieces) do
                emit("response.output_text.delta", { item_id = id, output_index = index, content_index = 0,
                    delta = piece, logprobs = EMPTY })
            end
            emit("response.output_text.done", { item_id = id, output_index = index, content_index = 0,
                text = part.text, logprobs = EMPTY })
            emit("response.content_part.done", { item_id = id, output_index = index, content_index = 0, part = part })
        elseif item.done.type == "function_call" then
            for _, piece in ipairs(a.pieces) do
                emit("response.function_call_arguments.delta", { item_id = id, output_index = index, delta = piece })
            end
            emit("response.function_call_arguments.done", { item_id = id, output_index = index,
                arguments = a.arguments })
        end
        emit("response.output_item.done", { output_index = index, item = item.done })
    end
    emit("response.completed", { response = complete() })
end

-- OpenAI embeddings --------------------------------------------------------------------------------

local function embeddings()
    local _, parsed = read("openai")
    local inputs = type(parsed.input) == "table" and parsed.input or { parsed.input or "" }
    local data, prompt = {}, 0
    for i, input in ipairs(inputs) do
        local text = type(input) == "string" and input or encode(input)
        prompt = prompt + max(1, ceil(#text / 4))
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
    json_headers()
    ngx.say(encode({ object = "list", data = data, model = parsed.model,
        usage = { prompt_tokens = prompt, total_tokens = prompt } }))
end

-- Anthropic Messages -------------------------------------------------------------------------------

-- A prompt that asks for caching (cache_control) writes half of itself to the cache, in the
-- 1-hour tier when it asks for ttl 1h; long prompts also read from it. `output` is the output
-- count so far (message_start reports 1, as Anthropic's does).
local function anthropic_usage(a, raw, output)
    local write = raw:find('"cache_control"', 1, true) and math.floor(a.prompt / 2) or 0
    local one_hour = raw:find('"ttl"%s*:%s*"1h"') and write or 0
    return {
        input_tokens = a.prompt - a.cached - write, cache_creation_input_tokens = write,
        cache_read_input_tokens = a.cached, output_tokens = output,
        cache_creation = { ephemeral_5m_input_tokens = write - one_hour, ephemeral_1h_input_tokens = one_hour },
    }
end

local function messages()
    local raw, parsed = read("anthropic")
    local a = answer(raw, parsed, asks.anthropic(parsed))
    local message = { id = new_id("msg_"), type = "message", role = "assistant", model = parsed.model,
        stop_reason = null, stop_sequence = null }
    local stop_reason = a.tool and "tool_use" or "end_turn"
    local block = a.tool and { type = "tool_use", id = new_id("toolu_"), name = a.tool, input = a.input }
        or { type = "text", text = a.text }
    if parsed.stream ~= true then
        message.content, message.stop_reason = { block }, stop_reason
        message.usage = anthropic_usage(a, raw, a.output)
        json_headers()
        return ngx.say(encode(message))
    end
    sse_headers()
    message.content, message.usage = EMPTY, anthropic_usage(a, raw, 1)
    event(encode({ type = "message_start", message = message }), "message_start")
    local start = a.tool and { type = "tool_use", id = block.id, name = a.tool, input = {} }
        or { type = "text", text = "" }
    event(encode({ type = "content_block_start", index = 0, content_block = start }), "content_block_start")
    event('{"type": "ping"}', "ping")
    for _, piece in ipairs(a.pieces) do
        local delta = a.tool and { type = "input_json_delta", partial_json = piece }
            or { type = "text_delta", text = piece }
        event(encode({ type = "content_block_delta", index = 0, delta = delta }), "content_block_delta")
    end
    event('{"type":"content_block_stop","index":0}', "content_block_stop")
    -- Anthropic's message_delta repeats the input counts with the final output count.
    local usage = anthropic_usage(a, raw, a.output)
    usage.cache_creation = nil
    event(encode({ type = "message_delta", delta = { stop_reason = stop_reason, stop_sequence = null },
        usage = usage }), "message_delta")
    event('{"type":"message_stop"}', "message_stop")
end

local function count_tokens()
    local raw, parsed = read("anthropic")
    local a = answer(raw, parsed, asks.plain())
    json_headers()
    ngx.say(encode({ input_tokens = a.prompt }))
end

-- The models each protocol's sandbox serves (the demo's upstream names; it answers any name),
-- listed as each provider lists them: what the admin console's "test" call of a provider reads.
local MODEL_LIST = {
    openai = { "sandbox-chat", "sandbox-reasoner", "sandbox-embed" },
    anthropic = { "sandbox-claude" },
}

local function model_list(protocol)
    return function()
        local data = {}
        for i, id in ipairs(MODEL_LIST[protocol]) do
            if protocol == "anthropic" then
                data[i] = { type = "model", id = id, display_name = id, created_at = "2026-01-01T00:00:00Z" }
            else
                data[i] = { id = id, object = "model", created = 1767225600, owned_by = "tollgate-sandbox" }
            end
        end
        json_headers()
        if protocol == "anthropic" then
            ngx.say(encode({ data = data, has_more = false, first_id = data[1].id, last_id = data[#data].id }))
        else
            ngx.say(encode({ object = "list", data = data }))
        end
    end
end

-- Routing and the provider key -----------------------------------------------------------------------

local ROUTES = {
    ["/sandbox/openai/v1/chat/completions"] = chat_completions,
    ["/sandbox/openai/v1/completions"] = completions,
    ["/sandbox/openai/v1/responses"] = responses,
    ["/sandbox/openai/v1/embeddings"] = embeddings,
    ["/sandbox/anthropic/v1/messages"] = messages,
    ["/sandbox/anthropic/v1/messages/count_tokens"] = count_tokens,
    ["/sandbox/openai/v1/models"] = model_list("openai"),
    ["/sandbox/anthropic/v1/models"] = model_list("anthropic"),
}

-- The key the request carries where the gateway puts the provider's key for the protocol.
local function presented_key(protocol)
    if protocol == "anthropic" then
        return ngx.var.http_x_api_key
    end
    local authorization = ngx.var.http_authorization
    return authorization and authorization:match("^Bearer (.+)$")
end

function _M.serve()
    local protocol = ngx.var.uri:find("^/sandbox/anthropic/") and "anthropic" or "openai"
    local provider, err = catalog.provider(PROVIDERS[protocol])
    if provider == nil then
        ngx.log(ngx.ERR, "sandbox: cannot read its provider's key: ", err)
        return refuse(503, protocol, "its provider's key cannot be read now; try again")
    end
    local key = presented_key(protocol)
    if not provider or not key or key ~= provider.api_key then
        return refuse(401, protocol, "invalid API key: the sandbox answers only through the gateway"
            .. " (send your Tollgate key to the gateway's /v1/… endpoints)")
    end
    local handler = ROUTES[ngx.var.uri]
    if not handler then
        return refuse(404, protocol, "no such endpoint")
    end
    return handler()
end

return _M
