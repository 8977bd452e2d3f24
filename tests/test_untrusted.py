"""The escape helpers on hand-written input: untrusted text becomes Markdown or plotly text that shows as typed."""

from __future__ import annotations

import pytest

from dashboard.untrusted import markdown_html, markdown_text, plotly_text

ESCAPED = {
    "[click](https://evil.example)": r"\[click\](https&#58;//evil.example)",
    "![x](https://tracker.example/p.png)": r"!\[x\](https&#58;//tracker.example/p.png)",
    "[ref]: https://evil.example": r"\[ref\]: https&#58;//evil.example",
    "<https://evil.example>": r"\<https&#58;//evil.example\>",
    'a <a href="https://evil.example">b</a>': r'a \<a href="https&#58;//evil.example"\>b\</a\>',
    '<img src="https://tracker.example/p.png">': r'\<img src="https&#58;//tracker.example/p.png"\>',
    "**bold** __bold__ *it* _it_ ~~gone~~": r"\*\*bold\*\* \_\_bold\_\_ \*it\* \_it\_ \~\~gone\~\~",
    "`code` ```fence```": r"\`code\` \`\`\`fence\`\`\`",
    "# heading": r"\# heading",
    "> quote": r"\> quote",
    "- item": r"\- item",
    "+ item": r"\+ item",
    "12. item": r"12\. item",
    "3) item": r"3\) item",
    "--- rule": r"\--- rule",
    "$x^2$ and $$y$$": r"\$x^2\$ and \$\$y\$\$",
    ":red[colour] :blue-background[b] :small[s] :help[tip]":
        r"&#58;red\[colour\] &#58;blue-background\[b\] &#58;small\[s\] &#58;help\[tip\]",
    ":material/home: :smile: :+1:": "&#58;material/home: &#58;smile: &#58;+1:",
    "www.evil.example and WWW.evil.example": r"www\.evil.example and WWW\.evil.example",
    "mail me@evil.example": r"mail me\@evil.example",
    "&amp; &#60;": r"\&amp; \&\#60;",
    "a | b | c": r"a \| b \| c",
    "back\\slash": r"back\\slash",
    "two\n\nparagraphs\n    and code\n# and a heading  ": r"two paragraphs and code \# and a heading",
}


@pytest.mark.parametrize(("text", "escaped"), ESCAPED.items())
def test_markdown_text_escapes_every_construct_streamlit_renders(text, escaped):
    assert markdown_text(text) == escaped


def test_markdown_text_leaves_plain_sentences_as_they_were():
    for sentence in ("Only COST needs it: 71% of its evidence goes (ADMIN, age).", "Adam, learning rate 0.01",
                     "leans DOSAGE", "Finished 300 steps.", "20261207-004249-adam-s0", "1.5 mg", "=== x"):
        assert markdown_text(sentence) == sentence


def test_markdown_html_shows_escaped_text_as_typed_and_only_our_stars_as_bold():
    hostile = '**x** <img src="https://tracker.example/p.png"> [a](https://evil.example) \\'
    page = markdown_html(f"**Head 1: {markdown_text(hostile)}.** rest")
    assert page == ("<b>Head 1: **x** &lt;img src=&quot;https://tracker.example/p.png&quot;&gt; "
                    "[a](https://evil.example) \\.</b> rest")
    assert markdown_html("an **open bold") == "an <b>open bold</b>"


def test_plotly_text_escapes_html_and_shortens_before_escaping():
    assert plotly_text('<a href="https://evil.example">x</a>') == '&lt;a href="https://evil.example"&gt;x&lt;/a&gt;'
    assert plotly_text("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert plotly_text("<unk>", limit=4) == "&lt;un…"
    assert plotly_text("<b>", limit=3) == "&lt;b&gt;"
