-- The usage record of a finished request (docs/internals.md, "Usage record"): its values in the
-- order of control_plane/hot/usage_records.py RECORD_FIELDS, tab-separated, packed by one format.
-- The one place the layout is written. Pure: no ngx I/O.
local node = require "tollgate.node"
local text = require "tollgate.text"
local usage = require "tollgate.usage"
local usage_classes = require "tollgate.usage_classes"

local concat = table.concat
local format = string.format
local type = type

local _M = {}

-- The record's fields in order, each with its format: %d for numbers (it formats the integral
-- doubles exactly, without exponent), %s for the rest (`pv` too: "" in a refused request's
-- record, which names no price version; a version id is far below where %s would use an
-- exponent). The usage classes' token counts follow `basis`, in usage_classes.lua order.
local BEFORE_TOKENS = {
    { "rid", "%s" }, { "ts", "%d" }, { "acct", "%s" }, { "key", "%s" }, { "model", "%s" },
    { "umodel", "%s" }, { "provider", "%s" }, { "pv", "%s" }, { "ep", "%s" }, { "stream", "%s" },
    { "status", "%d" }, { "basis", "%s" },
}
local AFTER_TOKENS = {
    { "cost", "%d" }, { "ms", "%d" }, { "ttfb", "%d" }, { "node", "%s" }, { "hold", "%d" },
    { "over", "%d" }, { "asked", "%s" }, { "route", "%d" }, { "cv", "%d" }, { "pcost", "%d" },
    { "tries", "%d" }, { "failed", "%s" }, { "ecode", "%s" }, { "emsg", "%s" },
}

_M.FIELDS = {}
local formats = {}
local function append(name, spec)
    _M.FIELDS[#_M.FIELDS + 1] = name
    formats[#formats + 1] = spec
end
for _, f in ipairs(BEFORE_TOKENS) do append(f[1], f[2]) end
for _, class in ipairs(usage_classes) do append(class.field, "%d") end
for _, f in ipairs(AFTER_TOKENS) do append(f[1], f[2]) end

local RECORD = table.concat(formats, "\t")

-- The token counts of a request with nothing to bill.
local NO_TOKENS = usage.zero()

-- The longest values, in bytes, of the fields a client or a provider may fill: the Usage columns
-- model and requested_model (200 characters), error_code (64) and error_message (500).
local NAME_MAX = 200
local ECODE_MAX = 64
local EMSG_MAX = 500

-- The error the client got (st.ecode, st.emsg: gateway.lua's), fit for the record; "" for none.
local function error_fields(st)
    local code, message = st.ecode, st.emsg
    return code and text.field(code, ECODE_MAX) or "", message and text.field(message, EMSG_MAX) or ""
end

-- The packed record of request `st` (gateway.lua's state of an admitted request), answered with
-- `status`, billed on `basis` for `tokens` (nil: none): `charge` nano-USD charged at price version
-- `pv`, `over` nano-USD of cost above the hold not charged, `provider_cost` what the route that
-- served costs the operator; finished at `now` (seconds) after `ms` milliseconds. The values are
-- passed in FIELDS order, the token counts spelled out (spec_record checks both).
function _M.pack(st, status, tokens, basis, charge, over, pv, provider_cost, now, ms)
    local key = st.key
    local route = st.route
    tokens = tokens or NO_TOKENS
    return format(RECORD,
        st.rid, now * 1000, key.acct, key.id, st.model.name, route.upstream_model, route.provider,
        pv, st.ep.name, st.stream and "1" or "0", status, basis,
        tokens["in"], tokens.cr, tokens.cw, tokens.cw1h, tokens.out, tokens.rsn,
        charge, ms, st.ttfb and st.ttfb * 1000 or ms, node.id, st.hold, over,
        st.asked, route.id, route.cost.version, provider_cost, st.tries, st.failed and concat(st.failed, ",") or "",
        error_fields(st))
end

-- The packed record of request `st` that the gateway refused after authenticating its key, with
-- `status`, before it held anything: basis "refused", nothing charged or held, no provider, route
-- or price version, no attempt. `model` is the model when the asked name resolved to one, else
-- "": a name no model has stays only in `requested_model` (made fit for the record), so names a
-- client makes up never become models of the daily usage.
function _M.refused(st, status, now, ms)
    local key = st.key
    local asked = type(st.asked) == "string" and text.field(st.asked, NAME_MAX) or ""
    local t = NO_TOKENS
    return format(RECORD,
        st.rid, now * 1000, key.acct, key.id, st.model and st.model.name or "", "", "",
        "", st.ep.name, st.stream and "1" or "0", status, "refused",
        t["in"], t.cr, t.cw, t.cw1h, t.out, t.rsn,
        0, ms, st.ttfb and st.ttfb * 1000 or ms, node.id, 0, 0,
        asked, 0, 0, 0, 0, "", error_fields(st))
end

return _M
