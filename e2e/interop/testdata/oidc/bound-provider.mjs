// node-oidc-provider issuing sender-constrained access tokens, for the DPoP and mTLS
// cases of tokengate's interoperability suite (e2e/interop/dpop_test.go):
//
//   node bound-provider.mjs --port PORT --tls-port TLSPORT --keys KEYS.json \
//     --ca CA.pem --cert SERVER.pem --key SERVER-KEY.pem
//
// KEYS.json is a JWKS of private RS256 signing keys (the first signs). The issuer is
// http://127.0.0.1:PORT; the same provider also listens on https://127.0.0.1:TLSPORT,
// where the TLS server asks for a client certificate and verifies it against CA.pem
// (RFC 8705). The discovery document names that listener's token endpoint in
// mtls_endpoint_aliases (RFC 8705 §5), so a client that uses the aliases gets there by
// itself. Certificates and keys are PEM files the test generated.
//
// It prints `READY <issuer>` once both listen and `REQ <method> <path> <user-agent>`
// per request.
//
// Clients (client_credentials; tokens for https://orders.example.com are RS256 JWTs
// typed at+jwt, scopes orders:read orders:write):
//   dpop-client / dpop-secret   client_secret_basic; dpop_bound_access_tokens, so every
//                               token request needs a DPoP proof and every token
//                               carries cnf.jkt (RFC 9449 §6)
//   mtls-client                 tls_client_auth (a certificate from CA.pem with subject
//                               CN=mtls-client, over the TLS listener);
//                               tls_client_certificate_bound_access_tokens, so every
//                               token carries cnf.x5t#S256 (RFC 8705 §3)
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { X509Certificate, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

import { logRequests, renderJSONError, serve } from './serve.mjs';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'tls-port': { type: 'string' },
    keys: { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});
for (const name of ['port', 'tls-port', 'keys', 'ca', 'cert', 'key']) {
  if (!args[name]) {
    console.error('usage: node bound-provider.mjs --port PORT --tls-port TLSPORT --keys KEYS.json --ca CA.pem --cert CERT.pem --key KEY.pem');
    process.exit(2);
  }
}

const host = '127.0.0.1';
const port = Number(args.port);
const tlsPort = Number(args['tls-port']);
const issuer = `http://${host}:${port}`;
const mtlsBase = `https://${host}:${tlsPort}`;
const accessTokenTTL = 300;

const ORDERS = 'https://orders.example.com';
const SCOPES = 'orders:read orders:write';

// The client certificate of this TLS connection, if the client sent one (plain HTTP
// sockets have none).
function peerCertificate(ctx) {
  const peer = ctx.socket.getPeerCertificate?.(false);
  return peer?.raw ? new X509Certificate(peer.raw) : undefined;
}

const provider = new Provider(issuer, {
  jwks: JSON.parse(readFileSync(args.keys, 'utf8')),
  clients: [
    {
      client_id: 'dpop-client',
      client_secret: 'dpop-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      dpop_bound_access_tokens: true,
      scope: SCOPES,
    },
    {
      client_id: 'mtls-client',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_subject_dn: 'CN=mtls-client',
      tls_client_certificate_bound_access_tokens: true,
      scope: SCOPES,
    },
  ],
  clientAuthMethods: ['client_secret_basic', 'tls_client_auth'],
  scopes: ['openid', 'orders:read', 'orders:write'],
  ttl: { ClientCredentials: accessTokenTTL },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  routes: { jwks: '/oauth/keys' },
  discovery: {
    mtls_endpoint_aliases: { token_endpoint: `${mtlsBase}/token` },
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    dPoP: { enabled: true },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      getCertificate: peerCertificate,
      // The TLS server verified the chain against CA.pem (rejectUnauthorized is off
      // so that a bad certificate gets an OAuth error rather than a TLS alert).
      certificateAuthorized: (ctx) => ctx.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_subject_dn'
        && peerCertificate(ctx)?.subject === expected,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => ORDERS,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator !== ORDERS) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: SCOPES,
          audience: ORDERS,
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

const tlsServer = createServer({
  ca: readFileSync(args.ca),
  cert: readFileSync(args.cert),
  key: readFileSync(args.key),
  requestCert: true,
  rejectUnauthorized: false,
}, provider.callback());

serve(`READY ${issuer}`, host, [provider, port], [tlsServer, tlsPort]);
