-- The request body as the provider gets it: a stream of an endpoint that reports usage only when
-- asked (OpenAI's stream_options.include_usage) asks for it, and the answer's usage chunk the
-- client did not ask for is stripped again (response.lua); the model is named as the route's
-- provider knows it. Textual edits (body.lua): the rest of the body goes on byte for byte.
local body = require "tollgate.body"
local errors = require "tollgate.errors"

local type = type

local _M = {}

-- The body to send (`raw` itself when nothing changes) and whether the answer's usage chunk is
-- stripped; or nil after answering 400.
function _M.body(ep, raw, parsed, is_stream, upstream_model, protocol)
    local sent, strip = raw, false
    if is_stream and ep.stream_usage_option then
        local so = parsed.stream_options
        if type(so) ~= "table" or so.include_usage ~= true then
            local edited, err = body.request_stream_usage(sent, so)
            if not edited then
                return nil, errors.fail("invalid_parameter", protocol, { detail = err })
            end
            sent, strip = edited, true
        end
    end
    if upstream_model ~= parsed.model then
        sent = body.replace_model(sent, upstream_model) or sent
    end
    return sent, strip
end

return _M
