"""A JavaScript face for a replica, so pages written in JavaScript can use it too.

``expose(replica, "todoDb")`` installs ``globalThis.todoDb`` with promise-returning
methods (``put``, ``add``, ``patch``, ``increment``, ``delete``, ``get``, ``query``,
``count``, ``outbox``), ``watch(collection, options, callback) -> stop()``,
``status()`` and ``onStatus(callback) -> stop()``. Documents cross as plain JS
objects. Every proxy it creates is destroyed by the matching ``stop`` or by
``close()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from typing import Any

from ._replica import Replica
from ._store import KeyRange


def _py(value: Any) -> Any:
    return value.to_py() if hasattr(value, "to_py") else value


def _js(value: Any) -> Any:
    import js
    from pyodide.ffi import to_js

    return to_js(value, dict_converter=js.Object.fromEntries, create_pyproxies=False)


def _query_options(options: Any) -> dict[str, Any]:
    """Python keyword arguments for :meth:`Collection.query` from a JS options object."""
    opts = dict(_py(options) or {})
    if "range" in opts:
        low, high = opts.pop("range")
        opts["range"] = KeyRange.bound(low, high)
    if isinstance(opts.get("equals"), list):
        opts["equals"] = tuple(opts["equals"])
    return opts


class _Api:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.proxies: list[Any] = []

    def _promise(self, work: Coroutine[Any, Any, Any]) -> Any:
        async def run() -> Any:
            return _js(await work)

        # A Future returned to JavaScript becomes a Promise.
        return asyncio.ensure_future(run())

    def put(self, collection: str, doc: Any) -> Any:
        return self._promise(self.replica[collection].put(_py(doc)))

    def add(self, collection: str, doc: Any) -> Any:
        return self._promise(self.replica[collection].add(_py(doc)))

    def patch(self, collection: str, key: Any, changes: Any) -> Any:
        return self._promise(self.replica[collection].patch(key, _py(changes)))

    def increment(self, collection: str, key: Any, field: str, by: float = 1) -> Any:
        return self._promise(self.replica[collection].increment(key, field, by))

    def delete(self, collection: str, key: Any) -> Any:
        return self._promise(self.replica[collection].delete(key))

    def get(self, collection: str, key: Any) -> Any:
        return self._promise(self.replica[collection].get(key))

    def query(self, collection: str, options: Any = None) -> Any:
        return self._promise(self.replica[collection].query(**_query_options(options)))

    def count(self, collection: str, options: Any = None) -> Any:
        opts = {
            k: v for k, v in _query_options(options).items() if k in ("index", "equals", "range")
        }
        return self._promise(self.replica[collection].count(**opts))

    def outbox(self) -> Any:
        return self._promise(self.replica.outbox())

    def status(self) -> Any:
        return _js(asdict(self.replica.status))

    def watch(self, collection: str, options: Any, callback: Any) -> Any:
        sub = self.replica[collection].watch(
            lambda docs: callback(_js(docs)), **_query_options(options)
        )
        return self._stopper(sub.cancel)

    def onStatus(self, callback: Any) -> Any:
        return self._stopper(self.replica.on_status(lambda s: callback(_js(asdict(s)))))

    def _stopper(self, stop: Callable[[], None]) -> Any:
        from pyodide.ffi import create_proxy

        def stop_once() -> None:
            stop()
            if proxy in self.proxies:
                self.proxies.remove(proxy)
                proxy.destroy()

        proxy = create_proxy(stop_once)
        self.proxies.append(proxy)
        return proxy

    def close(self) -> None:
        for proxy in list(self.proxies):
            proxy()


def expose(replica: Replica, name: str) -> Callable[[], None]:
    """Install ``globalThis[name]``, a JavaScript API over ``replica``; returns a remover."""
    import js
    from pyodide.ffi import create_proxy

    api = _Api(replica)
    methods = [
        "put",
        "add",
        "patch",
        "increment",
        "delete",
        "get",
        "query",
        "count",
        "outbox",
        "status",
        "watch",
        "onStatus",
    ]
    handles = {m: create_proxy(getattr(api, m)) for m in methods}
    target = js.Object.new()
    for method, handle in handles.items():
        setattr(target, method, handle)
    setattr(js.globalThis, name, target)

    def remove() -> None:
        api.close()
        js.Reflect.deleteProperty(js.globalThis, name)
        for handle in handles.values():
            handle.destroy()

    return remove
