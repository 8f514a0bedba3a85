-- text.lua: values made fit for a tab-separated usage record.
local text = require "tollgate.text"
local t = require "runner"

local tests = {}

tests["plain text within the bound is kept as it is"] = function()
    t.eq(text.field("model_not_found", 64), "model_not_found")
end

tests["plain text is cut to the bound"] = function()
    t.eq(text.field(string.rep("a", 70), 64), string.rep("a", 64))
end

tests["tabs, newlines, carriage returns, NUL, DEL and C1 controls become spaces"] = function()
    t.eq(text.field("a\tb\nc\rd\0e\127f\194\133g", 100), "a b c d e f g")
end

tests["ill-formed UTF-8 becomes U+FFFD"] = function()
    -- a lone continuation byte, an overlong form, a surrogate, a cut sequence
    t.eq(text.field("x\128y\192\175z\237\160\128w\226\130", 100),
        "x\239\191\189y\239\191\189\239\191\189z\239\191\189\239\191\189\239\191\189w\239\191\189")
end

tests["a cut falls before a character that does not fit whole"] = function()
    t.eq(text.field("ab€", 4), "ab") -- € is 3 bytes: 5 in all
    t.eq(text.field("ab€", 5), "ab€")
end

tests["well-formed multi-byte characters are kept"] = function()
    t.eq(text.field("naïve 日本 🙂", 100), "naïve 日本 🙂")
end

return tests
