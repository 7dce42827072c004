"""The cart-orders link topic: how an ``order.placed`` reaches the worker that owns its cart.

Orders are keyed by ``order_id`` and carts by ``cart_id``, so an order and its cart live on
different partitions. The orders stage writes ``(cart_id, order time, order id)`` to
``<app_id>.cart-orders``, partitioned exactly as Kafka's default partitioner places ``cart_id`` in
``cx.carts`` (murmur2, like every Kafka client by default), with the same partition count. The
owner of ``cx.carts[p]`` reads ``cart-orders[p]`` alongside it and records the link offset in the
same checkpoint as the cart state, so the join is exactly once. Links are written before the
orders checkpoint; after a crash one may be written twice, and the cart ignores a known order id.

Wire value: ``{"t": time, "order": id, "order_id": order id}``. ``order`` is the link's identity
(what workers of every version dedupe on; it held the order's event id before ``order_id`` was
added for the ``cart.recovered`` signal). A record without ``order_id`` (written by an older
worker) still decodes: its ``order`` stands in, as identity and, lacking better, as the id.
"""

from __future__ import annotations

import orjson


def encode_link(time: float, order_id: str) -> bytes:
    return orjson.dumps({"t": time, "order": order_id, "order_id": order_id})


def decode_link(value: bytes) -> tuple[float, str]:
    """(order time, order id) of a link, old or new."""
    data = orjson.loads(value)
    return float(data["t"]), str(data.get("order_id", data["order"]))
