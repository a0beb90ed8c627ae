#!/usr/bin/env python3
"""Regenerate fuzz/corpus/<target>/ from the repository's own samples: the sample events in
events/, and the JSON/form bodies written as string literals in the parsers' unit tests.
Run from the repository root: python3 fuzz/seeds/make_corpus.py. Small inputs only (<= 16 KiB)."""
import hashlib, json, os, re, shutil, urllib.parse

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "fuzz", "corpus")
MAX = 16384

RAW = re.compile(r'r#"(.*?)"#', re.S)
PLAIN = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def literals(path):
    src = open(os.path.join(ROOT, path), encoding="utf-8").read()
    out = [m.group(1) for m in RAW.finditer(src)]
    for m in PLAIN.finditer(src):
        s = m.group(1)
        if s.startswith(("{", "[")) and '\\"' in s:
            try:
                out.append(json.loads('"' + s + '"'))
            except ValueError:
                pass
    # Only what looks like a body: JSON or a form.
    return [s for s in out if s.lstrip().startswith(("{", "[")) or "=" in s and "&" in s]


def event(path):
    return open(os.path.join(ROOT, path), encoding="utf-8").read()


def event_body(path):
    return json.loads(event(path)).get("body") or ""


def events_under(d):
    d = os.path.join(ROOT, d)
    return [event(os.path.relpath(os.path.join(d, f), ROOT)) for f in sorted(os.listdir(d))]


def fixtures(d):
    return events_under(os.path.join("shared/src/providers/fixtures", d))


KDNIAO = literals("shared/src/providers/kdniao.rs")
KDNIAO_PUSH = literals("shared/src/providers/kdniao_push.rs")
RECOGNIZE = literals("shared/src/providers/recognize.rs")
KUAIDI100 = literals("shared/src/providers/kuaidi100.rs")
TAOBAO = literals("shared/src/providers/taobao.rs")
ORDERS = literals("shared/src/orders/mod.rs")
API_PUSH_KDNIAO = event_body("events/api/push-kdniao.json")
API_PUSH_KUAIDI100 = event_body("events/api/push-kuaidi100.json")


def form_field(body, name):
    return urllib.parse.parse_qs(body).get(name, [""])[0]


# Small samples quoted in /work/shared/reference/PROTOCOLS.md.
PROTOCOLS_KUAIDI100 = [
    '{"result":true,"returnCode":"200","message":"提交成功"}',
    '{"result":false,"returnCode":"501","message":"重复订阅"}',
    '{"result":false,"returnCode":"500","message":"查询无结果，请隔段时间再查"}',
]
PROTOCOLS_AUTO = ['[{"comCode":"yuantong","name":"圆通速递","lengthPre":15,"noPre":"YT","noCount":1}]']
PROTOCOLS_TOP_ERROR = [
    '{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"accesscontrol.limited-by-app-access-count","sub_msg":"This ban will last for 1 more seconds","request_id":"x"}}'
]

TARGETS = {
    "kdniao_response": KDNIAO + KDNIAO_PUSH,
    "kdniao_subscribe": KDNIAO_PUSH + KDNIAO,
    "kdniao_recognize": RECOGNIZE,
    "kdniao_push": KDNIAO_PUSH
    + [API_PUSH_KDNIAO, form_field(API_PUSH_KDNIAO, "RequestData"), event_body("events/api/push-kdniao-bad-sign.json")],
    "kuaidi100_response": KUAIDI100 + fixtures("kuaidi100") + PROTOCOLS_KUAIDI100,
    "kuaidi100_subscribe": KUAIDI100 + fixtures("kuaidi100") + PROTOCOLS_KUAIDI100,
    "kuaidi100_auto": RECOGNIZE + PROTOCOLS_AUTO,
    "kuaidi100_push": KUAIDI100 + [API_PUSH_KUAIDI100, form_field(API_PUSH_KUAIDI100, "param")],
    "taobao_trace": TAOBAO + fixtures("taobao") + PROTOCOLS_TOP_ERROR,
    "orders_fw199": literals("shared/src/orders/fw199.rs") + ORDERS,
    "orders_top": literals("shared/src/orders/top.rs") + ORDERS + PROTOCOLS_TOP_ERROR,
    "tracker_event": events_under("events/tracker"),
    "notifier_event": events_under("events/notifier"),
    "scheduler_event": events_under("events/scheduler")
    + ['{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","account":"1","time":"9999-12-31T23:59:59Z","region":"us-east-1","resources":[],"detail":{}}'],
    "order_sync_event": events_under("events/order-sync") + ["fw199:kingdo, top:可拆卸aa ,", "top:"],
    "api_request": events_under("events/api") + literals("functions/api/src/register.rs"),
}

if os.path.isdir(OUT):
    shutil.rmtree(OUT)
for target, seeds in TARGETS.items():
    d = os.path.join(OUT, target)
    os.makedirs(d)
    kept = 0
    for s in seeds:
        b = s.encode("utf-8")
        if not b or len(b) > MAX:
            continue
        with open(os.path.join(d, hashlib.sha1(b).hexdigest()), "wb") as f:
            f.write(b)
        kept += 1
    print(f"{target:20} {len(os.listdir(d)):3} seeds")
