"""The Models and routes page (/admin/models…): models, aliases, routes, prices, margins and price versions."""
