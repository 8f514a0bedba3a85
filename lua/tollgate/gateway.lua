-- The metered request, phase by phase (DESIGN §3): access decides and holds, the balancer
-- picks the peer, the body filter reads the answer's usage, the log phase settles.
local cjson = require "cjson.safe"
local body = require "tollgate.body"
local auth = require "tollgate.auth"
local catalog = require "tollgate.catalog"
local client = require "tollgate.client"
local config = require "tollgate.config"
local cost = require "tollgate.cost"
local endpoints = require "tollgate.endpoints"
local errors = require "tollgate.errors"
local hash = require "tollgate.hash"
local journal = require "tollgate.journal"
local lease = require "tollgate.lease"
local ratelimit = require "tollgate.ratelimit"
local request = require "tollgate.request"
local response = require "tollgate.response"
local settle = require "tollgate.settle"

local ffi = require "ffi"
local get_request = require("resty.core.base").get_request

local ngx = ngx
local ngx_var = ngx.var
local cast = ffi.cast
local req = ngx.req
local decode = cjson.decode
local find = string.find
local format = string.format
local type = type
local tonumber = tonumber

local _M = {}

-- Requests between access and log, by the address of their ngx_http_request_t: cheaper than
-- ngx.ctx, and an error_page redirect to a named location (which clears ngx.ctx) keeps it, so
-- the log phase still settles the hold.
local inflight = {}

local uintptr = ffi.typeof("uintptr_t") -- parsed once, not at every cast

local function request_key()
    return tonumber(cast(uintptr, get_request()))
end

-- This node's id: kept in the shared dict, so a reload (HUP) keeps it and the leases it holds.
local function node_id(name)
    local dict = ngx.shared.tollgate_leases
    local id = dict:get("node")
    if id then
        return id
    end
    local f = io.open("/proc/sys/kernel/random/uuid", "r")
    local uuid = f and f:read("*l")
    if f then f:close() end
    id = name .. "-" .. (uuid or tostring(math.random(1, 2 ^ 31))):sub(1, 13)
    dict:set("node", id)
    return id
end

function _M.init(config_path)
    local conf = config.load(config_path)
    errors.load(conf.errors_path)
    lease.node = node_id(conf.node_name)
    -- `tollgate up` returns this node's leases when it stops nginx.
    local f = io.open(conf.node_file, "w")
    if f then
        f:write(lease.node, "\n")
        f:close()
    end
end

-- Request ids: a random prefix per worker start and a counter, 32 hex digits like nginx's
-- $request_id (which draws 16 fresh random bytes, and a getpid(2), for every request).
local rid_prefix, rid_seq = nil, 0

local function new_request_id()
    rid_seq = rid_seq + 1
    return format("%s%016x", rid_prefix, rid_seq)
end

local function random_hex(bytes)
    local f = assert(io.open("/dev/urandom", "rb"))
    local raw = f:read(bytes)
    f:close()
    return hash.hex(raw)
end

function _M.init_worker()
    -- A worker's live Lua heap is ~2 MB; a collection cycle starts when the heap has grown to
    -- 4× that instead of LuaJIT's 2×: half as many cycles for the garbage every request leaves,
    -- ~3-5% more requests a second non-streamed, for a few MB a worker.
    collectgarbage("setpause", 400)
    math.randomseed(ngx.worker.pid() + ngx.now() * 1000)
    rid_prefix = random_hex(8)
    if ngx.worker.id() == 0 then
        lease.start_maintenance()
        journal.start_recovery()
    end
end

local function usd(nano)
    local n = nano < 0 and 0 or nano
    local text = format("%d.%09d", math.floor(n / 1e9), n % 1e9):gsub("0+$", "")
    if text:sub(-1) == "." then text = text .. "00" end
    return "$" .. text
end

local function request_body()
    req.read_body()
    local raw = req.get_body_data()
    if raw then
        return raw
    end
    local path = req.get_body_file()
    if not path then
        return nil
    end
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    raw = f:read("*a")
    f:close()
    return raw
end

local fail = errors.fail
local unavailable = errors.unavailable

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

