"""QR codes as the providers send them: a PNG in a data: URI."""

import base64
import io

import segno


def qr_png_base64(text: str) -> str:
    """Return `text` as a QR code PNG, raw base64 (Green API's `qr` shape)."""
    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="png", scale=6, border=2)
    return base64.b64encode(buffer.getvalue()).decode()


def qr_data_uri(text: str) -> str:
    """Return `text` as a QR code PNG data URI (Evolution's `base64` field shape)."""
    return "data:image/png;base64," + qr_png_base64(text)
