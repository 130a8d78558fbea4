"""A scripted stand-in for the Anthropic Messages API (api.anthropic.com on
the demo world, scripts/world.sh) and the OpenAI Responses API
(api.openai.com), so the real Claude Code and Codex CLIs can run in a
bottle without a model. Every request is recorded to
/records/model.jsonl (headers and body). POST /v1/messages answers, in
order, with the steps in /demo/model-script.json — each either
{"tool": NAME, "input": {...}} (a tool_use the CLI runs) or {"text": "..."}
(a final answer) — streamed as server-sent events (chunked) when asked
to stream.
The step is chosen from the conversation (one step per tool result already
in it), so side requests do not disturb the script. POST /v1/responses
plays /demo/openai-script.json the same way for Codex — {"exec": "shell
command"} runs it through Codex's code-mode `exec` tool, {"js": "..."} runs
that JavaScript there (e.g. an MCP tool), {"text": "..."} answers — one step
per tool output already in the input. Anything else (token counting,
metadata) is answered with a small JSON body.
"""

import http.server
import json
import os
import ssl
import sys
import threading

DEMO = os.environ.get("WORLD_DEMO_DIR", "/demo")
RECORDS = os.environ.get("WORLD_RECORDS_DIR", "/records")
LOCK = threading.Lock()


def record(entry):
    with LOCK, open(RECORDS + "/model.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def script():
    with open(DEMO + "/model-script.json") as f:
        return json.load(f)


def next_step(body):
    """The step for this request, from the conversation itself: as many
    steps done as there are tool results in it. A request without tools (a
    side query: a title, a summary) gets a plain answer."""
    if not body.get("tools"):
        return {"text": "ok"}
    done = sum(
        1
        for m in body.get("messages", [])
        if isinstance(m.get("content"), list)
        for c in m["content"]
        if isinstance(c, dict) and c.get("type") == "tool_result"
    )
    steps = script()
    return steps[done] if done < len(steps) else {"text": "done"}


def openai_step(body):
    done = sum(1 for i in body.get("input", []) if isinstance(i, dict) and i.get("type", "").endswith("_output"))
    with open(DEMO + "/openai-script.json") as f:
        steps = json.load(f)
    return steps[done] if done < len(steps) else {"text": "done"}


def openai_events(step):
    rid = "resp_" + os.urandom(6).hex()
    yield {"type": "response.created", "response": {"id": rid}}
    if "exec" in step or "js" in step:
        js = step.get("js") or (
            "const r = await tools.exec_command({cmd: %s}); text(JSON.stringify(r));" % json.dumps(step["exec"])
        )
        item = {"type": "custom_tool_call", "id": "ctc_" + os.urandom(6).hex(), "call_id": "call_" + os.urandom(6).hex(),
                "name": "exec", "namespace": "functions", "input": js}
    else:
        item = {"type": "message", "id": "msg_" + os.urandom(6).hex(), "role": "assistant",
                "content": [{"type": "output_text", "text": step["text"]}]}
    yield {"type": "response.output_item.done", "output_index": 0, "item": item}
    usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
             "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    yield {"type": "response.completed", "response": {"id": rid, "usage": usage}}


def events(step, model):
    msg = {
        "id": "msg_standin",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    yield "message_start", {"type": "message_start", "message": msg}
    if "tool" in step:
        block = {"type": "tool_use", "id": "toolu_%s" % os.urandom(6).hex(), "name": step["tool"], "input": {}}
        yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(step["input"])}
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": ""}
        yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
        delta = {"type": "text_delta", "text": step["text"]}
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        stop = "end_turn"
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": 5},
    }
    yield "message_stop", {"type": "message_stop"}


def whole(step, model):
    if "tool" in step:
        content = [{"type": "tool_use", "id": "toolu_%s" % os.urandom(6).hex(), "name": step["tool"], "input": step["input"]}]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": step["text"]}]
        stop = "end_turn"
    return {
        "id": "msg_standin",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_json(self, obj, code=200):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_events(self, named):
        """Server-sent events, one chunk each, as the real APIs stream them
        (chunked: the body's end is explicit, whatever the TLS close)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for name, data in named:
            chunk = ("event: %s\ndata: %s\n\n" % (name, json.dumps(data))).encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def handle_any(self):
        n = int(self.headers.get("content-length", "0") or "0")
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        record({"method": self.command, "path": self.path, "headers": [[k, v] for k, v in self.headers.items()], "body": body})
        path = self.path.split("?")[0]
        if self.command == "POST" and path == "/v1/messages":
            step = next_step(body)
            model = body.get("model", "claude-standin")
            if body.get("stream"):
                self.send_events(events(step, model))
            else:
                self.send_json(whole(step, model))
        elif self.command == "POST" and path == "/v1/responses":
            self.send_events((e["type"], e) for e in openai_events(openai_step(body)))
        elif path == "/v1/messages/count_tokens":
            self.send_json({"input_tokens": 10})
        else:
            self.send_json({})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    def log_message(self, fmt, *args):
        sys.stdout.write("demo-model: " + (fmt % args) + "\n")
        sys.stdout.flush()


open(RECORDS + "/model.jsonl", "a").close()
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("WORLD_PORT", "443"))), Handler)
if os.environ.get("WORLD_PLAIN") != "1":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(DEMO + "/upstream.pem", DEMO + "/upstream.key")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
