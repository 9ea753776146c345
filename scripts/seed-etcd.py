#!/usr/bin/env python3
"""Fills an etcd with Kubernetes-like keys for the benchmarks (shared by scripts/bench-*.sh).

Keys are /registry/<resource>/ns-<i % 211>/obj-<i>, cycling through six resources, written in
transactions of --per-txn keys, two at a time. Styles:
  raw   values are hex blobs of --value-bytes (what `inspect` and `restore` measure);
  kube  values as the API server stores them: ConfigMaps and Secrets as protobuf envelopes
        (k8s\\0 + runtime.Unknown), the other kinds as JSON, through etcd's JSON gateway;
  json  ~4 KiB Kubernetes-style JSON objects (labels, annotations, 40 data keys);
  fixtures  real Kubernetes objects: the serialization fixtures (--fixtures DIR, every
        built-in type as kube-apiserver stores it in protobuf, and as JSON for a quarter of the
        keys, like custom resources), each key's copy with its own name, namespace and uid
        (same-length substitutions, so the protobuf stays valid).
Usage: seed-etcd.py --etcdctl PATH --endpoint URL --keys N [--from N] [--value-bytes N]
                    [--style raw|kube|json|fixtures] [--fixtures DIR] [--per-txn N]
"""
import argparse
import base64
import json
import random
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor

RAW_KINDS = ["configmaps", "secrets", "pods", "events", "replicasets", "leases"]
JSON_KINDS = ["configmaps", "secrets", "pods", "events", "deployments", "services"]


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(num, payload):  # a length-delimited protobuf field
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def protobuf(kind, name, ns, uid, blob):
    meta = field(1, name.encode()) + field(3, ns.encode()) + field(5, uid.encode()) \
        + field(8, varint(1 << 3) + varint(1700000000))
    body = field(1, meta) + field(2, field(1, b"blob") + field(2, blob.encode()))
    if kind == "Secret":
        body += field(3, b"Opaque")
    unknown = field(1, field(1, b"v1") + field(2, kind.encode())) + field(2, body) + field(3, b"") + field(4, b"")
    return b"k8s\0" + unknown


def kube_value(kind, name, ns, uid, blob):
    if kind == "configmaps":
        return protobuf("ConfigMap", name, ns, uid, blob)
    if kind == "secrets":
        return protobuf("Secret", name, ns, uid, blob)
    api, k = {"pods": ("v1", "Pod"), "events": ("v1", "Event"),
              "replicasets": ("apps/v1", "ReplicaSet"), "leases": ("coordination.k8s.io/v1", "Lease")}[kind]
    return json.dumps({"apiVersion": api, "kind": k, "metadata": {"name": name, "namespace": ns, "uid": uid},
                       "spec": {"blob": blob}}).encode()


def json_object(i):
    r = random.Random(i)
    ns = "ns-%d" % (i % 97)
    kind = JSON_KINDS[i % len(JSON_KINDS)]
    o = {"apiVersion": "v1", "kind": kind[:-1].capitalize(),
         "metadata": {"name": "obj-%d" % i, "namespace": ns, "uid": "%032x" % r.getrandbits(128),
                      "resourceVersion": str(i), "labels": {"app": "app-%d" % (i % 13), "tier": "backend"},
                      "annotations": {"checksum": "%064x" % r.getrandbits(256)}},
         "data": {"k%d" % j: "%x" % r.getrandbits(160) + "-value-" * 6 for j in range(40)}}
    return "/registry/%s/%s/obj-%d" % (kind, ns, i), json.dumps(o, separators=(",", ":")).encode()


_FIXTURES = []


def fixtures(d):
    if not _FIXTURES:
        import os
        for name in sorted(os.listdir(d)):
            if name.endswith(".pb") or name.endswith(".json"):
                kind = name.rsplit(".", 2)[-2].lower() + "s"
                _FIXTURES.append((kind, name.endswith(".json"), open(os.path.join(d, name), "rb").read()))
    return _FIXTURES


def same_length(value, placeholder, token):
    token = (token * (len(placeholder) // len(token) + 1))[:len(placeholder)]
    return value.replace(placeholder, token.encode())


def fixture_pair(a, i):
    objs = fixtures(a.fixtures)
    pb = [o for o in objs if not o[1]]
    js = [o for o in objs if o[1]]
    kind, _, value = js[i % len(js)] if i % 4 == 3 else pb[i % len(pb)]
    ns = "ns-%d" % (i % 211)
    value = same_length(value, b"namespaceValue", ns + "-")
    value = same_length(value, b"nameValue", "o%x-" % i)
    value = same_length(value, b"uidValue", "%08x" % (i * 2654435761 % 2**32))
    if a.vocabulary:
        # every other placeholder (`<field>Value`) becomes one of `vocabulary` words of its
        # length: names, labels and images repeat in a cluster, but not all alike
        value = PLACEHOLDER.sub(lambda m: word(a, i, m), value)
    return "/registry/%s/%s/obj-%d" % (kind, ns, i), value


PLACEHOLDER = __import__("re").compile(rb"[a-z][A-Za-z]{1,40}Value")


def word(a, i, m):
    n = len(m.group(0))
    r = random.Random(((i * 7919 + m.start()) % a.vocabulary) * 64 + n)
    return bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(n))


def pairs(a, start, end):
    r = random.Random(start)
    for i in range(start, end):
        if a.style == "json":
            yield json_object(i)
            continue
        if a.style == "fixtures":
            yield fixture_pair(a, i)
            continue
        kind, ns, name = RAW_KINDS[i % len(RAW_KINDS)], "ns-%d" % (i % 211), "obj-%d" % i
        blob = ("%x" % r.getrandbits(a.value_bytes * 4 + 8))[:a.value_bytes]
        key = "/registry/%s/%s/%s" % (kind, ns, name)
        yield key, (kube_value(kind, name, ns, "uid-%d" % i, blob) if a.style == "kube" else blob.encode())


def put(a, kvs):
    if a.style in ("kube", "fixtures"):
        # etcdctl cannot pass binary values (the NUL in k8s\0): etcd's JSON gateway can
        ops = [{"requestPut": {"key": base64.b64encode(k.encode()).decode(), "value": base64.b64encode(v).decode()}}
               for k, v in kvs]
        req = urllib.request.Request(a.endpoint + "/v3/kv/txn", data=json.dumps({"success": ops}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req).read()
        return
    lines = ["", *("put %s %s" % (k, v.decode()) for k, v in kvs), "", "", ""]
    subprocess.run([a.etcdctl, "--endpoints", a.endpoint, "txn"], input="\n".join(lines).encode(),
                   stdout=subprocess.DEVNULL, check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--etcdctl", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--keys", type=int, required=True, help="write keys below this index")
    p.add_argument("--from", dest="start", type=int, default=0, help="first key index")
    p.add_argument("--value-bytes", type=int, default=1900)
    p.add_argument("--style", choices=["raw", "kube", "json", "fixtures"], default="raw")
    p.add_argument("--fixtures", help="the serialization fixtures (style fixtures)")
    p.add_argument("--vocabulary", type=int, default=0,
                   help="style fixtures: replace the other placeholders with words from a vocabulary of N")
    p.add_argument("--per-txn", type=int, default=1000)
    a = p.parse_args()
    starts = range(a.start, a.keys, a.per_txn)
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(lambda s: put(a, list(pairs(a, s, min(s + a.per_txn, a.keys)))), starts))


if __name__ == "__main__":
    main()
