"""RESULTS.md rendering from grid records (the grid itself is too slow for a test)."""

from lidplug.experiments.results import ABLATIONS, DENOISERS, grid_config, render_markdown


def _records():
    out = []
    for seed, bump in ((0, 0.0), (1, 0.2), (2, 0.4)):
        base = {"kind": "grid", "seed": seed, "dose": 0.1, "ssim": 0.9, "cpm": 0.3,
                "map50": 0.2}
        out.append({**base, "denoiser": "-", "arm": "low_dose", "psnr": 30.0})
        for name in DENOISERS:
            out.append({**base, "denoiser": name, "arm": "plain", "psnr": 35.0 + bump})
            out.append({**base, "denoiser": name, "arm": "lidnet", "psnr": 35.5 + bump})
        for a in ABLATIONS:
            if a != "alternating":
                out.append({**base, "denoiser": "redcnn", "arm": f"ablation:{a}", "psnr": 34.0})
    return out


def test_markdown_has_the_tables_and_paired_difference():
    text = render_markdown(_records(), grid_config(True), command="CMD", elapsed_s=120)
    assert "`CMD`" in text and "about 2 minutes" in text
    # Paired by seed: the difference is exactly +0.5 each time, so its interval is a point.
    assert "| redcnn | 0.1 | 30.00 [30.00, 30.00] | 35.20 [34.70, 35.70] | 35.70 [35.20, 36.20] | " \
           "+0.50 [+0.50, +0.50] |" in text
    for heading in ("## PSNR (dB)", "## SSIM", "## FROC CPM", "## mAP@0.5", "## Ablation"):
        assert heading in text
    assert "| LIDnet, no roi | 34.00 [34.00, 34.00] |" in text
