"""The admin console (server-rendered pages under /admin/, admins with a second factor): its
blueprint, with templates in control_plane/templates/admin/. Registered by app.py."""
