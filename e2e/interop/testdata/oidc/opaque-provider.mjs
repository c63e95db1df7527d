// node-oidc-provider issuing opaque access tokens and introspecting them (RFC 7662),
// with revocation (RFC 7009), for e2e/interop/introspection_test.go:
//
//   node opaque-provider.mjs --port PORT --keys KEYS.json --state STATE.json
//
// KEYS.json is a JWKS of private RS256 signing keys (the first signs). The issuer is
// http://127.0.0.1:PORT; its discovery document names introspection_endpoint and
// revocation_endpoint. STATE.json holds every token it stored (issued, not revoked): it
// is rewritten before each token response and read at start, so a restart on the same
// port, with the same keys and state, still knows the opaque tokens it issued, even
// after SIGKILL.
//
// Resource servers (Resource Indicators, RFC 8707), by the client's `resource`:
//   https://orders.example.com   orders:read orders:write (the default resource)
//   https://reports.example.com  orders:read (another API of the same provider)
// The access token's format is chosen per client, for any resource:
//   orders-client / orders-secret   opaque tokens: a random string, meaningful only to
//                                   the introspection endpoint
//   jwt-client    / jwt-secret      RS256 JWTs typed at+jwt (RFC 9068)
// so one resource gets both kinds from one provider (accessTokenFormat is a result of
// getResourceServerInfo, which sees the client).
//
// The resource server's own client (client_secret_basic, no grants):
//   orders-api    / orders-api-secret   may introspect every token of this provider
// (features.introspection.allowedPolicy; other clients only their own tokens), so that
// an answer for another audience reaches the resource server, whose own audience check
// must refuse it. Revocation keeps the default policy: only the client a token was
// issued to may revoke it.
//
// It prints `READY <issuer>` once it listens, `REQ <method> <path> <user-agent>` per
// request, `INTROSPECT {"client", "active", "aud", "client_id", "scope", "exp"}` per
// introspection answer and `REVOKE {"client", "status"}` per revocation.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

import { logRequests, renderJSONError, serve } from './serve.mjs';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    keys: { type: 'string' },
    state: { type: 'string' },
  },
});
if (!args.port || !args.keys || !args.state) {
  console.error('usage: node opaque-provider.mjs --port PORT --keys KEYS.json --state STATE.json');
  process.exit(2);
}

const host = '127.0.0.1';
const port = Number(args.port);
const issuer = `http://${host}:${port}`;
const accessTokenTTL = 300;

const ORDERS = 'https://orders.example.com';
const REPORTS = 'https://reports.example.com';
const resourceServers = {
  [ORDERS]: 'orders:read orders:write',
  [REPORTS]: 'orders:read',
};
const formatOf = { 'orders-client': 'opaque', 'jwt-client': 'jwt' };

// The state file: "<model>:<id>" → {payload, expiresAt (epoch ms)}.
let state = {};
try {
  state = JSON.parse(readFileSync(args.state, 'utf8'));
} catch (err) {
  if (err.code !== 'ENOENT') throw err;
}
function save() {
  const tmp = `${args.state}.tmp`;
  writeFileSync(tmp, JSON.stringify(state));
  renameSync(tmp, args.state);
}

// FileAdapter is the adapter API (lib/adapters/memory_adapter.js) over the state
// file, written synchronously so that an answered request survives a SIGKILL. Only
// what client_credentials, introspection and revocation use is kept in it; there are no
// grants, sessions or user codes here.
class FileAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    state[this.key(id)] = { payload, expiresAt: Date.now() + expiresIn * 1000 };
    save();
  }

  async find(id) {
    const e = state[this.key(id)];
    if (!e || e.expiresAt <= Date.now()) return undefined;
    return e.payload;
  }

  async findByUid() { return undefined; }

  async findByUserCode() { return undefined; }

  async consume(id) {
    const e = state[this.key(id)];
    if (e) {
      e.payload.consumed = Math.floor(Date.now() / 1000);
      save();
    }
  }

  async destroy(id) {
    delete state[this.key(id)];
    save();
  }

  async revokeByGrantId() {}
}

const client = (id, secret, scope) => ({
  client_id: id,
  client_secret: secret,
  grant_types: scope ? ['client_credentials'] : [],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope,
});

const provider = new Provider(issuer, {
  adapter: FileAdapter,
  jwks: JSON.parse(readFileSync(args.keys, 'utf8')),
  clients: [
    client('orders-client', 'orders-secret', 'orders:read orders:write'),
    client('jwt-client', 'jwt-secret', 'orders:read orders:write'),
    client('orders-api', 'orders-api-secret', undefined),
  ],
  scopes: ['openid', 'orders:read', 'orders:write'],
  ttl: { ClientCredentials: accessTokenTTL },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, caller, token) => caller.clientId === 'orders-api' || caller.clientId === token.clientId,
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, caller, token) => {
        if (caller.clientId !== token.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => ORDERS,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator, cl) => {
        const scope = resourceServers[resourceIndicator];
        const accessTokenFormat = formatOf[cl.clientId];
        if (!scope || !accessTokenFormat) {
          throw new errors.InvalidTarget();
        }
        return {
          scope,
          audience: resourceIndicator,
          accessTokenTTL,
          accessTokenFormat,
          ...(accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
        };
      },
    },
  },
  renderError: renderJSONError,
});

logRequests(provider);
provider.use(async (ctx, next) => {
  await next();
  switch (ctx.oidc?.route) {
    case 'introspection': {
      const b = typeof ctx.body === 'object' && ctx.body !== null ? ctx.body : {};
      console.log(`INTROSPECT ${JSON.stringify({
        client: ctx.oidc.client?.clientId ?? '', active: b.active, aud: b.aud, client_id: b.client_id, scope: b.scope, exp: b.exp,
      })}`);
      break;
    }
    case 'revocation':
      console.log(`REVOKE ${JSON.stringify({ client: ctx.oidc.client?.clientId ?? '', status: ctx.status })}`);
      break;
    default:
  }
});
provider.on('introspection.error', (ctx, err) => console.error(`introspection.error: ${err.message}: ${err.error_description ?? ''}`));
provider.on('revocation.error', (ctx, err) => console.error(`revocation.error: ${err.message}: ${err.error_description ?? ''}`));

serve(`READY ${issuer}`, host, [provider, port]);
