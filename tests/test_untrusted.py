"""The escape helpers on hand-written input: untrusted text becomes Markdown or plotly text that shows as typed."""

from __future__ import annotations

import pytest

from dashboard.untrusted import JOINER, markdown_html, markdown_text, plotly_text

J = JOINER  # invisible; breaks what GitHub's Markdown and Streamlit would find in the text after escapes are read
ESCAPED = {
    "[click](https://evil.example)": rf"\[click\](https:{J}//evil.example)",
    "![x](https://tracker.example/p.png)": rf"!\[x\](https:{J}//tracker.example/p.png)",
    "[ref]: https://evil.example": rf"\[ref\]: https:{J}//evil.example",
    "<https://evil.example>": rf"\<https:{J}//evil.example\>",
    'a <a href="https://evil.example">b</a>': rf'a \<a href="https:{J}//evil.example"\>b\</a\>',
    '<img src="https://tracker.example/p.png">': rf'\<img src="https:{J}//tracker.example/p.png"\>',
    "**bold** __bold__ *it* _it_ ~~gone~~": r"\*\*bold\*\* \_\_bold\_\_ \*it\* \_it\_ \~\~gone\~\~",
    "`code` ```fence```": r"\`code\` \`\`\`fence\`\`\`",
    "# heading": r"\# heading",
    "> quote": r"\> quote",
    "- item": r"\- item",
    "+ item": r"\+ item",
    "--- rule": r"\--- rule",
    "12. item": r"12\. item",
    "3) item": r"3\) item",
    "$x^2$ and $$y$$": r"\$x^2\$ and \$\$y\$\$",
    ":red[colour] :blue-background[b] :small[s] :help[tip]": (
        rf":{J}red\[colour\] :{J}blue-background\[b\] :{J}small\[s\] :{J}help\[tip\]"
    ),
    ":material/home: :material_home: :smile: :+1: :streamlit:": (
        rf":{J}material/home: :{J}material\_home: :{J}smile: :{J}+1: :{J}streamlit:"
    ),
    "www.evil.example and WWW.evil.example": f"www{J}.evil.example and WWW{J}.evil.example",
    "mail me@evil.example, mailto:me": f"mail me@{J}evil.example, mailto:{J}me",
    "&amp; &#60;": r"\&amp; \&\#60;",
    "a | b | c": r"a \| b \| c",
    "back\\slash": r"back\\slash",
    "two\n\nparagraphs\n    and code\n# and a heading  ": r"two paragraphs and code \# and a heading",
}


@pytest.mark.parametrize(("text", "escaped"), ESCAPED.items())
def test_markdown_text_escapes_every_construct_streamlit_renders(text, escaped):
    assert markdown_text(text) == escaped


def test_markdown_text_leaves_plain_sentences_as_they_were():
    for sentence in (
        "Only COST needs it: 71% of its evidence goes (ADMIN, age).",
        "Adam, learning rate 0.01",
        "leans DOSAGE",
        "Finished 300 steps.",
        "20261207-004249-adam-s0",
        "1.5 mg",
        "=== x",
    ):
        assert markdown_text(sentence) == sentence


def test_markdown_html_shows_escaped_text_as_typed_and_only_our_stars_as_bold():
    hostile = '**x** <img src="https://tracker.example/p.png"> [a](https://evil.example) \\'
    page = markdown_html(f"**Head 1: {markdown_text(hostile)}.** rest")
    assert page == (
        "<b>Head 1: **x** &lt;img src=&quot;https://tracker.example/p.png&quot;&gt; "
        "[a](https://evil.example) \\.</b> rest"
    )
    assert markdown_html("an **open bold") == "an <b>open bold</b>"


def test_plotly_text_escapes_html_and_shortens_before_escaping():
    assert plotly_text('<a href="https://evil.example">x</a>') == '&lt;a href="https://evil.example"&gt;x&lt;/a&gt;'
    assert plotly_text("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert plotly_text("<unk>", limit=4) == "&lt;un…"
    assert plotly_text("<b>", limit=3) == "&lt;b&gt;"
