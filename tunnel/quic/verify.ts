// Certificate verification for servers named by an IP literal. quiche (BoringSSL as the binding sets
// it up) checks the server name only against DNS SANs, so `--server 198.51.100.1` failed although our
// certificates carry IP SANs. For an IP literal the endpoint turns quiche's check off and runs this
// one after the handshake: chain up to a trusted CA, validity dates, and the address among the IP SANs.
import { X509Certificate } from 'node:crypto';
import { rootCertificates } from 'node:tls';

/** The PEM blocks of a bundle as certificates (unparseable blocks are skipped). */
function bundle(pem: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) {
    try {
      out.push(new X509Certificate(m[0]));
    } catch {
      // A malformed block in a CA bundle trusts nothing; the others still count.
    }
  }
  return out;
}

let systemRoots: X509Certificate[] | undefined;

/**
 * Checks the peer's chain (DER, leaf first) for `ip`. Returns undefined when it holds, else what
 * failed in words. `caPem` is the trusted bundle; without it Node's root certificates are used.
 */
export function verifyIpCertificate(chainDer: readonly Uint8Array[], ip: string, caPem: string | undefined, now = new Date()): string | undefined {
  let chain: X509Certificate[];
  try {
    chain = chainDer.map((d) => new X509Certificate(Buffer.from(d)));
  } catch {
    return 'the server sent a certificate that does not parse';
  }
  const leaf = chain[0];
  if (!leaf) return 'the server sent no certificate';
  for (const c of chain) {
    if (new Date(c.validFrom) > now) return `the certificate ${c.subject.replace(/\n/g, ', ')} is not valid before ${c.validFrom}`;
    if (new Date(c.validTo) < now) return `the certificate ${c.subject.replace(/\n/g, ', ')} expired on ${c.validTo}`;
  }
  if (leaf.checkIP(ip) === undefined) {
    const sans = leaf.subjectAltName ?? 'none';
    return `the certificate does not name ${ip} among its IP addresses (subject alternative names: ${sans})`;
  }
  systemRoots ??= caPem === undefined ? rootCertificates.flatMap((p) => bundle(p)) : undefined;
  const roots = caPem !== undefined ? bundle(caPem) : (systemRoots ?? []);
  const trusted = (c: X509Certificate) => roots.some((r) => r.fingerprint256 === c.fingerprint256 || (r.ca && c.checkIssued(r) && c.verify(r.publicKey)));
  // Walk up the chain the server sent until a certificate is trusted or issued by a trusted one.
  for (let i = 0; i < chain.length; i++) {
    const c = chain[i]!; // i < chain.length
    if (trusted(c)) return undefined;
    const issuer = chain[i + 1];
    if (!issuer?.ca || !c.checkIssued(issuer) || !c.verify(issuer.publicKey)) break;
  }
  return caPem !== undefined ? 'the certificate is not signed by the given CA' : 'the certificate is not signed by a known root CA';
}
