// SETTINGS frame payload (RFC 9114 §7.2.4) with the extension settings MASQUE needs:
// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3 / RFC 9220 §3) and SETTINGS_H3_DATAGRAM (RFC 9297 §2.1.1).
import { H3Error, H3ErrorCode } from './errors.js';
import { readVarint, readVarintBig, varintLengthFromFirstByte, encodeVarintBig, encodeVarint, concatBytes } from './varint.js';

export const SettingId = {
  QPACK_MAX_TABLE_CAPACITY: 0x01,
  MAX_FIELD_SECTION_SIZE: 0x06,
  QPACK_BLOCKED_STREAMS: 0x07,
  ENABLE_CONNECT_PROTOCOL: 0x08,
  H3_DATAGRAM: 0x33,
} as const;

/** Ids reserved because they were HTTP/2 settings without an HTTP/3 counterpart (plus 0x00); receipt is H3_SETTINGS_ERROR. */
export const HTTP2_ONLY_SETTING_IDS: ReadonlySet<number> = new Set([0x00, 0x02, 0x03, 0x04, 0x05]);

export interface H3Settings {
  /** QPACK_MAX_TABLE_CAPACITY (0x01); absent means 0. */
  qpackMaxTableCapacity?: number;
  /** MAX_FIELD_SECTION_SIZE (0x06); absent means unlimited. */
  maxFieldSectionSize?: number;
  /** QPACK_BLOCKED_STREAMS (0x07); absent means 0. */
  qpackBlockedStreams?: number;
  /** SETTINGS_ENABLE_CONNECT_PROTOCOL (0x08): the peer accepts Extended CONNECT. */
  enableConnectProtocol?: boolean;
  /** SETTINGS_H3_DATAGRAM (0x33): the peer accepts HTTP Datagrams. */
  h3Datagram?: boolean;
  /** Settings this module does not know, in the order received (ignored by the protocol, kept for inspection). */
  unknown?: Array<{ id: bigint; value: bigint }>;
}

/** What our endpoint announces: no dynamic QPACK table, Extended CONNECT and HTTP Datagrams on. */
export const DEFAULT_LOCAL_SETTINGS: Readonly<H3Settings> = Object.freeze({
  qpackMaxTableCapacity: 0,
  qpackBlockedStreams: 0,
  maxFieldSectionSize: 64 * 1024,
  enableConnectProtocol: true,
  h3Datagram: true,
});

/** A GREASE setting id (0x1f * N + 0x21, RFC 9114 §7.2.4.1) for exercising peers' unknown-setting handling. */
export function greaseSettingId(n: number): number {
  return 0x1f * n + 0x21;
}

const settingsError = (msg: string) => new H3Error(H3ErrorCode.H3_SETTINGS_ERROR, 'connection', msg);
const frameError = (msg: string) => new H3Error(H3ErrorCode.H3_FRAME_ERROR, 'connection', msg);

/** Decode a SETTINGS frame payload. Duplicates, HTTP/2-only ids and bad boolean values are H3_SETTINGS_ERROR. */
export function decodeSettings(payload: Uint8Array): H3Settings {
  const settings: H3Settings = {};
  const seen = new Set<bigint>();
  let pos = 0;
  while (pos < payload.length) {
    const idBig = readVarintBig(payload, pos);
    if (idBig < 0n) throw frameError('SETTINGS payload ends inside a setting identifier');
    pos += varintLengthFromFirstByte(payload[pos]!); // the varint was read whole
    const valueBig = readVarintBig(payload, pos);
    if (valueBig < 0n) throw frameError('SETTINGS payload ends inside a setting value');
    const value = readVarint(payload, pos);
    pos += varintLengthFromFirstByte(payload[pos]!); // the varint was read whole
    if (seen.has(idBig)) throw settingsError(`setting 0x${idBig.toString(16)} appears twice`);
    seen.add(idBig);
    const id = idBig <= 0xffffn ? Number(idBig) : -1;
    if (HTTP2_ONLY_SETTING_IDS.has(id)) throw settingsError(`setting 0x${id.toString(16)} is reserved (HTTP/2 only)`);
    switch (id) {
      case SettingId.QPACK_MAX_TABLE_CAPACITY:
        settings.qpackMaxTableCapacity = value;
        break;
      case SettingId.MAX_FIELD_SECTION_SIZE:
        settings.maxFieldSectionSize = value;
        break;
      case SettingId.QPACK_BLOCKED_STREAMS:
        settings.qpackBlockedStreams = value;
        break;
      case SettingId.ENABLE_CONNECT_PROTOCOL:
        if (valueBig > 1n) throw settingsError(`SETTINGS_ENABLE_CONNECT_PROTOCOL must be 0 or 1, got ${valueBig}`);
        settings.enableConnectProtocol = valueBig === 1n;
        break;
      case SettingId.H3_DATAGRAM:
        if (valueBig > 1n) throw settingsError(`SETTINGS_H3_DATAGRAM must be 0 or 1, got ${valueBig}`);
        settings.h3Datagram = valueBig === 1n;
        break;
      default:
        settings.unknown ??= [];
        settings.unknown.push({ id: idBig, value: valueBig });
    }
  }
  return settings;
}

function* settingPairs(settings: H3Settings): Generator<[number | bigint, number | bigint]> {
  if (settings.qpackMaxTableCapacity !== undefined) yield [SettingId.QPACK_MAX_TABLE_CAPACITY, settings.qpackMaxTableCapacity];
  if (settings.maxFieldSectionSize !== undefined) yield [SettingId.MAX_FIELD_SECTION_SIZE, settings.maxFieldSectionSize];
  if (settings.qpackBlockedStreams !== undefined) yield [SettingId.QPACK_BLOCKED_STREAMS, settings.qpackBlockedStreams];
  if (settings.enableConnectProtocol !== undefined) yield [SettingId.ENABLE_CONNECT_PROTOCOL, settings.enableConnectProtocol ? 1 : 0];
  if (settings.h3Datagram !== undefined) yield [SettingId.H3_DATAGRAM, settings.h3Datagram ? 1 : 0];
  for (const { id, value } of settings.unknown ?? []) yield [id, value];
}

/** Encode a SETTINGS frame payload (identifier/value pairs, known settings first). */
export function encodeSettings(settings: H3Settings): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [id, value] of settingPairs(settings)) {
    for (const v of [id, value]) parts.push(typeof v === 'bigint' ? encodeVarintBig(v) : encodeVarint(v));
  }
  return concatBytes(parts);
}
