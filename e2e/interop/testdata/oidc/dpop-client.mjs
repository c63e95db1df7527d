// A client of tokengate that holds sender-constrained tokens, built on oauth4webapi (a
// DPoP and mTLS capable OAuth client library), for e2e/interop/dpop_test.go:
//
//   node dpop-client.mjs --issuer ISSUER --api HTTP_URL --tls-api HTTPS_URL \
//     --ca CA.pem --cert CLIENT.pem --key CLIENT-KEY.pem \
//     --other-cert OTHER.pem --other-key OTHER-KEY.pem
//
// It gets two tokens from bound-provider.mjs, both through oauth4webapi: a DPoP-bound
// one (dpop-client, client_secret_basic, with a DPoP proof of a fresh ES256 key) and a
// certificate-bound one (mtls-client, tls_client_auth with CLIENT.pem, at the
// provider's mtls_endpoint_aliases token endpoint). Then it calls tokengate at API
// (plain HTTP) and TLS-API (TLS, asking for client certificates) in the cases below.
//
// It speaks in lines of JSON on stdout: first {"tokens": …}, then one {"case": …} per
// request, and after each line it waits for a line on stdin before going on, so that
// the test can read tokengate's metrics between two requests. Statuses are what
// tokengate answered; 0 means the request failed (the error is in "error").
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import * as oauth from 'oauth4webapi';

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    api: { type: 'string' },
    'tls-api': { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'other-cert': { type: 'string' },
    'other-key': { type: 'string' },
  },
});
for (const name of ['issuer', 'api', 'tls-api', 'ca', 'cert', 'key', 'other-cert', 'other-key']) {
  if (!args[name]) {
    console.error(`dpop-client.mjs: --${name} is required`);
    process.exit(2);
  }
}

const ORDERS = 'https://orders.example.com';
const scope = 'orders:read';
// Everything here is on loopback over plain HTTP except the TLS listeners.
const insecure = { [oauth.allowInsecureRequests]: true };

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// say writes one line and waits for the test's go-ahead.
async function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
  const { done } = await stdin.next();
  if (done) {
    process.exit(1);
  }
}

// httpsFetch is a fetch over node's https module with this TLS client configuration
// (trusted CA, client certificate or none), for oauth4webapi's customFetch. Node's
// own fetch does not take a client certificate without undici's Agent, which Node
// does not export.
function httpsFetch(tls) {
  return (url, init = {}) => new Promise((resolve, reject) => {
    const body = init.body == null ? undefined : Buffer.from(String(init.body));
    const headers = { ...init.headers };
    if (body) {
      headers['content-length'] = String(body.length);
    }
    const req = request(url, { method: init.method ?? 'GET', headers, agent: false, ...tls }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const h = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          h.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
        }
        const nobody = [204, 304].includes(res.statusCode);
        resolve(new Response(nobody ? null : Buffer.concat(chunks), { status: res.statusCode, headers: h }));
      });
    });
    req.on('error', reject);
    init.signal?.addEventListener('abort', () => req.destroy(init.signal.reason));
    req.end(body);
  });
}

// recording wraps a fetch and keeps the headers of every request it sends.
function recording(inner = fetch) {
  const sent = [];
  const f = (url, init) => {
    sent.push({ url: String(url), headers: { ...init.headers } });
    return inner(url, init);
  };
  return { fetch: f, sent };
}

// outcome is what a call got: the status, the challenge and the error body; a
// request that did not complete has status 0.
async function outcome(call) {
  const start = performance.now();
  let response;
  try {
    response = await call();
  } catch (err) {
    if (err instanceof oauth.WWWAuthenticateChallengeError) {
      response = err.response;
    } else {
      return { status: 0, error: `${err.name}: ${err.message}${err.cause ? ` (${err.cause.code ?? err.cause.message})` : ''}` };
    }
  }
  const ms = performance.now() - start;
  const text = await response.text();
  let body = {};
  try {
    body = JSON.parse(text);
  } catch { /* not JSON */ }
  return {
    status: response.status,
    www_authenticate: response.headers.get('www-authenticate') ?? '',
    error: body.error ?? '',
    error_description: body.error_description ?? '',
    ms,
  };
}

async function publicJWK(keyPair) {
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
  return { kty, crv, x, y };
}

// The authorization server, from its discovery document.
const issuer = new URL(args.issuer);
const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure));

// 1. A DPoP-bound token: client credentials with a proof of a fresh key.
const dpopClient = { client_id: 'dpop-client' };
const keyPair = await oauth.generateKeyPair('ES256');
const dpop = oauth.DPoP(dpopClient, keyPair);
const dpopToken = await oauth.processClientCredentialsResponse(as, dpopClient,
  await oauth.clientCredentialsGrantRequest(as, dpopClient, oauth.ClientSecretBasic('dpop-secret'),
    { scope, resource: ORDERS }, { DPoP: dpop, ...insecure }));

