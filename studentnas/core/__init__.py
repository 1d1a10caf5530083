"""Value types, plugin contracts and registries: Arch, Budget, Cost, Candidate, SearchSpace, Proxy, Registry.

May import: nothing of studentnas outside ``core`` (third-party libraries only); everything else builds on it.
"""
