"""The ledger of record and everything that moves usage into it: the usage drain, the journal
replay, and reconcile, which proves Redis and SQL agree."""
