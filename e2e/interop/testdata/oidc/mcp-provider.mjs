// node-oidc-provider as the authorization server of an MCP server, for
// e2e/interop/mcp_test.go:
//
//   node mcp-provider.mjs --port PORT --keys KEYS.json --resource MCP_URL
//
// KEYS.json is a JWKS of private RS256 signing keys (the first signs). The issuer is
// http://127.0.0.1:PORT; its metadata is at /.well-known/oauth-authorization-server
// (RFC 8414, where MCP clients look first) and /.well-known/openid-configuration.
//
// Resource servers (Resource Indicators, RFC 8707): a client_credentials request with
// `resource=<URL>` gets an RS256 JWT access token typed at+jwt (RFC 9068) whose aud is
// that URL and whose scope is the scopes asked for, among the resource's:
//   MCP_URL                        mcp:tools mcp:admin (the MCP server tokengate guards)
//   https://other.example.com/mcp  mcp:tools mcp:admin (another MCP server)
// A request without `resource` gets an opaque token (there is no default resource):
// MCP clients must name the resource.
//
// Client (client_credentials, client_secret_basic):
//   mcp-client / mcp-secret   scopes mcp:tools mcp:admin
//
// It prints `READY <issuer>` once it listens, `REQ <method> <path> <user-agent>` per
// request, and `TOKEN {"grant_type", "resource", "scope", "granted"}` per token issued.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

import { logRequests, renderJSONError, serve } from './serve.mjs';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    keys: { type: 'string' },
    resource: { type: 'string' },
  },
});
if (!args.port || !args.keys || !args.resource) {
  console.error('usage: node mcp-provider.mjs --port PORT --keys KEYS.json --resource MCP_URL');
  process.exit(2);
}

const host = '127.0.0.1';
const port = Number(args.port);
const issuer = `http://${host}:${port}`;
const accessTokenTTL = 300;
const SCOPES = 'mcp:tools mcp:admin';
const resourceServers = new Set([args.resource, 'https://other.example.com/mcp']);

const provider = new Provider(issuer, {
  jwks: JSON.parse(readFileSync(args.keys, 'utf8')),
  clients: [
    {
      client_id: 'mcp-client',
      client_secret: 'mcp-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: SCOPES,
    },
  ],
  scopes: ['openid', 'mcp:tools', 'mcp:admin'],
  ttl: { ClientCredentials: accessTokenTTL },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (!resourceServers.has(resourceIndicator)) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: SCOPES,
          audience: resourceIndicator,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  renderError: renderJSONError,
});

logRequests(provider);
provider.on('grant.success', (ctx) => {
  const p = ctx.oidc.params ?? {};
  console.log(`TOKEN ${JSON.stringify({
    grant_type: p.grant_type, resource: p.resource ?? '', scope: p.scope ?? '', granted: ctx.body?.scope ?? '',
  })}`);
});

serve(`READY ${issuer}`, host, [provider, port]);
