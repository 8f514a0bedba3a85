"""The hot state in Redis, control-plane side: the connection, every key name, the usage record
format the hot path writes, publishing SQL's state, crediting, and the lease reaper.

Layout of the keys and records: docs/internals.md.
"""
