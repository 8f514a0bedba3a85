"""Price changes a sync held for approval (/admin/prices/held): approve or reject."""
