"""The shop's HTML pages: search, results, item, item sub-pages, and the purchase confirmation.

Where it sits: ``site.py`` renders a session's current view with these functions, for a
browser and for the environment alike; ``render.py`` turns the same HTML into WebShop's text
mode. So the markup is deliberately plain: every clickable is an ``<a href>`` (or the Buy Now
button of a POST form), every line of text is a block element, and nothing a browser shows
is hidden from the text view. All text goes through ``html.escape``.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from urllib.parse import urlencode

from branchgym.envs.webshop.catalogue import PER_PAGE, Product, page_count
from branchgym.envs.webshop.instructions import Instruction

SUB_PAGES = ("Description", "Features", "Reviews")

_STYLE = """
body { font-family: sans-serif; max-width: 52rem; margin: 1.5rem auto; line-height: 1.5; }
#instruction { background: #f3f3f3; padding: .5rem 1rem; border-radius: 6px; }
a { color: #0645ad; border: 1px solid #ccd; border-radius: 4px; padding: 0 .3rem;
    text-decoration: none; }
.result { margin: .8rem 0; } .chosen { color: #080; } button { font-size: 1rem; }
"""


def document(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def link(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def _instruction(goal: Instruction) -> str:
    return f'<div id="instruction"><p>Instruction:</p><p>{escape(goal.text)}</p></div>'


def _nav(sid: str, prev_href: str) -> str:
    return f"<p>{link(f'/s/{sid}/home', 'Back to Search')}</p><p>{link(prev_href, '< Prev')}</p>"


def search_page(sid: str, goal: Instruction) -> str:
    form = (
        f'<form method="get" action="/s/{sid}/search">'
        '<input name="q" size="60" aria-label="query"> <button type="submit">Search</button>'
        "</form>"
    )
    return document("WebShop", f"<h1>WebShop</h1>{_instruction(goal)}{form}")


def results_page(
    sid: str, goal: Instruction, hits: tuple[str, ...], page: int, products: Mapping[str, Product]
) -> str:
    """One page of search results: ASIN (the clickable), title and price, as WebShop lists."""
    pages = page_count(len(hits))
    arrows = []
    if page > 1:
        arrows.append(link(f"/s/{sid}/results?page={page - 1}", "< Prev"))
    if page < pages:
        arrows.append(link(f"/s/{sid}/results?page={page + 1}", "Next >"))
    rows = "".join(
        f'<div class="result"><p>{link(f"/s/{sid}/item/{asin}", asin)}</p>'
        f"<p>{escape(products[asin].title)}</p><p>${products[asin].price:.2f}</p></div>"
        for asin in hits[(page - 1) * PER_PAGE : page * PER_PAGE]
    )
    body = (
        f"{_instruction(goal)}<p>{link(f'/s/{sid}/home', 'Back to Search')}</p>"
        f"<p>Page {page} (Total results: {len(hits)})</p>"
        f"{'<p>' + ' '.join(arrows) + '</p>' if arrows else ''}{rows}"
    )
    return document(f"WebShop - results for {goal.product_type}", body)


def _option_rows(sid: str, product: Product, chosen: Mapping[str, str]) -> str:
    rows = []
    for name, values in product.options:
        links = " ".join(
            link(f"/s/{sid}/option?" + urlencode({"name": name, "value": value}), value)
            for value in values
        )
        mark = (
            f' <span class="chosen">(chosen: {escape(chosen[name])})</span>'
            if name in chosen
            else ""
        )
        rows.append(f"<p>{escape(name)}: {links}{mark}</p>")
    return "".join(rows)


def item_page(
    sid: str, goal: Instruction, product: Product, chosen: Mapping[str, str], page: int
) -> str:
    """The product: its option groups (the chosen value marked), price, rating, the three
    sub-pages and Buy Now. ``< Prev`` returns to the results page the item came from."""
    subs = " ".join(link(f"/s/{sid}/sub/{name}", name) for name in SUB_PAGES)
    buy = f'<form method="post" action="/s/{sid}/buy"><button type="submit">Buy Now</button></form>'
    body = (
        f"{_instruction(goal)}{_nav(sid, f'/s/{sid}/results?page={page}')}"
        f"{_option_rows(sid, product, chosen)}<h2>{escape(product.title)}</h2>"
        f"<p>Price: ${product.price:.2f}</p><p>Rating: {product.rating}</p><p>{subs}</p>{buy}"
    )
    return document(product.title, body)


def sub_page(sid: str, goal: Instruction, product: Product, name: str) -> str:
    """Description, Features or Reviews; ``< Prev`` returns to the item with its options."""
    if name == "Description":
        content = f"<p>{escape(product.description)}</p>"
    elif name == "Features":
        content = "<ul>" + "".join(f"<li>{escape(f)}</li>" for f in product.features) + "</ul>"
    else:
        content = "".join(
            f"<p>Rating: {stars:.0f} out of 5. {escape(text)}</p>"
            for stars, text in product.reviews
        )
    body = f"{_instruction(goal)}{_nav(sid, f'/s/{sid}/item')}<h2>{name}</h2>{content}"
    return document(f"{product.title} - {name}", body)


def done_page(goal: Instruction, product: Product, chosen: Mapping[str, str], reward: float) -> str:
    options = ", ".join(f"{k}: {v}" for k, v in chosen.items()) or "none chosen"
    body = (
        f"{_instruction(goal)}<h2>Thank you for shopping with us!</h2>"
        f"<p>Purchased: {escape(product.asin)} {escape(product.title)}</p>"
        f"<p>Options: {escape(options)}</p><p>Price: ${product.price:.2f}</p>"
        f'<p>Your score (min 0.0, max 1.0): <span id="reward">{reward:.4f}</span></p>'
    )
    return document("WebShop - thank you", body)


def landing_page(splits: tuple[str, ...]) -> str:
    """The browser's way in: pick a task seed and split, start a session."""
    choices = "".join(f'<option value="{s}">{s}</option>' for s in splits)
    form = (
        '<form method="get" action="/start"><p>Task seed: <input name="seed" value="0" size="10">'
        f' Split: <select name="split">{choices}</select> <button type="submit">Start</button>'
        "</p></form>"
    )
    return document("WebShop", f"<h1>WebShop</h1><p>Start a shopping task.</p>{form}")


def error_page(message: str) -> str:
    return document("WebShop - error", f"<h1>WebShop</h1><p>{escape(message)}</p>")
