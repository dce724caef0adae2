// The agent's own cgroup v2 directory and id, which the BPF programs compare with the connecting
// task's cgroup before they let a marked socket pass (see ferry_is_agent_socket in bpf/include/helpers.h).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CaptureError } from './errors';

export interface OwnCgroup {
  /** The directory in the cgroup2 filesystem as this process sees it. */
  path: string;
  /** The cgroup id: the directory's inode number in cgroupfs, what bpf_get_current_cgroup_id() returns. */
  id: bigint;
}

/**
 * Where this process sits in the cgroup v2 hierarchy: `/proc/self/cgroup` names the path (the line
 * `0::PATH`, cgroups(7)), relative to our cgroup namespace's root; `/proc/self/mountinfo` gives a
 * cgroup2 mount and the part of the hierarchy it shows (its root field, proc(5)), so the directory is
 * the mount point plus PATH below that root. Throws when the process is not in a cgroup v2
 * hierarchy it can see (hybrid hosts, or a container without the cgroup filesystem mounted).
 */
export function ownCgroup(procSelf = '/proc/self'): OwnCgroup {
  const membership = fs
    .readFileSync(path.join(procSelf, 'cgroup'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  if (!membership) throw new CaptureError('FERRY_ERR_CAPTURE_CGROUP', `${procSelf}/cgroup has no cgroup v2 (0::) entry`);
  const relative = membership.slice(3).replace(/ \(deleted\)$/, '');
  for (const line of fs.readFileSync(path.join(procSelf, 'mountinfo'), 'utf8').split('\n')) {
    // id parent major:minor root mountpoint options [optional fields] - fstype source superoptions
    const [left, right] = line.split(' - ');
    if (right === undefined || !right.startsWith('cgroup2 ')) continue;
    const fields = left.split(' ');
    const root = unescapeMountField(fields[3]);
    const mountPoint = unescapeMountField(fields[4]);
    const below = path.posix.relative(root, relative);
    if (below.startsWith('..')) continue;
    const dir = path.join(mountPoint, below);
    try {
      return { path: dir, id: fs.statSync(dir, { bigint: true }).ino };
    } catch (err) {
      throw new CaptureError('FERRY_ERR_CAPTURE_CGROUP', `own cgroup ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }
  throw new CaptureError('FERRY_ERR_CAPTURE_CGROUP', `no cgroup2 mount in ${procSelf}/mountinfo shows this process's cgroup ${relative}`);
}

/** mountinfo escapes space, tab, newline and backslash as octal (\040 …), proc(5). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