-- Points the proxied request at the provider, with the provider's key instead of the client's.
local function route_upstream(ep, provider, st)
    local host_header = provider.host_header
    if not host_header then
        local default_port = provider.scheme == "https" and 443 or 80
        host_header = provider.port == default_port and provider.host or (provider.host .. ":" .. provider.port)
        provider.host_header = host_header -- cached with the provider
    end
    ngx_var.tg_upstream = upstream_url(provider, ep)
    ngx_var.tg_host = host_header
    st.peer_ip = provider.ips[math.random(#provider.ips)]
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

function _M.access()
    local uri = ngx_var.uri
    local ep = endpoints.BY_PATH[uri]
    if not ep then
        return fail("path_not_found", endpoints.protocol_of(uri),
            { method = req.get_method(), path = uri, hint = endpoints.hint(uri) })
    end
    local protocol = ep.protocol
    if req.get_method() ~= "POST" then
        return fail("method_not_allowed", protocol, { path = uri, method = req.get_method(), allowed = "POST" })
    end

    local key = auth.authenticate(protocol)
    if not key then
        return
    end

    local raw = request_body()
    if not raw or raw == "" then
        return fail("invalid_request", protocol, { detail = "The request body is empty: send a JSON object." })
    end
    local parsed, jerr = decode(raw)
    if parsed == nil then
        return fail("malformed_json", protocol, { detail = jerr })
    end
    if type(parsed) ~= "table" or parsed[1] ~= nil then
        return fail("invalid_request", protocol, { detail = "The request body must be a JSON object." })
    end
    local ambiguous = request.ambiguous(raw, parsed)
    if ambiguous then
        return fail("invalid_parameter", protocol, { detail = ambiguous })
    end
    local model_name = parsed.model
    if type(model_name) ~= "string" or model_name == "" then
        return fail("missing_model", protocol)
    end
    local model, merr = catalog.model(model_name)
    if model == nil then
        return unavailable(protocol, merr)
    end
    if not model then
        return fail("model_not_found", protocol, { model = model_name })
    end
    local route = catalog.pick_route(model)
    local provider, perr = catalog.provider(route.provider)
    if not provider then
        return unavailable(protocol, perr or ("model " .. model_name .. " routes to unknown provider " .. route.provider))
    end
    if provider.protocol ~= protocol then
        return fail("invalid_request", protocol, { detail = format(
            "The model '%s' is served over the %s protocol: call it through %s.", model_name,
            provider.protocol == "anthropic" and "Anthropic" or "OpenAI",
            provider.protocol == "anthropic" and "POST /v1/messages" or "the /v1/chat/completions family") })
    end

    local is_stream, serr = request.stream(parsed)
    if serr then
        return fail("invalid_parameter", protocol, { detail = serr })
    end
    local per_choice, fan_out = 0, 1
    if not ep.unbilled then
        per_choice, fan_out = request.output(ep, parsed, model)
        if not per_choice then
            return fail("invalid_parameter", protocol, { detail = fan_out })
        end
    end
    local new_raw, strip = raw, false
    if is_stream and ep.stream_usage_option then
        local so = parsed.stream_options
        if type(so) ~= "table" or so.include_usage ~= true then
            local edited, berr = body.request_stream_usage(new_raw, so)
            if not edited then
                return fail("invalid_parameter", protocol, { detail = berr })
            end
            new_raw, strip = edited, true
        end
    end
    local upstream_model = route.upstream_model or model_name
    if upstream_model ~= model_name then
        new_raw = body.replace_model(new_raw, upstream_model) or new_raw
    end

    local price = model.price
    local out_tokens = per_choice * fan_out
    local limit_headers
    if key.rpm > 0 or key.tpm > 0 then
        local wait, rerr
        limit_headers, wait = ratelimit.take(key, math.ceil(#raw / 4) + out_tokens)
        if not limit_headers then
            rerr = wait
            return unavailable(protocol, rerr)
        end
        if wait then
            return errors.respond("rate_limit_exceeded", protocol, { retry_after = wait,
                limit = (key.rpm > 0 and key.rpm .. " requests" or "")
                    .. (key.rpm > 0 and key.tpm > 0 and ", " or "")
                    .. (key.tpm > 0 and key.tpm .. " tokens" or "") .. " per minute" }, limit_headers)
        end
    end
    if limit_headers then
        for name, value in pairs(limit_headers) do
            ngx.header[name] = value -- kept on the provider's answer
        end
    end
    local hold = 0
    if not ep.unbilled then
        local in_tokens = request.input_tokens(raw, model)
        hold = cost.worst_case(in_tokens, out_tokens, price)
        local ok, why, available, lerr = lease.acquire(key.id, key.acct, key.shard, hold)
        if not ok then
            if why == "unavailable" then
                return unavailable(protocol, lerr)
            end
            available = available > 0 and available or 0
            local most = math.floor(cost.MAX_TOKENS / fan_out)
            return fail(why == "key_limit" and "key_limit_reached" or "insufficient_balance", protocol, {
                needed = usd(hold), available = usd(available), max_output = out_tokens,
                affordable = cost.affordable(available, in_tokens, fan_out, price,
                    model.max_output < most and model.max_output or most),
            })
        end
    end

    if new_raw ~= raw then
        req.set_body_data(new_raw)
    end
    local rid = new_request_id()
    ngx_var.tg_rid = rid
    local st = {
        ep = ep, key = key, hold = hold, price = price, model = model_name,
        umodel = upstream_model, provider = provider.name, stream = is_stream, strip = strip,
        rid = rid, request_bytes = #raw,
    }
    route_upstream(ep, provider, st)
    inflight[request_key()] = st
end

function _M.balance()
    local st = inflight[request_key()]
    local balancer = require "ngx.balancer"
    local ok, err = balancer.set_current_peer(st.peer_ip, st.peer_port)
    if not ok then
        ngx.log(ngx.ERR, "failed to set upstream peer: ", err)
        return ngx.exit(502)
    end
end

-- At the answer's first body chunk: its status and time to first byte are noted, and its parser
-- made when it carries usage (a 2xx of a metered endpoint); false when it is not read. (A header
-- filter phase would cost every request a Lua call more.)
local function start_answer(st)
    st.ttfb = ngx.now() - ngx.req.start_time()
    local status = ngx.status
    st.status = status
    if status < 200 or status >= 300 or not st.ep.usage then
        return false
    end
    -- A stream asked for may still come back whole (a provider that ignores `stream`).
    local ctype = st.stream and ngx.header["Content-Type"]
    local is_sse = ctype and find(ctype, "event-stream", 1, true) ~= nil
    local declared = st.strip and is_sse and tonumber(ngx.header["Content-Length"]) or nil
    return response.new(st.ep.usage, is_sse, st.strip, declared)
end

-- Streams: once the client has gone, the rest of the answer is swallowed (not written, so
-- nginx keeps reading the provider) until the provider's usage arrives or the drain limit.
function _M.body_filter()
    local st = inflight[request_key()]
    if not st then
        return
    end
    local parser = st.parser
    if parser == nil then
        parser = start_answer(st)
        st.parser = parser
    end
    if not parser then
        return
    end
    local chunk = ngx.arg[1]
    if parser.stream and not st.gone and client.gone() then
        st.gone = true
        st.drain_left = config.get().drain_limit_bytes
    end
    local out = response.feed(parser, chunk, ngx.arg[2])
    if st.gone then
        ngx.arg[1] = ""
        st.drain_left = st.drain_left - #chunk
        if st.drain_left < 0 then
            st.drain_exceeded = true
            return ngx.ERROR
        end
    elseif out then
        ngx.arg[1] = out
    end
end

local NO_TOKENS = { ["in"] = 0, cr = 0, cw = 0, cw1h = 0, out = 0, rsn = 0 }

-- The usage record, packed in control_plane/usage_records.py RECORD_FIELDS order by one format
-- (numbers as integers: %d formats the integral doubles exactly, without exponent).
local RECORD = "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d"

function _M.log()
    local id = request_key()
    local st = inflight[id]
    if not st then
        return
    end
    inflight[id] = nil
    if st.ep.unbilled then
        return
    end
    local hold = st.hold
    local tokens, basis, charge, over = nil, "none", 0, 0
    local status = st.status or ngx.status
    local parser = st.parser
    if parser then
        local final, invalid
        tokens, final, invalid = response.usage(parser)
        if invalid then
            basis, charge = "invalid", hold -- figures that are no token counts: the hold, no more
            ngx.log(ngx.WARN, "request ", st.rid, ": the provider reported usage that is not valid",
                " token counts; charged the hold")
        elseif tokens and final then
            basis = st.gone and "drained" or "provider"
            charge = cost.cost(tokens, st.price)
            if charge > hold then
                charge, over = hold, charge - hold -- never more than held: the excess is overage
            end
        elseif not tokens and response.failed(parser) then
            basis = "none" -- an error answer that reports no usage costs nothing
        else
            tokens, basis = response.estimate(parser, st.request_bytes), "estimated"
            charge = cost.cost(tokens, st.price)
            if charge > hold then
                charge = hold
            end
            if response.skipped(parser) or st.drain_exceeded then
                ngx.log(ngx.WARN, "request ", st.rid, ": billed an estimate, ", st.drain_exceeded
                    and "the drain limit was reached before the provider's usage" or
                    "an SSE event too large to read may have held the usage")
            end
        end
    end
    tokens = tokens or NO_TOKENS
    local key = st.key
    lease.finish(key.id, hold, charge)
    local now = ngx.now()
    local ms = (now - ngx.req.start_time()) * 1000
    settle.push(key.shard, key.id, key.acct, charge, format(RECORD,
        st.rid, now * 1000, key.acct, key.id, st.model, st.umodel, st.provider,
        st.price.version, st.ep.name, st.stream and "1" or "0", status, basis,
        tokens["in"], tokens.cr, tokens.cw, tokens.cw1h, tokens.out, tokens.rsn, charge, ms,
        st.ttfb and st.ttfb * 1000 or ms, lease.node, hold, over))
end

return _M
