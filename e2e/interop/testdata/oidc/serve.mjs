// What the scripts of this directory share: answering errors as JSON, logging each
// request (`REQ <method> <path> <user-agent>`, read by the tests), and serving until a
// signal.

// renderJSONError keeps oidc-provider's errors terse: nothing here renders pages.
export async function renderJSONError(ctx, out) {
  ctx.type = 'json';
  ctx.body = out;
}

// logRequests prints a REQ line per request, and the provider's errors on stderr.
export function logRequests(provider) {
  provider.use(async (ctx, next) => {
    console.log(`REQ ${ctx.method} ${ctx.path} ${ctx.get('user-agent') || '-'}`);
    await next();
  });
  provider.on('server_error', (ctx, err) => console.error(`server_error: ${err.stack}`));
  provider.on('grant.error', (ctx, err) => console.error(`grant.error: ${err.message}: ${err.error_description ?? ''}`));
}

// serve listens with each [listener, port] pair on host, prints readyLine once all
// listen, exits 1 when one cannot, and closes them all on SIGTERM or SIGINT (within a
// second, connections or not).
export function serve(readyLine, host, ...pairs) {
  const servers = [];
  let waiting = pairs.length;
  for (const [listener, port] of pairs) {
    const s = listener.listen(port, host, () => {
      if (--waiting === 0) console.log(readyLine);
    });
    servers.push(s);
    s.on('error', (err) => {
      console.error(`listen ${host}:${port}: ${err.message}`);
      process.exit(1);
    });
  }
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      let open = servers.length;
      for (const s of servers) {
        s.close(() => { if (--open === 0) process.exit(0); });
        s.closeAllConnections();
      }
      setTimeout(() => process.exit(0), 1000).unref();
    });
  }
}
