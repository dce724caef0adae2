// Capture: load Ferry's BPF objects, attach them (re-adopting pinned maps and links after a
// restart), and enrol or release pods: their listeners, map entries and sk_lookup link.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as native from '../native';
import type { BpfLinkHandle, BpfMapHandle, BpfObjectHandle } from '../native';
import { DELIVERY, PORTS, SOCKET_MARK } from '../config';
import type { Logger } from '../telemetry';
import type { Service, Workload } from '../state';
import {
  BPF_CONSTANTS,
  MAP_NAMES,
  VERDICTS,
  decodeNetnsCookie,
  decodeOrigin,
  decodeU64,
  encodeBackendKey,
  encodeConfig,
  encodeConnKey,
  encodeIpKey,
  encodeNetnsCookie,
  encodePod,
  encodeService,
  encodeServiceKey,
  encodeSockaddr,
  encodeU32,
  decodeService,
  type SocketAddress,
} from './bpf-layout';
import { CaptureError } from './errors';

export interface CaptureOptions {
  bpfDir: string;
  /** bpffs directory: maps/ and links/ beneath it. */
  pinDir: string;
  /** cgroup v2 directory for connect4/6 and sock_ops. */
  cgroupPath: string;
  /**
   * The agent's own cgroup id (ownCgroup().id): only marked sockets of tasks in this cgroup pass
   * the programs. Every thread of the agent must run in it.
   */
  agentCgroupId: bigint;
  /**
   * During a hand-over, the other agent's cgroup id (its predecessor's, for a successor): its marked
   * sockets pass too until setPeerCgroup(0n) once it has exited.
   */
  peerCgroupId?: bigint;
  serviceLoadBalancing: boolean;
  log: Logger;
}

/** Listening sockets opened in a pod's namespace, and the namespace's cookie. */
export interface PodListeners {
  netnsCookie: bigint;
  outbound: number[];
  inbound: number[];
  /** HBONE (15008) listeners on the pod's wildcard address. */
  hbone: number[];
  /** The inbound listener fd per address family, for the socket map. */
  inboundByFamily: Map<4 | 6, number>;
}

export interface LinkState {
  program: string;
  /** The cgroup directory, or the pod (`namespace/name`) for sk_lookup. */
  target: string;
  linkId: number;
  progId: number;
  attached: boolean;
}

export interface MapState {
  name: string;
  type: string;
  entries: number;
  maxEntries: number;
}

/** One of the programs' verdict counters (ferry_verdicts), read from the kernel. */
export interface VerdictCount {
  program: string;
  verdict: string;
  count: number;
}

/** A pod the programs know: locked (refused) until its listeners are in the socket map, then enrolled. */
interface CapturedPod {
  workload: Workload;
  netnsCookie: bigint;
  link: BpfLinkHandle;
  podId: number;
  /** Set once enrolled: the listeners whose inbound fds are in ferry_inbound. */
  listeners?: PodListeners;
}

/** BPF_MAP_TYPE_* values of the maps Ferry uses (uapi/linux/bpf.h). */
const MAP_TYPE_NAMES: Record<number, string> = { 1: 'hash', 2: 'array', 9: 'lru_hash', 18: 'sockhash' };

export interface CgroupAttachment {
  program: string;
  cgroup: string;
  linkId: number;
  adopted: boolean;
}

const OBJECTS = ['connect', 'sock-ops', 'sk-lookup'] as const;
type ObjectName = (typeof OBJECTS)[number];
const CGROUP_PROGRAMS = [
  { object: 'connect', program: 'ferry_connect4', pin: 'connect4' },
  { object: 'connect', program: 'ferry_connect6', pin: 'connect6' },
  { object: 'sock-ops', program: 'ferry_sock_ops', pin: 'sock_ops' },
] as const;
const SK_LOOKUP_PROGRAM = 'ferry_sk_lookup';

/** bpffs refuses names with dots; '_' never appears in Kubernetes names, so it separates safely. */
function podPinName(workload: Workload): string {
  return `sk_lookup_${workload.namespace}_${workload.name}`;
}

function familyOf(ip: string): 4 | 6 {
  return net.isIPv6(ip) ? 6 : 4;
}

