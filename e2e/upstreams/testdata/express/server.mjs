// A real Express 5 upstream for tokengate's end-to-end suites (internal/realupstream).
// Routing is Express's default (case-insensitive, trailing slash ignored) and
// method-override runs in its default configuration (X-HTTP-Method-Override, honoured
// on POST): the point is to record what a stock Express app dispatches, so nothing here
// may make it stricter.
//
//   node server.mjs            listens on the socket inherited as fd 3
//   REALUPSTREAM_RECORDS=FILE  where each request is appended as one JSON line
//
// Once listening it prints `REALUPSTREAM READY {"version": ...}` on stdout.
import fs from 'node:fs';
import express from 'express';
import methodOverride from 'method-override';

const recordsFile = process.env.REALUPSTREAM_RECORDS;
if (!recordsFile) {
  console.error('REALUPSTREAM_RECORDS is not set');
  process.exit(2);
}
// O_APPEND and one write per line: a reader never sees two records interleaved.
const recordsFd = fs.openSync(recordsFile, 'a');

// The versions npm ci installed (path-to-regexp does not export its package.json, so
// the files are read directly; package-lock.json keeps them all at the top level).
const version = ['express', 'method-override', 'router', 'path-to-regexp']
  .map((name) => {
    const pkg = JSON.parse(fs.readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url)));
    return `${name} ${pkg.version}`;
  })
  .join(' + ') + ` (node ${process.version})`;

// handler answers with the record of what reached it, after reading the whole body.
function handler(route) {
  return (req, res) => {
    let bodyBytes = 0;
    req.on('data', (chunk) => { bodyBytes += chunk.length; });
    req.on('end', () => {
      const headers = {};
      // rawHeaders keeps repeated headers apart, where req.headers joins them.
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i].toLowerCase();
        (headers[name] ||= []).push(req.rawHeaders[i + 1]);
      }
      const q = req.originalUrl.indexOf('?');
      const record = {
        server: 'express',
        route,
        method: req.method,
        path: req.path,
        target: req.originalUrl,
        rawQuery: q >= 0 ? req.originalUrl.slice(q + 1) : '',
        proto: `HTTP/${req.httpVersion}`,
        host: req.host ?? '',
        headers,
        bodyBytes,
      };
      fs.writeSync(recordsFd, JSON.stringify(record) + '\n');
      res.status(200).json(record);
    });
  };
}

const app = express();
app.use(methodOverride());
app.get('/healthz', handler('health'));
app.get('/orders/:id', handler('orders.show'));
app.post('/orders', handler('orders.create'));
app.delete('/orders/:id', handler('orders.delete'));
app.all('/admin/*rest', handler('admin'));
app.use(handler('fallback'));

// Express 5 hands a listen error to this callback as well.
app.listen({ fd: 3 }, (err) => {
  if (err) {
    console.error(`listen on fd 3: ${err.stack}`);
    process.exit(1);
  }
  console.log(`REALUPSTREAM READY ${JSON.stringify({ version })}`);
});
