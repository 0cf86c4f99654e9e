"""Document's readings of a page: its Markdown, its text, its links and its metadata."""

import pytest

from litejobs.extract import Document

PAGE_URL = "https://example.com/news/2.0.html"

ARTICLE = """<!doctype html>
<html lang="en">
<head>
  <title>Release notes</title>
  <style>h1 { color: red }</style>
  <script>window.tracking = "SECRET";</script>
</head>
<body>
  <noscript>Please enable JavaScript</noscript>
  <article>
    <h1>Release 2.0</h1>
    <p>Read the <a href="/docs/upgrade.html">upgrade guide</a> or the
       <a href="https://other.example/blog">blog post</a>.</p>
    <h2>What&rsquo;s new</h2>
    <ul>
      <li>Faster <em>parsing</em></li>
      <li>Smaller &amp; simpler</li>
    </ul>
    <ol><li>Install</li><li>Run</li></ol>
    <p><img src="img/chart.png" alt="Chart"></p>
    <pre><code class="language-python">print("hi")
</code></pre>
    <p>Call <code>run()</code> once.<br>Then wait.</p>
  </article>
</body>
</html>"""


# markdown


def test_markdown_of_an_article_has_headings_absolute_links_lists_and_code():
    markdown = Document(ARTICLE, PAGE_URL).markdown()

    assert markdown == (
        "# Release 2.0\n\n"
        "Read the [upgrade guide](https://example.com/docs/upgrade.html)"
        " or the [blog post](https://other.example/blog).\n\n"
        "## What’s new\n\n"
        "- Faster *parsing*\n"
        "- Smaller & simpler\n\n"
        "1. Install\n"
        "2. Run\n\n"
        "![Chart](https://example.com/news/img/chart.png)\n\n"
        '```python\nprint("hi")\n```\n\n'
        "Call `run()` once.  \n"
        "Then wait.\n"
    )


def test_markdown_drops_scripts_styles_and_noscript():
    markdown = Document(ARTICLE, PAGE_URL).markdown()

    assert "SECRET" not in markdown
    assert "color: red" not in markdown
    assert "enable JavaScript" not in markdown


def test_markdown_renders_tables():
    html = "<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Free</td><td>0</td></tr></table>"

    assert Document(html, PAGE_URL).markdown() == "| Plan | Price |\n| ---- | ----- |\n| Free | 0     |\n"


def test_markdown_resolves_links_against_a_relative_base_href_exactly_once():
    html = '<head><base href="v2/"></head><body><p><a href="intro">Intro</a></p></body>'

    assert Document(html, "https://example.com/docs/").markdown() == "[Intro](https://example.com/docs/v2/intro)\n"


def test_markdown_keeps_only_the_alt_text_of_inline_data_images():
    html = '<p>Logo: <img src="data:image/png;base64,iVBORw0KGgo=" alt="ACME"></p>'

    assert Document(html, PAGE_URL).markdown() == "Logo: ACME\n"


@pytest.mark.parametrize("html", ["", "   \n ", "<html><head></head><body></body></html>"])
def test_markdown_of_an_empty_document_is_empty(html: str):
    assert Document(html, PAGE_URL).markdown() == ""


# text


def test_text_is_one_line_per_block_without_script_style_or_noscript():
    text = Document(ARTICLE, PAGE_URL).text()

    assert text == (
        "Release 2.0\n"
        "Read the upgrade guide or the blog post.\n"
        "What’s new\n"
        "Faster parsing\n"
        "Smaller & simpler\n"
        "Install\n"
        "Run\n"
        'print("hi")\n'
        "Call run() once.\n"
        "Then wait."
    )


def test_text_leaves_out_templates_hidden_elements_and_svg_titles():
    html = (
        "<p>Shown</p><template><p>Template</p></template><div hidden>Hidden</div>"
        "<svg><title>Icon</title></svg><script>var x = 1;</script><style>p{}</style>"
    )

    assert Document(html, PAGE_URL).text() == "Shown"


def test_text_decodes_entities_collapses_whitespace_and_splits_table_cells():
    html = (
        "<p>  Fish&nbsp;&amp;\n\n  chips  </p><table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
    )

    assert Document(html, PAGE_URL).text() == "Fish & chips\na b\nc d"


def test_text_of_broken_markup_still_separates_blocks():
    html = "<p>one<p>two<div>three <b><i>four</b></i><li>five"

    assert Document(html, PAGE_URL).text() == "one\ntwo\nthree four\nfive"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("", ""),
        (" \n\t ", ""),
        ("<p>   </p><div>\n</div>", ""),
        ("just some plain text, no tags", "just some plain text, no tags"),
        ('{"json": "not html"}', '{"json": "not html"}'),
        ("<frameset><frame src='a.html'></frameset>", ""),
    ],
)
def test_text_of_degenerate_documents(html: str, expected: str):
    assert Document(html, PAGE_URL).text() == expected


# links


def test_links_are_absolute_deduplicated_fragment_free_and_in_page_order():
    html = """
      <a href="/b">b</a> <a href="a.html#top">a</a> <a href="a.html">a again</a> <a href="/b#x">b again</a>
      <a href="//cdn.example.org/file">cdn</a> <a href="https://other.example/">other</a>
      <a href="?page=2">next</a> <a href="  /padded\n  ">padded</a>
    """

    assert Document(html, PAGE_URL).links() == [
        "https://example.com/b",
        "https://example.com/news/a.html",
        "https://cdn.example.org/file",
        "https://other.example/",
        "https://example.com/news/2.0.html?page=2",
        "https://example.com/padded",
    ]


