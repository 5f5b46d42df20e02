#!/usr/bin/env python3
"""A small in-memory S3 model for the sbot tests (python3 stdlib only).

It implements what s3rver lacks, with S3's semantics as documented by AWS:
bucket versioning (version ids, delete markers, ListObjectVersions), bucket
policies, conditional writes (If-None-Match: * and If-Match: <etag> answer 412
PreconditionFailed), ListMultipartUploads and AbortMultipartUpload, and keys
kept byte-exact ("//" and "." / ".." segments included). Requests must carry a
valid SigV4 signature (header or presigned query), checked here independently
of sbot's signer.

Fault injection for the tests: POST /__control with a JSON body
  {"fail_part": N}          answer 500 InternalError to UploadPart number N
  {"complete_error": true}  answer CompleteMultipartUpload with 200 and an <Error> body
  {}                        reset
Usage: s3model.py --port N --access-key A --secret-key S [--region us-east-1]
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
LOCK = threading.Lock()
STATE = {"buckets": {}, "uploads": {}, "control": {}}
ARGS = None


class S3Error(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def uri_encode(s, keep_slash):
    safe = "-_.~" + ("/" if keep_slash else "")
    return urllib.parse.quote(s, safe=safe)


def hmac256(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    k = hmac256(("AWS4" + secret).encode("utf-8"), date)
    k = hmac256(k, region)
    k = hmac256(k, service)
    return hmac256(k, "aws4_request")


def canonical_query(raw, drop=None):
    pairs = []
    for part in raw.split("&") if raw else []:
        if not part:
            continue
        k, _, v = part.partition("=")
        k = urllib.parse.unquote(k)
        v = urllib.parse.unquote(v)
        if k == drop:
            continue
        pairs.append((uri_encode(k, False), uri_encode(v, False)))
    pairs.sort()
    return "&".join(k + "=" + v for k, v in pairs)


def xml_doc(root, inner):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<%s xmlns="%s">%s</%s>' % (root, NS, inner, root)).encode()


def el(name, value):
    return "<%s>%s</%s>" % (name, escape(str(value)), name)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---- plumbing -------------------------------------------------------
    def send(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", (headers or {}).get("Content-Length", str(len(body))))
            self.end_headers()
            return
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, e):
        body = b"" if self.command == "HEAD" else (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>%s%s<RequestId>%s</RequestId></Error>'
            % (el("Code", e.code), el("Message", e.message), uuid.uuid4().hex)).encode()
        self.send(e.status, body, {"Content-Type": "application/xml"})

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def parse_target(self):
        raw_path, _, raw_query = self.path.partition("?")
        self.raw_path, self.raw_query = raw_path, raw_query
        self.query = {}
        for part in raw_query.split("&") if raw_query else []:
            k, _, v = part.partition("=")
            self.query[urllib.parse.unquote(k)] = urllib.parse.unquote(v)
        path = urllib.parse.unquote(raw_path)
        rest = path[1:]
        bucket, slash, key = rest.partition("/")
        self.bucket = bucket or None
        self.key = key if slash and key != "" else None

    # ---- SigV4 ------------------------------------------------------------
    def authenticate(self, body):
        q = self.query
        presigned = "X-Amz-Signature" in q
        if presigned:
            cred = q.get("X-Amz-Credential", "")
            signed_headers = q.get("X-Amz-SignedHeaders", "")
            given = q["X-Amz-Signature"]
            amz_date = q.get("X-Amz-Date", "")
            payload = "UNSIGNED-PAYLOAD"
            expires = int(q.get("X-Amz-Expires", "0"))
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
            if datetime.datetime.now(datetime.timezone.utc) > t + datetime.timedelta(seconds=expires):
                raise S3Error(403, "AccessDenied", "Request has expired")
        else:
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("AWS4-HMAC-SHA256 "):
                raise S3Error(403, "AccessDenied", "Anonymous access is not allowed")
            fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
            cred, signed_headers, given = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
            amz_date = self.headers.get("x-amz-date", "")
            payload = self.headers.get("x-amz-content-sha256", "")
            if not payload:
                raise S3Error(400, "InvalidRequest", "Missing required header x-amz-content-sha256")
        access, date, region, service, _ = cred.split("/")
        if access != ARGS.access_key:
            raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        hdrs = []
        for name in signed_headers.split(";"):
            values = self.headers.get_all(name) or []
            hdrs.append(name + ":" + ",".join(" ".join(v.split()) for v in values))
        creq = "\n".join([
            self.command,
            uri_encode(urllib.parse.unquote(self.raw_path), True),
            canonical_query(self.raw_query, drop="X-Amz-Signature" if presigned else None),
            "\n".join(hdrs) + "\n",
            signed_headers,
            payload,
        ])
        scope = "/".join([date, region, service, "aws4_request"])
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
        want = hmac.new(signing_key(ARGS.secret_key, date, region, service), sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, given):
            raise S3Error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you provided.")
        if payload not in ("UNSIGNED-PAYLOAD",) and not payload.startswith("STREAMING-"):
            if hashlib.sha256(body).hexdigest() != payload:
                raise S3Error(400, "XAmzContentSHA256Mismatch",
                              "The provided 'x-amz-content-sha256' header does not match what was computed.")

    # ---- dispatch ---------------------------------------------------------
    def handle_any(self):
        try:
            self.parse_target()
            body = self.read_body() if self.command in ("PUT", "POST") else b""
            if self.raw_path == "/__control":
                with LOCK:
                    STATE["control"] = json.loads(body or b"{}")
                return self.send(200, b"{}")
            self.authenticate(body)
            with LOCK:
                return self.route(body)
        except S3Error as e:
            return self.error(e)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    def get_bucket(self):
        b = STATE["buckets"].get(self.bucket)
        if b is None:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist")
        return b

    def route(self, body):
        m, q = self.command, self.query
        if self.bucket is None:
            if m == "GET":
                return self.list_buckets()
            raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        if self.key is None:
            if m == "PUT" and not q:
                return self.create_bucket()
            b = self.get_bucket()
            if m == "HEAD":
                return self.send(200)
            if m == "DELETE" and not q:
                if any(b["objects"].values()):
                    raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty")
                del STATE["buckets"][self.bucket]
                return self.send(204)
            if "versioning" in q:
                if m == "GET":
                    inner = el("Status", b["versioning"]) if b["versioning"] else ""
                    return self.send(200, xml_doc("VersioningConfiguration", inner))
                if m == "PUT":
                    status = ET.fromstring(body).find("{%s}Status" % NS)
                    if status is None or status.text not in ("Enabled", "Suspended"):
                        raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed")
                    b["versioning"] = status.text
                    return self.send(200)
            if "policy" in q:
                if m == "GET":
                    if b["policy"] is None:
                        raise S3Error(404, "NoSuchBucketPolicy", "The bucket policy does not exist")
                    return self.send(200, b["policy"], {"Content-Type": "application/json"})
                if m == "PUT":
                    try:
                        json.loads(body)
                    except ValueError:
                        raise S3Error(400, "MalformedPolicy", "Policies must be valid JSON")
                    b["policy"] = body
                    return self.send(204)
                if m == "DELETE":
                    b["policy"] = None
                    return self.send(204)
            if m == "GET" and "uploads" in q:
                return self.list_uploads()
            if m == "GET" and "versions" in q:
                return self.list_versions(b)
            if m == "GET":
                return self.list_objects(b)
            if m == "POST" and "delete" in q:
                return self.delete_many(b, body)
            raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        b = self.get_bucket()
        if m == "POST" and "uploads" in q:
            return self.initiate(body)
        if "uploadId" in q:
            up = STATE["uploads"].get(q["uploadId"])
            if up is None or up["bucket"] != self.bucket or up["key"] != self.key:
                raise S3Error(404, "NoSuchUpload", "The specified multipart upload does not exist.")
            if m == "PUT":
                return self.upload_part(up, body)
            if m == "POST":
                return self.complete(b, up, body)
            if m == "DELETE":
                del STATE["uploads"][q["uploadId"]]
                return self.send(204)
        if m == "PUT":
            if "x-amz-copy-source" in self.headers:
                return self.copy(b)
            return self.put(b, body)
        if m in ("GET", "HEAD"):
            return self.get(b)
        if m == "DELETE":
            return self.delete(b, self.key, q.get("versionId"))
        raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")

    # ---- buckets ----------------------------------------------------------
    def list_buckets(self):
        inner = "".join("<Bucket>%s%s</Bucket>" % (el("Name", n), el("CreationDate", b["created"]))
                        for n, b in sorted(STATE["buckets"].items()))
        return self.send(200, xml_doc("ListAllMyBucketsResult",
                                      "<Owner><ID>model</ID></Owner><Buckets>%s</Buckets>" % inner))

    def create_bucket(self):
        if self.bucket in STATE["buckets"]:
            raise S3Error(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded.")
        STATE["buckets"][self.bucket] = {"objects": {}, "versioning": None, "policy": None, "created": now_iso()}
        return self.send(200)

    # ---- objects ----------------------------------------------------------
    @staticmethod
    def current(b, key):
        versions = b["objects"].get(key) or []
        return versions[-1] if versions else None

    def new_version(self, b, key, obj):
        versions = b["objects"].setdefault(key, [])
        if b["versioning"] == "Enabled":
            obj["version_id"] = uuid.uuid4().hex
            versions.append(obj)
        else:
            obj["version_id"] = "null"
            versions[:] = [v for v in versions if v["version_id"] != "null"] + [obj]
        return obj

    def check_conditions(self, cur):
        inm, im = self.headers.get("If-None-Match"), self.headers.get("If-Match")
        live = cur is not None and not cur.get("delete_marker")
        if inm == "*" and live:
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        if im is not None and (not live or im.strip('"') != cur["etag"]):
            if not live:
                raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")

    def user_meta(self):
        return {k.lower()[len("x-amz-meta-"):]: v for k, v in self.headers.items()
                if k.lower().startswith("x-amz-meta-")}

    def put(self, b, body):
        self.check_conditions(self.current(b, self.key))
        obj = {"data": body, "etag": hashlib.md5(body).hexdigest(), "meta": self.user_meta(),
               "type": self.headers.get("Content-Type") or "binary/octet-stream", "modified": now_iso()}
        obj = self.new_version(b, self.key, obj)
        return self.send(200, b"", {"ETag": '"%s"' % obj["etag"], "x-amz-version-id": obj["version_id"]})

    def find(self, b, key, version_id):
        versions = b["objects"].get(key) or []
        if version_id:
            for v in versions:
                if v["version_id"] == version_id:
                    return v
            raise S3Error(404, "NoSuchVersion", "The specified version does not exist.")
        cur = versions[-1] if versions else None
        if cur is None or cur.get("delete_marker"):
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
        return cur

    def get(self, b):
        obj = self.find(b, self.key, self.query.get("versionId"))
        data, status = obj["data"], 200
        headers = {"ETag": '"%s"' % obj["etag"], "Content-Type": obj["type"],
                   "Last-Modified": obj["modified"], "x-amz-version-id": obj["version_id"],
                   "Accept-Ranges": "bytes"}
        for k, v in obj["meta"].items():
            headers["x-amz-meta-" + k] = v
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            first = int(first)
            last = int(last) if last else len(data) - 1
            if first >= len(data):
                raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
            last = min(last, len(data) - 1)
            headers["Content-Range"] = "bytes %d-%d/%d" % (first, last, len(data))
            data, status = data[first:last + 1], 206
        headers["Content-Length"] = str(len(data))
        return self.send(status, data, headers)

    def delete(self, b, key, version_id):
        versions = b["objects"].get(key)
        if version_id:
            if versions:
                versions[:] = [v for v in versions if v["version_id"] != version_id]
            return {"key": key, "version_id": version_id} if self.command != "DELETE" else \
                self.send(204, b"", {"x-amz-version-id": version_id})
        if b["versioning"] == "Enabled":
            marker = self.new_version(b, key, {"delete_marker": True, "modified": now_iso(), "etag": ""})
            res = {"key": key, "marker": marker["version_id"]}
            if self.command != "DELETE":
                return res
            return self.send(204, b"", {"x-amz-delete-marker": "true", "x-amz-version-id": marker["version_id"]})
        b["objects"].pop(key, None)
        return {"key": key} if self.command != "DELETE" else self.send(204)

    def delete_many(self, b, body):
        root = ET.fromstring(body)
        out = []
        for o in root.findall("{%s}Object" % NS):
            key = o.find("{%s}Key" % NS).text or ""
            vid = o.find("{%s}VersionId" % NS)
            r = self.delete(b, key, vid.text if vid is not None else None)
            inner = el("Key", key)
            if vid is not None:
                inner += el("VersionId", vid.text)
            if r.get("marker"):
                inner += el("DeleteMarker", "true") + el("DeleteMarkerVersionId", r["marker"])
            out.append("<Deleted>%s</Deleted>" % inner)
        return self.send(200, xml_doc("DeleteResult", "".join(out)))

    def copy(self, b):
        src = urllib.parse.unquote(self.headers["x-amz-copy-source"])
        src, _, vq = src.partition("?versionId=")
        sbucket, _, skey = src.lstrip("/").partition("/")
        sb = STATE["buckets"].get(sbucket)
        if sb is None:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist")
        sobj = self.find(sb, skey, vq or None)
        self.check_conditions(self.current(b, self.key))
        replace = self.headers.get("x-amz-metadata-directive", "COPY") == "REPLACE"
        obj = {"data": sobj["data"], "etag": sobj["etag"], "modified": now_iso(),
               "meta": self.user_meta() if replace else dict(sobj["meta"]),
               "type": (self.headers.get("Content-Type") or sobj["type"]) if replace else sobj["type"]}
        obj = self.new_version(b, self.key, obj)
        return self.send(200, xml_doc("CopyObjectResult", el("LastModified", obj["modified"]) +
                                      el("ETag", '"%s"' % obj["etag"])))

    # ---- listings ---------------------------------------------------------
    def list_objects(self, b):
        q = self.query
        prefix, delim = q.get("prefix", ""), q.get("delimiter", "")
        max_keys = int(q.get("max-keys", "1000"))
        start = q.get("continuation-token") or q.get("start-after") or ""
        keys = sorted(k for k, v in b["objects"].items() if v and not v[-1].get("delete_marker")
                      and k.startswith(prefix) and k > start
                      and not (delim and start.endswith(delim) and k.startswith(start)))
        contents, prefixes, count, last, truncated = [], [], 0, None, False
        for k in keys:
            if delim:
                i = k.find(delim, len(prefix))
                if i >= 0:
                    p = k[:i + len(delim)]
                    if p in prefixes:
                        continue
                    if count == max_keys:
                        truncated = True
                        break
                    prefixes.append(p)
                    count += 1
                    last = p  # a token ending in the delimiter skips that prefix
                    continue
            if count == max_keys:
                truncated = True
                break
            o = b["objects"][k][-1]
            contents.append("<Contents>%s%s%s%s<StorageClass>STANDARD</StorageClass></Contents>" % (
                el("Key", k), el("LastModified", o["modified"]), el("ETag", '"%s"' % o["etag"]),
                el("Size", len(o["data"]))))
            count += 1
            last = k
        inner = el("Name", self.bucket) + el("Prefix", prefix) + el("KeyCount", count) + \
            el("MaxKeys", max_keys) + el("IsTruncated", "true" if truncated else "false")
        if truncated:
            inner += el("NextContinuationToken", last)
        inner += "".join(contents) + "".join("<CommonPrefixes>%s</CommonPrefixes>" % el("Prefix", p)
                                             for p in prefixes)
        return self.send(200, xml_doc("ListBucketResult", inner))

    def list_versions(self, b):
        q = self.query
        prefix = q.get("prefix", "")
        max_keys = int(q.get("max-keys", "1000"))
        entries = []
        for k in sorted(b["objects"]):
            if k.startswith(prefix):
                vs = b["objects"][k]
                for i, v in enumerate(reversed(vs)):
                    entries.append((k, v, i == 0))
        km, vm = q.get("key-marker"), q.get("version-id-marker")
        if km:
            idx = 0
            for i, (k, v, _) in enumerate(entries):
                if (k, v["version_id"]) == (km, vm) or (not vm and k > km):
                    idx = i + (1 if vm else 0)
                    break
            else:
                idx = len(entries)
            entries = entries[idx:]
        page, truncated = entries[:max_keys], len(entries) > max_keys
        out = []
        for k, v, latest in page:
            common = el("Key", k) + el("VersionId", v["version_id"]) + \
                el("IsLatest", "true" if latest else "false") + el("LastModified", v["modified"])
            if v.get("delete_marker"):
                out.append("<DeleteMarker>%s</DeleteMarker>" % common)
            else:
                out.append("<Version>%s%s%s</Version>" % (common, el("ETag", '"%s"' % v["etag"]),
                                                          el("Size", len(v["data"]))))
        inner = el("Name", self.bucket) + el("Prefix", prefix) + \
            el("IsTruncated", "true" if truncated else "false")
        if truncated:
            inner += el("NextKeyMarker", page[-1][0]) + el("NextVersionIdMarker", page[-1][1]["version_id"])
        return self.send(200, xml_doc("ListVersionsResult", inner + "".join(out)))

    # ---- multipart --------------------------------------------------------
    def list_uploads(self):
        out = "".join("<Upload>%s%s%s</Upload>" % (el("Key", u["key"]), el("UploadId", uid),
                                                   el("Initiated", u["initiated"]))
                      for uid, u in sorted(STATE["uploads"].items()) if u["bucket"] == self.bucket)
        return self.send(200, xml_doc("ListMultipartUploadsResult", el("Bucket", self.bucket) +
                                      el("IsTruncated", "false") + out))

    def initiate(self, body):
        uid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        STATE["uploads"][uid] = {"bucket": self.bucket, "key": self.key, "parts": {}, "meta": self.user_meta(),
                                 "type": self.headers.get("Content-Type") or "binary/octet-stream",
                                 "initiated": now_iso()}
        return self.send(200, xml_doc("InitiateMultipartUploadResult", el("Bucket", self.bucket) +
                                      el("Key", self.key) + el("UploadId", uid)))

    def upload_part(self, up, body):
        n = int(self.query.get("partNumber", "0"))
        if not 1 <= n <= 10000:
            raise S3Error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000")
        if STATE["control"].get("fail_part") == n:
            raise S3Error(500, "InternalError", "We encountered an internal error. Please try again.")
        if "x-amz-copy-source" in self.headers:
            src = urllib.parse.unquote(self.headers["x-amz-copy-source"]).lstrip("/")
            sbucket, _, skey = src.partition("/")
            sobj = self.find(STATE["buckets"].get(sbucket) or {"objects": {}}, skey, None)
            first, _, last = self.headers["x-amz-copy-source-range"][6:].partition("-")
            body = sobj["data"][int(first):int(last) + 1]
            etag = hashlib.md5(body).hexdigest()
            up["parts"][n] = (etag, body)
            return self.send(200, xml_doc("CopyPartResult", el("ETag", '"%s"' % etag) +
                                          el("LastModified", now_iso())))
        etag = hashlib.md5(body).hexdigest()
        up["parts"][n] = (etag, body)
        return self.send(200, b"", {"ETag": '"%s"' % etag})

    def complete(self, b, up, body):
        if STATE["control"].get("complete_error"):
            # S3 may answer 200 and put the error in the body
            return self.send(200, ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>%s%s</Error>' % (
                el("Code", "InternalError"), el("Message", "We encountered an internal error. Please try again.")
            )).encode(), {"Content-Type": "application/xml"})
        root = ET.fromstring(body)
        parts = []
        for p in root.findall("{%s}Part" % NS):
            n = int(p.find("{%s}PartNumber" % NS).text)
            etag = p.find("{%s}ETag" % NS).text.strip('"')
            if n not in up["parts"] or up["parts"][n][0] != etag:
                raise S3Error(400, "InvalidPart", "One or more of the specified parts could not be found.")
            parts.append(n)
        if parts != sorted(parts):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        for n in parts[:-1]:
            if len(up["parts"][n][1]) < 5 * 1024 * 1024:
                raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size")
        self.check_conditions(self.current(b, self.key))
        data = b"".join(up["parts"][n][1] for n in parts)
        md5s = b"".join(bytes.fromhex(up["parts"][n][0]) for n in parts)
        etag = "%s-%d" % (hashlib.md5(md5s).hexdigest(), len(parts))
        obj = self.new_version(b, self.key, {"data": data, "etag": etag, "meta": up["meta"], "type": up["type"],
                                             "modified": now_iso()})
        del STATE["uploads"][self.query["uploadId"]]
        return self.send(200, xml_doc("CompleteMultipartUploadResult", el("Bucket", self.bucket) +
                                      el("Key", self.key) + el("ETag", '"%s"' % etag)),
                         {"x-amz-version-id": obj["version_id"]})


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ARGS = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
