// @peculiar/x509 loads tsyringe, which refuses to start without the Reflect metadata API
// (normally the `reflect-metadata` package, not installed here). x509 only needs the lookup
// functions to exist; this is the minimal WeakMap-backed version of that API, installed only
// when nothing else has provided it. Must be imported before @peculiar/x509.
type Key = string | symbol;
const store = new WeakMap<object, Map<Key | undefined, Map<unknown, unknown>>>();
function table(target: object, prop: Key | undefined, create: boolean): Map<unknown, unknown> | undefined {
  let byProp = store.get(target);
  if (!byProp) {
    if (!create) return undefined;
    byProp = new Map();
    store.set(target, byProp);
  }
  let t = byProp.get(prop);
  if (!t && create) {
    t = new Map();
    byProp.set(prop, t);
  }
  return t;
}
const R = Reflect as unknown as Record<string, unknown>;
if (typeof R.getMetadata !== 'function') {
  const getOwn = (k: unknown, target: object, prop?: Key) => table(target, prop, false)?.get(k);
  const get = (k: unknown, target: object, prop?: Key): unknown => {
    for (let o: object | null = target; o; o = Object.getPrototypeOf(o)) {
      const t = table(o, prop, false);
      if (t?.has(k)) return t.get(k);
    }
    return undefined;
  };
  R.defineMetadata = (k: unknown, v: unknown, target: object, prop?: Key) => void table(target, prop, true)!.set(k, v);
  R.getOwnMetadata = getOwn;
  R.getMetadata = get;
  R.hasOwnMetadata = (k: unknown, target: object, prop?: Key) => table(target, prop, false)?.has(k) ?? false;
  R.hasMetadata = (k: unknown, target: object, prop?: Key) => get(k, target, prop) !== undefined;
  R.metadata = (k: unknown, v: unknown) => (target: object, prop?: Key) => void table(target, prop, true)!.set(k, v);
}
export {};