// 2. A certificate-bound token: tls_client_auth at the mTLS alias of the token
// endpoint. Without a certificate the provider refuses the client.
const ca = readFileSync(args.ca);
const withCert = httpsFetch({ ca, cert: readFileSync(args.cert), key: readFileSync(args.key) });
const withOther = httpsFetch({ ca, cert: readFileSync(args['other-cert']), key: readFileSync(args['other-key']) });
const withoutCert = httpsFetch({ ca });
const mtlsClient = { client_id: 'mtls-client', use_mtls_endpoint_aliases: true };
const mtlsToken = await oauth.processClientCredentialsResponse(as, mtlsClient,
  await oauth.clientCredentialsGrantRequest(as, mtlsClient, oauth.TlsClientAuth(),
    { scope, resource: ORDERS }, { [oauth.customFetch]: withCert }));
const refused = await outcome(() => oauth.clientCredentialsGrantRequest(as, mtlsClient, oauth.TlsClientAuth(),
  { scope, resource: ORDERS }, { [oauth.customFetch]: withoutCert }));

const otherKeyPair = await oauth.generateKeyPair('ES256');
await say({
  tokens: {
    dpop: { token_type: dpopToken.token_type, access_token: dpopToken.access_token, jwk: await publicJWK(keyPair) },
    other_jwk: await publicJWK(otherKeyPair),
    mtls: { token_type: mtlsToken.token_type, access_token: mtlsToken.access_token, token_endpoint: as.mtls_endpoint_aliases?.token_endpoint },
    mtls_without_certificate: refused,
  },
});

// 3. DPoP at the plain listener. oauth4webapi makes a new proof for every request.
const url = new URL('/orders/1', args.api);
const token = dpopToken.access_token;
const rec = recording();
const first = await outcome(() => oauth.protectedResourceRequest(token, 'GET', url, new Headers(), null,
  { DPoP: dpop, [oauth.customFetch]: rec.fetch, ...insecure }));
const proof = rec.sent[0]?.headers.dpop;
await say({ case: 'dpop: token with its proof', listener: 'http', proof, authorization_scheme: rec.sent[0]?.headers.authorization.split(' ')[0], ...first });

await say({ case: 'dpop: same token, a new proof', listener: 'http', ...await outcome(() => oauth.protectedResourceRequest(token, 'GET', url, new Headers(), null, { DPoP: dpop, ...insecure })) });

// The first request's exact headers once more: the proof is replayed.
await say({ case: 'dpop: replayed proof', listener: 'http', ...await outcome(() => fetch(url, { headers: rec.sent[0].headers })) });

// The token stolen without its key: a good proof of another key, or no proof at all.
const thief = oauth.DPoP(dpopClient, otherKeyPair);
await say({ case: 'dpop: proof of another key', listener: 'http', ...await outcome(() => oauth.protectedResourceRequest(token, 'GET', url, new Headers(), null, { DPoP: thief, ...insecure })) });
await say({ case: 'dpop: token as Bearer', listener: 'http', ...await outcome(() => oauth.protectedResourceRequest(token, 'GET', url, new Headers(), null, insecure)) });

// A proof oauth4webapi made for another URL (never sent there), with the right key.
const elsewhere = recording(async () => new Response(null, { status: 204 }));
await oauth.protectedResourceRequest(token, 'GET', new URL('/orders/2', args.api), new Headers(), null,
  { DPoP: dpop, [oauth.customFetch]: elsewhere.fetch, ...insecure });
await say({ case: 'dpop: proof for another URL', listener: 'http', ...await outcome(() => fetch(url, { headers: elsewhere.sent[0].headers })) });

// The certificate-bound token at the plain listener, which has no certificate.
await say({ case: 'mtls: token over plain HTTP', listener: 'http', ...await outcome(() => oauth.protectedResourceRequest(mtlsToken.access_token, 'GET', url, new Headers(), null, insecure)) });

// 4. The certificate-bound token at the TLS listener.
const tlsURL = new URL('/orders/3', args['tls-api']);
const mtls = (f) => outcome(() => oauth.protectedResourceRequest(mtlsToken.access_token, 'GET', tlsURL, new Headers(), null, { [oauth.customFetch]: f }));
await say({ case: 'mtls: token with its certificate', listener: 'tls', ...await mtls(withCert) });
await say({ case: 'mtls: token without a certificate', listener: 'tls', ...await mtls(withoutCert) });
await say({ case: 'mtls: token with another certificate', listener: 'tls', ...await mtls(withOther) });
process.exit(0);
