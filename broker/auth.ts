/**
 * Authentication and topic access control of the embedded broker, through aedes' hooks (wired in broker.ts).
 *
 * Without a users file every client may connect and do everything (the broker of a single trusted gateway). With
 * one (users.ts):
 * - CONNECT without a user name is refused with CONNACK 0x05 (not authorized), an unknown user or a wrong password
 *   with 0x04 (bad user name or password) (MQTT 3.1.1 §3.2.2.3, table 3.1), and the server then closes the
 *   connection [MQTT-3.2.2-5]. A user of a role bound to an id must connect with that id as client id,
 *   `<id>:<suffix>`, or an empty one (server-assigned); else 0x02 (identifier rejected), so that nobody can take
 *   over, and so cut off, another device's session [MQTT-3.1.4-2].
 * - SUBSCRIBE to a filter the role may not read (acl.ts) gets the failure return code 0x80 (§3.9.3) in its place
 *   of the SUBACK [MQTT-3.8.4-5]; the filter of a shared subscription is checked without its `$share/<group>/`
 *   prefix. Retained messages are sent only for granted subscriptions, so they obey the same rule.
 * - PUBLISH on a topic the role may not publish is acknowledged and dropped: 3.1.1 has no negative PUBACK and lets
 *   the server either do this or close the connection [MQTT-3.3.5-2]; closing would make a misconfigured robot
 *   reconnect in a loop. aedes can only close (its `authorizePublish` error ends the connection, see
 *   node_modules/aedes/lib/handlers/publish.js), so the hook lets the packet through marked, and the wrapped
 *   `aedes.publish` drops marked packets before they are retained or routed.
 * - A Last Will on a topic the role may not publish is not delivered: aedes passes the will through the same
 *   `authorizePublish` and `publish` when the connection ends (node_modules/aedes/lib/client.js, `close`).
 * - A message is forwarded only on a topic the client may read, which also covers messages queued for a persistent
 *   session before the session was taken over by another user (aedes re-authorizes restored subscriptions).
 *
 * Passwords are never logged.
 */
