"""Proxy plugins, one file per family. Installed as ``studentnas.proxies``."""
