-- The metered request, phase by phase (DESIGN §3): access decides and holds, the balancer
-- picks the peer, the body filter reads the answer's usage and settles at its end (the log phase
-- when the answer never got there). Each step is its module's: request.lua reads the request,
-- route.lua picks the provider, rewrite.lua edits the body, ratelimit.lua and hold.lua admit it,
-- record.lua writes its usage record, settle.lua settles it. Every request of a known, active
-- key gets one usage record, the ones refused after authentication too (basis "refused", nothing
-- charged), with the error the client got.
local auth = require "tollgate.auth"
local client = require "tollgate.client"
local config = require "tollgate.config"
local error_body = require "tollgate.error_body"
local errors = require "tollgate.errors"
local headers = require "tollgate.headers"
local health = require "tollgate.health"
local hold = require "tollgate.hold"
local journal = require "tollgate.journal"
local lease = require "tollgate.lease"
local metrics = require "tollgate.metrics"
local node = require "tollgate.node"
local ratelimit = require "tollgate.ratelimit"
local record = require "tollgate.record"
local request = require "tollgate.request"
local response = require "tollgate.response"
local rewrite = require "tollgate.rewrite"
local route = require "tollgate.route"
local settle = require "tollgate.settle"

local ffi = require "ffi"
local get_request = require("resty.core.base").get_request
local new_table = require "table.new"

local ngx = ngx
local ngx_var = ngx.var
local cast = ffi.cast
local req = ngx.req
local concat = table.concat
local find = string.find
local match = string.match
local sub = string.sub
local tonumber = tonumber

local _M = {}

-- Requests between authentication and log, by the address of their ngx_http_request_t: cheaper
-- than ngx.ctx, and an error_page redirect to a named location (which clears ngx.ctx) keeps it,
-- so the log phase still settles the hold and writes the record.
local inflight = {}

local uintptr = ffi.typeof("uintptr_t") -- parsed once, not at every cast

local function request_key()
    return tonumber(cast(uintptr, get_request()))
end

-- The gateway's own error answered to a request in flight is its record's (record.lua).
errors.on_respond(function(code, message)
    local st = inflight[request_key()]
    if st then
        st.ecode, st.emsg = code, message
    end
end)

local STATE_FIELDS = 32 -- room for every field a request's state gets, so none grows the table

function _M.init(config_path)
    local conf = config.load(config_path)
    errors.load(conf.errors_path)
    node.start(lease.node_id(conf.node_name), conf.node_file)
end

function _M.init_worker()
    -- A worker's live Lua heap is ~2 MB; a collection cycle starts when the heap has grown to
    -- 4× that instead of LuaJIT's 2×: half as many cycles for the garbage every request leaves,
    -- ~3-5% more requests a second non-streamed, for a few MB a worker.
    collectgarbage("setpause", 400)
    math.randomseed(ngx.worker.pid() + ngx.now() * 1000)
    node.start_worker()
    journal.start_worker()
    metrics.start_worker()
    if ngx.worker.id() == 0 then
        lease.start_maintenance()
    end
end

