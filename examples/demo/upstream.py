"""The demo's stand-in for a real API (api.demo.test), run in a container
that only the bottle's sidecar can reach. It never echoes a credential: it
says whether the one it got is the one the operator holds.

GET  /whoami  -> "authorized: yes" when Authorization is "Bearer $DEMO_EXPECT_TOKEN"
POST /upload  -> "stored N bytes" (and logs that it arrived)
"""

import http.server
import os
import ssl
import sys

EXPECTED = "Bearer " + os.environ["DEMO_EXPECT_TOKEN"]


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, text):
        body = (text + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        ok = self.headers.get("authorization") == EXPECTED
        self.reply("authorized: " + ("yes" if ok else "no"))

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        self.rfile.read(n)
        self.reply(f"stored {n} bytes")

    def log_message(self, fmt, *args):
        sys.stdout.write("demo-api: " + (fmt % args) + "\n")
        sys.stdout.flush()


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/demo/api.pem", "/demo/api.key")
server = http.server.ThreadingHTTPServer(("0.0.0.0", 443), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
