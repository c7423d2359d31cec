/**
 * The one topic map of edgecut. Every MQTT topic the services use, and the kind of payload it carries, is declared
 * here once; no service builds a topic string by hand (CONTRIBUTING.md, convention 2). A robot written in another language
 * needs only this file's table (docs/topics.md is generated from it) and `schemas/edgecut.fbs`.
 */

/** Versioned root of every edgecut topic; a breaking change of any payload bumps it. */
export const TOPIC_ROOT = 'edgecut/v1';

/** How a topic's payload is encoded. */
export type PayloadKind = 'flatbuffers' | 'json' | 'opaque';

/** The roles that own topics (used by access control and the docs). */
export type Role = 'device' | 'worker' | 'planner';

/** One declared topic: a pattern with named `{params}` below {@link TOPIC_ROOT}. */
export interface TopicSpec<P extends string> {
  /** Pattern below the root, e.g. `devices/{device}/request`. */
  readonly pattern: string;
  /** Names of the pattern's parameters, in order. */
  readonly params: readonly P[];
  /** Encoding of the payload. */
  readonly payload: PayloadKind;
  /** The message type carried (FlatBuffers root union member or JSON schema name). */
  readonly message: string;
  /** Whether publishers set the retain flag. */
  readonly retained: boolean;
  /** Who publishes on it. */
  readonly publisher: Role;
  /** What it is for, one line (goes into docs/topics.md). */
  readonly description: string;
  /** Builds the concrete topic for the given parameter values. */
  build(values: Record<P, string>): string;
  /** Builds a subscription filter: omitted parameters become the single-level wildcard `+`. */
  filter(values?: Partial<Record<P, string>>): string;
  /** Parses a concrete topic back into its parameters, or undefined when it is not this topic. */
  match(topic: string): Record<P, string> | undefined;
}

const SEGMENT = /^[A-Za-z0-9._-]{1,64}$/;

/** Thrown when a topic parameter would produce an invalid or ambiguous topic. */
export class TopicParamError extends Error {}

/** Checks an id used as a topic segment: no wildcards, no separators, no `$` [MQTT-4.7.1-1], [MQTT-4.7.1-2]. */
export function assertTopicSegment(name: string, value: string): void {
  if (!SEGMENT.test(value)) {
    throw new TopicParamError(
      `${name} ${JSON.stringify(value)} is not a valid id: use 1-64 characters from A-Z a-z 0-9 . _ -`,
    );
  }
}

function defineTopic<P extends string>(
  pattern: string,
  spec: Omit<TopicSpec<P>, 'pattern' | 'params' | 'build' | 'filter' | 'match'>,
): TopicSpec<P> {
  const parts = pattern.split('/');
  const params = parts.filter((p) => p.startsWith('{')).map((p) => p.slice(1, -1) as P);
  const render = (values: Partial<Record<P, string>>, wildcard: boolean): string =>
    [
      TOPIC_ROOT,
      ...parts.map((part) => {
        if (!part.startsWith('{')) return part;
        const key = part.slice(1, -1) as P;
        const value = values[key];
        if (value === undefined) {
          if (wildcard) return '+';
          throw new TopicParamError(`topic ${pattern} needs a value for ${key}`);
        }
        assertTopicSegment(key, value);
        return value;
      }),
    ].join('/');
  const rootParts = TOPIC_ROOT.split('/');
  return {
    ...spec,
    pattern,
    params,
    build: (values) => render(values, false),
    filter: (values = {}) => render(values, true),
    match(topic) {
      const got = topic.split('/');
      if (got.length !== rootParts.length + parts.length) return undefined;
      if (rootParts.some((p, i) => got[i] !== p)) return undefined;
      const out: Partial<Record<P, string>> = {};
      for (let i = 0; i < parts.length; i++) {
        const want = parts[i]!;
        const have = got[rootParts.length + i]!;
        if (want.startsWith('{')) out[want.slice(1, -1) as P] = have;
        else if (want !== have) return undefined;
      }
      return out as Record<P, string>;
    },
  };
}

