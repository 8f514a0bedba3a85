-- redis_keys.lua: the Redis key names of docs/internals.md (control_plane/hot/redis_keys.py's twin).
local redis_keys = require "tollgate.redis_keys"
local t = require "runner"

local tests = {}

tests["configuration keys"] = function()
    t.eq(redis_keys.apikey("ab12"), "tg:apikey:ab12")
    t.eq(redis_keys.model("gpt-x"), "tg:model:gpt-x")
    t.eq(redis_keys.provider("openai"), "tg:provider:openai")
    t.eq(redis_keys.MODELS, "tg:models")
end

tests["hot state keys carry the shard's tag"] = function()
    t.eq(redis_keys.account(3, 42), "tg:{s3}:acct:42")
    t.eq(redis_keys.key_state(3, "41"), "tg:{s3}:key:41")
    t.eq(redis_keys.lease(3, 41), "tg:{s3}:lease:41")
    t.eq(redis_keys.leases(3), "tg:{s3}:leases")
    t.eq(redis_keys.usage_stream(0), "tg:{s0}:usage")
    t.eq(redis_keys.rate_limit(3, 41), "tg:{s3}:rl:41")
    t.eq(redis_keys.batch(3, "gw-1:77:1700000000:5"), "tg:{s3}:batch:gw-1:77:1700000000:5")
end

tests["a lease member names the key, its account and the node"] = function()
    t.eq(redis_keys.lease_member(41, "42", "gw-1a2b"), "41|42|gw-1a2b")
end

return tests
