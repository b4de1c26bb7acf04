"""WebShop: a generated web shop (a real Starlette site) and the text environment that browses it.

``WebShopEnv`` is ``branchgym/WebShop-v0``; ``serve()`` runs the site in the foreground for a
browser (``branchgym serve shop``); ``ShopServer`` runs it in a background thread.
"""

from branchgym.envs.webshop.env import WebShopEnv, WebShopSnapshot, expert_plan
from branchgym.envs.webshop.reward import RewardParts, purchase_reward
from branchgym.envs.webshop.site import ShopServer, create_app, serve

__all__ = [
    "RewardParts",
    "ShopServer",
    "WebShopEnv",
    "WebShopSnapshot",
    "create_app",
    "expert_plan",
    "purchase_reward",
    "serve",
]
