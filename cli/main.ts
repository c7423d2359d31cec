/**
 * The `edgecut` command line. User errors print one line and exit non-zero; no stack traces for them.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Help, type Option } from 'commander';
import { brokerSettings } from '../broker/config.ts';
import { errorMessage, UserError } from '../runtime/errors.ts';
import { dashboardSettings } from '../services/dashboard/config.ts';
import { edgeSettings } from '../services/edge-head/config.ts';
import { plannerSettings } from '../services/planner/config.ts';
import { tailSettings } from '../services/server-tail/config.ts';
import { DEMO_DEVICE, DEMO_DEVICE_FRAMES, type DemoFlags, runDemo } from './demo.ts';
import { addSettings, readSettings } from './options.ts';
import type { StackFlags } from './stack.ts';

/** The package's version (package.json), for `edgecut --version`. */
const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const program = new Command('edgecut')
  .description('Split deep neural networks between an edge device and tail workers over MQTT.')
  .version(VERSION, '-V, --version', 'print the edgecut version')
  // Required options say so in every command's help (subcommands inherit this).
  .configureHelp({
    optionDescription(this: Help, option: Option): string {
      const text = Help.prototype.optionDescription.call(this, option);
      return option.mandatory ? `${text} (required)` : text;
    },
  })
  // A usage error is one line, like every other error of the CLI (subcommands inherit this).
  .configureOutput({
    outputError: (text, write) =>
      write(
        `edgecut: ${text
          .replace(/^error: /, '')
          .trim()
          .replace(/\s*\n\s*/g, ' ')} (run with --help for usage)\n`,
      ),
  })
  .exitOverride();

addSettings(
  program.command('broker').description('run the embedded MQTT broker (TCP and WebSocket)'),
  brokerSettings,
).action(async (_o, cmd: Command) => {
  const { runBroker } = await import('../broker/main.ts');
  await runBroker(readSettings(cmd, brokerSettings));
});

addSettings(
  program.command('planner').description('run the planner: publishes a plan per device'),
  plannerSettings,
).action(async (_o, cmd: Command) => {
  const { runPlanner } = await import('../services/planner/main.ts');
  await runPlanner(readSettings(cmd, plannerSettings));
});

addSettings(program.command('tail').description('run a server-tail worker'), tailSettings).action(
  async (_o, cmd: Command) => {
    const { runTail } = await import('../services/server-tail/main.ts');
    await runTail(readSettings(cmd, tailSettings));
  },
);

addSettings(
  program.command('edge').description('run an edge-head device on the synthetic camera'),
  edgeSettings,
).action(async (_o, cmd: Command) => {
  const { runEdge } = await import('../services/edge-head/main.ts');
  process.exitCode = await runEdge(readSettings(cmd, edgeSettings));
});

addSettings(
  program
    .command('dashboard')
    .description('serve the live dashboard: a page that reads the broker over MQTT over WebSocket'),
  dashboardSettings,
).action(async (_o, cmd: Command) => {
  const { runDashboard } = await import('../services/dashboard/main.ts');
  await runDashboard(readSettings(cmd, dashboardSettings));
});

program
  .command('health')
  .description("check a service's GET /healthz: exit 0 on 200, else one line and exit 1")
  .option('--url <url>', 'the health URL (default http://127.0.0.1:$METRICS_PORT/healthz)')
  .action(async (o: { url?: string }) => {
    const { healthCommand } = await import('./health.ts');
    process.exitCode = await healthCommand(o);
  });

program
  .command('demo')
  .description(
    'start broker, planner, one tail worker and one edge (an emulated slow device) as separate processes: frames on the device alone, then split by the planner, and the speedup',
  )
  .option(
    '--frames <n>',
    'frames of the split phase; stop after them and check each against the whole model (0 = until Ctrl-C)',
    '0',
  )
  .option(
    '--window <n>',
    'frames in flight (the split phase pipelines them: head, transfer and tail overlap)',
    '4',
  )
  .option('--cut <k>', 'cut of the split phase: auto (Algorithm 1), middle, an index, or a node name', 'auto')
  .option(
    '--device-frames <n>',
    'frames of the first phase, every layer on the device (0 skips it and the speedup)',
    String(DEMO_DEVICE_FRAMES),
  )
  .option(
    '--emulate-device <spec>',
    'the device the edge emulates: a preset (npx edgecut device presets), <g>gflops, x<factor>, or none',
    DEMO_DEVICE,
  )
  .action(async (o: DemoFlags) => {
    process.exitCode = await runDemo(o);
  });

/** Collects a repeatable flag's values. */
const collect = (value: string, previous: string[]): string[] => [...previous, value];

const stack = program
  .command('stack')
  .description(
    'run the services of a Compose file (compose.yaml) as local processes, without a container engine',
  );
