"""Use cases: async functions driven by commands, over the ports."""
