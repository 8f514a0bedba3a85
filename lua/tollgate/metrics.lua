-- Prometheus metrics of a gateway node: `GET /metrics` (loopback, or `Authorization: Bearer` the
-- TOLLGATE_METRICS_TOKEN). A request adds to counters in its worker's Lua tables only (no lock,
-- no shared-dict call on the request path); each worker adds them into the `tollgate_metrics`
-- shared dict every FLUSH_SECONDS, so a scrape sees what finished up to a second before. A
-- scrape reads that dict and, for the gauges, the node's lease and route dicts: never Redis.
--
-- Series are keyed by their exposition name with labels; money is kept in integer nano-USD and
-- written as exact decimal USD. Labels are bounded: models and providers come from the catalog
-- (a name no model has is counted as model ""), statuses and bases are few, and no key or
-- account id is ever a label.
local config = require "tollgate.config"
local errors = require "tollgate.errors"
local hash = require "tollgate.hash"
local usage_classes = require "tollgate.usage_classes"

local ngx = ngx
local concat = table.concat
local format = string.format
local gsub = string.gsub
local match = string.match
local sort = table.sort
local tonumber = tonumber
local pairs = pairs

local _M = {}

local dict = ngx.shared.tollgate_metrics
local FLUSH_SECONDS = 1
local NANO = 1000000000
-- Seconds: histogram buckets of the whole request, the provider's answer, the first byte.
local BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 }
local HELP = {
    tollgate_requests_total = { "counter", "Requests answered, by model, provider, status and billing basis." },
    tollgate_tokens_total = { "counter", "Tokens billed, by usage class." },
    tollgate_charged_usd_total = { "counter", "USD charged to customers." },
    tollgate_provider_cost_usd_total = { "counter", "USD the serving routes cost the operator." },
    tollgate_overage_usd_total = { "counter", "USD providers reported above a request's hold, not charged." },
    tollgate_holds_refused_total = { "counter", "Requests refused 402: the hold did not fit the balance or the key's limit." },
    tollgate_rate_limited_total = { "counter", "Requests refused 429 by a key's rate limit." },
    tollgate_fallbacks_total = { "counter", "Requests that took more than one attempt (another route or a retry)." },
    tollgate_route_cooldowns_total = { "counter", "Times a route started cooling, by route id." },
    tollgate_request_duration_seconds = { "histogram", "Whole request, as the client saw it." },
    tollgate_upstream_duration_seconds = { "histogram", "The provider's answer, its last attempt." },
    tollgate_ttfb_seconds = { "histogram", "Until the first byte of the answer reached the client." },
    tollgate_route_health = { "gauge", "Routes of this node by health: ok routes are not listed." },
    tollgate_requests_in_flight = { "gauge", "Admitted requests not finished yet, per worker." },
    tollgate_lease_keys = { "gauge", "API keys this node holds a lease of funds for." },
    tollgate_lease_available_usd = { "gauge", "USD of this node's leases that no request holds." },
    tollgate_lease_dict_free_bytes = { "gauge", "Free space of the tollgate_leases shared dict." },
}

local counts = {}   -- series -> amount since the last flush (this worker)
local in_flight = 0 -- this worker's admitted requests not finished

local function escape(value)
    return (gsub(gsub(gsub(value, "\\", "\\\\"), "\n", "\\n"), '"', '\\"'))
end

local function add(series, amount)
    counts[series] = (counts[series] or 0) + amount
end