/** Every topic of edgecut. */
export const topics = {
  /** Head output of one frame, for any tail worker (through the shared subscription group). */
  request: defineTopic<'device'>('devices/{device}/request', {
    payload: 'flatbuffers',
    message: 'Message{Request}',
    retained: false,
    publisher: 'device',
    description: 'head output of one frame; tail workers take it through the shared subscription group',
  }),
  /** A tail worker's answer to one request: a Result or an Error. */
  result: defineTopic<'device'>('devices/{device}/result', {
    payload: 'flatbuffers',
    message: 'Message{Result|Error}',
    retained: false,
    publisher: 'worker',
    description: "a tail worker's answer to one request (Result, or Error naming the problem)",
  }),
  /** The planner's current plan for one device. */
  plan: defineTopic<'device'>('devices/{device}/plan', {
    payload: 'json',
    message: 'Plan',
    retained: true,
    publisher: 'planner',
    description: 'the planner’s current cut for the device, with predicted stage times and the reason',
  }),
  /** Algorithm 1's prediction of every cut now, between plans, for dashboards; rate-limited. */
  devicePredictions: defineTopic<'device'>('devices/{device}/predictions', {
    payload: 'json',
    message: 'PredictionsMessage',
    retained: false,
    publisher: 'planner',
    description:
      'Algorithm 1’s predicted stage times of every cut now, with the plan’s cut and the best cut now (the live Fig. 3), each time it evaluates new telemetry, QoS 0, at most 1 per second',
  }),
  /** Device telemetry: load, head latency, transfer samples, frames in flight. */
  deviceTelemetry: defineTopic<'device'>('devices/{device}/telemetry', {
    payload: 'json',
    message: 'DeviceTelemetry',
    retained: false,
    publisher: 'device',
    description: 'load average, CPU use, head latency, transfer samples, frames in flight',
  }),
  /** One report per finished frame (stage times, where the tail ran, top-1), for dashboards; rate-limited. */
  deviceFrames: defineTopic<'device'>('devices/{device}/frames', {
    payload: 'json',
    message: 'FrameReportMessage',
    retained: false,
    publisher: 'device',
    description:
      'one report per finished frame (cut, head/transfer/tail ms, fps, who ran the tail, top-1), QoS 0, at most 20 per second (the rest skipped, never the frames)',
  }),
  /** Link probe: opaque bytes the device sends to time its uplink (to the PUBACK); nobody subscribes. */
  deviceProbe: defineTopic<'device'>('devices/{device}/probe', {
    payload: 'opaque',
    message: 'bytes',
    retained: false,
    publisher: 'device',
    description:
      'opaque bytes of growing size, QoS 1, that the device times to their PUBACK to learn its uplink before and while it offloads nothing',
  }),
  /** The device's model and its per-layer profile on the device (P^e). */
  deviceProfile: defineTopic<'device'>('devices/{device}/profile', {
    payload: 'json',
    message: 'Profile|DeclaredProfile',
    retained: true,
    publisher: 'device',
    description:
      'the model the device runs and its per-layer latency on the device, or only its whole-model latency (schemas/profile.ts)',
  }),
  /** Device availability (Last Will `offline`). */
  deviceStatus: defineTopic<'device'>('devices/{device}/status', {
    payload: 'json',
    message: 'Status',
    retained: true,
    publisher: 'device',
    description: 'online/offline; offline is the Last Will',
  }),
  /** Tail worker telemetry: load, queue depth, tail latency. */
  workerTelemetry: defineTopic<'worker'>('workers/{worker}/telemetry', {
    payload: 'json',
    message: 'WorkerTelemetry',
    retained: false,
    publisher: 'worker',
    description: 'load, queue depth, tail latency per model and cut',
  }),
  /** A tail worker's per-layer profile of one model (P^c). */
  workerProfile: defineTopic<'worker' | 'model'>('workers/{worker}/profiles/{model}', {
    payload: 'json',
    message: 'Profile',
    retained: true,
    publisher: 'worker',
    description: 'per-layer latency of one model (by content hash) on the worker (schemas/profile.ts)',
  }),
  /** Tail worker availability (Last Will `offline`). */
  workerStatus: defineTopic<'worker'>('workers/{worker}/status', {
    payload: 'json',
    message: 'Status',
    retained: true,
    publisher: 'worker',
    description: 'online/offline; offline is the Last Will',
  }),
  /** The planner asks the tail workers to load one tail before it moves a device to that cut. */
  tailPrepare: defineTopic<'planner'>('planners/{planner}/prepare', {
    payload: 'json',
    message: 'TailPrepare',
    retained: false,
    publisher: 'planner',
    description:
      'a tail the planner is about to use: workers load its session and report it in their telemetry (`warm`), and the plan follows',
  }),
  /** Planner availability (Last Will `offline`). */
  plannerStatus: defineTopic<'planner'>('planners/{planner}/status', {
    payload: 'json',
    message: 'Status',
    retained: true,
    publisher: 'planner',
    description: 'online/offline; offline is the Last Will',
  }),
} as const;

/**
 * The topics the dashboard reads: the control plane, the frame reports and the predictions of every device, worker
 * and planner; not the data plane (requests, results, probes) nor the planner's instructions to workers. The page
 * subscribes to exactly these (services/dashboard), and the broker's `viewer` role may read exactly these
 * (broker/acl.ts).
 */
export const DASHBOARD_READS = [
  'plan',
  'deviceProfile',
  'deviceStatus',
  'deviceTelemetry',
  'deviceFrames',
  'devicePredictions',
  'workerStatus',
  'workerTelemetry',
  'plannerStatus',
] as const satisfies ReadonlyArray<keyof typeof topics>;

/** Default shared-subscription group of the tail workers. */
export const TAIL_GROUP = 'edgecut-tails';

/** A shared-subscription filter, `$share/<group>/<filter>` (MQTT 5 §4.8.2, also accepted by Mosquitto on 3.1.1). */
export function sharedFilter(group: string, filter: string): string {
  assertTopicSegment('group', group);
  return `$share/${group}/${filter}`;
}
