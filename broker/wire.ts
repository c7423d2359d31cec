/**
 * MQTT 3.1.1 control packet encoding (OASIS mqtt-v3.1.1-os §2), the few lines the broker needs to write PUBLISH
 * packets of its own (shared subscriptions) without a dependency on aedes' private writer. Tests use the same
 * functions to speak raw MQTT to a broker.
 */

/** Control packet types [MQTT-2.2.1]. */
export const PacketType = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  pubrec: 5,
  pubrel: 6,
  pubcomp: 7,
  subscribe: 8,
  suback: 9,
  unsubscribe: 10,
  unsuback: 11,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
} as const;

/** The Remaining Length of the fixed header, 1-4 bytes of 7 bits each [MQTT-2.2.3]. */
export function encodeRemainingLength(length: number): Buffer {
  if (!Number.isInteger(length) || length < 0 || length > 268_435_455) {
    throw new RangeError(`remaining length ${length} out of range`);
  }
  const bytes: number[] = [];
  let x = length;
  do {
    let byte = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) byte |= 0x80;
    bytes.push(byte);
  } while (x > 0);
  return Buffer.from(bytes);
}

/** A UTF-8 string with its 2-byte length prefix [MQTT-1.5.3]. */
export function encodeString(s: string | Buffer): Buffer {
  const body = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  if (body.length > 0xffff) throw new RangeError('string longer than 65535 bytes');
  const out = Buffer.alloc(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

/** A 2-byte packet identifier. */
export function encodeId(id: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(id, 0);
  return out;
}

/** A whole control packet: fixed header (type, flags, remaining length) and the variable header and payload. */
export function encodePacket(type: number, flags: number, ...body: Buffer[]): Buffer {
  const rest = Buffer.concat(body);
  return Buffer.concat([
    Buffer.from([(type << 4) | (flags & 0x0f)]),
    encodeRemainingLength(rest.length),
    rest,
  ]);
}

/** What a PUBLISH carries. */
export interface PublishFields {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  /** DUP: this is a re-delivery [MQTT-3.3.1-1]; always 0 at QoS 0 [MQTT-3.3.1-2]. */
  dup?: boolean;
  retain?: boolean;
  /** Packet identifier, required at QoS 1 and 2 [MQTT-2.3.1-1], absent at QoS 0 [MQTT-2.3.1-5]. */
  messageId?: number;
}

/**
 * A PUBLISH packet's bytes up to its payload [MQTT-3.3]: fixed header, topic and packet identifier. Written before
 * the payload itself (one corked write of both), it sends the packet without copying the payload.
 */
export function encodePublishHeader(p: Omit<PublishFields, 'payload'> & { payloadBytes: number }): Buffer {
  const dup = p.qos > 0 && p.dup === true;
  const flags = (dup ? 0x08 : 0) | (p.qos << 1) | (p.retain ? 0x01 : 0);
  const hasId = p.qos > 0;
  if (hasId && (p.messageId === undefined || p.messageId < 1 || p.messageId > 0xffff)) {
    throw new RangeError(`QoS ${p.qos} PUBLISH needs a packet identifier in 1..65535`);
  }
  const topicLength = Buffer.byteLength(p.topic, 'utf8');
  if (topicLength > 0xffff) throw new RangeError('topic longer than 65535 bytes');
  const head = 2 + topicLength + (hasId ? 2 : 0);
  const length = encodeRemainingLength(head + p.payloadBytes);
  const out = Buffer.allocUnsafe(1 + length.length + head);
  let offset = out.writeUInt8((PacketType.publish << 4) | flags, 0);
  offset += length.copy(out, offset);
  offset = out.writeUInt16BE(topicLength, offset);
  offset += out.write(p.topic, offset, 'utf8');
  if (hasId) out.writeUInt16BE(p.messageId!, offset);
  return out;
}

/** A PUBLISH packet [MQTT-3.3] in one buffer (the payload copied after {@link encodePublishHeader}). */
export function encodePublish(p: PublishFields): Buffer {
  const { payload, ...fields } = p;
  return Buffer.concat([encodePublishHeader({ ...fields, payloadBytes: payload.length }), payload]);
}
