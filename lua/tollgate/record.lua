-- The usage record of a finished request (docs/internals.md, "Usage record"): its values in the
-- order of control_plane/hot/usage_records.py RECORD_FIELDS, tab-separated, packed by one format.
-- The one place the layout is written. Pure: no ngx I/O.
local node = require "tollgate.node"
local usage = require "tollgate.usage"
local usage_classes = require "tollgate.usage_classes"

local format = string.format

local _M = {}

-- The record's fields in order, each with its format: %d for numbers (it formats the integral
-- doubles exactly, without exponent), %s for the rest. The usage classes' token counts follow
-- `basis`, in usage_classes.lua order.
local BEFORE_TOKENS = {
    { "rid", "%s" }, { "ts", "%d" }, { "acct", "%s" }, { "key", "%s" }, { "model", "%s" },
    { "umodel", "%s" }, { "provider", "%s" }, { "pv", "%d" }, { "ep", "%s" }, { "stream", "%s" },
    { "status", "%d" }, { "basis", "%s" },
}
local AFTER_TOKENS = {
    { "cost", "%d" }, { "ms", "%d" }, { "ttfb", "%d" }, { "node", "%s" }, { "hold", "%d" },
    { "over", "%d" },
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

-- The packed record of request `st` (gateway.lua's state of an admitted request), answered with
-- `status`, billed on `basis` for `tokens` (nil: none): `charge` nano-USD charged, `over` nano-USD
-- of cost above the hold not charged; finished at `now` (seconds) after `ms` milliseconds. The values are
-- passed in FIELDS order, the token counts spelled out (spec_record checks both).
function _M.pack(st, status, tokens, basis, charge, over, now, ms)
    local key = st.key
    tokens = tokens or NO_TOKENS
    return format(RECORD,
        st.rid, now * 1000, key.acct, key.id, st.model, st.umodel, st.provider,
        st.price.version, st.ep.name, st.stream and "1" or "0", status, basis,
        tokens["in"], tokens.cr, tokens.cw, tokens.cw1h, tokens.out, tokens.rsn,
        charge, ms, st.ttfb and st.ttfb * 1000 or ms, node.id, st.hold, over)
end

return _M
