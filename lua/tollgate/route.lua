-- Where a request goes: the route its model picks (by priority, weight and health, health.lua)
-- and that route's provider (catalog.lua), and the proxied request pointed there, with the
-- provider's key instead of the client's.
local catalog = require "tollgate.catalog"
local errors = require "tollgate.errors"
local health = require "tollgate.health"

local ngx_var = ngx.var
local format = string.format
local random = math.random
local type = type

local fail = errors.fail
local unavailable = errors.unavailable

local _M = {}

local NONE = {} -- no route tried yet

-- Lower priority numbers first, weighted at random among equals; `skip` the route ids left out,
-- `usable(route)` whether a route may be chosen.
local function choose(routes, skip, usable)
    local best, total = nil, 0
    for i = 1, #routes do
        local r = routes[i]
        if not skip[r.id] and usable(r) then
            if not best or r.priority < best then
                best, total = r.priority, 0
            end
            if r.priority == best then
                total = total + r.weight
            end
        end
    end
    if not best then
        return nil
    end
    local pick, last = random() * total, nil
    for i = 1, #routes do
        local r = routes[i]
        if not skip[r.id] and r.priority == best and usable(r) then
            last = r
            pick = pick - r.weight
            if pick <= 0 then
                return r
            end
        end
    end
    return last
end

local function anything()
    return true
end

-- pick() among more than one route.
local function pick_among(routes, skip)
    local states = {}
    for i = 1, #routes do
        local id = routes[i].id
        if not skip[id] then
            states[id] = health.state(id)
        end
    end
    local function not_cooling(r)
        return states[r.id] ~= "cooling"
    end
    while true do
        local r = choose(routes, skip, not_cooling)
        if not r then
            return choose(routes, skip, anything), false
        end
        if states[r.id] == "ok" then
            return r, false
        end
        if health.take_probe(r.id) then
            return r, true
        end
        states[r.id] = "cooling" -- another request is trying it
    end
end

-- The route to try next (none in `skip`, the ids tried): a healthy one, or a half-open one this
-- request may trial (then `probe` is true); when every one is cooling, one of those all the same
-- (a request is never refused for health alone). nil when none is left. (A model of one route,
-- the usual, takes no closure: a function that makes one is not compiled by LuaJIT's JIT.)
function _M.pick(model, skip)
    local routes = model.routes
    if #routes == 1 then
        return not skip[routes[1].id] and routes[1] or nil, false
    end
    return pick_among(routes, skip)
end

-- A route's provider, if it speaks `protocol`; else nil and why.
function _M.provider(r, model_name, protocol)
    local provider, err = catalog.provider(r.provider)
    if not provider then
        return nil, err or ("model " .. model_name .. " routes to unknown provider " .. r.provider)
    end
    if provider.protocol ~= protocol then
        return nil, "wrong protocol", provider.protocol
    end
    return provider
end

-- The model the client named (`model_name`, from the body: a model or an alias of one), the
-- first route to try, its provider and whether it is a half-open route's trial; or nil after
-- answering the error (400, 404 also for a model `key` may not use, or 503 when Redis cannot
-- say).
function _M.resolve(model_name, protocol, key)
    if type(model_name) ~= "string" or model_name == "" then
        return nil, fail("missing_model", protocol)
    end
    local model, merr = catalog.model(model_name)
    if model == nil then
        return nil, unavailable(protocol, merr)
    end
    if not model or not catalog.allowed(key, model_name, model.name) then
        return nil, fail("model_not_found", protocol, { model = model_name })
    end
    local r, probe = _M.pick(model, NONE)
    local provider, perr, spoken = _M.provider(r, model_name, protocol)
    if not provider then
        if not spoken then
            return nil, unavailable(protocol, perr)
        end
        return nil, fail("invalid_request", protocol, { detail = format(
            "The model '%s' is served over the %s protocol: call it through %s.", model_name,
            spoken == "anthropic" and "Anthropic" or "OpenAI",
            spoken == "anthropic" and "POST /v1/messages" or "the /v1/chat/completions family") })
    end
    return model, r, provider, probe
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
