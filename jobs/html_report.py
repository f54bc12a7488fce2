"""A markdown report as one self-contained HTML page: figures inlined, captions under their images."""

from __future__ import annotations

import base64
import re
from pathlib import Path


def figures(html: str) -> str:
    """Each image paragraph as a ``<figure>``, its italic caption line (if any) a ``<figcaption>`` under it.

    Markdown puts ``![x](a.png)`` and the ``*caption*`` line after it in one paragraph, so the
    caption would sit beside the image; a figure stacks them.
    """
    pattern = re.compile(r"<p>\s*(<img [^>]*>)\s*(?:<em>(.*?)</em>)?\s*</p>", re.S)
    return pattern.sub(lambda m: f"<figure>{m.group(1)}" + (f"<figcaption>{m.group(2)}</figcaption>" if m.group(2) else "")
                       + "</figure>", html)


def to_html(markdown_text: str, base_dir: Path, title: str) -> str:
    """Markdown to one self-contained HTML page (figures inlined as data URIs)."""
    import markdown

    body = figures(markdown.markdown(markdown_text, extensions=["tables", "fenced_code"]))

    def inline(match: re.Match) -> str:
        path = base_dir / match.group(1)
        if not path.exists():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px}"
             "th{background:#f3f3f3}img{max-width:100%;display:block}figure{margin:1em 0}"
             "figcaption{font-size:0.9em;color:#555;margin-top:0.3em}pre{background:#f6f6f6;padding:1em;overflow:auto}"
             "blockquote{margin:1em 0;padding:0.6em 1em;border-left:5px solid #c62828;background:#fdecea;color:#5f1b1b}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head><body>{body}</body></html>"
