/**
 * The embedded broker's metrics: connected clients, messages published, the shared-subscription groups' queues
 * (shared.ts) and the refusals of access control (auth.ts). Counts kept by the broker itself are read at each
 * scrape; messages published are counted from aedes' `publish` event.
 */
import type { Aedes, AedesPublishPacket, Client } from 'aedes';
import type { Counter, Gauge } from 'prom-client';
import { MetricSet } from '../runtime/metrics.ts';
import type { AccessStats } from './auth.ts';
import type { PacketPoolStats } from './packet-pool.ts';
import type { GroupStats } from './shared.ts';

/** What the metrics read from the broker at each scrape (an EmbeddedBroker has both). */
export interface BrokerSources {
  sharedStats(): GroupStats[];
  accessStats(): AccessStats;
  limitStats(): Record<string, number>;
  loginStats(): { checks: number; address: number; user: number; busy: number };
  /** The large packets' buffer pool (packet-pool.ts). */
  poolStats(): PacketPoolStats;
}

/** Sets a counter's series to totals kept elsewhere (cumulative counts the broker already keeps). */
function setTotals<L extends string>(
  c: Counter<L>,
  totals: ReadonlyArray<[Partial<Record<L, string>>, number]>,
): void {
  c.reset();
  for (const [labels, v] of totals) c.inc(labels, v);
}

/** The metrics of one embedded broker. */
export class BrokerMetrics {
  /** The registry and the definitions. */
  readonly set = new MetricSet();
  private aedes: Aedes | undefined;
  private readonly published: Counter;

  constructor(broker: BrokerSources) {
    const s = this.set;
    s.gauge('edgecut_broker_clients', 'clients connected', [], (g) =>
      g.set(this.aedes?.connectedClients ?? 0),
    );
    this.published = s.counter(
      'edgecut_broker_messages_published_total',
      'PUBLISH packets received from clients (the broker’s own $SYS messages are not counted)',
      [],
    );
    this.published.inc(0);
    // Reset first, so a group that ended disappears instead of keeping its last value.
    const groups = (read: (g: GroupStats) => number) => (g: Gauge<'group'>) => {
      g.reset();
      for (const stats of broker.sharedStats()) g.set({ group: stats.key }, read(stats));
    };
    s.gauge(
      'edgecut_broker_shared_queued',
      'QoS 1 messages a shared-subscription group holds for lack of a member able to take them',
      ['group'],
      groups((g) => g.queued),
    );
    s.gauge(
      'edgecut_broker_shared_inflight',
      'messages of a shared-subscription group delivered and not yet acknowledged',
      ['group'],
      groups((g) => g.inflight),
    );
    s.gauge(
      'edgecut_broker_shared_members',
      'connected members of a shared-subscription group',
      ['group'],
      groups((g) => g.connected),
    );
    s.counter(
      'edgecut_broker_shared_delivered_total',
      'messages a shared-subscription group delivered to one of its members',
      ['group'],
      (c) =>
        setTotals(
          c,
          broker.sharedStats().map((g) => [{ group: g.key }, g.delivered]),
        ),
    );
    s.counter(
      'edgecut_broker_shared_dropped_total',
      'messages a shared-subscription group dropped (queue full, QoS 0 with no member able to take it, or the group ended)',
      ['group'],
      (c) =>
        setTotals(
          c,
          broker.sharedStats().map((g) => [{ group: g.key }, g.dropped]),
        ),
    );
    s.counter(
      'edgecut_broker_packet_buffers_total',
      'buffers of large PUBLISH packets (16 KiB and more, plain TCP) by source: a fresh allocation, or one reused after only shared subscriptions read it and every delivery of it completed',
      ['source'],
      (c) => {
        const p = broker.poolStats();
        setTotals(c, [
          [{ source: 'fresh' }, p.taken - p.reused],
          [{ source: 'reused' }, p.reused],
        ]);
      },
    );
    s.gauge(
      'edgecut_broker_packet_pool_idle_bytes',
      'bytes of packet buffers kept for reuse (at most 64 MiB)',
      [],
      (g) => g.set(broker.poolStats().idleBytes),
    );
    s.counter(
      'edgecut_broker_refused_total',
      'CONNECTs, PUBLISHes and SUBSCRIBE filters refused by access control (BROKER_USERS)',
      ['action'],
      (c) => {
        const a = broker.accessStats();
        setTotals(c, [
          [{ action: 'connect' }, a.refusedConnects],
          [{ action: 'publish' }, a.refusedPublishes],
          [{ action: 'subscribe' }, a.refusedSubscribes],
        ]);
      },
    );
    s.counter(
      'edgecut_broker_logins_total',
      'logins by outcome: checked (a password check ran), or refused unchecked with CONNACK 0x03 because of failed logins from the address or for the user, or too many checks waiting (busy)',
      ['outcome'],
      (c) => {
        const l = broker.loginStats();
        setTotals(c, [
          [{ outcome: 'checked' }, l.checks],
          [{ outcome: 'address' }, l.address],
          [{ outcome: 'user' }, l.user],
          [{ outcome: 'busy' }, l.busy],
        ]);
      },
    );
    s.counter(
      'edgecut_broker_limit_refusals_total',
      'connections closed or messages dropped by a resource limit (packet, pre-connect packet, retained, connections, connect rate)',
      ['limit'],
      (c) =>
        setTotals(
          c,
          Object.entries(broker.limitStats()).map(([limit, n]) => [{ limit }, n]),
        ),
    );
  }

  /** Starts counting the messages of a started broker's aedes. */
  attach(aedes: Aedes): void {
    this.aedes = aedes;
    aedes.on('publish', (_packet: AedesPublishPacket, client: Client | null) => {
      if (client) this.published.inc();
    });
  }
}
