"""The customer console (server-rendered pages under /console/): its blueprint, with templates in
control_plane/templates/console/ and assets in control_plane/static/. Registered by app.py."""
