/**
 * A small least-recently-used cache whose evicted values are disposed (tail sessions hold native memory, so an
 * evicted session must be released, not left to the garbage collector).
 */

/** LRU cache with an eviction hook. */
export class LruCache<K, V> {
  private readonly map = new Map<K, V>();

  constructor(
    private readonly capacity: number,
    private readonly onEvict: (key: K, value: V) => void = () => undefined,
  ) {
    if (!(capacity >= 1)) throw new RangeError(`LRU capacity must be >= 1, got ${capacity}`);
  }

  /** Number of entries. */
  get size(): number {
    return this.map.size;
  }

  /** Returns the value and marks it most recently used. */
  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, value);
    return value;
  }

  /** Returns the value without marking it used. */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  /** Inserts or replaces a value, evicting the least recently used entries beyond capacity. */
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value as K;
      const old = this.map.get(oldest) as V;
      this.map.delete(oldest);
      this.onEvict(oldest, old);
    }
  }

  /** Removes an entry without disposing it (it was never usable). */
  delete(key: K): void {
    this.map.delete(key);
  }

  /** Removes and disposes every entry. */
  clear(): void {
    for (const [k, v] of this.map) this.onEvict(k, v);
    this.map.clear();
  }
}