def test_links_skip_non_http_schemes_and_unparseable_urls():
    html = """
      <a href="javascript:void(0)">js</a> <a href="mailto:a@example.com">mail</a> <a href="tel:+123">tel</a>
      <a href="data:text/html,hi">data</a> <a href="ftp://example.com/f">ftp</a> <a href="http://[::1">bad</a>
      <a href>no value</a> <a name="anchor">no href</a> <a href="/ok">ok</a>
    """

    assert Document(html, PAGE_URL).links() == ["https://example.com/ok"]


def test_links_resolve_against_the_first_base_href():
    html = '<head><base href="https://mirror.example/root/"><base href="/ignored/"></head><a href="page">p</a>'

    assert Document(html, PAGE_URL).links() == ["https://mirror.example/root/page"]


def test_links_ignore_a_base_href_that_is_not_http():
    html = '<base href="javascript:alert(1)//"><a href="page">p</a>'

    assert Document(html, PAGE_URL).links() == ["https://example.com/news/page"]


def test_links_percent_encode_spaces_and_non_ascii():
    html = '<a href="/a file.pdf">pdf</a> <a href="/café?q=crème brûlée">café</a>'

    assert Document(html, PAGE_URL).links() == [
        "https://example.com/a%20file.pdf",
        "https://example.com/caf%C3%A9?q=cr%C3%A8me%20br%C3%BBl%C3%A9e",
    ]


def test_an_empty_href_links_to_the_page_itself():
    assert Document('<a href="">self</a>', PAGE_URL + "#intro").links() == [PAGE_URL]


# metadata


def test_metadata_reads_head_open_graph_twitter_and_links():
    html = """<html lang="en-GB"><head>
      <title>  Widget   Pro | Shop </title>
      <meta name="description" content="The best widget.">
      <meta name="keywords" content="widget, gadget">
      <meta name="author" content="Ada">
      <meta name="robots" content="noindex">
      <meta property="og:title" content="Widget Pro">
      <meta property="og:description" content="OG description">
      <meta property="og:image" content="/img/og.png">
      <meta property="og:image:width" content="1200">
      <meta property="og:url" content="https://example.com/widget">
      <meta property="og:type" content="product">
      <meta property="og:site_name" content="Shop">
      <meta name="twitter:card" content="summary_large_image">
      <meta name="twitter:image" content="tw.png">
      <link rel="canonical" href="/widget">
      <link rel="shortcut icon" href="/favicon.ico">
    </head><body></body></html>"""

    assert Document(html, "https://example.com/widget?utm=x").metadata() == {
        "title": "Widget Pro | Shop",
        "description": "The best widget.",
        "language": "en-GB",
        "canonical": "https://example.com/widget",
        "favicon": "https://example.com/favicon.ico",
        "og": {
            "title": "Widget Pro",
            "description": "OG description",
            "image": "https://example.com/img/og.png",
            "image:width": "1200",
            "url": "https://example.com/widget",
            "type": "product",
            "site_name": "Shop",
        },
        "twitter": {"card": "summary_large_image", "image": "https://example.com/tw.png"},
        "keywords": "widget, gadget",
        "author": "Ada",
        "robots": "noindex",
    }


def test_metadata_of_a_page_without_head_is_all_none():
    assert Document("<p>Hello</p>", PAGE_URL).metadata() == {
        "title": None,
        "description": None,
        "language": None,
        "canonical": None,
        "favicon": None,
        "og": {},
        "twitter": {},
        "keywords": None,
        "author": None,
        "robots": None,
    }


def test_metadata_takes_the_first_of_duplicate_tags_ignoring_empty_ones_and_case():
    html = """<head>
      <meta name="description" content="">
      <meta name="Description" content="First">
      <meta name="description" content="Second">
      <meta property="og:title" content="OG first"><meta property="og:title" content="OG second">
      <meta name="og:type" content="article">
      <link rel="Canonical" href="https://example.com/one"><link rel="canonical" href="https://example.com/two">
      <link rel="apple-touch-icon" href="/touch.png">
    </head>"""

    metadata = Document(html, PAGE_URL).metadata()

    assert metadata["description"] == "First"
    assert metadata["og"] == {"title": "OG first", "type": "article"}
    assert metadata["canonical"] == "https://example.com/one"
    assert metadata["favicon"] == "https://example.com/touch.png"


def test_canonical_resolves_against_base_href():
    html = '<head><base href="https://cdn.example.net/a/"><link rel="canonical" href="page"></head>'

    assert Document(html, PAGE_URL).metadata()["canonical"] == "https://cdn.example.net/a/page"


def test_title_ignores_svg_titles_and_decodes_entities():
    html = "<body><svg><title>Menu icon</title></svg><title>Tom &amp; Jerry</title></body>"

    assert Document(html, PAGE_URL).title() == "Tom & Jerry"


@pytest.mark.parametrize("html", ["", "<title>   </title>", "<p>No title</p>"])
def test_title_is_none_when_missing_or_blank(html: str):
    assert Document(html, PAGE_URL).title() is None
