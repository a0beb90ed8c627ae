"""moto's own server, started with its per-request backend lookup memoised, and one read-only
view of what it recorded.

moto 5.2 answers every request by listing its package directory (os.listdir + isdir for each of
~150 service modules) and then trying service URL regexes until one matches the host. Profiled
under the parcelwatch demo (py-spy), that routing was ~45% of moto's CPU. The answer for a given
host never changes while the server runs, so it is computed once per host. Nothing else of moto
is touched: the services, their state and their responses are moto's.

`GET /moto-api/sns/sms.json` lists the SMS moto's SNS recorded as sent, in the shape of
`data.json`'s `sns.SMS` list. `data.json` serialises every object moto ever created (each item
version, each message): past a few thousand shipments it takes longer than a test should wait.

Usage: python moto_server.py -H 127.0.0.1 -p PORT   (same arguments as `moto_server`)
"""

import json
import sys

from moto import backends
from moto.moto_server import werkzeug_app

_MODULES = frozenset(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _MODULES

_lookup = werkzeug_app.DomainDispatcherApplication.get_backend_for_host
_memo: dict = {}


def _get_backend_for_host(self, host):
    if host not in _memo:
        _memo[host] = _lookup(self, host)
    return _memo[host]


werkzeug_app.DomainDispatcherApplication.get_backend_for_host = _get_backend_for_host

SMS_PATH = "/moto-api/sns/sms.json"
_dispatch = werkzeug_app.DomainDispatcherApplication.__call__


def _dispatch_with_sms_view(self, environ, start_response):
    if environ.get("PATH_INFO") == SMS_PATH and environ.get("REQUEST_METHOD") == "GET":
        from moto.core.model_instances import model_data

        model = model_data.get("sns", {}).get("SMS")
        sent = [
            {"message_id": m.message_id, "phone_number": m.phone_number, "message": m.message}
            for m in getattr(model, "instances_tracked", [])
        ]
        body = json.dumps(sent).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
    return _dispatch(self, environ, start_response)


werkzeug_app.DomainDispatcherApplication.__call__ = _dispatch_with_sms_view

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
