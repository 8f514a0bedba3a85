"""Running Tollgate: the supervisor, nginx's generated configuration, the usage worker, the demo."""
