// HTTP/3 message validation (RFC 9114 §4.1.2, §4.2, §4.3; Extended CONNECT RFC 9220 / RFC 8441 §4;
// Capsule Protocol RFC 9297 §3.2) and helpers to build requests and responses.
// A malformed message is a stream error H3_MESSAGE_ERROR.
import { H3Error, H3ErrorCode } from './errors.js';
import { encodeDataFrame, encodeHeadersFrame } from './frames.js';
import { encodeFieldSection, type HeaderField } from './qpack.js';

const malformed = (msg: string) => new H3Error(H3ErrorCode.H3_MESSAGE_ERROR, 'stream', msg);

export type ValidatedRequest =
  /** Extended CONNECT (RFC 9220): :protocol names the tunnel (connect-udp, connect-ip, ...). */
  | {
      kind: 'extended-connect';
      method: 'CONNECT';
      protocol: string;
      scheme: string;
      authority: string;
      path: string;
      headers: HeaderField[];
      capsuleProtocol: boolean;
    }
  /** Classic CONNECT (a TCP tunnel to :authority). */
  | { kind: 'connect'; method: 'CONNECT'; authority: string; headers: HeaderField[] }
  /** Any other request. authority is :authority or else the Host header. */
  | { kind: 'request'; method: string; scheme: string; authority: string | undefined; path: string; headers: HeaderField[]; contentLength: number | undefined };

export interface ValidatedResponse {
  status: number;
  headers: HeaderField[];
  contentLength: number | undefined;
  capsuleProtocol: boolean;
}

export interface ValidateRequestOptions {
  /** Whether we announced SETTINGS_ENABLE_CONNECT_PROTOCOL; without it :protocol is malformed. Default true. */
  extendedConnect?: boolean;
}

const REQUEST_PSEUDO = new Set([':method', ':scheme', ':authority', ':path', ':protocol']);
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
// RFC 9110 token characters, lowercase only (RFC 9114 §4.2: uppercase names are malformed).
const NAME_CHAR = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const BAD_VALUE_CHAR = /[\0\r\n]/;

interface Split {
  pseudo: Map<string, string>;
  headers: HeaderField[];
}

/** Shared checks: name syntax, value characters, pseudo-header placement and duplicates, connection headers. */
function split(fields: readonly HeaderField[], allowedPseudo: ReadonlySet<string>, what: string): Split {
  const pseudo = new Map<string, string>();
  const headers: HeaderField[] = [];
  for (const f of fields) {
    if (BAD_VALUE_CHAR.test(f.value)) throw malformed(`${what} field ${JSON.stringify(f.name)} has NUL, CR or LF in its value`);
    if (f.name.startsWith(':')) {
      if (!allowedPseudo.has(f.name)) throw malformed(`${what} has pseudo-header ${JSON.stringify(f.name)}`);
      if (headers.length > 0) throw malformed(`${what} pseudo-header ${f.name} follows a regular field`);
      if (pseudo.has(f.name)) throw malformed(`${what} repeats ${f.name}`);
      pseudo.set(f.name, f.value);
      continue;
    }
    if (!NAME_CHAR.test(f.name)) throw malformed(`${what} field name ${JSON.stringify(f.name)} is empty, not a token or not lowercase`);
    if (CONNECTION_SPECIFIC.has(f.name)) throw malformed(`${what} has connection-specific field ${f.name}`);
    if (f.name === 'te' && f.value !== 'trailers') throw malformed(`${what} has TE other than "trailers"`);
    headers.push(f);
  }
  return { pseudo, headers };
}

/** The value of Content-Length (all copies must agree), or undefined. */
function contentLength(headers: readonly HeaderField[], what: string): number | undefined {
  let result: number | undefined;
  for (const h of headers) {
    if (h.name !== 'content-length') continue;
    for (const part of h.value.split(',')) {
      const v = part.trim();
      if (!/^[0-9]{1,15}$/.test(v)) throw malformed(`${what} content-length ${JSON.stringify(h.value)} is not a number`);
      const n = Number(v);
      if (result !== undefined && result !== n) throw malformed(`${what} has conflicting content-length values`);
      result = n;
    }
  }
  return result;
}

