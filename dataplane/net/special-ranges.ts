// Address ranges a tunnel client must not reach through a PoP unless the operator says so: private,
// loopback, link-local, shared (CGNAT), documentation, benchmarking, multicast, reserved and the
// other special-purpose blocks of the IANA registries (RFC 6890 and its updates). One list for the
// tunnels' egress rules (dataplane/os/egress.ts) and MASQUE's target policy.

export const SPECIAL_PURPOSE_V4: readonly string[] = [
  '0.0.0.0/8', // "this network"
  '10.0.0.0/8', // private
  '100.64.0.0/10', // shared address space (CGNAT)
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local (cloud metadata at 169.254.169.254)
  '172.16.0.0/12', // private
  '192.0.0.0/24', // IETF protocol assignments
  '192.0.2.0/24', // TEST-NET-1
  '192.88.99.0/24', // 6to4 relay anycast (deprecated)
  '192.168.0.0/16', // private
  '198.18.0.0/15', // benchmarking
  '198.51.100.0/24', // TEST-NET-2
  '203.0.113.0/24', // TEST-NET-3
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, and 255.255.255.255
];

export const SPECIAL_PURPOSE_V6: readonly string[] = [
  '::/127', // unspecified and loopback
  '::ffff:0:0/96', // IPv4-mapped
  '64:ff9b:1::/48', // local-use IPv4/IPv6 translation
  '100::/64', // discard-only
  '2001::/23', // IETF protocol assignments
  '2001:db8::/32', // documentation
  'fc00::/7', // unique local
  'fe80::/10', // link-local
  'ff00::/8', // multicast
];
