"""Compressed transfer syntaxes read with the default install (pydicom + pylibjpeg plugins)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder

from lidplug.io import read_dicom, write_dicom


def _jpeg_lossless_sv1(frame: np.ndarray) -> bytes:
    """Encode one 16-bit grey-scale frame as JPEG lossless, process 14, selection value 1.

    pydicom has no JPEG lossless encoder, so the tests carry this minimal one (ITU T.81 H.1):
    predictor 1 (left neighbour; the row above for column 0; 2**15 for the first pixel), one
    Huffman table giving each difference category 0..16 a 5-bit code. The decoder under test
    is the real one, which makes it a check of that decoder, not of this encoder.
    """
    x = frame.astype(np.uint16).astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0], pred[0, 1:], pred[1:, 0], pred[1:, 1:] = 1 << 15, x[0, :-1], x[:-1, 0], x[1:, :-1]
    diff = (x - pred + 32768) % 65536 - 32768  # modulo 2**16, as the decoder reconstructs
    acc, nbits = 0, 0
    for d in diff.ravel().tolist():
        size = abs(d).bit_length()  # category; 16 only for -32768 and carries no extra bits
        acc, nbits = (acc << 5) | size, nbits + 5
        if 0 < size < 16:
            acc, nbits = (acc << size) | (d if d > 0 else d + (1 << size) - 1), nbits + size
    pad = -nbits % 8
    data = ((acc << pad) | ((1 << pad) - 1)).to_bytes((nbits + pad) // 8, "big")
    data = data.replace(b"\xff", b"\xff\x00")  # byte stuffing in entropy-coded data
    h, w = frame.shape
    sof3 = b"\xff\xc3\x00\x0b\x10" + h.to_bytes(2, "big") + w.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)
    dht = b"\xff\xc4\x00\x24\x00" + counts + bytes(range(17))
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x01\x00\x00"  # Ss = 1: predictor selection value 1
    return b"\xff\xd8" + sof3 + dht + sos + data + b"\xff\xd9"


def _encapsulated(ds: Dataset, frames: list[bytes], syntax: uid.UID) -> Dataset:
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


@pytest.fixture
def ct_small(shipped):
    path = shipped("CT_small.dcm")
    return path, read_dicom(path)[0]


def test_rle_lossless(ct_small, tmp_path):
    path, reference = ct_small
    ds = pydicom.dcmread(path)
    ds.compress(uid.RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    image, _ = read_dicom(tmp_path / "rle.dcm")
    np.testing.assert_array_equal(image.numpy(), reference.numpy())


def test_jpeg2000_lossless(ct_small, tmp_path):
    path, reference = ct_small
    ds = pydicom.dcmread(path)
    ds.compress(uid.JPEG2000Lossless, encoding_plugin="pylibjpeg")
    ds.save_as(tmp_path / "j2k.dcm")
    image, _ = read_dicom(tmp_path / "j2k.dcm")
    np.testing.assert_array_equal(image.numpy(), reference.numpy())


def test_jpeg_lossless_sv1(ct_small, tmp_path):
    path, reference = ct_small
    ds = pydicom.dcmread(path)  # signed 16-bit: the JPEG codestream holds the uint16 view
    ds = _encapsulated(ds, [_jpeg_lossless_sv1(ds.pixel_array)], uid.JPEGLosslessSV1)
    ds.save_as(tmp_path / "jll.dcm")
    image, _ = read_dicom(tmp_path / "jll.dcm")
    np.testing.assert_array_equal(image.numpy(), reference.numpy())


def test_jpeg_baseline_8bit(make_ct, save, tmp_path):
    image_module = pytest.importorskip("PIL.Image")  # the encoder for this test only

    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    buffer = io.BytesIO()
    image_module.fromarray(ramp).save(buffer, "JPEG", quality=95)
    ds = make_ct(ramp, slope=8.0, intercept=-1024.0)
    path = save(_encapsulated(ds, [buffer.getvalue()], uid.JPEGBaseline8Bit), tmp_path / "j.dcm")
    image, meta = read_dicom(path)
    assert np.abs(image[0].numpy() - (ramp * 8.0 - 1024)).mean() < 8  # lossy: ~1 stored level
    out = write_dicom(image, meta, tmp_path / "out")
    written = pydicom.dcmread(out[0])
    assert written.LossyImageCompression == "01"
    assert written.LossyImageCompressionMethod == "ISO_10918_1"


@pytest.mark.parametrize("name, shape", [("693_J2KI.dcm", (512, 512)),
                                         ("J2K_pixelrep_mismatch.dcm", (512, 512))])
def test_shipped_jpeg2000_ct(shipped, name, shape):
    image, _ = read_dicom(shipped(name))
    assert image.shape == (1, *shape)
    # Signed data in J2K: a sign error would put air or padding near +64000 HU.
    assert -1100 < image.median() < -700 and -200 < image[0, 256, 256] < 200
    assert image.max() < 4000


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm"])
def test_shipped_lossless_match_uncompressed(shipped, name):
    reference, _ = read_dicom(shipped("MR_small.dcm"), allow_non_ct=True)
    image, _ = read_dicom(shipped(name), allow_non_ct=True)
    np.testing.assert_array_equal(image.numpy(), reference.numpy())


def test_shipped_jpeg_extended_12bit(shipped):
    # Pillow cannot decode 12-bit JPEG: this proves the pylibjpeg-libjpeg plugin is in place.
    image, _ = read_dicom(shipped("JPGExtended.dcm"), allow_non_ct=True)
    assert image.shape == (1, 1024, 256)
    assert image.min() >= 0 and 200 < image.max() < 4096 and image.std() > 10


def test_every_syntax_has_a_decoder():
    syntaxes = [uid.RLELossless, uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless,
                uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEGLSNearLossless,
                uid.JPEG2000Lossless, uid.JPEG2000]
    missing = [s.name for s in syntaxes if not get_decoder(s).is_available]
    assert not missing, f"expected a decoder for every syntax, got none for {missing}"


def test_missing_decoder_plugin(ct_small, tmp_path, monkeypatch):
    ds = pydicom.dcmread(ct_small[0])
    ds = _encapsulated(ds, [_jpeg_lossless_sv1(ds.pixel_array)], uid.JPEGLosslessSV1)
    ds.save_as(tmp_path / "jll.dcm")
    decoder = get_decoder(uid.JPEGLosslessSV1)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg-libjpeg",)})
    with pytest.raises(OSError, match=r"jll\.dcm: cannot decode JPEG Lossless.*expected a "
                                      r"decoder plugin to be installed, got none"):
        read_dicom(tmp_path / "jll.dcm")


def test_syntax_without_any_decoder(ct_small, tmp_path):
    ds = _encapsulated(pydicom.dcmread(ct_small[0]), [b"\x00\x00\x01\xb3" * 8], uid.MPEG2MPML)
    ds.save_as(tmp_path / "video.dcm")
    with pytest.raises(OSError, match=r"video\.dcm: no pixel data decoder exists for MPEG2"):
        read_dicom(tmp_path / "video.dcm")
