"""Which charset a response body is in: BOM, Content-Type, then <meta> or <?xml?>, as browsers do."""

from __future__ import annotations

import codecs
import re

_SNIFF_BYTES = 2048
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([\w.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# The WHATWG Encoding Standard decodes these labels with a superset, and real pages rely on it
# (a "latin-1" page full of Windows smart quotes, a "gb2312" page using GBK characters).
_WHATWG_SUPERSETS = {
    **dict.fromkeys(("iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii"), "cp1252"),
    **dict.fromkeys(("gb2312", "gbk", "x-gbk"), "gb18030"),
    **dict.fromkeys(("euc-kr", "ks_c_5601-1987"), "cp949"),
    **dict.fromkeys(("shift_jis", "shift-jis", "sjis", "x-sjis"), "cp932"),
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
}


def page_encoding(content_type_header: str, body: bytes) -> str:
    """The charset for `body`: its BOM, the Content-Type charset, <meta> or <?xml?> in 2 KB, else utf-8."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec
    declared = _text_codec(_charset_param(content_type_header))
    if declared:
        return declared
    mime = mime_of(content_type_header)
    if mime and "html" not in mime and "xml" not in mime:
        return "utf-8"
    head = body[:_SNIFF_BYTES]
    found = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    sniffed = _text_codec(found.group(1).decode("ascii", "replace")) if found else None
    # A document that can be read as ASCII cannot really be UTF-16 (WHATWG does the same).
    return sniffed if sniffed and not sniffed.startswith("utf-16") else "utf-8"


def mime_of(content_type_header: str) -> str:
    return content_type_header.split(";", 1)[0].strip().lower()


def _charset_param(content_type_header: str) -> str:
    for param in content_type_header.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'")
    return ""


def _text_codec(label: str) -> str | None:
    """Python's codec for a charset label, or None for unknown names and bytes-to-bytes codecs."""
    label = label.strip().lower()
    if not label:
        return None
    label = _WHATWG_SUPERSETS.get(label, label)
    try:
        name = codecs.lookup(label).name
        b"x".decode(name, "replace")  # refuses "base64", "zlib" and other bytes-to-bytes codecs
    except LookupError:
        return None
    return name
