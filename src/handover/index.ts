// Public surface of src/handover: an agent handing its listening sockets to the one replacing it on
// the node (predecessor.ts), and the replacing agent taking them (successor.ts), over the protocol
// in protocol.ts.
export { HANDOVER_ERROR_CODES, HandoverError, type HandoverErrorCode } from './errors';
export {
  HANDOVER_TIMEOUTS,
  HandoverServer,
  bindHandoverSocket,
  type HandoverTimeouts,
  type OfferedListener,
  type PredecessorRole,
} from './predecessor';
export { PredecessorLink, closeTaken, type SuccessorIdentity, type TakenListeners, type TakenPodListeners } from './successor';
export {
  MAX_MESSAGE_BYTES,
  NODE_LISTENER_KINDS,
  POD_LISTENER_KINDS,
  type NodeListenerKind,
  type PodListenerKind,
  type PodRef,
} from './protocol';
