-- Has the client gone away? nginx notices only when a write to the client fails, and then stops
-- reading the provider too. The body filter asks this before each write instead, so it can
-- swallow the rest of the answer and keep reading the provider's usage (billing_basis drained).
--
-- It peeks at the client socket (recv MSG_PEEK): 0 bytes means the client closed, ECONNRESET
-- that it reset. The socket is found through the first fields of ngx_http_request_t and
-- ngx_connection_t, unchanged across nginx releases for over a decade. Plain HTTP/1.x only: a
-- TLS or HTTP/2 client connection carries other bytes, so there it reports the client present
-- and the answer is billed from what was received (billing_basis estimated).
local ffi = require "ffi"
local base = require "resty.core.base"

local C = ffi.C
local cast = ffi.cast
local get_request = base.get_request

ffi.cdef [[
typedef struct { uint32_t signature; void *connection; } tollgate_request_head_t;
typedef struct { void *data; void *read; void *write; int fd; } tollgate_connection_head_t;
long recv(int sockfd, void *buf, size_t len, int flags);
]]

local MSG_PEEK = 0x02
local MSG_DONTWAIT = 0x40
local EAGAIN = 11
local EINTR = 4

local byte = ffi.new("char[1]")

local _M = {}

function _M.gone()
    local r = get_request()
    if not r then
        return false
    end
    local c = cast("tollgate_request_head_t *", r).connection
    local fd = cast("tollgate_connection_head_t *", c).fd
    local n = C.recv(fd, byte, 1, MSG_PEEK + MSG_DONTWAIT)
    if n == 0 then
        return true
    end
    if n < 0 then
        local err = ffi.errno()
        return err ~= EAGAIN and err ~= EINTR
    end
    return false
end

return _M
