"""Container entrypoint: settings -> serve command -> weights -> supervised vLLM -> smoke -> ready."""
