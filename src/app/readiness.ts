// The agent's readiness endpoint, :15021/healthz/ready: 200 only when the BPF programs are on
// their hooks, the state is synced and every enrolled pod's listeners are open.
import type * as http from 'node:http';
import { ANY_ADDRESS, type ListenAt, listenHttp, sendText } from './http-server';

export interface ReadinessSource {
  /** undefined when ready; otherwise why not. */
  notReadyReason(): string | undefined;
}

export function startReadinessServer(source: ReadinessSource, port: ListenAt, host = ANY_ADDRESS): Promise<http.Server> {
  return listenHttp(
    (req, res) => {
      if (req.url !== '/healthz/ready') {
        sendText(res, 404, 'not found: the readiness endpoint is /healthz/ready\n');
        return;
      }
      const reason = source.notReadyReason();
      sendText(res, reason === undefined ? 200 : 503, reason === undefined ? 'ready\n' : `not ready: ${reason}\n`);
    },
    port,
    host,
  );
}
