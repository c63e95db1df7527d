// An MCP server built with the official MCP TypeScript SDK (@modelcontextprotocol/sdk:
// McpServer and the stateful StreamableHTTPServerTransport), for
// e2e/interop/mcp_test.go. It knows nothing of OAuth: tokengate stands in front of it,
// keeps the token to itself (forward.removeAuthorization) and passes the token's claims
// as X-Auth-* headers.
//
//   node mcp-server.mjs --port PORT
//
// It listens on 127.0.0.1 and serves two MCP endpoints, the same server code mounted
// twice:
//   /mcp        tool `echo`  {text, steps}: sends `steps` progress notifications 200 ms
//               apart (when the call asked for progress), then answers "echo: <text>";
//               over Streamable HTTP those travel as Server-Sent Events on the POST's
//               response, so a proxy that buffered them would deliver them all at once
//   /admin/mcp  tool `purge` {}: answers "purged"
//
// It prints `READY http://127.0.0.1:PORT` once it listens, and one line per HTTP request,
// when the response headers are written:
//   REQ {"method", "path", "session" (the Mcp-Session-Id it got), "response_session"
//        (the one it answered with), "status", "content_type", "rpc" (the JSON-RPC
//        methods of a POST), "scope", "aud", "client_id" (the X-Auth-Scopes,
//        X-Auth-Audience and X-Auth-Client-Id headers tokengate set), "authorization"
//        (the scheme of an Authorization header, if one reached it), "at" (ms since
//        start)}
// and `EVENT {"path", "session", "progress", "at"}` when it sends a progress notification.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

import { serve } from './serve.mjs';

const { values: args } = parseArgs({ options: { port: { type: 'string' } } });
if (!args.port) {
  console.error('usage: node mcp-server.mjs --port PORT');
  process.exit(2);
}
const host = '127.0.0.1';
const port = Number(args.port);
const started = performance.now();
const at = () => Math.round((performance.now() - started) * 10) / 10;

// newServer is one MCP server for one session of an endpoint.
function newServer(path) {
  const server = new McpServer({ name: `tokengate-interop${path}`, version: '1.0.0' });
  if (path === '/mcp') {
    server.registerTool('echo', {
      description: 'Echo the text, after steps progress notifications 200 ms apart',
      inputSchema: { text: z.string(), steps: z.number().int().min(0).max(10).default(0) },
    }, async ({ text, steps }, extra) => {
      for (let i = 1; i <= steps; i++) {
        if (extra._meta?.progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken: extra._meta.progressToken, progress: i, total: steps },
          });
          console.log(`EVENT ${JSON.stringify({ path, session: extra.sessionId, progress: i, at: at() })}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      return { content: [{ type: 'text', text: `echo: ${text}` }] };
    });
  } else {
    server.registerTool('purge', { description: 'Purge the caches (an admin tool)' },
      async () => ({ content: [{ type: 'text', text: 'purged' }] }));
  }
  return server;
}

// sessions[path] maps an Mcp-Session-Id to its transport.
const sessions = { '/mcp': new Map(), '/admin/mcp': new Map() };

async function readJSON(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 1 << 20) {
      throw new Error('body too large');
    }
    chunks.push(c);
  }
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined;
}

function jsonError(res, status, message) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

const httpServer = createServer(async (req, res) => {
  const path = new URL(req.url, `http://${host}`).pathname;
  const h = req.headers;
  const line = {
    method: req.method, path, session: h['mcp-session-id'] ?? '', rpc: [],
    scope: h['x-auth-scopes'] ?? '', aud: h['x-auth-audience'] ?? '', client_id: h['x-auth-client-id'] ?? '',
    authorization: (h.authorization ?? '').split(' ')[0],
  };
  // Log once the status and headers are known, as they leave.
  const writeHead = res.writeHead;
  res.writeHead = function logged(status, ...rest) {
    const r = writeHead.call(this, status, ...rest);
    // The headers were set before, or given here (as an object or a flat array).
    const given = rest.find((a) => typeof a === 'object' && a !== null) ?? {};
    const pairs = Array.isArray(given) ? given.flatMap((v, i) => (i % 2 ? [] : [[v, given[i + 1]]])) : Object.entries(given);
    const header = (name) => String(pairs.find(([k]) => k.toLowerCase() === name)?.[1] ?? this.getHeader(name) ?? '');
    line.status = status;
    line.response_session = header('mcp-session-id');
    line.content_type = header('content-type');
    line.at = at();
    console.log(`REQ ${JSON.stringify(line)}`);
    return r;
  };
  try {
    const endpoint = sessions[path];
    if (!endpoint) {
      return jsonError(res, 404, 'no MCP endpoint here');
    }
    const body = req.method === 'POST' ? await readJSON(req) : undefined;
    line.rpc = [body ?? []].flat().map((m) => m.method ?? (m.result ? 'result' : 'error'));
    let transport = endpoint.get(line.session);
    if (!transport) {
      if (line.session !== '' || req.method !== 'POST' || !isInitializeRequest(body)) {
        return jsonError(res, line.session ? 404 : 400, line.session ? 'unknown session' : 'no session: initialize first');
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => endpoint.set(id, transport),
      });
      transport.onclose = () => endpoint.delete(transport.sessionId);
      await newServer(path).connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (err) {
    console.error(`error: ${err.stack}`);
    if (!res.headersSent) {
      jsonError(res, 500, 'internal error');
    }
  }
});

serve(`READY http://${host}:${port}`, host, [httpServer, port]);
