// node:diagnostics_channel channels for events tools may want without parsing logs.
import diagnosticsChannel from 'node:diagnostics_channel';

export const channels = {
  /** A proxied connection finished; message: the access-log record. */
  connectionClosed: diagnosticsChannel.channel('ferry:connection:closed'),
  /** A pod was enrolled, locked (refused: its workload left the model) or released; message: { uid, action }. */
  podEnrolment: diagnosticsChannel.channel('ferry:pod:enrolment'),
};
