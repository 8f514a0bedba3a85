-- The gateway's settings, rendered by `tollgate up` from TOLLGATE_* into tollgate.json and read
-- once in init_by_lua (so every worker shares the parsed table).
local cjson = require "cjson.safe"

local _M = {}

local conf

function _M.load(path)
    local f, err = io.open(path, "r")
    if not f then
        error("failed to open tollgate config " .. path .. ": " .. tostring(err))
    end
    local text = f:read("*a")
    f:close()
    local decoded, derr = cjson.decode(text)
    if not decoded then
        error("failed to parse tollgate config " .. path .. ": " .. tostring(derr))
    end
    conf = decoded
    return conf
end

function _M.get()
    return conf
end

return _M
