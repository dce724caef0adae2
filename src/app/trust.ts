// The agent's reaction to its CA's trust bundle, the same whichever CA reports it (the sandbox's CA
// directory or the controller's CA service): trust the new roots at once, re-issue every certificate
// when the issuer changed, and only then count the generation as caught up.
import type { CaChange, RotationPhase, WorkloadCertificates } from '../identity';
import type { Logger } from '../telemetry';

/** The CA generation the agent has caught up with: its roots trusted and, after an issuer change, its certificates re-issued. */
export interface TrustState {
  /** 0 until the first trust bundle is in force. */
  generation: number;
  phase?: RotationPhase;
  issuer?: string;
}

export interface TrustFollower {
  /** Give to the CA's watchTrustBundle as its onChange. */
  onChange(change: CaChange): void;
  state(): TrustState;
}

/**
 * `caughtUp` is called each time a generation is reached (after the re-issue an issuer change needs);
 * a failed re-issue leaves the previous generation in force, logged.
 */
export function followTrust(
  certificates: WorkloadCertificates,
  log: Logger,
  caughtUp: (state: TrustState) => void = () => {},
): TrustFollower {
  let current: TrustState = { generation: 0 };
  return {
    onChange(change: CaChange): void {
      try {
        certificates.setTrustBundle(change.roots);
      } catch (err) {
        log.error({ err, generation: change.generation }, 'trust bundle refused; the previous one stays in force');
        return;
      }
      const renewal =
        change.issuerChanged && !change.first ? certificates.renewAll(`CA issuer is now ${change.issuer}`) : Promise.resolve();
      renewal.then(
        () => {
          current = { generation: change.generation, phase: change.phase, issuer: change.issuer };
          caughtUp(current);
        },
        (err: Error) => log.error({ err }, 're-issuing certificates after an issuer change failed'),
      );
      if (!change.first) log.info({ generation: change.generation, phase: change.phase, issuer: change.issuer }, 'CA changed');
    },
    state: () => ({ ...current }),
  };
}
