"""Draw the sample reward images shipped in ``dags_examples/data/rewards/``.

They are small (a few KB), real images in the formats a catalogue holds (PNG, JPEG, WebP),
so that the example DAGs and the demo upload something the emulator's content checks and a
browser accept. Pillow is needed only to re-draw them, not by the provider::

    uv run --with pillow python scripts/make_sample_images.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "dags_examples" / "data" / "rewards"

#: file name -> (background, accent, label)
REWARDS: dict[str, tuple[str, str, str]] = {
    "coffee-voucher.png": ("#6f4e37", "#f5deb3", "FREE COFFEE"),
    "movie-ticket.jpg": ("#1d3557", "#e63946", "2 MOVIE TICKETS"),
    "spa-day.webp": ("#2a9d8f", "#e9c46a", "SPA DAY -30%"),
    "double-points.png": ("#ffb703", "#023047", "DOUBLE POINTS"),
    "free-shipping.jpg": ("#264653", "#f4a261", "FREE SHIPPING"),
    "birthday-cake.webp": ("#e76f51", "#ffffff", "BIRTHDAY TREAT"),
}


def draw(background: str, accent: str, label: str) -> Image.Image:
    """Draw one 240x160 reward card: a coloured card, a badge and the reward's label."""
    image = Image.new("RGB", (240, 160), background)
    pen = ImageDraw.Draw(image)
    pen.rounded_rectangle((10, 10, 230, 150), radius=16, outline=accent, width=4)
    pen.ellipse((24, 40, 104, 120), fill=accent)
    pen.text((118, 70), label, fill=accent)
    pen.text((52, 74), "REWARD", fill=background)
    return image


def main() -> None:
    """Write every sample image into :data:`OUT`."""
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (background, accent, label) in REWARDS.items():
        path = OUT / name
        image = draw(background, accent, label)
        if name.endswith(".jpg"):
            image.save(path, "JPEG", quality=80)
        elif name.endswith(".webp"):
            image.save(path, "WEBP", quality=80)
        else:
            image.save(path, "PNG", optimize=True)
        print(f"{path.relative_to(OUT.parent.parent.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
