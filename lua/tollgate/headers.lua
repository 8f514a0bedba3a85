-- What of a provider's answer headers reaches the client: only the names below (the header
-- filter of the metered location). Everything else — Set-Cookie, the provider account's
-- headers (openai-organization, anthropic-organization-id, anthropic-ratelimit-*), its
-- infrastructure's (cf-*, via, alt-svc, strict-transport-security, ...) — is removed.
-- proxy/upstream.conf hides the common ones of those already, which costs nothing; this
-- filter removes the rest. The request side's list is proxy/upstream.conf too.
local ngx = ngx
local get_headers = ngx.resp.get_headers
local header = ngx.header
local pairs = pairs

local _M = {}

-- Lower-case names, as ngx.resp.get_headers gives them. Its "connection" and
-- "transfer-encoding" are nginx's own framing (the provider's never reach the list), as are the
-- Date and Server nginx writes after this filter; proxy/upstream.conf hides the provider's
-- x-request-id and x-ratelimit-* before it, so the ones of those names here are the gateway's.
local FORWARDED = {
    -- the answer itself, and its framing
    ["content-type"] = true, ["content-length"] = true, ["content-encoding"] = true,
    ["cache-control"] = true, ["connection"] = true, ["transfer-encoding"] = true,
    -- when and whether to retry (the SDKs read them)
    ["retry-after"] = true, ["retry-after-ms"] = true, ["x-should-retry"] = true,
    -- the provider's request id (Anthropic's; OpenAI's comes as x-upstream-request-id) and figures
    ["request-id"] = true, ["openai-version"] = true, ["openai-processing-ms"] = true,
    -- the gateway's own
    ["x-request-id"] = true, ["x-upstream-request-id"] = true,
    ["x-ratelimit-limit-requests"] = true, ["x-ratelimit-remaining-requests"] = true,
    ["x-ratelimit-reset-requests"] = true, ["x-ratelimit-limit-tokens"] = true,
    ["x-ratelimit-remaining-tokens"] = true, ["x-ratelimit-reset-tokens"] = true,
}

-- (ngx.resp.get_headers gives an answer without a Content-Type nginx's default_type.)
function _M.filter()
    -- 0: every header, however many (a provider's header block is bounded by proxy_buffer_size).
    for name in pairs(get_headers(0)) do
        if not FORWARDED[name] then
            header[name] = nil
        end
    end
end

return _M
