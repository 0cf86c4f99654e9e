"""Which charset a response body is in: BOM, Content-Type, then <?xml?> or <meta>, as Chromium decides it."""

from __future__ import annotations

import codecs
import re

_XML_SNIFF_BYTES = 2048
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([\w.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
#: the labels of the WHATWG Encoding Standard, by the Python codec that decodes them. Nothing else is a
#: charset to a browser: a Python-only codec ("utf-7", "base64", "rot13") would read a page no browser
#: shows that way, and UTF-7 turns harmless text into markup. The "replacement" labels (iso-2022-kr,
#: hz-gb-2312, ...) and x-user-defined have no codec here: they are unknown, so the fallback decides.
_WHATWG_LABELS = {
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "cp866": "866 cp866 csibm866 ibm866",
    "iso8859_2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2",
    "iso8859_3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3",
    "iso8859_4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4",
    "iso8859_5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 iso_8859-5 iso_8859-5:1988",
    "iso8859_6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 iso-8859-6-e "
    "iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987",
    "iso8859_7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 iso8859-7 iso88597 "
    "iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    "iso8859_8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 iso8859-8 iso88598 "
    "iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical",
    "iso8859_10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso8859_13": "iso-8859-13 iso8859-13 iso885913",
    "iso8859_14": "iso-8859-14 iso8859-14 iso885914",
    "iso8859_15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso8859_16": "iso-8859-16",
    "koi8_r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8_u": "koi8-ru koi8-u",
    "mac_roman": "csmacintosh mac macintosh x-mac-roman",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "cp1250": "cp1250 windows-1250 x-cp1250",
    "cp1251": "cp1251 windows-1251 x-cp1251",
    # "latin1", "ascii" and friends: the Standard decodes them as windows-1252, and real pages rely on it
    "cp1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 iso8859-1 iso88591 "
    "iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252",
    "cp1253": "cp1253 windows-1253 x-cp1253",
    "cp1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 iso_8859-9:1989 l5 latin5 "
    "windows-1254 x-cp1254",
    "cp1255": "cp1255 windows-1255 x-cp1255",
    "cp1256": "cp1256 windows-1256 x-cp1256",
    "cp1257": "cp1257 windows-1257 x-cp1257",
    "cp1258": "cp1258 windows-1258 x-cp1258",
    "mac_cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    # GBK is decoded by the gb18030 decoder, which reads the GBK characters "gb2312" pages use
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc_jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "iso2022_jp": "csiso2022jp iso-2022-jp",
    "cp932": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 ksc5601 ksc_5601 "
    "windows-949",
    "utf-16-be": "unicodefffe utf-16be",
    "utf-16-le": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
}
_CODECS = {label: codecs.lookup(codec).name for codec, labels in _WHATWG_LABELS.items() for label in labels.split()}

# Chromium's <meta> prescan (HTMLMetaCharsetParser): tags are tokenized as the HTML tokenizer does (comments,
# script and style contents, title text skipped); the scan goes on while only head elements have been seen,
# and over at least the first 1024 bytes whatever comes.
_UNCONDITIONAL_BYTES = 1024
_HEAD_TAGS = frozenset({"script", "noscript", "style", "link", "meta", "object", "title", "base"})
_TEXT_ELEMENTS = frozenset({"script", "style", "iframe", "xmp", "noembed", "noframes", "title", "textarea"})
# Two bounds of ours (Chromium reads a head to its end): page_encoding runs on the event loop, so the
# prescan's work must not grow with the page. One `<meta a a a …>` tag of 8 MB held every request 5.7 s.
#: the bytes it searches (at C speed: about 2 ms), past any inline CSS or script a real head holds
_MAX_PRESCAN_BYTES = 1024 * 1024
#: the tags, text runs and attributes it reads, together (one Python step each: about 6 ms in all);
#: real heads have a few hundred
_MAX_STEPS = 8192
_TAG_OPEN = re.compile(rb"<(?:(!--)|(/?)([A-Za-z][^\t\n\f\r />]*)|[!?/])")
#: "<!-->" and "<!--->" end where they start; other comments at "-->" (or "--!>")
_COMMENT_END = (re.compile(rb"-?>"), re.compile(rb"--!?>"))
_TEXT_END = {name: re.compile(rb"</" + name.encode() + rb"[\t\n\f\r />]", re.IGNORECASE) for name in _TEXT_ELEMENTS}
_TAG_END = re.compile(rb"[\t\n\f\r /]*>")
_ATTRIBUTE = re.compile(
    rb"""[\t\n\f\r /]*([^\t\n\f\r />][^\t\n\f\r /=>]*)(?:[\t\n\f\r ]*=[\t\n\f\r ]*("[^"]*"|'[^']*'|[^\t\n\f\r >]*))?"""
)
_CHARSET_IN_CONTENT = re.compile(r"""charset[\x00- ]*=[\x00- ]*(?:"([^"]*)"|'([^']*)'|([^\x00- "';]+))""", re.I)


def page_encoding(content_type_header: str, body: bytes) -> str:
    """The Python codec for `body`: its BOM, the Content-Type charset, then for markup an <?xml?>
    declaration or a <meta> charset (Chromium's prescan), else the fallback (_undeclared)."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec
    declared = whatwg_codec(_charset_param(content_type_header))
    if declared:
        return declared
    mime = mime_of(content_type_header)
    if mime and "html" not in mime and "xml" not in mime:
        # JSON and binary bodies are UTF-8 or nothing; other text is as browsers read it undeclared
        return _undeclared(body) if mime.startswith("text/") else "utf-8"
    found = _XML_ENCODING.search(body[:_XML_SNIFF_BYTES])
    sniffed = whatwg_codec(found.group(1).decode("ascii", "replace")) if found else _meta_prescan(body)
    if sniffed is None:
        return _undeclared(body)
    # A document that can be read as ASCII cannot really be UTF-16 (WHATWG does the same).
    return "utf-8" if sniffed.startswith("utf-16") else sniffed


def mime_of(content_type_header: str) -> str:
    return content_type_header.split(";", 1)[0].strip().lower()


def whatwg_codec(label: str) -> str | None:
    """The Python codec of a WHATWG encoding label ("latin1" → cp1252), None for any other name."""
    return _CODECS.get(label.strip("\t\n\f\r ").lower())


def _charset_param(content_type_header: str) -> str:
    for param in content_type_header.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'")
    return ""


def _undeclared(body: bytes) -> str:
    """A body that says nothing of its charset: UTF-8 when it reads as UTF-8, else windows-1252, the
    WHATWG default browsers use (so a Latin page is not full of U+FFFD). A UTF-8 body with a stray
    invalid byte, or cut mid-character at the size cap, stays UTF-8: at least as many of its non-ASCII
    characters decode as fail, which chance bytes of windows-1252 text practically never do."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", errors="replace")
        failed = text.count("\ufffd")
        decoded = len(text) - len(text.encode("ascii", errors="ignore")) - failed
        return "utf-8" if failed <= decoded else "cp1252"  # failed is at least 1 here
    return "utf-8"


def _meta_prescan(whole: bytes) -> str | None:
    """The codec a <meta charset> or <meta http-equiv=content-type> names, found as Chromium finds it
    within the first _MAX_PRESCAN_BYTES and _MAX_STEPS (beyond them: None, the fallback decides)."""
    body = whole[:_MAX_PRESCAN_BYTES]  # every search below ends here, so none scans the whole page
    steps = _Steps(_MAX_STEPS)
    pos, in_head = 0, True
    while steps.take():
        if not in_head and pos >= _UNCONDITIONAL_BYTES:
            return None
        start = body.find(b"<", pos)
        if start < 0:
            return None
        if start > pos:  # a run of text: one token, which ends the scan once past the head
            pos = start
            continue
        tag = _TAG_OPEN.match(body, start)
        if tag is None:  # a "<" that opens nothing is text
            pos = start + 1
        elif tag.group(1):  # a comment
            close = _COMMENT_END[0].match(body, tag.end()) or _COMMENT_END[1].search(body, tag.end())
            if close is None:
                return None
            pos = close.end()
        elif not tag.group(3):  # "<!...>", "<?...>", "</...>" that is no tag: a bogus comment
            close_at = body.find(b">", tag.end())
            if close_at < 0:
                return None
            pos = close_at + 1
        else:
            name = tag.group(3).decode("latin-1").lower()
            attributes, pos = _attributes(body, tag.end(), steps)
            if pos < 0:
                return None
            if tag.group(2):
                in_head = in_head and name in _HEAD_TAGS
                continue
            if name == "meta" and (codec := _meta_codec(attributes)):
                return codec
            in_head = in_head and name in _HEAD_TAGS | {"html", "head"}
            if name == "plaintext":
                return None
            if name in _TEXT_ELEMENTS:  # its content is text up to its end tag
                end = _TEXT_END[name].search(body, pos)
                if end is None:
                    return None
                pos = end.start()
    return None


class _Steps:
    """What is left of the prescan's budget of steps."""

    def __init__(self, budget: int) -> None:
        self.left = budget

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _attributes(body: bytes, pos: int, steps: _Steps) -> tuple[dict[str, str], int]:
    """A tag's attributes from `pos` (the first of a name wins) and where the tag ends; -1 at the body's
    end or when the steps run out (the tag is then unread, as if cut off)."""
    attributes: dict[str, str] = {}
    while (end := _TAG_END.match(body, pos)) is None:
        attribute = _ATTRIBUTE.match(body, pos) if steps.take() else None
        if attribute is None:
            return attributes, -1
        value = attribute.group(2) or b""
        if value[:1] in (b'"', b"'"):
            value = value[1:-1]
        attributes.setdefault(attribute.group(1).decode("latin-1").lower(), value.decode("latin-1"))
        pos = attribute.end()
    return attributes, end.end()


def _meta_codec(attributes: dict[str, str]) -> str | None:
    """What a <meta> says the charset is (the HTML standard's rules, as Chromium applies them), as a codec."""
    if "charset" in attributes:
        label = attributes["charset"]
    elif attributes.get("http-equiv", "").strip().lower() == "content-type" and "content" in attributes:
        found = _CHARSET_IN_CONTENT.search(attributes["content"])
        label = next((group for group in found.groups() if group is not None), "") if found else ""
    else:
        return None
    if label.strip("\t\n\f\r ").lower() == "x-user-defined":
        return "cp1252"
    return whatwg_codec(label)
