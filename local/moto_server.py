"""moto's own server, started with its per-request backend lookup memoised.

moto 5.2 answers every request by listing its package directory (os.listdir + isdir for each of
~150 service modules) and then trying service URL regexes until one matches the host. Profiled
under the parcelwatch demo (py-spy), that routing was ~45% of moto's CPU. The answer for a given
host never changes while the server runs, so it is computed once per host. Nothing else of moto
is touched: the services, their state and their responses are moto's.

Usage: python moto_server.py -H 127.0.0.1 -p PORT   (same arguments as `moto_server`)
"""

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

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
