"""A contact sheet of search results: one row per query, its image then its top-k hits."""

from typing import List, Sequence

from PIL import Image, ImageDraw

GREEN = (40, 170, 60)
RED = (210, 40, 40)
GREY = (90, 90, 90)


def contact_sheet(
    queries: Sequence[Image.Image],
    hits: Sequence[Sequence[Image.Image]],
    same: Sequence[Sequence[bool]],
    tile: int = 96,
    border: int = 5,
    gap: int = 12,
) -> Image.Image:
    """Row ``r``: ``queries[r]`` (grey frame), a gap, then ``hits[r]`` framed green where
    ``same[r][i]`` (same car model as the query) and red otherwise."""
    if not (len(queries) == len(hits) == len(same)):
        raise ValueError("queries, hits and same need one entry per query")
    columns = max((len(row) for row in hits), default=0)
    step = tile + 3 * border  # a frame on each side and a white strip between cells
    sheet = Image.new(
        "RGB", (border + step * (columns + 1) + gap, border + step * len(queries)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for row, (query, row_hits, row_same) in enumerate(zip(queries, hits, same)):
        top = border + row * step
        _paste(sheet, draw, query, (border, top), tile, border, GREY)
        for col, (image, match) in enumerate(zip(row_hits, row_same)):
            left = _hit_left(col, tile, border, gap)
            _paste(sheet, draw, image, (left, top), tile, border, GREEN if match else RED)
    return sheet


def _hit_left(col: int, tile: int, border: int, gap: int) -> int:
    return border + (tile + 3 * border) * (col + 1) + gap


def _paste(sheet, draw, image, corner, tile: int, border: int, colour) -> None:
    left, top = corner
    draw.rectangle(
        [left, top, left + tile + 2 * border - 1, top + tile + 2 * border - 1], fill=colour
    )
    sheet.paste(image.convert("RGB").resize((tile, tile)), (left + border, top + border))


def border_colours(sheet: Image.Image, rows: int, columns: int, tile: int = 96, border: int = 5,
                   gap: int = 12) -> List[List[tuple]]:  # fmt: skip
    """The frame colour of each hit cell (read back from the pixels; used by the tests)."""
    return [
        [
            sheet.getpixel(
                (_hit_left(col, tile, border, gap) + 1, border + row * (tile + 3 * border) + 1)
            )
            for col in range(columns)
        ]
        for row in range(rows)
    ]
