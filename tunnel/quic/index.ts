// tunnel/quic/: a QUIC endpoint over quiche's native binding, driven from our own UDP loop.
export {
  QuicEndpoint,
  QuicConnection,
  resolveCongestionControl,
  buildServerConfig,
  buildClientConfig,
  CONGESTION_CONTROLS,
  type CongestionControl,
  type TransportOptions,
  type ServerEndpointOptions,
  type ClientEndpointOptions,
  type ConnectionHandler,
  type CloseReason,
  type DropReason,
  type EndpointStats,
  type StreamRead,
  sourceKey,
} from './endpoint.js';
export { newServerConnectionId, serverIdOfConnectionId, newClientConnectionId, SERVER_CID_LENGTH, SERVER_CID_FORMAT } from './cid.js';
export { RetryTokenKey, type TokenRejection } from './token.js';
export { FleetKeys, RESET_TOKEN_LEN } from './fleet-key.js';
export { statelessResetPacket, ResetLimiter, MIN_RESET_LEN } from './stateless-reset.js';
export { loadTlsMaterial, generateSelfSigned, writeTlsMaterial, TlsMaterialError, type TlsMaterial } from './tls.js';
export { transportErrorName, isCertificateError } from './errors.js';
export { verifyIpCertificate } from './verify.js';
export { nativeIoWanted, type UdpIoStats } from './udp-io.js';
