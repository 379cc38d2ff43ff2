"""Pulumi entry point (``main: platform/`` in Pulumi.yaml): read the stack config, build, export.

This folder must stay a plain directory (no ``__init__.py``): as a package named ``platform`` it would
shadow the standard library. Pulumi puts this folder on ``sys.path``, so the components import as
``concierge_platform``.
"""

import pulumi
from concierge_platform import config
from concierge_platform.stack import build

deployment = build(config.load())
for key, value in deployment.outputs.items():
    pulumi.export(key, value)
