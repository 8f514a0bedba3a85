"""The Accounts pages (/admin/accounts…): search, an account's money, keys, requests and deposits; credits, refunds, suspension."""
