// Capture: load Ferry's BPF objects, attach them (re-adopting pinned maps and links after a
// restart), and enrol or release pods: their listeners, map entries and sk_lookup link.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as native from '../native';
import type { BpfLinkHandle, BpfMapHandle, BpfObjectHandle } from '../native';
import { PORTS, SOCKET_MARK } from '../config';
import type { Logger } from '../telemetry';
import type { Service, Workload } from '../state';
import {
  BPF_CONSTANTS, MAP_NAMES, decodeNetnsCookie, decodeOrigin, encodeBackendKey, encodeConfig, encodeConnKey,
  encodeIpKey, encodeNetnsCookie, encodePod, encodeService, encodeServiceKey, encodeSockaddr, encodeU32,
  decodeService, type SocketAddress,
} from './bpf-layout';
import { CaptureError } from './errors';

export interface CaptureOptions {
  bpfDir: string;
  /** bpffs directory: maps/ and links/ beneath it. */
  pinDir: string;
  /** cgroup v2 directory for connect4/6 and sock_ops. */
  cgroupPath: string;
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

/** BPF_MAP_TYPE_* values of the maps Ferry uses (uapi/linux/bpf.h). */
const MAP_TYPE_NAMES: Record<number, string> = { 1: 'hash', 2: 'array', 9: 'lru_hash', 18: 'sockhash' };

export interface CgroupAttachment {
  program: string;
  cgroup: string;
  linkId: number;
  adopted: boolean;
}

const OBJECTS = ['connect', 'sock-ops', 'sk-lookup'] as const;
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
  private readonly enrolled = new Map<string, { workload: Workload; listeners: PodListeners; link: BpfLinkHandle }>();
  private readonly cgroupLinks: BpfLinkHandle[] = [];
  readonly attachments: CgroupAttachment[] = [];
  private nextPodId = 1;
  private serviceIds = new Map<string, number>();

  private constructor(
    private readonly options: CaptureOptions,
    private readonly objects: Map<string, BpfObjectHandle>,
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

    const objects = new Map<string, BpfObjectHandle>();
    for (const name of OBJECTS) {
      const file = path.join(options.bpfDir, `${name}.bpf.o`);
      try {
        objects.set(name, await native.loadObject(file, mapDir));
      } catch (err) {
        for (const o of objects.values()) o.close();
        throw new CaptureError('FERRY_ERR_CAPTURE_ATTACH', `loading ${file}: ${(err as Error).message}`, { cause: err });
      }
    }
    const connect = objects.get('connect')!;
    const maps = Object.fromEntries(
      Object.entries(MAP_NAMES).map(([key, name]) => [key, connect.map(name)]),
    ) as Record<keyof typeof MAP_NAMES, BpfMapHandle>;
    const engine = new CaptureEngine(options, objects, maps, log);

    const flags = options.serviceLoadBalancing ? BPF_CONSTANTS.FERRY_CONFIG_SERVICE_LB : 0;
    maps.config.update(encodeU32(0), encodeConfig(flags), 0);

    for (const spec of CGROUP_PROGRAMS) {
      const object = objects.get(spec.object)!;
      const pinPath = path.join(linkDir, spec.pin);
      try {
        const { link, adopted } = await attachPinned(pinPath, object, spec.program,
          () => object.attachCgroup(spec.program, options.cgroupPath));
        engine.cgroupLinks.push(link);
        engine.attachments.push({ program: spec.program, cgroup: options.cgroupPath, linkId: link.info.id, adopted });
      } catch (err) {
        engine.close();
        throw new CaptureError('FERRY_ERR_CAPTURE_ATTACH',
          `attaching ${spec.program} to cgroup ${options.cgroupPath}: ${(err as Error).message}`, { cause: err });
      }
    }
    log.info({ cgroup: options.cgroupPath, pinDir: options.pinDir, attachments: engine.attachments }, 'capture programs attached');
    return engine;
  }

