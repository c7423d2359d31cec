/**
 * Corrections of aedes 1.2 where it deviates from normative statements of MQTT 3.1.1 that edgecut relies on, made
 * through aedes' hooks (and one wrapped persistence method) so that aedes itself stays unpatched. Each is covered by
 * a test in test/broker-conformance.test.ts that runs on this broker and on Mosquitto:
 *
 * - [MQTT-3.1.3-8] a zero-length client id with CleanSession=0 is refused with CONNACK 0x02 (aedes accepted it);
 * - [MQTT-3.3.1-3] the DUP flag of a received PUBLISH is not propagated to subscribers (aedes forwarded it);
 * - [MQTT-3.8.4-6] a message goes out at no more than the QoS granted to the matching subscription (aedes looked the
 *   subscription up by topic name, so a wildcard subscription got QoS 2 messages at QoS 2 and retained ones at
 *   their stored QoS);
 * - [MQTT-3.3.5-1] overlapping subscriptions deliver at the maximum of their QoS (aedes used whichever matched
 *   first); corrected for clean sessions, whose QoS 0 subscriptions take aedes' QoS>0 delivery path and are downgraded
 *   here. A persistent session keeps aedes' behaviour (its queued messages are bound to aedes' per-QoS path);
 * - [MQTT-3.3.1-1] a message re-sent when a session resumes carries DUP=1 (aedes re-sent it with DUP=0);
 * - [MQTT-4.7.2-1] a persistent session with a `#` or `+/...` filter is not sent messages on `$` topics when it
 *   resumes (aedes queued them for it, and sent them then);
 * - [MQTT-3.1.2-2] a CONNECT with a protocol level the broker does not support gets CONNACK 0x01 (unacceptable
 *   protocol level) before the connection is closed (mqtt-packet's parser refused it, and aedes closed the
 *   connection without a CONNACK); this one wraps the connection's parser, as the packet never reaches a hook.
 */
import { Readable } from 'node:stream';
import type { Aedes, AedesPublishPacket, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes';
import { filterMatches, SHARE_PREFIX } from '../runtime/mqtt-topics.ts';

/** CONNACK, session present 0, return code 0x01: unacceptable protocol level (MQTT 3.1.1 §3.2.2.3). */
const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01]);

/** Error whose return code aedes' authenticate path writes into the CONNACK. */
class RefusedError extends Error {
  constructor(
    message: string,
    readonly returnCode: number,
  ) {
    super(message);
  }
}

/** The subset of aedes' persistence that is wrapped. */
interface OutgoingPersistence {
  outgoingStream(client: { id: string }): Readable;
}

/** The QoS-correcting and protocol-correcting hooks; one instance per broker. */
export class Conformance {
  /** Connections whose CONNECT had an empty client id and CleanSession=0. */
  private readonly emptyIdDurable = new WeakSet<Client>();
  /** QoS granted per topic filter of each connection (non-shared subscriptions). */
  private readonly granted = new WeakMap<Client, Map<string, number>>();

  /** Wires the per-connection correction ([MQTT-3.1.2-2]); call for each new client. */
  attach(client: Client): void {
    const internals = client as unknown as {
      conn: { write(b: Buffer): boolean };
      _parser: { packet: { cmd?: string }; _emitError(err: Error): void };
    };
    const parser = internals._parser;
    const emitError = parser._emitError;
    parser._emitError = function (this: typeof parser, err: Error) {
      // mqtt-packet 9.x refuses a protocol level other than 3, 4 or 5 with this message.
      if (this.packet.cmd === 'connect' && err.message === 'Invalid protocol version')
        internals.conn.write(CONNACK_UNACCEPTABLE_PROTOCOL);
      return emitError.call(this, err);
    };
  }

