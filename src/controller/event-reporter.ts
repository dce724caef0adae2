// Reports objects Ferry cannot take as written where their owners look: a Warning Event on the object
// (`kubectl describe`, `kubectl get events`) naming each field, and a log line. One report per object version.
import { CoreV1Api, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { formatFieldPath } from '../errors';
import type { ObjectProblem } from '../k8s';
import type { Logger } from '../telemetry';
import type { ObjectReporter } from './model-builder';

export const INVALID_EVENT_REASON = 'FerryInvalidConfiguration';
export const WARNING_EVENT_REASON = 'FerryConfigurationChanged';
export const CONTROLLER_COMPONENT = 'ferry-controller';
/** Object versions remembered as reported; beyond this the oldest is forgotten (it may be reported again). */
const REPORTED_MAX = 10_000;
/** Kubernetes caps an Event's message at 1 KiB of useful text before it truncates. */
const MESSAGE_MAX = 1024;

export function describeProblems(problems: readonly ObjectProblem[]): string {
  return problems.map((p) => `${p.path.length > 0 ? `${formatFieldPath(p.path)}: ` : ''}${p.message}`).join('; ');
}

export class EventReporter implements ObjectReporter {
  readonly #core: CoreV1Api;
  readonly #log: Logger;
  readonly #reported = new Set<string>();
  readonly #apiVersions: Record<string, string> = {
    Pod: 'v1',
    Namespace: 'v1',
    Service: 'v1',
    AuthorizationPolicy: 'security.istio.io/v1',
    PeerAuthentication: 'security.istio.io/v1',
  };

  constructor(kubeConfig: KubeConfig, log: Logger) {
    this.#core = kubeConfig.makeApiClient(CoreV1Api);
    this.#log = log;
  }

  invalid(kind: string, object: KubernetesObject, problems: readonly ObjectProblem[], warnings: readonly string[]): void {
    const metadata = object.metadata ?? {};
    const key = `${kind}|${metadata.uid ?? ''}|${metadata.resourceVersion ?? ''}`;
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    if (this.#reported.size > REPORTED_MAX) this.#reported.delete(this.#reported.values().next().value as string);
    const subject = `${kind} ${metadata.namespace ? `${metadata.namespace}/` : ''}${metadata.name ?? ''}`;
    const invalid = problems.length > 0;
    const message = (invalid ? describeProblems(problems) : warnings.join('; ')).slice(0, MESSAGE_MAX);
    if (invalid)
      this.#log.warn(
        { object: subject, problems: problems.map((p) => ({ path: formatFieldPath(p.path), message: p.message })), warnings },
        'invalid object',
      );
    else this.#log.info({ object: subject, warnings }, 'object taken with changes');
    const now = new Date();
    void this.#core
      .createNamespacedEvent({
        namespace: metadata.namespace || 'default',
        body: {
          metadata: { generateName: `${metadata.name ?? 'object'}.` },
          involvedObject: {
            apiVersion: this.#apiVersions[kind],
            kind,
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            resourceVersion: metadata.resourceVersion,
          },
          reason: invalid ? INVALID_EVENT_REASON : WARNING_EVENT_REASON,
          message,
          type: 'Warning',
          source: { component: CONTROLLER_COMPONENT },
          reportingComponent: CONTROLLER_COMPONENT,
          reportingInstance: CONTROLLER_COMPONENT,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      })
      .catch((err: unknown) => this.#log.warn({ err: (err as Error).message, object: subject }, 'could not record an event'));
  }
}
