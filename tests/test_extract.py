"""Schema extraction from a Document (`extract`), the schema parser, and a large document."""

from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from litejobs.errors import ValidationFailed
from litejobs.extract import Document, ExtractField, ExtractSchema, parse_schema

PAGE_URL = "https://example.com/news/2.0.html"

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
