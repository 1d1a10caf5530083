"""Search-space plugins, one file per family. Installed as ``studentnas.search_spaces``."""
