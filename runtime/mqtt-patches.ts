/**
 * Two changes to how MQTT.js 5 handles QoS 1 messages, applied per client:
 *
 * 1. No deep copy of outgoing payloads. `_storeAndSend` clones every QoS >= 1 PUBLISH with rfdc before storing it
 *    for retransmission, so that it can undo MQTT 5 topic aliases on the stored copy. For a tensor that clone is
 *    most of a publisher's CPU time; edgecut speaks MQTT 3.1.1, which has no topic aliases, and never mutates a
 *    payload after publishing it, so a shallow copy of the packet is stored instead.
 * 2. Acknowledge after the work. MQTT.js sends the PUBACK of an incoming QoS 1 message as soon as the 'message'
 *    event has fired, and it processes incoming packets one at a time, so holding its callback would stall the
 *    connection (including the PUBACKs of our own replies). Instead the PUBACK of a deferred message is held back
 *    and written when the work is done: a tail worker acknowledges a request only after its reply is published,
 *    so a worker that dies mid-inference leaves the request unacknowledged and the broker gives it to another
 *    member [MQTT-4.3.2]. Held acknowledgements are dropped when the connection closes: packet ids belong to the
 *    session of that connection and must not be acknowledged on another one.
 */
import type { MqttClient, Packet } from 'mqtt';

type SendPacket = (
  packet: Packet,
  cb?: (err?: Error) => void,
  cbStorePut?: () => void,
  noStore?: boolean,
) => void;

interface Internals {
  _sendPacket: SendPacket;
  _storeAndSend: (packet: Packet, cb?: (err?: Error) => void, cbStorePut?: () => void) => void;
  _writePacket: (packet: Packet, cb?: (err?: Error) => void) => void;
  outgoingStore: { put(packet: Packet, cb: (err?: Error) => void): void };
  options: { protocolVersion?: number };
}

/** Stores outgoing QoS >= 1 publishes without deep-copying their payload (MQTT 3.1.1 clients only). */
export function storeWithoutClone(client: MqttClient): void {
  const c = client as unknown as Internals;
  if (c.options.protocolVersion === 5) return;
  c._storeAndSend = (packet, cb, cbStorePut) => {
    const stored = packet.cmd === 'publish' ? { ...packet } : packet;
    c.outgoingStore.put(stored, (err) => {
      if (err) {
        cb?.(err);
        return;
      }
      cbStorePut?.();
      c._writePacket(packet, cb);
    });
  };
}

/** Deferred acknowledgements of one client. */
export interface AckControl {
  /** Holds back the PUBACK of this incoming message until {@link release}. Call from the 'message' event. */
  defer(messageId: number): void;
  /** Sends the held PUBACK (or lets it go at once if it was not held yet). */
  release(messageId: number): void;
  /** Acknowledgements held right now. */
  readonly held: number;
}

/** Lets the caller decide when incoming QoS 1 messages are acknowledged. */
export function controlAcks(client: MqttClient): AckControl {
  const c = client as unknown as Internals;
  const original = c._sendPacket.bind(client);
  const deferred = new Set<number>();
  const held = new Map<number, Packet>();
  c._sendPacket = (packet, cb, cbStorePut, noStore) => {
    if (packet.cmd === 'puback' && packet.messageId !== undefined && deferred.has(packet.messageId)) {
      held.set(packet.messageId, packet);
      // Let MQTT.js go on with the next incoming packet; the PUBACK itself waits.
      cb?.();
      return;
    }
    original(packet, cb, cbStorePut, noStore);
  };
  client.on('close', () => {
    deferred.clear();
    held.clear();
  });
  return {
    defer(id) {
      deferred.add(id);
    },
    release(id) {
      deferred.delete(id);
      const packet = held.get(id);
      if (!packet) return;
      held.delete(id);
      if (client.connected) original(packet);
    },
    get held() {
      return held.size;
    },
  };
}