  /**
   * Open the pod's listeners inside its namespace: outbound on loopback (where connect4/6 send
   * captured connects) and inbound on loopback too — sk_lookup hands it connections for the pod's
   * own addresses whatever the socket's bound address, and binding loopback keeps 15006 itself
   * unreachable from outside the pod.
   */
  async openListeners(workload: Workload): Promise<PodListeners> {
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
          ...common, host: family === 4 ? '0.0.0.0' : '::', port: PORTS.hbone,
        });
        hbone.push(tunnel.fd);
      }
    } catch (err) {
      for (const fd of [...outbound, ...inbound, ...hbone]) native.closeFd(fd);
      throw new CaptureError('FERRY_ERR_CAPTURE_ENROL',
        `pod ${workload.uid}: opening listeners in ${workload.netnsPath}: ${(err as Error).message}`, { cause: err });
    }
    return { netnsCookie, outbound, inbound, hbone, inboundByFamily };
  }

  /**
   * Switch capture on for a pod whose listeners are open and served: sk_lookup link on its
   * namespace, its listener in the socket map, then its entries in the pod maps. Order matters:
   * once a pod is in ferry_pods / ferry_pod_ips its traffic goes to the listeners or nowhere.
   */
  async enrol(workload: Workload, listeners: PodListeners): Promise<void> {
    const linkPin = path.join(this.options.pinDir, 'links', podPinName(workload));
    const skLookup = this.objects.get('sk-lookup')!;
    let link: BpfLinkHandle;
    try {
      ({ link } = await attachPinned(linkPin, skLookup, SK_LOOKUP_PROGRAM,
        () => skLookup.attachNetns(SK_LOOKUP_PROGRAM, workload.netnsPath)));
    } catch (err) {
      throw new CaptureError('FERRY_ERR_CAPTURE_ENROL',
        `pod ${workload.uid}: attaching sk_lookup to ${workload.netnsPath}: ${(err as Error).message}`, { cause: err });
    }
    try {
      for (const ip of workload.ips) {
        const fd = listeners.inboundByFamily.get(familyOf(ip));
        if (fd === undefined) continue;
        this.maps.inbound.updateSocket(encodeIpKey(ip), fd);
        this.maps.podIps.update(encodeIpKey(ip), encodeU32(BPF_CONSTANTS.FERRY_POD_ENROLLED), 0);
      }
      const podId = this.nextPodId++;
      this.maps.pods.update(encodeNetnsCookie(listeners.netnsCookie), encodePod({
        podId, excludedPorts: workload.excludeOutboundPorts, excludedCidrs: workload.excludeOutboundCidrs,
      }), 0);
    } catch (err) {
      this.removeEntries(workload, listeners.netnsCookie);
      dropLink(link);
      throw new CaptureError('FERRY_ERR_CAPTURE_ENROL', `pod ${workload.uid}: filling maps: ${(err as Error).message}`, { cause: err });
    }
    this.enrolled.set(workload.uid, { workload, listeners, link });
    this.log.info({ pod: workload.uid, ips: workload.ips, netnsCookie: listeners.netnsCookie.toString(), linkId: link.info.id },
      'pod enrolled');
  }

  /** Switch capture off for a pod: map entries first, then its sk_lookup link. */
  release(uid: string): void {
    const entry = this.enrolled.get(uid);
    if (!entry) return;
    this.enrolled.delete(uid);
    this.removeEntries(entry.workload, entry.listeners.netnsCookie);
    dropLink(entry.link);
    this.log.info({ pod: uid }, 'pod released');
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
    return decodeOrigin(value).destination;
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
      let id = this.serviceIds.get(hex);
      if (id === undefined) {
        id = this.serviceIds.size + 1;
        this.serviceIds.set(hex, id);
      }
      const key = encodeServiceKey(entry.vip, entry.port);
      const previous = this.maps.services.lookup(key);
      const previousCount = previous ? decodeService(previous).backendCount : 0;
      entry.backends.forEach((backend, index) => {
        this.maps.backends.update(encodeBackendKey(id!, index), encodeSockaddr(backend), 0);
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

  enrolledUids(): string[] {
    return [...this.enrolled.keys()];
  }

  /** Name, type and capacity of each map: from the map's info, no walk. */
  mapCapacities(): Array<Omit<MapState, 'entries'>> {
    return Object.values(this.maps).map((map) => ({
      name: map.info.name, type: MAP_TYPE_NAMES[map.info.type] ?? `type ${map.info.type}`, maxEntries: map.info.maxEntries,
    }));
  }

  /** mapCapacities() with the entries in each map (walks every map's keys: O(entries)). */
  mapStats(): MapState[] {
    const maps = Object.values(this.maps);
    return this.mapCapacities().map((capacity, i) => ({ ...capacity, entries: maps[i].keys().length }));
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
      ...[...this.enrolled.values()].map(({ workload, link }) => state('sk_lookup', workload.uid, link)),
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
    for (const { link } of this.enrolled.values()) link.close();
    for (const map of Object.values(this.maps)) map.close();
    for (const object of this.objects.values()) object.close();
  }
}

/** Detach a link and remove its pin: the pod's programs are gone for good, not just this handle. */
function dropLink(link: BpfLinkHandle): void {
  link.detach();
  link.unpin();
  link.close();
}

/** Re-adopt a pinned link (pointing it at the freshly loaded program) or attach and pin a new one. */
async function attachPinned(
  pinPath: string, object: BpfObjectHandle, program: string, attach: () => Promise<BpfLinkHandle>,
): Promise<{ link: BpfLinkHandle; adopted: boolean }> {
  const existing = native.openPinnedLink(pinPath);
  if (existing && existing.info.attached) {
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
