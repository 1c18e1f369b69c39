"""kombu's Redis transport, with one Redis client kept per channel instead of one per message.

kombu's Redis channel builds a new `redis.Redis` for every message it publishes (`_put` asks
`conn_or_acquire()`, which calls `_create_client()` each time), and redis-py's constructor fills
its ~170 response callbacks every time: about a tenth of a millisecond of CPU per publish, a
tenth of what an API request spends handing its deliveries to the broker. That client holds
nothing but the channel's connection pool, and a `redis.Redis` over a pool is safe to share (each
command takes a connection from the pool), so this channel keeps the client it built and builds
another only when kombu replaces the pool (it drops its pools when a connection fails) or closes
the channel. Connections, retries, routing and the messages themselves are kombu's, unchanged.

Chosen by CELERY_BROKER_TRANSPORT for `redis://` broker URLs (tenant_platform.settings.base).
"""

import base64
import uuid
import weakref
from typing import Any, cast

import redis
from celery import signals
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from redis.backoff import ConstantBackoff
from redis.retry import Retry


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's BRPOP client: kombu keeps that one itself
            return self._new_client(asynchronous=True)
        pool = self.pool
        client = self._sync_client
        if client is None or client.connection_pool is not pool:
            client = self._sync_client = self._new_client(asynchronous=False)
        return client

    def _new_client(self, asynchronous: bool) -> Any:
        return cast(Any, super())._create_client(asynchronous=asynchronous)  # not in kombu's stubs

    def close(self) -> None:
        self._sync_client = None
        super().close()


class Transport(kombu_redis.Transport):
    Channel = Channel


# --- Publishing a task straight onto its queue's list ---------------------------------------------

# Broker transport options the direct path can ignore: it writes the message to the queue's list
# under its bare name, as kombu does with no key prefix (a priority of 0 is the bare name whatever
# the priority steps). The first two only concern consumers; the socket timeouts (settings.base)
# only how long kombu's connections wait, and this path keeps shorter ones of its own (below).
_DIRECT_OPTIONS_IGNORED = frozenset(
    {"visibility_timeout", "polling_interval", "socket_timeout", "socket_connect_timeout"}
)
# An LPUSH answers in well under a millisecond. A broker that has not connected or answered within
# these is down for this purpose: the publish fails, after one more try, in at most about 2 s, and
# the deliveries stay queued in the database for the sweeper.
CONNECT_TIMEOUT = 0.5
ANSWER_TIMEOUT = 1.0
RETRY_AFTER = 0.2
_EMBED: dict[str, None] = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class DirectPublisher:
    """Publishes a task message onto a Redis broker's queue as apply_async would, in one LPUSH.

    apply_async costs about a millisecond of CPU per message here (routing, the producer pool,
    kombu's exchange lookup, which is a second Redis round trip, and the message built through
    several layers) against about 0.1 ms for the LPUSH itself. The API hands every notification to
    the broker this way, so that millisecond was a tenth of a request. This builds the same task
    protocol 2 message (the same headers, signed for the tenant by tenants.task_tenancy, the same
    body, the same envelope kombu's Redis transport writes for a queue reached directly) and
    pushes it onto the queue's list. tests/test_direct_publish.py holds it to apply_async's output
    field by field, so a Celery or kombu upgrade that changes the message fails there.

    Only for what it models: no countdown, ETA, expiry, priority, link or group (the caller uses
    apply_async for those), and only on Herald's Redis transport without a key prefix; `for_app`
    answers None otherwise, and `takes` says no while anything but Herald's tenant stamp listens
    to Celery's publish signals (it would be skipped). A Redis error is raised to the caller, as
    apply_async's would be, after one more try and within about 2 s (CONNECT_TIMEOUT,
    ANSWER_TIMEOUT), so a request never hangs on a broker outage. Observability hooks that wrap
    apply_async itself (an APM's publish spans) don't see these messages.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._client: Any = None
        # Read once: each read of Celery's configuration is a chain of lookups.
        self.args_max, self.levels = app.amqp.argsrepr_maxsize, app.conf.task_repr_maxlevels
        self.kwargsrepr = saferepr({}, app.amqp.kwargsrepr_maxsize, maxlevels=self.levels)  # never any

    @classmethod
    def for_app(cls, app: Any) -> "DirectPublisher | None":
        conf = app.conf
        if conf.broker_transport != "tenant_platform.broker:Transport":
            return None
        if set(conf.broker_transport_options or {}) - _DIRECT_OPTIONS_IGNORED:
            return None
        if conf.task_always_eager or conf.task_send_sent_event or conf.task_inherit_parent_priority:
            return None
        message_shape = (
            conf.task_serializer,
            conf.task_compression,
            conf.task_protocol,
            conf.task_default_priority,
        )
        if message_shape != ("json", None, 2, None):
            return None
        if conf.task_default_delivery_mode not in ("persistent", 2):
            return None
        return cls(app)

    @staticmethod
    def takes(task: Any) -> bool:
        """Whether the direct path may publish `task` now: nothing but Herald's tenant stamp
        listens to Celery's publish signals (a receiver connected later would be skipped)."""
        from tenants.task_tenancy import stamp_tenant_header  # Django's: not when kombu loads this

        if signals.after_task_publish.has_listeners(task.name):
            return False
        for _, receiver in signals.before_task_publish.receivers:
            if isinstance(receiver, weakref.ReferenceType):
                receiver = receiver()
            if receiver is not None and receiver is not stamp_tenant_header:
                return False
        return True

    def client(self) -> Any:
        if self._client is None:
            conf = self.app.conf
            self._client = redis.Redis.from_url(
                conf.broker_write_url or conf.broker_url,  # where Celery's producers write
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=ANSWER_TIMEOUT,
                retry=Retry(ConstantBackoff(RETRY_AFTER), 1),
            )  # redis-py's pool reconnects after a fork: one per process is safe
        return self._client

    def publish(
        self, task: Any, args: tuple[Any, ...], queue: str, schema: str, task_id: str | None = None
    ) -> str:
        """LPUSH task(*args) onto `queue` for tenant `schema`; the message's task id (`task_id`,
        or a new one)."""
        from tenants.task_tenancy import SCHEMA_HEADER, SIGNATURE_HEADER, sign  # as in `takes`

        task = getattr(task, "_get_current_object", lambda: task)()  # not through a shared_task's proxy
        task_id = task_id or str(uuid.uuid4())
        root_id, parent_id = task_id, None
        parent = self.app.current_worker_task
        if parent is not None and parent.request.id:
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        headers: dict[str, Any] = {
            "lang": "py",
            "task": task.name,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [task.time_limit, task.soft_time_limit],
            "root_id": root_id,
            "parent_id": parent_id,
            "argsrepr": saferepr(args, self.args_max, maxlevels=self.levels),
            "kwargsrepr": self.kwargsrepr,
            "origin": anon_nodename(),
            "ignore_result": task.ignore_result,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }
        headers[SCHEMA_HEADER] = schema
        headers[SIGNATURE_HEADER] = sign(task_id, task.name, schema, args, {}, _EMBED, headers)
        body = dumps((args, {}, _EMBED)).encode()
        message = {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "correlation_id": task_id,
                "reply_to": self.app.thread_oid,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        self.client().lpush(queue, dumps(message))
        return task_id
