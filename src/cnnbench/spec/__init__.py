"""The study as declared: the TOML/dict schema, its validation and coercion, the grid of runs and their keys.

Depends only on the registries (losses, optim, models, data, metrics): nothing here trains or stores."""
