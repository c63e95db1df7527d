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
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});

provider.use(async (ctx, next) => {
  console.log(`REQ ${ctx.method} ${ctx.path} ${ctx.get('user-agent') || '-'}`);
  await next();
});
provider.on('grant.success', (ctx) => {
  const p = ctx.oidc.params ?? {};
  console.log(`TOKEN ${JSON.stringify({
    grant_type: p.grant_type, resource: p.resource ?? '', scope: p.scope ?? '', granted: ctx.body?.scope ?? '',
  })}`);
});
provider.on('grant.error', (ctx, err) => console.error(`grant.error: ${err.message}: ${err.error_description ?? ''}`));
provider.on('server_error', (ctx, err) => console.error(`server_error: ${err.stack}`));

const server = provider.listen(port, host, () => console.log(`READY ${issuer}`));
server.on('error', (err) => {
  console.error(`listen ${host}:${port}: ${err.message}`);
  process.exit(1);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
