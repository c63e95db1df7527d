// node-oidc-provider as the authorization server of tokengate's interoperability suite
// (e2e/interop). The Go test starts it:
//
//   node provider.mjs --port PORT --keys KEYS.json
//
// KEYS.json is a JWKS of private signing keys (RS256, each with a kid) that the test
// generated; the first key signs, every key is published at the JWKS endpoint. A key
// rotation is a restart on the same port with a new key first and the old one still
// listed (oidc-provider reads `jwks` once, at construction).
//
// It listens on 127.0.0.1 only, prints `READY <issuer>` once it listens, and one line
// `REQ <method> <path> <user-agent>` per request it receives (the test reads them to
// see tokengate's discovery and key fetches).
//
// Clients (client_credentials, client_secret_basic):
//   orders-client  / orders-secret   scopes orders:read orders:write
//   legacy-client  / legacy-secret   the same scopes; its access tokens are typed
//                                    `JWT` instead of `at+jwt` (a legacy format that
//                                    a resource server requiring RFC 9068 must refuse)
//
// Resource servers (Resource Indicators, RFC 8707), JWT access tokens, RS256:
//   https://orders.example.com   scopes orders:read orders:write (the default resource)
//   https://reports.example.com  scope orders:read, a second API of the same provider:
//                                its tokens carry the right scope for the wrong audience
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

import { logRequests, renderJSONError, serve } from './serve.mjs';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT },
    keys: { type: 'string', default: process.env.KEYS_FILE },
    ttl: { type: 'string', default: process.env.ACCESS_TOKEN_TTL || '300' },
  },
});
if (!args.port || !args.keys) {
  console.error('usage: node provider.mjs --port PORT --keys KEYS.json [--ttl SECONDS]');
  process.exit(2);
}

const host = '127.0.0.1';
const port = Number(args.port);
const issuer = `http://${host}:${port}`;
const jwks = JSON.parse(readFileSync(args.keys, 'utf8'));
const accessTokenTTL = Number(args.ttl);

const ORDERS = 'https://orders.example.com';
const REPORTS = 'https://reports.example.com';
const resourceServers = {
  [ORDERS]: 'orders:read orders:write',
  [REPORTS]: 'orders:read',
};

const provider = new Provider(issuer, {
  jwks,
  clients: [
    {
      client_id: 'orders-client',
      client_secret: 'orders-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'orders:read orders:write',
    },
    {
      client_id: 'legacy-client',
      client_secret: 'legacy-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'orders:read orders:write',
    },
  ],
  // A client's `scope` metadata may hold only scopes listed here (else the client is
  // refused with invalid_client_metadata at the token endpoint).
  scopes: ['openid', 'orders:read', 'orders:write'],
  ttl: {
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTTL,
  },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  routes: { jwks: '/oauth/keys' }, // not the default /jwks: only discovery finds it
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => ORDERS,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        const scope = resourceServers[resourceIndicator];
        if (!scope) {
          throw new errors.InvalidTarget();
        }
        return {
          scope,
          audience: resourceIndicator,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  formats: {
    customizers: {
      // The legacy client's tokens get a plain `JWT` header type; everything else
      // (claims, key, signature) is what the orders client gets.
      jwt: async (ctx, token, jwt) => {
        if (token.clientId === 'legacy-client') {
          jwt.header = { typ: 'JWT' };
        }
      },
    },
  },
  renderError: renderJSONError,
});

logRequests(provider);


serve(`READY ${issuer}`, host, [provider, port]);
