from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from litejobs.errors import ValidationFailed
from litejobs.extract import Document, ExtractField, ExtractSchema, parse_schema

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

PRODUCTS = """<html><body>
<h1>Catalogue</h1>
<div class="product">
  <h2>  Widget
     Pro </h2>
  <span class="price">$1,299.00</span>
  <a class="more" href="/p/widget?ref=list">Details</a>
  <img src="//cdn.example.com/w.png" data-sku="W-1">
  <ul class="tags"><li>new</li><li>sale</li></ul>
</div>
<div class="product">
  <h2>Gadget</h2>
  <span class="price">call us</span>
</div>
<script type="application/ld+json">{"@type": "Product", "name": "Widget"}</script>
</body></html>"""


def schema(fields: dict[str, Any], **extra: Any) -> ExtractSchema:
    return parse_schema({"fields": fields, **extra})


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


# extract


def test_extract_without_base_selector_returns_one_dict_with_first_matches():
    result = Document(PRODUCTS, PAGE_URL).extract(schema({"heading": "h1", "name": "h2", "missing": ".nope"}))

    assert result == {"heading": "Catalogue", "name": "Widget Pro", "missing": None}


def test_extract_with_base_selector_returns_one_dict_per_match():
    fields = {
        "name": "h2",
        "price": {"selector": ".price", "type": "number"},
        "url": {"selector": "a.more", "attr": "href"},
        "tags": {"selector": ".tags li", "all": True},
    }

    result = Document(PRODUCTS, PAGE_URL).extract(schema(fields, base_selector="div.product"))

    assert result == [
        {
            "name": "Widget Pro",
            "price": 1299.0,
            "url": "https://example.com/p/widget?ref=list",
            "tags": ["new", "sale"],
        },
        {"name": "Gadget", "price": None, "url": None, "tags": []},
    ]


def test_extract_with_a_base_selector_that_matches_nothing_is_an_empty_list():
    assert Document(PRODUCTS, PAGE_URL).extract(schema({"name": "h2"}, base_selector=".none")) == []


def test_extract_all_lists_every_match_in_page_order():
    result = Document(PRODUCTS, PAGE_URL).extract(schema({"prices": {"selector": ".price", "all": True}}))

    assert result == {"prices": ["$1,299.00", "call us"]}


def test_extract_all_numbers_skips_text_without_a_number():
    fields = {"prices": {"selector": ".price", "type": "number", "all": True}}

    assert Document(PRODUCTS, PAGE_URL).extract(schema(fields)) == {"prices": [1299.0]}


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1,299.00", 1299.0),
        ("$12", 12),
        ("-3.5", -3.5),
        ("Price: €\u22124", -4),
        ("$.99", 0.99),
        ("12,5 kg", 12),
        ("SKU-12", 12),
        ("3 for 10", 3),
        ("n/a", None),
        ("", None),
    ],
)
def test_extract_number_reads_the_first_number_in_the_text(text: str, number: float | None):
    result = Document(f"<span>{text}</span>", PAGE_URL).extract(schema({"n": {"selector": "span", "type": "number"}}))

    assert result == {"n": number}
    assert type(result["n"]) is type(number)


def test_extract_attr_makes_src_and_href_absolute_and_returns_other_attributes_as_written():
    fields = {
        "image": {"selector": "img", "attr": "src"},
        "sku": {"selector": "img", "attr": "data-sku"},
        "alt": {"selector": "img", "attr": "alt"},
    }

    result = Document(PRODUCTS, PAGE_URL).extract(schema(fields))

    assert result == {"image": "https://cdn.example.com/w.png", "sku": "W-1", "alt": None}


def test_extract_html_is_the_outer_html_of_the_element():
    result = Document(PRODUCTS, PAGE_URL).extract(schema({"tags": {"selector": ".tags", "type": "html"}}))

    assert result == {"tags": '<ul class="tags"><li>new</li><li>sale</li></ul>'}


def test_extract_text_separates_blocks_with_spaces():
    html = '<div class="address"><p>1 Main St</p><p>Springfield</p>Phone: <b>555</b><script>x()</script></div>'

    result = Document(html, PAGE_URL).extract(schema({"address": ".address"}))

    assert result == {"address": "1 Main St Springfield Phone: 555"}


def test_extract_text_of_a_selected_script_is_its_source():
    result = Document(PRODUCTS, PAGE_URL).extract(schema({"ld": 'script[type="application/ld+json"]'}))

    assert result == {"ld": '{"@type": "Product", "name": "Widget"}'}


def test_extract_with_only_a_prompt_has_no_fields_to_fill():
    assert Document(PRODUCTS, PAGE_URL).extract(parse_schema({"prompt": "the cheapest product"})) == {}


# parse_schema


