"""Several broker addresses: `CE_AMQP_URL` names one RabbitMQ node, or the nodes of a cluster
(and `CE_MANAGEMENT_URL` the management API of one node or of several).

The nodes are given as comma-separated AMQP URLs (a comma inside a URL's userinfo is
percent-encoded, `%2C`, so it never splits one). Every connector tries them in turn and, when
its connection dies, connects again to whichever node answers: the queue lives on every node
of the cluster (a quorum queue), so any of them serves publishers and consumers alike.
"""

from __future__ import annotations

import random
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def split_urls(value: str, what: str) -> list[str]:
    """The comma-separated URLs in `value`, in their given order; ValueError when there is none.

    >>> split_urls("http://a:15672, http://b:15672", "management")
    ['http://a:15672', 'http://b:15672']
    """
    urls = [url.strip() for url in value.split(",") if url.strip()]
    if not urls:
        raise ValueError(f"no {what} URL given")
    return urls


def amqp_urls(value: str) -> list[str]:
    """The AMQP URLs in `value`, in their given order; ValueError when there is none.

    >>> amqp_urls("amqp://a:5672/%2F, amqp://b:5672/%2F")
    ['amqp://a:5672/%2F', 'amqp://b:5672/%2F']
    """
    return split_urls(value, "AMQP")


def connection_order(value: str, *, after: str | None = None) -> list[str]:
    """The order in which to try the nodes for one (re)connection.

    From a random node, so that the processes of a deployment spread over the cluster instead
    of all piling onto the first node; after a lost connection, `after` (the node just lost)
    comes last.
    """
    urls = amqp_urls(value)
    start = random.randrange(len(urls))
    order = urls[start:] + urls[:start]
    if after in order:
        order.remove(after)
        order.append(after)
    return order


def password(url: str) -> str:
    """The password of one AMQP URL ('' when it has none)."""
    return unquote(urlsplit(url).password or "")


def with_credentials(url: str, username: str | None, secret: str | None) -> str:
    """`url` with its user name and/or password replaced, percent-encoded (None keeps the URL's).

    >>> with_credentials("amqp://old:pw@mq:5672/%2F", "ce", "p@ss:w/rd")
    'amqp://ce:p%40ss%3Aw%2Frd@mq:5672/%2F'
    """
    parts = urlsplit(url)
    user = parts.username if username is None else quote(username, safe="")
    pw = parts.password if secret is None else quote(secret, safe="")
    host = parts.netloc.rpartition("@")[2]
    userinfo = (user or "") + (f":{pw}" if pw is not None else "")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host))
