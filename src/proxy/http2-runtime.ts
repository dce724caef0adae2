// Whether the running Node.js and its nghttp2 carry the HTTP/2 flood fixes HBONE relies on: the
// agent refuses to start on a runtime without them rather than serve tunnels a peer can knock over.

/** `major.minor.patch` of a version string ("v20.12.1", "1.61.0", "1.61.0-DEV"), or undefined. */
function parse(version: string | undefined): [number, number, number] | undefined {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version ?? '');
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : undefined;
}

function atLeast(have: [number, number, number], need: [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) if (have[i] !== need[i]) return have[i] > need[i];
  return true;
}

/** nghttp2 1.57.0 bounds streams reset before they are answered (rapid reset, CVE-2023-44487). */
const NGHTTP2_RAPID_RESET: [number, number, number] = [1, 57, 0];
/** nghttp2 1.61.0 bounds CONTINUATION frames after a HEADERS frame (CVE-2024-28182). */
const NGHTTP2_CONTINUATION: [number, number, number] = [1, 61, 0];
/**
 * Node.js releases with the CONTINUATION fixes of April 2024 (CVE-2024-27983 in Node's own HTTP/2
 * session teardown, and nghttp2 1.61.0), per release line; every line from 22 on has them. Lines
 * not listed (19 and older than 18) never got them.
 */
const NODE_CONTINUATION: Record<number, [number, number, number]> = { 18: [18, 20, 1], 20: [20, 12, 1], 21: [21, 7, 2] };
const NODE_NEEDED = 'Node.js 18.20.1, 20.12.1, 21.7.2 or any 22 or later';

/**
 * What the runtime lacks for HBONE's HTTP/2 to stand up to a hostile peer, as one message naming
 * each missing fix and the version that has it; undefined when nothing is missing. Pass
 * `process.versions`. nghttp2 is checked on its own because Node can be built against a shared
 * system library (`--shared-nghttp2`), whose version is what `versions.nghttp2` reports.
 */
export function http2RuntimeProblem(versions: NodeJS.ProcessVersions): string | undefined {
  const problems: string[] = [];
  const node = parse(versions.node);
  const nghttp2 = parse(versions.nghttp2);
  if (!node) problems.push(`cannot read the Node.js version (${JSON.stringify(versions.node)}); need ${NODE_NEEDED}`);
  if (!nghttp2) {
    problems.push(`cannot read the nghttp2 version (${JSON.stringify(versions.nghttp2)}); need nghttp2 1.61.0 or later`);
  } else if (!atLeast(nghttp2, NGHTTP2_RAPID_RESET)) {
    problems.push(
      `nghttp2 ${versions.nghttp2} lacks the rapid-reset fix (CVE-2023-44487) and the CONTINUATION-flood fix ` +
        '(CVE-2024-28182): need nghttp2 1.61.0 or later (1.57.0 for rapid reset alone)',
    );
  } else if (!atLeast(nghttp2, NGHTTP2_CONTINUATION)) {
    problems.push(`nghttp2 ${versions.nghttp2} lacks the CONTINUATION-flood fix (CVE-2024-28182): need nghttp2 1.61.0 or later`);
  }
  if (node && node[0] < 22) {
    const need = NODE_CONTINUATION[node[0]];
    if (!need || !atLeast(node, need)) {
      problems.push(`Node.js ${versions.node} lacks the HTTP/2 CONTINUATION fix (CVE-2024-27983): need ${NODE_NEEDED}`);
    }
  }
  return problems.length === 0 ? undefined : `HTTP/2 runtime unsafe for HBONE: ${problems.join('; ')}`;
}
