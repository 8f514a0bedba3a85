-- Fake LLM provider for bench/run.py: precomputed answers, the variant chosen by a cheap look
-- at the request body, so the upstream costs as little CPU as possible.
local _M = {}

local ngx_print = ngx.print
local ngx_flush = ngx.flush
local find = string.find

local answers = {}   -- name -> JSON string, or list of SSE events for the *_stream names
local auth = {}      -- accepted credential headers: Bearer for OpenAI, x-api-key for Anthropic

local function read(path)
    local file = assert(io.open(path, "rb"))
    local data = file:read("*a")
    file:close()
    return data
end

-- Called from init_by_lua with the directory bench/run.py wrote the answers to.
function _M.load(dir, upstream_key)
    for _, name in ipairs({ "openai", "anthropic" }) do
        answers[name] = read(dir .. "/" .. name .. ".json")
    end
    for _, name in ipairs({ "openai_stream", "openai_stream_usage", "anthropic_stream" }) do
        local events = {}
        for event in read(dir .. "/" .. name .. ".sse"):gmatch(".-\n\n") do
            events[#events + 1] = event
        end
        answers[name] = events
    end
    auth.bearer = "Bearer " .. upstream_key
    auth.key = upstream_key
end

local function send_json(body)
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Content-Length"] = #body
    ngx_print(body)
end

local function send_stream(events)
    ngx.header["Content-Type"] = "text/event-stream"
    ngx.header["Cache-Control"] = "no-cache"
    for i = 1, #events do
        ngx_print(events[i])
        ngx_flush(true)
    end
end

local function reject(body)
    ngx.status = 401
    send_json(body)
end

local function request_body()
    ngx.req.read_body()
    return ngx.req.get_body_data() or ""
end

local function wants_stream(body)
    return find(body, '"stream"%s*:%s*true') ~= nil
end

function _M.chat_completions()
    if ngx.var.http_authorization ~= auth.bearer then
        return reject('{"error":{"message":"Incorrect API key provided (fake upstream).",'
            .. '"type":"invalid_request_error","param":null,"code":"invalid_api_key"}}')
    end
    local body = request_body()
    if not wants_stream(body) then
        return send_json(answers.openai)
    end
    if find(body, '"include_usage"%s*:%s*true') then
        return send_stream(answers.openai_stream_usage)
    end
    send_stream(answers.openai_stream)
end

function _M.messages()
    if ngx.var.http_x_api_key ~= auth.key and ngx.var.http_authorization ~= auth.bearer then
        return reject('{"type":"error","error":{"type":"authentication_error",'
            .. '"message":"invalid x-api-key (fake upstream)"}}')
    end
    if wants_stream(request_body()) then
        return send_stream(answers.anthropic_stream)
    end
    send_json(answers.anthropic)
end

return _M
