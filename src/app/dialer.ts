// The proxy's Dialer over the native addon: a marked socket made inside a pod's namespace.
import * as net from 'node:net';
import * as native from '../native';
import { SOCKET_MARK } from '../config';
import type { Dialer, SocketAddress } from '../proxy';

export function netnsDialer(timeoutMs: number): Dialer {
  return {
    async dial(netnsPath: string, to: SocketAddress): Promise<net.Socket> {
      const fd = await native.connectInNetns(netnsPath, {
        family: to.family, host: to.ip, port: to.port, mark: SOCKET_MARK, timeoutMs,
      });
      return new net.Socket({ fd, allowHalfOpen: true, readable: true, writable: true });
    },
  };
}
