-- SHA-256 (through the OpenSSL libcrypto nginx already links) and hex encoding.
local ffi = require "ffi"

local ffi_new = ffi.new
local ffi_string = ffi.string
local byte = string.byte
local concat = table.concat

ffi.cdef [[
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]]

local C = ffi.C
local digest = ffi_new("unsigned char[32]")

local HEX = {}
for i = 0, 255 do
    HEX[i] = string.format("%02x", i)
end

local _M = {}

function _M.hex(bin)
    local out = {}
    for i = 1, #bin do
        out[i] = HEX[byte(bin, i)]
    end
    return concat(out)
end

function _M.sha256_hex(s)
    C.SHA256(s, #s, digest)
    return _M.hex(ffi_string(digest, 32))
end

function _M.sha1_hex(s)
    return _M.hex(ngx.sha1_bin(s))
end

return _M
