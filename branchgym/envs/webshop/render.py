"""WebShop's text mode: the site's HTML as the lines an agent reads, and what it can click.

Where it sits: on the environment's side of the wire. ``WebShopEnv`` fetches a page over
HTTP and hands the HTML to ``parse_page``; the text becomes the observation, the clickables
become ``click[...]`` targets and ``admissible_commands``. A browser shows the same page, so
the two views cannot drift apart.

The rules: the ``<head>`` is skipped; every block element (``p``, ``div``, ``li``, ``h1``...)
starts a new line; a link or a POST form's button is shown in brackets, ``[Buy Now]``, and
becomes clickable; a GET form with a text box is the search bar, shown as ``[Search]`` and
reached with ``search[...]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

_BLOCKS = frozenset(
    {"p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "br", "form", "main", "table", "tr"}
)
_SKIP = frozenset({"head", "script", "style", "title"})


@dataclass(frozen=True)
class Clickable:
    """One bracketed element: its text, and the request a click sends."""

    text: str
    method: str  # GET | POST
    url: str


@dataclass(frozen=True)
class Page:
    text: str
    clickables: tuple[Clickable, ...]
    search_url: str | None  # the search form's action, where this page has one
    search_field: str = "q"

    def find(self, label: str) -> Clickable | None:
        """The first clickable whose text is ``label``, ignoring case and spacing (WebShop
        lower-cases its actions)."""
        key = _key(label)
        return next((c for c in self.clickables if _key(c.text) == key), None)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


class _TextMode(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[list[str]] = [[]]
        self.clickables: list[Clickable] = []
        self.skip = 0
        self.link: str | None = None  # href of the open <a>
        self.form: tuple[str, str] = ("get", "")  # method and action of the open <form>
        self.button = False
        self.buffer: list[str] = []
        self.search_url: str | None = None
        self.search_field = "q"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCKS:
            self._newline()
        if tag == "form":
            self.form = (a.get("method", "get").lower(), a.get("action", ""))
        elif tag == "input" and a.get("type", "text") == "text" and self.form[0] == "get":
            self.search_url, self.search_field = self.form[1], a.get("name", "q")
        elif tag == "a" and "href" in a:
            self.link, self.buffer = a["href"], []
        elif tag == "button":
            self.button, self.buffer = True, []

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "a" and self.link is not None:
            self._bracket("GET", self.link)
            self.link = None
        elif tag == "button" and self.button:
            method, action = self.form
            self._bracket(method.upper(), action, clickable=method == "post")
            self.button = False
        if tag in _BLOCKS:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        words = data.split()
        if self.link is not None or self.button:
            self.buffer.extend(words)
        elif words:
            self.lines[-1].append(" ".join(words))

    def _bracket(self, method: str, url: str, clickable: bool = True) -> None:
        text = " ".join(self.buffer)
        self.lines[-1].append(f"[{text}]")
        if clickable:
            self.clickables.append(Clickable(text, method, url))

    def _newline(self) -> None:
        if self.lines[-1]:
            self.lines.append([])


def parse_page(html: str) -> Page:
    """The text-mode view of ``html``: one line per block, clickables in brackets."""
    parser = _TextMode()
    parser.feed(html)
    parser.close()
    text = "\n".join(" ".join(line) for line in parser.lines if line)
    return Page(text, tuple(parser.clickables), parser.search_url, parser.search_field)
