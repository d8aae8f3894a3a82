"""Shared by the CLI tests (a plain module: ``tests/`` is on ``sys.path`` under pytest)."""


def error_line(capsys) -> str:
    """The one ``lidplug: error: ...`` line a user error prints on stderr, and no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lidplug: error: "), err
    assert "Traceback" not in err
    return lines[0]
