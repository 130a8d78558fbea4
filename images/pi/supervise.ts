// bot-bottle's supervise tools for pi, which speaks no MCP: a pi extension
// (put in ~/.pi/agent/extensions/ at launch) that lists the tools of the
// bottle's supervise MCP server and registers each as a pi tool named as
// Claude Code names them (mcp__supervise__ask-operator, ...). A call is one
// JSON-RPC request to the server; the answer streams back as server-sent
// events, with keep-alive comments while the operator decides.
import { Type } from "typebox";

// The bottle sets it; without it there is no server to bridge.
const url = process.env.MCP_SUPERVISE_URL || "";
let next = 0;

async function rpc(method: string, params: object, signal?: AbortSignal): Promise<any> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++next, method, params }),
    signal,
  });
  const text = await res.text();
  const body = (res.headers.get("content-type") || "").includes("text/event-stream")
    ? text.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).pop() || ""
    : text;
  const msg = JSON.parse(body);
  if (msg.error) throw new Error(`supervise: ${msg.error.message}`);
  return msg.result;
}

export default async function (pi: any) {
  let tools: any[];
  try {
    if (!url) throw new Error("MCP_SUPERVISE_URL is not set");
    await rpc("initialize", {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "pi", version: "bot-bottle" },
    });
    tools = (await rpc("tools/list", {})).tools;
  } catch (e) {
    console.error(`bot-bottle: the supervise tools are unavailable (${e})`);
    return;
  }
  for (const tool of tools) {
    pi.registerTool({
      name: `mcp__supervise__${tool.name}`,
      label: `supervise: ${tool.name}`,
      description: tool.description,
      promptSnippet: tool.description,
      parameters: Type.Unsafe(tool.inputSchema),
      async execute(_id: string, params: object, signal?: AbortSignal) {
        const result = await rpc("tools/call", { name: tool.name, arguments: params }, signal);
        const text = (result.content || []).map((c: any) => c.text || "").join("\n");
        if (result.isError) throw new Error(text);
        return { content: [{ type: "text", text }], details: {} };
      },
    });
  }
}
