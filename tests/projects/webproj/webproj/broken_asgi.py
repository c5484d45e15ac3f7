"""An application module that fails at import, as a broken deploy does."""

raise RuntimeError("the settings of this deploy are broken")
