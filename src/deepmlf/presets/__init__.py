"""Built-in configuration presets (paper settings, DESIGN.md §2 table); read with `deepmlf.config.preset_dict`."""