for (const [name, description] of [
  ['up', 'start the services (with their dependencies) and supervise them until Ctrl-C'],
  ['config', 'print the processes `stack up` would run, with their translated environment'],
] as const) {
  stack
    .command(`${name} [services...]`)
    .description(description)
    .option('-f, --file <file>', 'the Compose file', 'compose.yaml')
    .option(
      '--scale <service=n>',
      'replicas of a service (repeatable), overriding deploy.replicas',
      collect,
      [],
    )
    .option('--profile <name>', 'enable a Compose profile (repeatable)', collect, [])
    .option(
      '--port-offset <n>',
      'added to every listening port and to the ports of URLs naming a service',
      '0',
    )
    .option(
      '--volumes-dir <dir>',
      'host directory of the named volumes (default: .edgecut/volumes beside the file)',
    )
    .action(async (services: string[], o: StackFlags) => {
      const { stackUpCommand, stackConfigCommand } = await import('./stack.ts');
      if (name === 'up') process.exitCode = await stackUpCommand(services, o);
      else await stackConfigCommand(services, o);
    });
}

const model = program.command('model').description('inspect and split ONNX models');
model
  .command('inspect <model>')
  .description('per-layer table of a model (a file or a zoo name): shapes, FLOPs, parameters, cut sizes')
  .option('--json', 'print the inspection as JSON')
  .action(async (ref: string, o: { json?: boolean }) => {
    const { inspectCommand } = await import('./model.ts');
    await inspectCommand(ref, o);
  });
model
  .command('split <model>')
  .description('write head.onnx, tail.onnx and cut.json for the cut after a node')
  .requiredOption('--after <node>', 'node name or cut index k (0 = full offload)')
  .requiredOption('--out <dir>', 'output directory')
  .action(async (ref: string, o: { after: string; out: string }) => {
    const { splitCommand } = await import('./model.ts');
    await splitCommand(ref, o);
  });

program
  .command('profile [model]')
  .description(
    'measure the per-layer latency profile of a model (a file or a zoo name) on this host, and check it at some cuts; ' +
      "with --sweep, time a grid of single layers (the predictors' training data)",
  )
  .option('--runs <n>', 'timed runs of every measurement', '20')
  .option('--warmup <n>', 'untimed runs before them', '3')
  .option('--threads <n>', 'intra-op threads of every session', '1')
  .option(
    '--check-cuts <n>',
    'cuts at which real head latency is checked against the profile (0 = none)',
    '5',
  )
  .option('--json', 'print the profile as JSON')
  .option('--out <file>', 'write the profile (or, with --sweep, the samples) to this file')
  .option('--sweep', 'time a grid of single-layer models instead of one model')
  .option('--quick', 'with --sweep: a small grid (about 30 layers)')
  .option('--seed <n>', 'with --sweep: seed of the grid')
  .action(async (ref: string | undefined, o: Record<string, string | boolean | undefined>) => {
    const { profileCommand } = await import('./profile.ts');
    await profileCommand(ref, o as never);
  });

program
  .command('plan <model>')
  .description(
    'Algorithm 1 between two devices at a bandwidth: every candidate cut, a text bar chart, the chosen cut',
  )
  .requiredOption('--edge <device>', 'edge device: a preset (edgecut device presets) or GFLOPs')
  .requiredOption('--server <device>', 'server: a preset or GFLOPs')
  .requiredOption('--bandwidth <rate>', 'link rate, e.g. 1mbps, 8kbps, 100mbit/s')
  .option('--alpha-ms <ms>', 'channel set-up time per packet (alpha)', '0')
  .option('--mtu <bytes>', 'packet size M', '1500')
  .option('--load <factor>', 'edge load factor (paper Fig. 17: loadavg1 / cores when above 1)', '1')
  .option(
    '--objective <name>',
    "latency (one frame), throughput (pipelined stream) or energy (device-side joules per frame; needs the edge preset's power figures)",
    'latency',
  )
  .option('--presets <file>', 'a JSON file of your own device presets')
  .option(
    '--host <file>',
    'predictors and GFLOPs of the host they were trained on (default: data/reference-host.json)',
  )
  .option('--json', 'print {best, candidates} as JSON')
  .action(async (ref: string, o: Record<string, string | boolean | undefined>) => {
    const { startProgress, trackHost } = await import('./progress.ts');
    const progress = startProgress('edgecut plan', { since: performance.timeOrigin });
    try {
      progress.step('loading the planner');
      const [{ planCommand }, { loadModelRef }, { loadReferenceHost }] = await Promise.all([
        import('./plan.ts'),
        import('./model-source.ts'),
        import('../measurement/reference-host.ts'),
      ]);
      progress.step('loading the host predictors');
      const host = await loadReferenceHost(typeof o.host === 'string' ? o.host : undefined);
      progress.step(`loading the model ${ref}`);
      const handle = await loadModelRef(ref);
      await planCommand(handle, o as never, trackHost(host.model, progress), host.runtime, progress);
    } finally {
      progress.stop('failed');
    }
  });

