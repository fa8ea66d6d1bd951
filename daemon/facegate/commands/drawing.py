"""Boxes with readable labels for ``detect --draw`` and ``analyze --draw``.

A label goes above its box when it fits there, else below it, else inside the box's top edge; it is
shifted left so it never runs past the right edge and shrunk when it is wider than the image, so no
label is ever cut at the image border. It is drawn on a filled band in the box colour so it stays
legible on any background.
"""

from __future__ import annotations

import cv2

from facegate.types import ImageBGR

FONT = cv2.FONT_HERSHEY_SIMPLEX


def line_thickness(image: ImageBGR) -> int:
    """Box line width that stays visible on large photos (1 px per 400 px of the longer side)."""
    return max(1, round(max(int(image.shape[0]), int(image.shape[1])) / 400))


def label_geometry(text: str, box: tuple[int, int, int, int], image_size: tuple[int, int],
                   thickness: int) -> tuple[tuple[int, int], float, tuple[int, int]]:
    """Where ``text`` goes for ``box`` (x1, y1, x2, y2) in an image of ``(width, height)``.

    Returns the text origin (baseline-left), the font scale and the band's (width, height); the band
    spans ``origin.x .. origin.x + width`` and ``origin.y - height .. origin.y + baseline`` inside the image.
    """
    width, height = image_size
    x1, y1, _, y2 = box
    scale = 0.5 * thickness
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    if tw + 4 > width:  # wider than the image: shrink to fit
        scale *= (width - 4) / (tw + 4)
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    band_h = th + base + 4
    x = min(max(0, x1), max(0, width - tw - 4))
    if y1 - band_h >= 0:
        y = y1 - base - 2  # above the box
    elif y2 + band_h <= height:
        y = y2 + th + 2  # below the box
    else:
        y = max(0, y1) + th + 2  # inside, at the top
    return (x, y), scale, (tw + 4, band_h)


def draw_labelled_box(canvas: ImageBGR, box: tuple[int, int, int, int], text: str,
                      colour: tuple[int, int, int]) -> None:
    """Draws ``box`` and its label on ``canvas`` in place."""
    thickness = line_thickness(canvas)
    x1, y1, x2, y2 = box
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
    if not text:
        return
    h, w = canvas.shape[:2]
    (x, y), scale, (band_w, band_h) = label_geometry(text, box, (w, h), thickness)
    _, base = cv2.getTextSize(text, FONT, scale, thickness)
    cv2.rectangle(canvas, (x, y - band_h + base + 2), (x + band_w, y + base + 2), colour, -1)
    ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 2, y), FONT, scale, ink, thickness, cv2.LINE_AA)


__all__ = ["draw_labelled_box", "label_geometry", "line_thickness"]
