"""jinja2 sources of the shards' producer configs and compose files (see README.md).

A package so that they install with the project and load with jinja2's PackageLoader.
"""