const zoo = program.command('zoo').description('the model zoo, built in code');
zoo
  .command('list')
  .description('list the zoo models')
  .action(async () => {
    const { zooListCommand } = await import('./zoo.ts');
    zooListCommand();
  });
zoo
  .command('build <name>')
  .description('build a zoo model into an ONNX file')
  .requiredOption('--out <file>', 'where to write it')
  .option('--seed <n>', 'seed of the random weights', '1')
  .action(async (name: string, o: { out: string; seed: string }) => {
    const { zooBuildCommand } = await import('./zoo.ts');
    await zooBuildCommand(name, o);
  });

const users = program
  .command('users')
  .description('the broker users file (BROKER_USERS): scrypt-hashed passwords and roles (docs/security.md)');
users
  .command('add <file> <username>')
  .description('add a user, or replace its entry; the password is the first line of stdin; creates the file')
  .requiredOption('--role <role>', 'device, worker, planner, viewer (read-only, the dashboard) or admin')
  .option('--device <id>', 'role device: the device id its topics are bound to (default: the user name)')
  .option('--worker <id>', 'role worker: the worker id its topics are bound to (default: the user name)')
  .option('--planner <id>', 'role planner: the planner id its topics are bound to (default: the user name)')
  .action(async (file: string, username: string, o: Record<string, string | undefined>) => {
    const { usersAddCommand } = await import('./users.ts');
    await usersAddCommand(file, username, o);
  });
users
  .command('check <file>')
  .description('check a users file as the broker does at start')
  .action(async (file: string) => {
    const { usersCheckCommand } = await import('./users.ts');
    await usersCheckCommand(file);
  });

const device = program.command('device').description("this host's speed and the device presets");
device
  .command('bench')
  .description(
    "measure this host's sustained GFLOPs (GEMM, convolution) and memory bandwidth through onnxruntime",
  )
  .option('--threads <n>', 'onnxruntime intra-op threads', '1')
  .option('--seconds <s>', 'seconds per kernel', '1')
  .option('--json', 'print the result as JSON')
  .action(async (o: { threads: string; seconds: string; json?: boolean }) => {
    const { deviceBenchCommand } = await import('./device.ts');
    await deviceBenchCommand(o);
  });
device
  .command('presets')
  .description("list the device presets (the paper's devices, plus your own)")
  .option('--presets <file>', 'a JSON file of your own presets')
  .action(async (o: { presets?: string }) => {
    const { devicePresetsCommand } = await import('./device.ts');
    devicePresetsCommand(o);
  });

const bench = program.command('bench').description('benchmarks that run the real services');
bench
  .command('paper')
  .description(
    "measure the paper's scenarios live (emulated devices and links): edge only, full offload, the auto planner and an oracle; writes docs/results.md",
  )
  .option('--quick', 'a reduced grid (one model, one configuration, one uplink)')
  .option('--jobs <n>', 'scenarios measured at once', undefined)
  .option('--out <file>', 'results file, read to resume and written after every scenario')
  .option('--doc <dir>', 'where results.md and its charts go')
  .option(
    '--fresh',
    'measure everything again instead of resuming (with --only: the chosen scenarios and their edge only)',
  )
  .option('--render-only', 'render the doc from the results file without measuring')
  .option(
    '--only <id>',
    'only scenarios whose id (model|edge|tail|uplink) contains this, or robot, or steps (measured again)',
  )
  .option(
    '--auto-only',
    "measure the auto planner's runs again in the scenarios already measured, keeping the rest (after a planner change)",
  )
  .option('--pipelined-only', 'likewise for the pipelined run alone, where it ran with another window')
  .option(
    '--refine-only',
    "measure again, for longer, edge only and the oracle's cuts near its best where they had fewer frames than its second look takes",
  )
  .action(
    async (o: {
      quick?: boolean;
      jobs?: string;
      out?: string;
      doc?: string;
      fresh?: boolean;
      renderOnly?: boolean;
      only?: string;
      autoOnly?: boolean;
      pipelinedOnly?: boolean;
      refineOnly?: boolean;
    }) => {
      const { paperOptions, runPaper } = await import('../bench/paper/run.ts');
      await runPaper(paperOptions({ ...o, docDir: o.doc }));
    },
  );
bench
  .command('soak')
  .description(
    '3 robots, 2 tail workers, the planner and the broker under plan switches and faults (a worker killed, the broker restarted): frames lost and memory growth',
  )
  .option('--minutes <n>', 'how long to run', '10')
  .option('--out <file>', 'results file (JSON)')
  .action(async (o: { minutes: string; out?: string }) => {
    const { run } = await import('../bench/soak.ts');
    await run(['--minutes', o.minutes, ...(o.out ? ['--out', o.out] : [])]);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode;
  } else if (err instanceof UserError) {
    process.stderr.write(`edgecut: ${errorMessage(err)}\n`);
    process.exitCode = 2;
  } else {
    throw err;
  }
}