export class CaptureEngine {
  private readonly pods = new Map<string, CapturedPod>();
  /** The last reply-routing change per network namespace path, so changes apply in order. */
  private readonly routingChanges = new Map<string, Promise<void>>();
  private readonly cgroupLinks: BpfLinkHandle[] = [];
  readonly attachments: CgroupAttachment[] = [];
  private nextPodId = 1;
  private serviceIds = new Map<string, number>();
  private nextServiceId = 1;

  private constructor(
    private readonly options: CaptureOptions,
    private readonly objects: Record<ObjectName, BpfObjectHandle>,
    private readonly maps: Record<keyof typeof MAP_NAMES, BpfMapHandle>,
    private readonly log: Logger,
  ) {}

  /** Load the objects (reusing pinned maps), attach the cgroup programs, set the config map. */
  static async start(options: CaptureOptions): Promise<CaptureEngine> {
    const log = options.log.child({ component: 'capture' });
    const mapDir = path.join(options.pinDir, 'maps');
    const linkDir = path.join(options.pinDir, 'links');
    fs.mkdirSync(mapDir, { recursive: true });
    fs.mkdirSync(linkDir, { recursive: true });
    if (!fs.existsSync(options.cgroupPath)) {
      throw new CaptureError('FERRY_ERR_CAPTURE_ATTACH', `cgroup ${options.cgroupPath} does not exist`);
    }

    if (options.agentCgroupId <= 1n) {
      // Id 1 is the root cgroup: every task on the machine would count as the agent.
      throw new CaptureError('FERRY_ERR_CAPTURE_CGROUP', `agent cgroup id ${options.agentCgroupId} is not a cgroup of the agent's own`);
    }

    const loaded: Partial<Record<ObjectName, BpfObjectHandle>> = {};
    for (const name of OBJECTS) {
      const file = path.join(options.bpfDir, `${name}.bpf.o`);
      try {
        loaded[name] = await native.loadObject(file, mapDir);
      } catch (err) {
        for (const o of Object.values(loaded)) o.close();
        throw new CaptureError('FERRY_ERR_CAPTURE_ATTACH', `loading ${file}: ${(err as Error).message}`, { cause: err });
      }
    }
    const objects = loaded as Record<ObjectName, BpfObjectHandle>;
    const maps = Object.fromEntries(Object.entries(MAP_NAMES).map(([key, name]) => [key, objects.connect.map(name)])) as Record<
      keyof typeof MAP_NAMES,
      BpfMapHandle
    >;
    const engine = new CaptureEngine(options, objects, maps, log);

    engine.writeConfig(options.peerCgroupId ?? 0n);
    engine.adoptServiceIds();

    for (const spec of CGROUP_PROGRAMS) {
      const object = objects[spec.object];
      const pinPath = path.join(linkDir, spec.pin);
      try {
        const { link, adopted } = await attachPinned(pinPath, object, spec.program, () =>
          object.attachCgroup(spec.program, options.cgroupPath),
        );
        engine.cgroupLinks.push(link);
        engine.attachments.push({ program: spec.program, cgroup: options.cgroupPath, linkId: link.info.id, adopted });
      } catch (err) {
        engine.close();
        throw new CaptureError(
          'FERRY_ERR_CAPTURE_ATTACH',
          `attaching ${spec.program} to cgroup ${options.cgroupPath}: ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
    log.info({ cgroup: options.cgroupPath, pinDir: options.pinDir, attachments: engine.attachments }, 'capture programs attached');
    return engine;
  }

  private writeConfig(peerCgroupId: bigint): void {
    const flags = this.options.serviceLoadBalancing ? BPF_CONSTANTS.FERRY_CONFIG_SERVICE_LB : 0;
    this.maps.config.update(encodeU32(0), encodeConfig(flags, this.options.agentCgroupId, peerCgroupId), 0);
  }

  /**
   * Let the marked sockets of another agent's cgroup pass too (its predecessor's, while it drains
   * the connections it still serves), or, with 0n, only this agent's again.
   */
  setPeerCgroup(peerCgroupId: bigint): void {
    this.writeConfig(peerCgroupId);
    this.log.info(
      { peerCgroupId: peerCgroupId.toString() },
      peerCgroupId === 0n ? 'only this agent passes capture' : 'hand-over peer passes capture',
    );
  }

  /**
   * Keep the Service ids a previous agent wrote to the pinned VIP table: a restarted agent that
   * numbered Services afresh would write one Service's backends under another's id, which that
   * one's VIP reads until its own entry is rewritten.
   */
  private adoptServiceIds(): void {
    if (!this.options.serviceLoadBalancing) return;
    for (const key of this.maps.services.keys()) {
      const value = this.maps.services.lookup(key);
      if (!value) continue;
      const id = decodeService(value).serviceId;
      this.serviceIds.set(key.toString('hex'), id);
      this.nextServiceId = Math.max(this.nextServiceId, id + 1);
    }
  }

  /**
   * Set the pod's reply routing for deliveries, then open its listeners inside its namespace:
   * outbound on loopback (where connect4/6 send captured connects) and inbound on loopback too —
   * sk_lookup hands it connections for the pod's own addresses whatever the socket's bound
   * address, and binding loopback keeps 15006 itself unreachable from outside the pod.
   */
  async openListeners(workload: Workload): Promise<PodListeners> {
    // The reply route for deliveries with the client's address (see DELIVERY in src/config), before the pod
    // is served, so the first delivery already gets its answer; set already for an adopted pod (EEXIST counts as done).
    await this.enableRouting(workload);
    const families = new Set<4 | 6>(workload.ips.map(familyOf));
    families.add(4);
    const outbound: number[] = [];
    const inbound: number[] = [];
    const hbone: number[] = [];
    const inboundByFamily = new Map<4 | 6, number>();
    let netnsCookie = 0n;
    try {
      for (const family of families) {
        const host = family === 4 ? '127.0.0.1' : '::1';
        const common = { family, host, backlog: 1024, mark: SOCKET_MARK, v6Only: family === 6 } as const;
        const out = await native.listenInNetns(workload.netnsPath, { ...common, port: PORTS.outbound });
        outbound.push(out.fd);
        netnsCookie = out.netnsCookie;
        const inb = await native.listenInNetns(workload.netnsPath, { ...common, port: PORTS.inbound });
        inbound.push(inb.fd);
        inboundByFamily.set(family, inb.fd);
        // HBONE is reached from other nodes at the pod's own address, so it listens on the wildcard;
        // sk_lookup passes Ferry's ports, so the kernel's normal lookup finds it.
        const tunnel = await native.listenInNetns(workload.netnsPath, {
          ...common,
          host: family === 4 ? '0.0.0.0' : '::',
          port: PORTS.hbone,
        });
        hbone.push(tunnel.fd);
      }
    } catch (err) {
      for (const fd of [...outbound, ...inbound, ...hbone]) native.closeFd(fd);
      throw new CaptureError(
        'FERRY_ERR_CAPTURE_ENROL',
        `pod ${workload.uid}: opening listeners in ${workload.netnsPath}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return { netnsCookie, outbound, inbound, hbone, inboundByFamily };
  }

  /**
   * Make the programs refuse the pod's traffic until it is enrolled (fail closed): its sk_lookup
   * link on its namespace, its addresses in ferry_pod_ips with no listener in the socket map (so
   * inbound connections are refused), and its ferry_pods entry LOCKED (so connects that would be
   * captured fail with EPERM). Idempotent; the first step of every enrolment, and where a pod stays
   * while enrolment keeps failing. Returns the namespace's cookie.
   */
  async lock(workload: Workload): Promise<bigint> {
    const existing = this.pods.get(workload.uid);
    if (existing) return existing.netnsCookie;
    const netnsCookie = await this.podNetnsCookie(workload);
    const link = await this.podLink(workload);
    const podId = this.nextPodId++;
    try {
      for (const ip of workload.ips) {
        // A listener a previous agent left in the socket map is closed already (the kernel drops
        // closed sockets from it); delete explicitly all the same, before the pod counts as ours.
        this.maps.inbound.delete(encodeIpKey(ip));
        this.maps.podIps.update(encodeIpKey(ip), encodeU32(BPF_CONSTANTS.FERRY_POD_ENROLLED), 0);
      }
      this.maps.pods.update(encodeNetnsCookie(netnsCookie), this.podEntry(workload, podId, 'locked'), 0);
    } catch (err) {
      this.removeEntries(workload, netnsCookie);
      dropLink(link);
      throw new CaptureError('FERRY_ERR_CAPTURE_ENROL', `pod ${workload.uid}: filling maps: ${(err as Error).message}`, { cause: err });
    }
    this.pods.set(workload.uid, { workload, netnsCookie, link, podId });
    this.log.info(
      { pod: workload.uid, ips: workload.ips, netnsCookie: netnsCookie.toString(), linkId: link.info.id },
      'pod locked: its traffic is refused until it is enrolled',
    );
    return netnsCookie;
  }

  /**
   * Switch capture on for a locked pod whose listeners are open and served: its inbound listener
   * into the socket map, then its ferry_pods entry ENROLLED. On failure the pod stays locked.
   */
  enrol(workload: Workload, listeners: PodListeners): void {
    const pod = this.pods.get(workload.uid);
    if (!pod) throw new CaptureError('FERRY_ERR_CAPTURE_ENROL', `pod ${workload.uid}: enrolled before it was locked`);
    if (pod.netnsCookie !== listeners.netnsCookie) {
      throw new CaptureError(
        'FERRY_ERR_CAPTURE_ENROL',
        `pod ${workload.uid}: its listeners are in another network namespace ` +
          `(cookie ${listeners.netnsCookie}) than the one locked (${pod.netnsCookie}); was the pod recreated?`,
      );
    }
    try {
      for (const ip of workload.ips) {
        const fd = listeners.inboundByFamily.get(familyOf(ip));
        if (fd !== undefined) this.maps.inbound.updateSocket(encodeIpKey(ip), fd);
      }
      this.maps.pods.update(encodeNetnsCookie(pod.netnsCookie), this.podEntry(workload, pod.podId, 'enrolled'), 0);
    } catch (err) {
      for (const ip of workload.ips) this.maps.inbound.delete(encodeIpKey(ip));
      throw new CaptureError('FERRY_ERR_CAPTURE_ENROL', `pod ${workload.uid}: filling maps: ${(err as Error).message}`, { cause: err });
    }
    pod.listeners = listeners;
    this.log.info(
      { pod: workload.uid, ips: workload.ips, netnsCookie: pod.netnsCookie.toString(), linkId: pod.link.info.id },
      'pod enrolled',
    );
  }

  /**
   * Take over a pod the previous agent enrolled, with the listeners it handed over: the same kernel
   * sockets, already in the socket map and serving. Never locked on the way: its sk_lookup link is
   * re-adopted from its pin and its entries are written again as ENROLLED (the inbound listener
   * under each address is the socket already there). Refused when the listeners are not in the
   * pod's network namespace as it is now (the pod was recreated); then nothing has changed.
   */
  async adopt(workload: Workload, listeners: PodListeners): Promise<bigint> {
    if (this.pods.has(workload.uid)) throw new CaptureError('FERRY_ERR_CAPTURE_ENROL', `pod ${workload.uid}: adopted while already held`);
    const netnsCookie = await this.podNetnsCookie(workload);
    if (netnsCookie !== listeners.netnsCookie) {
      throw new CaptureError(
        'FERRY_ERR_CAPTURE_ENROL',
        `pod ${workload.uid}: the listeners handed over are in network namespace ${listeners.netnsCookie}, ` +
          `not ${workload.netnsPath} (cookie ${netnsCookie}); was the pod recreated?`,
      );
    }
    // The reply route for deliveries with the client's address (see DELIVERY in src/config), before the pod
    // is served, so the first delivery already gets its answer; set already for an adopted pod (EEXIST counts as done).
    await this.enableRouting(workload);
    const link = await this.podLink(workload);
    const podId = this.nextPodId++;
    try {
      for (const ip of workload.ips) {
        this.maps.podIps.update(encodeIpKey(ip), encodeU32(BPF_CONSTANTS.FERRY_POD_ENROLLED), 0);
        const fd = listeners.inboundByFamily.get(familyOf(ip));
        if (fd !== undefined) this.maps.inbound.updateSocket(encodeIpKey(ip), fd);
      }
      this.maps.pods.update(encodeNetnsCookie(netnsCookie), this.podEntry(workload, podId, 'enrolled'), 0);
    } catch (err) {
      link.close();
      throw new CaptureError('FERRY_ERR_CAPTURE_ENROL', `pod ${workload.uid}: filling maps: ${(err as Error).message}`, { cause: err });
    }
    this.pods.set(workload.uid, { workload, netnsCookie, link, podId, listeners });
    this.log.info(
      { pod: workload.uid, ips: workload.ips, netnsCookie: netnsCookie.toString(), linkId: link.info.id },
      'pod adopted from the previous agent: enrolled throughout',
    );
    return netnsCookie;
  }

  /** The cookie of the pod's network namespace as it is now. */
  private async podNetnsCookie(workload: Workload): Promise<bigint> {
    try {
      return await native.netnsCookie(workload.netnsPath);
    } catch (err) {
      throw new CaptureError(
        'FERRY_ERR_CAPTURE_ENROL',
        `pod ${workload.uid}: opening its network namespace ${workload.netnsPath}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** The pod's sk_lookup link: re-adopted from its pin (a previous agent's) or attached and pinned. */
  private async podLink(workload: Workload): Promise<BpfLinkHandle> {
    const linkPin = path.join(this.options.pinDir, 'links', podPinName(workload));
    const skLookup = this.objects['sk-lookup'];
    try {
      const { link } = await attachPinned(linkPin, skLookup, SK_LOOKUP_PROGRAM, () =>
        skLookup.attachNetns(SK_LOOKUP_PROGRAM, workload.netnsPath),
      );
      return link;
    } catch (err) {
      throw new CaptureError(
        'FERRY_ERR_CAPTURE_ENROL',
        `pod ${workload.uid}: attaching sk_lookup to ${workload.netnsPath} (pin ${linkPin}): ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  private async enableRouting(workload: Workload): Promise<void> {
    try {
      await this.podRouting(workload, true);
    } catch (err) {
      throw new CaptureError(
        'FERRY_ERR_CAPTURE_ENROL',
        `pod ${workload.uid}: reply routing in ${workload.netnsPath}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  private podEntry(workload: Workload, podId: number, state: 'locked' | 'enrolled'): Buffer {
    return encodePod({ state, podId, excludedPorts: workload.excludeOutboundPorts, excludedCidrs: workload.excludeOutboundCidrs });
  }

  /** Back from enrolled to locked: its listener out of the socket map, connects refused again. */
  unenrol(uid: string): void {
    const pod = this.pods.get(uid);
    if (!pod || pod.listeners === undefined) return;
    for (const ip of pod.workload.ips) this.maps.inbound.delete(encodeIpKey(ip));
    this.maps.pods.update(encodeNetnsCookie(pod.netnsCookie), this.podEntry(pod.workload, pod.podId, 'locked'), 0);
    pod.listeners = undefined;
    this.log.info({ pod: uid }, 'pod locked: its traffic is refused');
  }

  /** Switch capture off for a pod (locked or enrolled): map entries first, then its sk_lookup link. */
  release(uid: string): void {
    const entry = this.pods.get(uid);
    if (!entry) return;
    this.pods.delete(uid);
    this.removeEntries(entry.workload, entry.netnsCookie);
    dropLink(entry.link);
    // The namespace may be gone already (the pod deleted): then so is its routing.
    this.podRouting(entry.workload, false).catch((err: Error) => {
      this.log.debug({ pod: uid, err: err.message }, 'removing the reply routing of a released pod');
    });
    this.log.info({ pod: uid }, 'pod released');
  }

  /**
   * Add or remove a pod's reply routing, one change per namespace at a time: release does not wait
   * for its removal, and each runs on whichever pool thread is free, so a pod released and enrolled
   * again (its addresses changed) must not have the removal land after the new enrolment's add.
   */
  private podRouting(workload: Workload, enable: boolean): Promise<void> {
    const key = workload.netnsPath;
    const previous = this.routingChanges.get(key) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => native.configurePodRouting(key, { ...podRouting(workload), enable }));
    const settled = next.catch(() => undefined);
    this.routingChanges.set(key, settled);
    settled.then(() => {
      if (this.routingChanges.get(key) === settled) this.routingChanges.delete(key);
    });
    return next;
  }

  private removeEntries(workload: Workload, netnsCookie: bigint): void {
    this.maps.pods.delete(encodeNetnsCookie(netnsCookie));
    for (const ip of workload.ips) {
      this.maps.podIps.delete(encodeIpKey(ip));
      this.maps.inbound.delete(encodeIpKey(ip));
    }
  }

  /**
   * After a restart the pinned maps still hold the previous agent's pods. Remove entries for pods
   * this agent is not going to enrol, and sk_lookup links pinned for them.
   */
  async pruneStale(keep: Workload[]): Promise<number> {
    const keepIps = new Set(keep.flatMap((w) => w.ips.map((ip) => encodeIpKey(ip).toString('hex'))));
    const keepCookies = new Set<string>();
    for (const w of keep) keepCookies.add((await native.netnsCookie(w.netnsPath).catch(() => 0n)).toString());
    let removed = 0;
    for (const key of this.maps.pods.keys()) {
      if (!keepCookies.has(decodeNetnsCookie(key).toString())) {
        this.maps.pods.delete(key);
        removed += 1;
      }
    }
    for (const key of this.maps.podIps.keys()) {
      if (!keepIps.has(key.toString('hex'))) {
        this.maps.podIps.delete(key);
        this.maps.inbound.delete(key);
        removed += 1;
      }
    }
    const keepPins = new Set(keep.map(podPinName));
    const linkDir = path.join(this.options.pinDir, 'links');
    for (const name of fs.readdirSync(linkDir)) {
      if (!name.startsWith('sk_lookup_') || keepPins.has(name)) continue;
      const link = native.openPinnedLink(path.join(linkDir, name));
      if (link) {
        dropLink(link);
        removed += 1;
      }
    }
    if (removed > 0) this.log.info({ removed }, 'pruned state left by a previous agent');
    return removed;
  }

  /**
   * Where was the socket accepted on a pod's outbound listener going? sock_ops filed it under the
   * client's port when the SYN left; read and delete the entry (each connection asks once).
   */
  originalDestination(netnsCookie: bigint, family: 4 | 6, clientPort: number): SocketAddress | undefined {
    const key = encodeConnKey(netnsCookie, family, clientPort);
    const value = this.maps.connOrigin.lookup(key);
    if (!value) return undefined;
    this.maps.connOrigin.delete(key);
    const origin = decodeOrigin(value);
    // connect4/6 filed it under the socket's cookie for sock_ops; both copies have served now, so
    // ferry_orig_dst holds only connects still on their way here (what its occupancy gauge shows).
    this.maps.origDst.delete(encodeNetnsCookie(origin.socketCookie));
    return origin.destination;
  }

  /** Mirror the Services into the VIP translation maps used for sockets that are not captured. */
  syncServices(services: readonly Service[]): void {
    if (!this.options.serviceLoadBalancing) return;
    const wanted = new Map<string, { vip: string; port: number; backends: SocketAddress[] }>();
    for (const service of services) {
      for (const vip of service.vips) {
        for (const port of service.ports) {
          const backends = port.endpoints
            .filter((e) => familyOf(e.ip) === familyOf(vip))
            .map((e) => ({ family: familyOf(e.ip), ip: e.ip, port: e.port }));
          wanted.set(encodeServiceKey(vip, port.port).toString('hex'), { vip, port: port.port, backends });
        }
      }
    }
    const existing = new Map(this.maps.services.keys().map((k: Buffer) => [k.toString('hex'), k] as const));
    for (const [hex, key] of existing) {
      if (wanted.has(hex)) continue;
      const value = this.maps.services.lookup(key);
      this.maps.services.delete(key);
      if (value) this.deleteBackends(decodeService(value).serviceId, decodeService(value).backendCount);
    }
    for (const [hex, entry] of wanted) {
      const known = this.serviceIds.get(hex);
      const id = known ?? this.nextServiceId++;
      if (known === undefined) this.serviceIds.set(hex, id);
      const key = encodeServiceKey(entry.vip, entry.port);
      const previous = this.maps.services.lookup(key);
      const previousCount = previous ? decodeService(previous).backendCount : 0;
      entry.backends.forEach((backend, index) => {
        this.maps.backends.update(encodeBackendKey(id, index), encodeSockaddr(backend), 0);
      });
      // Publish the new count only after its backends exist; trim the tail after.
      this.maps.services.update(key, encodeService(id, entry.backends.length), 0);
      for (let index = entry.backends.length; index < previousCount; index++) {
        this.maps.backends.delete(encodeBackendKey(id, index));
      }
    }
  }

  private deleteBackends(serviceId: number, count: number): void {
    for (let index = 0; index < count; index++) this.maps.backends.delete(encodeBackendKey(serviceId, index));
  }

  /** Pods whose traffic the programs capture now (locked ones excluded). */
  enrolledUids(): string[] {
    return [...this.pods.values()].filter((p) => p.listeners !== undefined).map((p) => p.workload.uid);
  }

  /** Every enrolled pod with the listeners it is served on (what a hand-over sends). */
  enrolledListeners(): Array<{ workload: Workload; netnsCookie: bigint; listeners: PodListeners }> {
    const out: Array<{ workload: Workload; netnsCookie: bigint; listeners: PodListeners }> = [];
    for (const p of this.pods.values())
      if (p.listeners) out.push({ workload: p.workload, netnsCookie: p.netnsCookie, listeners: p.listeners });
    return out;
  }

  /** Pods the programs refuse: locked, their enrolment not complete. */
  lockedUids(): string[] {
    return [...this.pods.values()].filter((p) => p.listeners === undefined).map((p) => p.workload.uid);
  }

  /** Name, type and capacity of each map: from the map's info, no walk. */
  mapCapacities(): Array<Omit<MapState, 'entries'>> {
    return Object.values(this.maps).map((map) => ({
      name: map.info.name,
      type: MAP_TYPE_NAMES[map.info.type] ?? `type ${map.info.type}`,
      maxEntries: map.info.maxEntries,
    }));
  }

  /**
   * mapCapacities() with the entries in each map. Counting walks every key (O(entries), one bpf(2)
   * call each) on libuv's pool, off the event loop; the agent samples it on a timer, never per scrape.
   */
  async mapStats(): Promise<MapState[]> {
    const maps = Object.values(this.maps);
    const counts = await Promise.all(maps.map((map) => map.count()));
    return this.mapCapacities().map((capacity, i) => ({ ...capacity, entries: counts[i] }));
  }

  /** The programs' verdict counters: FERRY_VERDICT_COUNT lookups in one array map, cheap enough per scrape. */
  verdicts(): VerdictCount[] {
    return VERDICTS.map(({ index, program, verdict }) => {
      const value = this.maps.verdicts.lookup(encodeU32(index));
      return { program, verdict, count: value ? Number(decodeU64(value)) : 0 };
    });
  }

  /** Every link this agent holds, asked of the kernel now: a link detached behind the agent's back shows here. */
  linkStates(): LinkState[] {
    const state = (program: string, target: string, link: BpfLinkHandle): LinkState => {
      try {
        const info = link.info;
        return { program, target, linkId: info.id, progId: info.progId, attached: info.attached };
      } catch {
        return { program, target, linkId: 0, progId: 0, attached: false };
      }
    };
    return [
      ...this.cgroupLinks.map((link, i) => state(CGROUP_PROGRAMS[i].pin, this.options.cgroupPath, link)),
      ...[...this.pods.values()].map(({ workload, link }) => state('sk_lookup', workload.uid, link)),
    ];
  }

  /** undefined when every program is on its hook; otherwise which is not. */
  detachedReason(): string | undefined {
    const detached = this.linkStates().filter((l) => !l.attached);
    if (detached.length === 0) return undefined;
    return `BPF link detached: ${detached.map((l) => `${l.program} (${l.target}, link ${l.linkId})`).join(', ')}`;
  }

  /**
   * Close every handle without detaching: the links stay pinned, so the programs keep capturing
   * (and refusing, with no listeners) while no agent runs — fail closed across restarts.
   */
  close(): void {
    for (const link of this.cgroupLinks) link.close();
    for (const { link } of this.pods.values()) link.close();
    for (const map of Object.values(this.maps)) map.close();
    for (const object of Object.values(this.objects)) object.close();
  }
}

/** The pod's delivery reply routing, for the families it has addresses of. */
function podRouting(workload: Workload): { mark: number; table: number; families: Array<4 | 6> } {
  const families = [...new Set(workload.ips.map(familyOf))].sort();
  return { mark: DELIVERY.mark, table: DELIVERY.table, families: families.length > 0 ? families : [4] };
}

/** Detach a link and remove its pin: the pod's programs are gone for good, not just this handle. */
function dropLink(link: BpfLinkHandle): void {
  link.detach();
  link.unpin();
  link.close();
}

/** Re-adopt a pinned link (pointing it at the freshly loaded program) or attach and pin a new one. */
async function attachPinned(
  pinPath: string,
  object: BpfObjectHandle,
  program: string,
  attach: () => Promise<BpfLinkHandle>,
): Promise<{ link: BpfLinkHandle; adopted: boolean }> {
  const existing = native.openPinnedLink(pinPath);
  if (existing?.info.attached) {
    existing.updateProgram(object, program);
    return { link: existing, adopted: true };
  }
  if (existing) {
    // Pinned but detached (bpf_link_detach, or its cgroup went away): it captures nothing and the
    // kernel refuses to update it. Replace it.
    existing.unpin();
    existing.close();
  }
  const link = await attach();
  link.pin(pinPath);
  return { link, adopted: false };
}
