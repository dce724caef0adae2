// Errors of src/handover, with stable codes.
import { FerryError } from '../errors';

export const HANDOVER_ERROR_CODES = {
  FERRY_ERR_HANDOVER_SOCKET:
    'the hand-over socket could not be made or reached: its directory is not private to its owner, the path is not a ' +
    'socket of ours, or a live agent already listens there',
  FERRY_ERR_HANDOVER_PEER:
    'the other end of the hand-over socket is not an agent of this node: another user (SO_PEERCRED), another node, ' +
    'pin directory or cgroup, or a hand-over to another successor is in progress',
  FERRY_ERR_HANDOVER_PROTOCOL:
    'a hand-over frame was malformed (too long, not JSON, a field missing or wrong), out of order, carried descriptors ' +
    'it should not, or did not come in time; the message names the frame and the field',
  FERRY_ERR_HANDOVER_LISTENER:
    'a descriptor handed over is not the listener its frame describes (not a listening TCP socket, another family, port ' +
    'or network namespace)',
} as const;

export type HandoverErrorCode = keyof typeof HANDOVER_ERROR_CODES;

export class HandoverError extends FerryError<HandoverErrorCode> {}
