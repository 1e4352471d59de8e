#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into corpus/<target>/seed-*.

The committed corpus is these seeds plus what fuzzing found (minimised with cargo fuzz
cmin); rerun this after changing an input format. HPACK seeds come from the
interoperability vectors in ../shared/testdata when that directory is present.
"""
import base64
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "testdata", "hpack-test-case")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def hpack():
    for story in ["nghttp2/story_00.json", "go-hpack/story_10.json", "python-hpack/story_20.json"]:
        path = os.path.join(SHARED, story)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            cases = json.load(f)["cases"]
        out = bytearray([0, 0x10, 0])
        for c in cases[:8]:
            wire = bytes.fromhex(c["wire"])
            out += struct.pack(">H", len(wire)) + wire
        put("hpack", story.replace("/", "-"), bytes(out))
    # A size update, an insertion, then references to it; and the same joined mid-life.
    block = bytes([0x3f, 0xe1, 0x1f, 0x40, 0x03]) + b"foo" + bytes([0x03]) + b"bar" + bytes([0xbe])
    put("hpack", "insert", bytes([0, 0x10, 0]) + struct.pack(">H", len(block)) + block)
    put("hpack", "attached", bytes([3, 0x01, 0]) + struct.pack(">H", 0x8000 | len(block)) + block)


def huffman():
    # "www.example.com" and "no-cache" from RFC 7541 C.4.
    put("huffman", "www", bytes.fromhex("f1e3c2e5f23a6ba0ab90f4ff"))
    put("huffman", "no-cache", bytes.fromhex("a8eb10649cbf"))


def credentials():
    def b64(s):
        return base64.urlsafe_b64encode(s.encode()).rstrip(b"=").decode()

    claims = '{"iss":"https://auth.test","sub":"svc-a","aud":["orders","x"],"scope":"a b c","exp":1900000000}'
    jwt = b64('{"alg":"RS256","typ":"JWT"}') + "." + b64(claims) + ".c2ln"
    put("credentials", "jwt", "authorization:Bearer " + jwt)
    put("credentials", "basic", "authorization:Basic " + base64.b64encode(b"alice:pw").decode())
    put("credentials", "apikey", "host:x\nx-api-key:abc123")
    put("credentials", "scheme", "authorization:AWS4-HMAC-SHA256 Credential=AKIA/x")


def kernel_event():
    payload = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    local = bytes([127, 0, 0, 1]) + bytes(12)
    # ts, sock, conn_id, offset, pid, tid, fd, len, orig_len, kind, dir, role, flags,
    # family, lport, rport, pad, laddr, raddr, comm.
    hdr = struct.pack("<QQQQIIiIIBBBBHHHH16s16s16s", 1, 0xffff8880, 7, 0, 42, 42, 5,
                      len(payload), len(payload), 1, 2, 2, 0, 2, 8080, 40000, 0,
                      local, local, b"python3\x00")
    assert len(hdr) == 112
    put("kernel_event", "data", hdr + payload)
    v6 = struct.pack("<QQQQIIiIIBBBBHHHH16s16s16s", 1, 1, 1, 9, 1, 1, 3, 0, 4096, 2, 1,
                     1, 0, 10, 443, 5000, 0, bytes(15) + b"\x01", bytes(16), b"\x1b[31mred")
    put("kernel_event", "gap-v6", v6)


def proc_files():
    put("proc_files", "maps",
        "7f00-7f10 r-xp 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
        "7f20-7f30 r--p 00000000 08:01 99 /app/node (deleted)\n")
    put("proc_files", "cgroup-v2",
        "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-"
        + "ab" * 32 + ".scope\n")
    put("proc_files", "syscall", "45 0x5 0x7f00deadbeef 0x2000 0x0 0x0 0x0 0x7ffd 0x7f01\n")
    put("proc_files", "cgroup-v1", "12:memory:/docker/" + "0123456789abcdef" * 4 + "\n1:name=systemd:/\n")


def btf():
    """A minimal BTF blob holding exactly the structs the socket walk needs."""
    strings = bytearray(b"\0")
    names = {}

    def s(name):
        if name not in names:
            names[name] = len(strings)
            strings.extend(name.encode() + b"\0")
        return names[name]

    types = []

    def add(rec):
        types.append(rec)
        return len(types)

    def int_t(name, size):
        return add(struct.pack("<III", s(name), 1 << 24, size) + struct.pack("<I", size * 8))

    u8, u16, u32 = int_t("u8", 1), int_t("u16", 2), int_t("u32", 4)
    ptr = add(struct.pack("<III", 0, 2 << 24, 0))
    arr16 = add(struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", u8, u32, 16))

    def strukt(name, members):
        body, off = b"", 0
        for m, ty, size in members:
            body += struct.pack("<III", s(m), ty, off * 8)
            off += size
        return add(struct.pack("<III", s(name), (4 << 24) | len(members), off) + body)

    common = strukt("sock_common", [("skc_family", u16, 2), ("skc_num", u16, 2),
                                    ("skc_dport", u16, 2), ("skc_rcv_saddr", u32, 4),
                                    ("skc_daddr", u32, 4), ("skc_v6_rcv_saddr", arr16, 16),
                                    ("skc_v6_daddr", arr16, 16)])
    strukt("sock", [("__sk_common", common, 46), ("sk_type", u16, 2), ("sk_protocol", u16, 2)])
    strukt("task_struct", [("pad", u32, 4), ("files", ptr, 8)])
    strukt("files_struct", [("fdt", ptr, 8)])
    strukt("fdtable", [("max_fds", u32, 4), ("fd", ptr, 8)])
    strukt("file", [("f_inode", ptr, 8), ("private_data", ptr, 8)])
    strukt("inode", [("i_mode", u16, 2)])
    strukt("socket", [("sk", ptr, 8)])
    blob = b"".join(types)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(blob), len(blob), len(strings))
    # The target reads the struct and member names to look up from its first 16 bytes.
    put("btf", "socket-walk", b"sock sk_type    "[:16] + hdr + blob + bytes(strings))


def go_pclntab():
    """A minimal x86-64 ELF with a Go 1.18+ function table and no symbol table."""
    text_addr = 0x401000
    write = bytes.fromhex("554889e5b8c3000000" "5dc3")  # push; mov; mov eax,0xc3; pop; ret
    read = bytes.fromhex("4885c07401c3" "31c0c3")  # test; je; ret; xor; ret
    code = write + read
    names = b"crypto/tls.(*Conn).Write\0crypto/tls.(*Conn).Read\0"
    functab_off = 72
    functab = struct.pack("<IIIIII", 0, 24, len(write), 32, len(code), 0)
    funcs = struct.pack("<II", 0, 0) + struct.pack("<II", len(write), len(b"crypto/tls.(*Conn).Write\0"))
    funcname_off = functab_off + len(functab) + len(funcs)
    tab = struct.pack("<IBBBBQQQQQQQQ", 0xFFFFFFF1, 0, 0, 1, 8, 2, 0, text_addr,
                      funcname_off, 0, 0, 0, functab_off)
    assert len(tab) == 72
    tab += functab + funcs + names
    shstr = b"\0.text\0.gopclntab\0.shstrtab\0"
    text_off = 0x100
    tab_off = text_off + len(code)
    str_off = tab_off + len(tab)
    sh_off = (str_off + len(shstr) + 7) & ~7
    body = bytearray(sh_off + 64 * 4)
    ehdr = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, text_addr, 0, sh_off, 0, 64, 56, 0, 64, 4, 3)
    body[:64] = ehdr
    body[text_off:text_off + len(code)] = code
    body[tab_off:tab_off + len(tab)] = tab
    body[str_off:str_off + len(shstr)] = shstr

    def sh(i, name, typ, flags, addr, off, size):
        body[sh_off + 64 * i:sh_off + 64 * (i + 1)] = struct.pack(
            "<IIQQQQIIQQ", name, typ, flags, addr, off, size, 0, 0, 1, 0)

    sh(1, 1, 1, 6, text_addr, text_off, len(code))
    sh(2, 7, 1, 2, 0x500000, tab_off, len(tab))
    sh(3, 18, 3, 0, 0, str_off, len(shstr))
    put("go_pclntab", "stripped-go", bytes(body))


def route_inventory():
    put("route_inventory", "ids",
        "/users/{id} /v1/files/{path}.json\n"
        + "".join(f"GET /users/{i}/orders/{i * 7}?page=2\n" for i in range(12))
        + "PROPFIND /dav/a\nM9E3779B1 /x\nGET /tiles/1-2-3.png\nR200 /\nR40 /a\n")


SPEC = """openapi: 3.0.3
info: {title: t, version: "1"}
servers: [{url: "http://localhost/api"}]
paths:
  /tiles/{z}-{x}-{y}.png:
    get: {responses: {"200": {description: ok}}}
  /users/{id}:
    get: {operationId: getUser, responses: {"200": {description: ok}}}
  /files/{path}.json:
    post: {responses: {"200": {description: ok}}}
