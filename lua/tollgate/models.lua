-- GET /v1/models and /v1/models/{id}: the models a key may use, in OpenAI's list shape, or in
-- Anthropic's when the client sends `anthropic-version` (the Anthropic SDK and Claude Code do).
-- The OpenAI shape shows every model: it is the one catalogue (curl, scripts, the ids an error
-- points to), and a model of the other protocol answers a 400 that names its endpoint. The
-- Anthropic shape shows only the models POST /v1/messages serves: its clients can call no other.
-- A key with allowed models sees only those (catalog.allowed: the name or its model's listed).
local cjson = require "cjson.safe"
local auth = require "tollgate.auth"
local catalog = require "tollgate.catalog"
local errors = require "tollgate.errors"

local ngx = ngx

local _M = {}

local function openai_model(name, model)
    return { id = name, object = "model", created = model.created or 0,
        owned_by = model.routes[1] and model.routes[1].provider or "tollgate" }
end

local function anthropic_model(name, model)
    return { type = "model", id = name, display_name = name,
        created_at = os.date("!%Y-%m-%dT%H:%M:%SZ", model.created or 0) }
end

-- The model `name` if the shape asked for shows it to `key`, else false; nil and an error when
-- Redis cannot say.
local function shown(key, name, anthropic)
    local model, err = catalog.model(name)
    if model and not catalog.allowed(key, name, model.name) then
        return false
    end
    if not model or not anthropic then
        return model, err
    end
    local provider, perr = catalog.provider(model.routes[1].provider)
    if provider == nil then
        return nil, perr
    end
    return provider and provider.protocol == "anthropic" and model
end

local function send(body)
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode(body))
end

function _M.serve()
    local anthropic = ngx.var.http_anthropic_version ~= nil
    local protocol = anthropic and "anthropic" or "openai"
    if ngx.req.get_method() ~= "GET" then
        return errors.fail("method_not_allowed", protocol,
            { path = ngx.var.uri, method = ngx.req.get_method(), allowed = "GET" })
    end
    local key = auth.authenticate(protocol)
    if not key then
        return
    end
    local shape = anthropic and anthropic_model or openai_model
    local id = ngx.var.uri:match("^/v1/models/(.+)$")
    if id then
        id = ngx.unescape_uri(id)
        local model, err = shown(key, id, anthropic)
        if model == nil then
            return errors.unavailable(protocol, err)
        end
        if not model then
            return errors.fail("model_not_found", protocol, { model = id })
        end
        return send(shape(id, model))
    end
    local names, err = catalog.model_names()
    if not names then
        return errors.unavailable(protocol, err)
    end
    local data = {}
    for _, name in ipairs(names) do
        local model, merr = shown(key, name, anthropic)
        if model == nil then
            return errors.unavailable(protocol, merr)
        end
        if model then
            data[#data + 1] = shape(name, model)
        end
    end
    if anthropic then
        return send({ data = data, has_more = false, first_id = data[1] and data[1].id or cjson.null,
            last_id = data[#data] and data[#data].id or cjson.null })
    end
    return send({ object = "list", data = data })
end

return _M
