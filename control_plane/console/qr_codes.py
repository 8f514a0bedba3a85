"""QR codes as inline SVG (the `qrcode` library): deposit addresses, an admin's TOTP enrolment."""
from __future__ import annotations

import qrcode
import qrcode.image.svg
from markupsafe import Markup, escape


def qr_svg(data: str, label: str) -> Markup:
    """An <svg class="qr" role="img"> of data, announced to screen readers as label."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    return Markup(image.to_string(encoding="unicode").replace(
        "<svg ", f'<svg class="qr" role="img" aria-label="{escape(label)}" ', 1))
