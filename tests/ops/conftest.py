import pytest

import lidplug.ops.roi as roi_module
from lidplug.ops import extension_available, extension_error


@pytest.fixture(params=["compiled", "reference"])
def impl(request, monkeypatch):
    """Runs a test through the compiled ops and through the pure-PyTorch fallback."""
    if request.param == "compiled":
        # The compiled library is part of the product: its absence is a failure, not a skip.
        assert extension_available(), extension_error()
    else:
        monkeypatch.setattr(roi_module, "_compiled", lambda: False)
    return request.param
