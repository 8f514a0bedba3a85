-- Has the client gone away? nginx notices only when a write to the client fails, and then stops
-- reading the provider too. The body filter asks this before each write instead, so it can
-- swallow the rest of the answer and keep reading the provider's usage (billing_basis drained).
--
-- It peeks at the client socket (recv MSG_PEEK): 0 bytes means the client closed, ECONNRESET
-- that it reset. It peeks only once the client's read event says something arrived (its `ready`
-- or `pending_eof` flag, which nginx's event loop sets when epoll reports input, a close or a
-- reset): a client that sends nothing while it reads its answer costs no system call per chunk.
-- The socket and the event are found through the first fields of ngx_http_request_t,
-- ngx_connection_t and ngx_event_t, unchanged across nginx releases for over a decade. Plain
-- HTTP/1.x only: a TLS or HTTP/2 client connection carries other bytes, so there it reports the
-- client present and the answer is billed from what was received (billing_basis estimated).
local bit = require "bit"
local ffi = require "ffi"
local base = require "resty.core.base"

local C = ffi.C
local cast = ffi.cast
local get_request = base.get_request
local band = bit.band
local bor = bit.bor
local lshift = bit.lshift

ffi.cdef [[
typedef struct { uint32_t signature; void *connection; } tollgate_request_head_t;
typedef struct { void *data; void *read; void *write; int fd; } tollgate_connection_head_t;
typedef struct { void *data; uint32_t flags; } tollgate_event_head_t;
long recv(int sockfd, void *buf, size_t len, int flags);
]]

-- Parsed once: a cast to a type given as a string parses the string at every call.
local request_head = ffi.typeof("tollgate_request_head_t *")
local connection_head = ffi.typeof("tollgate_connection_head_t *")
local event_head = ffi.typeof("tollgate_event_head_t *")

local MSG_PEEK = 0x02
local MSG_DONTWAIT = 0x40
local EAGAIN = 11
local EINTR = 4

-- ngx_event_t's first bit fields: write, accept, instance, active, disabled, ready (bit 5), ...,
-- pending_eof (bit 14).
local READY_OR_PENDING_EOF = bor(lshift(1, 5), lshift(1, 14))

local byte = ffi.new("char[1]")

local _M = {}

function _M.gone()
    local r = get_request()
    if not r then
        return false
    end
    local c = cast(connection_head, cast(request_head, r).connection)
    if band(cast(event_head, c.read).flags, READY_OR_PENDING_EOF) == 0 then
        return false -- nothing came from the client since nginx last read it to the end
    end
    local n = C.recv(c.fd, byte, 1, MSG_PEEK + MSG_DONTWAIT)
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