def test_parse_schema_accepts_a_plain_selector_string_as_a_text_field():
    assert schema({"title": "h1"}) == schema({"title": {"selector": "h1"}})
    assert schema({"title": "h1"}).fields == (ExtractField(name="title", selector="h1", type="text"),)


def test_parse_schema_reads_every_option():
    parsed = parse_schema(
        {
            "base_selector": "article",
            "prompt": "summarise",
            "fields": {
                "links": {"selector": "a", "attr": "href", "all": True},
                "body": {"selector": "p", "type": "html"},
            },
        }
    )

    assert parsed == ExtractSchema(
        fields=(
            ExtractField(name="links", selector="a", type="attr", attr="href", all=True),
            ExtractField(name="body", selector="p", type="html"),
        ),
        base_selector="article",
        prompt="summarise",
    )


def test_parse_schema_returns_a_frozen_schema():
    with pytest.raises(FrozenInstanceError):
        schema({"title": "h1"}).prompt = "changed"  # type: ignore[misc]


def test_parse_schema_makes_fields_optional_when_a_prompt_is_given():
    assert parse_schema({"prompt": "find the price"}) == ExtractSchema(prompt="find the price")


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        ("h1", "input.extract", "must be a JSON object"),
        (["h1"], "input.extract", "must be a JSON object"),
        ({}, "input.extract.fields", "is required"),
        ({"fields": {}}, "input.extract.fields", "must name at least one field"),
        ({"fields": ["h1"]}, "input.extract.fields", "must be a JSON object"),
        (
            {"fields": {"price": {"selector": "span["}}},
            "input.extract.fields.price.selector",
            "not a valid CSS selector",
        ),
        ({"fields": {"price": "a >"}}, "input.extract.fields.price", "not a valid CSS selector"),
        ({"fields": {"price": {"selector": ""}}}, "input.extract.fields.price.selector", "not a valid CSS selector"),
        ({"fields": {"price": {"type": "text"}}}, "input.extract.fields.price.selector", "is required"),
        ({"fields": {"price": {"selector": 3}}}, "input.extract.fields.price.selector", "must be a string"),
        ({"fields": {"price": {"selector": "b", "type": "date"}}}, "input.extract.fields.price.type", "must be one of"),
        ({"fields": {"price": {"selector": "b", "type": "attr"}}}, "input.extract.fields.price.attr", "is required"),
        (
            {"fields": {"price": {"selector": "b", "type": "text", "attr": "href"}}},
            "input.extract.fields.price.attr",
            "only",
        ),
        ({"fields": {"price": {"selector": "b", "all": "yes"}}}, "input.extract.fields.price.all", "true or false"),
        (
            {"fields": {"price": {"selector": "b", "selecter": "i"}}},
            "input.extract.fields.price.selecter",
            "not a known",
        ),
        ({"fields": {"price": 5}}, "input.extract.fields.price", "CSS selector string or an object"),
        ({"fields": {" ": "b"}}, "input.extract.fields. ", "must not be empty"),
        ({"fields": {"p": "b"}, "base_selector": "div["}, "input.extract.base_selector", "not a valid CSS selector"),
        ({"fields": {"p": "b"}, "prompt": 3}, "input.extract.prompt", "must be a string"),
        ({"prompt": " "}, "input.extract.prompt", "must not be empty"),
        ({"fields": {"p": "b"}, "fields_": {}}, "input.extract.fields_", "is not a known field"),
        ({"fields": {"p": ":contains(x)"}}, "input.extract.fields.p", "not a valid CSS selector"),
    ],
)
def test_parse_schema_rejects(raw: Any, field: str, problem: str):
    with pytest.raises(ValidationFailed) as caught:
        parse_schema(raw)

    assert [d["field"] for d in caught.value.details] == [field]
    assert problem in caught.value.details[0]["problem"]


def test_parse_schema_reports_every_problem_at_once_under_the_given_prefix():
    raw = {"base_selector": "[", "fields": {"a": "b[", "c": {"selector": "d", "type": "attr"}}}

    with pytest.raises(ValidationFailed) as caught:
        parse_schema(raw, field_prefix="body.extract")

    assert [d["field"] for d in caught.value.details] == [
        "body.extract.base_selector",
        "body.extract.fields.a",
        "body.extract.fields.c.attr",
    ]


# robustness


def test_a_large_document_is_handled_in_one_parse():
    rows = "".join(
        f'<div class="row"><a href="/item/{i}#r">Item {i}</a><span>{i}.50</span></div>' for i in range(20_000)
    )
    document = Document(f"<html><body>{rows}</body></html>", PAGE_URL)

    rows_found = document.extract(schema({"price": {"selector": "span", "type": "number"}}, base_selector=".row"))

    assert len(document.links()) == 20_000
    assert len(document.text().splitlines()) == 20_000
    assert rows_found[-1] == {"price": 19_999.5}
