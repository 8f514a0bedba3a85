-- node.lua: request ids and settlement batch ids.
local node = require "tollgate.node"
local t = require "runner"

local tests = {}

tests["request ids are 32 hex digits, one prefix a worker and a counter"] = function()
    node.start_worker()
    local a, b = node.request_id(), node.request_id()
    t.truthy(a:match("^%x+$") and #a == 32, a)
    t.eq(a:sub(1, 16), b:sub(1, 16), "prefix")
    t.eq(tonumber(b:sub(17), 16) - tonumber(a:sub(17), 16), 1, "counter")
end

tests["a batch id tells when its batch opened"] = function()
    node.id = "gw-0123abcd-ef45"
    local id = node.batch_id(7)
    t.truthy(id:find("^gw%-0123abcd%-ef45:%d+:%d+:7$"), id)
    t.eq(node.batch_opened(id), ngx.time(), "opened")
    t.eq(node.batch_opened("not a batch id"), nil, "not a batch id")
end

tests["a node id is the host name and part of a random UUID"] = function()
    local id = node.new_id("gw")
    t.truthy(id:find("^gw%-%x%x%x%x%x%x%x%x%-%x%x%x%x$"), id)
end

return tests
