"""Text read from a run folder, a study file or a claims file, shown as the plain text it is.

Every file in a runs folder is possibly hostile: a run's message, a head's label, a metric's or a layer's name must
never become a link, an image the browser fetches (a tracking pixel), or markup that covers the page. Streamlit
renders Markdown (GitHub-flavoured, with math, its own `:color[...]` directives, `:material/...:` icons and emoji
shortcodes) in most elements and labels; plotly renders a little HTML (links, bold, styled spans) in every title,
label and hover text. Untrusted text passes through `markdown_text` or `plotly_text` before it reaches either.
"""

from __future__ import annotations

import html
import re

# Backslash-escaped (CommonMark shows any escaped ASCII punctuation as itself): code, emphasis, strikethrough, links
# and images, HTML and <autolinks>, headings, math, entities, tables, and the escape itself.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_~\[\]<>#$&|])")
# Some constructs are found in the text after escapes are read, where no escape can hide them: GitHub's links of
# 'www.x.y', 'https://x.y' and 'a@x.y', Streamlit's logo (':streamlit:'), icons (':material_x:') and emoji
# shortcodes; and Streamlit rewrites ':material/' in the source before parsing. An invisible word joiner breaks each
# of them where it would start: after a colon before anything but a space (which also stops a directive,
# ':red[...]'), between 'www' and its dot, and after '@'.
JOINER = "\u2060"
_LINK_START = re.compile(r"(:(?=\S)|(?i:www)(?=\.)|@)")
# At the start of an element's text: a bullet ('- x', '+ x', '---') or a numbered item ('1. x', '2) x')
_BULLET = re.compile(r"^([-+])")
_NUMBERED = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])|(\*\*)")


def markdown_text(text: str) -> str:
    """`text` as Markdown that Streamlit shows as exactly these characters, on one line.

    Runs of white space become one space (as Markdown shows them anyway): a heading, a list, a quote, a table or a
    code block needs a line of its own. A word joiner (U+2060, invisible) follows a colon, 'www' or '@' where one
    of them could start a link, an icon or a directive: it is copied with the text.
    """
    plain = " ".join(str(text).split())
    escaped = _LINK_START.sub(rf"\1{JOINER}", _MARKDOWN_PUNCTUATION.sub(r"\\\1", plain))
    return _NUMBERED.sub(r"\1\\\2", _BULLET.sub(r"\\\1", escaped))


def markdown_html(markdown: str) -> str:
    """The pages' own Markdown, `**bold**` and text escaped by `markdown_text`, as HTML for the report: an escaped
    '**' stays two stars, never bold, and the word joiners go (HTML links nothing by itself)."""
    parts, bold, start = [], False, 0
    for match in _ESCAPED.finditer(markdown):
        parts.append(html.escape(markdown[start : match.start()]))
        if match[2]:
            parts.append("</b>" if bold else "<b>")
            bold = not bold
        else:
            parts.append(html.escape(match[1]))
        start = match.end()
    parts.append(html.escape(markdown[start:]))
    return "".join(parts).replace(JOINER, "") + ("</b>" if bold else "")


def plotly_text(text: str, limit: int | None = None) -> str:
    """`text` for a plotly title, label, legend or hover text: shortened to `limit` characters if given, with '&',
    '<' and '>' escaped so '<unk>' and '<a href=...>' show as typed."""
    text = str(text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=False)
