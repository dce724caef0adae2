// The `ferry` command line: agent, sandbox and their subcommands (commander).
import { Command, Option } from 'commander';
import { AGENT_LIMITS, DEFAULT_TOKEN_FILE, agentConfigFrom, sandboxPrefixFrom } from '../config';
import { checkNode, formatNodeCheck, realNodeCheckDeps, startAgent, startController } from '../app';
import { probeKernel } from '../native';
import { createLogging, type LogLevel, type Logger } from '../telemetry';
import {
  sandboxChangeObjects,
  sandboxDown,
  sandboxExec,
  sandboxQuery,
  sandboxRotateCa,
  sandboxKillAgent,
  sandboxKillController,
  sandboxKubeconfig,
  sandboxKubectlCommand,
  sandboxStartAgent,
  sandboxUpgradeAgent,
  sandboxStartController,
  superviseSandbox,
  readPlan,
  sandboxPaths,
  sandboxStatus,
  sandboxUp,
  type SandboxStatus,
} from '../sandbox';
import { registerInspect } from './inspect';
import { printPrometheusStatus, printQueryResult } from './prometheus-output';
import { printTable } from './table';

const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/**
 * Runs until SIGTERM or SIGINT, then stops `running` (a failed stop is logged; the process ends either way).
 * The process stays until then even with nothing left to serve (an agent that handed over waits to be stopped).
 */
