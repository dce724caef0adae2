// The agent's readiness endpoint, :15021/healthz/ready: 200 only when capture is in place, the
// state is synced and every enrolled pod's listeners are open.
import * as http from 'node:http';

export interface ReadinessSource {
  /** undefined when ready; otherwise why not. */
  notReadyReason(): string | undefined;
}

export function startReadinessServer(source: ReadinessSource, port: number, host = '0.0.0.0'): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/healthz/ready') {
      res.writeHead(404).end();
      return;
    }
    const reason = source.notReadyReason();
    res.writeHead(reason === undefined ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(reason === undefined ? 'ready\n' : `not ready: ${reason}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
