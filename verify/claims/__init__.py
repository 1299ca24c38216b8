"""One module per claim group; each module registers its claims on import."""
