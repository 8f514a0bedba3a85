"""The catalogue: upstream providers, the models customers call, and their price versions."""
