// Wiring of `ferry controller`: informers on the API server feed the model builder, whose output is the config
// stream's resource store; the CA (its key in a Secret) signs for agents authenticated by TokenReview; both
// services share one TLS gRPC port, with a serving certificate the controller issues itself from the mesh CA.
// Start order: CA (the serving certificate needs it) → informers synced → model → gRPC. Stop: the reverse.
import * as grpc from '@grpc/grpc-js';
import { KubeConfig } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import {
  AGENT_TOKEN_AUDIENCE,
  CaService,
  ConfigServer,
  EventReporter,
  KubeCaStore,
  ModelBuilder,
  PodIndex,
  ResourceStore,
  ServingCertificate,
  TokenReviewAuthenticator,
  caServerOptions,
  kubeTokenReviewer,
} from '../controller';
import { DEFAULT_TRUST_DOMAIN } from '../identity';
import { DEFAULT_ROOT_NAMESPACE } from '../policy';
import { clusterWatchStats, createClusterWatch, watchedResources } from '../k8s';
import type { Logger } from '../telemetry';

/** The controller's own identity, and the name agents check its serving certificate against. */
export const CONTROLLER_NAMESPACE = 'ferry-system';
export const CONTROLLER_SERVICE_ACCOUNT = 'ferry-controller';
export const CONTROLLER_SERVER_NAME = 'ferry-controller.ferry-system.svc';
/** The serving certificate's lifetime; it is re-issued at half of it, and whenever another authority signs. */
const SERVING_TTL_SECONDS = 7 * 24 * 3600;

export interface ControllerSettings {
  /** A kubeconfig file; absent: the pod's in-cluster service account. */
  kubeconfig?: string;
  /** `host:port` or `unix:/path` (the sandbox's agents reach it through the filesystem). */
  listen: string;
  trustDomain?: string;
  rootNamespace?: string;
  /** More DNS names for the serving certificate, beside CONTROLLER_SERVER_NAME. */
  dnsNames?: string[];
  /** The serving certificate's lifetime (default 7 days). */
  servingTtlSeconds?: number;
}

export interface RunningController {
  /** The bound port (0 for a unix socket). */
  port: number;
  registry: Registry;
  stats(): Record<string, unknown>;
  stop(): Promise<void>;
}

export async function startController(settings: ControllerSettings, log: Logger): Promise<RunningController> {
  const kube = new KubeConfig();
  if (settings.kubeconfig !== undefined) kube.loadFromFile(settings.kubeconfig);
  else kube.loadFromCluster();
  const trustDomain = settings.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const rootNamespace = settings.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const registry = new Registry();

  const caStore = await KubeCaStore.open({ kube, trustDomain, log: log.child({ component: 'ca' }) });
  const watch = createClusterWatch({ kubeConfig: kube, log: log.child({ component: 'informers' }) });
  const store = new ResourceStore({ rootNamespace });
  const model = new ModelBuilder({
    watch,
    sink: {
      upsert: (kind, key, value) => {
        try {
          store.upsert(kind, key, value);
        } catch (err) {
          log.error({ err, kind, key }, 'model resource refused by the store');
        }
      },
      remove: (kind, key) => store.remove(kind, key),
    },
    reporter: new EventReporter(kube, log.child({ component: 'events' })),
    log,
    rootNamespace,
  });
  // The CA authorizes a CSR from the pods on the agent's node: the same Pod informer, indexed by node.
  const pods = new PodIndex();
  let podsSynced = false;
  watch.pods.on('add', (pod) => pods.upsert(pod));
  watch.pods.on('update', (pod) => pods.upsert(pod));
  watch.pods.on('delete', (pod) => pods.remove(pod));
  for (const resource of watchedResources(watch)) resource.start();
  await Promise.all(watchedResources(watch).map((resource) => resource.synced));
  podsSynced = true;
  log.info(model.counts(), 'cluster synced');

  const authenticator = new TokenReviewAuthenticator({ review: kubeTokenReviewer(kube), audience: AGENT_TOKEN_AUDIENCE });
  const configServer = new ConfigServer({ store, authenticator, log: log.child({ component: 'config' }), registry });
  const caService = new CaService({
    authenticator,
    pods: {
      podsOnNode: (node) => pods.podsOnNode(node),
      get synced() {
        return podsSynced;
      },
    },
    ca: caStore,
    log: log.child({ component: 'ca' }),
  });

  const serving = await ServingCertificate.start({
    ca: caStore,
    identity: { trustDomain, namespace: CONTROLLER_NAMESPACE, serviceAccount: CONTROLLER_SERVICE_ACCOUNT },
    dnsNames: [CONTROLLER_SERVER_NAME, ...(settings.dnsNames ?? [])],
    ttlSeconds: settings.servingTtlSeconds ?? SERVING_TTL_SECONDS,
    log: log.child({ component: 'serving' }),
  });
  const server = new grpc.Server({ ...caServerOptions(), ...configServer.serverOptions() });
  configServer.register(server);
  caService.addTo(server);
  // grpc-js's certificate-provider credentials swap the port's secure context on every new certificate.
  // (Its first parameter is the identity provider, whatever its declaration calls it.)
  const credentials = grpc.experimental.createCertificateProviderServerCredentials(serving, null, false);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(settings.listen, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  log.info({ listen: settings.listen, port, serverName: CONTROLLER_SERVER_NAME }, 'controller serving');

  return {
    port,
    registry,
    stats: () => ({
      config: configServer.stats(),
      ca: caService.stats(),
      serving: serving.stats(),
      informers: clusterWatchStats(watch),
      model: model.counts(),
    }),
    stop: async () => {
      serving.close();
      caService.close();
      await configServer.close();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await Promise.all(watchedResources(watch).map((resource) => resource.stop()));
      await caStore.close();
    },
  };
}
