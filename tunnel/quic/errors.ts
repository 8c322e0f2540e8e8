// QUIC transport error codes (RFC 9000 §20.1) and the TLS alerts CRYPTO_ERROR carries (RFC 9001 §4.8,
// RFC 8446 §6), named so that a close reads as words, not a hex code.

// Keyed by decimal code (0x0-0x10).
const TRANSPORT: Record<number, string> = {
  0: 'NO_ERROR',
  1: 'INTERNAL_ERROR',
  2: 'CONNECTION_REFUSED',
  3: 'FLOW_CONTROL_ERROR',
  4: 'STREAM_LIMIT_ERROR',
  5: 'STREAM_STATE_ERROR',
  6: 'FINAL_SIZE_ERROR',
  7: 'FRAME_ENCODING_ERROR',
  8: 'TRANSPORT_PARAMETER_ERROR',
  9: 'CONNECTION_ID_LIMIT_ERROR',
  10: 'PROTOCOL_VIOLATION',
  11: 'INVALID_TOKEN',
  12: 'APPLICATION_ERROR',
  13: 'CRYPTO_BUFFER_EXCEEDED',
  14: 'KEY_UPDATE_ERROR',
  15: 'AEAD_LIMIT_REACHED',
  16: 'NO_VIABLE_PATH',
};

const TLS_ALERTS: Record<number, string> = {
  10: 'unexpected_message',
  20: 'bad_record_mac',
  40: 'handshake_failure',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  44: 'certificate_revoked',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  47: 'illegal_parameter',
  48: 'unknown_ca',
  49: 'access_denied',
  50: 'decode_error',
  51: 'decrypt_error',
  70: 'protocol_version',
  71: 'insufficient_security',
  80: 'internal_error',
  86: 'inappropriate_fallback',
  90: 'user_canceled',
  109: 'missing_extension',
  110: 'unsupported_extension',
  112: 'unrecognized_name',
  113: 'bad_certificate_status_response',
  115: 'unknown_psk_identity',
  116: 'certificate_required',
  120: 'no_application_protocol',
};

/** Alerts that mean a certificate was refused: retrying the same server cannot help. */
const CERTIFICATE_ALERTS = new Set([42, 43, 44, 45, 46, 48, 116]);

/** `PROTOCOL_VIOLATION`, `TLS alert bad_certificate`, or `transport error 0x…` for codes without a name. */
export function transportErrorName(code: number): string {
  if (code >= 0x100 && code <= 0x1ff) {
    const alert = code - 0x100;
    return `TLS alert ${TLS_ALERTS[alert] ?? alert}`;
  }
  return TRANSPORT[code] ?? `transport error 0x${code.toString(16)}`;
}

/** Whether a transport close code is a TLS alert refusing a certificate. */
export function isCertificateError(code: number): boolean {
  return code >= 0x100 && code <= 0x1ff && CERTIFICATE_ALERTS.has(code - 0x100);
}
