raise RuntimeError("settings exploded on purpose")