import type { Aedes, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes';
import type { Logger } from '../runtime/log.ts';
import { parseSharedFilter } from '../runtime/mqtt-topics.ts';
import {
  familyPrefix,
  type Grants,
  grantsFor,
  idFits,
  mayPublish,
  mayRead,
  mayRetain,
  maySubscribe,
  viewerGrants,
} from './acl.ts';
import { LOGIN_LIMITS, LoginGate, type LoginLimits } from './logins.ts';
import { verifyNothing, verifyPassword } from './passwords.ts';
import type { User } from './users.ts';

/** Counters of refusals, for metrics. */
export interface AccessStats {
  /** PUBLISH packets (and Last Wills) acknowledged and dropped. */
  refusedPublishes: number;
  /** SUBSCRIBE filters answered with 0x80. */
  refusedSubscribes: number;
  /** CONNECTs refused for credentials or client id. */
  refusedConnects: number;
}

/** A refused CONNECT; aedes writes `returnCode` into the CONNACK and closes the connection. */
export class RefusedError extends Error {
  constructor(
    message: string,
    readonly returnCode: 2 | 3 | 4 | 5,
  ) {
    super(message);
  }
}

/** A connected user and what it may do; `grants` undefined means everything (admin). */
interface Principal {
  user: User;
  grants: Grants | undefined;
  /** Topics already checked for publishing (a device publishes the same few over and over). */
  publishable: Map<string, boolean>;
  /** Refused topics already logged at warn; later refusals go to debug. */
  warned: Set<string>;
}

/** Topics remembered per connection by the caches above. */
const CACHE_LIMIT = 256;

/** Access control of one broker; with no users every hook allows everything. */
export class AccessControl {
  private readonly principals = new WeakMap<Client, Principal>();
  private readonly emptyClientId = new WeakSet<Client>();
  /** Packets refused by `authorizePublish`, dropped by the wrapped `aedes.publish`. */
  private readonly refused = new WeakSet<object>();
  private readonly counts: AccessStats = { refusedPublishes: 0, refusedSubscribes: 0, refusedConnects: 0 };

  /** Throttles password checks (logins.ts). */
  readonly logins: LoginGate;

  /** `users` undefined: no users file, anonymous clients with full access. */
  constructor(
    private readonly users: ReadonlyMap<string, User> | undefined,
    private readonly logger: Logger,
    /** The client's network address, for throttling failed logins per address. */
    private readonly addressOf: (client: Client) => string | undefined = () => undefined,
    loginLimits: LoginLimits = LOGIN_LIMITS,
  ) {
    this.logins = new LoginGate(loginLimits);
  }

  /** Whether a users file is enforced. */
  get enabled(): boolean {
    return this.users !== undefined;
  }

  /** The refusal counters so far. */
  stats(): AccessStats {
    return { ...this.counts };
  }

  /** Wraps `aedes.publish` so that refused packets are dropped; call once after `Aedes.createBroker`. */
  install(aedes: Aedes): void {
    const publish = aedes.publish.bind(aedes) as (p: PublishPacket, c: unknown, done?: unknown) => void;
    (aedes as unknown as { publish: (...args: unknown[]) => void }).publish = (packet, client, done) => {
      const cb = typeof client === 'function' ? client : done;
      if (this.refused.has(packet as object)) (cb as (() => void) | undefined)?.();
      else publish(packet as PublishPacket, client, done);
    };
  }

  /** Marks a PUBLISH to be acknowledged and dropped (refused by another rule than access, e.g. limits.ts). */
  drop(packet: PublishPacket): void {
    this.refused.add(packet);
  }

  /** `preConnect`: remembers a CONNECT with an empty client id (aedes assigns a random one). */
  preConnect(client: Client, packet: ConnectPacket): void {
    if (!packet.clientId) this.emptyClientId.add(client);
  }

  /** `authenticate`: null to accept, else the refusal. */
  async authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
  ): Promise<RefusedError | null> {
    if (!this.users) return null;
    const refuse = (returnCode: 2 | 3 | 4 | 5, why: string) => {
      this.counts.refusedConnects++;
      this.logger.warn({ client: client.id, user: username, returnCode }, `connection refused: ${why}`);
      return new RefusedError(why, returnCode);
    };
    if (username === undefined || username === '') return refuse(5, 'no user name: a users file is in force');
    const user = this.users.get(username);
    const secret = password ?? Buffer.alloc(0);
    const address = this.addressOf(client) ?? 'unknown';
    const checked = await this.logins.run(address, username, async () =>
      user ? verifyPassword(secret, user.hash) : verifyNothing(secret),
    );
    if ('throttled' in checked)
      return refuse(
        3,
        checked.throttled === 'busy'
          ? 'too many logins are being checked; try again'
          : `too many failed logins ${checked.throttled === 'address' ? `from ${address}` : 'for this user'}; try again later`,
      );
    if (!user) return refuse(4, 'unknown user');
    if (!checked.ok) return refuse(4, 'wrong password');
    if (user.id !== undefined && !this.clientIdFits(client, user.id)) {
      const what =
        familyPrefix(user.id) === undefined ? `"${user.id}"` : `"${familyPrefix(user.id)}<anything>"`;
      return refuse(2, `client id must be ${what}, the same followed by ":<suffix>", or empty for this user`);
    }
    const grants =
      user.role === 'viewer'
        ? viewerGrants()
        : user.role === 'admin' || user.id === undefined
          ? undefined
          : grantsFor(user.role, user.id);
    this.principals.set(client, { user, grants, publishable: new Map(), warned: new Set() });
    return null;
  }

  /**
   * `authorizePublish`, after the conformance checks passed: marks a packet the client may not publish, so that it
   * is acknowledged and dropped. `client` is null for the will of a connection aedes no longer knows.
   */
  authorizePublish(client: Client | null, packet: PublishPacket): void {
    if (!this.users) return;
    const principal = client ? this.principals.get(client) : undefined;
    if (principal && !principal.grants) return;
    const allowed = principal !== undefined && this.publishable(principal, packet.topic);
    // A retained message where the topic map says its publishers never retain (requests, telemetry): the broker
    // would keep it for every later subscriber.
    const retainRefused = allowed && packet.retain && !mayRetain(packet.topic);
    if (allowed && !retainRefused) return;
    this.refused.add(packet);
    this.counts.refusedPublishes++;
    const will = client !== null && (client as unknown as { will?: unknown }).will === packet;
    this.refusal(
      principal,
      client,
      packet.topic,
      will ? 'last will dropped' : 'publish dropped',
      retainRefused ? 'RETAIN set on a topic that is never retained' : undefined,
    );
  }

  /**
   * `authorizeSubscribe`: false (SUBACK 0x80) for a filter the client may not read. A malformed `$share/` filter
   * passes here and is refused by shared.ts.
   */
  authorizeSubscribe(client: Client, sub: Subscription): boolean {
    if (!this.users) return true;
    const shared = parseSharedFilter(sub.topic);
    if (shared === null) return true;
    const principal = this.principals.get(client);
    if (principal && (!principal.grants || maySubscribe(principal.grants, shared?.filter ?? sub.topic)))
      return true;
    this.counts.refusedSubscribes++;
    this.refusal(principal, client, sub.topic, 'subscription refused');
    return false;
  }

  /** `authorizeForward`: false for a message on a topic the client may not read. */
  authorizeForward(client: Client, topic: string): boolean {
    if (!this.users) return true;
    const principal = this.principals.get(client);
    if (!principal) return false;
    if (!principal.grants || mayRead(principal.grants, topic)) return true;
    this.logger.debug({ client: client.id, user: principal.user.username, topic }, 'message not forwarded');
    return false;
  }

  private clientIdFits(client: Client, id: string): boolean {
    if (this.emptyClientId.has(client)) return true;
    const own = client.id.includes(':') ? client.id.slice(0, client.id.indexOf(':')) : client.id;
    return idFits(id, own);
  }

  private publishable(principal: Principal, topic: string): boolean {
    let ok = principal.publishable.get(topic);
    if (ok === undefined) {
      ok = mayPublish(principal.grants!, topic);
      if (principal.publishable.size >= CACHE_LIMIT) principal.publishable.clear();
      principal.publishable.set(topic, ok);
    }
    return ok;
  }

  /** Logs a refusal at warn the first time per connection and topic, then at debug (a robot may retry at 30 Hz). */
  private refusal(
    principal: Principal | undefined,
    client: Client | null,
    topic: string,
    what: string,
    why = 'not allowed for this user',
  ): void {
    const fields = { client: client?.id, user: principal?.user.username, role: principal?.user.role, topic };
    if (principal?.warned.has(topic)) {
      this.logger.debug(fields, what);
      return;
    }
    if (principal && principal.warned.size < CACHE_LIMIT) principal.warned.add(topic);
    this.logger.warn(fields, `${what}: ${why}`);
  }
}
