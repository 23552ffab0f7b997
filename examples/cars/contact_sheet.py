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
    cell = tile + 2 * border
    width = cell * (columns + 1) + gap + border
    height = cell * len(queries) + border * (len(queries) + 1)
    sheet = Image.new("RGB", (width, max(height, 1)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (query, row_hits, row_same) in enumerate(zip(queries, hits, same)):
        top = border + row * (cell + border)
        _paste(sheet, draw, query, (0, top), tile, border, GREY)
        for col, (image, match) in enumerate(zip(row_hits, row_same)):
            left = cell * (col + 1) + gap
            _paste(sheet, draw, image, (left, top), tile, border, GREEN if match else RED)
    return sheet


def _paste(sheet, draw, image, corner, tile: int, border: int, colour) -> None:
    left, top = corner
    draw.rectangle(
        [left, top, left + tile + 2 * border - 1, top + tile + 2 * border - 1], fill=colour
    )
    sheet.paste(image.convert("RGB").resize((tile, tile)), (left + border, top + border))


def border_colours(sheet: Image.Image, rows: int, columns: int, tile: int = 96, border: int = 5,
                   gap: int = 12) -> List[List[tuple]]:  # fmt: skip
    """The frame colour of each hit cell (read back from the pixels; used by the tests)."""
    cell = tile + 2 * border
    return [
        [
            sheet.getpixel((cell * (col + 1) + gap + 1, border + row * (cell + border) + 1))
            for col in range(columns)
        ]
        for row in range(rows)
    ]