/** Capsule-Protocol (RFC 9297 §3.4) is a structured-field Boolean; only `?1` (with optional parameters) means true. */
function capsuleProtocol(headers: readonly HeaderField[]): boolean {
  const values = headers.filter((h) => h.name === 'capsule-protocol');
  const only = values[0];
  if (values.length !== 1 || !only) return false;
  return /^\s*\?1\s*(;.*)?$/.test(only.value);
}

/** First value of a regular header, or undefined. */
export function getHeader(headers: readonly HeaderField[], name: string): string | undefined {
  for (const h of headers) if (h.name === name) return h.value;
  return undefined;
}

function required(p: Map<string, string>, name: string, what: string): string {
  const v = p.get(name);
  if (v === undefined || v === '') throw malformed(`${what} lacks ${name}`);
  return v;
}

/** Validate a decoded request header section; throws H3Error(H3_MESSAGE_ERROR, 'stream') when malformed. */
export function validateRequestHeaders(fields: readonly HeaderField[], opts: ValidateRequestOptions = {}): ValidatedRequest {
  const { pseudo, headers } = split(fields, REQUEST_PSEUDO, 'request');
  const method = required(pseudo, ':method', 'request');
  const protocol = pseudo.get(':protocol');
  if (protocol !== undefined) {
    if (opts.extendedConnect === false) throw malformed(':protocol sent but Extended CONNECT is not enabled');
    if (method !== 'CONNECT') throw malformed(`:protocol with :method ${method} (must be CONNECT)`);
    if (protocol === '') throw malformed('empty :protocol');
    const scheme = required(pseudo, ':scheme', 'Extended CONNECT');
    const authority = required(pseudo, ':authority', 'Extended CONNECT');
    const path = required(pseudo, ':path', 'Extended CONNECT');
    const capsules = capsuleProtocol(headers);
    if (capsules && headers.some((h) => h.name === 'content-length' || h.name === 'content-type')) {
      throw malformed('a Capsule Protocol request must not carry content-length or content-type');
    }
    return { kind: 'extended-connect', method: 'CONNECT', protocol, scheme, authority, path, headers, capsuleProtocol: capsules };
  }
  if (method === 'CONNECT') {
    if (pseudo.has(':scheme') || pseudo.has(':path')) throw malformed('CONNECT without :protocol must not carry :scheme or :path');
    return { kind: 'connect', method: 'CONNECT', authority: required(pseudo, ':authority', 'CONNECT'), headers };
  }
  const scheme = required(pseudo, ':scheme', 'request');
  const path = required(pseudo, ':path', 'request');
  let authority = pseudo.get(':authority');
  const host = getHeader(headers, 'host');
  if (authority !== undefined && host !== undefined && authority !== host) throw malformed(':authority and host differ');
  authority ??= host;
  if (scheme === 'http' || scheme === 'https') {
    if (authority === undefined || authority === '') throw malformed(`${scheme} request lacks :authority and host`);
    if (!path.startsWith('/') && !(method === 'OPTIONS' && path === '*')) throw malformed(`:path ${JSON.stringify(path)} does not start with "/"`);
  }
  return { kind: 'request', method, scheme, authority, path, headers, contentLength: contentLength(headers, 'request') };
}

const RESPONSE_PSEUDO = new Set([':status']);

/** Validate a decoded response header section (interim 1xx or final). */
export function validateResponseHeaders(fields: readonly HeaderField[]): ValidatedResponse {
  const { pseudo, headers } = split(fields, RESPONSE_PSEUDO, 'response');
  const s = pseudo.get(':status');
  if (s === undefined) throw malformed('response lacks :status');
  if (!/^[1-5][0-9][0-9]$/.test(s)) throw malformed(`:status ${JSON.stringify(s)} is not a three-digit code`);
  const status = Number(s);
  if (status === 101) throw malformed('101 (Switching Protocols) is not allowed in HTTP/3');
  return { status, headers, contentLength: contentLength(headers, 'response'), capsuleProtocol: status >= 200 && status < 300 && capsuleProtocol(headers) };
}

