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



# TransactWriteItems: moto 5.2 backs up every table a transaction touches with copy.deepcopy
# (once per member, stream records included) and, when a member fails, swaps the table object
# for that copy. That costs O(table) per transaction (the analytics consumer sends one per
# shipment change: moto's memory climbed to 7 GB within minutes) and detaches the stream's shard
# from the table, so readers stop seeing new records after the first cancelled transaction.
# DynamoDB checks every member's condition before writing any, so the replacement does exactly
# that: check all, then apply all; a member that fails while applying (a validation error) has
# the items already written restored from a copy of those items alone.
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend


def _transact_write_items(self, transact_items):
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    members = []
    seen = set()
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise MockValidationException("Unsupported transaction operation")
        table = self.get_table(op["TableName"])
        if op_type == "Put":
            attrs = op["Item"]
            key = {table.hash_key_attr: attrs[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs[table.range_key_attr]
        else:
            key = op["Key"]
        unique = (op["TableName"], str(dict(sorted(key.items()))))
        if unique in seen:
            raise MultipleTransactionsException()
        seen.add(unique)
        members.append((op_type, op, key))

    errors = []
    for op_type, op, key in members:
        current = self.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        failed = False
        if condition is not None:
            failed = not get_filter_expression(
                condition,
                op.get("ExpressionAttributeNames"),
                op.get("ExpressionAttributeValues"),
            ).expr(current)
        if failed:
            old = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            errors.append((None, None, None))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)

    written = []  # (table name, key, the item before, as attributes, or None)
    try:
        for op_type, op, key in members:
            name = op["TableName"]
            before = self.get_item(name, key)
            written.append((name, key, before.to_json()["Attributes"] if before else None))
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if op_type == "Put":
                self.put_item(name, op["Item"], expression_attribute_names=names,
                              expression_attribute_values=values)
            elif op_type == "Delete":
                self.delete_item(name, key, expression_attribute_names=names,
                                 expression_attribute_values=values)
            elif op_type == "Update":
                self.update_item(name, key, update_expression=op["UpdateExpression"],
                                 expression_attribute_names=names,
                                 expression_attribute_values=values)
    except Exception:
        for name, key, before in reversed(written):
            if before is None:
                self.delete_item(name, key)
            else:
                self.put_item(name, before)
        raise


DynamoDBBackend.transact_write_items = _transact_write_items


if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
