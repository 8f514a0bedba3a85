"""The Audit log page (/admin/audit) and its CSV."""
