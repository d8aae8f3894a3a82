"""The timm-style registry: create_denoiser / list_denoisers / register_denoiser."""

import pytest
from torch import nn

from lidplug.models import (
    REDCNN,
    DnCNN,
    UNet,
    _registry,
    create_denoiser,
    list_denoisers,
    register_denoiser,
)


def test_list_is_sorted_and_has_the_reference_models():
    names = list_denoisers()
    assert names == sorted(names)
    assert {"redcnn", "dncnn", "unet"} <= set(names)


@pytest.mark.parametrize(("name", "cls"), [("redcnn", REDCNN), ("dncnn", DnCNN), ("unet", UNet)])
def test_create_by_name_forwards_kwargs(name, cls):
    kwargs = {"base_channels": 3} if cls is UNet else {"channels": 3}
    model = create_denoiser(name, **kwargs)
    assert type(model) is cls
    assert next(iter(kwargs.values())) == getattr(model, next(iter(kwargs)))


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"expected one of \['dncnn', 'redcnn', 'unet'.*'resnet'"):
        create_denoiser("resnet")


def test_register_and_reject_duplicates(monkeypatch):
    monkeypatch.setattr(_registry, "_DENOISERS", dict(_registry._DENOISERS))

    @register_denoiser("identity_for_test")
    def identity(**kwargs):
        return nn.Identity()

    assert "identity_for_test" in list_denoisers()
    assert isinstance(create_denoiser("identity_for_test"), nn.Identity)
    with pytest.raises(ValueError, match="already registered"):
        register_denoiser("identity_for_test")(identity)
