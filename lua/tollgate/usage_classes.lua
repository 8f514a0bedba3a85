-- The usage classes, disjoint: every token of a request is in exactly one (docs/internals.md).
-- In order: the usage record's token field, the model price it is charged at, the side of the
-- request it counts on (the hold prices input at the dearest input class, output at the dearer
-- output class), and what it is. The control plane reads this file as well: keep one class a
-- line, written as below.
return {
    { field = "in", price = "input", side = "input", meaning = "uncached input" },
    { field = "cr", price = "cached_input", side = "input", meaning = "cache read" },
    { field = "cw", price = "cache_write", side = "input", meaning = "cache write, 5 minutes (the default tier)" },
    { field = "cw1h", price = "cache_write_1h", side = "input", meaning = "cache write, 1 hour" },
    { field = "out", price = "output", side = "output", meaning = "output, not reasoning" },
    { field = "rsn", price = "reasoning", side = "output", meaning = "reasoning" },
}
