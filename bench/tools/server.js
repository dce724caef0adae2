// Benchmark server run inside sandbox pods: an HTTP/1.1 keep-alive server answering a small fixed
// body, and a TCP sink that counts bytes until the client's FIN and then replies with the count.
//   node server.js HTTP_PORT SINK_PORT
'use strict';
const http = require('node:http');
const net = require('node:net');

const httpPort = Number(process.argv[2] || 8080);
const sinkPort = Number(process.argv[3] || 9000);
const name = process.env.POD_NAME || 'unknown';
// Fixed and small, so that the benchmark measures per-request and per-connection cost, not copying.
const BODY = Buffer.from('ferry-bench ok\n');

const server = http.createServer((req, res) => {
  // Drain the request (GETs have none) so the parser can move on to the next one on this connection.
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
  res.end(BODY);
});
// Clients hold connections idle between phases; do not let Node's 5 s default close them under us.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.requestTimeout = 0;
// Unlimited requests per connection (also Node's default): a cap would close keep-alive
// connections mid-phase and read as a proxy reset.
server.maxRequestsPerSocket = 0;
server.listen(httpPort, '0.0.0.0', () => process.stdout.write(`${name} http listening on ${httpPort}\n`));

// allowHalfOpen: the client's FIN ends the upload while our reply still has to go back (RFC 9293
// §3.6 half-close); the reply after the FIN proves every byte crossed every hop.
net
  .createServer({ allowHalfOpen: true }, (socket) => {
    let bytes = 0;
    socket.on('data', (chunk) => {
      bytes += chunk.length;
    });
    socket.on('end', () => socket.end(`${bytes}\n`));
    socket.on('error', () => socket.destroy());
  })
  .listen(sinkPort, '0.0.0.0', () => process.stdout.write(`${name} sink listening on ${sinkPort}\n`));
