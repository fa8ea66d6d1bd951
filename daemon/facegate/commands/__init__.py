"""``facegate`` sub-commands: one module each, exposing ``register(subparsers)``.

A handler is set with ``parser.set_defaults(handler=...)`` and returns an exit code.
Output for humans goes to stdout through :func:`facegate.commands.output.emit`; ``--json`` switches
to machine-readable JSON.
"""
