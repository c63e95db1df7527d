// An MCP client built with the official MCP TypeScript SDK (@modelcontextprotocol/sdk:
// Client, StreamableHTTPClientTransport, and its own OAuth support for machine-to-machine
// clients, ClientCredentialsProvider), for e2e/interop/mcp_test.go:
//
//   node mcp-client.mjs --server SIDECAR/mcp --admin SIDECAR/admin/mcp \
//     --issuer ISSUER --other-resource URL
//
// It is given the MCP server's URL and its client credentials (mcp-client, registered
// with ISSUER, the authorization server the SDK may present them to) and nothing else:
// the SDK finds the rest (the 401, the resource metadata the challenge names, the
// authorization server it names, that server's metadata, a token for the resource).
//
// It speaks in lines of JSON on stdout, one per phase, and after each it waits for a line
// on stdin before going on, so that the test can read tokengate's metrics between two
// phases:
//   {"phase": "connect", …}  the discovery, the token, tools/list and a call of echo
//                            with progress notifications (their arrival times)
//   {"phase": "step-up", …}  the admin endpoint with the mcp:tools token: what the SDK's
//                            transport did with the 403 ("sdk"); if it did not get
//                            through, the step-up with the SDK's auth(), given the
//                            challenge's scope and metadata: first with the provider as
//                            it is ("auth_as_is"), then with a provider whose scope adds
//                            the challenged one ("auth_stepped"); then purge
//   {"phase": "other-resource", …}  a token the provider issued (through the SDK's
//                            fetchToken) for another resource, sent to the MCP server
//   {"phase": "close", …}    the sessions ended with DELETE
// Every phase lists the HTTP exchanges the SDK made through its fetch ("http"): method,
// URL, status, the challenge, the session headers both ways, the bearer token's aud and
// scope (decoded), and for a token request its form (never the credentials).
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import {
  auth, discoverAuthorizationServerMetadata, discoverOAuthProtectedResourceMetadata, extractWWWAuthenticateParams, fetchToken,
} from '@modelcontextprotocol/sdk/client/auth.js';

const { values: args } = parseArgs({
  options: {
    server: { type: 'string' },
    admin: { type: 'string' },
    issuer: { type: 'string' },
    'other-resource': { type: 'string' },
  },
});
for (const name of ['server', 'admin', 'issuer', 'other-resource']) {
  if (!args[name]) {
    console.error(`mcp-client.mjs: --${name} is required`);
    process.exit(2);
  }
}
const credentials = { clientId: 'mcp-client', clientSecret: 'mcp-secret', expectedIssuer: args.issuer };

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const started = performance.now();
const ms = (since = started) => Math.round((performance.now() - since) * 10) / 10;

// say writes one line and waits for the test's go-ahead.
async function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
  const { done } = await stdin.next();
  if (done) {
    process.exit(1);
  }
}

// decode is a JWT's payload, unverified.
function decode(token) {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  } catch {
    return {};
  }
}

// exchanges are the HTTP requests the SDK made, in order; waiters resolve when a
// response to METHOD URL arrives.
let exchanges = [];
const waiters = [];

// loggingFetch is the fetch the SDK is given: it records each exchange as the response
// headers arrive (an SSE body is still streaming then).
async function loggingFetch(url, init = {}) {
  const headers = new Headers(init.headers);
  const e = { method: init.method ?? 'GET', url: String(url) };
  const auth = headers.get('authorization') ?? '';
  if (auth.startsWith('Bearer ')) {
    const c = decode(auth.slice(7));
    e.token = { aud: c.aud, scope: c.scope ?? '' };
  } else if (auth) {
    e.authorization = auth.split(' ')[0];
  }
  if (headers.get('mcp-session-id')) {
    e.session = headers.get('mcp-session-id');
  }
  if (init.body instanceof URLSearchParams) {
    e.form = Object.fromEntries(init.body);
  } else if (typeof init.body === 'string') {
    e.rpc = [JSON.parse(init.body)].flat().map((m) => m.method ?? 'result');
  }
  const t = performance.now();
  e.at = ms();
  exchanges.push(e);
  try {
    const res = await fetch(url, init);
    e.status = res.status;
    e.ms = ms(t);
    e.content_type = res.headers.get('content-type') ?? '';
    for (const [k, name] of [['www-authenticate', 'www_authenticate'], ['mcp-session-id', 'response_session']]) {
      if (res.headers.get(k)) {
        e[name] = res.headers.get(k);
      }
    }
    for (const w of waiters.splice(0)) {
      if (w.method === e.method && w.url === e.url) {
        w.resolve(e);
      } else {
        waiters.push(w);
      }
    }
    return res;
  } catch (err) {
    e.error = String(err);
    throw err;
  }
}

// responded resolves when the SDK's METHOD URL request got its response headers
// (already, or later), within 5 s.
function responded(method, url) {
  const seen = exchanges.find((e) => e.method === method && e.url === url && e.status);
  if (seen) {
    return Promise.resolve(seen);
  }
  return new Promise((resolve, reject) => {
    waiters.push({ method, url, resolve });
    setTimeout(() => reject(new Error(`no response to ${method} ${url} within 5s`)), 5000).unref();
  });
}

function taken() {
  const out = exchanges;
  exchanges = [];
  return out;
}

function errorOf(err) {
  return { message: String(err?.message ?? err), code: err?.code };
}

function tokenOf(provider) {
  const tok = provider.tokens();
  if (!tok) {
    return undefined;
  }
  const c = decode(tok.access_token);
  return { token_type: tok.token_type, scope: tok.scope, aud: c.aud, claims_scope: c.scope, client_id: c.client_id, iss: c.iss };
}

function textOf(result) {
  return result?.content?.map((c) => c.text).join('') ?? '';
}