  /** Wires the listeners and the persistence wrapper; call once after `Aedes.createBroker`. */
  install(aedes: Aedes): void {
    aedes.on('unsubscribe', (topics, client) => {
      const map = this.granted.get(client);
      for (const topic of topics) map?.delete(topic);
    });
    const persistence = (aedes as unknown as { persistence: OutgoingPersistence }).persistence;
    const outgoingStream = persistence.outgoingStream.bind(persistence);
    // [MQTT-3.3.1-1]: a stored message that already has a packet identifier was sent on an earlier connection, so
    // re-sending it when the session resumes is a re-delivery and carries DUP=1. Unsent ones have no identifier yet.
    persistence.outgoingStream = (client) =>
      Readable.from(
        (async function* () {
          for await (const packet of outgoingStream(client) as AsyncIterable<AedesPublishPacket>) {
            yield packet.cmd === 'publish' && packet.messageId !== undefined
              ? { ...packet, dup: true }
              : packet;
          }
        })(),
      );
  }

  /** `preConnect`: remembers a CONNECT that must be refused with 0x02 [MQTT-3.1.3-8]. */
  preConnect(client: Client, packet: ConnectPacket): void {
    if (!packet.clientId && !packet.clean) this.emptyIdDurable.add(client);
  }

  /** `authenticate`: the refusal itself; aedes sends the CONNACK with the return code and closes. */
  authenticate(client: Client): RefusedError | null {
    if (!this.emptyIdDurable.has(client)) return null;
    return new RefusedError('a zero-length client id needs CleanSession=1', 2);
  }

  /**
   * `authorizePublish`: aedes' own rule ($SYS is the broker's), `$share/` is a filter prefix and no topic, and the
   * DUP flag of the sender is the sender's business [MQTT-3.3.1-3]. An error closes the connection, which is one of
   * the two answers 3.1.1 allows to an unauthorized PUBLISH [MQTT-3.3.5-2].
   */
  authorizePublish(packet: PublishPacket): Error | null {
    if (packet.topic.startsWith('$SYS/')) return new Error('$SYS/ topics are reserved');
    if (packet.topic.startsWith(SHARE_PREFIX))
      return new Error('$share/ is reserved for shared subscriptions');
    packet.dup = false;
    return null;
  }

  /**
   * `authorizeSubscribe` for a non-shared subscription: records the QoS granted, and for a clean session lets aedes
   * deliver a QoS 0 subscription through its QoS>0 path so that {@link authorizeForward} picks the QoS of each
   * message [MQTT-3.3.5-1]. The SUBACK still carries the granted QoS (aedes takes it from the SUBSCRIBE).
   */
  authorizeSubscribe(client: Client, sub: Subscription): Subscription {
    let map = this.granted.get(client);
    if (!map) {
      map = new Map();
      this.granted.set(client, map);
    }
    map.set(sub.topic, sub.qos);
    return client.clean && sub.qos === 0 ? { ...sub, qos: 1 } : sub;
  }

  /**
   * `authorizeForward`: the QoS of an outgoing message is the minimum of its own and the highest QoS granted to a
   * matching subscription of the client [MQTT-3.8.4-6], [MQTT-3.3.5-1]; a `$` topic no subscription matches is not
   * sent at all.
   */
  authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const map = this.granted.get(client);
    const dollar = packet.topic.startsWith('$');
    if (!map || (packet.qos === 0 && !dollar)) return packet;
    let max = -1;
    for (const [filter, qos] of map) {
      if (qos > max && filterMatches(filter, packet.topic)) max = qos;
    }
    // [MQTT-4.7.2-1]: aedes queues every QoS>0 message matching a persistent session's filters, '$' topics for '#'
    // included, and sends them when the session resumes. No subscription of the client matches such a message.
    if (dollar && max < 0) return null;
    // Changed in place: aedes hands each delivery its own packet, and its queue-replay path writes the object it
    // passed here rather than the one returned.
    if (max >= 0 && packet.qos > max) packet.qos = max as 0 | 1 | 2;
    return packet;
  }
}