/** Validate a trailer section: no pseudo-headers. */
export function validateTrailers(fields: readonly HeaderField[]): HeaderField[] {
  return split(fields, new Set(), 'trailer section').headers;
}

// ---------------------------------------------------------------- builders

export type HeaderInput = readonly HeaderField[] | Readonly<Record<string, string>>;

function toFields(h: HeaderInput | undefined): HeaderField[] {
  if (!h) return [];
  if (Array.isArray(h)) return h as HeaderField[];
  return Object.entries(h).map(([name, value]) => ({ name: name.toLowerCase(), value }));
}

/** Fields of a response: :status first, then the headers. */
export function responseFields(status: number, headers?: HeaderInput): HeaderField[] {
  if (!Number.isInteger(status) || status < 100 || status > 599) throw new H3Error(H3ErrorCode.H3_INTERNAL_ERROR, 'stream', `status ${status} is not 100..599`);
  return [{ name: ':status', value: String(status) }, ...toFields(headers)];
}

export interface ResponseSpec {
  status: number;
  headers?: HeaderInput;
  /** Body: a string is sent as UTF-8. content-length is added when there is a body. */
  body?: Uint8Array | string;
}

/** A complete response as bytes for the request stream: a HEADERS frame, then a DATA frame if there is a body. */
export function encodeResponse(spec: ResponseSpec): Uint8Array {
  const body = typeof spec.body === 'string' ? Buffer.from(spec.body, 'utf8') : spec.body;
  const fields = responseFields(spec.status, spec.headers);
  if (body !== undefined && !fields.some((f) => f.name === 'content-length')) fields.push({ name: 'content-length', value: String(body.length) });
  const headers = encodeHeadersFrame(encodeFieldSection(fields));
  if (body === undefined || body.length === 0) return headers;
  const data = encodeDataFrame(body);
  const out = new Uint8Array(headers.length + data.length);
  out.set(headers, 0);
  out.set(data, headers.length);
  return out;
}

/** A JSON response (content-type application/json). */
export function encodeJsonResponse(status: number, value: unknown, headers?: HeaderInput): Uint8Array {
  return encodeResponse({ status, headers: [{ name: 'content-type', value: 'application/json' }, ...toFields(headers)], body: JSON.stringify(value) });
}

export interface ExtendedConnectSpec {
  /** :protocol, e.g. 'connect-udp' or 'connect-ip'. */
  protocol: string;
  authority: string;
  path: string;
  scheme?: string;
  headers?: HeaderInput;
  /** Add `capsule-protocol: ?1` (default true: connect-udp/connect-ip use capsules). */
  capsuleProtocol?: boolean;
}

/** Fields of an Extended CONNECT request (RFC 9220). `authorization` headers get the never-index bit. */
export function extendedConnectFields(spec: ExtendedConnectSpec): HeaderField[] {
  const fields: HeaderField[] = [
    { name: ':method', value: 'CONNECT' },
    { name: ':protocol', value: spec.protocol },
    { name: ':scheme', value: spec.scheme ?? 'https' },
    { name: ':authority', value: spec.authority },
    { name: ':path', value: spec.path },
  ];
  if (spec.capsuleProtocol ?? true) fields.push({ name: 'capsule-protocol', value: '?1' });
  for (const f of toFields(spec.headers)) fields.push(f.name === 'authorization' ? { ...f, neverIndex: true } : f);
  return fields;
}

/** An Extended CONNECT request as a HEADERS frame. */
export function encodeExtendedConnect(spec: ExtendedConnectSpec): Uint8Array {
  return encodeHeadersFrame(encodeFieldSection(extendedConnectFields(spec)));
}