// 1. Connect: the SDK meets the 401 and finds everything from it, then calls echo.
const provider = new ClientCredentialsProvider({ ...credentials, scope: 'mcp:tools' });
const mcp = new Client({ name: 'tokengate-interop', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(args.server), { authProvider: provider, fetch: loggingFetch });
const connect = { phase: 'connect' };
try {
  await mcp.connect(transport);
  connect.session = transport.sessionId;
  // The SDK opens its GET stream after the initialized notification, without waiting.
  connect.get_stream = (await responded('GET', args.server)).status;
  connect.token = tokenOf(provider);
  connect.tools = (await mcp.listTools()).tools.map((t) => t.name);
  const progress = [];
  const t = performance.now();
  const result = await mcp.callTool({ name: 'echo', arguments: { text: 'hello through tokengate', steps: 3 } }, undefined, {
    onprogress: (p) => progress.push({ progress: p.progress, ms: ms(t) }),
  });
  connect.echo = { text: textOf(result), progress, result_ms: ms(t) };
} catch (err) {
  connect.error = errorOf(err);
}
connect.http = taken();
await say(connect);

// 2. Step-up. The admin endpoint needs mcp:admin; the SDK holds an mcp:tools token.
// First the SDK's own handling of the 403 (its transport steps up on insufficient_scope).
const stepUp = { phase: 'step-up' };
let adminTransport = new StreamableHTTPClientTransport(new URL(args.admin), { authProvider: provider, fetch: loggingFetch });
const admin = new Client({ name: 'tokengate-interop-admin', version: '1.0.0' });
try {
  await admin.connect(adminTransport);
  stepUp.sdk = { connected: true, token: tokenOf(provider) };
} catch (err) {
  stepUp.sdk = { connected: false, error: errorOf(err), token: tokenOf(provider) };
  await admin.close().catch(() => {});
}
stepUp.sdk.http = taken();
let adminClient = admin;
if (!stepUp.sdk.connected) {
  // Then step up with the SDK's auth(), given what the challenge named.
  try {
    const denied = stepUp.sdk.http.find((e) => e.url === args.admin && e.status === 403);
    const { error, scope, resourceMetadataUrl } = extractWWWAuthenticateParams(
      new Response(null, { headers: { 'WWW-Authenticate': denied?.www_authenticate ?? '' } }));
    stepUp.challenge = { error, scope, resource_metadata: resourceMetadataUrl && String(resourceMetadataUrl) };
    const metadata = await discoverOAuthProtectedResourceMetadata(new URL(args.admin), { resourceMetadataUrl }, loggingFetch);
    const serverUrl = new URL(metadata.resource); // the resource the challenge's metadata names
    stepUp.challenge.resource = metadata.resource;
    stepUp.challenge.http = taken();

    // auth() with the challenge's scope and the provider as it is.
    await auth(provider, { serverUrl, resourceMetadataUrl, scope, fetchFn: loggingFetch });
    stepUp.auth_as_is = { token: tokenOf(provider), http: taken() };

    // auth() with a provider whose scope adds the challenged one to what it had.
    const wanted = [...new Set(`${provider.clientMetadata.scope} ${scope}`.split(' '))].join(' ');
    const stepped = new ClientCredentialsProvider({ ...credentials, scope: wanted });
    stepUp.auth_stepped = { result: await auth(stepped, { serverUrl, resourceMetadataUrl, scope: wanted, fetchFn: loggingFetch }) };
    stepUp.auth_stepped.token = tokenOf(stepped);
    stepUp.auth_stepped.http = taken();

    adminClient = new Client({ name: 'tokengate-interop-admin', version: '1.0.0' });
    adminTransport = new StreamableHTTPClientTransport(new URL(args.admin), { authProvider: stepped, fetch: loggingFetch });
    await adminClient.connect(adminTransport);
  } catch (err) {
    stepUp.error = errorOf(err);
  }
}
try {
  stepUp.session = adminTransport.sessionId;
  stepUp.get_stream = (await responded('GET', args.admin)).status;
  stepUp.tools = (await adminClient.listTools()).tools.map((t) => t.name);
  stepUp.purge = textOf(await adminClient.callTool({ name: 'purge', arguments: {} }));
} catch (err) {
  stepUp.error ??= errorOf(err);
}
stepUp.http = taken();
await say(stepUp);

// 3. A token of the same provider for another resource is refused.
const other = { phase: 'other-resource' };
try {
  const metadata = await discoverAuthorizationServerMetadata(args.issuer, { fetchFn: loggingFetch });
  const tokens = await fetchToken(new ClientCredentialsProvider({ ...credentials, scope: 'mcp:tools' }), args.issuer, {
    metadata, resource: new URL(args['other-resource']), fetchFn: loggingFetch,
  });
  const c = decode(tokens.access_token);
  other.token = { aud: c.aud, scope: c.scope };
  const stray = new Client({ name: 'tokengate-interop-stray', version: '1.0.0' });
  const strayTransport = new StreamableHTTPClientTransport(new URL(args.server), {
    fetch: loggingFetch, requestInit: { headers: { Authorization: `Bearer ${tokens.access_token}` } },
  });
  try {
    await stray.connect(strayTransport);
    other.connected = true;
  } catch (err) {
    other.error = errorOf(err);
  }
  await stray.close().catch(() => {});
} catch (err) {
  other.error = errorOf(err);
}
other.http = taken();
await say(other);

// 4. Close: DELETE ends each session.
const close = { phase: 'close' };
for (const [name, tr] of [['mcp', transport], ['admin', adminTransport]]) {
  try {
    if (tr.sessionId) {
      await tr.terminateSession();
    }
    await tr.close();
  } catch (err) {
    close[name] = errorOf(err);
  }
}
close.http = taken();
await say(close);
process.exit(0);
