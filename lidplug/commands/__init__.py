"""Implementations of the ``lidplug`` subcommands (parsers live in :mod:`lidplug.cli`).

Each module has ``run(args) -> exit status`` and turns user errors (bad files, bad options) into
:class:`lidplug.cli.CLIError`; :mod:`lidplug.cli` imports a module only when its command runs.
"""
