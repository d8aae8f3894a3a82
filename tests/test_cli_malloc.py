"""The command line keeps large freed blocks (lidplug.commands._malloc): measured by page faults
in a fresh process, since the setting is per process and cannot be undone."""

import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from lidplug.commands._malloc import keep_large_blocks

    def faults():
        for _ in range(10):  # 100 MB, written: as a layer's output at 512x512 (warm-up:
            torch.empty(25_000_000).fill_(1.0)  # the heap grows to hold it)
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            torch.empty(25_000_000).fill_(1.0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

    before = faults()
    kept = keep_large_blocks()
    print(kept, before, faults())
""")


def _run(env=None):
    # From a temporary folder: the installed lidplug, not the checkout's sources.
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                         check=True, env={**os.environ, **(env or {})},
                         cwd=tempfile.gettempdir())
    kept, before, after = out.stdout.split()
    return kept == "True", int(before), int(after)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_large_blocks_stay_mapped_after_the_first():
    kept, before, after = _run()
    assert kept
    if before < 10 * 1_000:  # transparent huge pages: a fresh mapping costs few faults anyway
        pytest.skip(f"10 fresh 100 MB blocks took only {before} page faults here (huge pages)")
    # Before: every 100 MB block is a fresh mapping, about 24k faults each with 4 KiB pages;
    # after: the warm heap holds it.
    assert after * 5 < before, (before, after)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_users_own_malloc_settings_win():
    kept, _, _ = _run({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert not kept
