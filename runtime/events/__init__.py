"""Real-time events: channels, the embedded AppSync Events gateway, and the cloud publishers.

Import nothing here. The stream-publisher and authorizer Lambdas import modules of this package with
only the standard library and boto3 available, so the package itself must stay import-free; the
gateway (Starlette) is imported explicitly by the runtime as ``runtime.events.gateway``.
"""