function stopOnSignal(running: { stop(): Promise<void> }, log: Logger): Promise<void> {
  const hold = setInterval(() => undefined, 2 ** 31 - 1);
  return new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      clearInterval(hold);
      log.info({ signal }, 'stopping');
      running.stop().then(resolve, (err: Error) => {
        log.error({ err }, 'stop failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command('ferry')
    .description('Ferry: a sidecarless service mesh — eBPF capture into one shared node proxy')
    .showHelpAfterError()
    .enablePositionalOptions();

  program
    .command('controller')
    .description('run the controller: watch the API server, stream configuration to agents, sign their workload certificates')
    .option('--kubeconfig <file>', "kubeconfig to reach the API server; default: the pod's in-cluster service account")
    .option('--listen <address>', 'gRPC over TLS for agents: host:port, or unix:/path', '0.0.0.0:15012')
    .option('--trust-domain <name>', 'SPIFFE trust domain', 'cluster.local')
    .option('--root-namespace <name>', 'where mesh-wide policies live', 'ferry-system')
    .option('--dns-name <name...>', 'more DNS names for the serving certificate')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace', 'info')
    .action(
      async (options: {
        kubeconfig?: string;
        listen: string;
        trustDomain: string;
        rootNamespace: string;
        dnsName?: string[];
        logLevel: string;
      }) => {
        const { log } = createLogging(options.logLevel as LogLevel);
        const running = await startController(
          {
            kubeconfig: options.kubeconfig,
            listen: options.listen,
            trustDomain: options.trustDomain,
            rootNamespace: options.rootNamespace,
            dnsNames: options.dnsName ?? [],
          },
          log,
        ).catch((err: Error) => {
          log.fatal({ err }, 'controller failed to start');
          throw err;
        });
        await stopOnSignal(running, log);
      },
    );

  const agent = program.command('agent');
  agent
    .description('run the node agent: capture enrolled pods and proxy their traffic')
    .option('--node <name>', "this node's name (FERRY_NODE)")
    .option(
      '--controller <address>',
      'the controller, host:port or unix:/path, gRPC over TLS: its config stream and CA service (FERRY_CONTROLLER)',
    )
    .option('--controller-ca <file>', "PEM bundle the controller's certificate must chain to (FERRY_CONTROLLER_CA)")
    .option(
      '--controller-server-name <name>',
      "name in the controller's certificate, when not the host of --controller (FERRY_CONTROLLER_SERVER_NAME)",
    )
    .option(
      '--token-file <file>',
      `service-account token presented to the controller, re-read on each connect (FERRY_TOKEN_FILE; default ${DEFAULT_TOKEN_FILE})`,
    )
    .option('--pin-dir <dir>', 'bpffs directory for pinned maps and links (FERRY_PIN_DIR)')
    .option('--cgroup <dir>', 'cgroup v2 directory to attach the connect programs to (FERRY_CGROUP)')
    .option('--bpf-dir <dir>', 'directory with the compiled BPF objects (FERRY_BPF_DIR)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace (FERRY_LOG_LEVEL)')
    .option('--drain-seconds <n>', 'how long SIGTERM lets open connections finish (FERRY_DRAIN_SECONDS)')
    .option('--service-lb', 'translate Service VIPs in BPF for pods that are not captured (no kube-proxy)')
    .option('--trust-domain <name>', 'SPIFFE trust domain (FERRY_TRUST_DOMAIN; default cluster.local)')
    .option(
      '--pod-netns-dir <dir>',
      "the node's pod records (<uid>.json from its kubelet): network namespaces for workloads that arrive without one (FERRY_POD_NETNS_DIR)",
    )
    .option(
      '--handover-socket <path>',
      "the node's hand-over socket: a starting agent takes the listeners of one running there, without refusing a connection (FERRY_HANDOVER_SOCKET; default /run/ferry/agent/NODE.sock)",
    )
    .option('--cert-ttl-seconds <n>', 'workload certificate lifetime, renewed at half-life (FERRY_CERT_TTL_SECONDS; default 86400)')
    .option('--no-hbone', 'carry meshed traffic in plaintext instead of HBONE tunnels (measurement and debugging only)')
    .option('--no-same-node-shortcut', 'send same-node meshed traffic through an HBONE tunnel too, instead of inside the agent')
    .option('--no-traffic-metrics', "do not count connections into Istio's TCP metrics (to measure their cost; health metrics stay)");
  for (const spec of Object.values(AGENT_LIMITS)) {
    agent.option(`${spec.flag} <n>`, `${spec.help} (${spec.env}; default ${spec.default})`);
  }
  agent.action(async (options) => {
    const config = agentConfigFrom(options);
    const logging = createLogging(config.logLevel as LogLevel);
    const { log } = logging;
    const running = await startAgent(config, logging).catch((err: Error) => {
      log.fatal({ err }, 'agent failed to start');
      throw err;
    });
    await stopOnSignal(running, log);
  });

  program
    .command('check')
    .description(
      "preflight of this node: the kernel's BPF features, cgroup v2, bpffs, capabilities, Node.js/nghttp2, another mesh in the way; each failure with its remedy (exit 1 when any fails)",
    )
    .option('--cgroup <dir>', "the agent's --cgroup: checked to be a cgroup v2 directory")
    .option('--pin-dir <dir>', "the agent's --pin-dir: checked to be on a bpf filesystem")
    .option('--cni-conf-dir <dir>', "the node's CNI configuration directory", '/etc/cni/net.d')
    .addOption(new Option('-o, --output <format>', 'text or json').choices(['text', 'json']).default('text'))
    .action((options: { cgroup?: string; pinDir?: string; cniConfDir: string; output: string }) => {
      const report = checkNode(
        {
          ...(options.cgroup !== undefined ? { cgroupPath: options.cgroup } : {}),
          ...(options.pinDir !== undefined ? { pinDir: options.pinDir } : {}),
          cniConfDir: options.cniConfDir,
        },
        realNodeCheckDeps(probeKernel),
      );
      process.stdout.write(options.output === 'json' ? `${JSON.stringify(report, null, 2)}\n` : formatNodeCheck(report));
      process.exitCode = report.ok ? 0 : 1;
    });

  const sandbox = program
    .command('sandbox')
    .description('a whole mesh on this machine, made of network namespaces')
    .enablePositionalOptions();
  const prefixOption = (): Option => new Option('--prefix <name>', 'names of everything made start with this (FERRY_SANDBOX_PREFIX)');

  sandbox
    .command('up')
    .description(
      'build nodes from Kubernetes-shaped YAML, run the dev cluster, ferry controller, a kubelet per node and the agents as Pods, ' +
        "and create the YAML's objects through the API (see: ferry sandbox kubeconfig, ferry sandbox kubectl)",
    )
    .requiredOption('-f, --file <files...>', 'manifest files (Namespace, Pod, Service, ferry.dev Node)')
    .addOption(prefixOption())
    .option('--log-level <level>', "the agents' log level", 'info')
    .option(
      '--agent-arg <arg>',
      'an extra `ferry agent` argument for every agent (repeat it), e.g. --agent-arg=--cert-ttl-seconds=60',
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option('--prometheus', "also run Prometheus (Debian's /usr/bin/prometheus) scraping every agent; see: ferry sandbox query")
    .option(
      '--dual-stack',
      "give every pod an IPv6 address too (node i's pods in fd10:244:i::/64), as in a dual-stack cluster; " + 'Services stay IPv4',
    )
    .action(
      async (options: {
        file: string[];
        prefix?: string;
        logLevel: string;
        agentArg: string[];
        prometheus?: boolean;
        dualStack?: boolean;
      }) => {
        const prefix = sandboxPrefixFrom(options.prefix);
        const plan = await sandboxUp(options.file, {
          prefix,
          report: say,
          logLevel: options.logLevel,
          agentArgs: options.agentArg,
          prometheus: options.prometheus === true,
          dualStack: options.dualStack === true,
        });
        say(`sandbox "${prefix}" is up on its API server${plan.dualStack ? ' (dual-stack)' : ''}: ${plan.nodes.length} nodes`);
        say(`$ kubectl get pods -A -o wide   (kubeconfig: ${sandboxKubeconfig(prefix)})`);
        process.exitCode = await sandboxKubectlCommand(prefix, ['get', 'pods', '-A', '-o', 'wide']);
        say('try: ferry sandbox kubectl get svc -A · ferry sandbox exec NS/POD -- CMD · ferry sandbox down');
      },
    );

  for (const verb of ['apply', 'delete'] as const) {
    sandbox
      .command(verb)
      .description(
        verb === 'apply'
          ? "kubectl apply -f FILE… against the sandbox's API server (any object: policies, Pods, Services, Namespaces)"
          : "kubectl delete -f FILE… against the sandbox's API server",
      )
      .requiredOption('-f, --file <files...>', 'manifest files')
      .addOption(prefixOption())
      .action(async (options: { file: string[]; prefix?: string }) => {
        await sandboxChangeObjects(sandboxPrefixFrom(options.prefix), options.file, verb, say);
      });
  }

  sandbox
    .command('down')
    .description('remove everything the sandbox made (namespaces, veths, cgroups, pins, processes)')
    .addOption(prefixOption())
    .action(async (options: { prefix?: string }) => {
      await sandboxDown(sandboxPrefixFrom(options.prefix), say);
    });

  sandbox
    .command('status')
    .description('nodes, agents, pods and services of the sandbox')
    .addOption(prefixOption())
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .action(async (options: { prefix?: string; output: string }) => {
      const status = await sandboxStatus(sandboxPrefixFrom(options.prefix));
      if (options.output === 'json') say(JSON.stringify(status, null, 2));
      else printStatus(status);
    });

  sandbox
    .command('query')
    .description("run an instant PromQL query against the sandbox's Prometheus (up --prometheus), e.g. query 'up'")
    .argument('<promql>', 'the PromQL expression, evaluated now')
    .addOption(prefixOption())
    .addOption(
      new Option('-o, --output <format>', "table (one row per series) or json (the API's answer)")
        .choices(['table', 'json'])
        .default('table'),
    )
    .action(async (promql: string, options: { prefix?: string; output: string }) => {
      const { raw, response } = await sandboxQuery(sandboxPrefixFrom(options.prefix), promql);
      if (options.output === 'json') {
        say(raw.trimEnd());
        return;
      }
      for (const warning of response.warnings ?? []) process.stderr.write(`warning: ${warning}\n`);
      if (response.data) printQueryResult(say, response.data);
    });

  sandbox
    .command('exec')
    .description('run a command inside a pod (its network namespace and cgroup), e.g. exec shop/client -- curl web')
    .argument('<pod>', 'NAMESPACE/POD')
    .argument('<command...>', 'command and arguments, after --')
    .addOption(prefixOption())
    .passThroughOptions()
    .action(async (pod: string, command: string[], options: { prefix?: string }) => {
      // passThroughOptions keeps the `--` that separates Ferry's options from the command.
      const argv = command[0] === '--' ? command.slice(1) : command;
      process.exitCode = await sandboxExec(sandboxPrefixFrom(options.prefix), pod, argv);
    });

  sandbox
    .command('ca')
    .description("the sandbox's certificate authority")
    .command('rotate')
    .description('replace the root CA in three phases (trust both, switch issuer, drop the old) with no failed request')
    .addOption(prefixOption())
    .action(async (options: { prefix?: string }) => {
      await sandboxRotateCa(sandboxPrefixFrom(options.prefix), say);
    });

  sandbox
    .command('supervise', { hidden: true })
    .description("(started by `up`) the sandbox's dev cluster and its nodes' kubelets, until SIGTERM")
    .addOption(prefixOption())
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace', 'info')
    .action(async (options: { prefix?: string; logLevel: string }) => {
      const prefix = sandboxPrefixFrom(options.prefix);
      const { log } = createLogging(options.logLevel as LogLevel);
      const running = await superviseSandbox(readPlan(prefix), sandboxPaths(prefix), log).catch((err: Error) => {
        log.fatal({ err }, 'sandbox supervisor failed to start');
        throw err;
      });
      await stopOnSignal(running, log);
    });

  sandbox
    .command('kubeconfig')
    .description("print the path of the admin kubeconfig of the sandbox's API server")
    .addOption(prefixOption())
    .action((options: { prefix?: string }) => {
      say(sandboxKubeconfig(sandboxPrefixFrom(options.prefix)));
    });

  sandbox
    .command('kubectl')
    .description("kubectl of the dev cluster's release against the sandbox's API server, e.g. kubectl get pods -A")
    .addOption(prefixOption())
    .argument('[args...]')
    .passThroughOptions()
    .allowUnknownOption()
    .action(async (args: string[], options: { prefix?: string }) => {
      process.exitCode = await sandboxKubectlCommand(sandboxPrefixFrom(options.prefix), args);
    });

  const controllerCommand = sandbox.command('controller').description("stop or start the sandbox's controller");
  controllerCommand
    .command('kill')
    .description('kill the controller (SIGKILL); agents keep serving with the configuration they hold')
    .addOption(prefixOption())
    .action(async (options: { prefix?: string }) => {
      await sandboxKillController(sandboxPrefixFrom(options.prefix));
      say('controller killed');
    });
  controllerCommand
    .command('start')
    .description('start the controller again; agents reconnect and resync')
    .addOption(prefixOption())
    .action(async (options: { prefix?: string }) => {
      await sandboxStartController(sandboxPrefixFrom(options.prefix));
      say('controller serving');
    });

  const agentCommand = sandbox.command('agent').description("stop or start one node's agent");
  agentCommand
    .command('kill')
    .description('kill the agent (SIGKILL); its pods stay captured and refuse connections until it is back')
    .argument('<node>')
    .addOption(prefixOption())
    .action(async (node: string, options: { prefix?: string }) => {
      await sandboxKillAgent(sandboxPrefixFrom(options.prefix), node);
      say(`agent on ${node} killed`);
    });
  agentCommand
    .command('start')
    .description('start the agent again; it re-adopts its pinned programs and re-enrols its pods')
    .argument('<node>')
    .addOption(prefixOption())
    .option(
      '--agent-arg <arg>',
      'extra `ferry agent` argument for this start (repeat it); replaces those given to `up`',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option('--no-wait', 'return once the agent runs, without waiting for it to be ready')
    .action(async (node: string, options: { prefix?: string; agentArg?: string[]; wait: boolean }) => {
      await sandboxStartAgent(sandboxPrefixFrom(options.prefix), node, options.agentArg, { wait: options.wait });
      say(options.wait ? `agent on ${node} ready` : `agent on ${node} started`);
    });

  sandbox
    .command('upgrade')
    .description(
      "replace a node's agent as a DaemonSet surge does: a new agent Pod takes the running agent's listening sockets over (no connection refused), the old one drains and goes",
    )
    .argument('<node>')
    .addOption(prefixOption())
    .option(
      '--agent-arg <arg>',
      'extra `ferry agent` argument for the new agent (repeat it); replaces those given to `up`',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .action(async (node: string, options: { prefix?: string; agentArg?: string[] }) => {
      const pod = await sandboxUpgradeAgent(sandboxPrefixFrom(options.prefix), node, options.agentArg, say);
      say(`agent on ${node} upgraded: ${pod}`);
    });

  registerInspect(program, sandbox);

  await program.parseAsync(argv);
}

function printStatus(status: SandboxStatus): void {
  say(`sandbox "${status.prefix}"${status.dualStack ? ' (dual-stack: every pod has an IPv4 and an IPv6 address)' : ''}`);
  say('');
  printTable(
    say,
    ['NODE', 'NETNS', 'AGENT', 'READY'],
    status.nodes.map((n) => [n.name, n.netns, n.agentRunning ? `pid ${n.agentPid}` : 'not running', n.ready ? 'yes' : 'no']),
  );
  say('');
  printTable(
    say,
    ['POD', 'NODE', 'IPS', 'MESH', 'RUNNING', 'NETNS'],
    status.pods.map((p) => [
      `${p.namespace}/${p.name}`,
      p.node,
      p.ips.join(','),
      p.meshed ? 'enrolled' : '-',
      p.running ? 'yes' : 'no',
      p.netns,
    ]),
  );
  say('');
  printTable(
    say,
    ['SERVICE', 'VIP', 'PORTS', 'ENDPOINTS'],
    status.services.map((s) => [`${s.namespace}/${s.name}`, s.vip, s.ports, s.endpoints.join(' ') || '(none)']),
  );
  say('');
  if (status.prometheus) {
    printPrometheusStatus(say, status.prometheus);
    say('');
  }
  say(`logs: ${status.logDir}`);
}
