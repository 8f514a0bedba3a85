"""The Providers page (/admin/providers…): add, edit, disable and test upstream providers."""
