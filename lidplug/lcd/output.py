"""What ``lidplug lcd score`` writes: ``lcd.json``, ``lcd.csv`` and the page ``lcd.html``.

* ``lcd.json``: :meth:`lidplug.lcd.score.LCDResults.as_dict` (protocol, discs, one row per
  recon, dose and disc with the AUC and ``d'`` over readers, notes).
* ``lcd.csv``: one line per reader in the toolbox's own columns (``observer, recon, insert_HU,
  dose_level, snr, auc, reader`` plus ``insert_diameter_pix``), so its ``plot_results`` and
  spreadsheets read it as they read the toolbox's results.
* ``lcd.html``: AUC vs dose per disc, one line per recon with the readers' mean and, dashed, their
  2.5-97.5 percentile range (the toolbox's plots show mean +- one standard deviation), and the
  table of every number; self-contained (:mod:`lidplug.report.html`).
"""

from __future__ import annotations

import csv
import json
import os
from html import escape
from pathlib import Path

from lidplug.lcd.score import LCDResults
from lidplug.report.html import Report, Section, write_report
from lidplug.report.svg import PALETTE, Series, line_plot

__all__ = ["OUTPUTS", "write_results"]

#: The files :func:`write_results` writes, replaced on every run.
OUTPUTS = ("lcd.json", "lcd.csv", "lcd.html")
_CSV_COLUMNS = ("observer", "recon", "insert_HU", "dose_level", "snr", "auc", "reader",
                "insert_diameter_pix")


def _dose(percent: float) -> str:
    return f"{percent:g}%"


def _csv(results: LCDResults, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(_CSV_COLUMNS)
        for row in results.rows:
            disc = results.discs[row["disc"]]
            pairs = zip(row["d_prime"]["readers"], row["auc"]["readers"], strict=True)
            for reader, (snr, auc) in enumerate(pairs, start=1):
                writer.writerow(["LG_CHO_2D", row["recon"], f"{disc.contrast_hu:g}",
                                 f"{row['dose']:g}", repr(snr), repr(auc), reader,
                                 2 * disc.diameter_px])


def _plot(results: LCDResults, disc: int) -> str:
    recons = results.recons()
    series = []
    for k, recon in enumerate(recons):
        rows = sorted((r for r in results.rows if r["recon"] == recon and r["disc"] == disc),
                      key=lambda r: r["dose"])
        doses = [r["dose"] for r in rows]
        color = PALETTE[k % len(PALETTE)]
        series.append(Series(recon, doses, [r["auc"]["mean"] for r in rows], color=color))
        for end in ("low", "high"):
            series.append(Series("", doses, [r["auc"][end] for r in rows], color=color,
                                 dashed=True))
    lowest = min((r["auc"]["low"] for r in results.rows), default=0.5)
    label = results.discs[disc].label(results.spacing_mm)
    return line_plot(series, title=f"Disc {disc + 1}: {label}", xlabel="dose (% of full)",
                     ylabel="AUC", ylim=(min(0.5, round(lowest - 0.05, 1)), 1.0),
                     width=400, height=290, hlines=((0.5, "chance"),))


def _table(results: LCDResults) -> str:
    head = "".join(f"<th>{escape(d.label(results.spacing_mm))}<br><small>AUC [range] / "
                   "d'</small></th>" for d in results.discs)
    body = []
    for recon in results.recons():
        for dose in results.doses():
            cells = []
            for k in range(len(results.discs)):
                row = next((r for r in results.rows if r["recon"] == recon
                            and r["dose"] == dose and r["disc"] == k), None)
                if row is None:
                    cells.append("<td></td>")
                    continue
                a, d = row["auc"], row["d_prime"]
                cells.append(f"<td>{a['mean']:.3f} <small>[{a['low']:.3f}, {a['high']:.3f}]"
                             f"</small> / {d['mean']:.2f}</td>")
            body.append(f"<tr><td>{escape(recon)}, {_dose(dose)}</td>{''.join(cells)}</tr>")
    return (f"<div class='scroll'><table><tr><th>recon, dose</th>{head}</tr>{''.join(body)}"
            "</table></div>")


def _page(results: LCDResults, path: Path) -> None:
    p = results.protocol
    sizes = ", ".join(f"{p.channel_width * d.diameter_px:.2f}" for d in results.discs)
    protocol = (
        f"Laguerre-Gauss channelized Hotelling observer, the FDA LCD-CT toolbox's protocol: "
        f"{p.channels} channels of width {p.channel_width:.3g} x the disc's diameter ({sizes} "
        f"px), {results.roi_size}x{results.roi_size}-pixel ROIs centred on each disc, each "
        f"minus its mean; {p.readers} readers, each a random split of every class into "
        f"{p.train_fraction:g} training and {1 - p.train_fraction:g} test images (seed "
        f"{p.seed}). Lines: the readers' mean AUC; dashed: the 2.5-97.5 percentile range of the "
        "readers' AUCs (the readers share images: the range shows how one split varies, not "
        "the uncertainty of finitely many images). Stored values minus "
        f"{p.offset:g} are HU.")
    notes = "".join(f"<p class='warn'>{escape(n)}</p>" for n in results.notes)
    figures = "".join(_plot(results, k) for k in range(len(results.discs)))
    report = Report(
        title="Low-contrast detectability (LCD-CT)",
        subtitle=f"{results.root}: {len(results.recons())} recon(s) at "
                 f"{', '.join(_dose(d) for d in results.doses())} dose",
        sections=[
            Section("auc", "AUC vs dose per disc",
                    f"{notes}<div class='figures'>{figures}</div>"
                    f"<p class='note'>{escape(protocol)}</p>"),
            Section("table", "Every number", _table(results)),
        ],
    )
    write_report(report, path)


def write_results(results: LCDResults, out: str | os.PathLike) -> list[Path]:
    """Write :data:`OUTPUTS` into ``out`` (created if needed, those files replaced).

    Returns:
        The written paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in OUTPUTS]
    paths[0].write_text(json.dumps(results.as_dict(), indent=1) + "\n", encoding="utf-8")
    _csv(results, paths[1])
    _page(results, paths[2])
    return paths
