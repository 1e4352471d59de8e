// Node.js HTTPS peer (Node drives OpenSSL through memory BIOs).
// server: node node_tls.js server PORT CERT KEY
// client: node node_tls.js client PORT PATH...   (one keep-alive connection, prints statuses)
const https = require('https');
const fs = require('fs');
const [mode, port, ...rest] = process.argv.slice(2);
if (mode === 'server') {
  const [cert, key] = rest;
  https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    req.resume();
    req.on('end', () => res.end('node says hi ' + req.url + '\n'));
  }).listen(Number(port), '127.0.0.1');
} else {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const get = (path) => new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: Number(port), path, agent, rejectUnauthorized: false }, (r) => {
      r.resume();
      r.on('end', () => resolve(r.statusCode));
    }).on('error', reject);
  });
  (async () => {
    for (const p of rest) console.log(await get(p));
    agent.destroy();
  })().catch((e) => { console.error(e); process.exit(1); });
}
