// tunnel/h3/: HTTP/3 (RFC 9114), QPACK (RFC 9204), HTTP Datagrams and capsules (RFC 9297), connect-ip
// capsules (RFC 9484). Pure codecs over Uint8Array: no sockets, no timers. Every decoder throws only H3Error.
export * from './errors.js';
export * from './varint.js';
export * from './settings.js';
export * from './frames.js';
export * from './unistream.js';
export * from './datagram.js';
export * from './capsules.js';
export * from './huffman.js';
export * from './qpack.js';
export * from './headers.js';
export * from './stream.js';
export * from './tlv.js';
