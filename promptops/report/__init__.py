"""Report renderers: they format what a stage computed, and never compute themselves."""