-- Each histogram's series names, made once, and this worker's observations since the last flush:
-- a request adds one to the count of the first bucket its value fits (counts[#BUCKETS + 1]:
-- above every bound), and the flush makes the cumulative `le` series of them.
local HISTOGRAMS = {}
for _, name in ipairs({ "tollgate_request_duration_seconds", "tollgate_upstream_duration_seconds",
                        "tollgate_ttfb_seconds" }) do
    local buckets = {}
    for i = 1, #BUCKETS do
        buckets[i] = format('%s_bucket{le="%s"}', name, BUCKETS[i])
    end
    buckets[#BUCKETS + 1] = name .. '_bucket{le="+Inf"}'
    HISTOGRAMS[name] = { buckets = buckets, sum = name .. "_sum_us", count = name .. "_count",
                         counts = {}, sum_us = 0, n = 0 }
end
local REQUEST_DURATION = HISTOGRAMS.tollgate_request_duration_seconds
local UPSTREAM_DURATION = HISTOGRAMS.tollgate_upstream_duration_seconds
local TTFB = HISTOGRAMS.tollgate_ttfb_seconds

-- Notes `seconds` in a histogram: its bucket's count, the sum (in whole microseconds), the count.
local function observe(histogram, seconds)
    local i = 1
    while i <= #BUCKETS and seconds > BUCKETS[i] do
        i = i + 1
    end
    local counts = histogram.counts
    counts[i] = (counts[i] or 0) + 1
    local us = seconds * 1000000
    histogram.sum_us = histogram.sum_us + (us - us % 1)
    histogram.n = histogram.n + 1
end

-- Moves a histogram's observations into `pending` as its exposition series: each bucket counts
-- the observations at or below its bound.
local function take_histogram(histogram, pending)
    if histogram.n == 0 then
        return
    end
    local counts, buckets, below = histogram.counts, histogram.buckets, 0
    for i = 1, #buckets do
        below = below + (counts[i] or 0)
        if below > 0 then
            pending[buckets[i]] = below
        end
    end
    pending[histogram.sum], pending[histogram.count] = histogram.sum_us, histogram.n
    histogram.counts, histogram.sum_us, histogram.n = {}, 0, 0
end

-- tollgate_requests_total's series of these labels, made once per combination (they are bounded).
local request_names = {}
local function requests_series(model, provider, status, basis)
    local by_provider = request_names[model]
    if not by_provider then
        by_provider = {}
        request_names[model] = by_provider
    end
    local by_status = by_provider[provider]
    if not by_status then
        by_status = {}
        by_provider[provider] = by_status
    end
    local by_basis = by_status[status]
    if not by_basis then
        by_basis = {}
        by_status[status] = by_basis
    end
    local name = by_basis[basis]
    if not name then
        name = format('tollgate_requests_total{model="%s",provider="%s",status="%d",basis="%s"}',
            escape(model), escape(provider), status, basis)
        by_basis[basis] = name
    end
    return name
end

-- tollgate_tokens_total's series, in usage_classes order: { record field, series }.
local CLASS_SERIES = {}
for i, class in ipairs(usage_classes) do
    CLASS_SERIES[i] = { class.field, format('tollgate_tokens_total{class="%s"}', class.price) }
end

-- A request was admitted (its hold placed) / finished (its log phase ran, admitted or not).
function _M.admitted()
    in_flight = in_flight + 1
end

-- A finished request: its model and provider ("" for none), status, billing basis, billed
-- tokens (nil: none), charge, provider cost and overage (nano-USD), attempts, and its times in
-- seconds (ttfb and upstream nil when unknown); `held` whether it had been admitted.
function _M.finished(model, provider, status, basis, tokens, charge, provider_cost, over, tries, seconds,
                     ttfb, upstream, held)
    if held then
        in_flight = in_flight - 1
    end
    add(requests_series(model, provider, status, basis), 1)
    if tokens then
        for i = 1, #CLASS_SERIES do
            local class = CLASS_SERIES[i]
            local n = tokens[class[1]]
            if n and n > 0 then
                add(class[2], n)
            end
        end
    end
    if charge > 0 then add("tollgate_charged_usd_total", charge) end
    if provider_cost > 0 then add("tollgate_provider_cost_usd_total", provider_cost) end
    if over > 0 then add("tollgate_overage_usd_total", over) end
    if status == 402 and basis == "refused" then add("tollgate_holds_refused_total", 1) end
    if status == 429 and basis == "refused" then add("tollgate_rate_limited_total", 1) end
    if tries > 1 then add("tollgate_fallbacks_total", 1) end
    observe(REQUEST_DURATION, seconds)
    if ttfb then observe(TTFB, ttfb) end
    if upstream then observe(UPSTREAM_DURATION, upstream) end
end

-- The seconds of the last attempt in nginx's $upstream_response_time ("0.012, 0.100 : 0.3"; a
-- request of one attempt, the usual, has a plain number, read without a pattern).
function _M.upstream_seconds(value)
    if not value then
        return nil
    end
    local seconds = tonumber(value)
    if seconds then
        return seconds
    end
    local last = match(value, "([%d.]+)%s*$")
    return last and tonumber(last)
end

function _M.route_cooled(id)
    add(format('tollgate_route_cooldowns_total{route="%s"}', id), 1)
end

local function flush(premature)
    if premature then
        return
    end
    local pending = counts
    counts = {}
    for _, histogram in pairs(HISTOGRAMS) do
        take_histogram(histogram, pending)
    end
    for series, amount in pairs(pending) do
        local _, err = dict:incr(series, amount, 0)
        if err then
            ngx.log(ngx.WARN, "metrics: ", series, " not counted: ", err)
        end
    end
    dict:set(format('tollgate_requests_in_flight{worker="%d"}', ngx.worker.id()), in_flight)
end

function _M.start_worker()
    local ok, err = ngx.timer.every(FLUSH_SECONDS, flush)
    if not ok then
        ngx.log(ngx.ERR, "metrics: no flush timer: ", err)
    end
end

-- Exact decimal USD of integer nano-USD.
local function usd(nano)
    local sign = nano < 0 and "-" or ""
    nano = nano < 0 and -nano or nano
    return format("%s%d.%09d", sign, (nano - nano % NANO) / NANO, nano % NANO)
end

local function family(series)
    local name = match(series, "^[%w_]+")
    return (gsub(gsub(gsub(name, "_bucket$", ""), "_sum_us$", ""), "_count$", ""))
end

local function gauges(lines)
    local routes = ngx.shared.tollgate_routes
    local cooling, half_open = 0, 0
    for _, key in pairs(routes:get_keys(0)) do
        if match(key, "^c:") then
            cooling = cooling + 1
        elseif match(key, "^h:") then
            half_open = half_open + 1
        end
    end
    lines[#lines + 1] = format('tollgate_route_health{state="cooling"} %d', cooling)
    lines[#lines + 1] = format('tollgate_route_health{state="half_open"} %d', half_open - cooling)
    local leases = ngx.shared.tollgate_leases
    local keys, available = 0, 0
    for _, key in pairs(leases:get_keys(0)) do
        if match(key, "^a:") then
            keys = keys + 1
            available = available + (leases:get(key) or 0)
        end
    end
    lines[#lines + 1] = format("tollgate_lease_keys %d", keys)
    lines[#lines + 1] = "tollgate_lease_available_usd " .. usd(available)
    lines[#lines + 1] = format("tollgate_lease_dict_free_bytes %d", leases:free_space())
end

-- Lines in order, a histogram's buckets by their bound (+Inf last), not as text.
local function before(a, b)
    local a_head, a_le = match(a, '^(.-)le="([^"]+)"')
    local b_head, b_le = match(b, '^(.-)le="([^"]+)"')
    if a_le and b_le and a_head == b_head then
        return (tonumber(a_le) or math.huge) < (tonumber(b_le) or math.huge)
    end
    return a < b
end

local USD = { tollgate_charged_usd_total = true, tollgate_provider_cost_usd_total = true,
    tollgate_overage_usd_total = true }

-- The exposition text (Prometheus text format 0.0.4).
function _M.render()
    local lines = {}
    for _, series in pairs(dict:get_keys(0)) do
        local value = dict:get(series)
        local name = match(series, "^[%w_]+")
        if USD[name] then
            lines[#lines + 1] = series .. " " .. usd(value)
        elseif match(name, "_sum_us$") then
            lines[#lines + 1] = gsub(series, "_sum_us", "_sum", 1) .. format(" %.6f", value / 1000000)
        else
            lines[#lines + 1] = format("%s %d", series, value)
        end
    end
    gauges(lines)
    sort(lines, before)
    local out, seen = {}, {}
    for _, line in pairs(lines) do
        local name = family(line)
        if not seen[name] then
            seen[name] = true
            local help = HELP[name]
            if help then
                out[#out + 1] = format("# HELP %s %s\n# TYPE %s %s", name, help[2], name, help[1])
            end
        end
        out[#out + 1] = line
    end
    out[#out + 1] = ""
    return concat(out, "\n")
end

-- A scrape may read the metrics from loopback, or with the bearer of TOLLGATE_METRICS_TOKEN
-- (whose SHA-256 the node's settings hold); else it is answered 403 in the API's error shape.
function _M.guard()
    local addr = ngx.var.remote_addr
    if addr == "127.0.0.1" or addr == "::1" then
        return
    end
    local token_sha256 = config.get().metrics_token_sha256
    local given = token_sha256 and match(ngx.var.http_authorization or "", "^[Bb]earer%s+(%S+)%s*$")
    if not (given and hash.sha256_hex(given) == token_sha256) then
        return errors.respond("metrics_forbidden", "openai")
    end
end

-- `location = /metrics`: this node's metrics.
function _M.serve()
    _M.guard()
    ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    ngx.print(_M.render())
end

return _M