-- Each step answers the client itself when it refuses the request, and returns nil.
function _M.access()
    local ep = request.endpoint()
    if not ep then
        return
    end
    local protocol = ep.protocol
    local key = auth.authenticate(protocol)
    if not key then
        return
    end
    -- From here on the request has a record, also when a step below refuses it.
    local rid = node.request_id()
    ngx_var.tg_rid = rid
    local st = new_table(0, STATE_FIELDS)
    st.ep, st.key, st.rid = ep, key, rid
    inflight[request_key()] = st
    local raw, parsed = request.read(protocol)
    if not raw then
        return
    end
    st.asked = parsed.model
    local model, first, provider, probe = route.resolve(parsed.model, protocol, key)
    if not model then
        return
    end
    st.model = model
    local is_stream, per_choice, fan_out = request.decide(ep, parsed, model, protocol)
    if is_stream == nil then
        return
    end
    st.stream = is_stream
    local sent, strip = rewrite.body(ep, raw, parsed, is_stream, first.upstream_model, protocol)
    if not sent then
        return
    end
    if not ratelimit.admit(key, #raw, per_choice * fan_out, protocol) then
        return
    end
    local held = hold.place(ep, key, raw, model, hold.price(model, first, key), per_choice, fan_out, protocol)
    if not held then
        return
    end

    if sent ~= raw then
        req.set_body_data(sent)
    end
    st.hold, st.route, st.first, st.probe, st.strip, st.request_bytes, st.tries = held, first, first, probe,
        strip, #raw, 1
    metrics.admitted()
    route.point(ep, provider, st)
    if #model.routes > 1 and config.get().max_attempts > 1 then
        -- Another route may serve if this one fails before its first byte: nginx.conf's @attempt.
        st.raw, st.parsed, st.sent, st.tried = raw, parsed, sent, { [first.id] = true }
        return ngx.exec("@attempt")
    end
end

-- The status of the attempt that just failed, and whether its provider answered at all (else
-- nginx made the 502 or 504: unreachable, or no answer in time).
local function failed_attempt()
    local status = tonumber(match(ngx_var.upstream_status or "", "(%d+)[^%d]*$")) or 502
    local header_time = match(ngx_var.upstream_header_time or "", "(%S+)%s*$")
    return status, header_time ~= nil and header_time ~= "-"
end

-- The error for a request whose every attempt failed, the last with `status`.
local function exhausted(st, status, answered)
    local protocol, vars = st.ep.protocol, { model = st.asked, status = status, attempts = st.tries }
    if not answered then
        return errors.fail(status == 504 and "provider_timeout" or "provider_unreachable", protocol, vars)
    end
    if status == 429 then
        local retry_after = ngx_var.upstream_http_retry_after
        return errors.fail("provider_rate_limited", protocol, vars,
            retry_after and { ["Retry-After"] = retry_after } or nil)
    end
    return errors.fail(status == 529 and "provider_overloaded" or "provider_error", protocol, vars)
end

-- The access phase of @attempt, where a request with more than one route is proxied: first when
-- access() sends it there, then each time its attempt fails before a byte reached the client
-- (nginx.conf's error_page): the next route is tried, up to max_attempts, or the client is
-- answered the last failure. Every attempt of a request shares its one hold and record.
function _M.attempt()
    local st = inflight[request_key()]
    if st.proxied ~= st.tries then
        st.proxied = st.tries -- its first arrival: proxy the attempt access() pointed
        return
    end
    local status, answered = failed_attempt()
    local failed = st.failed or {}
    failed[#failed + 1] = status
    st.failed = failed
    local model = st.model
    health.failed(st.route.id, status, tonumber(ngx_var.upstream_http_retry_after), st.probe)
    if (answered and not model.retry_set[status]) or st.tries >= config.get().max_attempts then
        return exhausted(st, status, answered)
    end
    local protocol = st.ep.protocol
    local r, probe, provider
    repeat
        r, probe = route.pick(model, st.tried)
        if not r then
            return exhausted(st, status, answered)
        end
        st.tried[r.id] = true
        provider = route.provider(r, model.name, protocol)
    until provider
    local sent = rewrite.body(st.ep, st.raw, st.parsed, st.stream, r.upstream_model, protocol)
    if sent and sent ~= st.sent then
        req.set_body_data(sent)
        st.sent = sent
    end
    st.route, st.probe, st.tries = r, probe, st.tries + 1
    st.proxied = st.tries
    route.point(st.ep, provider, st)
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
-- made when it carries usage (a 2xx of a metered endpoint); false when it is not read. A
-- provider's error answer (from 400 on, not the gateway's own: that one is noted already) is kept
-- to read its code and message, up to error_body.MAX_BYTES. (A header filter phase would cost
-- every request a Lua call more.)
local function start_answer(st)
    st.ttfb = ngx.now() - ngx.req.start_time()
    local status = ngx.status
    st.status = status
    if status < 200 or status >= 300 then
        if status >= 400 and not st.ecode then
            st.error_body, st.error_bytes = {}, 0
        end
        return false
    end
    if st.probe then
        health.succeeded(st.route.id)
    end
    if not st.ep.usage then
        return false
    end
    -- A stream asked for may still come back whole (a provider that ignores `stream`).
    local ctype = st.stream and ngx.header["Content-Type"]
    local is_sse = ctype and find(ctype, "event-stream", 1, true) ~= nil
    local declared = st.strip and is_sse and tonumber(ngx.header["Content-Length"]) or nil
    return response.new(st.ep.usage, is_sse, st.strip, declared)
end

-- The provider refused the gateway's key for it (401, 403): the client gets a 502 that says so,
-- not the provider's answer, which its SDK would take for a bad Tollgate key; the route cools.
function _M.header_filter()
    local status = ngx.status
    if status == 401 or status == 403 then
        local st = inflight[request_key()]
        if st and st.route and not st.ecode then -- admitted, not the gateway's own error: the provider's
            health.refused(st.route.id, status)
            local code, body, message = errors.build("provider_credentials_refused", st.ep.protocol, {
                model = st.asked, status = status, request_id = st.rid })
            st.refusal = body .. "\n"
            st.ecode, st.emsg = "provider_credentials_refused", message
            ngx.status = code
            ngx.header["Content-Type"] = "application/json"
            ngx.header["Content-Length"] = #st.refusal
            ngx.header["WWW-Authenticate"] = nil
        end
    end
    headers.filter()
end

-- Streams: once the client has gone, the rest of the answer is swallowed (not written, so
-- nginx keeps reading the provider) until the provider's usage arrives or the drain limit.
local function filter(st)
    local refusal = st.refusal
    if refusal then
        ngx.arg[1] = refusal
        st.refusal = ""
        st.status = st.status or ngx.status
        return
    end
    local parser = st.parser
    if parser == nil then
        parser = start_answer(st)
        st.parser = parser
    end
    if not parser then
        local kept = st.error_body
        if kept and st.error_bytes < error_body.MAX_BYTES then
            local chunk = ngx.arg[1]
            kept[#kept + 1] = chunk
            st.error_bytes = st.error_bytes + #chunk
        end
        return
    end
    local chunk = ngx.arg[1]
    -- Once the provider's final usage is read the client is billed from it whenever it leaves
    -- (a client that closes on `[DONE]` may be gone before nginx's last call, its end).
    if parser.stream and not st.gone and not parser.final and client.gone() then
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

-- Content of the error page nginx redirects its own errors to. The redirect runs the server's
-- `set $tg_rid ""` again: an admitted request (a provider unreachable or slow) gets its id back,
-- so its answer names the request id its usage record has.
function _M.error_page()
    local st = inflight[request_key()]
    if st then
        ngx_var.tg_rid = st.rid
    end
    return errors.nginx_error()
end

-- Records request `st` (its usage record journaled and queued for settlement, then its metrics)
-- and forgets it.
local function finish(id, st)
    inflight[id] = nil
    if st.ep.unbilled then
        return
    end
    local status = st.status or ngx.status
    local now = ngx.now()
    local ms = (now - ngx.req.start_time()) * 1000
    local key = st.key
    if not st.hold then -- refused before anything was held
        settle.push(key.shard, key.id, key.acct, 0, record.refused(st, status, now, ms))
        -- After the record: the metrics never stand between a request and its billing.
        return metrics.finished(st.model and st.model.name or "", "", status, "refused", nil, 0, 0, 0, 0, ms / 1000)
    end
    local kept = st.error_body
    if kept then
        st.ecode, st.emsg = error_body.read(sub(concat(kept), 1, error_body.MAX_BYTES))
    end
    local tokens, basis, charge, over, pv, provider_cost = hold.close(st)
    settle.push(key.shard, key.id, key.acct, charge, record.pack(st, status, tokens, basis, charge,
        over, pv, provider_cost, now, ms))
    metrics.finished(st.model.name, st.route.provider, status, basis, tokens, charge, provider_cost, over, st.tries,
        ms / 1000, st.ttfb, metrics.upstream_seconds(ngx_var.upstream_response_time), true)
end

-- A request is recorded when nginx ends its answer (the body filter's last call), before that end
-- goes on to the client: a chunked answer (every stream) is not whole without its closing chunk,
-- so a node killed once a client has its answer has its record in the journal. (An answer of a
-- known Content-Length is whole with its last byte, passed on in the call before, in the same
-- pass of nginx's event loop.)
function _M.body_filter()
    local id = request_key()
    local st = inflight[id]
    if not st then
        return
    end
    local rc = filter(st)
    if ngx.arg[2] then
        finish(id, st)
    end
    return rc
end

-- A request whose answer never ended in the body filter (cut short by the provider or the drain
-- limit, nginx's own error page) is recorded here.
function _M.log()
    local id = request_key()
    local st = inflight[id]
    if st then
        finish(id, st)
    end
end

return _M
