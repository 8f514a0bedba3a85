-- A request's hold: placed at access at the worst case its body and output bound can cost,
-- against the key's lease (lease.lua); closed at log, where its charge is decided from the
-- answer's usage, never above the hold, and the rest returns to the lease.
local cost = require "tollgate.cost"
local errors = require "tollgate.errors"
local lease = require "tollgate.lease"
local request = require "tollgate.request"
local response = require "tollgate.response"

local ngx = ngx
local format = string.format
local floor = math.floor

local _M = {}

-- "$1.5", "$0.00": nano-USD as the 402 messages show them.
local function usd(nano)
    local n = nano < 0 and 0 or nano
    local text = format("%d.%09d", floor(n / 1e9), n % 1e9):gsub("0+$", "")
    if text:sub(-1) == "." then text = text .. "00" end
    return "$" .. text
end

-- The price a request is held at: a fixed-price model's own; at cost, the dearest of its routes
-- class by class (the catalogue's `price`), or the first route's when the key caps fallbacks at
-- it (charge_price never goes above it then).
function _M.price(model, first, key)
    if model.at_cost and key.cap_fallback then
        return first.cost
    end
    return model.price
end

-- Holds what the request may cost at `price`: `raw` (the body) as input to `model`, and
-- `per_choice` output tokens for each of `fan_out` choices. Returns the hold (0 for an unbilled
-- endpoint), or nil after answering 402 (funds short) or 503 (Redis or the lease dict refused).
function _M.place(ep, key, raw, model, price, per_choice, fan_out, protocol)
    if ep.unbilled then
        return 0
    end
    local out_tokens = per_choice * fan_out
    local in_tokens = request.input_tokens(raw, model)
    local hold = cost.worst_case(in_tokens, out_tokens, price)
    local ok, why, available, lerr = lease.acquire(key.id, key.acct, key.shard, hold)
    if ok then
        return hold
    end
    if why == "unavailable" then
        return nil, errors.unavailable(protocol, lerr)
    end
    available = available > 0 and available or 0
    local most = floor(cost.MAX_TOKENS / fan_out)
    return nil, errors.fail(why == "key_limit" and "key_limit_reached" or "insufficient_balance", protocol, {
        needed = usd(hold), available = usd(available), max_output = out_tokens,
        affordable = cost.affordable(available, in_tokens, fan_out, price,
            model.max_output < most and model.max_output or most),
    })
end

-- The price `tokens` are charged at: a fixed-price model's own; at cost, the route's that served,
-- or the first route's if the key caps fallbacks and that is cheaper for these tokens.
local function charge_price(st, tokens)
    local model = st.model
    if not model.at_cost then
        return model.price
    end
    local served, first = st.route.cost, st.first.cost
    if st.key.cap_fallback and first ~= served and tokens and cost.cost(tokens, first) < cost.cost(tokens, served) then
        return first
    end
    return served
end

-- Closes the hold of the finished request `st` (gateway.lua's state): returns the usage classes
-- billed (nil: none), the basis, the charge (at most the hold), the overage (the cost above the
-- hold, not charged), the price version charged at and the provider's cost (what the route's
-- provider charges the operator for the tokens); the rest of the hold returns to the key's lease.
function _M.close(st)
    local hold = st.hold
    local tokens, basis, charge, over, provider_cost, price = nil, "none", 0, 0, 0, nil
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
            price = charge_price(st, tokens)
            charge = cost.cost(tokens, price)
            if charge > hold then
                charge, over = hold, charge - hold -- never more than held: the excess is overage
            end
            provider_cost = cost.cost(tokens, st.route.cost)
        elseif not tokens and response.failed(parser) then
            basis = "none" -- an error answer that reports no usage costs nothing
        else
            tokens, basis = response.estimate(parser, st.request_bytes), "estimated"
            price = charge_price(st, tokens)
            charge = cost.cost(tokens, price)
            if charge > hold then
                charge = hold
            end
            provider_cost = cost.cost(tokens, st.route.cost)
            if response.skipped(parser) or st.drain_exceeded then
                ngx.log(ngx.WARN, "request ", st.rid, ": billed an estimate, ", st.drain_exceeded
                    and "the drain limit was reached before the provider's usage" or
                    "an SSE event too large to read may have held the usage")
            end
        end
    end
    lease.finish(st.key.id, hold, charge)
    price = price or charge_price(st, nil) -- nothing priced: the version the request would have been charged at
    return tokens, basis, charge, over, price.version, provider_cost
end

return _M
