-- Where a request goes: the route its model picks and that route's provider (catalog.lua), and
-- the proxied request pointed there, with the provider's key instead of the client's.
local catalog = require "tollgate.catalog"
local errors = require "tollgate.errors"

local ngx_var = ngx.var
local format = string.format
local random = math.random
local type = type

local fail = errors.fail
local unavailable = errors.unavailable

local _M = {}

-- The model the client named (`model_name`, from the body), its provider and the model name the
-- provider knows; or nil after answering the error (400, 404, or 503 when Redis cannot say).
function _M.resolve(model_name, protocol)
    if type(model_name) ~= "string" or model_name == "" then
        return nil, fail("missing_model", protocol)
    end
    local model, merr = catalog.model(model_name)
    if model == nil then
        return nil, unavailable(protocol, merr)
    end
    if not model then
        return nil, fail("model_not_found", protocol, { model = model_name })
    end
    local route = catalog.pick_route(model)
    local provider, perr = catalog.provider(route.provider)
    if not provider then
        return nil, unavailable(protocol, perr
            or ("model " .. model_name .. " routes to unknown provider " .. route.provider))
    end
    if provider.protocol ~= protocol then
        return nil, fail("invalid_request", protocol, { detail = format(
            "The model '%s' is served over the %s protocol: call it through %s.", model_name,
            provider.protocol == "anthropic" and "Anthropic" or "OpenAI",
            provider.protocol == "anthropic" and "POST /v1/messages" or "the /v1/chat/completions family") })
    end
    return model, provider, route.upstream_model or model_name
end

-- The upstream URL (before the query string) of an endpoint at a provider, cached with the
-- provider: scheme, the balancer's upstream block, the provider's base path and the endpoint.
local function upstream_url(provider, ep)
    local urls = provider.urls
    if not urls then
        urls = {}
        provider.urls = urls
    end
    local url = urls[ep]
    if not url then
        url = provider.scheme .. "://tollgate_provider" .. provider.base_path .. ep.upstream_path
        urls[ep] = url
    end
    return url
end

-- Points the proxied request at the provider, with the provider's key instead of the client's;
-- the peer the balancer connects to goes into the request's state `st`.
function _M.point(ep, provider, st)
    local host_header = provider.host_header
    if not host_header then
        local default_port = provider.scheme == "https" and 443 or 80
        host_header = provider.port == default_port and provider.host or (provider.host .. ":" .. provider.port)
        provider.host_header = host_header -- cached with the provider
    end
    ngx_var.tg_upstream = upstream_url(provider, ep)
    ngx_var.tg_host = host_header
    st.peer_ip = provider.ips[random(#provider.ips)]
    st.peer_port = provider.port
    -- proxy/upstream.conf sends these two variables as the provider's credentials and drops
    -- the client's (an empty value removes a header).
    if provider.protocol == "anthropic" then
        ngx_var.tg_x_api_key = provider.api_key
    else
        local bearer = provider.bearer
        if not bearer then
            bearer = "Bearer " .. provider.api_key
            provider.bearer = bearer -- cached with the provider
        end
        ngx_var.tg_authorization = bearer
    end
end

return _M
