-- The metered endpoints: their protocol, the usage format of their answers, their path on the
-- provider (appended to the provider's base URL path), the body fields that bound their output
-- per choice (`output_fields`) and how the number of choices is asked for (`fan_out`:
-- request.lua).
local _M = {}

_M.BY_PATH = {
    ["/v1/chat/completions"] = {
        name = "chat.completions", protocol = "openai", usage = "openai",
        upstream_path = "/chat/completions", stream_usage_option = true,
        output_fields = { "max_tokens", "max_completion_tokens" }, fan_out = "n",
    },
    ["/v1/completions"] = {
        name = "completions", protocol = "openai", usage = "openai",
        upstream_path = "/completions", stream_usage_option = true,
        output_fields = { "max_tokens" }, fan_out = "completions",
    },
    ["/v1/embeddings"] = {
        name = "embeddings", protocol = "openai", usage = "openai",
        upstream_path = "/embeddings", no_output = true,
    },
    ["/v1/responses"] = {
        name = "responses", protocol = "openai", usage = "responses", upstream_path = "/responses",
        output_fields = { "max_output_tokens" },
    },
    ["/v1/messages/count_tokens"] = {
        name = "messages.count_tokens", protocol = "anthropic", unbilled = true,
        upstream_path = "/v1/messages/count_tokens",
    },
    ["/v1/messages"] = {
        name = "messages", protocol = "anthropic", usage = "anthropic",
        upstream_path = "/v1/messages", output_fields = { "max_tokens" },
    },
}

-- Which protocol's error shape a path gets.
function _M.protocol_of(uri)
    if uri:find("/messages", 1, true) then
        return "anthropic"
    end
    return "openai"
end

-- A hint for a path that is no endpoint: the base-URL mistakes clients make most.
function _M.hint(uri)
    if uri:sub(1, 7) == "/v1/v1/" then
        return " The path has /v1 twice: set the client's base URL to the gateway's root"
            .. " (Anthropic SDK: base_url without /v1) or to <gateway>/v1 (OpenAI SDK), not both."
    end
    if _M.BY_PATH["/v1" .. uri] then
        return " OpenAI-protocol paths start with /v1: set the OpenAI SDK's base_url to <gateway>/v1."
    end
    return ""
end

return _M