"""


def spec():
    put("spec", "templates", SPEC + "\0/api/tiles/1-2-3.png\n/api/users/7\n/api/tiles/" + "-" * 40 + ".png\n")
    put("spec", "swagger", '{"swagger":"2.0","basePath":"/v2","paths":{"/pet/{petId}":{"get":{}}}}\0/v2/pet/1\n')


def policy():
    full = os.path.join(HERE, "..", "src", "policy", "testdata", "full.yaml")
    with open(full) as f:
        doc = f.read()
    put("policy", "full", doc + "\0frontend orders GET /api/v1/orders/7\nx payments POST /api/v1/charges\n")


def config():
    put("config", "basic", "listen: 127.0.0.1:9464\nparser_memory_mb: 256\n"
        "services: [\"web=exe:/usr/sbin/nginx\"]\nroute_patterns: [\"/users/{id}\"]\n"
        "specs: {users: /srv/users.yaml}\n")
    put("config", "bad-value", "ring_buffer_mb: 3\n")


def sessions():
    """The three traffic-facing targets (HTTP/1, HTTP/2 sessions, kernel copy plans) and
    redaction, each fed a well-formed exchange to mutate from."""
    def ops(*parts):
        out = bytearray()
        for op, data in parts:
            out += bytes([op, len(data)]) + data
        return bytes(out)

    put("http1_session", "exchange", ops(
        (0, b"GET /users/7?token=x HTTP/1.1\r\nHost: a\r\n\r\n"),
        (1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        (0, b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
        (1, b"HTTP/1.1 204 No Content\r\n\r\n"), (6, b"")))

    def frame(typ, flags, stream, payload):
        return struct.pack(">I", len(payload))[1:] + bytes([typ, flags]) + struct.pack(">I", stream) + payload

    settings = frame(4, 0, 0, b"")
    req = frame(1, 5, 1, bytes([0x82, 0x86, 0x84, 0x41, 0x0F]) + b"www.example.com")
    resp = frame(1, 5, 1, bytes([0x88]))
    put("http2_session", "exchange", bytes([0]) + ops(
        (0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + req), (1, settings + resp)))
    head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    put("kernel_copy_plan", "head", struct.pack("<Q", 5000)[:6] + struct.pack("<I", 65536) + bytes([0, 0, 1]) + head)
    # A write of many streams, each a header block and a body; the same after the preface.
    batch = b"".join(frame(1, 4, 1 + 2 * i, b"h" * 40) + frame(0, 1, 1 + 2 * i, b"d" * 700)
                     for i in range(12))
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings
    for name, data, walk_from in (("h2-batch", batch, 0), ("h2-preface-batch", preface + batch, 24)):
        # Segment length, head budget (l0 = 16: 256 bytes copied already), walk start, end.
        sizes = struct.pack("<Q", len(data))[:6] + bytes([0x10, 0, 0, 0]) + struct.pack("<H", walk_from) + b"\0"
        put("kernel_copy_plan", name, sizes + data)
    put("redaction", "targets", "/reset/Zx81kQp0aLr7uTq2Wb9cYv4N/confirm?user%5Bpassword%5D=hunter2&SECRETWORD&page=2")


def probe_sites():
    # Debian's OpenSSL 3 SSL_read_ex (a thin wrapper), Go's prologue with its stack check and
    # morestack loop, and a push-first internal function.
    put("probe_sites", "ssl-read-ex", bytes([
        0x48, 0x83, 0xec, 0x08, 0xe8, 0x10, 0, 0, 0, 0x31, 0xd2, 0x85, 0xc0, 0x0f, 0x48,
        0xc2, 0x48, 0x83, 0xc4, 0x08, 0xc3]))
    put("probe_sites", "go-prologue", bytes([
        0x49, 0x3b, 0x66, 0x10, 0x76, 0x06, 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3,
        0xe8, 0, 0, 0, 0, 0xeb, 0xed]))
    put("probe_sites", "push-first", bytes([0x41, 0x55, 0x41, 0x54, 0x55, 0x53, 0x48, 0x83, 0xec, 0x38, 0xc3]))


def main():
    for f in [hpack, huffman, credentials, kernel_event, proc_files, btf, go_pclntab,
              route_inventory, spec, policy, config, sessions, probe_sites]:
        f()
    print("seeds written to", CORPUS, file=sys.stderr)


if __name__ == "__main__":
    main()
