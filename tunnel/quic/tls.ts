// TLS material for the QUIC endpoint: PEM certificate chain and private key read from files (so
// SIGHUP can re-read them), and a self-signed ECDSA P-256 pair for demos and tests.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { webcrypto, KeyObject, X509Certificate } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { CbrError, errorMessage } from '../../dataplane/index.js';

export interface TlsMaterial {
  /** PEM certificate chain, leaf first. */
  certPem: string;
  /** PEM private key (PKCS#8 or traditional). */
  keyPem: string;
}

/** A certificate or key file that cannot be used; `field` names the config field that points at it. */
export class TlsMaterialError extends CbrError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super('TLS_MATERIAL_INVALID', `${field}: ${message}`);
  }
}

/** Reads and sanity-checks a certificate/key pair; errors name the config field that points at the bad file. */
export function loadTlsMaterial(certFile: string, keyFile: string, fieldPrefix = 'tls'): TlsMaterial {
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(certFile, 'utf8');
  } catch (err) {
    throw new TlsMaterialError(`${fieldPrefix}.certFile`, `cannot read ${certFile}: ${errorMessage(err)}`);
  }
  try {
    keyPem = readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw new TlsMaterialError(`${fieldPrefix}.keyFile`, `cannot read ${keyFile}: ${errorMessage(err)}`);
  }
  if (!/-----BEGIN CERTIFICATE-----/.test(certPem)) throw new TlsMaterialError(`${fieldPrefix}.certFile`, `${certFile} holds no PEM certificate`);
  if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(keyPem)) throw new TlsMaterialError(`${fieldPrefix}.keyFile`, `${keyFile} holds no PEM private key`);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (err) {
    throw new TlsMaterialError(`${fieldPrefix}.certFile`, `${certFile} does not parse: ${errorMessage(err)}`);
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKeyObject(keyPem)))
      throw new TlsMaterialError(`${fieldPrefix}.keyFile`, `${keyFile} does not match the certificate in ${certFile}`);
  } catch (err) {
    if (err instanceof TlsMaterialError) throw err;
    throw new TlsMaterialError(`${fieldPrefix}.keyFile`, `${keyFile} does not parse: ${errorMessage(err)}`);
  }
  return { certPem, keyPem };
}

import { createPrivateKey } from 'node:crypto';
function createPrivateKeyObject(pem: string): KeyObject {
  return createPrivateKey(pem);
}

/** A fresh self-signed certificate for `names` (DNS names and IP addresses), valid `days` days. */
export async function generateSelfSigned(names: string[] = ['localhost', '127.0.0.1', '::1'], days = 365): Promise<TlsMaterial> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const sans = names.map((n) => (/^[\d.]+$/.test(n) || n.includes(':') ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }));
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8)))
        .toString('hex')
        .replace(/^[89a-f]/, '1'),
      name: `CN=${names[0] ?? 'cbr'}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + days * 86_400_000),
      signingAlgorithm: alg,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(sans),
      ],
    },
    webcrypto as unknown as Crypto,
  );
  const keyPem = KeyObject.from(keys.privateKey as unknown as webcrypto.CryptoKey).export({ type: 'pkcs8', format: 'pem' }) as string;
  return { certPem: `${cert.toString('pem')}\n`, keyPem };
}

/** Writes a pair to files (mode 0600 for the key). */
export function writeTlsMaterial(m: TlsMaterial, certFile: string, keyFile: string): void {
  mkdirSync(dirname(certFile), { recursive: true });
  mkdirSync(dirname(keyFile), { recursive: true });
  writeFileSync(certFile, m.certPem);
  writeFileSync(keyFile, m.keyPem, { mode: 0o600 });
}
